"""The OpenAPI document, written from the PipelineSpecs in the shape of the Livepeer specs, plus
the core routes and every route a plugin registers (``register_routes``).

A plugin route documents itself through its Litestar handler: ``summary``, ``description`` (or
the docstring), ``tags`` and ``operation_id`` as Litestar has them, and in ``opt``:

- ``"request"``: the msgspec type of the JSON body (default: the ``data`` parameter's type);
- ``"response"``: the msgspec type of the 200 JSON answer (default: the return annotation,
  when it is a msgspec type);
- ``"query"``: a msgspec Struct whose fields are the query parameters;
- ``"errors"``: the statuses the route can answer besides 200 and 500 (401 also marks it as
  needing ``Authorization: Bearer``);
- ``"media_type"``: the 200 answer's media type when it is not JSON.

Handlers with ``include_in_schema=False`` and ASGI mounts are left out.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import msgspec

from warmgate.core.functions.spec import File, PipelineSpec
from warmgate.core.http import wire
from warmgate.core.version import __version__

__all__ = ["build_openapi", "pipeline_statuses"]

_REF = "#/components/schemas/{name}"
_STATUS_TEXT = {400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
                404: "Not Found", 413: "Request Entity Too Large", 415: "Unsupported Media Type",
                422: "Validation Error", 429: "Too Many Requests", 500: "Internal Server Error",
                502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout"}
_JSON = "application/json"


class _CoreRoute(msgspec.Struct, frozen=True):
    path: str
    operation_id: str
    summary: str
    response: type | None
    media_type: str = _JSON


_CORE_ROUTES = (
    _CoreRoute("/health", "health", "Health", wire.HealthCheck),
    _CoreRoute("/functions", "functions", "Functions", wire.FunctionList),
    _CoreRoute("/hardware/info", "hardware_info", "Hardware Info", wire.HardwareInformation),
    _CoreRoute("/hardware/stats", "hardware_stats", "Hardware Stats", wire.HardwareStats),
    _CoreRoute("/version", "version", "Version", wire.Version),
    _CoreRoute("/metrics", "metrics", "Prometheus metrics", None, "text/plain"),
    _CoreRoute("/openapi.json", "openapi", "This document", None),
)


def pipeline_statuses(spec: PipelineSpec) -> list[int]:
    """Every status a pipeline route can answer besides 200: malformed input and bad headers
    (400; on a Livepeer route also an unknown model), auth (401, 403), price and balance (402),
    an unknown model on an OpenAI route (404), the body size (413), a body that is not a form
    or an upload that is not what it should be (415, multipart routes), validation (422), a
    key's rate limits (429), the model failing (500), a remote runner failing or too slow (502,
    504), capacity (503)."""
    statuses = [400, 401, 402, 403, 413, 422, 429, 500, 502, 503, 504]
    if spec.wire != "livepeer":
        statuses.append(404)
    if spec.encoding == "multipart":
        statuses.append(415)
    return sorted(statuses)


def build_openapi(specs: Iterable[PipelineSpec], routes: Sequence[Any] = ()) -> dict[str, Any]:
    """Paths for every pipeline, core route and documented plugin route, with msgspec-generated
    component schemas."""
    specs = sorted(specs, key=lambda s: s.name)
    plugin_ops = [op for handler in routes for op in _handler_operations(handler)]
    types: list[Any] = [wire.HTTPError, wire.HTTPValidationError]
    types += [r.response for r in _CORE_ROUTES if r.response is not None]
    for spec in specs:
        types += [spec.request, spec.response]
    for op in plugin_ops:
        types += [t for t in (op.request, op.response) if t is not None]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=_REF)
    for spec in specs:
        if spec.file_fields:
            _binary_file_fields(components[spec.request.__name__], spec.file_fields)
    components.pop(File.__name__, None)

    paths: dict[str, Any] = {}
    for spec in specs:
        for i, path in enumerate(spec.paths):
            paths.setdefault(path, {})["post"] = _pipeline_operation(spec, i)
    for route in _CORE_ROUTES:
        paths.setdefault(route.path, {})["get"] = {
            "summary": route.summary, "operationId": route.operation_id,
            "responses": {"200": _content("Successful Response", route.media_type, route.response)}}
    for op in plugin_ops:
        paths.setdefault(op.path, {})[op.method] = op.document()
    return {
        "openapi": "3.1.0",
        "info": {"title": "warmgate", "description": "An open, serverless AI gateway speaking the Livepeer AI API.",
                 "version": __version__},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}}},
    }


def _operation_id(spec: PipelineSpec) -> str:
    if spec.operation_id:
        return spec.operation_id
    return "gen" + "".join(part.capitalize() for part in spec.name.replace("_", "-").split("-"))


def _pipeline_operation(spec: PipelineSpec, path_index: int) -> dict[str, Any]:
    media = "multipart/form-data" if spec.encoding == "multipart" else _JSON
    operation_id = _operation_id(spec)
    operation: dict[str, Any] = {
        "tags": list(spec.tags),
        "summary": spec.summary or spec.name.replace("-", " ").title(),
        # operation ids are unique in a document: a second path of the same spec is numbered
        "operationId": operation_id if path_index == 0 else f"{operation_id}_{path_index + 1}",
        "requestBody": {"required": True, "content": {media: {"schema": {"$ref": _REF.format(name=spec.request.__name__)}}}},
        "responses": _responses(_content("Successful Response", _JSON, spec.response), pipeline_statuses(spec)),
        "security": [{"HTTPBearer": []}],
        "x-warmgate-price-unit": spec.price_unit.value,
    }
    if spec.description:
        operation["description"] = spec.description
    return operation


def _responses(ok: dict[str, Any], statuses: Iterable[int]) -> dict[str, Any]:
    responses = {"200": ok}
    for code in sorted(set(statuses)):
        schema = wire.HTTPValidationError if code == 422 else wire.HTTPError
        responses[str(code)] = _content(_STATUS_TEXT.get(code, "Error"), _JSON, schema)
    return responses


def _content(description: str, media_type: str, schema: type | None) -> dict[str, Any]:
    if media_type == _JSON and schema is None:
        return {"description": description, "content": {_JSON: {"schema": {"type": "object"}}}}
    if schema is None:
        return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}
    return {"description": description, "content": {media_type: {"schema": _schema_of(schema)}}}


def _schema_of(type_: Any) -> dict[str, Any]:
    """A reference for a Struct (its schema is in the components), an inline schema otherwise."""
    if isinstance(type_, type) and issubclass(type_, msgspec.Struct):
        return {"$ref": _REF.format(name=type_.__name__)}
    (schema,), _ = msgspec.json.schema_components([type_], ref_template=_REF)  # its Structs are components
    return schema


class _PluginOperation(msgspec.Struct, kw_only=True):
    path: str
    method: str
    operation_id: str
    summary: str
    description: str
    tags: list[str]
    request: Any
    response: Any
    media_type: str
    statuses: list[int]
    parameters: list[dict[str, Any]]

    def document(self) -> dict[str, Any]:
        operation: dict[str, Any] = {"summary": self.summary, "operationId": self.operation_id}
        if self.tags:
            operation["tags"] = self.tags
        if self.description:
            operation["description"] = self.description
        if self.parameters:
            operation["parameters"] = self.parameters
        if self.request is not None:
            operation["requestBody"] = {"required": True, "content": {_JSON: {"schema": _schema_of(self.request)}}}
        operation["responses"] = _responses(_content("Successful Response", self.media_type, self.response),
                                            self.statuses)
        if 401 in self.statuses:
            operation["security"] = [{"HTTPBearer": []}]
        return operation


def _handler_operations(handler: Any, full_path: str = "") -> Iterator[_PluginOperation]:
    """The operations of a Litestar HTTP handler (or of every handler of a ``Router``, at the
    full path of its route), documented by its ``opt`` (module docstring)."""
    from litestar import Router
    from litestar.handlers import HTTPRouteHandler

    if isinstance(handler, Router):
        for route in handler.routes:
            for inner in getattr(route, "route_handlers", ()):
                yield from _handler_operations(inner, route.path)
        return
    if not isinstance(handler, HTTPRouteHandler) or handler.include_in_schema is False:
        return
    opt = handler.opt
    hints = _type_hints(handler.fn)
    request = opt.get("request", _struct_or_none(hints.get("data")))
    response = opt.get("response", _struct_or_none(hints.get("return")))
    # a JSON body can be malformed (400), too large (413) or not fit its type (422)
    statuses = sorted({500, *opt.get("errors", ())} | ({400, 413, 422} if request is not None else set()))
    query = _query_parameters(opt.get("query"))
    description = handler.description if isinstance(handler.description, str) else inspect.getdoc(handler.fn) or ""
    summary = handler.summary if isinstance(handler.summary, str) else handler.fn.__name__.replace("_", " ").capitalize()
    base_id = handler.operation_id if isinstance(handler.operation_id, str) else _camel(handler.fn.__name__)
    paths = [full_path] if full_path else sorted((p for p in handler.paths if p == "/" or not p.endswith("/")),
                                                 key=lambda p: (len(p), p))
    methods = sorted(m.lower() for m in handler.http_methods if m not in ("HEAD", "OPTIONS"))
    for i, (path, method) in enumerate((p, m) for p in paths for m in methods):
        template, path_parameters = _path_template(path)
        yield _PluginOperation(
            path=template, method=method, operation_id=base_id if i == 0 else f"{base_id}_{i + 1}", summary=summary,
            description=description, tags=list(handler.tags or ()), request=request, response=response,
            media_type=opt.get("media_type", _JSON), statuses=statuses, parameters=path_parameters + query)


def _type_hints(fn: Any) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a name only imported for type checking: fall back to ``opt``
        return {}


def _struct_or_none(annotation: Any) -> type | None:
    if isinstance(annotation, type) and issubclass(annotation, msgspec.Struct):
        return annotation
    return None


def _camel(name: str) -> str:
    first, *rest = name.split("_")
    return first + "".join(part.capitalize() for part in rest)


_PATH_PARAM = re.compile(r"\{(\w+)(?::(\w+))?\}")
_PARAM_TYPES = {"int": "integer", "float": "number", "decimal": "number"}


def _path_template(path: str) -> tuple[str, list[dict[str, Any]]]:
    """Litestar's ``/a/{id:str}`` as OpenAPI's ``/a/{id}`` with its path parameters."""
    parameters = [{"name": name, "in": "path", "required": True,
                   "schema": {"type": _PARAM_TYPES.get(kind or "str", "string")}}
                  for name, kind in _PATH_PARAM.findall(path)]
    return _PATH_PARAM.sub(r"{\1}", path), parameters


def _query_parameters(query: type | None) -> list[dict[str, Any]]:
    if query is None:
        return []
    parameters = []
    for field in msgspec.structs.fields(query):
        schema = msgspec.json.schema(field.type)  # Annotated[..., Meta(description=...)] describes it
        parameter: dict[str, Any] = {"name": field.encode_name, "in": "query", "required": field.required,
                                     "schema": schema}
        if "description" in schema:
            parameter["description"] = schema["description"]
        parameters.append(parameter)
    return parameters


def _binary_file_fields(schema: dict[str, Any], names: Iterable[str]) -> None:
    for name in names:
        prop = schema["properties"][name]
        binary = {"type": "string", "format": "binary"}
        if "title" in prop:
            binary["title"] = prop["title"]
        if "description" in prop:
            binary["description"] = prop["description"]
        schema["properties"][name] = binary
