"""Typed, picklable configuration of the gateway simulator: accounts, delivery model, limits, faults.

Every class here is a frozen dataclass of plain values so a ``SimulatorConfig`` can travel to the
child process that serves it. Secrets (password, private key, X-Secret) are left out of every repr.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from ..errors import ConfigError

__all__ = [
    "DEFAULT_CARRIERS",
    "FAULT_KINDS",
    "ROUTES",
    "SMPP_ROUTE",
    "SPECIAL_NUMBERS",
    "Account",
    "Carrier",
    "DeliveryModel",
    "Fault",
    "RateLimits",
    "SimulatorConfig",
]

Route = Literal["rest", "batch", "api"]
ROUTES: tuple[str, ...] = ("rest", "batch", "api")
SMPP_ROUTE = "smpp"  # faults only: the SMPP server applies throttle, error_*, delay_after, drop_after

# request-level faults (applied by the fault middleware) and callback-level faults (by the model)
FAULT_KINDS: tuple[str, ...] = (
    "error_before",  # answer `status` (408 or 5xx) without processing the request
    "throttle",  # answer 429 with Retry-After without processing the request
    "error_after",  # accept the messages, then answer `status` (408 or 5xx) instead of the real answer
    "delay_after",  # accept, then hold the real answer `delay` seconds (past the client's timeout)
    "drop_after",  # accept, then close the connection without answering
    "duplicate_callbacks",  # every DLR / batch callback of the request is sent twice
    "out_of_order_callbacks",  # level 2 is sent before level 1
    "callbacks_before_response",  # the request's callbacks are thrown (and ACKed) before it answers
)


@dataclass(frozen=True, slots=True)
class Account:
    """One gateway account: REST credentials (private key + X-Secret), HTTP API login, senders, money.

    The demo secret holds a ``$`` on purpose: real Plasgate secrets do, and clients must pass them
    verbatim (no shell or template expansion). ``mo_url`` is where replies from handsets are posted over
    HTTP (Jasmin's MO HTTP connector, configured per route); without it they go to the account's bound
    SMPP receiver. It is left out of the repr: a receiver's URL may carry its token.
    """

    username: str = "demo"
    password: str = field(default="demo-pass", repr=False)
    private_key: str = field(default="pk_demo_7f3a9c2e41b8", repr=False)
    secret: str = field(default="sk$demo$5d1e8b0a93c4", repr=False)
    senders: tuple[str, ...] = ("SMS Info",)
    balance: float = 1_000_000.0
    price_per_segment: float = 0.012
    mo_url: str | None = field(default=None, repr=False)


@dataclass(frozen=True, slots=True)
class Carrier:
    """Outcome probabilities and latency (simulated seconds) of one carrier, chosen by number prefix.

    ``undeliverable``, ``expired``, ``rejected`` and ``refused`` are probabilities; the rest is DELIVRD.
    ``refused`` is an SMSC refusal: a level-1 DLR with ``ESME_RINVDSTADR`` and no level 2 (over SMPP, a
    submit_sm_resp with that status), as Jasmin reports a number its upstream refuses. A share
    ``interim`` of the delivered messages first gets an intermediate level-2 report (UNKNOWN or
    ENROUTE, as recorded from Jasmin), then DELIVRD a second later. Level-2 latency is log-normal
    around ``median_latency``; EXPIRED comes after ``expiry_after``.
    """

    name: str
    prefixes: tuple[str, ...]
    undeliverable: float = 0.03
    expired: float = 0.01
    rejected: float = 0.005
    refused: float = 0.002
    interim: float = 0.1
    median_latency: float = 3.0
    latency_sigma: float = 0.6
    submit_latency: float = 0.05
    expiry_after: float = 600.0


DEFAULT_CARRIERS: tuple[Carrier, ...] = (
    Carrier(
        "smart",
        ("10", "15", "16", "69", "70", "81", "86", "87", "93", "96", "98"),
        undeliverable=0.025,
        expired=0.008,
        rejected=0.004,
        median_latency=2.5,
    ),
    Carrier(
        "cellcard",
        ("11", "12", "14", "17", "61", "76", "77", "78", "79", "85", "89", "92", "95", "99"),
        undeliverable=0.03,
        expired=0.01,
        rejected=0.005,
        median_latency=3.5,
    ),
    Carrier(
        "metfone",
        ("31", "60", "66", "67", "68", "71", "88", "90", "97"),
        undeliverable=0.045,
        expired=0.015,
        rejected=0.006,
        median_latency=5.0,
        latency_sigma=0.8,
    ),
    Carrier("seatel", ("18",), undeliverable=0.06, expired=0.02, rejected=0.01, median_latency=6.0),
)

# national-number suffixes after 855: always the same fate (documented in the README)
SPECIAL_NUMBERS: dict[str, str] = {
    "85510000001": "UNDELIV",
    "85510000002": "REJECTD",
    "85510000003": "EXPIRED",
    "85510000004": "NEVER",  # level 1 ESME_ROK, never a level 2
    "85510000005": "ESME_RINVDSTADR",  # refused at submit: level 1 carries the ESME error, no level 2
    "85510000006": "UNKNOWN_THEN_DELIVRD",  # level 2 UNKNOWN, then level 2 DELIVRD
    "85510000008": "ENROUTE_THEN_DELIVRD",  # level 2 ENROUTE, then level 2 DELIVRD
    "85510000007": "DELETED",
}


@dataclass(frozen=True, slots=True)
class DeliveryModel:
    """How messages fare after acceptance: carriers by prefix, special numbers, default for the rest."""

    carriers: tuple[Carrier, ...] = DEFAULT_CARRIERS
    fallback: Carrier = Carrier("other", (), undeliverable=0.08, expired=0.02, rejected=0.02, median_latency=8.0)
    special_numbers: tuple[tuple[str, str], ...] = tuple(SPECIAL_NUMBERS.items())


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Requests per ``window`` seconds per account and route (Plasgate's documented defaults); None = off."""

    rest: int | None = 200
    batch: int | None = 100
    api: int | None = 200
    window: float = 60.0

    @classmethod
    def off(cls) -> RateLimits:
        """No rate limits at all (benchmarks)."""
        return cls(rest=None, batch=None, api=None)


@dataclass(frozen=True, slots=True)
class Fault:
    """One injected fault: ``kind`` (see FAULT_KINDS) on ``route`` ('rest'|'batch'|'api'|'smpp'|'*').

    On ``smpp`` (submit_sm PDUs): ``throttle`` answers ESME_RTHROTTLED, ``error_before`` ESME_RSYSERR,
    both without accepting; ``drop_after`` accepts and closes the connection unanswered;
    ``delay_after`` accepts and answers ``delay`` s later (no response in time); ``error_after``
    accepts and answers ESME_RSYSERR.

    Applies to the next ``count`` matching requests, or to each with ``probability`` (seeded); with
    neither, to every matching request. ``status`` is the 408 or 5xx to answer; ``delay`` the hold in seconds.
    """

    kind: str
    route: str = "*"
    probability: float | None = None
    count: int | None = None
    status: int = 500
    delay: float = 45.0  # past the client's default 30 s read timeout

    def to_dict(self) -> dict[str, object]:
        """Return the fault as plain JSON-able values."""
        return {
            "kind": self.kind,
            "route": self.route,
            "probability": self.probability,
            "count": self.count,
            "status": self.status,
            "delay": self.delay,
        }


@dataclass(frozen=True, slots=True)
class SimulatorConfig:
    """Everything the simulator needs; picklable, so it can be served from a child process.

    ``start_time`` (epoch seconds) pins the simulated clock's start, ``clock_speed`` runs simulated time
    faster than real time. Callbacks are retried ``callback_retries`` times, ``callback_retry_delay``
    simulated seconds apart, until the receiver answers 200 ``ACK/Jasmin``. ``batch_invalid_numbers``:
    ``"errback"`` (Jasmin: the batch is accepted, bad numbers go to errback_url) or ``"reject"`` (400).
    ``max_parts`` truncates longer messages as Jasmin does (None = never). ``smpp=True`` also serves
    SMPP v3.4 on ``smpp_port`` (0: any free port; ``Simulator.smpp_port`` tells which), in the same
    process and loop as the HTTP routes, binding with the HTTP API username/password;
    ``smpp_enquire_link_interval`` is how long a link may stay silent before the server probes it.
    ``no_route`` lists national prefixes (the two digits after 855) no route serves: the gateway refuses
    those numbers (REST ``/rest/send`` 412, HTTP API ``412 Error "No route found"``, a batch's errback
    after its 200); by default 13, the closed qb network that number plans still list as mobile.
    ``opt_out_replies`` is the share of numbers whose handset replies an opt-out keyword (``STOP`` or
    Khmer ``ឈប់``) a second after each delivered message, chosen per number from ``seed``
    (``delivery.opt_out_reply`` tells which); the reply goes to the account's ``mo_url`` over HTTP, or to
    its bound SMPP receiver. 0 (the default) turns it off. ``record=False`` (load tests of millions of
    messages) keeps out of the record the requests after whose answer nothing follows (no ``dlr_url``,
    callback or errback URL, SMPP receipt or opt-out reply): they are charged, counted (``state()``'s
    ``unrecorded``) and get their ids, but ``records()`` and the transaction report leave them out.
    """

    accounts: tuple[Account, ...] = (Account(),)
    seed: int | None = None
    delivery: DeliveryModel = DeliveryModel()
    rate_limits: RateLimits = RateLimits()
    clock_speed: float = 1.0
    start_time: float | None = None
    callback_retries: int = 3
    callback_retry_delay: float = 1.0
    callback_timeout: float = 5.0
    callback_concurrency: int = 64
    faults: tuple[Fault, ...] = ()
    batch_invalid_numbers: Literal["errback", "reject"] = "errback"
    max_parts: int | None = None
    smpp: bool = False
    smpp_port: int = 0
    smpp_enquire_link_interval: float = 30.0
    no_route: tuple[str, ...] = ("13",)
    opt_out_replies: float = 0.0
    record: bool = True

    def __post_init__(self) -> None:
        if not 0.0 <= self.opt_out_replies <= 1.0:
            raise ConfigError(f"opt_out_replies is a share between 0 and 1, not {self.opt_out_replies!r}")
