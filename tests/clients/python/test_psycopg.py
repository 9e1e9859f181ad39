"""psycopg 3 against a PostgreSQL-compatible server (see common.py for the
environment). Connects, creates a table, inserts with parameters in text and
binary formats, reads typed values back through text and binary cursors,
runs transactions, checks SQLSTATEs and that the connection keeps working
after each error, and runs psycopg's own catalog queries (TypeInfo)."""

import datetime as dt
import uuid
from decimal import Decimal

import psycopg
from psycopg import errors
from psycopg.types import TypeInfo
from psycopg.types.json import Jsonb

from common import check, conninfo, eq, expect_sqlstate, main

UTC = dt.timezone.utc
CONN = {}

ROWS = [
    dict(
        id=1,
        big=9_007_199_254_740_993,  # beyond 2^53: exact only as an integer
        num=Decimal("12345.678"),
        t="héllo, 'world'",
        b=True,
        ts=dt.datetime(2024, 2, 29, 12, 34, 56, 789012, tzinfo=UTC),
        d=dt.date(2024, 2, 29),
        raw=b"\x00\x01\xfe\xff",
        u=uuid.UUID("a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11"),
        j={"a": [1, 2.5, None], "b": {"c": "d"}},
        ai=[1, -2, 2147483647],
        at=["x", "y z", 'q"uote', ""],
    ),
    dict(
        id=2,
        big=-1,
        num=Decimal("-0.001"),
        t="",
        b=False,
        ts=dt.datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
        d=dt.date(1970, 1, 1),
        raw=b"",
        u=uuid.UUID("00000000-0000-0000-0000-000000000000"),
        j=[1, "two"],
        ai=[],
        at=["only"],
    ),
]
NULL_ROW = dict(id=3, **{k: None for k in ROWS[0] if k != "id"})
COLS = list(ROWS[0].keys())


def connect(**kw):
    return psycopg.connect(**conninfo(), **kw)


def step_connect():
    conn = connect()
    CONN["c"] = conn
    check("server_version", conn.info.server_version >= 100000, conn.info.server_version)
    eq("client_encoding", conn.info.encoding, "utf-8")
    check("TimeZone", conn.info.parameter_status("TimeZone") is not None)
    check("integer_datetimes", conn.info.parameter_status("integer_datetimes") == "on", conn.info.parameter_status("integer_datetimes"))
    with conn.cursor() as cur:
        cur.execute("SELECT 1 + %s", (41,))
        eq("SELECT 1 + %s", cur.fetchone(), (42,))
        cur.execute("SET TIME ZONE 'UTC'")
    conn.commit()


def step_create():
    conn = CONN["c"]
    with conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS drv_py")
        cur.execute(
            """CREATE TABLE drv_py (
                 id integer PRIMARY KEY, big bigint, num numeric(12, 3), t text,
                 b boolean, ts timestamptz, d date, raw bytea, u uuid, j jsonb,
                 ai integer[], at text[])"""
        )
    conn.commit()


def params(row):
    return [Jsonb(row[c]) if c == "j" and row[c] is not None else row[c] for c in COLS]


def step_insert():
    conn = CONN["c"]
    ph = ", ".join(["%s"] * len(COLS))
    with conn.cursor() as cur:
        # Row 1 with psycopg's own choice of formats, row 2 all binary,
        # row 3 (NULLs) all text.
        cur.execute(f"INSERT INTO drv_py ({', '.join(COLS)}) VALUES ({ph})", params(ROWS[0]))
        eq("rowcount", cur.rowcount, 1)
        phb = ", ".join(["%b"] * len(COLS))
        cur.execute(f"INSERT INTO drv_py VALUES ({phb})", params(ROWS[1]))
        pht = ", ".join(["%t"] * len(COLS))
        cur.execute(f"INSERT INTO drv_py VALUES ({pht})", params(NULL_ROW))
    conn.commit()


def check_rows(label, rows):
    eq(f"{label}: row count", len(rows), 3)
    for want, got in zip(ROWS + [NULL_ROW], rows):
        for c, g in zip(COLS, got):
            eq(f"{label}: row {want['id']} column {c}", g, want[c])


def step_read_text_and_binary():
    conn = CONN["c"]
    sql = f"SELECT {', '.join(COLS)} FROM drv_py ORDER BY id"
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(sql)
            label = "binary" if binary else "text"
            check_rows(label, cur.fetchall())
            # The result's formats are what was asked for.
            eq(f"{label}: result format", cur.pgresult.fformat(0), 1 if binary else 0)
            eq(f"{label}: description", [d.name for d in cur.description], COLS)
    # Parameters in WHERE, also in binary, and a prepared statement reused.
    with conn.cursor(binary=True) as cur:
        for i in range(1, 8):
            cur.execute("SELECT id, big FROM drv_py WHERE id = %b AND big IS NOT NULL", (1 + i % 2,), prepare=True)
            want = ROWS[i % 2]
            eq("prepared select", cur.fetchone(), (want["id"], want["big"]))
        cur.execute("SELECT count(*) FROM drv_py WHERE u = %s", (ROWS[0]["u"],))
        eq("uuid parameter", cur.fetchone(), (1,))
        cur.execute("SELECT count(*) FROM drv_py WHERE ts < %s", (dt.datetime(2000, 1, 1, tzinfo=UTC),))
        eq("timestamptz parameter", cur.fetchone(), (1,))
        cur.execute("SELECT j -> 'b' ->> 'c', ai[3], at[2] FROM drv_py WHERE id = 1")
        eq("jsonb/array operators", cur.fetchone(), ("d", 2147483647, "y z"))
    conn.commit()


def step_transactions():
    conn = CONN["c"]
    with conn.cursor() as cur:
        cur.execute("INSERT INTO drv_py (id, t) VALUES (10, 'rolled back')")
        conn.rollback()
        cur.execute("SELECT count(*) FROM drv_py WHERE id = 10")
        eq("after rollback", cur.fetchone(), (0,))
        with conn.transaction():
            cur.execute("INSERT INTO drv_py (id, t) VALUES (11, 'committed')")
            with conn.transaction():  # a savepoint
                cur.execute("INSERT INTO drv_py (id, t) VALUES (12, 'savepoint')")
                raise_inner = False
            try:
                with conn.transaction():
                    cur.execute("INSERT INTO drv_py (id, t) VALUES (13, 'to be undone')")
                    raise_inner = True
                    raise psycopg.Rollback()
            finally:
                check("inner rollback ran", raise_inner)
        conn.commit()
    other = connect(autocommit=True)
    with other.cursor() as cur:
        cur.execute("SELECT id FROM drv_py WHERE id >= 10 ORDER BY id")
        eq("committed rows seen by another connection", cur.fetchall(), [(11,), (12,)])
    other.close()


def step_errors():
    conn = CONN["c"]
    cur = conn.cursor()
    e = expect_sqlstate("duplicate key", "23505", lambda: cur.execute("INSERT INTO drv_py (id) VALUES (1)"))
    check("UniqueViolation class", isinstance(e, errors.UniqueViolation), type(e))
    eq("transaction failed", conn.info.transaction_status, psycopg.pq.TransactionStatus.INERROR)
    expect_sqlstate("in failed transaction", "25P02", lambda: cur.execute("SELECT 1"))
    conn.rollback()
    cur.execute("SELECT count(*) FROM drv_py")
    eq("works after rollback", cur.fetchone(), (5,))
    conn.rollback()
    e = expect_sqlstate("unknown table", "42P01", lambda: cur.execute("SELECT * FROM no_such_table"))
    check("UndefinedTable class", isinstance(e, errors.UndefinedTable), type(e))
    conn.rollback()
    e = expect_sqlstate("division by zero", "22012", lambda: cur.execute("SELECT 1 / %s", (0,)))
    check("DivisionByZero class", isinstance(e, errors.DivisionByZero), type(e))
    conn.rollback()
    expect_sqlstate("syntax error", "42601", lambda: cur.execute("SELEC 1"))
    conn.rollback()
    expect_sqlstate("bad integer text", "22P02", lambda: cur.execute("SELECT %s::int", ("x1",)))
    conn.rollback()
    # In autocommit each statement is its own transaction.
    ac = connect(autocommit=True)
    with ac.cursor() as c2:
        expect_sqlstate("autocommit duplicate", "23505", lambda: c2.execute("INSERT INTO drv_py (id) VALUES (2)"))
        c2.execute("SELECT max(id) FROM drv_py")
        eq("autocommit keeps working", c2.fetchone(), (12,))
    ac.close()
    cur.execute("SELECT 'still fine'")
    eq("connection usable", cur.fetchone(), ("still fine",))
    conn.commit()


def step_type_info():
    conn = CONN["c"]
    # psycopg's catalog queries: TypeInfo.fetch reads pg_type through
    # ::regtype, as register_* helpers and array adaptation do.
    for name, oid, array_oid in [
        ("int4", 23, 1007),
        ("int8", 20, 1016),
        ("text", 25, 1009),
        ("uuid", 2950, 2951),
        ("jsonb", 3802, 3807),
        ("numeric", 1700, 1231),
        ("timestamptz", 1184, 1185),
    ]:
        info = TypeInfo.fetch(conn, name)
        check(f"TypeInfo {name}", info is not None, "not found")
        eq(f"TypeInfo {name} oid", info.oid, oid)
        eq(f"TypeInfo {name} array_oid", info.array_oid, array_oid)
        eq(f"TypeInfo {name} name", info.name, name)
    info = TypeInfo.fetch(conn, "timestamp with time zone")
    eq("TypeInfo by SQL name", info.oid, 1184)
    eq("TypeInfo unknown", TypeInfo.fetch(conn, "no_such_type"), None)
    conn.rollback()
    with conn.cursor() as cur:
        cur.execute("SELECT %s::regtype::oid, 'int4'::regtype::text", ("bigint",))
        eq("regtype", cur.fetchone(), (20, "integer"))
    conn.rollback()


def step_close():
    conn = CONN["c"]
    with conn.cursor() as cur:
        cur.execute("DROP TABLE drv_py")
    conn.commit()
    conn.close()
    check("closed", conn.closed)


if __name__ == "__main__":
    main(
        "psycopg",
        [
            step_connect,
            step_create,
            step_insert,
            step_read_text_and_binary,
            step_transactions,
            step_errors,
            step_type_info,
            step_close,
        ],
    )
