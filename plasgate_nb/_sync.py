"""Run a coroutine from synchronous code, also inside a running event loop (a Jupyter cell), interruptibly.

Shared by the HTTP transport and the SMPP campaign: both offer a plain synchronous API to notebooks.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["run_sync"]

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T], *, thread_name: str = "plasgate-nb-sync") -> T:
    """Run a coroutine to completion from synchronous code, even inside a running event loop (Jupyter).

    Without a running loop it is ``asyncio.run``; with one, the coroutine runs on a fresh loop in a
    helper thread (named ``thread_name``) and this call blocks until it finishes. An interrupt
    (KeyboardInterrupt, the notebook's stop button) cancels the coroutine and waits for it to unwind
    before re-raising, so nothing keeps sending in the background.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    async def main() -> T:
        """Publish this loop and task so the caller can cancel them, then run the coroutine."""
        box["loop"], box["task"] = asyncio.get_running_loop(), asyncio.current_task()
        if box.get("abandon"):  # interrupted before this thread got going
            coro.close()
            raise asyncio.CancelledError
        return await coro

    done = threading.Event()

    def target() -> None:
        """Run the coroutine on this thread's own loop and keep its result or error."""
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:
            box["error"] = exc
        finally:
            done.set()

    # wait on an Event, not Thread.join: an interrupted join marks a live thread stopped (bpo-45274)
    thread = threading.Thread(target=target, name=thread_name, daemon=True)
    try:
        thread.start()
        while not done.wait(0.1):
            pass
    except BaseException:
        box["abandon"] = True
        give_up = time.monotonic() + 5.0
        while not done.wait(0.1):
            if "task" in box:
                box["loop"].call_soon_threadsafe(box["task"].cancel)
            elif time.monotonic() > give_up:  # the thread never started: nothing runs
                break
        raise
    finally:
        if done.is_set():
            thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]
