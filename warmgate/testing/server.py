"""Run an app on uvicorn on 127.0.0.1 in a background thread, for tests over real HTTP."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn

from warmgate.core.http.server import GatewayServer

__all__ = ["LiveServer", "serve"]


class LiveServer:
    def __init__(self, app: Any, server: uvicorn.Server, thread: threading.Thread, url: str) -> None:
        self.app = app
        self.server = server
        self.thread = thread
        self.url = url


@contextmanager
def serve(app: Any, *, startup_timeout: float = 30.0) -> Iterator[LiveServer]:
    """Serve ``app`` on a free loopback port; yields a LiveServer whose ``url`` is its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, lifespan="on", log_config=None, access_log=False,
                            timeout_graceful_shutdown=5)
    server = GatewayServer(config, app)
    thread = threading.Thread(target=server.run, name="warmgate-test-server", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError("the test server did not start")
        time.sleep(0.005)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app, server, thread, f"http://127.0.0.1:{port}")
    finally:
        server.should_exit = True
        thread.join(timeout=15)
