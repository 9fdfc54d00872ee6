"""Gateway settings (URL, credentials, TLS, timeouts, limits) and the redaction of secrets from text and logs.

Credentials come from arguments or from ``PLASGATE_*`` environment variables, verbatim (a secret may
contain ``$``). They never show in a repr, a log record or an exception message: every secret value a
``Gateway`` holds is registered with :func:`redact`, and :func:`install_log_redaction` puts a filter on
the ``httpx``/``httpcore`` loggers, which print full URLs (with ``private_key``) at INFO and DEBUG.
"""

from __future__ import annotations

import logging
import os
import re
import ssl
import threading
from dataclasses import dataclass, field, fields, replace
from typing import Any, Literal
from urllib.parse import quote, quote_plus, urlsplit

from .errors import ConfigError

__all__ = [
    "DEFAULT_BASE_URL",
    "DEFAULT_RATE_LIMITS",
    "ENV",
    "Gateway",
    "RedactingFilter",
    "install_log_redaction",
    "redact",
]

logger = logging.getLogger("plasgate_nb")

DEFAULT_BASE_URL = "https://cloudapi.plasgate.com"
#: requests per minute per send path, as documented by Plasgate (None switches a limiter off)
DEFAULT_RATE_LIMITS: dict[str, int | None] = {"batch": 100, "single": 200, "http": 200}
ENV = {
    "base_url": "PLASGATE_BASE_URL",
    "private_key": "PLASGATE_PRIVATE_KEY",
    "secret": "PLASGATE_SECRET",
    "username": "PLASGATE_USERNAME",
    "password": "PLASGATE_PASSWORD",
    "sender": "PLASGATE_SENDER",
}
SECRET_FIELDS = ("private_key", "secret", "password")
MASK = "***"
_NEEDS = {"batch": ("private_key", "secret"), "single": ("private_key", "secret"), "http": ("username", "password")}
_PATTERNS = [
    re.compile(r"(?i)(private_key=)[^&\s\"'<>]+"),
    re.compile(r"(?i)(password=)[^&\s\"'<>]+"),
    re.compile(r"(?i)(x-secret['\"]?\s*[:,=]\s*['\"]?)[^\s\"',)\]}]+"),
]
_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def _register(value: str | None) -> None:
    """Remember a secret value (and its URL-encoded forms) so :func:`redact` masks it anywhere."""
    if not value or len(value) < 4:
        return
    with _secrets_lock:
        _secrets.update({value, quote(value, safe=""), quote_plus(value)})


def redact(text: str) -> str:
    """Return ``text`` with private_key/password values, X-Secret headers and known secrets masked."""
    for pattern in _PATTERNS:
        text = pattern.sub(rf"\g<1>{MASK}", text)
    with _secrets_lock:
        known = sorted(_secrets, key=len, reverse=True)
    for value in known:
        if value in text:
            text = text.replace(value, MASK)
    return text


class RedactingFilter(logging.Filter):
    """A logging filter that rewrites each record's message with :func:`redact` (it never drops records)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Format the record's message, redact it, and store it back without arguments."""
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix; leave it alone
            return True
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True


_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "httpcore.socks",
    "plasgate_nb",
)
_FILTER = RedactingFilter()


def install_log_redaction() -> None:
    """Attach the redacting filter to the httpx, httpcore (and its child) and plasgate_nb loggers; idempotent.

    Logger filters apply only to records created on that very logger, hence the child loggers.
    """
    for name in _LOGGERS:
        log = logging.getLogger(name)
        if _FILTER not in log.filters:
            log.addFilter(_FILTER)


def _env(name: str) -> str | None:
    """Return the environment variable for setting ``name`` verbatim, or None when unset or empty."""
    value = os.environ.get(ENV[name])
    return value if value else None


@dataclass(frozen=True, repr=False)
class Gateway:
    """Where and how to reach Plasgate: URL, credentials, sender, TLS, timeouts, concurrency and rate limits.

    ``verify`` is True (system CAs), False (no verification: tests only) or a CA bundle path.
    ``rate_limits`` maps a send path ('batch', 'single', 'http') to requests per minute (None: off).
    ``max_in_flight`` bounds concurrent requests; ``max_retries`` bounds automatic retries of requests
    that certainly did not reach the gateway; a Retry-After longer than ``max_retry_wait`` seconds is
    handed back to the caller instead of waited for.
    """

    base_url: str = DEFAULT_BASE_URL
    private_key: str | None = field(default=None, repr=False)
    secret: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    sender: str = "SMS Info"
    verify: bool | str = True
    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    write_timeout: float = 30.0
    pool_timeout: float = 10.0
    keepalive_expiry: float = 2.0
    max_in_flight: int = 4
    max_retries: int = 3
    max_retry_wait: float = 120.0
    default_retry_after: float = 60.0
    rate_limits: dict[str, int | None] = field(default_factory=lambda: dict(DEFAULT_RATE_LIMITS))

    def __post_init__(self) -> None:
        """Validate settings and register the secrets for redaction."""
        if not str(self.base_url).startswith(("http://", "https://")):
            shown = redact(str(self.base_url))
            raise ConfigError(f"base_url must start with http:// or https:// (got {shown!r}; set {ENV['base_url']})")
        object.__setattr__(self, "base_url", str(self.base_url).rstrip("/"))
        try:
            parts = urlsplit(self.base_url)
            parts.port  # noqa: B018 (a bad port raises ValueError here)
        except ValueError as exc:
            raise ConfigError(f"base_url {redact(self.base_url)!r} is not a valid URL: {exc}") from exc
        if not parts.hostname:
            raise ConfigError(f"base_url {redact(self.base_url)!r} names no host")
        if self.max_in_flight < 1:
            raise ConfigError(f"max_in_flight must be at least 1, not {self.max_in_flight}")
        unknown = sorted(set(self.rate_limits) - set(DEFAULT_RATE_LIMITS))
        if unknown:
            raise ConfigError(f"rate_limits has unknown path(s) {unknown}; use {sorted(DEFAULT_RATE_LIMITS)}")
        object.__setattr__(self, "rate_limits", {**DEFAULT_RATE_LIMITS, **self.rate_limits})
        if isinstance(self.verify, str) and not os.path.exists(self.verify):
            raise ConfigError(f"verify={self.verify!r}: CA bundle not found")
        for name in SECRET_FIELDS:
            _register(getattr(self, name))
        install_log_redaction()

    @classmethod
    def from_env(cls, **overrides: Any) -> Gateway:
        """Build a Gateway from ``PLASGATE_*`` environment variables; keyword arguments win over them."""
        values: dict[str, Any] = {name: _env(name) for name in ENV}
        values = {k: v for k, v in values.items() if v is not None}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def require(self, path: Literal["batch", "single", "http"]) -> None:
        """Raise ConfigError naming the environment variable of each credential ``path`` lacks."""
        if path not in _NEEDS:
            raise ConfigError(f"unknown send path {path!r}; use 'batch', 'single' or 'http'")
        missing = [ENV[name] for name in _NEEDS[path] if not getattr(self, name)]
        if missing:
            raise ConfigError(
                f"missing credential(s) for path {path!r}: set {', '.join(missing)} (or pass them to Gateway)"
            )

    def with_options(self, **changes: Any) -> Gateway:
        """Return a copy with some settings changed."""
        return replace(self, **changes)

    def ssl_context(self) -> ssl.SSLContext | bool:
        """Return what the HTTP client should use to verify TLS."""
        if isinstance(self.verify, str):
            return ssl.create_default_context(cafile=self.verify)
        return self.verify

    def __repr__(self) -> str:
        """Show the settings with every secret replaced by ``***``."""
        parts = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS:
                parts.append(f"{f.name}='{MASK}'" if value else f"{f.name}=None")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"Gateway({', '.join(parts)})"

    __str__ = __repr__
