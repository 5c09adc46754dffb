"""``warmgate serve --workers N``: N gateway processes answering one port, for gateways whose
functions hold no model in process (``executor: remote`` or ``ray``, or a relay to an engine's
server). A supervisor spawns N workers; each builds its own app from the same configuration,
opens its own pool to the pricing store and listens on the port with ``SO_REUSEPORT``.
``/metrics`` adds up every worker's counts through prometheus-client's multiprocess mode, in a
temporary directory removed when the gateway stops."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import tempfile
from collections.abc import Mapping
from multiprocessing import connection
from typing import Any

from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.errors import ConfigError
from warmgate.core.settings import Settings

__all__ = ["WORKER_ENV", "holding_models", "refuse_models_in_workers", "run_workers", "worker_app"]

WORKER_ENV = "WARMGATE_WORKER"
"""JSON the supervisor leaves for its workers: the configuration file, profile and worker count."""
METRICS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def holding_models(settings: Settings, specs: Mapping[str, PipelineSpec]) -> list[str]:
    """The functions that would load a model into each worker: local ones whose pipeline does
    not say they relay (``PipelineSpec.relays``)."""
    from warmgate.core.config import plan_functions
    from warmgate.core.executors import get_executors

    executors = get_executors()
    held = []
    for fn in plan_functions(settings, specs):
        spec = specs.get(fn.pipeline)
        relays = spec.relays if spec is not None else None
        if getattr(executors[fn.executor], "in_process", False) and not (relays is not None and relays(fn.options)):
            held.append(fn.name)
    return held


def refuse_models_in_workers(settings: Settings, specs: Mapping[str, PipelineSpec]) -> None:
    held = holding_models(settings, specs)
    if settings.gateway.workers > 1 and held:
        raise ConfigError(settings.source, "--workers",
                          f"{settings.gateway.workers} workers would each load the model of {', '.join(held)} "
                          "in process; serve those with one worker, or run them remotely (executor: remote or ray)")


def run_workers(factory: str, settings: Settings, worker: Mapping[str, Any]) -> int:
    """Serve ``factory`` (``module:function`` returning the app) in ``settings.gateway.workers``
    processes on ``settings.gateway``'s host and port; the exit status. ``worker``: what each
    worker needs to build the same app (``WORKER_ENV``). Each worker binds the port itself with
    ``SO_REUSEPORT``, so the kernel spreads connections over them (one shared accept queue
    would hand most to whichever worker is awake). When one worker exits, the others are
    stopped and the gateway exits with its status, for the process manager to restart."""
    import multiprocessing

    metrics_dir = tempfile.mkdtemp(prefix="warmgate-metrics-")
    os.environ[METRICS_ENV] = metrics_dir  # inherited by the spawned workers, read when they import prometheus_client
    os.environ[WORKER_ENV] = json.dumps({**worker, "workers": settings.gateway.workers})
    spawn = multiprocessing.get_context("spawn")
    processes = [spawn.Process(target=_serve_worker, args=(factory, settings.gateway.host, settings.gateway.port),
                               name=f"warmgate-worker-{n}") for n in range(settings.gateway.workers)]
    stopping = False

    def stop(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for process in processes:
            if process.is_alive():
                os.kill(process.pid, signal.SIGTERM)  # type: ignore[arg-type]

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        for process in processes:
            process.start()
        connection.wait([process.sentinel for process in processes])
        if not stopping:
            stop(signal.SIGTERM, None)
        for process in processes:
            process.join()
        return 0 if stopping else next(p.exitcode for p in processes if p.exitcode) or 1
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        shutil.rmtree(metrics_dir, ignore_errors=True)
        os.environ.pop(METRICS_ENV, None)


def _serve_worker(factory: str, host: str, port: int) -> None:
    import uvicorn

    from warmgate.core.http.server import GatewayServer

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group: the supervisor stops us
    from uvicorn.importer import import_from_string

    app = import_from_string(factory)()
    config = uvicorn.Config(app, host=host, port=port, log_config=None, access_log=False, timeout_graceful_shutdown=10)
    listener = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    listener.bind((host, port))
    listener.set_inheritable(True)
    server = GatewayServer(config, app)
    server.run(sockets=[listener])
    if not server.started:
        raise SystemExit(3)  # uvicorn's startup failure


def worker_settings() -> tuple[Settings, Mapping[str, Any]]:
    """In a worker: the supervisor's settings (and the rest of what it left in ``WORKER_ENV``)."""
    import msgspec

    from warmgate.core.config import load_settings

    worker = json.loads(os.environ[WORKER_ENV])
    settings = load_settings(worker.get("config"), profile=worker.get("profile"))
    gateway = msgspec.structs.replace(settings.gateway, workers=int(worker["workers"]))
    return msgspec.structs.replace(settings, gateway=gateway), worker


def worker_app() -> Any:
    """The app of one ``warmgate serve --workers`` worker."""
    from warmgate.core.http.app import create_app
    from warmgate.core.plugins import load_plugins

    load_plugins()
    settings, _ = worker_settings()
    return create_app(settings)
