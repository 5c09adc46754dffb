"""The shape of ``serverless.yaml``: gateway settings, auth, functions, and the sections plugins
declare (``SettingsSection``)."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

import msgspec

__all__ = [
    "AuthSettings",
    "FunctionConfig",
    "GatewaySettings",
    "Price",
    "Resources",
    "Routing",
    "RunnerConfig",
    "Scaling",
    "Settings",
    "SettingsSection",
    "parse_bytes",
]

_UNITS = {"": 1, "b": 1, "k": 10**3, "kb": 10**3, "m": 10**6, "mb": 10**6, "g": 10**9, "gb": 10**9,
          "t": 10**12, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_bytes(value: int | float | str) -> int:
    """``8GiB``, ``512MB``, ``1_000`` or ``1000`` -> bytes."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("a size in bytes cannot be negative")
        return int(value)
    match = re.fullmatch(r"\s*([\d_.]+)\s*([a-zA-Z]*)\s*", str(value))
    if not match or match.group(2).lower() not in _UNITS:
        raise ValueError(f"expected a size such as 512MiB, 8GB or 1048576, got {value!r}")
    return int(float(match.group(1).replace("_", "")) * _UNITS[match.group(2).lower()])


def _parse_size_fields(struct: msgspec.Struct, *names: str) -> None:
    """Parse byte-size fields in ``__post_init__``, naming the field so errors point at it."""
    for name in names:
        value = getattr(struct, name)
        if value is not None:
            try:
                setattr(struct, name, parse_bytes(value))
            except ValueError as exc:
                raise ValueError(f"`{name}`: {exc}") from None


ByteSize = int | str
Seconds = Annotated[float, msgspec.Meta(ge=0)]
Positive = Annotated[int, msgspec.Meta(ge=1)]


class _Config(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Config sections refuse unknown fields, so a typo is an error with its location."""


class SettingsSection(_Config):
    """A plugin's own top-level section of ``serverless.yaml``, registered with the
    ``register_settings`` hook: the core decodes it (with the line and field of any error) but
    knows none of its fields. ``key`` is its name in the file."""

    key: ClassVar[str] = ""

    def with_env(self, env: Mapping[str, str]) -> Self:
        """This section with its ``WARMGATE_*`` overrides applied; none by default."""
        return self

    def check(self, settings: Settings) -> tuple[str, str] | None:
        """What is wrong with this section in the light of the whole settings, as (field,
        message) for a ``ConfigError`` when the file is read, or None."""
        return None

    def check_function(self, config: FunctionConfig) -> tuple[str, str] | None:
        """What this section refuses in one configured function, as (field within the
        function, message) for a ``ConfigError`` when the functions are planned, or None."""
        return None


SectionT = TypeVar("SectionT", bound=SettingsSection)


class Scaling(_Config):
    min_instances: Annotated[int, msgspec.Meta(ge=0)] = 0
    """0 scales to zero; 1 or more keeps the function loaded (same as ``warm: true``)."""
    max_instances: Positive = 1
    target_concurrency: Positive = 1
    idle_timeout: Seconds = 300.0
    """Seconds without a request before the model is unloaded; 0 never unloads."""
    scale_up_delay: Seconds = 0.0
    standby: bool = True
    """``executor: ray``: keep one worker process started, with the engine imported and no model,
    where the function's replicas start, so that a start from zero replicas skips the process
    start and the imports. It costs that process's memory."""


class Resources(_Config):
    gpu: Annotated[float, msgspec.Meta(ge=0)] = 0
    cpu: Annotated[float, msgspec.Meta(ge=0)] = 1
    memory: ByteSize | None = None
    """Expected memory of the loaded model, used by the memory budget before the first load."""
    accelerator: str | None = None

    def __post_init__(self) -> None:
        _parse_size_fields(self, "memory")


class Price(_Config):
    """A Livepeer price: ``price_per_unit / pixels_per_unit`` per unit, in ``currency``."""

    price_per_unit: int | float | str = 0
    pixels_per_unit: Positive = 1
    currency: str = "wei"
    """``wei``, ``eth``, or a fiat code such as ``USD`` (converted with ``pricing.eth_rates``)."""
    settle: Literal["quote", "usage"] = "quote"
    """``quote``: bill the quoted units (Livepeer: an LLM call costs its max_tokens). ``usage``: an
    LLM call costs the completion tokens it produced, at most the quote; the rest is released."""

    def __post_init__(self) -> None:
        if isinstance(self.price_per_unit, bool) or not re.fullmatch(r"\d+(\.\d*)?([eE][-+]?\d+)?",
                                                                      str(self.price_per_unit)):
            raise ValueError(f"`price_per_unit`: expected a non-negative number, got {self.price_per_unit!r}")
        if self.currency.lower() not in ("wei", "eth") and not re.fullmatch(r"[A-Za-z]{3}", self.currency):
            raise ValueError(f"`currency`: expected wei, eth or a fiat code such as USD, got {self.currency!r}")


class RunnerConfig(_Config):
    """One server a remote function's requests may go to: a warmgate, a Livepeer ai-runner, or
    (for an LLM) an OpenAI-compatible engine."""

    url: str = ""
    """Its base URL (``http://host:port``); blank with ``executor``."""
    executor: Literal["", "local", "ray"] = ""
    """``local`` (the model in this gateway's process) or ``ray`` (a Ray Serve deployment made by
    this gateway): one runner of the function beside the remote ones, loaded on first use."""
    token: str = ""
    """Bearer token the runner expects; blank: the function's ``token``."""
    weight: Positive = 1
    """Its share of the requests under ``routing.strategy: weighted``."""
    price: Price | None = None
    """What a request costs when this runner serves it; blank: the function's ``price``."""
    max_concurrency: Positive | None = None
    """Requests sent to it at once before ``warm-first`` looks at another runner; blank: the
    function's ``max_concurrency``."""


class Routing(_Config):
    """How a function with several runners picks one, and what happens when one fails."""

    strategy: Literal["warm-first", "least-busy", "weighted", "cheapest"] = "warm-first"
    """``warm-first``: a runner with the model warm and a free slot, least busy first; a cold one
    only when no warm one can take the request, one cold load at a time. ``least-busy``: fewest
    requests in flight. ``weighted``: at random by ``weight``. ``cheapest``: the lowest price
    under the caller's ``X-Max-Price-Per-Unit``, then the least busy."""
    retries: Annotated[int, msgspec.Meta(ge=0)] = 2
    """Other runners tried after a failure that reached no client (refused, reset, connect
    timeout, a 5xx answer)."""
    cooldown: Seconds = 30.0
    """Seconds a runner that keeps failing is skipped, then tried again."""
    cooldown_failures: Positive = 3
    """Failures in a row that put a runner in cooldown."""
    health_interval: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    """Seconds between polls of each runner's ``/health`` (and a warmgate's ``/functions``)."""


class FunctionConfig(_Config):
    pipeline: str
    model_id: str = ""
    """Blank takes the pipeline's default model."""
    name: str = ""
    """Defaults to ``pipeline:model_id``."""
    aliases: list[str] = []
    options: dict[str, Any] = {}
    """Passed to the pipeline's loader (dtype, device, backend, optimization flags, ...)."""
    warm: bool = False
    """Load at startup instead of on the first request."""
    scaling: Scaling = msgspec.field(default_factory=Scaling)
    resources: Resources = msgspec.field(default_factory=Resources)
    max_concurrency: Positive = 1
    """Requests served at once; more wait in the queue."""
    max_queue: Annotated[int, msgspec.Meta(ge=0)] = 32
    """Requests that may wait; beyond that 503 with Retry-After."""
    price: Price | None = None
    executor: str = "local"
    """Where the model runs: ``local``, ``remote``, ``ray``, or one a plugin registers (``register_executors``)."""
    url: str = ""
    """Remote runner to forward to (``executor: remote``): a list of one ``runners`` entry."""
    token: str = ""
    runners: list[RunnerConfig] | None = None
    """The servers that run the model (``executor: remote``); ``routing`` picks one per request."""
    routing: Routing = msgspec.field(default_factory=Routing)
    fallbacks: list[str] = []
    """Functions (names or aliases, same pipeline) that serve a request when every runner of
    this one failed or is in cooldown, tried in order."""
    demo: bool = False
    """Set by ``--profile demo``: the model is a tiny local build made on first use."""

    def __post_init__(self) -> None:
        if self.runners is None:
            return
        if not self.runners:
            raise ValueError("`runners`: list at least one runner ({url: http://host:port})")
        if self.url:
            raise ValueError("`url`: give the runner's url or a list of runners, not both")
        seen: set[str] = set()
        for i, runner in enumerate(self.runners):
            if bool(runner.url) == bool(runner.executor):
                raise ValueError(f"`runners[{i}]`: give a runner a url or an executor (local, ray), one of them")
            key = runner.url.rstrip("/") or runner.executor
            if key in seen:
                raise ValueError(f"`runners[{i}].{'url' if runner.url else 'executor'}`: {key} is listed twice")
            seen.add(key)

    @property
    def keep_warm(self) -> bool:
        return self.warm or self.scaling.min_instances > 0

    @property
    def runner_list(self) -> list[RunnerConfig]:
        """``runners``, or the single ``url`` as a list of one (empty without either)."""
        if self.runners:
            return self.runners
        return [RunnerConfig(url=self.url, token=self.token)] if self.url else []


class GatewaySettings(_Config):
    host: str = "127.0.0.1"
    port: Annotated[int, msgspec.Meta(ge=0, le=65535)] = 8000
    max_body_size: ByteSize = 50 * 2**20
    """Request bodies over this answer 413 (per pipeline override in its spec)."""
    memory_budget: ByteSize | None = None
    """Bytes of model memory; the least recently used idle function is unloaded to fit a load."""
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    """``auto``: JSON when stderr is not a terminal."""
    access_log: bool = True
    cache_dir: str = ""
    """Where demo models are built (and the usage ledger kept); blank: ``$WARMGATE_CACHE_DIR``,
    else ``~/.cache/warmgate``."""
    retry_after: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    """Seconds suggested in Retry-After when a queue is full."""
    workers: Annotated[int, msgspec.Meta(ge=1)] = 1
    """Gateway processes serving one port (``serve --workers``), for functions that hold no
    model in process (remote, ray, relays to an engine's server)."""

    def __post_init__(self) -> None:
        _parse_size_fields(self, "max_body_size", "memory_budget")

    @property
    def cache_path(self) -> Path:
        """``cache_dir``, or its default, with ``~`` expanded. The environment is read here, not
        only by ``load_settings``, so a ``Settings()`` built in code (a test) follows it too."""
        return Path(self.cache_dir or os.environ.get("WARMGATE_CACHE_DIR") or "~/.cache/warmgate").expanduser()


class AuthSettings(_Config):
    api_keys: list[str] = []
    """Bearer tokens accepted on generate routes (no budget; operators' keys); empty: none."""
    keys: bool = False
    """Require a key made with ``warmgate keys create`` (or one of ``api_keys``) on generate
    routes; keys carry balances and allowed functions, kept in the usage ledger's database."""


class Settings(_Config):
    gateway: GatewaySettings = msgspec.field(default_factory=GatewaySettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    functions: list[FunctionConfig] = []
    profile: str = ""
    """``demo`` serves every installed pipeline with tiny local models."""
    source: str = "<built-in defaults>"
    """Where the settings came from, for messages."""
    sections: list[SettingsSection] = []
    """The plugins' own sections (``pricing:``, ``live:``, ``ray:``...), each decoded with the
    struct its plugin registers (``register_settings``); read one with ``section``."""

    def section(self, kind: type[SectionT]) -> SectionT:
        """This plugin's section: the one configured, else its defaults."""
        for section in self.sections:
            if isinstance(section, kind):
                return section
        return kind()
