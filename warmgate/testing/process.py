"""A gateway serving the echo and upload pipelines in a process of its own, for tests that need
a real process: many clients at once, ``kill -9`` in the middle of them, a remote runner.

``python -m warmgate.testing.process CONFIG PORT WORKERS`` runs it (no torch import: it starts in a
second); ``gateway_process(config)`` starts it on a free port and stops it after.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from warmgate.testing.waiting import wait_for

__all__ = ["GatewayProcess", "free_port", "gateway_process"]


class GatewayProcess:
    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def kill(self) -> None:
        """SIGKILL: no shutdown hook, no flush; what is not committed is lost."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


@contextmanager
def gateway_process(config: Path, *, port: int | None = None, startup_timeout: float = 30.0,
                    workers: int = 1) -> Iterator[GatewayProcess]:
    """Start the echo gateway with ``config`` (a serverless.yaml) on ``port`` (default: a free
    loopback port), in ``workers`` processes (``serve --workers``)."""
    port = port or free_port()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    log = config.with_name(f"{config.stem}-{port}.log")  # a file, not a pipe: a full pipe would stall the server
    with log.open("wb") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "warmgate.testing.process", str(config), str(port),
                                    str(workers)],
                                   stdout=subprocess.DEVNULL, stderr=stderr, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        if not wait_for(lambda: process.poll() is not None or (_healthy(url) and _listening(port) >= workers),
                        timeout=startup_timeout) or process.poll() is not None:
            process.kill()
            process.wait(timeout=10)
            raise RuntimeError(f"the gateway process did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield GatewayProcess(process, url)
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()


def _listening(port: int) -> int:
    """Sockets listening on ``port`` (each worker of ``serve --workers`` has its own)."""
    try:
        lines = Path("/proc/net/tcp").read_text().splitlines()[1:]
    except OSError:
        return 1  # not Linux: take the health check's word
    return sum(1 for line in lines if line.split()[1].endswith(f":{port:04X}") and line.split()[3] == "0A")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _app(settings: Any) -> Any:
    from warmgate.core.http.app import create_app
    from warmgate.testing.pipelines import EchoPipeline, upload_pipeline

    return create_app(settings, pipelines={"echo": EchoPipeline().spec, "upload": upload_pipeline()})


def worker_app() -> Any:
    """One worker of a ``workers > 1`` gateway process (``warmgate.core.workers``)."""
    from warmgate.core.workers import worker_settings

    return _app(worker_settings()[0])


def main(argv: list[str]) -> None:
    import msgspec
    import uvicorn

    from warmgate.core.config import load_settings

    config, port, workers = argv
    settings = load_settings(config)
    if int(workers) > 1:
        from warmgate.core.workers import run_workers

        gateway = msgspec.structs.replace(settings.gateway, host="127.0.0.1", port=int(port), workers=int(workers))
        sys.exit(run_workers("warmgate.testing.process:worker_app", msgspec.structs.replace(settings, gateway=gateway),
                             {"config": config}))
    uvicorn.run(_app(settings), host="127.0.0.1", port=int(port), log_config=None, access_log=False)


if __name__ == "__main__":
    main(sys.argv[1:])
