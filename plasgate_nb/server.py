"""Run an ASGI app on uvicorn in the background: in a thread (tests) or in a child process (default).

The listening socket is pre-bound on port 0 with ``IPPROTO_TCP`` so that asyncio sets TCP_NODELAY on
accepted connections (DESIGN.md section 7); ``start()`` returns once the server is serving, and
``stop()`` is idempotent and leaves no thread or process behind. With ``header_timeout``, a connection
that does not finish its request headers in time is closed (uvicorn alone would wait forever). With
``workers=N`` (process mode) N child processes serve one listening socket bound here: the kernel hands
each new connection to one of them, and ``revive()`` replaces a worker that died.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import importlib
import logging
import os
import pickle
import select
import socket
import subprocess
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any, Literal

import uvicorn

from .errors import PlasgateError

__all__ = ["BackgroundServer", "bind_socket", "header_timeout_protocol", "live_servers"]

logger = logging.getLogger("plasgate_nb")

Mode = Literal["thread", "process"]
THREAD_NAME = "plasgate-nb-server"
_LIVE: weakref.WeakSet[BackgroundServer] = weakref.WeakSet()


def live_servers() -> list[BackgroundServer]:
    """Return the background servers started and not yet stopped (the tests' leak guard reads this)."""
    return [server for server in _LIVE if server.running]


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """Bind a listening TCP socket (proto IPPROTO_TCP, so accepted connections get TCP_NODELAY)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise PlasgateError(f"cannot listen on {host}:{port}: {exc.strerror}") from exc
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def _resolve(factory: str) -> Callable[..., Any]:
    """Import ``"package.module:function"``."""
    module, _, name = factory.partition(":")
    return getattr(importlib.import_module(module), name)


class _HeaderDeadline:
    """Mixin for a uvicorn HTTP protocol: close a connection whose request headers are not complete
    ``header_timeout`` seconds after it opened or after its previous response (slowloris).

    A request whose headers were read is being handled (``cycle`` set, its response not complete) and
    is left alone, however long the application takes.
    """

    header_timeout: float = 10.0
    _header_timer: asyncio.TimerHandle | None = None

    def _arm_header_deadline(self) -> None:
        """(Re)start the deadline for the next request's headers."""
        if self._header_timer is not None:
            self._header_timer.cancel()
        self._header_timer = self.loop.call_later(self.header_timeout, self._header_deadline)  # type: ignore[attr-defined]

    def _header_deadline(self) -> None:
        """Close the connection unless a request's headers arrived and it is being answered."""
        self._header_timer = None
        cycle = getattr(self, "cycle", None)
        if cycle is not None and not cycle.response_complete:
            return
        transport = self.transport  # type: ignore[attr-defined]
        if transport is not None and not transport.is_closing():
            logger.info("closing a connection that sent no complete request headers in %.3g s", self.header_timeout)
            transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:
        super().connection_made(transport)  # type: ignore[misc]
        self._arm_header_deadline()

    def on_response_complete(self) -> None:
        super().on_response_complete()  # type: ignore[misc]
        if not self.transport.is_closing():  # type: ignore[attr-defined]
            self._arm_header_deadline()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None
        super().connection_lost(exc)  # type: ignore[misc]


def header_timeout_protocol(seconds: float) -> type[asyncio.Protocol]:
    """uvicorn's HTTP protocol (httptools when installed, else h11) closing slow-header connections."""
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as Base
    except ImportError:  # pragma: no cover - httptools is part of uvicorn[standard]
        from uvicorn.protocols.http.h11_impl import H11Protocol as Base  # type: ignore[assignment]
    return type("HeaderDeadlineProtocol", (_HeaderDeadline, Base), {"header_timeout": float(seconds)})


def _config(app: Any, host: str, port: int, *, log_level: str, header_timeout: float | None = None) -> uvicorn.Config:
    """Return a quiet uvicorn configuration for ``app``."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="auto",
        timeout_graceful_shutdown=3,
        backlog=2048,
        http=header_timeout_protocol(header_timeout) if header_timeout is not None else "auto",
    )


def serve_child() -> None:  # pragma: no cover - runs in the child process
    """Child entry point: read the job from stdin, serve, print the port, stop when stdin closes."""
    job = pickle.loads(base64.b64decode(sys.stdin.readline()))
    try:
        app = _resolve(job["factory"])(**job["kwargs"])
        # a worker serves the socket its parent bound and handed down (``workers``); else it binds its own
        sock = socket.socket(fileno=job["fd"]) if job.get("fd") is not None else bind_socket(job["host"], job["port"])
        server = uvicorn.Server(
            _config(app, job["host"], job["port"], log_level=job["log_level"], header_timeout=job.get("header_timeout"))
        )
    except BaseException as exc:
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)
        return
    # What start-up imported and built (pandas, the app: ~120k objects) lives as long as the process:
    # move it out of the collector's sight so each full collection scans only what serving created
    # (measured: a simulator child accepting personalized batch-sends spent about half its time in
    # full collections that re-scanned the start-up heap).
    gc.collect()
    gc.freeze()
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=THREAD_NAME, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            print("ERROR server exited during start-up", flush=True)
            return
        thread.join(0.01)
    print(f"STARTED {sock.getsockname()[1]}", flush=True)
    with contextlib.suppress(SystemExit):  # SIGTERM (see _child): stop serving as at EOF, quietly
        sys.stdin.read()  # returns at EOF: the parent stopped us, or died
    server.should_exit = True
    thread.join(10)
    sock.close()


class BackgroundServer:
    """An ASGI app built by ``factory(**kwargs)`` served on uvicorn in a thread or a child process.

    ``factory`` is a callable in thread mode, or a ``"module:function"`` string (required in process
    mode, where the app is built in the child). Use as a context manager or call ``start``/``stop``.
    ``header_timeout`` (seconds) closes connections that do not finish their request headers in time.
    ``workers`` (process mode) is how many child processes serve the listening socket, which this
    process then binds (or takes ready bound as ``sock``) and hands down; ``pids`` lists them and
    ``revive()`` replaces any that died.
    """

    def __init__(
        self,
        factory: str | Callable[..., Any],
        *,
        kwargs: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        mode: Mode = "thread",
        log_level: str = "warning",
        start_timeout: float = 30.0,
        header_timeout: float | None = None,
        workers: int = 1,
        sock: socket.socket | None = None,
    ) -> None:
        if mode not in ("thread", "process"):
            raise PlasgateError(f"mode must be 'thread' or 'process', not {mode!r}")
        if mode == "process" and not isinstance(factory, str):
            raise PlasgateError("process mode needs the factory as a 'module:function' string")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise PlasgateError(f"workers must be a whole number of at least 1, not {workers!r}")
        if workers > 1 and mode != "process":
            raise PlasgateError("several workers need process mode")
        if sock is not None and workers == 1:
            raise PlasgateError("a bound socket is handed only to several workers")
        self.factory = factory
        self.kwargs = dict(kwargs or {})
        self.host = host
        self.port = port
        self.mode: Mode = mode
        self.log_level = log_level
        self.start_timeout = start_timeout
        self.header_timeout = header_timeout
        self.workers = workers
        self.app: Any = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = sock
        self._processes: list[subprocess.Popen[str]] = []

    @property
    def url(self) -> str:
        """The base URL the server answers on (``http://host:port``)."""
        return f"http://{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server is started and not stopped."""
        if self.mode == "thread":
            return self._thread is not None and self._thread.is_alive()
        return any(process.poll() is None for process in self._processes)

    @property
    def pids(self) -> list[int]:
        """The process ids of the child processes serving (process mode; empty in thread mode)."""
        return [process.pid for process in self._processes]

    def start(self) -> BackgroundServer:
        """Start serving and return once the server accepts connections."""
        if self.running:
            return self
        if self.mode == "thread":
            self._start_thread()
        else:
            self._start_process()
        logger.debug("server %s started at %s (%s)", self.factory, self.url, self.mode)
        return self

    def _start_thread(self) -> None:
        """Build the app here and serve it from a daemon thread."""
        factory = _resolve(self.factory) if isinstance(self.factory, str) else self.factory
        self.app = factory(**self.kwargs)
        self._sock = bind_socket(self.host, self.port)
        self.port = self._sock.getsockname()[1]
        self._server = uvicorn.Server(
            _config(self.app, self.host, self.port, log_level=self.log_level, header_timeout=self.header_timeout)
        )
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._sock]}, name=THREAD_NAME, daemon=True
        )
        self._thread.start()
        _LIVE.add(self)
        waited = 0.0
        while not self._server.started:
            if not self._thread.is_alive() or waited > self.start_timeout:
                self.stop()
                raise PlasgateError(f"server {self.factory} did not start")
            self._thread.join(0.005)
            waited += 0.005

    def _job(self, fd: int | None) -> dict[str, Any]:
        """What a child process needs: the factory and its arguments, where to listen, or the socket's fd."""
        return {
            "factory": self.factory,
            "kwargs": self.kwargs,
            "host": self.host,
            "port": self.port,
            "fd": fd,
            "log_level": self.log_level,
            "header_timeout": self.header_timeout,
        }

    def _spawn(self, fd: int | None) -> subprocess.Popen[str]:
        """Start ``python -m plasgate_nb._child`` with the job on stdin (and the socket's fd, if any)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in [os.getcwd(), *sys.path] if p)
        process = subprocess.Popen(
            [sys.executable, "-m", "plasgate_nb._child"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
            text=True,
            pass_fds=() if fd is None else (fd,),
        )
        self._processes.append(process)
        if process.stdin is None:  # pragma: no cover - it is a pipe
            raise PlasgateError("cannot talk to the server process")
        process.stdin.write(base64.b64encode(pickle.dumps(self._job(fd))).decode() + "\n")
        process.stdin.flush()
        return process

    def _started(self, process: subprocess.Popen[str]) -> int:
        """Wait for a child's ``STARTED <port>`` line and return the port (PlasgateError if it failed)."""
        stdout = process.stdout
        if stdout is None:  # pragma: no cover - it is a pipe
            raise PlasgateError("cannot talk to the server process")
        ready, _, _ = select.select([stdout], [], [], self.start_timeout)
        line = stdout.readline().strip() if ready else ""
        if not line.startswith("STARTED "):
            reason = line.removeprefix("ERROR ") or f"no answer in {self.start_timeout:.0f} s"
            raise PlasgateError(f"server {self.factory} failed to start: {reason}")
        return int(line.split()[1])

    def _start_process(self) -> None:
        """Run ``python -m plasgate_nb._child`` (once per worker) with the job on stdin, and wait for its port.

        A plain child process (not multiprocessing) so that scripts without a ``__main__`` guard work;
        it stops when its stdin closes, so it never outlives this process. One worker binds its own
        socket; several share one bound here (the port is known before they start).
        """
        fd = None
        if self.workers > 1:
            if self._sock is None:
                self._sock = bind_socket(self.host, self.port)
            self._sock.set_inheritable(True)
            self.port = self._sock.getsockname()[1]
            fd = self._sock.fileno()
        try:
            started = [self._spawn(fd) for _ in range(self.workers)]
            for process in started:
                self.port = self._started(process)
        except PlasgateError:
            self.stop()
            raise
        _LIVE.add(self)

    def revive(self) -> list[tuple[int, int | None, int]]:
        """Replace the worker processes that died; return ``(old pid, its exit code, new pid)`` for each.

        Only for a running server with several workers (one worker owns its socket: start it again).
        """
        if self.workers == 1 or self._sock is None:
            return []
        replaced = []
        for process in list(self._processes):
            code = process.poll()
            if code is None:
                continue
            self._processes.remove(process)
            self._close_pipes(process)
            new = self._spawn(self._sock.fileno())
            self._started(new)
            logger.warning("server worker %d exited (code %s); started worker %d", process.pid, code, new.pid)
            replaced.append((process.pid, code, new.pid))
        return replaced

    @staticmethod
    def _close_pipes(process: subprocess.Popen[str]) -> None:
        """Close a child's stdin and stdout pipes."""
        for pipe in (process.stdin, process.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def stop(self) -> None:
        """Stop serving and release the port; safe to call more than once."""
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(15)
            self._thread = None
        if self._sock is not None:  # the thread's socket, or the one several workers share (they keep theirs)
            self._sock.close()
            self._sock = None
        self._server = None
        processes, self._processes = self._processes, []
        for process in processes:  # all hear the end of stdin at once, then each is waited for
            if process.stdin is not None:
                with contextlib.suppress(OSError):  # a worker that died leaves a broken pipe
                    process.stdin.close()
        for process in processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)
            self._close_pipes(process)
        _LIVE.discard(self)

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<BackgroundServer {self.url} {self.mode} {state}>"
