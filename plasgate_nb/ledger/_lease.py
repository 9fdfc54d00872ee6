"""One sender per campaign: a lease row in the ledger, kept alive by a heartbeat, released at the end.

A sender takes its campaign's lease before it resumes, requeues, plans or sends anything, and renews it
from a background thread (every ``ttl / 6`` seconds); the lease expires ``ttl`` seconds after the last
renewal. While it is live, another sender of the campaign is refused with
:class:`~plasgate_nb.errors.CampaignBusy` naming the holder (host, pid, since when), or waits for it.
The lease of a sender that died (kill -9, a power cut) is taken over once it has expired; on the same
machine (same boot and pid namespace), a holder whose process no longer exists is taken over at once.

Every decision reads and writes the lease row inside one ledger write transaction (writers are
serialized), so "is it free?" and "take it" are one atomic step. Times come from PostgreSQL's clock
(one clock for every host sharing the ledger); an SQLite ledger is a local file, so the local clock.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from ..errors import CampaignBusy, LedgerError
from ._rows import as_utc
from ._schema import leases

__all__ = ["DEFAULT_TTL", "Lease", "LeaseHolder", "acquire", "guard", "holder"]

logger = logging.getLogger("plasgate_nb")

DEFAULT_TTL = 30.0  # seconds a lease outlives its last heartbeat
BEATS_PER_TTL = 6  # heartbeats per ttl: a few may be late (a busy disk, a GC pause) before the lease lapses
POLL_S = 0.5  # how often a waiting sender looks again
THREAD_NAME = "plasgate-nb-lease"

Write = Callable[[str], contextlib.AbstractContextManager[sa.Connection]]


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a campaign's lease: host, pid, since when, last heartbeat, expiry (aware UTC)."""

    campaign: str
    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime
    expires_at: datetime
    live: bool

    def describe(self) -> str:
        """One phrase naming the holder: ``host H, pid P, since YYYY-MM-DD HH:MM:SS UTC``."""
        return f"host {self.host}, pid {self.pid}, since {self.since:%Y-%m-%d %H:%M:%S} UTC"


@functools.cache
def machine() -> str | None:
    """This machine's boot and pid namespace (Linux), where a holder's pid can be checked; None elsewhere."""
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return None


def _pid_gone(pid: int) -> bool:
    """True when no process ``pid`` exists here (a process of another user exists)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:
        return False
    return False


def _db_now(conn: sa.Connection) -> datetime:
    """The ledger's clock: PostgreSQL's for a shared server, the local one for an SQLite file."""
    if conn.dialect.name == "postgresql":
        return as_utc(conn.execute(sa.text("SELECT clock_timestamp()")).scalar_one())
    return datetime.now(UTC)


def _is_live(row: Any, now: datetime) -> bool:
    """A lease row is live until it expires, unless its holder's process is gone from this very machine."""
    if as_utc(row.expires_at) <= now:
        return False
    here = machine()
    return not (here is not None and row.machine == here and _pid_gone(row.pid))


def _holder(row: Any, campaign: str, now: datetime) -> LeaseHolder:
    """The row as a LeaseHolder."""
    return LeaseHolder(
        campaign=campaign,
        host=row.host,
        pid=row.pid,
        since=as_utc(row.acquired_at),
        heartbeat_at=as_utc(row.heartbeat_at),
        expires_at=as_utc(row.expires_at),
        live=_is_live(row, now),
    )


def _row(conn: sa.Connection, cid: int) -> Any:
    """The lease row of campaign ``cid``, or None."""
    return conn.execute(sa.select(leases).where(leases.c.campaign_id == cid)).first()


def holder(conn: sa.Connection, cid: int, campaign: str) -> LeaseHolder | None:
    """Who holds campaign ``cid``'s lease (``live`` False once it expired or its process is gone), or None."""
    row = _row(conn, cid)
    return None if row is None else _holder(row, campaign, _db_now(conn))


def busy(found: LeaseHolder, *, waited: float = 0.0) -> CampaignBusy:
    """The error for a sender that found ``found`` holding the campaign (after waiting ``waited`` s)."""
    after = f" after waiting {waited:.0f} s" if waited else ""
    return CampaignBusy(
        f"campaign {found.campaign!r} is being sent by another sender ({found.describe()}){after}; "
        "nothing was done here: rerun later, or pass wait=SECONDS",
        campaign=found.campaign,
        host=found.host,
        pid=found.pid,
        since=found.since,
        waited=waited,
    )


def _take(conn: sa.Connection, cid: int, campaign: str, owner: str, ttl: float) -> LeaseHolder | None:
    """Take campaign ``cid``'s lease for ``owner`` unless another live sender holds it; return that holder."""
    now = _db_now(conn)
    row = _row(conn, cid)
    values = {
        "owner": owner,
        "host": socket.gethostname()[:255],
        "pid": os.getpid(),
        "machine": machine(),
        "acquired_at": now,
        "heartbeat_at": now,
        "expires_at": now + timedelta(seconds=ttl),
    }
    if row is None:
        conn.execute(leases.insert().values(campaign_id=cid, **values))
        return None
    found = _holder(row, campaign, now)
    if found.live:
        return found
    logger.warning(
        "campaign %r: taking over the lease of a sender that stopped (%s, last heartbeat %s UTC)",
        campaign,
        found.describe(),
        f"{found.heartbeat_at:%H:%M:%S}",
    )
    conn.execute(leases.update().where(leases.c.campaign_id == cid).values(**values))
    return None


def guard(conn: sa.Connection, cid: int, campaign: str, owner: str | None) -> None:
    """Let a write to campaign ``cid``'s rows go ahead, or raise CampaignBusy (in that write's transaction).

    ``owner`` is the lease this ledger holds on the campaign (None: it holds none). A holder must still
    hold its lease (it may have lapsed and been taken over while the process stood still); anyone else
    may go ahead only when no live sender holds it (an expired lease is then broken, so its holder, should
    it come back, learns it lost it).
    """
    row = _row(conn, cid)
    if owner is not None:
        if row is not None and row.owner == owner:
            return
        now = _db_now(conn)
        by = f"taken over by another sender ({_holder(row, campaign, now).describe()})" if row else "broken"
        raise CampaignBusy(
            f"campaign {campaign!r}: this sender's lease lapsed and was {by}; it stopped sending "
            "(what it had submitted is settled by the gateway's answers or left uncertain)",
            campaign=campaign,
            host=row.host if row else None,
            pid=row.pid if row else None,
            since=as_utc(row.acquired_at) if row else None,
        )
    if row is None:
        return
    found = _holder(row, campaign, _db_now(conn))
    if found.live:
        raise busy(found)
    logger.warning("campaign %r: breaking the expired lease of %s", campaign, found.describe())
    conn.execute(leases.delete().where(leases.c.campaign_id == cid, leases.c.owner == row.owner))


class Lease:
    """A campaign's lease held by this process, renewed from a background thread until released."""

    def __init__(self, write: Write, campaign: str, cid: int, *, owner: str, ttl: float) -> None:
        """Remember how to write the ledger; call :meth:`start` once the lease row is ours."""
        self.campaign, self.cid, self.owner, self.ttl = campaign, cid, owner, ttl
        self.lost = False
        self._write = write
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=THREAD_NAME, daemon=True)

    def __repr__(self) -> str:
        return f"<Lease on {self.campaign!r} ttl={self.ttl:g}s{' lost' if self.lost else ''}>"

    def start(self) -> None:
        """Start the heartbeat."""
        self._thread.start()

    def renew(self) -> bool:
        """Push the expiry ``ttl`` seconds past now; False (and ``lost``) when another sender took the lease."""
        with self._write("renew lease") as conn:
            now = _db_now(conn)
            renewed = conn.execute(
                leases.update()
                .where(leases.c.campaign_id == self.cid, leases.c.owner == self.owner)
                .values(heartbeat_at=now, expires_at=now + timedelta(seconds=self.ttl))
            ).rowcount
        if not renewed:
            self.lost = True
        return bool(renewed)

    def _beat(self) -> None:
        """Renew every ``ttl / BEATS_PER_TTL`` seconds until stopped or lost."""
        while not self._stop.wait(self.ttl / BEATS_PER_TTL):
            try:
                if not self.renew():
                    logger.error("campaign %r: this sender lost its lease to another sender", self.campaign)
                    return
            except LedgerError as exc:  # a busy or unreachable database: try again at the next beat
                logger.warning("campaign %r: lease heartbeat failed: %s", self.campaign, exc)

    def release(self) -> None:
        """Stop the heartbeat and delete the lease row (if still ours); never raises."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        try:
            with self._write("release lease") as conn:
                conn.execute(leases.delete().where(leases.c.campaign_id == self.cid, leases.c.owner == self.owner))
        except LedgerError as exc:  # it will expire on its own
            logger.warning("campaign %r: could not release the lease (it expires by itself): %s", self.campaign, exc)


def acquire(write: Write, campaign: str, cid: int, *, ttl: float, wait: float) -> Lease:
    """Take campaign ``cid``'s lease (waiting up to ``wait`` seconds for a live holder) and start its heartbeat.

    Raises CampaignBusy naming the holder when it is still live after ``wait`` seconds.
    """
    owner = uuid.uuid4().hex
    started = time.monotonic()
    while True:
        with write("take lease") as conn:
            found = _take(conn, cid, campaign, owner, ttl)
        if found is None:
            break
        waited = time.monotonic() - started
        if waited >= wait:
            raise busy(found, waited=waited if wait else 0.0)
        time.sleep(min(POLL_S, wait - waited))
    lease = Lease(write, campaign, cid, owner=owner, ttl=ttl)
    lease.start()
    return lease
