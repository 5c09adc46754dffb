"""Every hook warmgate calls. Implementations use ``@warmgate.hookimpl`` and may take any
subset of the arguments. Hooks marked *may await* may return a value, a callable or an
awaitable; the core resolves it with ``await_me_maybe``."""

from __future__ import annotations

from typing import Any

import pluggy

__all__ = ["hookimpl", "hookspec"]

hookspec = pluggy.HookspecMarker("warmgate")
hookimpl = pluggy.HookimplMarker("warmgate")


@hookspec
def register_pipelines(register: Any) -> None:
    """Register pipelines by calling ``register(PipelineSpec(...))`` once per pipeline.

    Called once per app when the pipeline registry is built. The core rejects a spec that is
    not a ``PipelineSpec`` (``TypeError`` naming it) and a duplicate name or path (``ValueError``
    naming both plugins). Return value is ignored.
    """


@hookspec
def register_routes(register: Any) -> None:
    """Register extra HTTP routes by calling ``register(handler)`` with a Litestar route handler
    (``@get(...)``-decorated function, Controller-free) or ``Router``.

    For routes that are not a pipeline, such as ``GET /v1/models``. Handlers reach the gateway
    through ``request.app.state``: ``functions`` (the function manager), ``settings``,
    ``pipelines``. A handler with ``opt={"index": name}`` is linked from ``/`` as ``name``. Called
    once per app. Return value is ignored.
    """


@hookspec
def register_executors(register: Any) -> None:
    """Register executors with ``register(name, factory)``; a function picks one with its
    ``executor`` setting (default ``local``).

    ``factory(config, pipelines, settings)`` returns a ``warmgate.core.executors.Executor`` for
    one function (subclass ``BaseExecutor`` for the defaults); a ``check_config(config)``
    classmethod on it may return ``(field, message)`` to refuse a function's settings. The core
    rejects a name registered twice (``ValueError`` naming both plugins; ``local``, ``remote``
    and ``ray`` are the core's). Return value is ignored.
    """


@hookspec
def register_settings(register: Any) -> None:
    """Register this plugin's own top-level sections of ``serverless.yaml`` with
    ``register(section_type)``: a ``warmgate.SettingsSection`` subclass whose ``key`` is the
    section's name (``pricing``, ``live``). The core decodes the section with it (errors name the
    line and field), applies its ``with_env`` overrides, its ``check`` and, per configured function,
    its ``check_function``; plugins read it back
    with ``settings.section(section_type)``. A key registered twice is an error naming both
    plugins. Return value is ignored.
    """


@hookspec
def register_commands(cli: Any) -> None:
    """Add commands to the ``warmgate`` CLI: ``cli`` is its ``click.Group``.

    Called once when the CLI starts. Return value is ignored.
    """


@hookspec
def register_live_pipelines(register: Any) -> None:
    """Register live video pipelines with ``register(name, factory, demo=None)``.

    ``factory(**options)`` returns a ``warmgate.plugins.live.pipelines.FrameProcessor`` for one session; a
    ``/live-video-to-video`` request or a ``/live/sessions`` one picks the pipeline by
    ``model_id``. ``options`` are the operator's ``live.pipelines.<name>`` settings; ``demo`` is
    a ``DemoModel`` whose directory is passed as ``model_id`` under the demo profile.
    """


@hookspec
def health(app: Any) -> Any:
    """``"LOADING"``, ``"ERROR"``, ``"OK"`` or ``"IDLE"`` for what this plugin runs outside the
    functions (live sessions), or ``None``. ``/health`` reports the most pressing of these and
    the functions' own state, in that order."""


@hookspec(firstresult=True)
def price_request(function: Any, config: Any, request: Any, units: int, settings: Any) -> Any:
    """Quote a request: return its price in wei (an ``int``), or None to leave it to the next plugin.

    Called for requests to functions that have a ``price``, after validation and before the
    function is acquired, and again to bill what was used (``request`` None: an LLM call's
    completion tokens, a live session's output pixels). ``config`` is the ``FunctionConfig``
    priced; ``function`` its ``Function``, or None for a live session (which runs no function).
    ``units`` comes from the pipeline's ``units(request)``; ``settings`` are
    the gateway's (the pricing section's ``eth_rates`` convert fiat prices). firstresult:
    the first non-None answer wins, and the built-in pricing plugin answers last.
    """


@hookspec(firstresult=True)
def authenticate(token: str, app: Any) -> Any:
    """Who is calling: return a ``warmgate.core.http.auth.Caller`` for a bearer ``token`` you know, or
    None to leave it to the next plugin (the configured ``auth.api_keys`` are tried last). Raise
    ``Unauthorized`` to refuse the token outright (a revoked key).

    Called on the event loop for every generate request when auth is on (``auth.api_keys`` or
    ``auth.keys``), before the body is read; keep it fast, or return an awaitable.
    """


@hookspec(firstresult=True)
def limit_request(caller: Any, app: Any) -> Any:
    """Admit a request of ``caller`` (a ``Caller`` with a ``key``) against the key's rate limits:
    raise ``warmgate.core.http.errors.RateLimited`` (429) to refuse it, return an ``Admission``
    (``warmgate.core.http.rate_limits``: its ``headers`` go on the response, its ``end(tokens)`` is
    awaited once when the request ends, before its last byte, with the LLM tokens it used), or
    None when the key has no limits.

    Called on the event loop for every generate request with a key, right after
    ``authenticate``; may return an awaitable. firstresult: the first non-None answer wins.
    """


@hookspec
def reserve(quote: Any, app: Any) -> Any:
    """Hold ``quote`` (a ``warmgate.core.usage.Quote``: function, units, wei, the caller's key,
    its hold id) against the caller's balance; raise ``PaymentRequired`` to refuse.

    Called before the function runs. An awaitable it returns is not awaited first: it runs while
    the function does, and the answer waits for it (its ``PaymentRequired`` then drops the
    result), so a hold that needs a database round trip costs the request no time of its own.
    Every quote that passes is reported exactly once to ``on_usage`` when the request ends, with
    what it is billed (0 when it failed): that is where a hold is settled or released.
    """


@hookspec
def on_answer(quote: Any, app: Any) -> Any:
    """The answer to ``quote`` (held by ``reserve``) is about to go out: called after the
    function ran and its hold was taken, before the first byte of a successful response.

    From here on the client may have its answer, so a store that finds the hold dangling after
    a crash bills it at the quote; before this, it releases it. Runs on the event loop; may
    return an awaitable, which the first byte waits for (a store's mark on the hold).
    """


@hookspec
def startup(app: Any) -> Any:
    """Called when the gateway has started, before warm functions begin loading.

    ``app`` is the Litestar app; ``app.state.functions`` is the function manager.
    May await. Return value is ignored.
    """


@hookspec
def drain(app: Any) -> Any:
    """The server is stopping: end long-lived requests (long polls, endless streams) so their
    connections close. Runs before the server waits for requests in flight and before
    ``shutdown``. May await.
    """


@hookspec
def shutdown(app: Any) -> Any:
    """Called when the gateway stops, before loaded functions are unloaded.

    May await. Return value is ignored.
    """


@hookspec
def on_usage(event: Any, app: Any) -> Any:
    """Called once for every request to a priced function, when it has finished and before the
    last byte of its response is sent (for a stream: after its final chunk; for a client that
    left early: when the gateway notices).

    ``event`` is a ``warmgate.core.usage.UsageEvent``: request id, function, units, quoted and
    billed wei (0 when the request failed), status, duration and, for LLM requests, the actual
    prompt and completion tokens, and ``hold``, the quote's hold it settles. Runs on the event
    loop: do not block; an awaitable it returns is awaited before the last byte. The pricing
    ledger returns none: it settles after the answer (``on_answer`` made that safe).
    """
