"""Per-key rate limits (``warmgate keys create --rpm 60 --tpm 100000 --max-parallel 4``),
enforced exactly across every gateway that shares the pricing database.

The window is a moving one: a request counts against ``rpm`` for the minute after it was
admitted, its LLM tokens (prompt plus completion, known when it ends) against ``tpm`` for the
minute after it ended, and it counts against ``max_parallel`` while it runs in a live gateway
process. Admission is one serialized step per key in the database (``rate_events``): count,
decide, insert. So two replicas can never both take a key's 60th request of the minute.

The one approximation is tokens: a request is admitted while the key's last minute used fewer
than ``tpm`` tokens, and its own tokens are counted when it ends, so the requests in flight when
the budget runs out can exceed it by their own tokens (at most ``max_parallel`` requests' worth
when that is set).

Cost per request of a limited key: one round trip to admit (PostgreSQL: ``warmgate_admit``) and
one to end; keys without limits cost nothing. Neither waits for the disk: SQLite keeps this
state on a connection of its own with ``synchronous=OFF``, PostgreSQL commits it with
``synchronous_commit=off`` (a crash of the database loses at most the last moments' counts,
which is harmless: nothing is billed from them).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import math
import secrets
import time
from pathlib import Path
from typing import NamedTuple

from warmgate.core.http.errors import RateLimited
from warmgate.plugins.pricing.database import Database, connect
from warmgate.plugins.pricing.keys import KeyRecord
from warmgate.plugins.pricing.owners import is_alive, new_owner

__all__ = ["WINDOW", "KeyAdmission", "SqliteRateLimits", "WindowUse", "decide", "duration", "new_event_id"]

WINDOW = 60.0
"""Seconds of the moving window: a minute, for requests and tokens per minute."""


class WindowUse(NamedTuple):
    """What a key used in the window before this request, as the database saw it at ``now``."""

    admitted: bool
    requests: int
    tokens: int
    running: int
    first_request: float | None
    last_request: float | None
    first_tokens: float | None
    last_tokens: float | None
    now: float


class KeyAdmission:
    """An admitted request of a limited key (``warmgate.core.http.rate_limits.Admission``)."""

    def __init__(self, headers: list[tuple[bytes, bytes]], end: object) -> None:
        self.headers = headers
        self._end = end

    def end(self, tokens: int) -> object:
        return self._end(tokens)  # type: ignore[operator]


def duration(seconds: float) -> str:
    """OpenAI's reset durations: ``20ms``, ``1s``, ``6m0s``, ``1m30.5s``."""
    seconds = max(0.0, seconds)
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    minutes, rest = divmod(round(seconds, 3), 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def decide(record: KeyRecord, use: WindowUse, window: float = WINDOW) -> list[tuple[bytes, bytes]]:
    """The response headers of an admitted request, or ``RateLimited`` naming the limit it is over."""
    headers: dict[str, str] = {}
    waits: list[tuple[float, str]] = []
    now = use.now
    if record.rpm is not None:
        taken = use.requests + (1 if use.admitted else 0)
        last = now if use.admitted else (use.last_request or now)
        headers |= {"x-ratelimit-limit-requests": str(record.rpm),
                    "x-ratelimit-remaining-requests": str(max(0, record.rpm - taken)),
                    "x-ratelimit-reset-requests": duration(last + window - now)}
        if use.requests >= record.rpm:
            waits.append(((use.first_request or now) + window - now,
                          f"{record.rpm} requests a minute ({use.requests} in the last {window:g} s)"))
    if record.tpm is not None:
        headers |= {"x-ratelimit-limit-tokens": str(record.tpm),
                    "x-ratelimit-remaining-tokens": str(max(0, record.tpm - use.tokens)),
                    "x-ratelimit-reset-tokens": duration((use.last_tokens or now) + window - now)}
        if use.tokens >= record.tpm:
            waits.append(((use.first_tokens or now) + window - now,
                          f"{record.tpm} tokens a minute ({use.tokens} in the last {window:g} s)"))
    if record.max_parallel is not None and use.running >= record.max_parallel:
        waits.append((1.0, f"{record.max_parallel} requests at once ({use.running} in progress)"))
    if not use.admitted:
        wait = max(seconds for seconds, _ in waits) if waits else 1.0
        over = "; ".join(reason for _, reason in waits) or "its limits"
        raise RateLimited(f"key {record.id} is over its rate limit of {over}: retry in {math.ceil(wait)} s",
                          retry_after=wait, headers=headers)
    return [(name.encode(), value.encode()) for name, value in headers.items()]


def new_event_id() -> str:
    return secrets.token_hex(12)


class SqliteRateLimits:
    """The rate state in the SQLite file, shared by the gateway processes on this machine
    (``serve --workers``): ``BEGIN IMMEDIATE`` makes admissions one at a time across them. A
    running request counts while its process is alive (its pid answers a signal 0)."""

    def __init__(self, path: Path, *, window: float = WINDOW) -> None:
        self._db = Database(connect(path, synchronous="OFF"), "sqlite")
        self.window = window
        self.owner = new_owner()
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="warmgate-rate-limits")

    async def admit(self, record: KeyRecord) -> KeyAdmission:
        event = new_event_id()
        use = await asyncio.get_running_loop().run_in_executor(self._thread, self._admit, record, event)
        headers = decide(record, use, self.window)
        return KeyAdmission(headers, lambda tokens: self._end(event, tokens))

    def _admit(self, record: KeyRecord, event: str) -> WindowUse:
        db, key = self._db, record.id
        now = time.time()
        since = now - self.window
        with db.transaction():
            db.execute("DELETE FROM rate_events WHERE key = ? AND time < ? AND running = 0 AND COALESCE(ended, 0) < ?",
                       (key, since, since))
            owners = db.execute("SELECT owner, COUNT(*) FROM rate_events WHERE key = ? AND running = 1 GROUP BY owner",
                                (key,)).fetchall()
            dead = [owner for owner, _ in owners if not is_alive(owner, self.owner)]
            for owner in dead:  # their process died mid-request: those requests are over
                db.execute("UPDATE rate_events SET running = 0, ended = ? WHERE owner = ? AND running = 1",
                           (now, owner))
            running = sum(count for owner, count in owners if owner not in dead)
            requests, tokens, first_request, last_request, first_tokens, last_tokens = db.execute(
                "SELECT COUNT(*) FILTER (WHERE time >= ?1), COALESCE(SUM(tokens) FILTER (WHERE ended >= ?1), 0), "
                "MIN(time) FILTER (WHERE time >= ?1), MAX(time) FILTER (WHERE time >= ?1), "
                "MIN(ended) FILTER (WHERE ended >= ?1 AND tokens > 0), MAX(ended) FILTER (WHERE ended >= ?1 AND tokens > 0) "
                "FROM rate_events WHERE key = ?2", (since, key)).fetchone()
            admitted = ((record.rpm is None or requests < record.rpm) and (record.tpm is None or tokens < record.tpm)
                        and (record.max_parallel is None or running < record.max_parallel))
            if admitted:
                db.execute("INSERT INTO rate_events (id, key, time, owner) VALUES (?, ?, ?, ?)",
                           (event, key, now, self.owner))
        return WindowUse(admitted, requests, tokens, running, first_request, last_request, first_tokens, last_tokens,
                         now)

    async def _end(self, event: str, tokens: int) -> None:
        await asyncio.get_running_loop().run_in_executor(self._thread, self._end_now, event, tokens)

    def _end_now(self, event: str, tokens: int) -> None:
        with self._db.transaction():
            self._db.execute("UPDATE rate_events SET running = 0, ended = ?, tokens = ? WHERE id = ?",
                             (time.time(), tokens, event))

    def close(self) -> None:
        self._thread.shutdown(wait=True)
        self._db.close()
