#!/usr/bin/env python3
"""Checks this folder's .slt files against a real PostgreSQL server.

The expectations in `*.slt` must be what PostgreSQL 15 gives. This script runs
each file on a fresh database of a PostgreSQL server and compares, with the
same conventions as the Rust harness (`tests/it/slt.rs`):

  * values in PostgreSQL's text output format, NULL as `NULL`, '' as `(empty)`;
  * column types checked strictly: I (int2/int4/int8), R (float4/float8/numeric),
    T (everything else);
  * errors are "<SQLSTATE>: <message>" and `statement error <regex>` /
    `query error <regex>` search that text;
  * `rowsort` / `valuesort` / `nosort`, rows compared as their values joined by
    one space, whitespace-normalised (sqllogictest-rs's default validator);
  * `statement count N` compares the affected-row count.

Usage (needs `pip install "psycopg[binary]"`):

    python3 verify_pg.py --dsn "host=127.0.0.1 port=54329 user=postgres" *.slt
    python3 verify_pg.py --dsn ... --rewrite types.slt   # rewrite query results from PostgreSQL

`--rewrite` replaces the type string and the expected rows of every `query`
record by PostgreSQL's output (review the diff!); error expectations are never
rewritten, only reported.
"""
import argparse
import re
import sys

import psycopg
from psycopg.adapt import Loader

INT_OIDS = {20, 21, 23}
REAL_OIDS = {700, 701, 1700}


class AsText(Loader):
    def load(self, data):
        return bytes(data).decode()


def parse(lines):
    """Yields dicts describing records, sqllogictest-rs style (subset)."""
    i, n = 0, len(lines)
    while i < n:
        line = lines[i]
        if line.startswith('#') or line == '':
            i += 1
            continue
        toks = line.split()
        head = i
        if toks[0] in ('statement', 'query'):
            i += 1
            sql = []
            has_results = False
            while i < n and lines[i] != '':
                if lines[i] == '----':
                    has_results = True
                    i += 1
                    break
                sql.append(lines[i])
                i += 1
            results = []
            res_start = i
            if has_results:
                while i < n and lines[i] != '':
                    results.append(lines[i])
                    i += 1
            yield dict(kind=toks[0], toks=toks, line=head, sql='\n'.join(sql),
                       has_results=has_results, res_start=res_start, res_end=i, results=results)
        else:
            yield dict(kind=toks[0], toks=toks, line=head)
            i += 1


def norm(s):
    return ' '.join(s.split())


def fmt(v):
    if v is None:
        return 'NULL'
    if v == '':
        return '(empty)'
    return v


def type_letter(oid):
    if oid in INT_OIDS:
        return 'I'
    if oid in REAL_OIDS:
        return 'R'
    return 'T'


def run(conn, sql):
    """Returns ('rows', types, rows) | ('count', n) | ('error', text)."""
    try:
        cur = conn.execute(sql)
    except psycopg.Error as e:
        diag = e.diag
        return ('error', f'{diag.sqlstate}: {diag.message_primary}')
    if cur.description is None:
        return ('count', cur.rowcount)
    types = ''.join(type_letter(d.type_code) for d in cur.description)
    rows = [[fmt(v) for v in r] for r in cur.fetchall()]
    return ('rows', types, rows)


def check_file(path, dsn, rewrite):
    with open(path, encoding='utf-8') as f:
        lines = f.read().split('\n')
    dbname = 'slt_verify_' + re.sub(r'[^a-z0-9]', '_', path.lower().rsplit('/', 1)[-1])
    admin = psycopg.connect(dsn, autocommit=True)
    admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
    admin.execute(f'CREATE DATABASE "{dbname}"')
    conn = psycopg.connect(dsn, dbname=dbname, autocommit=True)
    oids = [r[0] for r in conn.execute('SELECT oid FROM pg_type').fetchall()]
    for oid in oids:
        conn.adapters.register_loader(oid, AsText)
    failures = []
    edits = []  # (start, end, new_lines)
    nrec = 0
    try:
        for rec in parse(lines):
            if rec['kind'] == 'halt':
                break
            if rec['kind'] not in ('statement', 'query'):
                failures.append(f"{path}:{rec['line']+1}: unsupported record {rec['toks']}")
                continue
            nrec += 1
            toks = rec['toks']
            loc = f"{path}:{rec['line']+1}"
            out = run(conn, rec['sql'])
            if toks[1] == 'error':
                regex = ' '.join(toks[2:])
                if out[0] != 'error':
                    failures.append(f"{loc}: expected error {regex!r}, but it succeeded\n  {rec['sql']}")
                elif regex and not re.search(regex, out[1]):
                    failures.append(f"{loc}: expected error {regex!r}, got {out[1]!r}\n  {rec['sql']}")
                continue
            if out[0] == 'error':
                failures.append(f"{loc}: unexpected error {out[1]!r}\n  {rec['sql']}")
                continue
            if rec['kind'] == 'statement':
                if toks[1] == 'count' and (out[0] != 'count' or out[1] != int(toks[2])):
                    failures.append(f"{loc}: expected count {toks[2]}, got {out}")
                continue
            # query <types> [sort]
            want_types = toks[1]
            sort = toks[2] if len(toks) > 2 and toks[2] in ('rowsort', 'valuesort', 'nosort') else 'nosort'
            if out[0] == 'count':
                got_types, rows = want_types, []
            else:
                _, got_types, rows = out
            if sort == 'rowsort':
                rows.sort()
            elif sort == 'valuesort':
                rows = sorted([v] for r in rows for v in r)
            got = [norm(' '.join(norm(v) for v in r)) for r in rows]
            want = [norm(x) for x in rec['results']]
            bad_types = got_types != want_types
            if bad_types or got != want:
                if rewrite:
                    header = ' '.join(['query', got_types] + toks[2:])
                    if rec['has_results']:
                        edits.append((rec['line'], rec['line'] + 1, [header]))
                        edits.append((rec['res_start'], rec['res_end'], got))
                    else:
                        edits.append((rec['line'], rec['line'] + 1, [header]))
                        edits.append((rec['res_end'], rec['res_end'], ['----'] + got))
                else:
                    msg = f"{loc}: wrong result\n  {rec['sql']}\n"
                    if bad_types:
                        msg += f"  types: expected {want_types} got {got_types}\n"
                    msg += '  expected:\n' + ''.join(f'    {x}\n' for x in want)
                    msg += '  got:\n' + ''.join(f'    {x}\n' for x in got)
                    failures.append(msg)
    finally:
        conn.close()
        admin.execute(f'DROP DATABASE IF EXISTS "{dbname}"')
        admin.close()
    if edits:
        for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
            lines[start:end] = new
        with open(path, 'w', encoding='utf-8') as f:
            f.write('\n'.join(lines))
        print(f'{path}: rewrote {len(edits)} blocks')
    return nrec, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--dsn', default='host=127.0.0.1 port=54329 user=postgres dbname=postgres')
    ap.add_argument('--rewrite', action='store_true')
    ap.add_argument('files', nargs='+')
    a = ap.parse_args()
    total_fail = 0
    for p in a.files:
        nrec, failures = check_file(p, a.dsn, a.rewrite)
        for f in failures:
            print(f)
        print(f'{p}: {nrec} records, {len(failures)} failures')
        total_fail += len(failures)
    sys.exit(1 if total_fail else 0)


if __name__ == '__main__':
    main()
