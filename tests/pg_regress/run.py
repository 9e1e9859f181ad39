#!/usr/bin/env python3
"""PostgreSQL's own regression tests, statement by statement, against QubeDB.

The corpus is `../shared/conformance/pg-regress/` (PostgreSQL 15's `sql/NAME.sql`
with the output PostgreSQL gives in `expected/NAME.out`). Each file runs the way
`pg_regress` runs it, through psql (`psql -X -a -q`, stderr into stdout, so the
echoed input, results, errors and notices all land in one text), here against
a QubeDB server. Both outputs are then cut into statements and compared one
statement at a time: the share of statements whose output matches is the figure.

Cutting: `psql -a` echoes every non-blank input line as it reads it, and a
statement's output follows the echo of its last line. So the output is aligned
with the input line by line (each non-blank input line is found in order), and
whatever lies between two echoed lines belongs to the statement that the first
of them ends (or to the last statement ended before it, for comments). A
statement's output is compared with blank lines dropped and trailing spaces
trimmed. The expected output is cut with the same rules, so both sides split
alike.

Two changes to the input (`test_setup`, which must run first, loads most
tables the other files read): `COPY t FROM :'filename'` reads
a file on the server, which PostgreSQL allows its superuser and QubeDB does not
do, so it becomes psql's `\\copy` of the same file (sent as COPY FROM STDIN);
and `\\getenv` of the source directory gets the corpus' path. The changed lines
are compared with the original lines' expected output.

Usage:
  python3 tests/pg_regress/run.py [--binary target/release/qubedb | --dsn DSN]
                                  [--fail-log FILE] [--min-share F] [TEST ...]
With --binary (the default) it starts `qubedb serve --memory` on a free
loopback port and stops it at the end. --min-share makes it exit 1 when the
share of matching statements over all files is below F (0..1).
"""
import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CORPUS = (HERE / "../../../shared/conformance/pg-regress").resolve()
# The README's order: test_setup first, then types, queries, writes, json.
TESTS = [
    "test_setup",
    "boolean", "int2", "int4", "int8", "float8", "numeric", "text", "varchar", "char", "strings",
    "select", "select_having", "select_distinct", "select_implicit", "case", "union",
    "subselect", "join", "aggregates", "limit", "window", "with",
    "insert", "update", "delete", "returning", "create_table", "transactions",
    "json", "jsonb",
]


def find_psql():
    for p in sorted(Path("/usr/lib/postgresql").glob("*/bin/psql"), reverse=True):
        return str(p)
    return shutil.which("psql") or "psql"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def statements(lines):
    """For each input line, the index of the statement it belongs to (or None
    for blank and comment lines outside a statement), and the number of
    statements. A statement ends at a `;` outside quotes, dollar quotes and
    comments; a line starting with a backslash outside a statement is a psql
    meta-command, a statement of its own."""
    owner = [None] * len(lines)
    n = 0
    in_stmt = False
    quote = None  # "'", '"', or a dollar tag like "$$" / "$f$"
    block = 0
    for i, line in enumerate(lines):
        if not in_stmt and quote is None and block == 0 and line.lstrip().startswith("\\"):
            owner[i] = n
            n += 1
            continue
        j = 0
        ended = False
        content = False
        while j < len(line):
            c = line[j]
            if block:
                if line.startswith("*/", j):
                    block -= 1
                    j += 2
                    continue
                if line.startswith("/*", j):
                    block += 1
                    j += 2
                    continue
                j += 1
                continue
            if quote is not None:
                if quote in ("'", '"'):
                    if c == quote:
                        if line.startswith(quote * 2, j):
                            j += 2
                            continue
                        quote = None
                    j += 1
                    continue
                if line.startswith(quote, j):
                    j += len(quote)
                    quote = None
                    continue
                j += 1
                continue
            if line.startswith("--", j):
                break
            if line.startswith("/*", j):
                block += 1
                j += 2
                continue
            if c in ("'", '"'):
                quote = c
                content = True
                j += 1
                continue
            if c == "$":
                m = re.match(r"\$[A-Za-z_]*\$", line[j:])
                if m:
                    quote = m.group(0)
                    content = True
                    j += len(quote)
                    continue
            if c == ";":
                content = True
                ended = True
                j += 1
                continue
            if not c.isspace():
                content = True
                if ended:
                    # Text after a `;` on the same line starts the next one.
                    n += 1
                    ended = False
            j += 1
        if content or in_stmt or quote is not None or block:
            if content or in_stmt:
                owner[i] = n
                in_stmt = True
        if ended and quote is None and block == 0:
            n += 1
            in_stmt = False
    if in_stmt:
        n += 1
    return owner, n


def cut(output, lines, owner, n):
    """The output of each statement: a list of n strings (None where the
    output could not be aligned with the input from that point on)."""
    out = output.split("\n")
    blocks = [[] for _ in range(n)]
    p = 0
    last = None  # the statement the text after the current echo belongs to
    aligned = True
    for i, line in enumerate(lines):
        text = line.rstrip()
        if not text:
            continue
        q = p
        while q < len(out) and out[q].rstrip() != text:
            q += 1
        if q == len(out):
            aligned = False
            break
        if last is not None:
            blocks[last].extend(out[p:q])
        p = q + 1
        if owner[i] is not None:
            last = owner[i]
    if aligned and last is not None:
        blocks[last].extend(out[p:])
    result = []
    for k, b in enumerate(blocks):
        if not aligned and (last is None or k >= last):
            result.append(None)
            continue
        result.append("\n".join(x.rstrip() for x in b if x.strip()))
    return result


def rewrite(lines):
    """The input as run against QubeDB (see the module doc)."""
    new = []
    filename = None
    for line in lines:
        m = re.match(r"\\set filename :abs_srcdir '(/data/[^']+)'", line)
        if m:
            filename = str(CORPUS) + m.group(1)
        m = re.match(r"COPY (\w+) FROM :'filename';", line)
        if m and filename:
            line = f"\\copy {m.group(1)} FROM '{filename}'"
        new.append(line)
    return new


def run_file(psql, dsn, name, env):
    sql = (CORPUS / "sql" / f"{name}.sql").read_text()
    expected = (CORPUS / "expected" / f"{name}.out").read_text()
    lines = sql.split("\n")
    ran = rewrite(lines)
    t = time.monotonic()
    # As pg_regress: the file on stdin, stderr into stdout (one stream, so
    # errors stay between the statements that raise them).
    try:
        r = subprocess.run(
            [psql, "-X", "-a", "-q", "-d", dsn, "-v", "HIDE_TABLEAM=on", "-v", "HIDE_TOAST_COMPRESSION=on"],
            input="\n".join(ran), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, env=env, timeout=600,
        )
        actual = r.stdout
    except subprocess.TimeoutExpired as e:
        actual = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
        actual += "\n(timed out)"
    secs = time.monotonic() - t
    owner, n = statements(lines)
    want = cut(expected, lines, owner, n)
    have = cut(actual, ran, owner, n)
    stmt_text = {}
    for i, o in enumerate(owner):
        if o is not None:
            stmt_text.setdefault(o, []).append(lines[i])
    fails = []
    for k in range(n):
        if want[k] is None or want[k] == have[k]:
            continue
        # Without ORDER BY, SQL promises no order: the same rows in another
        # order match (the header and the row count must still agree).
        text = "\n".join(stmt_text.get(k, [])).lower()
        if have[k] is not None and not top_level_order(text) and same_rows(want[k], have[k]):
            continue
        fails.append((k, want[k], have[k]))
    counted = sum(1 for w in want if w is not None)
    return counted, counted - len(fails), fails, stmt_text, secs


def top_level_order(text):
    """Whether a statement has an ORDER BY outside parentheses (an
    ORDER BY inside OVER (…), an aggregate or a subquery orders nothing
    that the output shows)."""
    depth = 0
    flat = []
    for c in re.sub(r"'(?:[^']|'')*'", "''", text):
        if c == "(":
            depth += 1
        elif c == ")":
            depth = max(depth - 1, 0)
        elif depth == 0:
            flat.append(c)
    return re.search(r"\border\s+by\b", "".join(flat)) is not None


def same_rows(a, b):
    """Whether two outputs are one psql table each (header, rule, rows,
    "(N rows)") with the same header and the same rows in any order."""
    def parts(t):
        lines = t.split("\n")
        if len(lines) < 3 or not re.match(r"^-+(\+-+)*$", lines[1]) or not re.match(r"^\(\d+ rows?\)$", lines[-1]):
            return None
        return lines[0], sorted(lines[2:-1]), lines[-1]
    pa, pb = parts(a), parts(b)
    return pa is not None and pa == pb


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--binary", default="target/release/qubedb")
    ap.add_argument("--dsn")
    ap.add_argument("--fail-log")
    ap.add_argument("--min-share", type=float)
    ap.add_argument("tests", nargs="*")
    args = ap.parse_args()
    if not CORPUS.is_dir():
        sys.exit(f"no corpus at {CORPUS}")
    psql = find_psql()
    server = None
    work = None
    if args.dsn:
        base = args.dsn
    else:
        port = free_port()
        work = tempfile.mkdtemp(prefix="qube-pg-regress-")
        server = subprocess.Popen(
            [args.binary, "serve", "--memory", "--pg-addr", f"127.0.0.1:{port}",
             "--http-addr", "127.0.0.1:0", "--log-level", "warn"],
            stdout=open(os.path.join(work, "server.log"), "w"), stderr=subprocess.STDOUT,
        )
        base = f"host=127.0.0.1 port={port} user=qubedb dbname=qubedb"
        for _ in range(100):
            if subprocess.run([psql, "-X", "-q", "-d", base, "-c", "SELECT 1"],
                              capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
    env = dict(os.environ)
    # As pg_regress sets them.
    env.update({"PGTZ": "PST8PDT", "PGDATESTYLE": "Postgres, MDY", "PG_ABS_SRCDIR": str(CORPUS),
                "PG_LIBDIR": "/nonexistent", "PG_DLSUFFIX": ".so", "LC_ALL": "C", "PGAPPNAME": "pg_regress",
                # A runaway statement fails alone instead of stalling the run.
                "PGOPTIONS": "-c statement_timeout=20s"})
    try:
        admin = re.sub(r"dbname=\S+", "", base) + " dbname=" + ("qubedb" if not args.dsn else re.search(r"dbname=(\S+)", base).group(1))
        subprocess.run([psql, "-X", "-q", "-d", admin, "-c", "DROP DATABASE IF EXISTS regression"],
                       capture_output=True)
        subprocess.run([psql, "-X", "-q", "-d", admin, "-c", "CREATE DATABASE regression"],
                       check=True, capture_output=True)
        dsn = re.sub(r"dbname=\S+", "", base) + " dbname=regression"
        tests = args.tests or TESTS
        if tests[0] != "test_setup":
            tests = ["test_setup"] + tests
        total = matched = 0
        log = open(args.fail_log, "w") if args.fail_log else None
        for name in tests:
            counted, ok, fails, text, secs = run_file(psql, dsn, name, env)
            total += counted
            matched += ok
            print(f"{name:18} {ok:5} of {counted:5} statements match ({100.0 * ok / max(counted, 1):5.1f}%)  {secs:5.1f} s", flush=True)
            if log:
                for k, want, have in fails:
                    log.write(f"==== {name} statement {k + 1}\n")
                    log.write("\n".join(text.get(k, [])) + "\n")
                    log.write("---- expected\n" + (want or "") + "\n")
                    log.write("---- got\n" + ("(output out of step with the input)" if have is None else have) + "\n")
        share = matched / max(total, 1)
        print(f"total: {matched} of {total} statements match ({100.0 * share:.1f}%)")
        if args.min_share is not None and share < args.min_share:
            sys.exit(1)
    finally:
        if server:
            server.terminate()
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
        if work:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
