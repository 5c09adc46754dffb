"""Read ``serverless.yaml`` (or a Livepeer ``aiModels.json``) into ``Settings``.

Every problem is a ``ConfigError`` that names the file, the place in it (with the line for
YAML) and what was expected, raised before anything starts.
"""

from __future__ import annotations

import graphlib
import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import msgspec
import yaml

from warmgate.core.executors import check_config as check_executor
from warmgate.core.executors import get_executors
from warmgate.core.executors.ray_settings import RaySettings
from warmgate.core.functions.spec import PipelineSpec
from warmgate.core.http.errors import ConfigError
from warmgate.core.plugins import load_plugins, pm
from warmgate.core.registry import Registry, collect
from warmgate.core.settings import FunctionConfig, GatewaySettings, Settings, SettingsSection
from warmgate.core.tracing.settings import TracingSettings

__all__ = ["DEFAULT_CONFIG_FILE", "check_sections", "get_settings_sections", "load_settings", "plan_functions",
           "translate_ai_models"]

DEFAULT_CONFIG_FILE = "serverless.yaml"

_AI_MODEL_KEYS = {"pipeline", "model_id", "warm", "url", "token", "capacity", "price_per_unit",
                  "pixels_per_unit", "currency", "optimization_flags"}


def load_settings(
    path: str | os.PathLike[str] | None = None,
    *,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Settings from ``path``, ``$WARMGATE_CONFIG``, ``./serverless.yaml`` or built-in defaults,
    then ``WARMGATE_*`` overrides."""
    env = os.environ if env is None else env
    path = path or env.get("WARMGATE_CONFIG") or (DEFAULT_CONFIG_FILE if Path(DEFAULT_CONFIG_FILE).is_file() else None)
    settings = _read_file(Path(path)) if path else Settings()
    settings = _apply_env(settings, env)
    profile = profile if profile is not None else env.get("WARMGATE_PROFILE", settings.profile)
    if profile not in ("", "demo"):
        raise ConfigError(settings.source, "profile", f"expected 'demo' or nothing, got {profile!r}")
    settings = msgspec.structs.replace(settings, profile=profile)
    check_sections(settings)
    return settings


def get_settings_sections() -> dict[str, type[SettingsSection]]:
    """Every section a plugin may add to ``serverless.yaml``, by key: the core's (the ray executor's, tracing), then
    those plugins register (``register_settings``); a key registered twice is an error."""
    load_plugins()
    registry: Registry[type[SettingsSection]] = Registry("settings section")
    registry.add("warmgate", RaySettings.key, RaySettings)
    registry.add("warmgate", TracingSettings.key, TracingSettings)

    def register(plugin: str, kind: Any) -> None:
        if not (isinstance(kind, type) and issubclass(kind, SettingsSection) and kind.key):
            raise TypeError(f"plugin {plugin!r} registered {kind!r} as a settings section; expected a "
                            "warmgate.SettingsSection subclass with a key")
        registry.add(plugin, kind.key, kind)

    collect(pm.hook.register_settings, register)
    return registry.items


def check_sections(settings: Settings) -> None:
    """Each section's own ``check`` against the whole settings (a registered section the
    settings lack is checked at its defaults), as a ``ConfigError``."""
    for section in _sections(settings):
        problem = section.check(settings)
        if problem is not None:
            raise ConfigError(settings.source, *problem)


def _sections(settings: Settings) -> list[SettingsSection]:
    kinds = list(get_settings_sections().values())
    kinds += [type(section) for section in settings.sections if type(section) not in kinds]
    return [settings.section(kind) for kind in kinds]


def _read_file(path: Path) -> Settings:
    source = str(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError(source, "", f"cannot read the file ({exc.strerror or exc})") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigError(source, "", f"not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {exc}") from None
    if isinstance(data, list):
        data = {"functions": translate_ai_models(data, source)}
    elif data is None:
        data = {}
    elif not isinstance(data, dict):
        raise ConfigError(source, "$", "expected a mapping (serverless.yaml) or a list (aiModels.json), "
                                       f"got {type(data).__name__}")
    yaml_text = text if path.suffix != ".json" else None
    kinds = get_settings_sections()
    raw_sections = {key: data.pop(key) for key in list(data) if key in kinds}
    if "sections" in data:
        raise ConfigError(source, _where(yaml_text, "$.sections", "sections"), "unknown field")
    try:
        settings = msgspec.convert(data, Settings)
    except msgspec.ValidationError as exc:
        raise _located(exc, source, yaml_text) from None
    sections = []
    for key, raw in raw_sections.items():
        try:
            sections.append(msgspec.convert({} if raw is None else raw, kinds[key]))
        except msgspec.ValidationError as exc:
            raise _located(exc, source, yaml_text, under=key) from None
    _check_unique_names(settings, source)
    _check_fallbacks(settings, source, yaml_text)
    return msgspec.structs.replace(settings, source=source, sections=sections)


def translate_ai_models(entries: list[Any], source: str = "aiModels.json") -> list[dict[str, Any]]:
    """Livepeer ``aiModels.json`` entries -> ``functions`` entries of serverless.yaml."""
    out = []
    for i, entry in enumerate(entries):
        where = f"[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, where, f"expected an object with pipeline and model_id, got {type(entry).__name__}")
        unknown = set(entry) - _AI_MODEL_KEYS
        if unknown:
            raise ConfigError(source, f"{where}.{sorted(unknown)[0]}",
                              f"unknown aiModels.json field; expected one of {sorted(_AI_MODEL_KEYS)}")
        for key in ("pipeline", "model_id"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(source, f"{where}.{key}", "expected a non-empty string")
        fn: dict[str, Any] = {"pipeline": entry["pipeline"], "model_id": entry["model_id"],
                              "warm": entry.get("warm", False)}
        if "capacity" in entry:
            fn["max_concurrency"] = entry["capacity"]
        if entry.get("url"):
            fn.update(executor="remote", url=entry["url"], token=entry.get("token", ""))
        if "price_per_unit" in entry:
            fn["price"] = {k: entry[k] for k in ("price_per_unit", "pixels_per_unit", "currency") if k in entry}
        if entry.get("optimization_flags"):
            fn["options"] = dict(entry["optimization_flags"])
        out.append(fn)
    return _group_runners(out, source)


def _group_runners(functions: list[dict[str, Any]], source: str) -> list[dict[str, Any]]:
    """aiModels.json entries that share a pipeline and model (several runner containers) become
    one function whose runners are their urls, each with its own capacity and price; the
    function admits their capacities together."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, fn in enumerate(functions):
        groups.setdefault((fn["pipeline"], fn["model_id"]), []).append(i)
    out = []
    for indexes in groups.values():
        entries = [functions[i] for i in indexes]
        if len(entries) == 1:
            out.append(entries[0])
            continue
        local = next((i for i, fn in zip(indexes, entries, strict=True) if "url" not in fn), None)
        if local is not None:
            raise ConfigError(source, f"[{local}].url", f"entries {indexes} share pipeline and model_id, so they are "
                              "runners of one function: each needs the url of its runner")
        runners = []
        for fn in entries:
            runner: dict[str, Any] = {"url": fn["url"], "token": fn["token"],
                                      "max_concurrency": fn.get("max_concurrency", 1)}
            if "price" in fn:
                runner["price"] = fn["price"]
            runners.append(runner)
        first = entries[0]
        merged = {key: first[key] for key in ("pipeline", "model_id", "executor") if key in first}
        merged.update(warm=any(fn["warm"] for fn in entries), runners=runners,
                      max_concurrency=sum(r["max_concurrency"] for r in runners))
        if "options" in first:
            merged["options"] = first["options"]
        out.append(merged)
    return out


def _located(exc: msgspec.ValidationError, source: str, yaml_text: str | None, under: str = "") -> ConfigError:
    """The error at its place: ``under`` is the section the struct was decoded from."""
    message, _, path = str(exc).partition(" - at `")
    path = path.rstrip("`") or "$"
    if under:
        path = f"$.{under}{path[1:]}"
    missing = re.match(r"Object missing required field `(.+)`", message)
    if missing:
        path, message = f"{path}.{missing.group(1)}", "required field is missing"
    elif unknown := re.match(r"Object contains unknown field `(.+)`", message):
        path, message = f"{path}.{unknown.group(1)}", "unknown field"
    elif field := re.match(r"`([^`]+)`: (.*)", message):
        path, message = f"{path}.{field.group(1)}", field.group(2)
    return ConfigError(source, _where(yaml_text, path, path.removeprefix("$.").removeprefix("$") or "top level"),
                       message)


def _where(yaml_text: str | None, path: str, location: str) -> str:
    line = _yaml_line(yaml_text, path) if yaml_text else None
    return f"line {line}, {location}" if line else location


def _yaml_line(text: str, path: str) -> int | None:
    """The 1-based line of the node at ``$.a[0].b`` in a YAML document, or of its parent."""
    try:
        node = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = node.start_mark.line + 1 if node else None
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.removeprefix("$")):
        if isinstance(node, yaml.MappingNode) and name:
            found = next((v for k, v in node.value if k.value == name), None)
            if found is None:
                key = next((k for k, _ in node.value if k.value == name), None)
                return key.start_mark.line + 1 if key else line
            node = found
        elif isinstance(node, yaml.SequenceNode) and index and int(index) < len(node.value):
            node = node.value[int(index)]
        else:
            break
        line = node.start_mark.line + 1
    return line


def _check_unique_names(settings: Settings, source: str) -> None:
    seen: dict[str, int] = {}
    for i, fn in enumerate(settings.functions):
        name = fn.name or f"{fn.pipeline}:{fn.model_id}"
        if name in seen:
            raise ConfigError(source, f"functions[{i}]",
                              f"function {name!r} is defined twice (also functions[{seen[name]}]); give one a distinct name")
        seen[name] = i


def _check_fallbacks(settings: Settings, source: str, yaml_text: str | None) -> None:
    """Each fallback names a function (by name or alias) of the same pipeline, and following
    fallbacks never comes back to where it started."""
    names: dict[tuple[str, str], int] = {}
    for i, fn in enumerate(settings.functions):
        for key in (fn.name or f"{fn.pipeline}:{fn.model_id}", fn.model_id, *fn.aliases):
            names.setdefault((fn.pipeline, key), i)
    targets: dict[int, list[int]] = {}
    for i, fn in enumerate(settings.functions):
        for j, name in enumerate(fn.fallbacks):
            path = f"$.functions[{i}].fallbacks[{j}]"
            target = names.get((fn.pipeline, name))
            if target is None:
                defined = sorted({key for (pipeline, key) in names if pipeline == fn.pipeline})
                raise ConfigError(source, _where(yaml_text, path, path[2:]),
                                  f"fallback {name!r} names no {fn.pipeline} function; defined: {', '.join(defined)}")
            targets.setdefault(i, []).append(target)
    try:
        graphlib.TopologicalSorter(targets).prepare()
    except graphlib.CycleError as exc:
        ring = exc.args[1][:0:-1]  # the sorter lists predecessors; reversed, the path follows the fallbacks
        first = ring.index(min(ring))  # told from the first function on it
        cycle = [*ring[first:], *ring[:first], ring[first]]
        path = f"$.functions[{cycle[0]}].fallbacks"
        shown = " -> ".join(settings.functions[i].name or f"functions[{i}]" for i in cycle)
        raise ConfigError(source, _where(yaml_text, path, path[2:]), f"fallbacks go round in a cycle: {shown}") from None


def _apply_env(settings: Settings, env: Mapping[str, str]) -> Settings:
    """``WARMGATE_<FIELD>`` overrides a gateway setting; ``WARMGATE_API_KEYS`` is a comma list;
    ``WARMGATE_KEYS=1`` requires keys made with ``warmgate keys``; each section applies its own
    (``WARMGATE_DATABASE_URL`` is ``pricing.database``)."""
    overrides: dict[str, Any] = {}
    for field in msgspec.structs.fields(GatewaySettings):
        value = env.get(f"WARMGATE_{field.name.upper()}")
        if value is not None:
            overrides[field.name] = value
    gateway = settings.gateway
    if overrides:
        merged = {**msgspec.to_builtins(settings.gateway), **overrides}
        try:
            gateway = msgspec.convert(merged, GatewaySettings, strict=False)
        except msgspec.ValidationError as exc:
            raise _located(exc, "environment (WARMGATE_*)", None) from None
    auth = settings.auth
    if "WARMGATE_API_KEYS" in env:
        keys = [k.strip() for k in env["WARMGATE_API_KEYS"].split(",") if k.strip()]
        auth = msgspec.structs.replace(auth, api_keys=keys)
    if "WARMGATE_KEYS" in env:
        auth = msgspec.structs.replace(auth, keys=env["WARMGATE_KEYS"].strip().lower() in ("1", "true", "yes", "on"))
    return msgspec.structs.replace(settings, gateway=gateway, auth=auth, sections=_all_sections(settings, env))


def _all_sections(settings: Settings, env: Mapping[str, str]) -> list[SettingsSection]:
    """Every registered section (its defaults when the file has none), with its environment
    overrides, plus any section built in code that no plugin registers."""
    present = {type(section).key: section for section in settings.sections}
    kinds = get_settings_sections()
    sections = [(present.pop(key, None) or kind()).with_env(env) for key, kind in kinds.items()]
    return sections + [section.with_env(env) for section in present.values()]


def _with_runner_capacities(fn: FunctionConfig) -> FunctionConfig:
    """A function with ``runners`` admits what they take together: each runner's
    ``max_concurrency`` (blank: the function's), summed."""
    if not fn.runners:
        return fn
    runners = [msgspec.structs.replace(r, max_concurrency=r.max_concurrency or fn.max_concurrency) for r in fn.runners]
    return msgspec.structs.replace(fn, runners=runners, max_concurrency=sum(r.max_concurrency or 0 for r in runners))


def plan_functions(settings: Settings, pipelines: Mapping[str, PipelineSpec]) -> list[FunctionConfig]:
    """The functions to serve: the configured ones (checked against installed pipelines) and a
    cold default-model function for any pipeline left bare; or, with the demo profile, a tiny
    local model for every pipeline that has one, in place of the configured functions (so the
    demo runs anywhere, whatever ``serverless.yaml`` describes). Several workers (``serve
    --workers``) serve only the configured functions: a default one would load its model in each."""
    executors = get_executors()
    sections = _sections(settings)
    planned: list[FunctionConfig] = []
    for i, fn in enumerate(settings.functions if settings.profile != "demo" else ()):
        spec = pipelines.get(fn.pipeline)
        if spec is None or spec.serves:
            hosts = sorted(name for name, s in pipelines.items() if not s.serves)
            hint = f" (it serves the functions of {spec.serves!r})" if spec is not None else ""
            raise ConfigError(settings.source, f"functions[{i}].pipeline",
                              f"unknown pipeline {fn.pipeline!r}{hint}; installed: {', '.join(hosts) or 'none'}")
        problems = [check_executor(fn, executors), *(section.check_function(fn) for section in sections)]
        problem = next((p for p in problems if p is not None), None)
        if problem is not None:
            raise ConfigError(settings.source, f"functions[{i}].{problem[0]}", problem[1])
        model_id = fn.model_id or spec.default_model_id
        fn = _with_runner_capacities(fn)
        planned.append(msgspec.structs.replace(fn, model_id=model_id, name=fn.name or f"{fn.pipeline}:{model_id}"))
    served = {fn.pipeline for fn in planned}
    for spec in pipelines.values():
        if spec.name in served or spec.serves or settings.gateway.workers > 1:
            continue
        if settings.profile == "demo":
            planned += [FunctionConfig(pipeline=spec.name, model_id=demo.model_id, demo=True,
                                       name=f"{spec.name}:{demo.model_id}", max_concurrency=4, price=demo.price)
                        for demo in spec.demos]
        elif spec.default_model_id:
            planned.append(FunctionConfig(pipeline=spec.name, model_id=spec.default_model_id,
                                          name=f"{spec.name}:{spec.default_model_id}"))
    return planned
