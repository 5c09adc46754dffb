"""The demo profile's tiny models: built once on first use into the cache directory."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from pathlib import Path

import structlog

from warmgate.core.functions.spec import DemoModel

__all__ = ["demo_model_dir", "ensure_demo_model"]

_log = structlog.get_logger("warmgate.demo")
_DONE = ".warmgate-built"
DEMO_BUILD_VERSION = 3
"""Written into each build's marker; a cached build with another (or none) is built again.
Raise it whenever a builder changes what it writes (2: real latent scales for diffusion; 3: the
chat model renders tools and holds 4096 positions)."""


def demo_model_dir(demo: DemoModel, root: Path) -> Path:
    return root / re.sub(r"[^A-Za-z0-9._-]+", "--", demo.model_id)


def ensure_demo_model(demo: DemoModel, root: Path) -> Path:
    """The directory holding ``demo``'s model, building it first if it is not there yet.

    The build writes to a temporary directory that is renamed into place when complete, so
    an interrupted build never leaves a half-written model behind.
    """
    target = demo_model_dir(demo, root)
    if _built(target) == _marker(demo):
        return target
    root.mkdir(parents=True, exist_ok=True)
    _log.info("demo_model_building", model_id=demo.model_id, into=str(target))
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=".build-", dir=root))
    try:
        demo.build(scratch)
        (scratch / _DONE).write_text(_marker(demo))
        if target.exists():
            shutil.rmtree(target)
        scratch.rename(target)
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)
    _log.info("demo_model_built", model_id=demo.model_id, seconds=round(time.perf_counter() - started, 2))
    return target


def _marker(demo: DemoModel) -> str:
    return f"{demo.model_id}\nbuild {DEMO_BUILD_VERSION}\n"


def _built(target: Path) -> str | None:
    """The marker of a complete build in ``target``, or ``None``."""
    try:
        return (target / _DONE).read_text()
    except (FileNotFoundError, NotADirectoryError):
        return None
