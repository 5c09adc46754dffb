"""``warmgate keys create|list|update|revoke|topup``: API keys with balances, in the pricing database
(the usage ledger's file, ``pricing.ledger``). A running gateway sees changes within a second."""

from __future__ import annotations

import datetime as dt
import difflib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click
import msgspec

from warmgate.core.http.auth import allows
from warmgate.plugins.pricing.database import StoreUnavailable
from warmgate.plugins.pricing.keys import KeyRecord, KeyStore, parse_amount
from warmgate.plugins.pricing.migrations import SchemaTooNew, SchemaTooOld
from warmgate.plugins.pricing.settings import pricing_settings
from warmgate.plugins.pricing.store import store_target

__all__ = ["keys_command"]

_config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help="serverless.yaml or aiModels.json (default: $WARMGATE_CONFIG, ./serverless.yaml)")
_profile_option = click.option(
    "--profile", type=click.Choice(["demo"]), default=None,
    help="demo: match --function names against the functions `serve --profile demo` has.")


@click.group("keys")
def keys_command() -> None:
    """API keys with balances (wei) and allowed functions. Turn them on with `auth.keys: true`
    (or WARMGATE_KEYS=1); amounts are wei, or a number with eth or a fiat code (0.01eth, 5usd)."""


@contextmanager
def _store(config_path: str | None, profile: str | None = None) -> Iterator[tuple[KeyStore, Any]]:
    from warmgate.core.config import load_settings

    settings = load_settings(config_path, profile=profile)
    target = store_target(settings)
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


class _Limit(click.ParamType):
    """A positive whole number, or ``none`` (no limit)."""

    name = "N|none"

    def convert(self, value: Any, param: Any, ctx: Any) -> int | None:
        if value is None or isinstance(value, int):
            return value
        if str(value).lower() in ("none", "off"):
            return None
        if not str(value).isdigit() or int(value) < 1:
            self.fail(f"expected a whole number of at least 1, or none, got {value!r}", param, ctx)
        return int(value)


_LIMIT_OPTIONS = (
    click.option("--rpm", type=_Limit(), default=None, help="Requests a minute, across every gateway."),
    click.option("--tpm", type=_Limit(), default=None, help="LLM tokens (prompt plus completion) a minute."),
    click.option("--max-parallel", type=_Limit(), default=None, help="Requests in progress at once."),
)


def _limit_options(command: Callable[..., Any]) -> Callable[..., Any]:
    for option in reversed(_LIMIT_OPTIONS):
        command = option(command)
    return command


def _limits(record: KeyRecord) -> str:
    """``rpm 60, tpm 100000, parallel 4``, or ``none``."""
    parts = [f"{label} {value}" for label, value in (("rpm", record.rpm), ("tpm", record.tpm),
                                                       ("parallel", record.max_parallel)) if value is not None]
    return ", ".join(parts) or "none"


def _amount(settings: Any) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            return parse_amount(text, pricing_settings(settings).eth_rates)
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None

    return parse


@keys_command.command("create")
@_config_option
@_profile_option
@click.option("--name", default="", help="Who or what the key is for.")
@click.option("--balance", default=None, help="Budget; without it the key is metered but never refused for money.")
@click.option("--function", "functions", multiple=True, help="What it may call; repeat. A function's name or alias, "
              "or a pipeline name for all of that pipeline's functions (live-video-to-video: every live "
              "pipeline). Default: all.")
@_limit_options
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def create(config_path: str | None, profile: str | None, name: str, balance: str | None, functions: tuple[str, ...],
           rpm: int | None, tpm: int | None, max_parallel: int | None, as_json: bool) -> None:
    """Make a key and print its secret, which is shown only this once."""
    with _store(config_path, profile) as (store, settings):
        credit = _amount(settings)(balance) if balance is not None else None
        callables = _callables(settings)
        matches = _matches(functions, callables)
        for entry, found in matches.items():
            if not found:
                raise click.ClickException(_matches_nothing(entry, callables, settings))
        record, token = store.create(name=name, credit=credit, functions=functions, rpm=rpm, tpm=tpm,
                                     max_parallel=max_parallel)
    if as_json:
        click.echo(msgspec.json.encode({**msgspec.to_builtins(record), "token": token, "matches": matches}).decode())
        return
    click.echo(f"created {record.id}{f' ({name})' if name else ''}: balance {_wei(record.balance)}")
    click.echo(f"may call: {_describe(record.functions, matches)}")
    click.echo(f"rate limits: {_limits(record)}")
    click.echo(f"secret (shown once): {token}")


@keys_command.command("list")
@_config_option
@_profile_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def list_keys(config_path: str | None, profile: str | None, as_json: bool) -> None:
    """Every key with its balance, spending, allowed functions (and what they match in the
    configuration) and state."""
    with _store(config_path, profile) as (store, settings):
        records = store.list()
        callables = _callables(settings)
    if as_json:
        click.echo(msgspec.json.encode([{**msgspec.to_builtins(r), "balance": r.balance,
                                         "matches": _matches(r.functions or (), callables)}
                                        for r in records]).decode())
        return
    if not records:
        click.echo("no keys (make one with `warmgate keys create`)")
        return
    click.echo(f"{'id':<18}{'name':<16}{'balance (wei)':>26}{'spent (wei)':>26}  {'state':<9}{'rate limits':<32}"
               "functions")
    for r in records:
        state = "revoked" if r.revoked is not None else "active"
        click.echo(f"{r.id:<18}{r.name[:15]:<16}{_wei(r.balance):>26}{r.spent:>26}  {state:<9}{_limits(r):<32}"
                   f"{_describe(r.functions, _matches(r.functions or (), callables))}")


_Callable = tuple[str, tuple[str, ...], str]
"""A function a key can be allowed: its name, aliases and pipeline."""


def _callables(settings: Any) -> list[_Callable]:
    """Every function the configuration serves, and every installed live pipeline."""
    from warmgate.core.config import plan_functions
    from warmgate.core.plugins import get_pipelines
    from warmgate.plugins.live.pipelines import LIVE_PIPELINE, get_live_pipelines, live_function_name

    found = [(fn.name, tuple(fn.aliases), fn.pipeline) for fn in plan_functions(settings, get_pipelines())]
    return found + [(live_function_name(name), (), LIVE_PIPELINE) for name in get_live_pipelines()]


def _matches(entries: Sequence[str], callables: list[_Callable]) -> dict[str, list[str]]:
    """For each allowed name, the functions it covers (see ``warmgate.core.http.auth.allows``)."""
    return {entry: [name for name, aliases, pipeline in callables if allows(entry, name, aliases, pipeline)]
            for entry in entries}


def _matches_nothing(entry: str, callables: list[_Callable], settings: Any) -> str:
    names = sorted({n for name, aliases, pipeline in callables for n in (name, *aliases, pipeline)})
    close = difflib.get_close_matches(entry, names, n=5, cutoff=0.5)
    return (f"--function {entry!r} matches no function in {settings.source}"
            f"{' (profile ' + settings.profile + ')' if settings.profile else ''}; "
            f"{'did you mean' if close else 'names it could be'}: {', '.join(close or names)}")


def _describe(entries: Sequence[str] | None, matches: dict[str, list[str]]) -> str:
    """``llm = llm:a, llm:b; text-to-image:m``: each name with what it covers, when that is more
    than itself."""
    if not entries:
        return "all"
    parts = []
    for entry in entries:
        found = matches.get(entry, [])
        parts.append(entry if found == [entry] else f"{entry} = {', '.join(found) or 'nothing in this configuration'}")
    return "; ".join(parts)


@keys_command.command("revoke")
@_config_option
@click.argument("key_id")
def revoke(config_path: str | None, key_id: str) -> None:
    """Stop a key from working (a running gateway refuses it within a second). Its usage stays."""
    with _store(config_path) as (store, _):
        record = store.revoke(key_id)
    click.echo(f"revoked {record.id} at {_when(record)}")


@keys_command.command("update")
@_config_option
@click.argument("key_id")
@_limit_options
@click.pass_context
def update(ctx: click.Context, config_path: str | None, key_id: str, rpm: int | None, tpm: int | None,
           max_parallel: int | None) -> None:
    """Change a key's rate limits (``none`` removes one); running gateways apply them within a
    second. Limits not given stay as they are."""
    given = {name: value for name, value in (("rpm", rpm), ("tpm", tpm), ("max_parallel", max_parallel))
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if not given:
        raise click.UsageError("give at least one of --rpm, --tpm, --max-parallel")
    with _store(config_path) as (store, _):
        record = store.set_limits(key_id, given)
    click.echo(f"{record.id}: rate limits {_limits(record)}")


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
