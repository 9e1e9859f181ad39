#!/usr/bin/env bash
# Server CPU per pgbench transaction: the utime+stime of the process
# listening on PORT (from /proc/<pid>/stat) over one pgbench run, divided by
# the transactions pgbench reports. Steadier than TPS on a shared machine.
#
# Usage: bench/server_cpu.sh PORT [prepared|simple] [select-only|tpcb-like]
#                            [CLIENTS] [SECONDS] [USER]
# The server must be running and initialised (`pgbench -i`); the database
# is named like USER (default qubedb).
set -euo pipefail
port=$1; mode=${2:-prepared}; script=${3:-select-only}; clients=${4:-4}
secs=${5:-5}; user=${6:-qubedb}
pgbench=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)/pgbench
pid=$(ss -ltnpH "sport = :$port" | sed -n 's/.*pid=\([0-9]*\).*/\1/p' | head -n 1)
[ -n "$pid" ] || { echo "nothing listens on port $port" >&2; exit 1; }
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
hz=$(getconf CLK_TCK)
before=$(ticks)
out=$("$pgbench" -b "$script" -M "$mode" -c "$clients" -j $(( clients < 2 ? 1 : 2 )) -T "$secs" \
    -h 127.0.0.1 -p "$port" -U "$user" "$user" 2>&1)
after=$(ticks)
n=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' <<<"$out")
tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")
awk -v a="$before" -v b="$after" -v n="$n" -v hz="$hz" -v tps="$tps" \
    -v what="$script $mode c=$clients" \
    'BEGIN { printf "%s: %s TPS, server CPU %.1f us per transaction\n", what, tps, (b - a) / hz * 1e6 / n }'
