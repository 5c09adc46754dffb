"""From the ``tracing`` settings and the standard ``OTEL_*`` variables to a ``Tracer``, or None.

Nothing here imports OpenTelemetry until tracing is on: with no endpoint configured (the
default) a gateway never loads it. The settings win over the variables, which fill in what the
file leaves blank, as the OpenTelemetry SDK treats its code arguments and its environment.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import msgspec

from warmgate.core.http.errors import ConfigError
from warmgate.core.tracing.settings import TracingSettings, url_problem
from warmgate.core.version import __version__

if TYPE_CHECKING:
    from warmgate.core.tracing.tracer import Tracer

__all__ = ["TracerConfig", "build_tracer", "make_tracer", "tracer_config", "traces_url"]

EXTRA = "tracing needs the [otel] extra: pip install 'warmgate[otel]'"
_ENV = "environment (OTEL_*)"
_SAMPLERS = {"always_on": 1.0, "parentbased_always_on": 1.0, "always_off": 0.0, "parentbased_always_off": 0.0,
             "traceidratio": None, "parentbased_traceidratio": None}
"""The ``OTEL_TRACES_SAMPLER`` values warmgate follows (it always honours a caller's decision);
None: the ratio is ``OTEL_TRACES_SAMPLER_ARG``."""


def traces_url(endpoint: str) -> str:
    """A collector's base url (``http://collector:4318``) with OTLP/HTTP's ``/v1/traces``."""
    base = endpoint.rstrip("/")
    return base if base.endswith("/v1/traces") else base + "/v1/traces"


def _endpoint(settings: TracingSettings, env: Mapping[str, str], source: str) -> tuple[str, str, str] | None:
    """(url, where it came from, the field or variable) or None: tracing is off."""
    if settings.endpoint:
        return traces_url(settings.endpoint), source, "tracing.endpoint"
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"):
        return env["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"].strip(), _ENV, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    if env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return traces_url(env["OTEL_EXPORTER_OTLP_ENDPOINT"].strip()), _ENV, "OTEL_EXPORTER_OTLP_ENDPOINT"
    return None


def _sample_ratio(settings: TracingSettings, env: Mapping[str, str]) -> float:
    if settings.sample_ratio is not None:
        return settings.sample_ratio
    sampler = env.get("OTEL_TRACES_SAMPLER", "parentbased_always_on").strip().lower()
    if sampler not in _SAMPLERS:
        raise ConfigError(_ENV, "OTEL_TRACES_SAMPLER", f"expected one of {', '.join(_SAMPLERS)}, got {sampler!r}")
    fixed = _SAMPLERS[sampler]
    if fixed is not None:
        return fixed
    text = env.get("OTEL_TRACES_SAMPLER_ARG", "1.0").strip()
    try:
        ratio = float(text)
    except ValueError:
        ratio = -1.0
    if not 0.0 <= ratio <= 1.0:
        raise ConfigError(_ENV, "OTEL_TRACES_SAMPLER_ARG", f"expected a sample ratio between 0 and 1, got {text!r}")
    return ratio


def _seconds(settings: TracingSettings, env: Mapping[str, str]) -> float:
    for variable in ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT"):
        text = env.get(variable, "").strip()
        if text:
            try:
                value = float(text) / 1000  # milliseconds, as the specification has it
            except ValueError:
                value = 0.0
            if value <= 0:
                raise ConfigError(_ENV, variable, f"expected a positive number of milliseconds, got {text!r}")
            return value
    return settings.timeout


class TracerConfig(msgspec.Struct, frozen=True):
    """Tracing as resolved in the gateway from its settings and its ``OTEL_*`` variables: what a
    Ray replica gets, so that its spans go where the gateway's go whatever its own environment."""

    url: str
    sample_ratio: float
    headers: dict[str, str]
    timeout: float
    max_queue: int
    resource: dict[str, Any]


def tracer_config(settings: TracingSettings, source: str, env: Mapping[str, str] | None = None) -> TracerConfig | None:
    """The settings with the ``OTEL_*`` variables filled in, or None when tracing is off (no
    endpoint anywhere, or ``OTEL_SDK_DISABLED=true`` / ``OTEL_TRACES_EXPORTER=none``). A bad
    endpoint or ratio is a ``ConfigError`` naming the field or variable, raised before the
    gateway starts."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return None
    found = _endpoint(settings, env, source)
    if found is None:
        return None
    url, where, field = found
    problem = url_problem(url)
    if problem is not None:
        raise ConfigError(where, field, problem)
    ratio = _sample_ratio(settings, env)
    timeout = _seconds(settings, env)
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.util.re import parse_env_headers
    except ImportError as exc:
        raise ConfigError(where, field, f"{EXTRA} ({exc})") from None
    headers: dict[str, str] = {}
    for variable in ("OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
        headers.update(parse_env_headers(env.get(variable, ""), liberal=True))
    headers.update(settings.headers)
    # OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME, under the service name the settings give
    resource = dict(Resource.create({"service.name": settings.service_name} if settings.service_name else {}).attributes)
    if str(resource.get("service.name", "unknown_service")).startswith("unknown_service"):
        resource["service.name"] = "warmgate"
    resource.setdefault("service.version", __version__)
    return TracerConfig(url, ratio, headers, timeout, settings.max_queue, resource)


def build_tracer(config: TracerConfig) -> Tracer:
    """The tracer and its exporter (not started) for a resolved ``config``; a process of its own
    (a Ray replica) is a ``service.instance.id`` of its own."""
    from warmgate.core.tracing.export import OTLPExporter
    from warmgate.core.tracing.tracer import Tracer

    resource = dict(config.resource)
    if "service.instance.id" in resource:
        resource["service.instance.id"] = str(uuid.uuid4())
    exporter = OTLPExporter(config.url, config.headers, resource, timeout=config.timeout, max_queue=config.max_queue)
    return Tracer(exporter, config.sample_ratio)


def make_tracer(settings: TracingSettings, source: str, env: Mapping[str, str] | None = None) -> Tracer | None:
    """The gateway's tracer, or None when tracing is off (``tracer_config``)."""
    config = tracer_config(settings, source, env)
    return build_tracer(config) if config is not None else None
