"""The partition machinery of the Dask campaign stages: a campaign's spec, running partitions in order, the survey.

Shared by :mod:`plasgate_nb._dask._campaign` (plan, send, collect): what a worker needs of a campaign
(:class:`Spec`, shipped by value: no gateway, no credentials, no live connection), partitions computed in
order a few ahead on the cluster (:func:`each_partition`), the survey that checks every partition and
finds the keys and numbers occurring in more than one row (:func:`survey`), the repeat state handed from
partition to partition (:class:`Earlier`), and reads of the ledger rows of one partition's keys
(:func:`scoped_messages`, :class:`KeyedLedger`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import pyarrow as pa

from .._keys import message_keys
from .._masking import content_digest
from ..batch import iter_requests
from ..errors import AudienceError
from ..ledger import Ledger
from ..ledger._arrow import from_frame
from ..ledger._frames import INT_COLUMNS, MESSAGE_COLUMNS, TIME_COLUMNS, _in_list, _sql
from ..ledger._schema import messages
from . import require_dask

if TYPE_CHECKING:
    from ..campaign import Campaign

__all__ = [
    "AHEAD",
    "Earlier",
    "KeyedLedger",
    "Spec",
    "Survey",
    "campaign_spec",
    "candidates",
    "cluster_client",
    "dask_module",
    "each_partition",
    "held_keys",
    "scoped_messages",
    "sendable_rows",
    "states_of",
    "survey",
]

CHUNK = 30_000  # keys per IN list of a scoped ledger read (SQLite allows 32,766 variables)
AHEAD = 2  # partitions computed ahead of the one being worked on
_SHOWN = 10


# ------------------------------------------------------------------------------------------- the spec
@dataclass(frozen=True)
class Spec:
    """What a worker needs of a campaign (no gateway, no credentials, no live connection): shipped by value.

    ``key`` is the id column (None: the index), as :meth:`Campaign._rows` reads it from its campaign.
    """

    name: str
    url: str = field(repr=False)  # may hold a database password: never in a repr, a log or a task's error
    key: str | None = None
    sender: str = ""
    path: str = "batch"
    options: dict[str, Any] = field(default_factory=dict)
    allow_repeat: bool = False


def campaign_spec(campaign: Campaign, *, allow_repeat: bool = False) -> Spec:
    """The spec of ``campaign``, refusing a ledger the workers cannot open."""
    path = "single" if campaign.transport == "smpp" else campaign.transport
    options = {"max_recipients": campaign.max_recipients} if path == "batch" else {}
    return Spec(campaign.name, campaign.ledger.url, campaign.key, campaign.gateway.sender, path, options, allow_repeat)


def sendable_rows(spec: Spec, part: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """The partition's sendable rows as ledger rows and its audience skips (as the pandas path makes them)."""
    from ..campaign import Campaign

    return Campaign._rows(spec, part)  # type: ignore[arg-type]  # _rows reads only .key


def held_keys(spec: Spec, part: pd.DataFrame, rows: pd.DataFrame) -> set[str]:
    """Keys of the partition's sendable rows in the A/B holdout."""
    from ..campaign import Campaign

    return Campaign._holdout(spec, part, rows)  # type: ignore[arg-type]  # _holdout reads only .key


def hash_texts(values: Any) -> np.ndarray:
    """64-bit hashes of text values (equal texts, equal hashes)."""
    return pd.util.hash_array(np.asarray(values, dtype=object), categorize=False)


# ------------------------------------------------------------------------------------------ running
def dask_module() -> Any:
    """The ``dask`` package (``delayed``, ``compute``), or ConfigError saying how to install it."""
    require_dask()
    import dask

    return dask


_LOCAL = frozenset({"sync", "synchronous", "single-threaded", "threads", "threading", "processes", "multiprocessing"})


def cluster_client() -> Any:
    """The distributed Client in use, or None (then partitions are computed in this process, in order).

    A local scheduler chosen with ``dask.config.set(scheduler=...)`` is honoured over a running Client.
    """
    try:
        from distributed import default_client
    except ImportError:  # pragma: no cover - [dask] installs distributed
        return None
    if dask_module().config.get("scheduler", None) in _LOCAL:
        return None
    try:
        return default_client()
    except ValueError:
        return None


def each_partition(parts: Sequence[Any], func: Any, *args: Any, ahead: int = AHEAD) -> Iterator[Any]:
    """Yield ``func(partition, *args)`` for each partition in order, ``ahead`` computed in advance on the workers."""
    dask = dask_module()
    client = cluster_client()
    if client is None:
        for part in parts:
            yield func(part.compute(), *args)
        return
    yield from in_order((client.compute(dask.delayed(func, pure=False)(part, *args)) for part in parts), ahead)


def in_order(futures: Iterable[Any], ahead: int) -> Iterator[Any]:
    """Yield the results of ``futures`` in order, taking at most ``ahead`` more of them before each result.

    ``futures`` is lazy (each taken is submitted then); those not yet yielded are cancelled when the caller
    stops early or fails.
    """
    waiting: deque[Any] = deque()
    try:
        for future in futures:
            waiting.append(future)
            if len(waiting) > ahead:
                yield waiting.popleft().result()
        while waiting:
            yield waiting.popleft().result()
    finally:
        for future in waiting:
            future.cancel()


# ------------------------------------------------------------------------------------------- survey
@dataclass
class Survey:
    """What the survey learnt of the whole frame: its sendable rows and the numbers that occur twice."""

    rows: int = 0
    repeated: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))

    def tracked(self, rows: pd.DataFrame) -> np.ndarray:
        """A mask of ``rows`` whose number occurs in more than one row of the frame (may repeat another row)."""
        if not len(self.repeated) or not len(rows):
            return np.zeros(len(rows), dtype=bool)
        return np.isin(hash_texts(rows["msisdn"].to_numpy()), self.repeated)


def survey_part(part: pd.DataFrame, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """Check one partition as the pandas path checks a frame; return hashes of its keys and numbers."""
    from ..ledger._rows import plan_rows

    keys = message_keys(part, spec.key)  # keys unique within the partition, none missing
    rows, _ = sendable_rows(spec, part)
    plan_rows(rows)  # numbers, texts and keys the ledger takes
    # the requests are validated as they would be sent (iter_requests checks every row before it returns);
    # they are built when sent, not here
    iter_requests(rows[["message_key", "msisdn", "content"]], sender=spec.sender, path=spec.path, **spec.options)
    return hash_texts(keys.to_numpy()), hash_texts(rows["msisdn"].to_numpy())


def keys_among(part: pd.DataFrame, spec: Spec, hashes: np.ndarray, number: int) -> pd.DataFrame:
    """The rows of a partition whose key hash is in ``hashes``: key, row label and partition number."""
    keys = message_keys(part, spec.key)
    hit = np.isin(hash_texts(keys.to_numpy()), hashes)
    return pd.DataFrame({"key": keys.to_numpy()[hit], "row": part.index[hit], "partition": number})


def survey(ddf: Any, spec: Spec) -> Survey:
    """Check every partition (in parallel) and find the keys and numbers that occur in more than one row.

    Raises what the pandas path raises for an invalid row, and AudienceError naming keys that occur in
    more than one partition, before anything is written.
    """
    parts = ddf.to_delayed()
    keys: list[np.ndarray] = []
    numbers: list[np.ndarray] = []
    for part_keys, part_numbers in each_partition(parts, survey_part, spec, ahead=len(parts)):
        keys.append(part_keys)
        numbers.append(part_numbers)
    out = Survey(rows=sum(len(n) for n in numbers))
    repeated_keys = repeated_values(keys)
    if len(repeated_keys):
        refuse_repeated_keys(parts, spec, repeated_keys)
    out.repeated = repeated_values(numbers)
    return out


def repeated_values(arrays: list[np.ndarray]) -> np.ndarray:
    """The values that occur more than once across ``arrays``, sorted; the list is emptied as it is joined.

    One joined copy sorted in place (8 bytes a row at most beside the pieces, which go as they are
    joined), not ``np.unique`` with counts (a sorted copy, its counts and its uniques: some 32 bytes a row
    more, which at 10,000,000 rows was the client's peak).
    """
    if not arrays:
        return np.empty(0, dtype=np.uint64)
    joined = np.concatenate(arrays)
    arrays.clear()
    joined.sort()
    return np.unique(joined[1:][joined[1:] == joined[:-1]])


def refuse_repeated_keys(parts: Sequence[Any], spec: Spec, hashes: np.ndarray) -> None:
    """Raise AudienceError naming keys that occur in more than one partition (hash collisions aside)."""
    dask = dask_module()
    pieces = [dask.delayed(keys_among)(part, spec, hashes, i) for i, part in enumerate(parts)]
    hits = pd.concat(dask.compute(*pieces), ignore_index=True)
    dup = hits[hits["key"].duplicated(keep=False)]
    if dup.empty:
        return
    where = "the frame's index" if spec.key is None else f"key column {spec.key!r}"
    shown = sorted(set(dup["key"]))[:_SHOWN]
    places = ", ".join(f"{r!r} (partition {p})" for r, p in zip(dup["row"], dup["partition"], strict=True))
    raise AudienceError(
        f"{where} has duplicate values {shown} across partitions (rows {places}); message keys must be "
        "unique (101, 101.0 and '101' are one key): pick a unique column with key= (a Dask frame read "
        "from several files numbers each file's rows from 0)"
    )


# ------------------------------------------------------------------------------------------- repeats
@dataclass
class Earlier:
    """The first key of each (number, text digest) pair of the tracked numbers, over the partitions so far."""

    repeated: np.ndarray
    pairs: dict[tuple[str, str], str] = field(default_factory=dict)

    def advance(self, rows: pd.DataFrame, same_as: dict[str, str]) -> None:
        """Take in a planned partition's candidate rows (still to send) whose number occurs twice."""
        for key, msisdn, content in zip(rows["message_key"], rows["msisdn"], rows["content"], strict=True):
            self.pairs.setdefault((str(msisdn), content_digest(content)), same_as.get(key, key))


def candidates(rows: pd.DataFrame, tracked: np.ndarray, known: dict[str, str]) -> pd.DataFrame:
    """The tracked rows still to send (new, or planned), the ones the repeat rule judges."""
    mine = rows[tracked]
    still = np.array([known.get(key, "planned") == "planned" for key in mine["message_key"]], dtype=bool)
    return mine.loc[still]


# ------------------------------------------------------------------------------------- scoped reads
def scoped_messages(
    ledger: Ledger, campaign: str, names: list[str], keys: Sequence[str], state: str | None
) -> pd.DataFrame:
    """``names`` of the messages of ``campaign`` among ``keys`` (in ``state`` when given), in plan order.

    Looked up through the ledger's unique (campaign, key) index, a few thousand keys per statement.
    """
    cols = ["message_key", *[n for n in names if n != "message_key"]]
    found: list[tuple[Any, ...]] = []
    with ledger._read("read messages") as conn:
        cid = ledger._cid(conn, campaign)
        keys = list(keys) if cid is not None else []
        for start in range(0, len(keys), CHUNK):
            cond, params = _in_list(conn, "message_key", keys[start : start + CHUNK])
            sql = _sql(
                conn, f"SELECT id, state, {', '.join(cols)} FROM {messages.name} WHERE campaign_id = ? AND {cond}"
            )
            found += conn.exec_driver_sql(sql, (cid, *params)).cursor.fetchall()
    found.sort(key=lambda row: row[0])
    # the state is tested here, not in SQL: there the (campaign, state) index could be taken over the key's
    rows = [row[2:] for row in found if state is None or row[1] == state]
    frame = pd.DataFrame.from_records(rows, columns=cols, coerce_float=False)
    for name in cols:  # the types the ledger's own reads give
        if name in TIME_COLUMNS:
            frame[name] = pd.to_datetime(frame[name], utc=True, format="ISO8601").astype("datetime64[us, UTC]")
        elif name in INT_COLUMNS:
            frame[name] = frame[name].astype("Int64")
    return frame


def states_of(ledger: Ledger, campaign: str, keys: Sequence[str]) -> dict[str, str]:
    """The state of each of ``keys`` the ledger holds for ``campaign``."""
    if not len(keys):
        return {}
    frame = scoped_messages(ledger, campaign, ["state"], list(keys), None)
    return dict(zip(frame["message_key"], frame["state"], strict=True))


class KeyedLedger(Ledger):
    """A ledger whose reads of a campaign's messages cover only ``keys``: one partition's ``collect``."""

    def __init__(self, url: str, keys: Sequence[str]) -> None:
        super().__init__(url)
        self._keys = list(keys)

    def messages(self, campaign: str, *, columns: Any = None) -> pd.DataFrame:
        """The messages of ``campaign`` among this ledger's keys."""
        return scoped_messages(self, campaign, list(columns or MESSAGE_COLUMNS), self._keys, None)

    def read_columns(self, campaign: str, columns: Any) -> pd.DataFrame:
        """``message_key`` and ``columns`` of the messages of ``campaign`` among this ledger's keys."""
        return self.messages(campaign, columns=list(columns))

    def read_arrow(self, campaign: str, columns: Any, *, state: str | None = None) -> pa.Table:
        """``message_key`` and ``columns`` of the messages of ``campaign`` among this ledger's keys, as Arrow."""
        names = ["message_key", *(c for c in dict.fromkeys(columns) if c != "message_key")]
        return from_frame(scoped_messages(self, campaign, names, self._keys, state), names)

    def pending(self, campaign: str) -> pd.DataFrame:
        """The ``planned`` messages of ``campaign`` among this ledger's keys."""
        names = ["message_key", "msisdn", "content_hash", "content_report", "encoding", "segments", "attempts"]
        return scoped_messages(self, campaign, names, self._keys, "planned")
