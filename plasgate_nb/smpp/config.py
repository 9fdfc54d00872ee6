"""Settings of an SMPP session: where, who, how fast, and how to split long messages."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import ConfigError
from .message import Concat

__all__ = ["BindMode", "SmppConfig", "SmppMessage", "SubmitResult"]

BindMode = Literal["transceiver", "transmitter", "receiver"]
ENV_SYSTEM_ID = "PLASGATE_SMPP_SYSTEM_ID"
ENV_PASSWORD = "PLASGATE_SMPP_PASSWORD"
MAX_CREDENTIAL = 30


@dataclass(frozen=True, slots=True)
class SmppConfig:
    """How to reach and use an SMPP server; credentials never show in the repr.

    ``window`` is the number of submit_sm PDUs in flight, ``rate`` caps submit_sm per second
    (None: as fast as the window allows), ``concat`` chooses UDH or sar_ TLVs for long messages.
    """

    host: str = "127.0.0.1"
    port: int = 2775
    system_id: str = field(default="", repr=False)
    password: str = field(default="", repr=False)
    bind: BindMode = "transceiver"
    system_type: str = ""
    window: int = 50
    rate: float | None = None
    response_timeout: float = 10.0
    connect_timeout: float = 10.0
    enquire_link_interval: float = 30.0
    reconnect_attempts: int = 5
    reconnect_backoff: float = 0.5
    reconnect_backoff_max: float = 30.0
    throttle_backoff: float = 0.1
    throttle_backoff_max: float = 5.0
    throttle_retries: int = 100
    concat: Concat = "udh"
    registered_delivery: int = 1
    source_addr_ton: int = 5
    source_addr_npi: int = 0
    dest_addr_ton: int = 1
    dest_addr_npi: int = 1

    def __post_init__(self) -> None:
        """Fill credentials from the environment and check every limit."""
        if not self.system_id:
            object.__setattr__(self, "system_id", os.environ.get(ENV_SYSTEM_ID, ""))
        if not self.password:
            object.__setattr__(self, "password", os.environ.get(ENV_PASSWORD, ""))
        if not self.system_id:
            raise ConfigError(f"SMPP system_id missing: pass system_id= or set {ENV_SYSTEM_ID}")
        for name in ("system_id", "password"):
            if len(getattr(self, name)) > MAX_CREDENTIAL:
                raise ConfigError(f"SMPP {name} longer than {MAX_CREDENTIAL} characters")
        if self.bind not in ("transceiver", "transmitter", "receiver"):
            raise ConfigError(f"bind must be transceiver, transmitter or receiver, not {self.bind!r}")
        if self.window < 1:
            raise ConfigError(f"window must be at least 1, not {self.window}")
        if self.rate is not None and self.rate <= 0:
            raise ConfigError(f"rate must be positive or None, not {self.rate}")
        if self.concat not in ("udh", "sar"):
            raise ConfigError(f"concat must be 'udh' or 'sar', not {self.concat!r}")


@dataclass(frozen=True, slots=True)
class SmppMessage:
    """One message to send: recipient, text, sender ID and an optional key of the caller's."""

    to: str
    text: str
    sender: str
    key: Any = None

    @classmethod
    def coerce(cls, item: SmppMessage | Mapping[str, Any]) -> SmppMessage:
        """Accept a SmppMessage or a mapping with ``to``, ``text`` (or ``content``), ``sender``, ``key``."""
        if isinstance(item, SmppMessage):
            return item
        return cls.build(item, cls.check(item))

    @classmethod
    def build(cls, item: Mapping[str, Any], text: Any) -> SmppMessage:
        """Build from a mapping ``check`` accepted, given the text it returned."""
        return cls(str(item["to"]), str(text), str(item["sender"]), item.get("key"))

    @staticmethod
    def check(item: SmppMessage | Mapping[str, Any]) -> Any:
        """Raise ConfigError unless ``coerce`` accepts ``item``; return its text (None for a SmppMessage)."""
        if isinstance(item, SmppMessage):
            return None
        text = item.get("text", item.get("content"))
        if text is None or not item.get("to") or not item.get("sender"):
            raise ConfigError("an SMPP message needs 'to', 'text' (or 'content') and 'sender'")
        return text


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """What became of one message at submit time.

    ``outcome`` is ``accepted`` (every part has an id), ``rejected`` (the server refused a part:
    ``status`` holds its command_status) or ``uncertain`` (a part was written and no answer came:
    do not resend). ``message_id`` is the id receipts refer to: the last part's.
    """

    key: Any
    to: str
    outcome: Literal["accepted", "rejected", "uncertain"]
    part_ids: tuple[str | None, ...]
    message_id: str | None
    status: int | None = None
    error: str | None = None
    throttled: int = 0
