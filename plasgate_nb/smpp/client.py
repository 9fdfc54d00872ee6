"""A blocking SMPP client for notebooks: the asyncio session runs on its own loop in a background thread."""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from ..errors import TransportError
from .config import SmppConfig, SmppMessage, SubmitResult
from .receipts import MobileOriginated, Receipt
from .session import SmppSession

__all__ = ["SmppClient"]

T = TypeVar("T")
THREAD_NAME = "plasgate-nb-smpp"


class SmppClient:
    """Blocking face of SmppSession: ``with SmppClient(host=..., port=..., system_id=...) as c: ...``.

    Keyword arguments build a SmppConfig (credentials may come from the environment). Receipts and
    MO messages collect in a thread-safe queue read by ``events()``; ``on_deliver`` (optional) is
    also called for each, on the client's thread.
    """

    def __init__(
        self,
        config: SmppConfig | None = None,
        *,
        on_deliver: Callable[[Receipt | MobileOriginated], Any] | None = None,
        **options: Any,
    ) -> None:
        """Prepare the client; ``connect()`` (or ``with``) starts the thread and binds."""
        self.config = config if config is not None else SmppConfig(**options)
        self._user_handler = on_deliver
        self._events: queue.Queue[Receipt | MobileOriginated] = queue.Queue()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self.session: SmppSession | None = None

    def __repr__(self) -> str:
        """Show the endpoint and bind mode, never the credentials."""
        return f"<SmppClient {self.config.bind} {self.config.host}:{self.config.port}>"

    def __enter__(self) -> SmppClient:
        """Connect and bind."""
        self.connect()
        return self

    def __exit__(self, *exc_info: object) -> None:
        """Unbind and stop the thread."""
        self.close()

    def _handler(self, item: Receipt | MobileOriginated) -> None:
        """Queue a receipt or MO message, then call the user's handler."""
        self._events.put(item)
        if self._user_handler is not None:
            self._user_handler(item)

    def _run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run a coroutine on the client's loop and wait for its result."""
        if self._loop is None:
            coro.close()
            raise TransportError("SmppClient is not connected: call connect() or use it as a context manager")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def connect(self) -> None:
        """Start the loop thread and bind; raise Rejected or TransportError like the async session."""
        if self._loop is not None:
            return
        loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=loop.run_forever, name=THREAD_NAME, daemon=True)
        self._thread.start()
        self._loop = loop
        self.session = SmppSession(self.config, on_deliver=self._handler)
        try:
            self._run(self.session.connect())
        except BaseException:
            self._stop_loop()
            raise

    def submit(self, message: SmppMessage | Mapping[str, Any]) -> SubmitResult:
        """Send one message and return its result."""
        if self.session is None:
            raise TransportError("SmppClient is not connected: call connect() or use it as a context manager")
        return self._run(self.session.submit(message))

    def submit_many(
        self,
        messages: Iterable[SmppMessage | Mapping[str, Any]],
        *,
        on_result: Callable[[SubmitResult], Any] | None = None,
    ) -> list[SubmitResult]:
        """Send many messages windowed; ``on_result`` runs on the client's thread as each settles."""
        if self.session is None:
            raise TransportError("SmppClient is not connected: call connect() or use it as a context manager")
        return self._run(self.session.submit_many(list(messages), on_result=on_result))

    def events(self, *, count: int = 0, timeout: float = 0.0) -> list[Receipt | MobileOriginated]:
        """Return the receipts and MO messages received so far, waiting up to ``timeout`` s for ``count``."""
        out: list[Receipt | MobileOriginated] = []
        deadline = time.monotonic() + timeout
        while True:
            try:
                out.append(self._events.get_nowait())
                continue
            except queue.Empty:
                pass
            remaining = deadline - time.monotonic()
            if len(out) >= count or remaining <= 0:
                return out
            try:
                out.append(self._events.get(timeout=remaining))
            except queue.Empty:
                return out

    def close(self) -> None:
        """Unbind, close the connection and stop the thread (idempotent)."""
        if self._loop is None:
            return
        try:
            if self.session is not None:
                self._run(self.session.close(), timeout=10)
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        """Stop and close the loop, join the thread."""
        loop, thread = self._loop, self._thread
        self._loop = self._thread = None
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
