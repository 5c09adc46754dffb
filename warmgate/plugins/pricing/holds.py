"""A hold's life in the database, and the rule for one its gateway left behind.

A priced request's quote is held while its function runs: the hold row is written then,
concurrently with the function, not before it starts (PostgreSQL, and SQLite shared by ``serve
--workers``, where the row is what decides the hold; one SQLite process decides in memory and
writes the row with its mark, since an unmarked row could only ever be released). Before the
first byte of a successful answer goes out, the row is marked ``answering`` (the time), and the
answer waits for that mark to be committed. After the last byte the request is settled: its usage row inserted, its key's
``spent`` raised and the hold deleted, in one transaction, which the answer does not wait for.

**The rule for a dangling hold** (its gateway died: ``kill -9``, a lost machine): marked
``answering``, the client may have its answer, so the hold is billed at its quote, in a usage row
of its request; not marked, no byte of an answer left the gateway, so it is released, unbilled.
A settle and a recovery never both count: each deletes the hold in the transaction that bills
it, and a usage row is unique per hold (PostgreSQL). So after a crash every answered request is
in the ledger exactly once: settled as it ran, or at its quote (an LLM call with
``settle: usage`` that had streamed part of its answer pays its quote, not its tokens).

The mark is committed to the database, not synced to the disk, before the answer goes out (the
sync follows at once, off the critical path): a gateway killed after the mark cannot undo it. A
power cut within the sync can; then the hold is released, so an answer is never billed twice and
at worst the answers of those last milliseconds are not billed.
"""

from __future__ import annotations

import time
from typing import Any

from warmgate.core.usage import Quote
from warmgate.plugins.pricing.owners import is_alive

__all__ = ["HOLD_COLUMNS", "INSERT_HOLD", "hold_row", "recover_dangling"]

HOLD_COLUMNS = "id, key, wei, owner, created, function, pipeline, model_id, units, request_id, answering"
INSERT_HOLD = f"INSERT INTO holds ({HOLD_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?)"


def hold_row(quote: Quote, owner: str, *, answering: float | None = None) -> tuple[object, ...]:
    """``quote``'s row of ``holds`` (SQLite: wei as decimal text), in ``HOLD_COLUMNS`` order."""
    return (quote.hold, quote.key, str(quote.wei), owner, time.time(), quote.function, quote.pipeline,
            quote.model_id, quote.units, quote.request_id, answering)


def recover_dangling(db: Any, me: str, *, key: str | None = None) -> tuple[int, int]:
    """Settle the holds in a SQLite file whose gateway process is gone (of ``key`` only, if
    given), by the rule above, inside the caller's write transaction; (billed, released)."""
    where, args = ("WHERE key IS ?", (key,)) if key is not None else ("", ())
    rows = db.execute(f"SELECT {HOLD_COLUMNS} FROM holds {where}", args).fetchall()
    dead = [row for row in rows if not is_alive(row[3], me)]
    billed = [row for row in dead if row[10] is not None]
    for _, row_key, wei, _, created, function, pipeline, model_id, units, request_id, answering in billed:
        db.execute("INSERT INTO usage (request_id, time, key, function, pipeline, model_id, units, quoted_wei, wei, "
                   "status, duration_ms) VALUES (?,?,?,?,?,?,?,?,?,200,?)",
                   (request_id, answering, row_key, function, pipeline, model_id, units, wei, wei,
                    round((answering - created) * 1000, 3)))
        spent = db.execute("SELECT spent FROM keys WHERE id = ?", (row_key,)).fetchone() if row_key else None
        if spent is not None:  # Python ints: exact past SQLite's 2**63
            db.execute("UPDATE keys SET spent = ? WHERE id = ?", (str(int(spent[0]) + int(wei)), row_key))
    for start in range(0, len(dead), 500):
        chunk = [row[0] for row in dead[start:start + 500]]
        db.execute(f"DELETE FROM holds WHERE id IN ({','.join('?' * len(chunk))})", chunk)
    return len(billed), len(dead) - len(billed)
