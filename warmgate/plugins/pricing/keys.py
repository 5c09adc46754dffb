"""API keys: made, listed, revoked and topped up by ``warmgate keys``, looked up by the gateway.

A key's secret is shown once, when it is made; the database keeps its SHA-256 (the secrets are
32 random bytes, so a fast hash is enough: there is nothing to guess). A key's balance is
``credit - spent``: the CLI only ever raises ``credit`` and the gateway only ever raises
``spent``, so the two never overwrite each other's writes.
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import time
from collections.abc import Mapping, Sequence
from fractions import Fraction
from pathlib import Path

import msgspec

from warmgate.plugins.pricing.migrations import open_current
from warmgate.plugins.pricing.quote import WEI_PER_ETH

__all__ = ["LIMITS", "KeyRecord", "KeyStore", "hash_token", "parse_amount"]

TOKEN_PREFIX = "wg-"


class KeyRecord(msgspec.Struct, kw_only=True):
    id: str
    name: str
    credit: int | None
    """Wei granted so far; ``None``: no budget (metered, never refused for money)."""
    spent: int
    functions: list[str] | None
    """Functions (names or aliases) the key may call; ``None``: all."""
    created: float
    revoked: float | None
    rpm: int | None = None
    """Requests a minute, across every gateway (``None``: no limit)."""
    tpm: int | None = None
    """LLM tokens (prompt plus completion) a minute."""
    max_parallel: int | None = None
    """Requests in progress at once."""

    @property
    def limited(self) -> bool:
        return self.rpm is not None or self.tpm is not None or self.max_parallel is not None

    @property
    def balance(self) -> int | None:
        return None if self.credit is None else self.credit - self.spent


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def parse_amount(text: str, eth_rates: Mapping[str, float] | None = None) -> int:
    """Whole wei from ``1000`` (wei), ``0.05eth``, ``2.5 USD`` (at ``pricing.eth_rates``),
    rounded down: a topup never grants more than was paid for."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]{3})?\s*", text)
    if match is None:
        raise ValueError(f"expected an amount such as 1000000 (wei), 0.01eth or 5usd, got {text!r}")
    number, currency = Fraction(match[1]), (match[2] or "wei").upper()
    if currency == "WEI":
        wei = number
    elif currency == "ETH":
        wei = number * WEI_PER_ETH
    else:
        rates = {code.upper(): rate for code, rate in (eth_rates or {}).items()}
        if currency not in rates:
            raise ValueError(f"no ETH rate for {currency}; set pricing.eth_rates")
        wei = number * WEI_PER_ETH / Fraction(str(rates[currency]))
    return int(wei)


class KeyStore:
    """The ``keys`` table of the pricing database: a SQLite file or a PostgreSQL URL."""

    def __init__(self, target: str | Path) -> None:
        self._db = open_current(target)

    def create(self, *, name: str = "", credit: int | None = None, functions: Sequence[str] | None = None,
               rpm: int | None = None, tpm: int | None = None,
               max_parallel: int | None = None) -> tuple[KeyRecord, str]:
        """A new key and its secret (shown once; only its hash is kept)."""
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = KeyRecord(id="key_" + secrets.token_hex(6), name=name, credit=credit, spent=0,
                           functions=list(functions) if functions else None, created=time.time(), revoked=None,
                           rpm=rpm, tpm=tpm, max_parallel=max_parallel)
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO keys (id, name, hash, credit, spent, functions, created, rpm, tpm, max_parallel) "
                "VALUES (?,?,?,?,?,?,?,?,?,?)",
                (record.id, name, hash_token(token), None if credit is None else str(credit), "0",
                 json.dumps(record.functions) if record.functions else None, record.created, rpm, tpm,
                 max_parallel))
        return record, token

    def set_limits(self, key_id: str, limits: Mapping[str, int | None]) -> KeyRecord:
        """Change some of the key's ``rpm``, ``tpm``, ``max_parallel`` (``None``: no limit);
        running gateways apply them within a second."""
        self.get(key_id)
        unknown = set(limits) - set(LIMITS)
        if unknown:
            raise ValueError(f"unknown limits {sorted(unknown)}; expected some of {list(LIMITS)}")
        if limits:
            with self._db.transaction():
                self._db.execute(f"UPDATE keys SET {', '.join(f'{name} = ?' for name in limits)} WHERE id = ?",
                                 (*limits.values(), key_id))
        return self.get(key_id)

    def find(self, token_hash: str) -> KeyRecord | None:
        return self._one("hash", token_hash)

    def get(self, key_id: str) -> KeyRecord:
        record = self._one("id", key_id)
        if record is None:
            raise LookupError(f"no key {key_id!r} (see `warmgate keys list`)")
        return record

    def list(self) -> list[KeyRecord]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM keys ORDER BY created").fetchall()
        return [_record(row) for row in rows]

    def revoke(self, key_id: str) -> KeyRecord:
        self.get(key_id)
        with self._db.transaction():
            self._db.execute("UPDATE keys SET revoked = ? WHERE id = ? AND revoked IS NULL", (time.time(), key_id))
        return self.get(key_id)

    def top_up(self, key_id: str, wei: int) -> KeyRecord:
        """Raise the key's credit by ``wei``; a key made without a budget has none to raise."""
        with self._db.transaction():
            row = self._db.execute("SELECT credit, revoked FROM keys WHERE id = ?", (key_id,)).fetchone()
            if row is None:
                raise LookupError(f"no key {key_id!r} (see `warmgate keys list`)")
            if row[0] is None:
                raise ValueError(f"key {key_id} has no budget (made without --balance): it is never refused for money")
            self._db.execute("UPDATE keys SET credit = ? WHERE id = ?", (str(int(row[0]) + wei), key_id))
        return self.get(key_id)

    def close(self) -> None:
        self._db.close()

    def _one(self, column: str, value: str) -> KeyRecord | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM keys WHERE {column} = ?", (value,)).fetchone()
        return _record(row) if row is not None else None


LIMITS = ("rpm", "tpm", "max_parallel")
_COLUMNS = "id, name, credit, spent, functions, created, revoked, rpm, tpm, max_parallel"


def _record(row: tuple[object, ...]) -> KeyRecord:
    key_id, name, credit, spent, functions, created, revoked, rpm, tpm, max_parallel = row
    return KeyRecord(id=str(key_id), name=str(name), credit=None if credit is None else int(str(credit)),
                     spent=int(str(spent)), functions=json.loads(str(functions)) if functions else None,
                     created=float(str(created)), revoked=None if revoked is None else float(str(revoked)),
                     rpm=_count(rpm), tpm=_count(tpm), max_parallel=_count(max_parallel))


def _count(value: object) -> int | None:
    return None if value is None else int(str(value))
