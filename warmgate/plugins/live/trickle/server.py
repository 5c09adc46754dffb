"""The trickle server: go-livepeer's HTTP surface over ``Channel``s, as a raw ASGI app.

It is raw ASGI rather than Litestar handlers because trickle needs what a request/response
framework hides: a POST body relayed chunk by chunk while it is still arriving, and GET
responses whose headers wait for the segment's first byte (a long poll), both watching for the
client going away.

    POST   /{ch}         create the channel (``Expect-Content``: its mime type) if allowed
    POST   /{ch}/{seq}   publish segment seq (-1: next); ``Lp-Trickle-Reset`` frees older ones
    GET    /{ch}/{seq}   read segment seq (-1: next, -2: current) from byte 0, as it is written
    GET    /{ch}/next    the next seq to be written
    DELETE /{ch}/{seq}   close one segment
    DELETE /{ch}         close the channel

Status 470 (``Lp-Trickle-Latest``) tells a reader its segment is gone; ``Lp-Trickle-Closed:
terminated`` that the channel is closed. Channels nobody writes to for ``idle_timeout`` are
closed by ``sweep()``, except those whose names start with ``_``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from litestar import asgi
from litestar.types import Receive as LitestarReceive
from litestar.types import Scope
from litestar.types import Send as LitestarSend

from warmgate.plugins.live.trickle.channels import Channel, Segment

__all__ = ["TrickleServer", "trickle_route"]

_log = structlog.get_logger("warmgate.plugins.live.trickle")

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]

SEQ = b"lp-trickle-seq"
LATEST = b"lp-trickle-latest"
CLOSED = (b"lp-trickle-closed", b"terminated")
ENTRY_NOT_FOUND = 470


class TrickleServer:
    """Channels by name. ``autocreate``: a POST to an unknown channel creates it (go-livepeer
    leaves this off and creates channels in-process, with ``create``)."""

    def __init__(self, *, autocreate: bool = False, idle_timeout: float = 300.0, linger: float = 5.0) -> None:
        self.channels: dict[str, Channel] = {}
        self.autocreate = autocreate
        self.idle_timeout = idle_timeout
        self.linger = linger
        """Seconds a closed channel stays readable (its last segments, then ``Lp-Trickle-Closed``)
        before requests get 404: a reader a segment behind when the publisher closes still gets
        the end of the stream. go-livepeer forgets the channel at once."""

    # -- in-process ------------------------------------------------------------------------

    def create(self, name: str, mime: str = "video/MP2T") -> Channel:
        channel = self.channels.get(name)
        if channel is None or channel.closed:
            channel = self.channels[name] = Channel(name, mime)
        return channel

    def close(self, name: str) -> bool:
        channel = self.channels.get(name)
        if channel is None or channel.closed:
            return False
        channel.close()
        if self.linger > 0:
            asyncio.get_running_loop().call_later(self.linger, self._forget, name, channel)
        else:
            self._forget(name, channel)
        return True

    def _forget(self, name: str, channel: Channel) -> None:
        if self.channels.get(name) is channel:
            del self.channels[name]

    def sweep(self, now: float | None = None) -> list[str]:
        """Close the channels idle for ``idle_timeout``; their names."""
        now = time.monotonic() if now is None else now
        idle = [name for name, channel in self.channels.items()
                if not name.startswith("_") and not channel.closed and now - channel.last_write > self.idle_timeout]
        for name in idle:
            self.close(name)
            _log.info("trickle_channel_idle_closed", channel=name)
        return idle

    async def sweep_forever(self, interval: float = 60.0) -> None:
        while True:
            await asyncio.sleep(interval)
            self.sweep()

    # -- HTTP ------------------------------------------------------------------------------

    async def __call__(self, scope: dict[str, Any], receive: Receive, send: Send) -> None:
        parts = [part for part in scope["path"].split("/") if part]
        method = scope["method"]
        if not parts or len(parts) > 2:
            await _respond(send, 404, b"Not found")
            return
        name, seq_text = parts[0], parts[1] if len(parts) == 2 else None
        headers = {key.lower(): value for key, value in scope["headers"]}
        if seq_text is None:
            await self._channel_request(method, name, headers, send)
            return
        channel = self.channels.get(name)
        if method == "GET" and seq_text == "next":
            await self._next(channel, send)
            return
        try:
            seq = int(seq_text)
        except ValueError:
            await _respond(send, 400, b"Invalid sequence number")
            return
        if method == "GET":
            await self._get(channel, seq, receive, send)
        elif method == "POST":
            if channel is None and self.autocreate:
                mime = headers.get(b"content-type", b"application/octet-stream").decode("latin-1")
                channel = self.create(name, mime)
            await self._post(channel, seq, headers, receive, send)
        elif method == "DELETE":
            await self._delete_segment(channel, seq, send)
        else:
            await _respond(send, 405, b"Method not allowed")

    async def _channel_request(self, method: str, name: str, headers: dict[bytes, bytes], send: Send) -> None:
        if method == "POST":
            if name not in self.channels and not self.autocreate:
                await _respond(send, 404, b"Stream not found")
                return
            self.create(name, headers.get(b"expect-content", b"application/octet-stream").decode("latin-1"))
            await _respond(send, 200, b"")
        elif method == "DELETE":
            if not self.close(name):
                await _respond(send, 400, b"Invalid stream")
                return
            await _respond(send, 200, b"")
        else:
            await _respond(send, 405, b"Method not allowed")

    async def _next(self, channel: Channel | None, send: Send) -> None:
        if channel is None:
            await _respond(send, 404, b"Stream not found")
            return
        latest = str(channel.next_write).encode()
        extra = [(LATEST, latest), *([CLOSED] if channel.closed else [])]
        await _respond(send, 200, latest, extra, content_type=b"text/plain")

    async def _get(self, channel: Channel | None, seq: int, receive: Receive, send: Send) -> None:
        if channel is None:
            await _respond(send, 404, b"Stream not found")
            return
        seq = channel.resolve(seq)
        latest = channel.next_write
        segment = channel.for_read(seq)
        if segment is None:
            status = 200 if channel.closed else ENTRY_NOT_FOUND
            extra = [(LATEST, str(channel.next_write).encode()), (SEQ, str(seq).encode()),
                     *([CLOSED] if channel.closed else [])]
            await _respond(send, status, b"Entry not found", extra)
            return
        if not await _first_byte_or_close(segment, receive):
            return  # the reader left while waiting
        head = [(SEQ, str(seq).encode())]
        if segment.size == 0:  # closed empty: dropped, deleted, or the channel closed
            head += [(LATEST, str(channel.next_write).encode()), *([CLOSED] if channel.closed else [])]
            await _respond(send, 200, b"", head, content_type=channel.mime.encode())
            return
        if seq != latest:
            head.append((LATEST, str(latest).encode()))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", channel.mime.encode()), *head]})
        with contextlib.suppress(OSError):  # the reader went away mid-segment
            async for chunk in segment.read():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _post(self, channel: Channel | None, seq: int, headers: dict[bytes, bytes], receive: Receive,
                    send: Send) -> None:
        if channel is None:
            await _respond(send, 404, b"Stream not found", [(b"connection", b"close")])
            return
        seq = channel.resolve(seq) if seq == -1 else seq
        if channel.closed:
            await _respond(send, 200, b"", [(SEQ, str(seq).encode()), CLOSED, (b"connection", b"close")])
            return
        if b"lp-trickle-reset" in headers:
            channel.close_before(seq)
        segment = channel.for_write(seq)
        receiving = asyncio.ensure_future(receive())
        try:
            while True:
                closing = segment.changed()
                await asyncio.wait((receiving, closing), return_when=asyncio.FIRST_COMPLETED)
                closing.cancel()
                if not receiving.done():  # closed (DELETE, channel closed) while we wait for bytes
                    if segment.closed:
                        break
                    continue
                message = receiving.result()
                if message["type"] == "http.disconnect":
                    segment.close()
                    return
                body = message.get("body", b"")
                if body and not segment.closed:
                    if segment.size == 0:
                        channel.started(seq)
                    segment.write(body)
                if not message.get("more_body", False):
                    if segment.size == 0 and not segment.closed:
                        channel.started(seq)  # a preconnected POST that ended empty
                    segment.close()
                    break
                receiving = asyncio.ensure_future(receive())
        finally:
            if not receiving.done():
                receiving.cancel()
        extra = [(SEQ, str(seq).encode())]
        if channel.closed:
            extra += [CLOSED, (b"connection", b"close")]
        elif segment.size == 0:
            extra.append((b"connection", b"close"))
        await _respond(send, 200, b"", extra)

    async def _delete_segment(self, channel: Channel | None, seq: int, send: Send) -> None:
        if channel is None:
            await _respond(send, 404, b"Stream not found")
            return
        held = channel.slots[seq % len(channel.slots)] if seq >= 0 else None
        if held is None or held.seq != seq:
            await _respond(send, 400, b"Invalid sequence number")
            return
        held.close()
        await _respond(send, 200, b"")


async def _first_byte_or_close(segment: Segment, receive: Receive) -> bool:
    """Wait for the segment's first byte (or its close); False if the reader disconnects first."""
    if segment.size or segment.closed:
        return True
    leaving = asyncio.ensure_future(_disconnected(receive))
    try:
        while not (segment.size or segment.closed):
            changed = segment.changed()
            await asyncio.wait((changed, leaving), return_when=asyncio.FIRST_COMPLETED)
            if leaving.done():
                changed.cancel()
                return False
        return True
    finally:
        leaving.cancel()


async def _disconnected(receive: Receive) -> None:
    """Returns when the client goes away (a GET has no body left to read)."""
    message = await receive()
    while message["type"] != "http.disconnect":
        message = await receive()


async def _respond(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None, *,
                   content_type: bytes = b"text/plain; charset=utf-8") -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", content_type), (b"content-length", str(len(body)).encode()),
                            *(headers or [])]})
    await send({"type": "http.response.body", "body": body, "more_body": False})


def trickle_route(server: TrickleServer, path: str = "/ai/trickle") -> Any:
    """A Litestar route handler mounting ``server`` at ``path`` (go-livepeer's orchestrators use
    ``/ai/trickle``)."""
    @asgi(path, is_mount=True, copy_scope=True, name="trickle")
    async def trickle(scope: Scope, receive: LitestarReceive, send: LitestarSend) -> None:
        await server(scope, receive, send)  # type: ignore[arg-type]

    return trickle
