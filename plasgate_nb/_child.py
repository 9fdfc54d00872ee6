"""Entry point of a server's child process (``python -m plasgate_nb._child``); see ``server.py``."""

from __future__ import annotations

from plasgate_nb.server import serve_child

if __name__ == "__main__":  # pragma: no cover - runs in the child process
    serve_child()
