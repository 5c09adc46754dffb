"""Model loading in worker threads, one at a time.

transformers and diffusers import their classes lazily, and those imports are not thread-safe:
two models loading side by side (warm functions at startup, cold requests to two pipelines)
fail with ``ImportError: cannot import name ...`` from a half-initialised module. Every loader
and demo build that runs in a thread therefore holds one process-wide lock. Loads are disk-
and CPU-bound, so running them in turn costs little.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any, TypeVar

__all__ = ["LOAD_LOCK", "load_in_thread"]

T = TypeVar("T")
LOAD_LOCK = threading.Lock()


def _locked(fn: Callable[..., T], *args: Any) -> T:
    with LOAD_LOCK:
        return fn(*args)


async def load_in_thread(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)`` in a worker thread while holding ``LOAD_LOCK``. Async loaders that build
    models with heavy libraries in a thread use this too."""
    return await asyncio.to_thread(_locked, fn, *args)
