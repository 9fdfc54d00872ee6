"""``Simulator``: start the gateway double on a loopback port and drive it from Python.

It serves in a child process by default (a server thread shares the interpreter lock with a busy
notebook), or in a thread where a test asks. Both modes talk to the server the same way: over its
admin routes, with a random token only this object knows.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlencode, urlsplit

from ..errors import PlasgateError
from ..server import BackgroundServer
from .app import ADMIN_HEADER
from .config import Account, Fault, SimulatorConfig

__all__ = ["Credentials", "Simulator"]

FACTORY = "plasgate_nb.simulator.app:create_app"


@dataclass(frozen=True, slots=True)
class _Answer:
    """An admin route's answer: status and text."""

    status_code: int
    text: str

    def json(self) -> Any:
        """The answer parsed as JSON."""
        return json.loads(self.text)


class _AdminClient:
    """A keep-alive HTTP/1.1 client for the admin routes on loopback (the standard library's http.client).

    Only ``plasgate_nb.transport`` talks to gateways with httpx; this is the simulator's own control line.
    One request at a time (a lock), one reconnect when the kept-alive connection was closed.
    """

    def __init__(self, url: str, token: str, *, timeout: float = 30.0) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.headers = {ADMIN_HEADER: token}
        self.timeout = timeout
        self._conn: http.client.HTTPConnection | None = None
        self._lock = threading.Lock()

    def request(self, method: str, path: str, *, params: dict[str, Any] | None = None, json: Any = None) -> _Answer:
        """Send one request and return its answer."""
        target = f"{path}?{urlencode(params)}" if params else path
        body = None if json is None else _dumps(json)
        headers = dict(self.headers)
        if body is not None:
            headers["Content-Type"] = "application/json"
        with self._lock:
            for attempt in (0, 1):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                try:
                    self._conn.request(method, target, body=body, headers=headers)
                    resp = self._conn.getresponse()
                    return _Answer(resp.status, resp.read().decode("utf-8"))
                except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                    self.close_locked()
                    if attempt:
                        raise
        raise PlasgateError("the simulator closed its admin connection twice in a row")  # pragma: no cover

    def download(self, path: str, out: Any) -> tuple[int, int]:
        """GET ``path`` and write its body to the binary file ``out`` in chunks; return (status, lines)."""
        with self._lock:
            self.close_locked()  # a fresh connection: a half-read stream must never be reused
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
            try:
                conn.request("GET", path, headers=self.headers)
                resp = conn.getresponse()
                lines = 0
                while chunk := resp.read(1 << 16):
                    if resp.status == 200:
                        out.write(chunk)
                        lines += chunk.count(b"\n")
                return resp.status, lines
            finally:
                conn.close()

    def close_locked(self) -> None:
        """Close the connection (the caller holds the lock or is the only user)."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self.close_locked()


def _dumps(value: Any) -> bytes:
    """JSON body bytes."""
    return json.dumps(value).encode("utf-8")


@dataclass(frozen=True, slots=True)
class Credentials:
    """How to reach an account: REST private key + secret, HTTP API username + password, a sender."""

    private_key: str = field(repr=False)
    secret: str = field(repr=False)
    username: str
    password: str = field(repr=False)
    sender: str

    def __getitem__(self, key: str) -> str:
        """Allow ``creds["secret"]`` as well as ``creds.secret``."""
        return getattr(self, key)

    @classmethod
    def of(cls, account: Account) -> Credentials:
        """Return the credentials of ``account``."""
        return cls(
            account.private_key,
            account.secret,
            account.username,
            account.password,
            account.senders[0] if account.senders else "",
        )


class Simulator:
    """A Plasgate-compatible gateway on ``127.0.0.1`` (``sim.url``), as a context manager.

    >>> with Simulator(SimulatorConfig(seed=1), mode="thread") as sim:  # doctest: +SKIP
    ...     sim.credentials.private_key, sim.records()
    """

    def __init__(
        self,
        config: SimulatorConfig | None = None,
        *,
        mode: Literal["process", "thread"] = "process",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.config = config or SimulatorConfig()
        self.mode = mode
        self._token = secrets.token_urlsafe(24)
        self._server = BackgroundServer(
            FACTORY, kwargs={"config": self.config, "admin_token": self._token}, host=host, port=port, mode=mode
        )
        self._client: _AdminClient | None = None
        self._smpp_port: int | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> Simulator:
        """Start serving; return once the simulator answers."""
        self._server.start()
        self._client = _AdminClient(self.url, self._token, timeout=30.0)
        if self.config.smpp:
            self._smpp_port = self.state()["smpp_port"]
        return self

    def stop(self) -> None:
        """Stop serving; safe to call twice."""
        if self._client is not None:
            self._client.close()
            self._client = None
        self._server.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self._server.running else "stopped"
        return f"<Simulator {self.url} {self.mode} {state}>"

    # -- facts -------------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The base URL (``http://127.0.0.1:PORT``): REST at /rest/..., HTTP API at /api/send."""
        return self._server.url

    @property
    def smpp_port(self) -> int:
        """The SMPP v3.4 port (needs ``SimulatorConfig(smpp=True)``); bind with the HTTP API login."""
        if self._smpp_port is None:
            raise PlasgateError("the simulator serves no SMPP: start it with SimulatorConfig(smpp=True)")
        return self._smpp_port

    @property
    def smpp_address(self) -> tuple[str, int]:
        """``(host, port)`` of the SMPP server."""
        return self._server.host, self.smpp_port

    @property
    def credentials(self) -> Credentials:
        """The default (first) account's credentials."""
        return Credentials.of(self.config.accounts[0])

    def credentials_for(self, username: str) -> Credentials:
        """The credentials of another configured account."""
        for account in self.config.accounts:
            if account.username == username:
                return Credentials.of(account)
        raise PlasgateError(f"the simulator has no account {username!r}")

    # -- admin calls -------------------------------------------------------------------------------
    def _admin(self, method: str, path: str, **kwargs: Any) -> _Answer:
        """Call an admin route."""
        if self._client is None:
            raise PlasgateError("the simulator is not running")
        resp = self._client.request(method, path, **kwargs)
        if resp.status_code != 200:
            raise PlasgateError(f"simulator admin {path} answered {resp.status_code}: {resp.text[:200]}")
        return resp

    def state(self) -> dict[str, Any]:
        """Clock, balances, record count, scheduled receipts, callback statistics, active faults."""
        return self._admin("GET", "/_sim/state").json()

    def records(self, *, offset: int = 0) -> list[dict[str, Any]]:
        """Every accepted message (one dict per recipient), in acceptance order."""
        text = self._admin("GET", "/_sim/records", params={"offset": offset}).text
        return [json.loads(line) for line in text.splitlines() if line]

    def dump_jsonl(self, path: str | Path) -> int:
        """Write the record as JSON Lines to ``path``; return the number of lines."""
        if self._client is None:
            raise PlasgateError("the simulator is not running")
        with Path(path).open("wb") as out:
            status, count = self._client.download("/_sim/records", out)
        if status != 200:
            raise PlasgateError(f"simulator admin /_sim/records answered {status}")
        return count

    def report(self, *, account: str | None = None, batch_id: str | None = None) -> list[dict[str, Any]]:
        """The transaction report of an account (default: the first), ``#ma#`` areas as ******."""
        params = {"account": account or self.config.accounts[0].username}
        if batch_id:
            params["batch_id"] = batch_id
        return self._admin("GET", "/_sim/report", params=params).json()

    def set_faults(self, *faults: Fault) -> None:
        """Replace the active faults (none: clear them)."""
        self._admin("POST", "/_sim/control", json={"faults": [f.to_dict() for f in faults]})

    def clear_faults(self) -> None:
        """Remove every fault."""
        self.set_faults()

    def advance(self, seconds: float) -> float:
        """Move the simulated clock ``seconds`` ahead (due receipts and schedules fire); return it."""
        return self._admin("POST", "/_sim/control", json={"advance": seconds}).json()["now"]

    def set_clock_speed(self, speed: float) -> None:
        """Run simulated time ``speed`` times faster than real time."""
        self._admin("POST", "/_sim/control", json={"speed": speed})

    @property
    def now(self) -> float:
        """The simulated time (epoch seconds)."""
        return self.state()["now"]

    def set_balance(self, amount: float, *, account: str | None = None) -> None:
        """Set an account's balance (default: the first account)."""
        name = account or self.config.accounts[0].username
        self._admin("POST", "/_sim/control", json={"balance": {name: amount}})

    def reply(
        self,
        msisdn: str,
        text: str,
        *,
        to: str | None = None,
        account: str | None = None,
        via: Literal["smpp", "http"] = "smpp",
        url: str | None = None,
    ) -> None:
        """Make handset ``msisdn`` reply ``text``: over SMPP (to the account's bound receiver/transceiver,
        held until one binds), or with ``via="http"`` posted to ``url`` as Jasmin's MO connector posts it
        (retried until the receiver answers ``ACK/Jasmin``).

        ``to`` is the address replied to (default: the account's first sender).
        """
        if via not in ("smpp", "http"):
            raise PlasgateError(f"via must be 'smpp' or 'http', not {via!r}")
        if via == "http" and not url:
            raise PlasgateError("a reply over HTTP needs the receiver's MO url=")
        name = account or self.config.accounts[0].username
        target = to or self.credentials_for(name).sender
        mo: dict[str, Any] = {"account": name, "from": msisdn, "to": target, "text": text}
        if via == "http":
            mo.update(via="http", url=url)
        self._admin("POST", "/_sim/control", json={"mo": mo})

    def drop_smpp_connections(self) -> None:
        """Cut every SMPP connection at once, without an unbind (a network failure)."""
        self._admin("POST", "/_sim/control", json={"smpp_drop": True})

    def wait_idle(self, timeout: float = 10.0) -> dict[str, Any]:
        """Wait until no receipt is scheduled or in flight; return the state (raise on timeout)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.state()
            if state["idle"]:
                return state
            if time.monotonic() > deadline:
                raise PlasgateError(
                    f"simulator still busy after {timeout} s: "
                    f"{state['scheduled']} scheduled, "
                    f"{state['in_flight']} in flight"
                )
            time.sleep(0.02)

    def with_config(self, **changes: Any) -> SimulatorConfig:
        """Return a copy of this simulator's config with ``changes`` (for a restart)."""
        return replace(self.config, **changes)
