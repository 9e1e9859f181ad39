"""Shared helpers of the Python client tests.

The server to test comes from the environment (the Rust driver test sets
these; to run a client by hand against PostgreSQL set them yourself):

    QUBEDB_TEST_HOST  (default 127.0.0.1)
    QUBEDB_TEST_PORT  (required)
    QUBEDB_TEST_USER  (default qubedb)
    QUBEDB_TEST_DB    (default qubedb)

A failed check raises `Mismatch` with what differed; `main` prints it and
exits 1. Every check that ran is counted and reported at the end.
"""

import os
import sys
import traceback


class Mismatch(AssertionError):
    pass


CHECKS = [0]


def conninfo():
    port = os.environ.get("QUBEDB_TEST_PORT")
    if not port:
        raise SystemExit("QUBEDB_TEST_PORT is not set")
    return dict(
        host=os.environ.get("QUBEDB_TEST_HOST", "127.0.0.1"),
        port=int(port),
        user=os.environ.get("QUBEDB_TEST_USER", "qubedb"),
        dbname=os.environ.get("QUBEDB_TEST_DB", "qubedb"),
    )


def eq(what, got, want):
    """Checks got == want, and the Python type too (1 == True == 1.0)."""
    CHECKS[0] += 1
    if got != want or type(got) is not type(want):
        raise Mismatch(f"{what}: got {got!r} ({type(got).__name__}), want {want!r} ({type(want).__name__})")


def check(what, cond, detail=""):
    CHECKS[0] += 1
    if not cond:
        raise Mismatch(f"{what}: {detail}")


def expect_sqlstate(what, sqlstate, fn):
    """Runs fn, which must fail with an error carrying `sqlstate`."""
    CHECKS[0] += 1
    try:
        fn()
    except Exception as e:  # noqa: BLE001 - drivers raise their own classes
        got = getattr(e, "sqlstate", None) or getattr(getattr(e, "orig", None), "sqlstate", None)
        if got != sqlstate:
            raise Mismatch(f"{what}: want SQLSTATE {sqlstate}, got {got!r} from {type(e).__name__}: {e}") from e
        return e
    raise Mismatch(f"{what}: want SQLSTATE {sqlstate}, but it succeeded")


def main(name, steps):
    """Runs each step (a function) in order; exits 1 at the first failure."""
    for step in steps:
        try:
            step()
        except Exception:  # noqa: BLE001
            print(f"{name}: FAILED in {step.__name__}", file=sys.stderr)
            traceback.print_exc()
            sys.exit(1)
        print(f"{name}: {step.__name__} ok")
    print(f"{name}: all {len(steps)} steps passed ({CHECKS[0]} checks)")
