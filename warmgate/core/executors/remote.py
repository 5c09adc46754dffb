"""The remote executor: the model runs on other servers that speak this same API (Livepeer
ai-runners, other warmgates); each request's bytes go to one of the function's runners
(``routing`` picks it, ``remote_runner`` forwards), and to another one when the first fails
before anything reached the client."""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import msgspec
from litestar.response import Stream

from warmgate.core.context import current_request
from warmgate.core.executors.base import BaseExecutor, Call, RunnersFailed
from warmgate.core.executors.calling import chunks_of, is_stream
from warmgate.core.executors.in_process import InProcessRunner
from warmgate.core.executors.local import describe_error
from warmgate.core.executors.routing import RoutedRunner, Router
from warmgate.core.http import wire
from warmgate.core.http.errors import ClientError
from warmgate.core.settings import FunctionConfig

__all__ = ["RemoteExecutor"]

_URL = re.compile(r"https?://[^/\s]+")


class RemoteExecutor(BaseExecutor):
    forwards_raw = True

    def __init__(self, config: FunctionConfig, pipelines: Any, settings: Any) -> None:
        super().__init__(config, pipelines, settings)
        self.router = Router(config)
        self.runner_prices = tuple((r.url, r.priced) for r in self.router.runners) if self.router.own_prices else ()
        self._retry_after = settings.gateway.retry_after
        self._own = {r.url: _own_executor(config, r.config.executor, pipelines, settings)
                     for r in self.router.runners if r.config.executor}
        """The gateway's own instances among the runners (``executor: local`` or ``ray``)."""
        self.in_process = any(e.in_process for e in self._own.values())

    @classmethod
    def check_config(cls, config: FunctionConfig) -> tuple[str, str] | None:
        runners = config.runner_list
        if not runners:
            return "url", "executor 'remote' needs the runner's url (http://host:port) or a list of runners"
        for i, runner in enumerate(runners):
            if not runner.executor and not _URL.match(runner.url):
                return (f"runners[{i}].url" if config.runners else "url",
                        f"executor 'remote' needs the runner's url (http://host:port), got {runner.url!r}")
        return None

    async def start(self) -> Any:
        """Reach every runner (health, and which has the model warm); the load fails only when
        none answers."""
        from warmgate.core.executors.remote_runner import RemoteRunner  # aiohttp only for gateways that forward

        router = self.router
        for runner in router.runners:
            own = self._own.get(runner.url) if runner.config.executor else None
            runner.client = (InProcessRunner(own, runner.url) if own is not None else
                             RemoteRunner(self.config, runner.config, functools.partial(router.health_seen, runner)))
        await asyncio.gather(*(r.client.connect() for r in router.runners))
        if all(r.client.status == "UNREACHABLE" for r in router.runners):
            errors = [r.client.unreachable() for r in router.runners]
            await self.stop(router)
            if len(errors) == 1:
                raise RunnersFailed(errors[0].msg, retry_after=self._retry_after)
            raise RunnersFailed(f"no runner of {self.config.name!r} is reachable: "
                                + "; ".join(e.msg for e in errors), retry_after=self._retry_after)
        return router

    async def stop(self, runner: Any) -> None:
        for routed in self.router.runners:
            client, routed.client = routed.client, None
            if client is not None:
                await client.close()

    async def call(self, runner: Any, call: Call) -> Any:
        from warmgate.core.executors.remote_runner import RemoteError

        raw = call.raw
        assert raw is not None  # forwards_raw: the route kept the bytes
        router = self.router
        context = current_request()
        offers = context.offers if context is not None else None
        tried: list[RoutedRunner] = []
        errors: list[RemoteError] = []
        for _ in range(router.retries + 1):
            routed = router.choose(tried, offers)
            if routed is None or routed.client is None:
                break
            if tried:
                router.retried(tried[-1], routed)
            tried.append(routed)
            router.started(routed)
            try:
                if isinstance(routed.client, InProcessRunner):
                    result = await self._call_own(routed, call)
                else:
                    result = await routed.client.forward(raw.path, raw.query, raw.headers, raw.body,
                                                         functools.partial(self._stream_ended, routed))
            except RemoteError as exc:
                router.ended(routed)
                router.failed(routed, exc.msg)
                if not exc.retryable:
                    raise
                errors.append(exc)
                continue
            except BaseException:
                router.ended(routed)
                raise
            if isinstance(routed.client, InProcessRunner) and is_stream(result):
                result = _counted(chunks_of(result), functools.partial(self._stream_ended, routed))
            elif not isinstance(result, Stream):  # a forwarded stream ends through _stream_ended
                router.ended(routed)
            router.succeeded(routed, served=getattr(result, "status_code", 200) < 300)
            if offers is not None and context is not None:
                context.config, context.served_wei = routed.priced, offers[routed.url]
            return result
        raise self._exhausted(errors, tried, offers)

    async def _call_own(self, routed: RoutedRunner, call: Call) -> Any:
        """The gateway's own instance: its load or inference failing is a runner's failure
        (tried on another runner); a client error is the caller's."""
        from warmgate.core.executors.remote_runner import RemoteError

        try:
            return await routed.client.call(call)
        except ClientError:
            raise
        except Exception as exc:
            raise RemoteError(f"{routed.url}: {describe_error(exc)}", 502) from exc

    def _stream_ended(self, routed: RoutedRunner, error: str | None) -> None:
        self.router.ended(routed)
        if error is not None:
            self.router.failed(routed, error)

    def _exhausted(self, errors: list[Any], tried: list[RoutedRunner], offers: Any) -> RunnersFailed:
        """503 with Retry-After and what became of each runner (one runner: its own error)."""
        router = self.router
        retry_after = router.retry_after() or self._retry_after
        if len(router.runners) == 1 and errors:
            return RunnersFailed(errors[0].msg, errors[0].status_code, retry_after=errors[0].retry_after or retry_after)
        reasons = [e.msg for e in errors]
        for routed in router.runners:
            if routed in tried:
                continue
            if offers is not None and routed.url not in offers:
                reasons.append(f"{routed.url}: priced above X-Max-Price-Per-Unit")
            elif routed.cooling(time.monotonic()):
                reasons.append(f"{routed.url}: in cooldown after {routed.consecutive_failures} failures "
                               f"(last: {routed.last_error})")
            else:
                reasons.append(f"{routed.url}: not tried ({router.retries} retries)")
        return RunnersFailed(f"no runner of {self.config.name!r} could serve the request: " + "; ".join(reasons),
                             retry_after=retry_after)

    async def shutdown(self) -> None:
        for own in self._own.values():
            await own.shutdown()

    def remote_info(self, runner: Any, last_error: str | None) -> wire.RemoteInfo | None:
        first = self.router.runners[0]
        if first.client is None:
            return wire.RemoteInfo(url=first.url, status="NOT CONNECTED", error=last_error)
        return wire.RemoteInfo(url=first.url, status=first.client.status, error=first.client.error)

    def runner_info(self) -> list[wire.RunnerInfo] | None:
        return self.router.info()


def _own_executor(config: FunctionConfig, executor: str, pipelines: Any, settings: Any) -> Any:
    """The executor of the gateway's own instance: the function's config as a plain local or
    ray function."""
    from warmgate.core.executors import BUILT_IN  # the package imports this module first

    own = msgspec.structs.replace(config, executor=executor, url="", runners=None, fallbacks=[])
    return BUILT_IN[executor](own, pipelines, settings)


async def _counted(chunks: AsyncIterator[Any], ended: Callable[[str | None], None]) -> AsyncIterator[Any]:
    """An in-process stream whose end (or failure) frees the runner's place in the count."""
    error: str | None = None
    try:
        async for chunk in chunks:
            yield chunk
    except Exception as exc:
        error = describe_error(exc)
        raise
    finally:
        ended(error)
