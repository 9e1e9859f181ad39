#!/usr/bin/env bash
# pgbench against PostgreSQL and QubeDB on this machine, in one run.
#
# Starts a throwaway PostgreSQL (data directory under /tmp, fsync on, run as
# the `postgres` user when we are root) and a throwaway `qubedb serve`
# (release build, data directory under /tmp, every commit fsynced: the
# default), initialises pgbench's tables on both (`pgbench -i -s SCALE`),
# VACUUMs both and warms each with 2 s of untimed select-only, then runs the built-in select-only and TPC-B-like scripts at 1, 4 and 16
# clients in simple and prepared mode on each, and prints TPS, average
# latency and the ratio QubeDB/PostgreSQL; then one COPY of --copy-rows rows
# into a table with a primary key on each (bench/copy.sh, which has more
# options, runs that alone). Both servers are stopped on exit, however the
# script ends (bench/servers.sh starts and stops them).
#
# Usage: bench/pgbench.sh [--quick] [--duration SECONDS] [--scale N]
#                         [--clients "1 4 16"] [--rounds N] [--copy-rows N]
#                         [--pg-port P] [--qube-port P]
#   --quick        3 s per run (the whole run takes under two minutes)
#   --duration N   seconds per pgbench run (default 20)
#   --scale N      pgbench scale factor (default 1: 100,000 accounts)
#   --rounds N     run every line N times, alternating which server goes
#                  first; TPS and latency are the medians of the rounds,
#                  p99 is over all their transactions, and the per-round
#                  ratios are listed (default 1)
#   --copy-rows N  rows of the COPY line (default 1,000,000; 0 skips it)
set -euo pipefail
cd "$(dirname "$0")/.."

duration=20
scale=1
clients="1 4 16"
copy_rows=1000000
rounds=1
pg_port=54391
qube_port=54392
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) duration=3 ;;
        --duration) duration="$2"; shift ;;
        --scale) scale="$2"; shift ;;
        --clients) clients="$2"; shift ;;
        --copy-rows) copy_rows="$2"; shift ;;
        --pg-port) pg_port="$2"; shift ;;
        --qube-port) qube_port="$2"; shift ;;
        --rounds) rounds="$2"; shift ;;
        -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

log() { echo "[pgbench.sh] $*" >&2; }

# shellcheck source=servers.sh
. bench/servers.sh
servers_start
pgbench="$pg_bin/pgbench"

for t in "${targets[@]}"; do
    read -r name port user db <<<"$t"
    log "$name: pgbench -i -s $scale"
    start=$(date +%s.%N)
    "$pgbench" -i -s "$scale" -q -h 127.0.0.1 -p "$port" -U "$user" "$db" >"$work/init-$name.log" 2>&1 \
        || { cat "$work/init-$name.log" >&2; exit 1; }
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" "BEGIN { print b - a }" >"$work/init-$name.secs"
done

# Before timing: VACUUM both (pgbench -i vacuums before it adds the primary
# keys, whose rewrite leaves old versions for QubeDB's background GC, which
# would otherwise run during the first timed runs), then 2 s of untimed
# select-only on each, so that every timed run meets warm caches.
for t in "${targets[@]}"; do
    read -r name port user db <<<"$t"
    "$pg_bin/psql" -qX -h 127.0.0.1 -p "$port" -U "$user" -d "$db" -c VACUUM >/dev/null \
        || { log "$name: VACUUM failed"; exit 1; }
    "$pgbench" -b select-only -M prepared -c 2 -j 2 -T 2 -h 127.0.0.1 -p "$port" -U "$user" "$db" \
        >/dev/null 2>&1 || { log "$name: warm-up pgbench failed"; exit 1; }
done

# Result lines: script mode clients name round tps latency_ms failed;
# each line's transaction logs collect in $work/txlog-<line>-<name>.
results="$work/results"
: >"$results"
for script in select-only tpcb-like; do
    for mode in simple prepared; do
        for c in $clients; do
            for round in $(seq 1 "$rounds"); do
                # Odd rounds PostgreSQL first, even rounds QubeDB first.
                order=("${targets[@]}")
                if [ $((round % 2)) -eq 0 ]; then order=("${targets[1]}" "${targets[0]}"); fi
                for t in "${order[@]}"; do
                    read -r name port user db <<<"$t"
                    threads=$(( c < 2 ? 1 : 2 ))
                    out="$work/run.log"
                    # -l: one line per transaction (its latency in us is the
                    # third field), for the p99.
                    logs="$work/txlog-$script-$mode-$c-$name"
                    mkdir -p "$logs" && rm -rf "$work/txlog" && mkdir "$work/txlog"
                    if ! (cd "$work/txlog" && "$pgbench" -b "$script" -M "$mode" -c "$c" -j "$threads" \
                        -T "$duration" -l -h 127.0.0.1 -p "$port" -U "$user" "$db") >"$out" 2>&1; then
                        log "$name $script $mode c=$c: pgbench failed"
                        tail -n 5 "$out" >&2
                    fi
                    for f in "$work"/txlog/pgbench_log.*; do
                        [ -e "$f" ] && mv "$f" "$logs/$round.$(basename "$f")"
                    done
                    tps=$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' "$out" | head -n 1)
                    lat=$(sed -n 's/^latency average = \([0-9.]*\) ms.*/\1/p' "$out" | head -n 1)
                    failed=$(sed -n 's/^number of failed transactions: \([0-9]*\).*/\1/p' "$out" | head -n 1)
                    echo "$script $mode $c $name $round ${tps:--} ${lat:--} ${failed:--}" >>"$results"
                    log "$name $script $mode c=$c round $round: tps ${tps:--}, latency ${lat:--} ms, failed ${failed:--}"
                done
            done
            for t in "${targets[@]}"; do
                read -r name _ <<<"$t"
                p99=$(cat "$work/txlog-$script-$mode-$c-$name"/* 2>/dev/null | awk '{print $3}' | sort -n \
                    | awk '{v[NR] = $1} END { if (NR) { i = int(NR * 0.99); if (i < 1) i = 1; printf "%.3f", v[i] / 1000 } }')
                echo "$script $mode $c $name p99 ${p99:--}" >>"$results"
                rm -rf "$work/txlog-$script-$mode-$c-$name"
            done
        done
    done
done

echo
echo "pgbench, scale $scale, ${duration} s per run, $(nproc) CPUs; PostgreSQL $("$pg_bin/postgres" --version | awk '{print $3}') (fsync on) vs QubeDB (release, durability on)"
echo
printf 'init (pgbench -i -s %s): PostgreSQL %.1f s, QubeDB %.1f s\n' "$scale" \
    "$(cat "$work/init-PostgreSQL.secs")" "$(cat "$work/init-QubeDB.secs")"
echo
[ "$rounds" -gt 1 ] && echo "Medians of $rounds rounds (alternating which server ran first); p99 over all rounds' transactions."
[ "$rounds" -gt 1 ] && echo
echo "| script | mode | clients | PostgreSQL TPS | QubeDB TPS | QubeDB/PostgreSQL | per-round ratios | PostgreSQL latency ms | QubeDB latency ms | PostgreSQL p99 ms | QubeDB p99 ms | failed (PG/Qube) |"
echo "|---|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---|"
awk '
    function median(list,    a, n, i, j, t) {
        n = split(list, a, " ")
        if (n == 0) return "-"
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] + 0 < a[i] + 0) { t = a[i]; a[i] = a[j]; a[j] = t }
        return (n % 2) ? a[(n + 1) / 2] : sprintf("%.3f", (a[n / 2] + a[n / 2 + 1]) / 2)
    }
    $5 == "p99" { p99[$1 " " $2 " " $3, $4] = $6; next }
    {
        key = $1 " " $2 " " $3
        if (!(key in order)) order[key] = NR
        if ($6 != "-") tps[key, $4] = tps[key, $4] " " $6
        if ($7 != "-") lat[key, $4] = lat[key, $4] " " $7
        fail[key, $4] += $8
        round[key, $4, $5] = $6
        rounds[key] = ($5 > rounds[key]) ? $5 : rounds[key]
    }
    END {
        n = 0
        for (k in order) keys[++n] = k
        # keep the order of the runs
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (order[keys[j]] < order[keys[i]]) { t = keys[i]; keys[i] = keys[j]; keys[j] = t }
        for (i = 1; i <= n; i++) {
            k = keys[i]; split(k, f, " ")
            p = median(tps[k, "PostgreSQL"]); q = median(tps[k, "QubeDB"])
            ratio = (p != "-" && p + 0 > 0 && q != "-") ? sprintf("%.2f", q / p) : "-"
            per = ""
            for (r = 1; r <= rounds[k]; r++) {
                a = round[k, "PostgreSQL", r]; b = round[k, "QubeDB", r]
                per = per (r > 1 ? " " : "") ((a != "-" && a + 0 > 0 && b != "-") ? sprintf("%.2f", b / a) : "-")
            }
            printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s/%s |\n", f[1], f[2], f[3], p, q, ratio, per, median(lat[k, "PostgreSQL"]), median(lat[k, "QubeDB"]), p99[k, "PostgreSQL"], p99[k, "QubeDB"], fail[k, "PostgreSQL"], fail[k, "QubeDB"]
        }
    }' "$results"

if [ "$copy_rows" -gt 0 ]; then
    copy_bench "$copy_rows" 1
fi
