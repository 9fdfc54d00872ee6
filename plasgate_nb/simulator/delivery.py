"""The delivery model: what becomes of each accepted message, and the receipts Jasmin would throw.

Outcomes are drawn from a seeded ``random.Random`` per carrier (chosen by the two digits after 855);
special numbers always meet the same fate. Receipt fields follow the recorded Jasmin DLRThrower: by
default a share of messages is refused by the SMSC (a level-1 ESME error and no level 2) and a share of
the delivered ones first gets an intermediate UNKNOWN or ENROUTE report, as the recordings show.
"""

from __future__ import annotations

import hashlib
import math
import random
from datetime import datetime

from ..segments import split_parts
from .clock import GATEWAY_TZ
from .config import Carrier, DeliveryModel

__all__ = [
    "FINAL_STATUS",
    "INTERIM_STATUS",
    "OPT_OUT_TEXTS",
    "OUTCOME_NAMES",
    "Outcome",
    "Outcomes",
    "level1_fields",
    "level2_fields",
    "opt_out_reply",
]


class Outcome:
    """Outcome codes stored per recipient (one byte each)."""

    DELIVRD = 0
    UNDELIV = 1
    EXPIRED = 2
    REJECTD = 3
    NEVER = 4  # accepted by the SMSC, no final receipt ever
    ESME_ERROR = 5  # refused at submit_sm: level 1 carries ESME_RINVDSTADR, no level 2
    UNKNOWN_THEN_DELIVRD = 6
    DELETED = 7
    ENROUTE_THEN_DELIVRD = 8


OUTCOME_NAMES = (
    "DELIVRD",
    "UNDELIV",
    "EXPIRED",
    "REJECTD",
    "NEVER",
    "ESME_RINVDSTADR",
    "UNKNOWN_THEN_DELIVRD",
    "DELETED",
    "ENROUTE_THEN_DELIVRD",
)
# final level-2 message_status and err code per outcome
FINAL_STATUS = {
    0: ("DELIVRD", "000"),
    1: ("UNDELIV", "001"),
    2: ("EXPIRED", "003"),
    3: ("REJECTD", "002"),
    6: ("DELIVRD", "000"),
    7: ("DELETED", "004"),
    8: ("DELIVRD", "000"),
}
# the intermediate level-2 report an outcome gets before its final one
INTERIM_STATUS = {6: ("UNKNOWN", "000"), 8: ("ENROUTE", "000")}
_SPECIAL_CODES = {
    "UNDELIV": 1,
    "REJECTD": 3,
    "EXPIRED": 2,
    "NEVER": 4,
    "ESME_RINVDSTADR": 5,
    "UNKNOWN_THEN_DELIVRD": 6,
    "DELETED": 7,
    "ENROUTE_THEN_DELIVRD": 8,
}

# what a handset that opts out replies: English or Khmer ("stop"), chosen per number
OPT_OUT_TEXTS = ("STOP", "ឈប់")
REPLY_AFTER = 1.0  # simulated seconds from the final DELIVRD report to the opt-out reply


def opt_out_reply(msisdn: str, *, share: float, seed: int | None) -> str | None:
    """Return the opt-out keyword handset ``msisdn`` replies to a delivered message, or None.

    Deterministic per number and ``seed`` (a hash, not a random stream): the same numbers opt out
    whatever the order, transport or number of messages, so a test or notebook can tell which.
    """
    if share <= 0:
        return None
    digest = hashlib.blake2b(f"{seed}:{msisdn}".encode(), digest_size=8).digest()
    value = int.from_bytes(digest, "big")
    if (value >> 11) / (1 << 53) >= share:
        return None
    return OPT_OUT_TEXTS[value & 1]


class Outcomes:
    """Draws (outcome code, level-2 latency in simulated seconds, carrier name) for numbers."""

    def __init__(self, model: DeliveryModel, *, seed: int | None) -> None:
        self._rng = random.Random(seed)
        self._fallback = model.fallback
        self._by_prefix: dict[str, Carrier] = {p: c for c in model.carriers for p in c.prefixes}
        self._special = {number: _SPECIAL_CODES[name] for number, name in model.special_numbers}
        self._carriers = {c.name: c for c in (*model.carriers, model.fallback)}

    def carrier(self, to: str) -> Carrier:
        """Return the carrier serving ``to`` (855 + prefix)."""
        return self._by_prefix.get(to[3:5], self._fallback)

    def draw(self, tos: list[str]) -> tuple[bytes, list[float]]:
        """Draw outcome codes and level-2 latencies for ``tos`` (the hot loop of batch-send)."""
        rnd = self._rng.random
        lognorm = self._rng.lognormvariate
        by_prefix, fallback, special = self._by_prefix, self._fallback, self._special
        codes = bytearray(len(tos))
        latencies = [0.0] * len(tos)
        for i, to in enumerate(tos):
            c = by_prefix.get(to[3:5], fallback)
            r = rnd()
            code = special.get(to, 0) if special else 0
            if code == 0:
                failing = c.undeliverable + c.expired + c.rejected
                if r < c.undeliverable:
                    code = 1
                elif r < c.undeliverable + c.expired:
                    code = 2
                elif r < failing:
                    code = 3
                elif r < failing + c.refused:
                    code = 5
                elif c.interim and (r - failing - c.refused) < c.interim * (1 - failing - c.refused):
                    # the same draw (no extra one: seeds keep their failures): the first share of the
                    # delivered ones gets an intermediate report first, half UNKNOWN, half ENROUTE
                    share = (r - failing - c.refused) / (c.interim * (1 - failing - c.refused))
                    code = 6 if share < 0.5 else 8
            codes[i] = code
            latencies[i] = (
                c.expiry_after if code == 2 else c.submit_latency + lognorm(math.log(c.median_latency), c.latency_sigma)
            )
        return bytes(codes), latencies

    def submit_latency(self, to: str) -> float:
        """Return the simulated seconds from hand-over to the SMSC's submit_sm_resp (level 1)."""
        return self.carrier(to).submit_latency


def _yymmddhhmm(ts: float) -> str:
    """Format epoch seconds as Jasmin's receipt dates (gateway local time)."""
    return datetime.fromtimestamp(ts, GATEWAY_TZ).strftime("%y%m%d%H%M")


def level1_fields(message_id: str, code: int, connector: str) -> dict[str, str]:
    """Return the level-1 DLR fields in Jasmin's order."""
    status = "ESME_RINVDSTADR" if code == Outcome.ESME_ERROR else "ESME_ROK"
    return {"id": message_id, "level": "1", "message_status": status, "connector": connector}


def level2_fields(
    message_id: str, status: str, err: str, *, smsc_id: str, submitted: float, done: float, text: str
) -> dict[str, str]:
    """Return the level-2 DLR fields in Jasmin's order (``text``: first 20 chars of the last part)."""
    last = split_parts(text)[-1] if text else ""
    return {
        "id": message_id,
        "level": "2",
        "message_status": status,
        "connector": smsc_id.lower(),
        "id_smsc": smsc_id,
        "sub": "001",
        "dlvrd": "001" if status == "DELIVRD" else "000",
        "subdate": _yymmddhhmm(submitted),
        "donedate": _yymmddhhmm(done),
        "err": err,
        "text": last[:20],
    }
