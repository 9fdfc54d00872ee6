"""The exception tree of plasgate_nb: every error the toolkit raises derives from PlasgateError."""

from __future__ import annotations

from datetime import datetime

__all__ = [
    "AudienceError",
    "CallbackError",
    "CampaignBusy",
    "ConfigError",
    "GatewayError",
    "LedgerError",
    "OptionError",
    "PlasgateError",
    "Rejected",
    "TemplateError",
    "TransportError",
]


class PlasgateError(Exception):
    """Base class of every plasgate_nb error."""


class ConfigError(PlasgateError):
    """A setting is missing or invalid (credentials, URLs, limits)."""


class OptionError(ConfigError, ValueError):
    """An argument is not one of the values it may take (a chart kind, an option it does not support)."""


class AudienceError(PlasgateError):
    """The audience frame cannot be prepared (missing phone column, bad suppression list)."""


class TemplateError(PlasgateError):
    """A message template does not compile or does not render for some row."""


class GatewayError(PlasgateError):
    """The gateway could not be reached or refused a request."""


class TransportError(GatewayError):
    """The request may or may not have reached the gateway (network, timeout, 5xx)."""


class Rejected(GatewayError):
    """The gateway definitely refused a request (validation, auth, balance, rate limit)."""

    def __init__(self, message: str, *, status: int | None = None, body: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class LedgerError(PlasgateError):
    """The campaign ledger cannot be read or written, or its content contradicts a request."""


class CampaignBusy(LedgerError):
    """Another live sender holds the campaign's lease: nothing was sent; rerun later, or pass ``wait=``.

    ``host``, ``pid`` and ``since`` (aware UTC) name the holder when it is known; ``waited`` is how many
    seconds this sender waited for it before giving up (0 when it did not wait).
    """

    def __init__(
        self,
        message: str,
        *,
        campaign: str | None = None,
        host: str | None = None,
        pid: int | None = None,
        since: datetime | None = None,
        waited: float = 0.0,
    ) -> None:
        super().__init__(message)
        self.campaign = campaign
        self.host = host
        self.pid = pid
        self.since = since
        self.waited = waited


class CallbackError(PlasgateError):
    """A delivery report or batch callback is malformed or cannot be stored."""
