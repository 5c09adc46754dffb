"""``warmgate keys create|list|revoke|topup``: API keys with balances, in the pricing database
(the usage ledger's file, ``pricing.ledger``). A running gateway sees changes within a second."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
import msgspec

from warmgate.core.errors import ConfigError
from warmgate.pricing.database import StoreUnavailable
from warmgate.pricing.keys import KeyRecord, KeyStore, parse_amount
from warmgate.pricing.migrations import SchemaTooNew, SchemaTooOld
from warmgate.pricing.store import store_target

__all__ = ["keys_command"]

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="serverless.yaml or aiModels.json (default: $WARMGATE_CONFIG, ./serverless.yaml)")


@click.group("keys")
def keys_command() -> None:
    """API keys with balances (wei) and allowed functions. Turn them on with `auth.keys: true`
    (or WARMGATE_KEYS=1); amounts are wei, or a number with eth or a fiat code (0.01eth, 5usd)."""


@contextmanager
def _store(config_path: str | None) -> Iterator[tuple[KeyStore, Any]]:
    from warmgate.core.config import load_settings

    settings = load_settings(config_path)
    try:
        target = store_target(settings)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration: {exc}") from None
    if target is None:
        raise click.ClickException("the usage ledger is off (pricing.ledger: off); keys are kept in it")
    try:
        store = KeyStore(target)
    except (StoreUnavailable, SchemaTooOld, SchemaTooNew) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        yield store, settings
    except (LookupError, ValueError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        store.close()


def _amount(settings: Any) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return parse_amount(text, settings.pricing.eth_rates)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return parse


@keys_command.command("create")
@_config_option
@click.option("--name", default="", help="Who or what the key is for.")
@click.option("--balance", default=None, help="Budget; without it the key is metered but never refused for money.")
@click.option("--function", "functions", multiple=True, help="A function (name or alias) it may call; repeat. "
              "Default: all.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def create(config_path: str | None, name: str, balance: str | None, functions: tuple[str, ...], as_json: bool) -> None:
    """Make a key and print its secret, which is shown only this once."""
    with _store(config_path) as (store, settings):
        credit = _amount(settings)(balance) if balance is not None else None
        record, token = store.create(name=name, credit=credit, functions=functions)
    if as_json:
        click.echo(msgspec.json.encode({**msgspec.to_builtins(record), "token": token}).decode())
        return
    click.echo(f"created {record.id}{f' ({name})' if name else ''}: balance {_wei(record.balance)}")
    click.echo(f"secret (shown once): {token}")


@keys_command.command("list")
@_config_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_keys(config_path: str | None, as_json: bool) -> None:
    """Every key with its balance, spending, allowed functions and state."""
    with _store(config_path) as (store, _):
        records = store.list()
    if as_json:
        click.echo(msgspec.json.encode([{**msgspec.to_builtins(r), "balance": r.balance} for r in records]).decode())
        return
    if not records:
        click.echo("no keys (make one with `warmgate keys create`)")
        return
    click.echo(f"{'id':<18}{'name':<16}{'balance (wei)':>26}{'spent (wei)':>26}  {'state':<9}functions")
    for r in records:
        state = "revoked" if r.revoked is not None else "active"
        click.echo(f"{r.id:<18}{r.name[:15]:<16}{_wei(r.balance):>26}{r.spent:>26}  {state:<9}"
                   f"{', '.join(r.functions) if r.functions else 'all'}")


@keys_command.command("revoke")
@_config_option
@click.argument("key_id")
def revoke(config_path: str | None, key_id: str) -> None:
    """Stop a key from working (a running gateway refuses it within a second). Its usage stays."""
    with _store(config_path) as (store, _):
        record = store.revoke(key_id)
    click.echo(f"revoked {record.id} at {_when(record)}")


@keys_command.command("topup")
@_config_option
@click.argument("key_id")
@click.argument("amount")
def topup(config_path: str | None, key_id: str, amount: str) -> None:
    """Add AMOUNT to a key's balance."""
    with _store(config_path) as (store, settings):
        record = store.top_up(key_id, _amount(settings)(amount))
    click.echo(f"{record.id}: balance {_wei(record.balance)}")


def _wei(amount: int | None) -> str:
    return "unlimited" if amount is None else f"{amount}"


def _when(record: KeyRecord) -> str:
    moment = record.revoked if record.revoked is not None else record.created
    return dt.datetime.fromtimestamp(moment, dt.UTC).isoformat(timespec="seconds")
