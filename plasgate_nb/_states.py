"""Delivery states: the one definition of final and intermediate, used by every reader and waiter.

The table (DESIGN section 6), used by the ledger, ``collect``, summaries, charts, ``wait_for_reports``
and the SMPP session:

=============  ==========================================================  =============================
kind           states                                                      counts as
=============  ==========================================================  =============================
final-good     DELIVRD                                                     delivered
final-bad      UNDELIV, REJECTD, EXPIRED, DELETED; an SMSC refusal         failed, with its error code
               (ESME_* in a level-1 DLR or a submit_sm_resp); a batch
               errback
intermediate   UNKNOWN, ENROUTE, ACCEPTD, a level-1 ESME_ROK               pending: keep waiting
none-requested the campaign requested no delivery reports                  ``not requested``, never 0%
=============  ==========================================================  =============================

A message's row carries its level-2 ``delivery_status`` and an ``error_code``; an SMSC refusal has no
level-2 status (Jasmin sends none after it), so it shows as an ``ESME_*`` error code, and a batch
errback as the code :data:`ERRBACK`. :func:`row_kinds` classifies rows from those columns.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

__all__ = [
    "AWAITING",
    "ERRBACK",
    "FINAL_BAD",
    "FINAL_GOOD",
    "FINAL_STATUSES",
    "INTERMEDIATE",
    "LEVEL1_OK",
    "LEVEL2_STATUSES",
    "NOT_REQUESTED",
    "Kind",
    "is_final",
    "is_refusal",
    "kind",
    "refusal_mask",
    "row_kinds",
]

Kind = Literal["final-good", "final-bad", "intermediate", "none-requested"]

FINAL_GOOD = frozenset({"DELIVRD"})
FINAL_BAD = frozenset({"UNDELIV", "REJECTD", "EXPIRED", "DELETED"})
FINAL_STATUSES = FINAL_GOOD | FINAL_BAD
INTERMEDIATE = frozenset({"UNKNOWN", "ENROUTE", "ACCEPTD"})
LEVEL2_STATUSES = FINAL_STATUSES | INTERMEDIATE
LEVEL1_OK = "ESME_ROK"  # the SMSC took the message: intermediate, the handset report is still to come
ERRBACK = "ERRBACK"  # the error code of a row a batch errback refused (its text goes to the row's reason)
NOT_REQUESTED = "not requested"  # the delivery of a message sent without asking for reports
AWAITING = "awaiting reports"  # how pending rows are labelled in summaries and charts
_REFUSAL_PREFIX = "ESME_"


def is_refusal(code: object) -> bool:
    """Whether ``code`` (a level-1 status, submit_sm_resp status name or error code) is a final refusal.

    An ``ESME_*`` status other than ``ESME_ROK``, or :data:`ERRBACK`.
    """
    if not isinstance(code, str):
        return False
    code = code.strip().upper()
    return code == ERRBACK or (code.startswith(_REFUSAL_PREFIX) and code != LEVEL1_OK)


def kind(status: object, *, error_code: object = None) -> Kind | None:
    """The kind of one message's delivery: ``final-good``, ``final-bad``, ``intermediate`` or ``none-requested``.

    ``status`` is a level-2 status (or a level-1 one: ``ESME_ROK`` is intermediate, any other ``ESME_*``
    final-bad), or :data:`NOT_REQUESTED`; ``error_code`` a row's error code (an SMSC refusal or an
    errback makes an otherwise unreported or intermediate message final-bad). None when nothing is known.
    """
    text = status.strip().upper() if isinstance(status, str) else None
    if text in FINAL_GOOD:
        return "final-good"
    if text in FINAL_BAD or is_refusal(text) or is_refusal(error_code):
        return "final-bad"
    if text in INTERMEDIATE or text == LEVEL1_OK:
        return "intermediate"
    if isinstance(status, str) and status == NOT_REQUESTED:
        return "none-requested"
    return None


def is_final(status: object, *, error_code: object = None) -> bool:
    """Whether a message with this status (and error code) has its final outcome: stop waiting for it."""
    return kind(status, error_code=error_code) in ("final-good", "final-bad")


def refusal_mask(codes: pd.Series) -> np.ndarray:
    """Vectorized :func:`is_refusal` over a column of error codes (a boolean array)."""
    text = codes.astype("string").str.strip().str.upper()

    def flags(values: pd.Series) -> np.ndarray:
        return values.fillna(False).to_numpy(dtype=bool)

    return flags(text.eq(ERRBACK)) | (flags(text.str.startswith(_REFUSAL_PREFIX)) & flags(text.ne(LEVEL1_OK)))


def row_kinds(status: pd.Series, error_code: pd.Series | None = None) -> np.ndarray:
    """Vectorized :func:`kind` over rows: an object array of kinds (None where nothing is known)."""
    text = status.astype("string").str.strip().str.upper()
    refused = refusal_mask(status)
    if error_code is not None:
        refused |= refusal_mask(error_code)
    good = text.isin(list(FINAL_GOOD)).fillna(False).to_numpy(dtype=bool)
    bad = text.isin(list(FINAL_BAD)).fillna(False).to_numpy(dtype=bool) | refused
    between = text.isin([*INTERMEDIATE, LEVEL1_OK]).fillna(False).to_numpy(dtype=bool)
    none = status.astype("string").eq(NOT_REQUESTED).fillna(False).to_numpy(dtype=bool)
    out = np.full(len(text), None, dtype=object)
    for mask, name in ((none, "none-requested"), (between, "intermediate"), (bad, "final-bad"), (good, "final-good")):
        out[mask] = name  # later wins: a final status over a refusal code, a refusal over an intermediate
    return out
