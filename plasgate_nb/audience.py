"""Prepare an audience: normalize phone numbers to Plasgate form and flag rows that must not be sent.

Plasgate wants a destination as the country code followed by the national number, digits only and no
``+`` (``855`` + ``12345678``). Spreadsheets hold every other spelling: ``012 345 678``,
``+855 12 345 678``, ``855012345678``, ``(012) 345-678``, Khmer digits, and floats from Excel
(``85512345678.0``). Each distinct raw value is cleaned and classified once, with the numbering plan of
``phonenumbers`` (its region metadata and carrier prefixes), and the verdicts are spread back to the rows.
"""

from __future__ import annotations

import logging
import math
import re
import sys
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from decimal import Decimal
from functools import cache, lru_cache
from typing import Any

import numpy as np
import pandas as pd
import phonenumbers
import pyarrow as pa
import pyarrow.compute as pc
from phonenumbers.carrierdata import CARRIER_DATA

from ._dask import is_dask_frame
from .errors import AudienceError

__all__ = ["STATUSES", "is_mobile_msisdn", "normalize_msisdn", "prepare_audience"]

log = logging.getLogger("plasgate_nb")

STATUSES = ("ok", "invalid", "not_mobile", "duplicate", "suppressed", "missing", "no_consent")
"""Every value ``audience_status`` can take; only ``ok`` rows should be sent."""

# (msisdn, carrier, status, reason) for one distinct raw value.
Verdict = tuple[str | None, str | None, str, str]

_MISSING: Verdict = (None, None, "missing", "no phone number")
_LABELS = {"KH": "Cambodian"}
# Characters people put between digits; deleted before reading the number.
_SEPARATORS = (
    " \t\r\n\v\f\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u200b\u200c\u200d\u2060\u202f\u205f\u3000\ufeff"
    "-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe63\uff0d"
    ".\uff0e()\uff08\uff09[]/\uff0f'\"`\u2018\u2019\u201c\u201d"
)
_EXCEL_FLOAT = re.compile(r"\+?[0-9]+\.0+")
_DECIMAL = re.compile(r"\+?[0-9]{6,}\.[0-9]{1,2}")
_SCIENTIFIC = re.compile(r"[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+")
_PLAIN = re.compile(r"\+?[0-9]+")
_MAX_DIGITS = 17
# Number types that are not mobile, in the order phonenumbers tests them, with human names.
_OTHER_TYPES = (
    ("premium_rate", "premium-rate"),
    ("toll_free", "toll-free"),
    ("shared_cost", "shared-cost"),
    ("voip", "VoIP"),
    ("personal_number", "personal"),
    ("pager", "pager"),
    ("uan", "UAN"),
    ("voicemail", "voicemail"),
)


@cache
def _digit_table() -> dict[int, str]:
    """Map every Unicode decimal digit (Khmer, Arabic-Indic, full-width...) and full-width plus to ASCII."""
    table = {
        cp: str(unicodedata.decimal(chr(cp)))
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) == "Nd" and not 0x30 <= cp <= 0x39
    }
    table[0xFF0B] = "+"
    return table


_DELETE_SEPARATORS = str.maketrans("", "", _SEPARATORS)


@dataclass(frozen=True, slots=True)
class _Desc:
    """One number type of a numbering plan: its national pattern (``fullmatch`` has the allowed lengths
    folded in; ``pattern`` and ``lengths`` are the raw parts, for the vectorized check)."""

    fullmatch: Callable[[str], re.Match[str] | None]
    pattern: str
    lengths: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class _Plan:
    """The numbering plan of one region, read from phonenumbers' metadata."""

    region: str
    label: str
    cc: str
    trunk: str
    international: re.Pattern[str]
    general: _Desc
    min_len: int
    max_len: int
    others: tuple[tuple[str, _Desc], ...]
    fixed: _Desc | None
    mobile: _Desc | None
    same_fixed_mobile: bool
    carriers: tuple[tuple[int, dict[str, str]], ...]


def _desc(raw: Any) -> _Desc | None:
    """Compile a phonenumbers PhoneNumberDesc, or None when the plan has no such type."""
    if raw is None or not raw.national_number_pattern:
        return None
    lengths = tuple(sorted(raw.possible_length or ()))
    only = "(?=" + "|".join(f"[0-9]{{{n}}}\\Z" for n in lengths) + ")" if lengths else ""
    # re.ASCII: \d is [0-9] only (a Khmer or Arabic-Indic digit left here would be passed on)
    compiled = re.compile(f"{only}(?:{raw.national_number_pattern})", re.ASCII)
    return _Desc(compiled.fullmatch, raw.national_number_pattern, lengths)


@cache
def _plan(region: str) -> _Plan:
    """Build (once per region) the compiled numbering plan and carrier prefixes."""
    meta = phonenumbers.PhoneMetadata.metadata_for_region(region.upper()) if isinstance(region, str) else None
    if meta is None:
        raise AudienceError(f"unknown region {region!r}: use a two-letter code such as 'KH'")
    general = _desc(meta.general_desc)
    if general is None:
        raise AudienceError(f"region {region!r} has no numbering plan in phonenumbers")
    cc = str(meta.country_code)
    by_length: dict[int, dict[str, str]] = {}
    for prefix, names in CARRIER_DATA.items():
        if prefix.startswith(cc) and names.get("en"):
            by_length.setdefault(len(prefix), {})[prefix] = names["en"]
    others = tuple((human, d) for attr, human in _OTHER_TYPES if (d := _desc(getattr(meta, attr))))
    intl = meta.international_prefix or "00"
    return _Plan(
        region=region.upper(),
        label=_LABELS.get(region.upper(), region.upper()),
        cc=cc,
        trunk=meta.national_prefix or "",
        international=re.compile(rf"(?:{intl}|00){cc}([0-9]*)"),
        general=general,
        min_len=min(meta.general_desc.possible_length or (1,)),
        max_len=max(meta.general_desc.possible_length or (_MAX_DIGITS,)),
        others=others,
        fixed=_desc(meta.fixed_line),
        mobile=_desc(meta.mobile),
        same_fixed_mobile=bool(meta.same_mobile_and_fixed_line_pattern),
        carriers=tuple(sorted(by_length.items(), reverse=True)),
    )


def _to_text(value: Any) -> str | None:
    """Turn a cell (str, int, Excel float, NaN, None) into text, or None when the cell is empty."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool | np.bool_):
        return str(value)
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        if math.isnan(value):
            return None
        if math.isfinite(value) and float(value).is_integer():
            return str(int(value))
        return repr(float(value))
    if isinstance(value, Decimal) and value == value.to_integral_value():
        return str(int(value))
    return str(value)


def _carrier(msisdn: str, plan: _Plan) -> str | None:
    """Name the carrier a mobile number was allocated to (longest carrier prefix wins)."""
    for length, names in plan.carriers:
        name = names.get(msisdn[:length])
        if name is not None:
            return name
    return None


def _classify_national(nsn: str, plan: _Plan) -> Verdict:
    """Classify a national significant number against the plan (mirrors phonenumbers' number_type)."""
    label = plan.label
    if len(nsn) < plan.min_len:
        return None, None, "invalid", f"too short for a {label} number"
    if len(nsn) > plan.max_len:
        return None, None, "invalid", f"too long for a {label} number"
    if plan.general.fullmatch(nsn) is None:
        return None, None, "invalid", f"not a valid {label} number"
    msisdn = plan.cc + nsn
    for human, desc in plan.others:
        if desc.fullmatch(nsn) is not None:
            return msisdn, None, "not_mobile", f"{human} number (not mobile)"
    is_mobile = plan.mobile is not None and plan.mobile.fullmatch(nsn) is not None
    if plan.fixed is not None and plan.fixed.fullmatch(nsn) is not None:
        if plan.same_fixed_mobile or is_mobile:
            return msisdn, _carrier(msisdn, plan), "ok", ""
        return msisdn, None, "not_mobile", "landline number (not mobile)"
    if is_mobile and not plan.same_fixed_mobile:
        return msisdn, _carrier(msisdn, plan), "ok", ""
    return None, None, "invalid", f"not a valid {label} number"


def _classify_text(text: str | None, plan: _Plan) -> Verdict:
    """Clean one raw text and classify it: the single source of truth for a number's verdict."""
    if text is None:
        return _MISSING
    text = text.translate(_digit_table()).strip() if not text.isascii() else text.strip()
    if "." in text or "e" in text or "E" in text:  # cheap test before the Excel checks
        if _EXCEL_FLOAT.fullmatch(text):
            text = text[: text.index(".")]
        elif _SCIENTIFIC.fullmatch(text):
            return None, None, "invalid", "written in scientific notation (Excel lost digits)"
        elif _DECIMAL.fullmatch(text):
            return None, None, "invalid", "a decimal number, not a phone number"
    if not (text.isascii() and text.isdigit()):
        text = text.translate(_DELETE_SEPARATORS)
    if not text:
        return _MISSING
    if not (text.isascii() and text.isdigit()) and not _PLAIN.fullmatch(text):
        if any(ch.isalpha() for ch in text):
            return None, None, "invalid", "contains letters"
        odd = next((ch for ch in text if not "0" <= ch <= "9" and ch != "+"), None)  # '²' is isdigit()
        return None, None, "invalid", f"unexpected character {odd!r}" if odd else "misplaced '+'"
    label = plan.label
    if len(text) > _MAX_DIGITS + 1:
        return None, None, "invalid", f"too long for a {label} number"
    cc = plan.cc
    if text[0] == "+":
        if not text.startswith(cc, 1):
            return None, None, "invalid", f"not a {label} number (country code is not +{cc})"
        rest = text[1 + len(cc) :]
    elif (found := plan.international.fullmatch(text)) is not None:
        rest = found.group(1)
    elif text.startswith("00"):
        return None, None, "invalid", f"not a {label} number (country code is not +{cc})"
    elif text.startswith(cc) and len(text) >= len(cc) + plan.min_len:
        rest = text[len(cc) :]
    else:
        rest = text
    if plan.trunk and rest.startswith(plan.trunk):
        rest = rest[len(plan.trunk) :]
    return _classify_national(rest, plan)


def _classify_value(value: Any, plan: _Plan) -> Verdict:
    """Classify one raw cell of any type."""
    return _classify_text(_to_text(value), plan)


@lru_cache(maxsize=65536, typed=True)
def _classify_cached(value: Any, region: str) -> Verdict:
    """Cached verdict for single-value callers (batch, simulator, suppression checks)."""
    return _classify_value(value, _plan(region))


def normalize_msisdn(value: Any, *, region: str = "KH") -> str | None:
    """Return ``value`` in Plasgate form (``855`` + national number, digits only), or None if not a number.

    Any valid number of the region is returned, landlines included; :func:`prepare_audience` is the
    place that tells mobile numbers from the rest.

    >>> normalize_msisdn("(012) 345-678")
    '85512345678'
    """
    try:
        hash(value)
    except TypeError:
        return _classify_value(value, _plan(region))[0]
    return _classify_cached(value, region)[0]


def _in_form(value: Any, plan: _Plan) -> bool:
    """Tell whether one value is a mobile number already in Plasgate form (the reference for the vectorized check)."""
    if not (isinstance(value, str) and value.isascii() and value.isdigit() and value.startswith(plan.cc)):
        return False
    rest = value[len(plan.cc) :]
    if plan.trunk and rest.startswith(plan.trunk):
        return False
    return _classify_national(rest, plan)[2] == "ok"


def _arrow_match(numbers: pa.Array, cc: str, desc: _Desc | None) -> pa.Array:
    """Which numbers are ``cc`` followed by a national number of type ``desc`` (RE2: \\d is ASCII only)."""
    if desc is None:
        return pa.array(np.zeros(len(numbers), dtype=bool))
    found = pc.match_substring_regex(numbers, f"^{cc}(?:{desc.pattern})$")
    if desc.lengths:
        found = pc.and_(found, pc.is_in(pc.binary_length(numbers), pa.array([n + len(cc) for n in desc.lengths])))
    return found


def is_mobile_msisdn(values: pd.Series | pd.Index | Iterable[Any], *, region: str = "KH") -> np.ndarray:
    """Tell, per value, whether it is a mobile number already in Plasgate form, as the gateway takes it.

    True for text (or an integer) of ASCII digits: the country code (``855``) then a valid mobile
    national number of the region's numbering plan, without the trunk ``0`` (``8550...`` is False).
    Exactly the numbers :func:`prepare_audience` leaves unchanged and calls ``ok``; Khmer, Arabic-Indic
    or full-width digits, separators, ``+``, floats (``85512345678.0``) and missing values are False:
    ``prepare_audience`` turns them into this form. Vectorized (pyarrow's RE2, in C++), a million
    numbers take a fraction of a second.
    """
    plan = _plan(region)
    series = values if isinstance(values, pd.Series | pd.Index) else pd.Series(list(values), dtype=object)
    try:
        if not isinstance(series.dtype, pd.StringDtype) or series.dtype.storage != "pyarrow":
            series = series.astype(pd.StringDtype("pyarrow"))
        numbers = pa.array(series)
    except (UnicodeError, pa.ArrowException):  # text that is not Unicode (a lone surrogate): one by one
        return np.fromiter((_in_form(_to_text(v), plan) for v in series.tolist()), dtype=bool, count=len(series))
    if isinstance(numbers, pa.ChunkedArray):
        numbers = numbers.combine_chunks()
    kind = plan.fixed if plan.same_fixed_mobile else plan.mobile  # the type _classify_national calls ok
    ok = pc.and_(_arrow_match(numbers, plan.cc, plan.general), _arrow_match(numbers, plan.cc, kind))
    if plan.trunk:
        ok = pc.and_(ok, pc.invert(pc.starts_with(numbers, plan.cc + plan.trunk)))
    lengths = set(kind.lengths) if kind is not None else set()
    for _, other in plan.others:  # a number of another type (premium-rate, toll-free...) is not mobile
        if not lengths or not other.lengths or lengths & set(other.lengths):
            ok = pc.and_(ok, pc.invert(_arrow_match(numbers, plan.cc, other)))
    return np.asarray(ok.fill_null(False).to_numpy(zero_copy_only=False), dtype=bool)


def _verdicts(values: pd.Series | pd.Index, plan: _Plan) -> tuple[np.ndarray, list[Verdict]]:
    """Classify each distinct value once; return per-row codes into the verdict list (-1 = missing)."""
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)  # plain iteration, not one ExtensionArray lookup per item
    found = [_classify_text(v, plan) if isinstance(v, str) else _classify_value(v, plan) for v in uniques]
    found.append(_MISSING)  # code -1 (NaN, None, NA) picks the last verdict
    return codes, found


def _suppressed_numbers(suppress: Any, plan: _Plan) -> set[str]:
    """Normalize an opt-out list (any iterable or Series of numbers) to a set of msisdns."""
    if isinstance(suppress, str | bytes | pd.DataFrame):
        raise AudienceError(
            "suppress must be a list or Series of phone numbers, e.g. suppress=opt_out['phone'], "
            f"not a {type(suppress).__name__}"
        )
    if not isinstance(suppress, Iterable):
        raise AudienceError(f"suppress must be an iterable of phone numbers, not {type(suppress).__name__}")
    if not isinstance(suppress, pd.Series | pd.Index):
        suppress = pd.Series(list(suppress), dtype=object)
    _, found = _verdicts(suppress, plan)
    numbers = {v[0] for v in found if v[0] is not None}
    unusable = sum(1 for v in found[:-1] if v[0] is None)
    if unusable:
        log.warning("opt-out list: %d distinct entries are not %s numbers and were ignored", unusable, plan.label)
    return numbers


# Consent answers, compared after strip() and casefold(); empty cells are no consent.
CONSENT_YES = frozenset({"true", "1", "yes", "y", "t", "បាទ", "ចាស", "បាទ/ចាស", "យល់ព្រម"})
CONSENT_NO = frozenset({"false", "0", "no", "n", "f", "", "ទេ", "មិនយល់ព្រម"})
# Columns that look like consent: a frame holding one without consent= gets a logged warning.
_CONSENT_LIKE = ("opt_in", "optin", "opted_in", "consent", "sms_consent", "marketing_consent")


def _consent_answer(value: Any) -> bool | None:
    """True (consent), False (none) or None (not a yes/no answer) for one consent cell."""
    if value is None or value is pd.NA or value is pd.NaT:
        return False
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer | float | np.floating) and not isinstance(value, bool):
        if math.isnan(value):
            return False
        return {1: True, 0: False}.get(value)  # type: ignore[call-overload]
    text = str(value).strip().casefold()
    if text in CONSENT_YES:
        return True
    if text in CONSENT_NO:
        return False
    return None


def _shown(value: Any) -> str:
    """A consent cell as the reason shows it: ``'no'``, ``False``, ``empty``."""
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return "empty"
    if isinstance(value, str):
        return repr(value) if value.strip() else "empty"
    return repr(value.item() if isinstance(value, np.generic) else value)


def _check_column(df: pd.DataFrame, name: Any, role: str) -> None:
    """AudienceError unless ``df`` has exactly one column ``name`` (``role``: "phone", "consent")."""
    if not isinstance(name, str) or name not in df.columns:
        raise AudienceError(f"no {role} column {name!r}; available columns: {list(df.columns)}")
    column = df[name]
    if isinstance(column, pd.DataFrame):
        raise AudienceError(f"the frame has {column.shape[1]} columns named {name!r}; keep only one")


def _consent_error(consent: str, odd: list[Any], rows: list[Any], count: int) -> AudienceError:
    """The error for consent values that are neither yes nor no (the first values and row labels, and how many)."""
    shown = ", ".join(map(repr, rows[:5])) + (f" and {count - 5} more" if count > 5 else "")
    return AudienceError(
        f"consent column {consent!r} holds values that are neither yes nor no: "
        f"{', '.join(map(repr, odd[:5]))} in {count} row(s): {shown} "
        "(consent: true, 1, yes, y; no consent: false, 0, no, n, empty)"
    )


def _odd_consent(df: pd.DataFrame, consent: str) -> tuple[list[Any], list[Any], int]:
    """The consent values that are neither yes nor no (first five, in order), their first five rows, their count."""
    codes, uniques = pd.factorize(df[consent], use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    return _odd(df.index, codes, uniques, [_consent_answer(u) for u in uniques])


def _odd(
    index: pd.Index, codes: np.ndarray, uniques: np.ndarray, answers: list[bool | None]
) -> tuple[list[Any], list[Any], int]:
    """From factorized consent answers: the first five odd values, the first five of their row labels, their count."""
    odd = [i for i, answer in enumerate(answers) if answer is None]
    if not odd:
        return [], [], 0
    at = np.flatnonzero(np.isin(codes, odd))
    return uniques[odd[:5]].tolist(), index[at[:5]].tolist(), len(at)


def _consent(df: pd.DataFrame, consent: str, *, strict: bool = True) -> np.ndarray:
    """Per row: whether the ``consent`` column says yes; AudienceError for a missing column or odd values.

    With ``strict=False`` odd values count as no consent (the Dask path checks them once, over all partitions).
    """
    _check_column(df, consent, "consent")
    codes, uniques = pd.factorize(df[consent], use_na_sentinel=True)
    uniques = np.asarray(uniques, dtype=object)
    answers = [_consent_answer(u) for u in uniques]
    if strict and any(answer is None for answer in answers):
        raise _consent_error(consent, *_odd(df.index, codes, uniques, answers))
    return np.asarray([*(bool(answer) for answer in answers), False], dtype=bool)[codes]


def suppression_reason(entry: pd.Series) -> str:
    """Why a number is on the ledger's suppression list (a row of ``Ledger.suppressions()``), in plain words."""
    day = entry["since"].tz_convert("Asia/Phnom_Penh").strftime("%Y-%m-%d")
    if entry["source"] == "reply":
        return f"replied {str(entry['text']).strip()[:40]} on {day}"
    return f"on the suppression list since {day}" + (f" ({entry['text']})" if pd.notna(entry["text"]) else "")


def prepare_audience(
    df: pd.DataFrame,
    *,
    phone: str = "phone",
    region: str = "KH",
    suppress: Iterable[Any] | pd.Series | None = None,
    consent: str | None = None,
    ledger: Any = None,
) -> pd.DataFrame:
    """Return a copy of ``df`` with ``msisdn``, ``carrier``, ``audience_status`` and ``audience_reason``.

    ``msisdn`` is the number in Plasgate form (empty when the cell holds no valid number), ``carrier``
    the network the number was allocated to (phonenumbers, in English), ``audience_status`` one of
    :data:`STATUSES` and ``audience_reason`` says why in plain words. The first row with a number wins;
    later rows with the same number are ``duplicate`` and name the first row's index label. Numbers on
    the ``suppress`` opt-out list (any formats) are ``suppressed``, and so are those on the suppression list
    of ``ledger`` (a :class:`~plasgate_nb.Ledger`: numbers that replied STOP, with the reply and its date as
    the reason). The caller's frame is not modified.

    ``consent`` names a column saying whether each person agreed to receive messages: rows holding
    false, 0, no, n or nothing (any case; Khmer ទេ too) are ``no_consent``; true, 1, yes, y (បាទ, ចាស)
    are consent. Any other value raises :class:`AudienceError` naming it and its rows, as does a
    missing column. A row without consent does not take its number from a later row that has it.

    ``df`` may be a Dask DataFrame: the result is then a lazy Dask frame, equal once computed to this
    function's result on ``df.compute()`` (duplicates and consent are settled across partitions at call
    time; see :mod:`plasgate_nb._dask._audience`).
    """
    if is_dask_frame(df):  # partition by partition, exact across partitions: plasgate_nb._dask._audience
        from ._dask._audience import prepare_dask_audience

        return prepare_dask_audience(df, phone=phone, region=region, suppress=suppress, consent=consent, ledger=ledger)
    if not isinstance(df, pd.DataFrame):
        raise AudienceError(f"prepare_audience expects a pandas DataFrame, not {type(df).__name__}")
    _check_column(df, phone, "phone")
    plan = _plan(region)
    if consent is None:
        _warn_consent_like(df.columns)
    suppressed = _suppressed_numbers(suppress, plan) if suppress is not None else None
    listed = _listed(ledger) if ledger is not None else None
    msisdn, carrier, status, reason = _flag(
        df, phone=phone, plan=plan, consent=consent, suppressed=suppressed, listed=listed
    )
    _mark_duplicates(df.index, msisdn, status, reason)
    log.debug(
        "prepared audience of %d rows: %s",
        len(df),
        dict(zip(*np.unique(status.astype(str), return_counts=True), strict=True)),
    )
    return _assign(df, msisdn, carrier, status, reason)


def _warn_consent_like(columns: pd.Index) -> None:
    """Log a warning when the frame has a consent-like column but ``consent=`` was not given."""
    looks_like = [name for name in _CONSENT_LIKE if name in columns]
    if looks_like:
        log.warning(
            "the frame has a consent-like column %r but consent= was not given: every row counts as consenting",
            looks_like[0],
        )


def _listed(ledger: Any) -> pd.DataFrame:
    """The ledger's suppression list, one row per msisdn (the latest entry), indexed by msisdn."""
    return ledger.suppressions().drop_duplicates("msisdn", keep="last").set_index("msisdn")


Flags = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
"""Per row: msisdn, carrier, audience_status, audience_reason (object arrays)."""


def _flag(
    df: pd.DataFrame,
    *,
    phone: str,
    plan: _Plan,
    consent: str | None,
    suppressed: set[str] | None,
    listed: pd.DataFrame | None,
    strict: bool = True,
) -> Flags:
    """Classify every row's number, then flag rows without consent and suppressed numbers (no dedupe)."""
    codes, found = _verdicts(df[phone], plan)
    msisdn = np.array([v[0] for v in found], dtype=object)[codes]
    carrier = np.array([v[1] for v in found], dtype=object)[codes]
    status = np.array([v[2] for v in found], dtype=object)[codes]
    reason = np.array([v[3] for v in found], dtype=object)[codes]

    if consent is not None:
        refused = (status == "ok") & ~_consent(df, consent, strict=strict)
        status[refused] = "no_consent"
        reason[refused] = [f"no consent ({consent} is {_shown(v)})" for v in df[consent].to_numpy()[refused]]

    if suppressed is not None:
        hit = (status == "ok") & pd.Series(msisdn).isin(suppressed).to_numpy()
        status[hit] = "suppressed"
        reason[hit] = "on the opt-out list"

    if listed is not None:  # the ledger's suppression list: numbers that replied STOP or were added by hand
        hit = (status == "ok") & pd.Series(msisdn).isin(listed.index).to_numpy()
        status[hit] = "suppressed"
        reason[hit] = [suppression_reason(listed.loc[number]) for number in msisdn[hit]]
    return msisdn, carrier, status, reason


def _mark_duplicates(index: pd.Index, msisdn: np.ndarray, status: np.ndarray, reason: np.ndarray) -> None:
    """In place: the first ``ok`` row of each number wins; later ones become ``duplicate`` naming its label."""
    ok = np.flatnonzero(status == "ok")
    ok_numbers = pd.Series(msisdn[ok], index=index[ok])
    repeated = ok_numbers.duplicated(keep="first").to_numpy()
    if repeated.any():
        firsts = ok_numbers[~repeated]
        first_label = pd.Series(firsts.index, index=firsts.to_numpy())
        labels = first_label.reindex(ok_numbers.to_numpy()[repeated]).tolist()
        rows = ok[repeated]
        status[rows] = "duplicate"
        reason[rows] = [f"same number as row {label}" for label in labels]


def _assign(
    df: pd.DataFrame, msisdn: np.ndarray, carrier: np.ndarray, status: np.ndarray, reason: np.ndarray
) -> pd.DataFrame:
    """A copy of ``df`` with the four audience columns (text dtype ``str``)."""
    return df.assign(
        msisdn=pd.Series(msisdn, index=df.index, dtype="str"),
        carrier=pd.Series(carrier, index=df.index, dtype="str"),
        audience_status=pd.Series(status, index=df.index, dtype="str"),
        audience_reason=pd.Series(reason, index=df.index, dtype="str"),
    )
