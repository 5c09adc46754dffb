"""The remote executor: the model runs on another server that speaks this same API (a Livepeer
ai-runner, another warmgate); the request's bytes are forwarded to it (``remote_runner``)."""

from __future__ import annotations

import re
from typing import Any

from warmgate.core.executors.base import BaseExecutor, Call
from warmgate.core.http import wire
from warmgate.core.settings import FunctionConfig

__all__ = ["RemoteExecutor"]

_URL = re.compile(r"https?://[^/\s]+")


class RemoteExecutor(BaseExecutor):
    forwards_raw = True

    @classmethod
    def check_config(cls, config: FunctionConfig) -> tuple[str, str] | None:
        if not _URL.match(config.url):
            return "url", f"executor 'remote' needs the runner's url (http://host:port), got {config.url!r}"
        return None

    async def start(self) -> Any:
        from warmgate.core.executors.remote_runner import RemoteRunner  # aiohttp only for gateways that forward

        return await RemoteRunner.connect(self.config)

    async def call(self, runner: Any, call: Call) -> Any:
        raw = call.raw
        assert raw is not None  # forwards_raw: the route kept the bytes
        return await runner.forward(raw.path, raw.query, raw.headers, raw.body)

    def remote_info(self, runner: Any, last_error: str | None) -> wire.RemoteInfo | None:
        if runner is None:
            return wire.RemoteInfo(url=self.config.url, status="NOT CONNECTED", error=last_error)
        return wire.RemoteInfo(url=runner.url, status=runner.status, error=runner.error)
