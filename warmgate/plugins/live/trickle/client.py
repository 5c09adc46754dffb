"""Trickle clients on aiohttp, wire-compatible with go-livepeer's and the ai-runner's.

``TricklePublisher`` keeps one POST open ahead: the server creates the next segment as soon as it
connects, so readers can wait on it, and a segment's bytes go out as they are written.
``TrickleSubscriber`` keeps one GET open ahead the same way, starts at ``-2`` (the current
segment, from its first byte, which starts at a keyframe), follows ``Lp-Trickle-Latest`` after a
470, and ends when the server says ``Lp-Trickle-Closed``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp

__all__ = ["SegmentReader", "SegmentWriter", "TrickleError", "TricklePublisher", "TrickleSubscriber"]

_END = object()


class TrickleError(Exception):
    """The channel is gone (404) or the server kept failing."""


class SegmentWriter:
    """The body of one open POST: ``write`` sends bytes now; leaving the ``async with`` (or
    ``close``) ends the segment."""

    def __init__(self, seq: int, session: aiohttp.ClientSession, url: str, mime: str) -> None:
        self.seq = seq
        self.channel_closed = False
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._request = asyncio.ensure_future(
            session.post(url, data=self._body(), headers={"Content-Type": mime, "Connection": "close"}))

    async def _body(self) -> AsyncIterator[bytes]:
        while (chunk := await self._queue.get()) is not _END:
            yield chunk

    @property
    def failed(self) -> bool:
        """The POST failed before it was closed (its connection was refused or dropped)."""
        return self._request.done() and not self._request.cancelled() and self._request.exception() is not None

    async def write(self, data: bytes) -> None:
        if data:
            self._queue.put_nowait(data)
            await asyncio.sleep(0)  # let the body go out

    async def close(self) -> int:
        """End the segment; the server's status (``channel_closed`` tells whether the server
        said the channel is closed, go-livepeer's end of stream)."""
        self._queue.put_nowait(_END)
        response = await self._request
        async with response:
            await response.read()
            self.channel_closed = "Lp-Trickle-Closed" in response.headers
            return response.status

    async def __aenter__(self) -> SegmentWriter:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class TricklePublisher:
    def __init__(self, url: str, mime: str = "video/MP2T", *, session: aiohttp.ClientSession | None = None) -> None:
        self.url = url.rstrip("/")
        self.mime = mime
        self._own_session = session is None
        self._session = session
        self._seq = 0
        self._pending: SegmentWriter | None = None

    async def next(self) -> SegmentWriter:
        """The open segment to write; the one after it is connected at once."""
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        pending = self._pending
        if pending is not None and pending.failed:  # its connection failed before a byte: retry that seq afresh
            pending = self._open(pending.seq)
        writer = pending or self._open()
        self._pending = self._open()
        return writer

    def _open(self, seq: int | None = None) -> SegmentWriter:
        assert self._session is not None
        if seq is None:
            seq, self._seq = self._seq, self._seq + 1
        return SegmentWriter(seq, self._session, f"{self.url}/{seq}", self.mime)

    async def close(self) -> None:
        """End the preconnected segment (empty) and close the channel for everyone."""
        if self._pending is not None:
            with contextlib.suppress(aiohttp.ClientError):
                await self._pending.close()
            self._pending = None
        if self._session is not None:
            with contextlib.suppress(aiohttp.ClientError):
                async with self._session.delete(self.url) as response:
                    await response.read()
            if self._own_session:
                await self._session.close()

    async def __aenter__(self) -> TricklePublisher:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


class SegmentReader:
    """One segment as it arrives: ``async for chunk in reader`` or ``await reader.read()``."""

    def __init__(self, seq: int, response: aiohttp.ClientResponse) -> None:
        self.seq = seq
        self.response = response

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.response.content.iter_chunked(32 * 1024):
                yield chunk
        finally:
            self.response.release()

    async def read(self) -> bytes:
        return b"".join([chunk async for chunk in self])

    async def __aenter__(self) -> SegmentReader:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        self.response.release()


class TrickleSubscriber:
    def __init__(self, url: str, *, start: int = -2, session: aiohttp.ClientSession | None = None,
                 retries: int = 5, retry_delay: float = 0.5) -> None:
        self.url = url.rstrip("/")
        self._seq = start
        self._own_session = session is None
        self._session = session
        self._pending: asyncio.Future[aiohttp.ClientResponse] | None = None
        self._retries = retries
        self._retry_delay = retry_delay
        self.ended = False

    def _get(self, seq: int) -> asyncio.Future[aiohttp.ClientResponse]:
        assert self._session is not None
        return asyncio.ensure_future(self._session.get(f"{self.url}/{seq}"))

    async def next(self) -> SegmentReader | None:
        """The next segment, or ``None`` once the channel is closed."""
        if self.ended:
            return None
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, sock_connect=10))
        failures = 0
        while True:
            pending, self._pending = self._pending or self._get(self._seq), None
            try:
                response = await pending
            except aiohttp.ClientError as exc:
                failures += 1
                if failures > self._retries:
                    raise TrickleError(f"{self.url}: {exc}") from exc
                await asyncio.sleep(self._retry_delay)
                continue
            if "Lp-Trickle-Closed" in response.headers:
                response.release()
                self.ended = True
                return None
            if response.status == 404:
                response.release()
                raise TrickleError(f"{self.url}: the channel does not exist")
            if response.status == 470:  # too old: jump to the live edge
                response.release()
                self._seq = int(response.headers.get("Lp-Trickle-Latest", -1))
                continue
            if response.status != 200:
                response.release()
                failures += 1
                if failures > self._retries:
                    raise TrickleError(f"{self.url}/{self._seq}: status {response.status}")
                await asyncio.sleep(self._retry_delay)
                continue
            seq = int(response.headers.get("Lp-Trickle-Seq", self._seq))
            self._seq = seq + 1
            self._pending = self._get(self._seq)
            return SegmentReader(seq, response)

    async def close(self) -> None:
        if self._pending is not None:
            self._pending.cancel()
            with contextlib.suppress(BaseException):
                (await self._pending).release()
        if self._session is not None and self._own_session:
            await self._session.close()

    async def __aenter__(self) -> TrickleSubscriber:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
