"""Standby workers for ray functions: a Ray worker process started before it is needed, with the
function's engine (torch, transformers...) already imported and no model loaded, which the next
replica to start takes over.

A replica started from zero otherwise pays for a new process, Ray's worker start-up and the
engine's imports before it can load its model. Here that was about 3 s of the 4.5-5.5 s from a
request at zero replicas to its answer. A standby costs an idle process's memory (torch imported,
no weights, no GPU memory) and nothing else.

Ray has no public call for this, so two of its internals are used: the raylet's
``PrestartWorkers`` RPC, which starts idle workers for a runtime environment, and the environment
variable that makes a worker run a setup hook at start-up. A replica's runtime environment names
the hook and the modules to import. A worker the raylet prestarts with the same environment
imports them while idle, and the raylet gives it to the next replica with that environment. If
either internal is missing (another Ray version), replicas start as before and a warning says why.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import tempfile
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog

__all__ = ["MODULES_VARIABLE", "forget_ready", "preload", "prestart", "prestart_later", "runtime_env", "wait_ready"]

MODULES_VARIABLE = "WARMGATE_STANDBY_MODULES"
"""Comma-separated modules a worker imports at start-up (the replica's own runtime environment)."""
KEEP_ALIVE_S = 3600
"""How long the raylet keeps an unused standby even when it has more idle workers than CPUs."""
_HOOK = "warmgate.core.executors.ray_standby.preload"
_HOOK_VARIABLE = "__RAY_WORKER_PROCESS_SETUP_HOOK_ENV_VAR"
"""``ray._private.ray_constants.WORKER_PROCESS_SETUP_HOOK_ENV_VAR`` in Ray 2.60; looked up at
runtime in case a later Ray renames it."""

_MARKER_PREFIX = "warmgate-standby-"

_log = structlog.get_logger("warmgate.ray")


def runtime_env(modules: Iterable[str]) -> dict[str, Any]:
    """The runtime environment of a replica whose worker imports ``modules`` when it starts."""
    return {"env_vars": {_hook_variable(): _HOOK, MODULES_VARIABLE: ",".join(modules)}}


def preload() -> None:
    """The worker setup hook: import the modules of ``WARMGATE_STANDBY_MODULES``. It never raises
    (a failing hook would stop the worker from starting); what fails to import is imported, and
    reported, again when the replica loads its model."""
    modules = os.environ.get(MODULES_VARIABLE, "")
    for name in filter(None, modules.split(",")):
        try:
            importlib.import_module(name)
        except Exception as exc:  # a missing extra, a broken install: the load will say it again
            print(f"warmgate standby worker: could not import {name}: {type(exc).__name__}: {exc}", file=sys.stderr)
    with contextlib.suppress(OSError):  # nobody waits for a worker that cannot say it is ready
        _marker(os.getpid()).write_text(modules)


def wait_ready(modules: str, since: float, timeout: float) -> bool:
    """Wait until a worker on this machine has imported ``modules`` (a ``runtime_env`` list)
    after ``since`` (``time.time()``), at most ``timeout`` seconds; forget its marker."""
    deadline = time.monotonic() + timeout
    while True:
        for marker in Path(tempfile.gettempdir()).glob(_MARKER_PREFIX + "*"):
            try:
                ready = marker.stat().st_mtime >= since and marker.read_text() == modules
            except OSError:
                continue  # another waiter took it
            if not ready and not _alive(marker.name.removeprefix(_MARKER_PREFIX)):
                marker.unlink(missing_ok=True)  # a standby that ended unused
            if ready:
                marker.unlink(missing_ok=True)
                return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)


def forget_ready() -> None:
    """A replica's worker is no standby any more: drop its marker."""
    _marker(os.getpid()).unlink(missing_ok=True)


def _alive(pid: str) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def _marker(pid: int) -> Path:
    """The file a worker writes once its imports are done (the same machine's temp directory)."""
    return Path(tempfile.gettempdir()) / f"{_MARKER_PREFIX}{pid}"


def prestart(serialized_env: str, node_id: str | None = None, *, keep_alive_s: int = KEEP_ALIVE_S) -> bool:
    """Ask the raylet of ``node_id`` (default: this process's node) to start one idle worker with
    the runtime environment ``serialized_env`` (``RuntimeEnv.serialize()``, the string Ray hashes to
    match workers to tasks). False, with a warning, when the call is not possible."""
    try:
        import grpc
        import ray
        from ray.core.generated import node_manager_pb2, node_manager_pb2_grpc, runtime_environment_pb2

        node_id = node_id or ray.get_runtime_context().get_node_id()
        node = next(n for n in ray.nodes() if n["NodeID"] == node_id and n["Alive"])
        request = node_manager_pb2.PrestartWorkersRequest(
            language=0,  # Python; no job id: a standby may serve any job's replicas
            runtime_env_info=runtime_environment_pb2.RuntimeEnvInfo(serialized_runtime_env=serialized_env),
            keep_alive_duration_secs=keep_alive_s, num_workers=1)
        with grpc.insecure_channel(f"{node['NodeManagerAddress']}:{node['NodeManagerPort']}") as channel:
            node_manager_pb2_grpc.NodeManagerServiceStub(channel).PrestartWorkers(request, timeout=10)
    except Exception as exc:  # an internal API: any failure just means no standby
        _log.warning("ray_standby_unavailable", reason=f"{type(exc).__name__}: {exc}")
        return False
    return True


def prestart_later(serialized_env: str, node_id: str | None = None) -> threading.Thread:
    """``prestart`` in a daemon thread: callers are on an event loop or in a replica's start-up."""
    thread = threading.Thread(target=prestart, args=(serialized_env, node_id), name="warmgate-standby", daemon=True)
    thread.start()
    return thread


def _hook_variable() -> str:
    try:
        from ray._private import ray_constants
    except ImportError:
        return _HOOK_VARIABLE
    return str(getattr(ray_constants, "WORKER_PROCESS_SETUP_HOOK_ENV_VAR", _HOOK_VARIABLE))
