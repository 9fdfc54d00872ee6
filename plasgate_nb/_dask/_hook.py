"""Run a function right after a module's first import, without importing it: ``df.sms`` on Dask, lazily.

``import plasgate_nb`` must not import dask (it doubles the import time: about 0.5 s on top of 0.8-1.4 s
measured here), yet ``ddf.sms`` must work whichever of the two a notebook imports first. When dask is
already imported the accessor is registered at once; otherwise a finder placed first on
``sys.meta_path`` waits for ``dask.dataframe``, lets the usual finders load it, and registers the
accessor once its module has run. The finder removes itself on first use.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Callable, Sequence
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

__all__ = ["when_imported"]

log = logging.getLogger("plasgate_nb")


def when_imported(name: str, callback: Callable[[], None]) -> None:
    """Call ``callback`` now if module ``name`` is imported, else once right after its first import."""
    if name in sys.modules:
        callback()
    else:
        sys.meta_path.insert(0, _Watcher(name, callback))


class _Watcher(importlib.abc.MetaPathFinder):
    """A finder that only watches for one module: it finds it with the other finders and wraps its loader."""

    def __init__(self, name: str, callback: Callable[[], None]) -> None:
        self.name = name
        self.callback = callback

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        """Find ``name`` with the finders after this one, and arrange for the callback after it runs."""
        if fullname != self.name:
            return None
        if self in sys.meta_path:
            sys.meta_path.remove(self)
        for finder in list(sys.meta_path):
            find = getattr(finder, "find_spec", None)
            spec = find(fullname, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        if spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _CallAfter(spec.loader, self.callback)
        return spec


class _CallAfter(importlib.abc.Loader):
    """Delegates to the real loader (which the module keeps), then calls the callback; a failure is logged."""

    def __init__(self, loader: Any, callback: Callable[[], None]) -> None:
        self._loader = loader
        self._callback = callback

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        """The real loader's module."""
        return self._loader.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        """Run the module with its own loader in place, then the callback."""
        module.__loader__ = self._loader
        if module.__spec__ is not None:
            module.__spec__.loader = self._loader
        self._loader.exec_module(module)
        try:
            self._callback()
        except Exception:  # never break the user's import of dask
            log.warning("could not register the df.sms accessor on Dask frames", exc_info=True)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._loader, name)
