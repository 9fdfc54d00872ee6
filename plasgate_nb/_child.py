"""Entry point of a server's child process (``python -m plasgate_nb._child``); see ``server.py``.

Signals are set first, before anything slow is imported. Interrupting a notebook cell (or pressing
Ctrl-C in a shell) sends SIGINT to the whole process group: it is meant for the kernel or the command,
not for the simulator or receiver serving it, so the child ignores it (and so do the processes it
starts, which inherit the setting) and keeps serving until its parent closes its stdin or dies.
SIGTERM stops it quietly, as the end of stdin does: no traceback either way.
"""

from __future__ import annotations

import signal
import sys


def _terminate(signum: int, frame: object) -> None:  # pragma: no cover - runs in the child process
    """SIGTERM: leave through SystemExit, which serve_child treats as the end of stdin."""
    sys.exit(0)


if __name__ == "__main__":  # pragma: no cover - runs in the child process
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminate)
    from plasgate_nb.server import serve_child

    serve_child()
