"""Balances as the gateway holds them: a request's quote is held against its key before the
function runs and settled when it ends.

Holds live in memory, on the event loop, so reserving is a subtraction, not a database write,
and can never race: 200 requests on a balance for 100 give exactly 100 holds. The committed
``spent`` is read once per key and then kept here, raised as each event is settled (the ledger
commits the same amount with the event's row). A crash loses only holds, which is right: their
requests got no answer, and nothing was billed for them.
"""

from __future__ import annotations

import time

import msgspec

from warmgate.core.http.auth import Caller
from warmgate.core.http.errors import PaymentRequired, Unauthorized
from warmgate.core.usage import Quote, UsageEvent
from warmgate.plugins.pricing.keys import KeyRecord, KeyStore, hash_token

__all__ = ["Account", "Accounts", "Balance", "short_of"]


class Balance(msgspec.Struct, kw_only=True):
    """A key's money as the gateway sees it, in wei (decimal text: exact beyond 2**53)."""

    key: str
    name: str
    credit_wei: str | None
    """Granted so far; ``None``: no budget."""
    spent_wei: str
    held_wei: str
    """Quotes of requests in progress."""
    available_wei: str | None


class Account:
    def __init__(self, record: KeyRecord, now: float) -> None:
        self.record = record
        self.read_at = now
        self.spent = record.spent
        self.held = 0
        self.caller = _caller(record)

    def snapshot(self) -> Balance:
        credit = self.record.credit
        return Balance(key=self.record.id, name=self.record.name, credit_wei=None if credit is None else str(credit),
                       spent_wei=str(self.spent), held_wei=str(self.held),
                       available_wei=None if credit is None else str(credit - self.spent - self.held))

    @property
    def available(self) -> int | None:
        """Wei this key may still be quoted; ``None``: no budget."""
        credit = self.record.credit
        return None if credit is None else credit - self.spent - self.held


class Accounts:
    """Keys by token, with their balances. A key's row is re-read at most every ``refresh``
    seconds, so a ``warmgate keys topup`` or ``revoke`` reaches a running gateway within that."""

    def __init__(self, store: KeyStore, *, refresh: float = 1.0) -> None:
        self._store = store
        self._refresh = refresh
        self._by_hash: dict[str, Account] = {}
        self._by_id: dict[str, Account] = {}

    def authenticate(self, token: str) -> Caller | None:
        """The key's caller; ``None`` for a token that is not a key (the operator keys may know
        it); 401 for a revoked key."""
        token_hash = hash_token(token)
        account = self._by_hash.get(token_hash)
        now = time.monotonic()
        if account is None or now - account.read_at > self._refresh:
            record = self._store.find(token_hash)
            if record is None:
                return None
            account = self._remember(token_hash, record, now)
        if account.record.revoked is not None:
            raise Unauthorized(f"key {account.record.id} was revoked")
        return account.caller

    def reserve(self, quote: Quote) -> None:
        """Hold the quote, or 402 with the balance and the price."""
        account = self._by_id.get(quote.key) if quote.key is not None else None
        if account is None:
            return  # an operator key: no budget
        available = account.available
        if available is not None and quote.wei > available:
            raise PaymentRequired(
                f"key {account.record.id} has {available} wei available (balance {account.record.credit - account.spent}"
                f", {account.held} held by requests in progress); this request costs {quote.wei} wei "
                f"({quote.units} units of {quote.function})")
        account.held += quote.wei

    def settle(self, event: UsageEvent) -> None:
        """Release the event's hold and spend what it was billed (0 when it failed)."""
        account = self._by_id.get(event.key) if event.key is not None else None
        if account is not None:
            account.held -= event.quoted_wei
            account.spent += event.wei

    def record(self, key_id: str) -> KeyRecord | None:
        """The key as last read (by ``authenticate``, at most ``refresh`` seconds ago)."""
        account = self._by_id.get(key_id)
        return account.record if account is not None else None

    def balance(self, key_id: str) -> Balance | None:
        account = self._by_id.get(key_id)
        return account.snapshot() if account is not None else None

    def close(self) -> None:
        self._store.close()

    def _remember(self, token_hash: str, record: KeyRecord, now: float) -> Account:
        account = self._by_id.get(record.id)
        if account is None:  # first sight: spent as committed; from now on it is kept here
            account = Account(record, now)
            self._by_id[record.id] = account
        else:  # a re-read: credit, functions, revocation may have changed; spent is ours
            account.record = record
            account.read_at = now
            account.caller = _caller(record)
        self._by_hash[token_hash] = account
        return account


def short_of(quote: Quote, credit: int, spent: int, held: int) -> PaymentRequired:
    """The 402 of a quote that a key's shared balance (replicas, workers) does not cover."""
    return PaymentRequired(
        f"key {quote.key} has {credit - spent - held} wei available (balance {credit - spent}, {held} held "
        f"by requests in progress); this request costs {quote.wei} wei ({quote.units} units of {quote.function})")


def _caller(record: KeyRecord) -> Caller:
    return Caller(key=record.id, functions=frozenset(record.functions) if record.functions is not None else None)
