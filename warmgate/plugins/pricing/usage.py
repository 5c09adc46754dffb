"""The ledger's life in the gateway (opened at startup, fed by ``on_usage``), ``GET /usage`` and
``warmgate usage``."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import Annotated, Any

import click
import msgspec
from litestar import Request, Response, get

from warmgate.core.http.errors import ClientError, Forbidden
from warmgate.core.plugins import await_me_maybe
from warmgate.plugins.pricing.accounts import Balance
from warmgate.plugins.pricing.database import StoreUnavailable
from warmgate.plugins.pricing.ledger import UsageTotal, read_totals
from warmgate.plugins.pricing.migrations import SchemaTooNew, SchemaTooOld, open_current

__all__ = ["parse_since", "usage_command", "usage_route"]


def parse_since(text: str | None) -> float | None:
    """Unix seconds, or an ISO date/time (``2026-11-01``, ``2026-11-01T12:00:00Z``)."""
    if not text:
        return None
    with contextlib.suppress(ValueError):  # not a number: try it as a date
        return float(text)
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ClientError(f"since: expected unix seconds or an ISO date, got {text!r}") from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).timestamp()


class UsageReport(msgspec.Struct):
    usage: list[UsageTotal]
    balance: Balance | None = None
    """The calling key's balance, when the caller used one made with ``warmgate keys``."""


class UsageQuery(msgspec.Struct):
    """The query of ``GET /usage`` (documentation: the route reads the parameters itself)."""

    key: Annotated[str | None, msgspec.Meta(description="Only this API key (a key may read only its own).")] = None
    since: Annotated[str | None, msgspec.Meta(description="Unix seconds or an ISO date.")] = None


@get("/usage", tags=["pricing"], summary="Usage totals per key and function",
     opt={"response": UsageReport, "query": UsageQuery, "errors": (400, 401, 403)})
async def usage_route(request: Request[Any, Any, Any]) -> Response[bytes]:
    """``?key=...&since=...``. When auth is on, usage is billing data: an operator key
    (``auth.api_keys``) sees every key's, a key made with ``warmgate keys`` only its own."""
    state = request.app.state
    caller = await state.auth(request.scope, request.app)
    ledger = getattr(state, "ledger", None)
    if ledger is None:
        raise ClientError("the usage ledger is off (pricing.ledger: off)")
    query = request.query_params
    key, balance = query.get("key"), None
    if caller is not None and caller.key is not None:
        if key is not None and key != caller.key:
            raise Forbidden(f"key {caller.key} may only read its own usage")
        key = caller.key
        balance = await await_me_maybe(ledger.balance(caller.key))
    since = parse_since(query.get("since"))
    totals = await ledger.totals(key=key, since=since)
    return Response(msgspec.json.encode(UsageReport(usage=totals, balance=balance)), media_type="application/json")


@click.command("usage")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="serverless.yaml or aiModels.json (default: $WARMGATE_CONFIG, ./serverless.yaml)")
@click.option("--since", default=None, help="Unix seconds or an ISO date.")
@click.option("--key", default=None, help="Only this API key.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def usage_command(config_path: str | None, since: str | None, key: str | None, as_json: bool) -> None:
    """Usage totals per key and function, read from the ledger."""
    from warmgate.plugins.pricing.db_cli import cli_target

    target = cli_target(config_path)
    if target is None or (isinstance(target, Path) and not target.exists()):
        raise click.ClickException(f"no usage ledger at {target}" if target else "the usage ledger is off")
    try:
        db = open_current(target)
    except (StoreUnavailable, SchemaTooOld, SchemaTooNew) as exc:
        raise click.ClickException(str(exc)) from None
    try:
        totals = read_totals(db, key=key, since=parse_since(since))
    except ClientError as exc:
        raise click.ClickException(exc.msg) from None
    finally:
        db.close()
    if as_json:
        click.echo(msgspec.json.encode(UsageReport(usage=totals)).decode())
        return
    click.echo(f"{'key':<14}{'function':<48}{'requests':>9}{'failed':>7}{'units':>14}{'wei':>26}{'tokens':>10}")
    for t in totals:
        click.echo(f"{(t.key or '-'):<14}{t.function:<48}{t.requests:>9}{t.failed:>7}{t.units:>14}{t.wei:>26}"
                   f"{t.prompt_tokens + t.completion_tokens:>10}")
