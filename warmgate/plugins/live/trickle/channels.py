"""Trickle channels in memory: numbered segments relayed to readers while they are written.

The behaviour follows go-livepeer's ``trickle/trickle_server.go``: each channel keeps its last 5
segments (segment ``seq`` lives in slot ``seq % 5``), a reader that joins mid-segment gets the
segment from its byte 0, ``next_write`` moves to ``seq + 1`` when a segment's first byte
arrives (or when its POST ends empty), and a reader may wait for the segment that will be
written next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

__all__ = ["SLOTS", "Channel", "Segment"]

SLOTS = 5


class Segment:
    """One segment's bytes, kept whole while its slot lasts, readable while being written."""

    def __init__(self, seq: int) -> None:
        self.seq = seq
        self.chunks: list[bytes] = []
        self.size = 0
        self.closed = False
        self._changed = asyncio.get_running_loop().create_future()

    def write(self, chunk: bytes) -> None:
        if chunk and not self.closed:
            self.chunks.append(chunk)
            self.size += len(chunk)
            self._wake()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.get_running_loop().create_future()
        changed.set_result(None)

    def changed(self) -> asyncio.Future[None]:
        """Done when a chunk arrives or the segment closes. A plain method, not a coroutine, so
        the future is taken now: a coroutine would take it when it first runs, after a write
        that may come in between, and then wait for the one after."""
        return asyncio.shield(self._changed)

    async def read(self) -> AsyncIterator[bytes]:
        """Every chunk from byte 0, then each new one as it is written, until the segment closes."""
        index = 0
        while True:
            while index < len(self.chunks):
                yield self.chunks[index]
                index += 1
            if self.closed:
                return
            await self.changed()


class Channel:
    def __init__(self, name: str, mime: str) -> None:
        self.name = name
        self.mime = mime
        self.slots: list[Segment | None] = [None] * SLOTS
        self.next_write = 0
        self.closed = False
        self.last_write = time.monotonic()

    def resolve(self, seq: int) -> int:
        """``-1``: the segment to be written next; ``-2``: the current (or latest) one."""
        if seq == -1:
            return self.next_write
        if seq == -2:
            return max(self.next_write - 1, 0)
        return seq

    def for_write(self, seq: int) -> Segment:
        """The segment to publish ``seq`` into: one a reader is already waiting on, or a fresh one
        that replaces (and closes) whatever older segment held the slot."""
        slot = seq % SLOTS
        held = self.slots[slot]
        if held is not None and held.seq == seq and not held.closed and held.size == 0:
            return held
        if held is not None:
            held.close()
        segment = self.slots[slot] = Segment(seq)
        return segment

    def for_read(self, seq: int) -> Segment | None:
        """The segment ``seq`` if its slot still holds it, or a pre-created one when ``seq`` is the
        next to be written; ``None`` when it is gone or too far ahead."""
        held = self.slots[seq % SLOTS]
        if held is not None and held.seq == seq:
            return held
        if not self.closed and (seq == self.next_write or (self.next_write == 0 and seq == 1)):
            return self.for_write(seq)
        return None

    def started(self, seq: int) -> None:
        """The first byte of ``seq`` arrived (or its POST ended empty): later reads of ``-1`` wait
        for the one after."""
        self.next_write = max(self.next_write, seq + 1)
        self.last_write = time.monotonic()

    def close_before(self, seq: int) -> None:
        """``Lp-Trickle-Reset``: free readers stuck on older segments of a restarted publisher."""
        for segment in self.slots:
            if segment is not None and segment.seq < seq:
                segment.close()

    def close(self) -> None:
        self.closed = True
        for segment in self.slots:
            if segment is not None:
                segment.close()
