"""The gateway's uvicorn server: on shutdown it first lets plugins end their long-lived requests
(the ``drain`` hooks: a live session's long polls on the gateway's own trickle channels), so
connections close at once instead of holding the exit for the whole graceful timeout."""

from __future__ import annotations

import socket
from typing import Any

import structlog
import uvicorn

from warmgate.core.plugins import await_me_maybe, pm

__all__ = ["GatewayServer"]

_log = structlog.get_logger("warmgate.server")


class GatewayServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        super().__init__(config)
        self.gateway_app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            for result in pm.hook.drain(app=self.gateway_app):
                await await_me_maybe(result)
        except Exception:  # a plugin that fails to drain must not stop the shutdown
            _log.exception("drain_failed")
        await super().shutdown(sockets)
