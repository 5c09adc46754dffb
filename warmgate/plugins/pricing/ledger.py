"""The usage ledger: one row per priced request, committed durably before its answer goes out.

``SqliteLedger`` is the SQLite store's ledger (``store.SqliteStore``; the PostgreSQL store
settles in its own statements, ``postgres_store``): WAL journal with ``synchronous=FULL``, so a committed event
survives a crash of the process or the machine. An event's row and its key's ``spent`` are
committed together.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import msgspec

from warmgate.core.usage import UsageEvent
from warmgate.plugins.pricing.migrations import open_current

__all__ = ["SqliteLedger", "UsageTotal", "read_totals", "sum_usage", "totals_query"]

ABANDONED = 499
"""Status of a request whose client left mid-answer: billed, so it counts as used."""


class UsageTotal(msgspec.Struct):
    key: str | None
    function: str
    requests: int
    failed: int
    """Requests that got an error: recorded, not billed, their units not counted."""
    units: int
    wei: str
    """Decimal text: exact, and free of JSON's 2**53 limit."""
    prompt_tokens: int
    completion_tokens: int


class SqliteLedger:
    """Events are committed by one writer thread in group commits: every event submitted while
    the previous transaction was syncing goes into the next one, so a busy gateway pays one
    fsync per batch instead of one per request, and each caller still waits for its own commit."""

    def __init__(self, path: str | Path, *, sync: str = "full") -> None:
        self.path = Path(path).expanduser()
        self._db = open_current(self.path, synchronous=sync.upper()).connection
        self._lock = threading.Lock()  # the connection: writer thread vs. totals()
        self._queue = threading.Condition()
        self._pending: list[tuple[UsageEvent, Future[None] | asyncio.Future[None], str | None]] = []
        self._closed = False
        self._writer = threading.Thread(target=self._write_batches, name="warmgate-ledger", daemon=True)
        self._writer.start()

    def submit(self, event: UsageEvent) -> Future[None]:
        """Queue ``event``; the future completes when it is committed (or fails with the reason)."""
        done: Future[None] = Future()
        self._enqueue(event, done)
        return done

    def submit_async(self, event: UsageEvent, hold: str | None = None) -> asyncio.Future[None]:
        """``submit`` for the event loop: the loop is woken once per committed batch, not once
        per event as ``asyncio.wrap_future`` would. ``hold``: the row in ``holds`` (processes
        sharing the file) that the event settles, deleted in the same transaction."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(event, done, hold)
        return done

    def _enqueue(self, event: UsageEvent, done: Future[None] | asyncio.Future[None], hold: str | None = None) -> None:
        with self._queue:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            self._pending.append((event, done, hold))
            self._queue.notify()

    def record(self, event: UsageEvent) -> None:
        """Insert one event and return once it is durable."""
        self.submit(event).result()

    def _write_batches(self) -> None:
        while True:
            with self._queue:
                while not self._pending and not self._closed:
                    self._queue.wait()
                if not self._pending:
                    return  # closed and drained
                batch, self._pending = self._pending, []
            events = [event for event, _, _ in batch]
            holds = [hold for _, _, hold in batch if hold is not None]
            failure: Exception | None = None
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    _insert(self._db, events)
                    _add_spending(self._db, events)
                    _release(self._db, holds)
                    self._db.execute("COMMIT")
            except Exception as exc:  # the disk is full or gone: every waiter learns why
                failure = exc
                with self._lock:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
            _wake([done for _, done, _ in batch], failure)

    def totals(self, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
        """Per key and function: requests, failures, units, billed wei and tokens."""
        query, args = totals_query("sqlite", key=key, since=since)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return sum_usage(rows)

    def close(self) -> None:
        """Commit what is queued, then close."""
        with self._queue:
            self._closed = True
            self._queue.notify()
        self._writer.join()
        with self._lock:
            self._db.close()


TOTALS_QUERY = "SELECT key, function, status, units, wei, prompt_tokens, completion_tokens FROM usage WHERE time >= ?"


def totals_query(dialect: str, *, key: str | None, since: float | None) -> tuple[str, list[object]]:
    """``TOTALS_QUERY`` for ``key`` (``None``: every key) from ``since``, in ``?`` placeholders."""
    query, args = TOTALS_QUERY, [since or 0.0]
    if key is not None:
        query += " AND key IS ?" if dialect == "sqlite" else " AND key IS NOT DISTINCT FROM ?"
        args.append(key)
    return query, args


def read_totals(db: Any, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
    """Totals read through a ``database.Database`` (the ``warmgate usage`` command, either store)."""
    query, args = totals_query(db.dialect, key=key, since=since)
    return sum_usage(db.execute(query, args).fetchall())


def sum_usage(rows: list[Any]) -> list[UsageTotal]:
    """Usage rows (``TOTALS_QUERY``'s columns) summed per key and function, by either store."""
    sums: dict[tuple[str | None, str], list[int]] = {}
    for row_key, function, status, units, wei, prompt, completion in rows:
        total = sums.setdefault((row_key, function), [0, 0, 0, 0, 0, 0])
        total[0] += 1
        billed = int(wei) != 0
        if status >= 400:
            if not (status == ABANDONED and billed):  # a client that left mid-answer used what it got
                total[1] += 1  # failed, or abandoned before any answer
            if not billed:  # neither units nor tokens count; a stream that failed after delivering
                continue  # tokens is billed those, and they count
        total[2] += units
        total[3] += int(wei)  # Python ints: exact however large
        total[4] += prompt or 0
        total[5] += completion or 0
    ordered = sorted(sums.items(), key=lambda item: (item[0][0] or "", item[0][1]))
    return [UsageTotal(key=k, function=f, requests=t[0], failed=t[1], units=t[2], wei=str(t[3]),
                       prompt_tokens=t[4], completion_tokens=t[5]) for (k, f), t in ordered]


def _wake(waiters: list[Future[None] | asyncio.Future[None]], failure: Exception | None) -> None:
    """Complete every waiter of a batch: thread futures here, loop futures in one callback per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for done in waiters:
        if isinstance(done, asyncio.Future):
            by_loop.setdefault(done.get_loop(), []).append(done)
        elif failure is not None:
            done.set_exception(failure)
        else:
            done.set_result(None)
    for loop, futures in by_loop.items():
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
            loop.call_soon_threadsafe(_complete, futures, failure)


def _complete(futures: list[asyncio.Future[None]], failure: Exception | None) -> None:
    for future in futures:
        if not future.done():  # a cancelled waiter (its client left) stays cancelled
            if failure is not None:
                future.set_exception(failure)
            else:
                future.set_result(None)


_INSERT = ("INSERT INTO usage (request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei, status, "
           "duration_ms, prompt_tokens, completion_tokens) VALUES ")
_VALUES = "(?,?,?,?,?,?,?,?,?,?,?,?,?)"
_ROWS_PER_INSERT = 500  # 13 parameters a row, well under SQLite's 32766


def _insert(db: Any, events: list[UsageEvent]) -> None:
    """One multi-row INSERT per 500 events: each statement is a trip through sqlite3 that lets
    go of the GIL, and a busy event loop is slow to give it back."""
    for start in range(0, len(events), _ROWS_PER_INSERT):
        chunk = events[start:start + _ROWS_PER_INSERT]
        db.execute(_INSERT + ",".join([_VALUES] * len(chunk)), [value for event in chunk for value in _row(event)])


def _add_spending(db: Any, events: list[UsageEvent]) -> None:
    """Raise each key's ``spent`` by what its events were billed (Python ints: exact)."""
    spending: dict[str, int] = {}
    for event in events:
        if event.key is not None and event.wei:
            spending[event.key] = spending.get(event.key, 0) + event.wei
    for key, wei in spending.items():
        row = db.execute("SELECT spent FROM keys WHERE id = ?", (key,)).fetchone()
        if row is not None:
            db.execute("UPDATE keys SET spent = ? WHERE id = ?", (str(int(row[0]) + wei), key))


def _release(db: Any, holds: list[str]) -> None:
    for start in range(0, len(holds), _ROWS_PER_INSERT):
        chunk = holds[start:start + _ROWS_PER_INSERT]
        db.execute(f"DELETE FROM holds WHERE id IN ({','.join('?' * len(chunk))})", chunk)


def _row(event: UsageEvent) -> tuple[object, ...]:
    return (event.request_id, event.time, event.key, event.function, event.pipeline, event.model_id, event.units,
            str(event.quoted_wei), str(event.wei), event.status, event.duration_ms, event.prompt_tokens,
            event.completion_tokens)
