"""The ray executor: each function with ``executor: ray`` is a Ray Serve application whose
replicas run the same pipeline code as a local function, scaled by Ray from zero replicas.

The gateway stays the front door (auth, validation, prices, the ledger) and calls the
application's deployment handle; Ray starts a replica for the first request (the handle buffers
requests meanwhile), adds replicas under load, and stops the last one after ``idle_timeout``.
``ray`` is imported only here, and only when a ray function is used: without the ``[ray]`` extra
the rest of warmgate works and a ray function's load says which extra to install.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import os
import re
import threading
import time
import warnings
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from typing import Any

from warmgate.core.context import RequestContext, request_context
from warmgate.core.executors import ray_standby
from warmgate.core.executors.calling import as_chunks, call_runner, is_stream, load_runner
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.errors import InferenceError, LoadError, WarmgateError
from warmgate.core.settings import FunctionConfig
from warmgate.core.tracing import outgoing_headers
from warmgate.core.tracing.settings import TracingSettings
from warmgate.core.tracing.setup import TracerConfig, build_tracer, tracer_config

__all__ = ["FunctionReplica", "RayRunner", "app_name", "build_app", "deploy", "deployment_options", "function_specs",
           "ray_functions", "serve_config", "shutdown", "standby_modules"]

EXTRA = "the ray executor needs Ray Serve: pip install 'warmgate[ray]'"
STANDBY_WAIT_S = 30.0
"""At most this long a deployment waits for its first standby worker's imports."""
STANDBY_REPLACE_S = 2.0
"""A replica that has not loaded its model this long after it started replaces its standby anyway."""
METRICS_INTERVAL_S = 0.5
"""How often replicas and handles report load to the autoscaler; Ray's 10 s default would keep
an idle function's last replica alive for 10 s past its ``idle_timeout``. Ray 2.60 reads the
``metrics_interval_s`` field (deprecated, its warning silenced) and will read the environment
variables set here instead, which a local cluster's processes inherit."""


def _ray() -> tuple[Any, Any]:
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a local cluster on 127.0.0.1
    for variable in ("RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S",
                     "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S"):
        os.environ.setdefault(variable, str(METRICS_INTERVAL_S))
    try:
        import ray
        from ray import serve
    except ImportError as exc:
        raise LoadError(f"{EXTRA} ({exc})") from None
    return ray, serve


def app_name(config: FunctionConfig) -> str:
    """The Serve application of a function (Serve names: letters, digits, ``_.-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", config.name).strip("-") or "function"


def standby_modules(specs: Mapping[str, PipelineSpec], config: FunctionConfig) -> tuple[str, ...]:
    """What a replica of ``config`` imports before its model: this module, the pipelines'
    loaders and the engine they name (``PipelineSpec.engine_modules``)."""
    modules = [__name__]
    for spec in specs.values():
        target = getattr(spec.load, "target", None) or getattr(spec.load, "__module__", None)
        if target:
            modules.append(target.partition(":")[0])
        if spec.name == config.pipeline:
            modules.extend(spec.engine_modules)
    return tuple(dict.fromkeys(modules))


def deployment_options(config: FunctionConfig, specs: Mapping[str, PipelineSpec]) -> dict[str, Any]:
    """Autoscaling from ``scaling`` (``min_instances`` replicas when idle, 0 by default, one
    started for the first request without delay), actor resources from ``resources``,
    ``max_concurrency`` per replica. ``warm: true`` deploys at startup; it keeps no replica.
    With ``scaling.standby`` the replicas' runtime environment imports their engine when a worker
    starts, which is what lets a standby worker (``ray_standby``) be started ahead of them."""
    scaling, resources = config.scaling, config.resources
    idle = scaling.idle_timeout
    floor = scaling.min_instances if idle else max(1, scaling.min_instances)  # idle_timeout 0: never to zero
    autoscaling = {
        "min_replicas": floor,
        "initial_replicas": floor,
        "max_replicas": max(floor, scaling.max_instances),
        "target_ongoing_requests": scaling.target_concurrency,
        "upscale_delay_s": scaling.scale_up_delay,
        "downscale_delay_s": idle or 600.0,
        "downscale_to_zero_delay_s": idle or 600.0,
        "metrics_interval_s": METRICS_INTERVAL_S,
        "look_back_period_s": max(1.0, 2 * METRICS_INTERVAL_S),
    }
    actor: dict[str, Any] = {"num_cpus": resources.cpu}
    if resources.gpu:
        actor["num_gpus"] = resources.gpu
    if resources.memory:
        actor["memory"] = int(resources.memory)
    if resources.accelerator:
        actor["accelerator_type"] = resources.accelerator
    if scaling.standby:
        actor["runtime_env"] = ray_standby.runtime_env(standby_modules(specs, config))
    return {"name": "FunctionReplica", "max_ongoing_requests": config.max_concurrency,
            "autoscaling_config": autoscaling, "ray_actor_options": actor}


def serve_config(functions: list[FunctionConfig], config_path: str,
                 pipelines: Mapping[str, PipelineSpec]) -> dict[str, Any]:
    """A Serve config (``serve deploy`` reads it) for every ray function: ``build_app`` makes
    each application from the warmgate config."""
    return {"applications": [
        {"name": app_name(fn), "route_prefix": None, "import_path": "warmgate.core.executors.ray_serve:build_app",
         "args": {"config": config_path, "function": fn.name},
         "deployments": [deployment_options(fn, function_specs(pipelines, fn))]}
        for fn in ray_functions(functions)]}


def ray_functions(configs: Iterable[FunctionConfig]) -> list[FunctionConfig]:
    """The functions that run on Ray (``warmgate deploy ray`` deploys them)."""
    return [fn for fn in configs if fn.executor == "ray"]


def function_specs(pipelines: Mapping[str, PipelineSpec], config: FunctionConfig) -> dict[str, PipelineSpec]:
    """The pipelines a function's replicas serve: its own and those that serve it (OpenAI chat)."""
    return {name: spec for name, spec in pipelines.items() if config.pipeline in (name, spec.serves)}


class FunctionReplica:
    """One replica of a function: loads the model on its first request, with the pipeline's own
    loader, and runs requests as a local function does (``invoke`` for the pipelines that serve
    this function's runner, such as OpenAI chat on an LLM)."""

    def __init__(self, specs: Mapping[str, PipelineSpec], config: FunctionConfig,
                 tracing: TracerConfig | None = None) -> None:
        self._specs = dict(specs)
        self._config = config
        self._tracer = build_tracer(tracing) if tracing is not None else None
        """With the gateway's tracing (its settings and ``OTEL_*`` variables, resolved there: a
        replica's own environment may have neither), a traced request's replica span joins its trace."""
        if self._tracer is not None:
            self._tracer.start()
        self._runner: Any = None
        self._lock = asyncio.Lock()
        self._standby_env = _own_runtime_env() if os.environ.get(ray_standby.MODULES_VARIABLE) else None
        self._standby_lock = threading.Lock()  # the timer's thread and the event loop
        self._standby_replaced = False
        if self._standby_env is not None:  # this replica took the standby, if there was one
            ray_standby.forget_ready()
            timer = threading.Timer(STANDBY_REPLACE_S, self._replace_standby)
            timer.daemon = True  # a replica that gets no request (a burst served by another) still replaces it
            timer.start()

    def _replace_standby(self) -> None:
        """Start the next standby, once: after this replica's model load (its first answer
        comes first) or ``STANDBY_REPLACE_S`` after it started, whichever is sooner."""
        with self._standby_lock:
            if self._standby_env is None or self._standby_replaced:
                return
            self._standby_replaced = True
        ray_standby.prestart_later(self._standby_env)

    async def _ensure(self) -> Any:
        async with self._lock:
            if self._runner is None:
                load = self._specs[self._config.pipeline].load
                assert load is not None
                self._runner = await load_runner(load, self._config.model_id, dict(self._config.options))
                self._replace_standby()
        return self._runner

    async def _result(self, spec_name: str, request: Any) -> Any:
        return await call_runner(await self._ensure(), request, self._specs[spec_name].invoke)

    def _begin(self, trace: Mapping[str, str] | None) -> tuple[RequestContext, contextvars.Token[Any]]:
        """The request's context in the replica: its runner reports on it and, when the gateway's
        trace came along (``traceparent``), its spans continue that trace here."""
        context = RequestContext("")
        if trace:
            if self._tracer is not None:
                context.trace = self._tracer.continued(f"replica {self._config.name}", trace)
            if context.trace is None:  # not sampled (or not traced here): passed on as it came
                context.trace_headers = dict(trace)
        return context, request_context.set(context)

    @staticmethod
    def _end(context: RequestContext, token: contextvars.Token[Any]) -> None:
        with contextlib.suppress(ValueError):  # a stream closed from another context
            request_context.reset(token)
        if context.trace is not None:
            context.trace.finish()

    async def __call__(self, spec_name: str, request: Any, trace: Mapping[str, str] | None = None) -> Any:
        context, token = self._begin(trace)
        try:
            result = await self._result(spec_name, request)
        except Exception as exc:
            if context.trace is not None:
                context.trace.reason = context.trace.root.error = str(exc) or type(exc).__name__
            raise
        finally:
            self._end(context, token)
        if is_stream(result):
            raise InferenceError("the pipeline streamed an answer to a request that did not ask for a stream")
        return result

    async def stream(self, spec_name: str, request: Any, trace: Mapping[str, str] | None = None) -> AsyncIterator[Any]:
        context, token = self._begin(trace)
        try:
            async for chunk in as_chunks(await self._result(spec_name, request)):
                yield chunk
        finally:
            self._end(context, token)

    def __del__(self) -> None:
        """Serve calls this when it stops the replica: the last spans go out."""
        if getattr(self, "_tracer", None) is not None:
            self._tracer.shutdown()


class RayRunner:
    """The gateway's side of a ray function: its deployment handle."""

    memory_bytes = 0

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    async def call(self, spec_name: str, request: Any) -> Any:
        if getattr(request, "stream", False):
            return self.stream(spec_name, request)
        try:
            return await self.handle.remote(spec_name, request, outgoing_headers())
        except Exception as exc:
            raise _unwrap(exc) from exc

    async def stream(self, spec_name: str, request: Any) -> AsyncIterator[Any]:
        try:
            trace = outgoing_headers()  # the replica continues the request's trace
            async for chunk in self.handle.options(stream=True, method_name="stream").remote(spec_name, request, trace):
                yield chunk
        except Exception as exc:
            raise _unwrap(exc) from exc

    def close(self) -> None:
        """Nothing to free here: Ray stops idle replicas itself."""


def _own_runtime_env() -> str | None:
    """This replica's runtime environment as Ray serialized it: a standby started with the same
    string is one the raylet hands to the next replica."""
    import ray

    return ray.get_runtime_context().get_runtime_env_string() or None


def _unwrap(exc: Exception) -> WarmgateError:
    """The replica's own error (a 400 stays a 400), or a 500 saying what failed."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, WarmgateError):
        return cause
    if isinstance(exc, WarmgateError):
        return exc
    detail = cause if cause is not None else exc
    return InferenceError(f"the ray replica failed: {type(detail).__name__}: {detail}")


# -- the cluster ----------------------------------------------------------------------------

_lock = threading.Lock()
_started_here = False


def _connect(settings: RaySettings, on_cluster: Callable[[], None] | None = None) -> Any:
    """Join ``settings.address`` (or ``RAY_ADDRESS``), else start a local cluster on 127.0.0.1;
    call ``on_cluster`` (Serve's start takes seconds that a standby worker can use); then start
    Serve, without its HTTP proxy (the gateway is the front door)."""
    global _started_here
    ray, serve = _ray()
    with _lock:
        if not ray.is_initialized():
            address = settings.address or os.environ.get("RAY_ADDRESS") or None
            options: dict[str, Any] = {"namespace": settings.namespace, "log_to_driver": False,
                                       "include_dashboard": False}
            if address is None:
                options.update(_node_ip_address="127.0.0.1", num_cpus=settings.num_cpus)
            ray.init(address=address, **options)
            _started_here = address is None
        if on_cluster is not None:
            on_cluster()
        serve.start(proxy_location="Disabled")
    return serve


def deploy(specs: Mapping[str, PipelineSpec], config: FunctionConfig, settings: RaySettings,
           tracing: TracerConfig | None = None) -> RayRunner:
    """Create or update the function's application (blocking: call it from a thread) and
    return its handle. With 0 replicas this takes about a second, plus the first standby
    worker's imports (``scaling.standby``); no model is loaded yet."""
    options = deployment_options(config, specs)
    actor = options["ray_actor_options"]
    standby_asked: list[float] = []

    def first_standby() -> None:
        asked = time.time()
        if _standby_for_first_start(actor):
            standby_asked.append(asked)

    serve = _connect(settings, first_standby if "runtime_env" in actor else None)
    name = app_name(config)
    with _quiet_config_checks():
        deployment = serve.deployment(FunctionReplica, **options)
        serve.run(deployment.bind(dict(specs), config, tracing), name=name, route_prefix=None)
    if standby_asked:  # a first request at zero replicas is then served as fast as the next ones
        modules = actor["runtime_env"]["env_vars"][ray_standby.MODULES_VARIABLE]
        ray_standby.wait_ready(modules, standby_asked[0], STANDBY_WAIT_S)
    return RayRunner(serve.get_app_handle(name))


def _standby_for_first_start(actor: dict[str, Any]) -> bool:
    """A standby on this node for the function's first replica, when this node can run one (a GPU
    function's replicas may start elsewhere; each replica starts the next standby on its own node)."""
    import ray
    from ray.runtime_env import RuntimeEnv

    node_id = ray.get_runtime_context().get_node_id()
    available = next((n["Resources"] for n in ray.nodes() if n["NodeID"] == node_id), {})
    needs = {"CPU": actor.get("num_cpus", 0), "GPU": actor.get("num_gpus", 0)}
    if actor.get("accelerator_type"):
        needs[f"accelerator_type:{actor['accelerator_type']}"] = 0.001
    if not all(available.get(resource, 0) >= amount for resource, amount in needs.items()):
        return False
    return ray_standby.prestart(RuntimeEnv(**actor["runtime_env"]).serialize(), node_id)


@contextlib.contextmanager
def _quiet_config_checks() -> Iterator[None]:
    """``metrics_interval_s`` is deprecated in favour of environment variables that Ray 2.60 does
    not read yet; the field is what lets an idle function reach zero replicas in seconds."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*metrics_interval_s.*", category=DeprecationWarning)
        yield


def shutdown() -> None:
    """Stop Serve and the local cluster if this process started it; leave a joined one be."""
    global _started_here
    ray, serve = _ray()
    with _lock:
        if ray.is_initialized() and _started_here:
            serve.shutdown()
            ray.shutdown()
            _started_here = False


def build_app(args: dict[str, str]) -> Any:
    """The Serve application builder named by ``serve_config``: the function ``args["function"]``
    of the warmgate config ``args["config"]``."""
    from warmgate.core.config import load_settings, plan_functions
    from warmgate.core.plugins import get_pipelines

    _, serve = _ray()
    settings = load_settings(args["config"])
    pipelines = get_pipelines()
    config = next((fn for fn in plan_functions(settings, pipelines) if fn.name == args["function"]), None)
    if config is None:
        raise LookupError(f"{args['config']} has no function {args['function']!r}")
    specs = function_specs(pipelines, config)
    with _quiet_config_checks():
        return serve.deployment(FunctionReplica, **deployment_options(config, specs)).bind(
            specs, config, tracer_config(settings.section(TracingSettings), settings.source))
