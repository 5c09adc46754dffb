"""The usage ledger: one row per priced request, settled after its answer, its hold marked
before the answer went out (``holds.py``: a crash in between bills the quote).

``SqliteLedger`` is the SQLite store's ledger (``store.SqliteStore``; the PostgreSQL store
settles in its own statements, ``postgres_store``): WAL journal, each commit synced to disk right
after it (``ledger_sync: full``) or left to the OS (``normal``). An event's row, its key's
``spent`` and its hold's deletion are committed together.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from pathlib import Path
from typing import Any

import msgspec

from warmgate.core.usage import UsageEvent
from warmgate.plugins.pricing.holds import INSERT_HOLD, recover_dangling
from warmgate.plugins.pricing.migrations import open_current

__all__ = ["SqliteLedger", "UsageTotal", "read_totals", "sum_usage", "totals_query"]

SETTLE_DELAY = 0.002
"""Seconds a batch of settles alone waits for more (or for a mark that someone awaits)."""
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
    """The SQLite file's writer: ``answering`` marks and settles (see ``holds.py``) are committed
    by one writer thread in group commits, every item queued while the previous transaction ran
    going into the next one. A commit reaches the OS (WAL, ``synchronous=NORMAL``: a ``kill -9``
    cannot undo it); with ``sync="full"`` a second thread then syncs the WAL to the disk, so no
    answer ever waits for an fsync. Only a mark is waited for, before its answer's first byte: it
    is committed at once. Settles are queued, nobody waits, and a batch of them alone waits up to
    ``SETTLE_DELAY`` for company."""

    def __init__(self, path: str | Path, *, sync: str = "full") -> None:
        self.path = Path(path).expanduser()
        self._db = open_current(self.path, synchronous="NORMAL").connection
        self._lock = threading.Lock()  # the connection: writer thread vs. totals() and recovery
        self._queue = threading.Condition()
        self._pending: list[_Item] = []
        self._waiting = 0
        """Items of ``_pending`` that someone awaits (a mark, a flush): they are committed at once."""
        self._closed = False
        self._synced = threading.Condition()
        self._commits = self._synced_commits = 0
        self._writer = threading.Thread(target=self._write_batches, name="warmgate-ledger", daemon=True)
        self._syncer = (threading.Thread(target=self._sync_wal, name="warmgate-ledger-sync", daemon=True)
                        if sync.lower() == "full" else None)
        self._writer.start()
        if self._syncer is not None:
            self._syncer.start()

    def recover(self, owner: str) -> tuple[int, int]:
        """Settle the holds of gateway processes that are gone (``holds.recover_dangling``)."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                counts = recover_dangling(self._db, owner)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return counts

    def answering(self, hold: str, row: tuple[object, ...] | None = None) -> asyncio.Future[None]:
        """Mark the hold: its answer is about to go out. ``row`` (``holds.hold_row``): the hold
        is not in the file yet (one process decides holds in memory) and is written marked. The
        future completes once committed."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Item(answering=(hold, time.time()), row=row, done=done))
        return done

    def settle(self, event: UsageEvent) -> None:
        """Queue the event's usage row, its key's spending and its hold's deletion."""
        self._enqueue(_Item(event=event))

    def flush(self) -> asyncio.Future[None]:
        """Completes once everything queued before it is committed (a read then sees it)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._enqueue(_Item(done=done))
        return done

    def _enqueue(self, item: _Item) -> None:
        with self._queue:
            if self._closed:
                raise RuntimeError("the ledger is closed")
            self._pending.append(item)
            if item.done is not None:
                self._waiting += 1
            if item.done is not None or len(self._pending) == 1:  # a settle more wakes nobody: it can wait
                self._queue.notify()

    def _write_batches(self) -> None:
        while True:
            with self._queue:
                while not self._pending and not self._closed:
                    self._queue.wait()
                if not self._pending:
                    return  # closed and drained
                deadline = time.monotonic() + SETTLE_DELAY
                while not self._waiting and not self._closed and (left := deadline - time.monotonic()) > 0:
                    self._queue.wait(left)  # only settles: nobody waits, so gather more into one commit
                batch, self._pending, self._waiting = self._pending, [], 0
            failure: Exception | None = None
            try:
                with self._lock:
                    self._db.execute("BEGIN IMMEDIATE")
                    _write(self._db, batch)
                    self._db.execute("COMMIT")
            except Exception as exc:  # the disk is full or gone: every waiter learns why
                failure = exc
                with self._lock:
                    if self._db.in_transaction:
                        self._db.execute("ROLLBACK")
            else:
                with self._synced:
                    self._commits += 1
                    self._synced.notify_all()
            _wake([item.done for item in batch if item.done is not None], failure)

    def _sync_wal(self) -> None:
        """Sync the WAL after each commit (or after several, when one sync outlasts them): what
        ``synchronous=FULL`` does inside the commit, here without holding the file's write lock."""
        wal = -1
        try:
            while True:
                with self._synced:
                    while self._synced_commits == self._commits and not self._closed:
                        self._synced.wait()
                    commits = self._commits
                    if commits == self._synced_commits:
                        return  # closed, everything synced
                if wal < 0:
                    wal = os.open(f"{self.path}-wal", os.O_RDONLY)
                os.fsync(wal)
                with self._synced:
                    self._synced_commits = commits
                    self._synced.notify_all()
        finally:
            if wal >= 0:
                os.close(wal)

    def totals(self, *, key: str | None = None, since: float | None = None) -> list[UsageTotal]:
        """Per key and function: requests, failures, units, billed wei and tokens."""
        query, args = totals_query("sqlite", key=key, since=since)
        with self._lock:
            rows = self._db.execute(query, args).fetchall()
        return sum_usage(rows)

    def close(self) -> None:
        """Commit and sync what is queued, then close."""
        with self._queue:
            self._closed = True
            self._queue.notify()
        self._writer.join()
        with self._synced:
            self._synced.notify_all()
        if self._syncer is not None:
            self._syncer.join()
        with self._lock:
            self._db.close()


class _Item(msgspec.Struct):
    """One thing for the writer: an ``answering`` mark (with the hold's row when it is not in
    the file), a settle, or only a waiter."""

    answering: tuple[str, float] | None = None
    row: tuple[object, ...] | None = None
    event: UsageEvent | None = None
    done: asyncio.Future[None] | None = None


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


def _write(db: Any, batch: list[_Item]) -> None:
    """A batch's statements. A hold written and settled in one batch is not written at all
    (on the no-op pipeline its mark and its settle are often one batch)."""
    new: dict[object, tuple[object, ...]] = {}
    marks: dict[str, float] = {}
    settled: list[str] = []
    events: list[UsageEvent] = []
    for item in batch:
        if item.answering is not None:
            hold, moment = item.answering
            if item.row is not None:
                new[hold] = (*item.row[:-1], moment)
            else:
                marks[hold] = moment
        elif item.event is not None:
            events.append(item.event)
            if new.pop(item.event.hold, None) is None:
                marks.pop(item.event.hold, None)
                settled.append(item.event.hold)
    if new:
        db.executemany(INSERT_HOLD, list(new.values()))
    if marks:
        db.executemany("UPDATE holds SET answering = ? WHERE id = ?", [(t, h) for h, t in marks.items()])
    _insert(db, events)
    _add_spending(db, events)
    _release(db, settled)


def _wake(waiters: list[asyncio.Future[None]], failure: Exception | None) -> None:
    """Complete every waiter of a batch, in one callback per event loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
    for done in waiters:
        by_loop.setdefault(done.get_loop(), []).append(done)
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
