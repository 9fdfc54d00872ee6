"""The ledger's tables, schema version and database engines (SQLite file by default, PostgreSQL by URL).

Writers are serialized so that several processes (the sender and the callback receiver) can share one
ledger safely: on SQLite every write transaction starts with ``BEGIN IMMEDIATE`` (WAL mode, busy
timeout), on PostgreSQL with a transaction-scoped advisory lock keyed on the current schema.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from .._keys import DIGEST_LENGTH, key_digest
from .._masking import REPORT_MASK, content_digest
from ..errors import LedgerError

logger = logging.getLogger("plasgate_nb")

SCHEMA_VERSION = 6  # 1: campaigns, messages, events; 2: + replies; 3: + part_ids, digests of report views;
# 4: + settings, suppressions; 5: + key_digest (callback URLs name a row by the digest of its key); 6: + leases
DEFAULT_PATH = "plasgate_nb.db"
BUSY_TIMEOUT_S = 60.0
WRITE_OPTION = "plasgate_write"
_PG_LOCK_CLASS = 0x504C4753  # "PLGS": the advisory-lock namespace of plasgate_nb ledgers

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

meta = sa.Table(
    "plasgate_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(200), nullable=False),
)

campaigns = sa.Table(
    "plasgate_campaigns",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("name", sa.String(200), nullable=False, unique=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("callback_token", sa.String(100), nullable=False),
)

messages = sa.Table(
    "plasgate_messages",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("plasgate_campaigns.id"), nullable=False),
    sa.Column("message_key", sa.String, nullable=False),
    sa.Column("msisdn", sa.String(32), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    sa.Column("content_report", sa.Text, nullable=True),
    sa.Column("encoding", sa.String(16), nullable=True),
    sa.Column("segments", sa.Integer, nullable=True),
    sa.Column("batch_id", sa.String, nullable=True),
    sa.Column("queue_id", sa.String, nullable=True),
    sa.Column("message_id", sa.String, nullable=True),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("response_status", sa.Integer, nullable=True),
    sa.Column("response_body", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False),
    sa.Column("updated_at", TS, nullable=False),
    sa.Column("submitted_at", TS, nullable=True),
    sa.Column("delivery_status", sa.String(16), nullable=True),
    sa.Column("delivery_level1_status", sa.String(40), nullable=True),
    sa.Column("delivered_at", TS, nullable=True),
    sa.Column("done_at", TS, nullable=True),
    sa.Column("error_code", sa.String(40), nullable=True),
    sa.Column("part_ids", sa.Text, nullable=True),  # SMPP: the message ids of a long message's parts, comma-separated
    sa.Column("key_digest", sa.String(DIGEST_LENGTH), nullable=True),  # what callback URLs carry for the key
    sa.UniqueConstraint("campaign_id", "message_key", name="uq_plasgate_messages_key"),
    sa.Index("ix_plasgate_messages_campaign", "campaign_id"),  # lets "WHERE campaign ORDER BY id" skip a sort
    sa.Index("ix_plasgate_messages_state", "campaign_id", "state"),
    sa.Index("ix_plasgate_messages_msisdn", "campaign_id", "msisdn"),
    sa.Index("ix_plasgate_messages_message_id", "message_id"),
    sa.Index("ix_plasgate_messages_key_digest", "campaign_id", "key_digest"),
)

events = sa.Table(
    "plasgate_events",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String, nullable=False, unique=True),
    sa.Column("campaign_id", sa.Integer, nullable=True),
    sa.Column("message_row", sa.Integer, nullable=True),
    sa.Column("message_id", sa.String, nullable=True),
    sa.Column("source", sa.String(16), nullable=False),
    sa.Column("level", sa.Integer, nullable=True),
    sa.Column("status", sa.String(40), nullable=False),
    sa.Column("err", sa.String(64), nullable=True),
    sa.Column("done_at", TS, nullable=True),
    sa.Column("received_at", TS, nullable=False),
    sa.Column("raw", sa.JSON, nullable=False),
    sa.Index("ix_plasgate_events_row", "message_row"),
    sa.Index("ix_plasgate_events_message_id", "message_id"),
    sa.Index("ix_plasgate_events_campaign", "campaign_id"),
)


REPLY_TEXT_MAX = 1600  # characters kept of a reply (ten concatenated SMS parts and more)

replies = sa.Table(
    "plasgate_replies",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("plasgate_campaigns.id"), nullable=True),
    sa.Column("msisdn", sa.String(32), nullable=False),
    sa.Column("destination", sa.String(32), nullable=False),
    sa.Column("text", sa.String(REPLY_TEXT_MAX), nullable=False),
    sa.Column("data_coding", sa.Integer, nullable=True),
    sa.Column("received_at", TS, nullable=False),
    sa.Index("ix_plasgate_replies_campaign", "campaign_id"),
)

settings = sa.Table(  # ledger-wide settings every process sharing the ledger must agree on (e.g. keywords)
    "plasgate_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.JSON, nullable=False),
)

suppressions = sa.Table(  # one row per number ever suppressed; ``active`` false once it opted back in
    "plasgate_suppressions",
    metadata,
    sa.Column("msisdn", sa.String(32), primary_key=True),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("since", TS, nullable=False),  # when the current state began (the reply's time for replies)
    sa.Column("source", sa.String(16), nullable=False),  # "reply" or "manual"
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("plasgate_campaigns.id"), nullable=True),
    sa.Column("text", sa.String(200), nullable=True),  # the reply (cut), or the reason given
    sa.Index("ix_plasgate_suppressions_active", "active"),
)


leases = sa.Table(
    "plasgate_leases",
    metadata,
    # one row per campaign being sent: the sender holding it (see _lease.py); deleted when it lets go
    sa.Column("campaign_id", sa.Integer, sa.ForeignKey("plasgate_campaigns.id"), primary_key=True),
    sa.Column("owner", sa.String(64), nullable=False),  # random per lease: tells two senders of one process apart
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("machine", sa.String(200), nullable=True),  # boot id and pid namespace: where ``pid`` can be checked
    sa.Column("acquired_at", TS, nullable=False),
    sa.Column("heartbeat_at", TS, nullable=False),
    sa.Column("expires_at", TS, nullable=False),
)


def resolve_url(url: str | Path | None) -> URL:
    """Turn ``None``, a path or a database URL into a SQLAlchemy URL (psycopg 3 for PostgreSQL)."""
    if url is None:
        url = Path(DEFAULT_PATH)
    if isinstance(url, Path) or "://" not in str(url):
        return URL.create("sqlite", database=str(Path(url).expanduser().resolve()))
    try:
        parsed = make_url(str(url))
    except sa.exc.ArgumentError as exc:
        raise LedgerError("the ledger URL is not a valid database URL") from exc
    backend, _, driver = parsed.drivername.partition("+")
    if backend == "postgresql" and driver in ("", "psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and driver in ("", "pysqlite"):
        if parsed.database in (None, "", ":memory:"):
            raise LedgerError("an in-memory SQLite ledger cannot be shared; give a file path")
        return parsed.set(database=str(Path(parsed.database).expanduser().resolve()))
    raise LedgerError(f"unsupported ledger database {parsed.drivername!r}: use a SQLite path or postgresql://")


def redacted(url: URL) -> str:
    """Render ``url`` with its password (and any password-like query value) hidden."""
    hidden = {k: "***" for k in url.query if "pass" in k.lower() or "secret" in k.lower()}
    return (
        url.update_query_dict(hidden).render_as_string(hide_password=True)
        if hidden
        else url.render_as_string(hide_password=True)
    )


def _sqlite_engine(url: URL) -> Engine:
    """An SQLite engine: WAL, busy timeout, autocommit driver with explicit BEGIN [IMMEDIATE]."""
    engine = sa.create_engine(
        url,
        hide_parameters=True,
        connect_args={"timeout": BUSY_TIMEOUT_S, "isolation_level": None, "check_same_thread": False},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, record: Any) -> None:
        """Set WAL mode, the busy timeout, full fsync on commit and foreign keys on each connection."""
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = FULL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        """Start write transactions with BEGIN IMMEDIATE (take the write lock now, wait if busy)."""
        write = conn.get_execution_options().get(WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def make_engine(url: URL) -> Engine:
    """Create the engine for ``url`` (parameters never rendered into error messages)."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url)
    return sa.create_engine(url, hide_parameters=True, pool_pre_ping=True)


def lock_writers(conn: sa.Connection) -> None:
    """Serialize writers on PostgreSQL (SQLite already holds its write lock from BEGIN IMMEDIATE)."""
    if conn.dialect.name == "postgresql":
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:cls, hashtext(current_schema()))"), {"cls": _PG_LOCK_CLASS})


def create_schema(conn: sa.Connection) -> None:
    """Create a new ledger's tables, or check an existing one's schema version and upgrade an older one.

    Runs inside a write transaction: concurrent openers take turns, and a failed upgrade changes nothing.
    """
    meta.create(conn, checkfirst=True)
    row = conn.execute(sa.select(meta.c.value).where(meta.c.key == "schema_version")).first()
    if row is None:
        metadata.create_all(conn, checkfirst=True)
        conn.execute(meta.insert().values(key="schema_version", value=str(SCHEMA_VERSION)))
        logger.info("created plasgate_nb ledger schema version %d", SCHEMA_VERSION)
        return
    try:
        found = int(row.value)
    except ValueError as exc:
        raise LedgerError(f"the ledger has an unreadable schema version {row.value!r}") from exc
    if found > SCHEMA_VERSION:
        raise LedgerError(
            f"the ledger has schema version {found}, newer than this plasgate_nb supports "
            f"({SCHEMA_VERSION}); upgrade plasgate_nb"
        )
    if found < SCHEMA_VERSION:
        _migrate(conn, found)


def _add_replies(conn: sa.Connection) -> None:
    """Version 1 -> 2: the ``plasgate_replies`` table (mobile-originated messages)."""
    replies.create(conn, checkfirst=True)


def _part_ids_and_masked_digests(conn: sa.Connection) -> None:
    """Version 2 -> 3: the ``part_ids`` column; digests of masked texts taken from their report view.

    Version 2 kept the SHA-256 of the unmasked text, from which a short masked value (an OTP) can be
    recovered; the report view (masked areas as ``******``) is what version 3 digests, and it is stored.
    """
    conn.exec_driver_sql(f"ALTER TABLE {messages.name} ADD COLUMN part_ids TEXT")
    masked = conn.execute(
        sa.select(messages.c.id, messages.c.content_report).where(messages.c.content_report.contains(REPORT_MASK))
    ).all()
    if masked:
        conn.execute(
            messages.update().where(messages.c.id == sa.bindparam("b_id")).values(content_hash=sa.bindparam("b_hash")),
            [{"b_id": rid, "b_hash": content_digest(view)} for rid, view in masked],
        )
        logger.info("ledger upgrade: %d digests of masked texts now cover their report view only", len(masked))


def _add_suppressions(conn: sa.Connection) -> None:
    """Version 3 -> 4: the ``plasgate_settings`` and ``plasgate_suppressions`` tables (opt-out list)."""
    settings.create(conn, checkfirst=True)
    suppressions.create(conn, checkfirst=True)


def _key_digests(conn: sa.Connection) -> None:
    """Version 4 -> 5: the ``key_digest`` column (and its index), filled for the rows already planned."""
    conn.exec_driver_sql(f"ALTER TABLE {messages.name} ADD COLUMN key_digest VARCHAR({DIGEST_LENGTH})")
    keys = conn.execute(sa.select(messages.c.id, messages.c.message_key)).all()
    if keys:
        conn.execute(
            messages.update().where(messages.c.id == sa.bindparam("b_id")).values(key_digest=sa.bindparam("b_digest")),
            [{"b_id": rid, "b_digest": key_digest(key)} for rid, key in keys],
        )
    conn.exec_driver_sql(f"CREATE INDEX ix_plasgate_messages_key_digest ON {messages.name} (campaign_id, key_digest)")
    logger.info("ledger upgrade: %d message keys digested for callback routing", len(keys))


def _add_leases(conn: sa.Connection) -> None:
    """Version 5 -> 6: the ``plasgate_leases`` table (one sender per campaign)."""
    leases.create(conn, checkfirst=True)


_MIGRATIONS = {
    1: _add_replies,
    2: _part_ids_and_masked_digests,
    3: _add_suppressions,
    4: _key_digests,
    5: _add_leases,
}  # from version N to N + 1


def _migrate(conn: sa.Connection, found: int) -> None:
    """Bring a ledger of schema version ``found`` up to SCHEMA_VERSION, one step at a time, in this transaction."""
    for version in range(found, SCHEMA_VERSION):
        step = _MIGRATIONS.get(version)
        if step is None:
            raise LedgerError(f"the ledger has schema version {found}, which this plasgate_nb cannot upgrade")
        step(conn)
    conn.execute(meta.update().where(meta.c.key == "schema_version").values(value=str(SCHEMA_VERSION)))
    logger.info("upgraded the plasgate_nb ledger schema from version %d to %d", found, SCHEMA_VERSION)
