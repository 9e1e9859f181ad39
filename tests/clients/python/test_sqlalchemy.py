"""SQLAlchemy 2 (PostgreSQL dialect over psycopg 3) against a
PostgreSQL-compatible server (see common.py for the environment).

Declarative models with primary keys, a foreign key, unique constraints,
indexes, server defaults, a serial and an identity column are created with
`metadata.create_all()`, filled and queried through an ORM session, and then
reflected with `inspect(engine)`: the reflected schema must match the
models."""

import datetime as dt
import re
import uuid
from decimal import Decimal

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID
from sqlalchemy.exc import IntegrityError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from common import check, conninfo, eq, expect_sqlstate, main

ENGINE = {}


class Base(DeclarativeBase):
    pass


class Author(Base):
    __tablename__ = "sa_author"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)  # SERIAL
    name: Mapped[str] = mapped_column(String(50), unique=True)
    email: Mapped[str | None] = mapped_column(String(100), index=True)
    active: Mapped[bool] = mapped_column(Boolean, server_default=text("true"))
    created: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    books: Mapped[list["Book"]] = relationship(
        back_populates="author", order_by="Book.id", cascade="all, delete-orphan", passive_deletes=True
    )


class Book(Base):
    __tablename__ = "sa_book"
    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("sa_author.id", ondelete="CASCADE"))
    title: Mapped[str] = mapped_column(Text)
    price: Mapped[Decimal] = mapped_column(Numeric(10, 2), server_default=text("0"))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    meta: Mapped[dict | None] = mapped_column(JSONB)
    uid: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True), server_default=func.gen_random_uuid())
    author: Mapped[Author] = relationship(back_populates="books")
    __table_args__ = (
        UniqueConstraint("author_id", "title", name="uq_book_author_title"),
        Index("ix_book_price_title", "price", "title"),
    )


def step_create_all():
    url = "postgresql+psycopg://{user}@{host}:{port}/{dbname}".format(**conninfo())
    engine = create_engine(url)
    ENGINE["e"] = engine
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    # create_all checks for existing tables first: a second call is a no-op.
    Base.metadata.create_all(engine)


def step_orm_insert_and_query():
    engine = ENGINE["e"]
    with Session(engine) as s:
        ada = Author(name="ada", email="ada@example.com")
        ada.books = [
            Book(title="Notes", price=Decimal("12.50"), tags=["math", "engines"], meta={"year": 1843}),
            Book(title="Letters", meta=None),
        ]
        grace = Author(name="grace")
        grace.books = [Book(title="COBOL", price=Decimal("7.00"), tags=["lang"])]
        s.add_all([ada, grace])
        s.commit()
        eq("serial ids", (ada.id, grace.id), (1, 2))
        eq("identity ids", [b.id for b in ada.books + grace.books], [1, 2, 3])
    with Session(engine) as s:
        a = s.scalars(select(Author).where(Author.name == "ada")).one()
        eq("server default boolean", a.active, True)
        check("server default now()", isinstance(a.created, dt.datetime) and a.created.tzinfo is not None, a.created)
        eq("relationship", [(b.title, b.price, b.tags, b.meta) for b in a.books],
           [("Notes", Decimal("12.50"), ["math", "engines"], {"year": 1843}), ("Letters", Decimal("0.00"), [], None)])
        check("uuid default", all(isinstance(b.uid, uuid.UUID) for b in a.books))
        rows = s.execute(
            select(Author.name, func.count(Book.id), func.sum(Book.price))
            .join(Book)
            .group_by(Author.name)
            .order_by(Author.name)
        ).all()
        eq("join + group by", [tuple(r) for r in rows], [("ada", 2, Decimal("12.50")), ("grace", 1, Decimal("7.00"))])
        eq("array contains", s.scalars(select(Book.title).where(Book.tags.contains(["lang"]))).all(), ["COBOL"])
        eq("jsonb path", s.scalars(select(Book.title).where(Book.meta["year"].astext == "1843")).all(), ["Notes"])
        # update, delete with cascade
        a.email = None
        s.commit()
        eq("update", s.scalar(select(func.count()).select_from(Author).where(Author.email.is_(None))), 2)
        s.delete(s.get(Author, 2))
        s.commit()
        eq("on delete cascade", s.scalar(select(func.count()).select_from(Book)), 2)


def step_errors():
    engine = ENGINE["e"]
    with Session(engine) as s:
        s.add(Author(name="ada"))
        e = expect_sqlstate("unique", "23505", s.commit)
        check("IntegrityError", isinstance(e, IntegrityError), type(e))
        s.rollback()
        s.add(Book(author_id=99, title="orphan"))
        expect_sqlstate("foreign key", "23503", s.commit)
        s.rollback()
        e = expect_sqlstate("unknown table", "42P01", lambda: s.execute(text("SELECT * FROM no_such_table")))
        check("ProgrammingError", isinstance(e, ProgrammingError), type(e))
        s.rollback()
        expect_sqlstate("division by zero", "22012", lambda: s.execute(text("SELECT 1 / :z"), {"z": 0}))
        s.rollback()
        eq("keeps working", s.scalar(select(func.count()).select_from(Author)), 1)


def norm_default(d):
    """A default as the model wrote it: PostgreSQL deparses `'{}'` as
    `'{}'::text[]`; the casts it adds are dropped before comparing."""
    return None if d is None else re.sub(r"::[a-z ]+(\[\])?", "", d)


def step_reflect():
    engine = ENGINE["e"]
    insp = inspect(engine)
    names = insp.get_table_names()
    check("get_table_names", {"sa_author", "sa_book"} <= set(names), names)
    check("has_table", insp.has_table("sa_book") and not insp.has_table("sa_nothing"))
    dialect = engine.dialect
    for table in Base.metadata.sorted_tables:
        cols = {c["name"]: c for c in insp.get_columns(table.name)}
        eq(f"{table.name} column names", list(cols), [c.name for c in table.columns])
        for col in table.columns:
            r = cols[col.name]
            eq(f"{table.name}.{col.name} type", r["type"].compile(dialect), col.type.compile(dialect))
            eq(f"{table.name}.{col.name} nullable", r["nullable"], col.nullable)
        pk = insp.get_pk_constraint(table.name)
        eq(f"{table.name} primary key", pk["constrained_columns"], [c.name for c in table.primary_key.columns])
        eq(f"{table.name} primary key name", pk["name"], f"{table.name}_pkey")
    a = {c["name"]: c for c in insp.get_columns("sa_author")}
    b = {c["name"]: c for c in insp.get_columns("sa_book")}
    # serial: a nextval default, and autoincrement; identity: its options
    # PostgreSQL shows a serial as a nextval default; QubeDB makes serial
    # columns identity columns (BY DEFAULT) and reflects them so.
    check("serial default", a["id"]["default"] == "nextval('sa_author_id_seq'::regclass)"
          or (a["id"].get("identity") is not None and a["id"]["default"] is None), a["id"])
    eq("serial autoincrement", a["id"]["autoincrement"], True)
    check("identity", b["id"].get("identity") is not None and b["id"]["default"] is None, b["id"])
    eq("identity start", b["id"]["identity"]["start"], 1)
    eq("default true", norm_default(a["active"]["default"]), "true")
    eq("default now()", norm_default(a["created"]["default"]), "now()")
    eq("default 0", norm_default(b["price"]["default"]), "0")
    eq("default '{}'", norm_default(b["tags"]["default"]), "'{}'")
    eq("default gen_random_uuid()", norm_default(b["uid"]["default"]), "gen_random_uuid()")
    eq("no default", b["title"]["default"], None)
    fks = insp.get_foreign_keys("sa_book")
    eq("foreign keys", [(f["constrained_columns"], f["referred_table"], f["referred_columns"], f["options"]) for f in fks],
       [(["author_id"], "sa_author", ["id"], {"ondelete": "CASCADE"})])
    eq("foreign key name", fks[0]["name"], "sa_book_author_id_fkey")
    # get_indexes also lists the indexes behind unique constraints, marked
    # with the constraint they duplicate.
    def indexes(t):
        return sorted((i["name"], i["column_names"], i["unique"], i.get("duplicates_constraint")) for i in insp.get_indexes(t))

    eq("author indexes", indexes("sa_author"),
       [("ix_sa_author_email", ["email"], False, None), ("sa_author_name_key", ["name"], True, "sa_author_name_key")])
    eq("book indexes", indexes("sa_book"),
       [("ix_book_price_title", ["price", "title"], False, None),
        ("uq_book_author_title", ["author_id", "title"], True, "uq_book_author_title")])
    eq("author unique constraints", [(u["name"], u["column_names"]) for u in insp.get_unique_constraints("sa_author")],
       [("sa_author_name_key", ["name"])])
    eq("book unique constraints", [(u["name"], u["column_names"]) for u in insp.get_unique_constraints("sa_book")],
       [("uq_book_author_title", ["author_id", "title"])])
    eq("check constraints", insp.get_check_constraints("sa_book"), [])
    check("schema names", "public" in insp.get_schema_names(), insp.get_schema_names())
    # Reflecting into a fresh MetaData gives the same tables back.
    from sqlalchemy import MetaData

    md = MetaData()
    md.reflect(engine, only=["sa_author", "sa_book"])
    eq("reflected columns", [c.name for c in md.tables["sa_book"].columns], [c.name for c in Book.__table__.columns])
    eq("reflected fk target", [fk.target_fullname for fk in md.tables["sa_book"].foreign_keys], ["sa_author.id"])


def step_drop_all():
    engine = ENGINE["e"]
    Base.metadata.drop_all(engine)
    eq("dropped", [n for n in inspect(engine).get_table_names() if n.startswith("sa_")], [])
    engine.dispose()


if __name__ == "__main__":
    main("sqlalchemy", [step_create_all, step_orm_insert_and_query, step_errors, step_reflect, step_drop_all])
