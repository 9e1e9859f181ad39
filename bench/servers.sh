# Sourced by bench/pgbench.sh and bench/copy.sh: starts a throwaway
# PostgreSQL and a throwaway `qubedb serve` side by side, and stops both on
# exit, however the script ends.
#
# The caller sets `pg_port` and `qube_port`, and may define `log`; after
# `servers_start` these are set:
#   pg_bin     PostgreSQL's bin directory (psql, pgbench, pg_isready, ...)
#   work       a temporary directory, deleted on exit
#   targets    ("PostgreSQL PORT postgres postgres" "QubeDB PORT qubedb qubedb"):
#              name port user database, one per server
#
# PostgreSQL: installed from Debian's packages if no server with pgbench is
# under /usr/lib/postgresql/*/bin (the newest there is used); a fresh data
# directory under /tmp (`initdb -A trust`, as the `postgres` user when run
# as root), listening on 127.0.0.1 only, fsync=on and synchronous_commit=on
# (the defaults, said explicitly).
# QubeDB: `cargo build --release -p qubedb` (into $CARGO_TARGET_DIR or
# target/; or the binary named by $QUBEDB_BIN, to compare builds), then
# `qubedb serve` with a fresh data directory under /tmp,
# every commit fsynced (the default durability).

if ! declare -F log >/dev/null; then
    log() { echo "[bench] $*" >&2; }
fi

servers_start() {
    # PostgreSQL from Debian's packages, if no server is installed.
    pg_bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$pg_bin" ] || [ ! -x "$pg_bin/postgres" ] || [ ! -x "$pg_bin/pgbench" ]; then
        log "installing PostgreSQL from Debian packages"
        local sudo
        if [ "$(id -u)" = 0 ]; then sudo=""; else sudo="sudo -n"; fi
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq postgresql >/dev/null
        pg_bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    fi
    log "PostgreSQL: $("$pg_bin/postgres" --version)"

    work=$(mktemp -d /tmp/qube-bench.XXXXXX)
    chmod 755 "$work"
    pg_data="$work/pg"
    qube_data="$work/qube"
    qube_pid=""
    as_pg=()
    if [ "$(id -u)" = 0 ]; then
        as_pg=(runuser -u postgres --)
    fi
    trap servers_stop EXIT INT TERM

    # PostgreSQL: trust on loopback, fsync and synchronous_commit on (defaults).
    mkdir -p "$pg_data"
    if [ "$(id -u)" = 0 ]; then chown postgres "$pg_data"; fi
    "${as_pg[@]}" "$pg_bin/initdb" -D "$pg_data" -U postgres -A trust -E UTF8 >/dev/null
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -w -l "$pg_data/log" start \
        -o "-p $pg_port -k $pg_data -c listen_addresses=127.0.0.1 -c max_connections=100 -c fsync=on -c synchronous_commit=on" >/dev/null
    log "PostgreSQL on 127.0.0.1:$pg_port"

    # QubeDB: release build, durability on (every commit fsynced).
    local qubedb=${QUBEDB_BIN:-}
    if [ -z "$qubedb" ]; then
        log "building qubedb (release)"
        cargo build --release -p qubedb >&2
        qubedb=${CARGO_TARGET_DIR:-target}/release/qubedb
    fi
    log "QubeDB binary: $qubedb"
    "$qubedb" serve --data "$qube_data" --pg-addr "127.0.0.1:$qube_port" \
        --http-addr 127.0.0.1:0 --log-level warn >"$work/qube.log" 2>&1 &
    qube_pid=$!
    for _ in $(seq 1 200); do
        if "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$qube_port"; then break; fi
        sleep 0.1
    done
    "$pg_bin/pg_isready" -q -h 127.0.0.1 -p "$qube_port" || { log "qubedb did not start"; cat "$work/qube.log" >&2; exit 1; }
    log "QubeDB on 127.0.0.1:$qube_port (pid $qube_pid)"

    targets=("PostgreSQL $pg_port postgres postgres" "QubeDB $qube_port qubedb qubedb")
}

servers_stop() {
    set +e
    if [ -n "${qube_pid:-}" ]; then
        kill -TERM "$qube_pid" 2>/dev/null
        wait "$qube_pid" 2>/dev/null
    fi
    if [ -n "${pg_data:-}" ] && [ -f "$pg_data/postmaster.pid" ]; then
        "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_data" -m fast -w stop >/dev/null 2>&1
    fi
    if [ -n "${work:-}" ]; then rm -rf "$work"; fi
}

# copy_run NAME PORT USER DB TABLE FILE: creates TABLE, then times
# `COPY TABLE FROM STDIN` of FILE (text format) through psql; prints the
# seconds. The table has a bigint primary key and three other columns.
copy_run() {
    local name=$1 port=$2 user=$3 db=$4 table=$5 file=$6 start end out
    "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
        -c "CREATE TABLE $table (id bigint PRIMARY KEY, a integer, b text, d double precision)" >&2
    out="$work/copy-$name.log"
    start=$(date +%s.%N)
    if ! "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$user" -d "$db" \
        -c "COPY $table FROM STDIN" <"$file" >"$out" 2>&1; then
        log "$name: COPY failed"
        cat "$out" >&2
        return 1
    fi
    end=$(date +%s.%N)
    awk -v a="$start" -v b="$end" 'BEGIN { printf "%.3f\n", b - a }'
}

# copy_file ROWS FILE: the COPY data, ROWS lines in id order:
# id, id % 1000, 'name-<id>-<padding>', id / 8 (tab-separated).
copy_file() {
    awk -v n="$1" 'BEGIN { for (i = 1; i <= n; i++) printf "%d\t%d\tname-%d-abcdefghij\t%.3f\n", i, i % 1000, i, i / 8 }' >"$2"
}

# copy_bench ROWS RUNS: RUNS alternating COPYs of ROWS rows into a fresh
# table on each server (PostgreSQL first, then QubeDB, then again); prints a
# Markdown table of seconds, rows/s and the ratio per run.
copy_bench() {
    local rows=$1 runs=$2 file="$work/copy.tsv" r t name port user db secs
    copy_file "$rows" "$file"
    log "COPY data: $rows rows, $(du -h "$file" | cut -f1)"
    local results="$work/copy-results"
    : >"$results"
    for r in $(seq 1 "$runs"); do
        for t in "${targets[@]}"; do
            read -r name port user db <<<"$t"
            secs=$(copy_run "$name" "$port" "$user" "$db" "copy_bench_$r" "$file") || return 1
            log "$name COPY run $r: $secs s"
            echo "$r $name $secs" >>"$results"
        done
    done
    echo
    echo "COPY of $rows rows FROM STDIN (text) into (id bigint PRIMARY KEY, a integer, b text, d double precision), psql, fsync on for both"
    echo
    echo "| run | PostgreSQL s | QubeDB s | PostgreSQL rows/s | QubeDB rows/s | QubeDB/PostgreSQL |"
    echo "|---:|---:|---:|---:|---:|---:|"
    awk -v n="$rows" '
        { s[$1, $2] = $3; if ($1 > runs) runs = $1 }
        END {
            for (r = 1; r <= runs; r++) {
                p = s[r, "PostgreSQL"]; q = s[r, "QubeDB"]
                printf "| %d | %.2f | %.2f | %.0f | %.0f | %.2f |\n", r, p, q, n / p, n / q, p / q
            }
        }' "$results"
}
