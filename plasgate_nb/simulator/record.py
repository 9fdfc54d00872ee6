"""The simulator's record of accepted messages, kept compact: 10,000,000 messages fit in about 600 MB.

Python objects per message cost about 900 bytes (a ``Submission`` with its strings, a UUID string, the
number): 9 GB for an operator's whole base. Here, per recipient, the number is an integer (8 bytes) and
its message id costs nothing (derived from its index and a random key, :class:`MessageIds`); per message,
the request-wide fields are interned (a 4-byte index into :class:`Head` values shared by the request's
messages), and the content and ``dlr_url`` are kept zlib-compressed in chunks of :data:`CHUNK` messages
(personalized texts from one template shrink several times). :class:`Messages` rebuilds a
:class:`~plasgate_nb.simulator.model.Submission` on demand, with a small cache for the receipts of a
message that follow one another.
"""

from __future__ import annotations

import json
import zlib
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from os import urandom
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .model import Submission

__all__ = ["CHUNK", "Head", "MessageIds", "Messages", "Numbers"]

CHUNK = 256  # messages per compressed chunk: small enough that reading one back costs tens of microseconds
_CACHED_CHUNKS = 32
_CACHED_SUBMISSIONS = 1024
_MAX_DIGITS = 18  # an int64 holds every 18-digit number


class MessageIds(Sequence[str]):
    """Version-4 UUID strings derived from a recipient's index and a random key: none is stored.

    Unpredictable without the key (blake2b), distinct for distinct indexes, the same on every read.
    """

    def __init__(self) -> None:
        self._key = urandom(16)
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def issue(self, n: int) -> list[str]:
        """Return the ids of the next ``n`` recipients and count them as recorded."""
        first = self._count
        self._count += n
        return [self._format(i) for i in range(first, first + n)]

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        if not 0 <= index < self._count:
            raise IndexError(f"no recipient {index} (the record holds {self._count})")
        return self._format(index)

    def _format(self, index: int) -> str:
        """The id of recipient ``index``."""
        h = blake2b(index.to_bytes(8, "little"), digest_size=16, key=self._key).hexdigest()
        return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-{'89ab'[int(h[16], 16) & 3]}{h[17:20]}-{h[20:32]}"


class Numbers(Sequence[str]):
    """Recipients' numbers: digit strings as 8-byte integers, anything else (SMPP addresses) kept as text."""

    def __init__(self) -> None:
        self._values = array("q")
        self._other: list[str] = []

    def __len__(self) -> int:
        return len(self._values)

    def _code(self, to: str) -> int:
        """The integer stored for ``to``: the number itself, or -(1 + its place among the other texts)."""
        if to.isascii() and to.isdigit() and to[0] != "0" and len(to) <= _MAX_DIGITS:
            return int(to)
        self._other.append(to)
        return -len(self._other)

    def extend(self, numbers: Iterable[str]) -> None:
        """Record ``numbers`` in order."""
        self._values.extend(self._code(to) for to in numbers)

    def __getitem__(self, index: int) -> str:  # type: ignore[override]
        value = self._values[index]
        return str(value) if value >= 0 else self._other[-value - 1]


@dataclass(frozen=True, slots=True)
class Head:
    """What the messages of one request share (interned: stored once, referenced by index)."""

    route: str
    account: str
    batch_id: str | None
    sender: str
    encoding: str
    segments: int
    price: float
    accepted_at: float
    due_at: float
    dlr_level: int
    dlr_method: str
    callback_url: str | None
    errback_url: str | None
    flags: frozenset[str]
    sink: Callable[..., None] | None


def _pack(bodies: list[tuple[str, str | None]]) -> bytes:
    """Compress one chunk of (content, dlr_url) pairs."""
    return zlib.compress(json.dumps(bodies).encode("ascii"), 1)


def _unpack(chunk: bytes) -> list[tuple[str, str | None]]:
    """Read back one chunk of (content, dlr_url) pairs."""
    return [tuple(pair) for pair in json.loads(zlib.decompress(chunk))]  # type: ignore[misc]


class Messages(Sequence["Submission"]):
    """The accepted messages, appended as :class:`Submission` objects and read back as equal ones.

    ``report`` and ``deliver`` rebuild a message's transaction-report view and delivered text from its
    content (the gateway's masking and ``max_parts`` truncation), which are therefore not stored.
    """

    def __init__(self, *, report: Callable[[str], str], deliver: Callable[[str], str]) -> None:
        self._report = report
        self._deliver = deliver
        self._heads: list[Head] = []
        self._head_index: dict[Head, int] = {}
        self._head_of = array("I")
        self._request_seq = array("I")
        self._chunks: list[bytes] = []
        self._open: list[tuple[str, str | None]] = []
        self._read: dict[int, list[tuple[str, str | None]]] = {}
        self._built: dict[int, Submission] = {}

    def __len__(self) -> int:
        return len(self._head_of)

    def append(self, sub: Submission) -> None:
        """Record one message."""
        head = Head(
            sub.route,
            sub.account,
            sub.batch_id,
            sub.sender,
            sub.encoding,
            sub.segments,
            sub.price,
            sub.accepted_at,
            sub.due_at,
            sub.dlr_level,
            sub.dlr_method,
            sub.callback_url,
            sub.errback_url,
            sub.flags,
            sub.sink,
        )
        index = self._head_index.get(head)
        if index is None:
            index = self._head_index[head] = len(self._heads)
            self._heads.append(head)
        self._head_of.append(index)
        self._request_seq.append(sub.request_seq)
        self._open.append((sub.content, sub.dlr_url))
        if len(self._open) == CHUNK:
            self._chunks.append(_pack(self._open))
            self._open = []

    def extend(self, subs: Iterable[Submission]) -> None:
        """Record messages in order."""
        for sub in subs:
            self.append(sub)

    def _body(self, index: int) -> tuple[str, str | None]:
        """The (content, dlr_url) of message ``index``."""
        chunk, place = divmod(index, CHUNK)
        if chunk == len(self._chunks):
            return self._open[place]
        bodies = self._read.get(chunk)
        if bodies is None:
            if len(self._read) >= _CACHED_CHUNKS:
                del self._read[next(iter(self._read))]
            bodies = self._read[chunk] = _unpack(self._chunks[chunk])
        return bodies[place]

    def __getitem__(self, index: int) -> Submission:  # type: ignore[override]
        sub = self._built.get(index)
        if sub is not None:
            return sub
        if not 0 <= index < len(self._head_of):
            raise IndexError(f"no message {index} (the record holds {len(self._head_of)})")
        sub = self._build(index)
        if len(self._built) >= _CACHED_SUBMISSIONS:
            del self._built[next(iter(self._built))]
        self._built[index] = sub
        return sub

    def _build(self, index: int) -> Submission:
        """Rebuild message ``index`` as a Submission."""
        from .model import Submission

        h = self._heads[self._head_of[index]]
        content, dlr_url = self._body(index)
        return Submission(
            h.route,
            h.account,
            h.batch_id,
            h.sender,
            content,
            self._report(content),
            self._deliver(content),
            h.encoding,
            h.segments,
            h.price,
            h.accepted_at,
            h.due_at,
            dlr_url,
            h.dlr_level,
            h.dlr_method,
            h.callback_url,
            h.errback_url,
            self._request_seq[index],
            h.flags,
            h.sink,
        )
