"""The OpenAPI document, written from the PipelineSpecs in the shape of the Livepeer specs."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from warmgate.core import wire
from warmgate.core.spec import File, PipelineSpec
from warmgate.core.version import __version__

__all__ = ["build_openapi"]

_REF = "#/components/schemas/{name}"
_ERRORS = {"400": "Bad Request", "401": "Unauthorized", "413": "Request Entity Too Large",
           "500": "Internal Server Error", "503": "Service Unavailable"}
_CORE_ROUTES: tuple[tuple[str, str, str, type], ...] = (
    ("/health", "health", "Health", wire.HealthCheck),
    ("/functions", "functions", "Functions", wire.FunctionList),
    ("/hardware/info", "hardware_info", "Hardware Info", wire.HardwareInformation),
    ("/hardware/stats", "hardware_stats", "Hardware Stats", wire.HardwareStats),
    ("/version", "version", "Version", wire.Version),
)


def _operation_id(spec: PipelineSpec) -> str:
    if spec.operation_id:
        return spec.operation_id
    return "gen" + "".join(part.capitalize() for part in spec.name.replace("_", "-").split("-"))


def build_openapi(specs: Iterable[PipelineSpec]) -> dict[str, Any]:
    """Paths for every pipeline and core route, with msgspec-generated component schemas."""
    specs = sorted(specs, key=lambda s: s.name)
    types: list[Any] = [wire.HTTPError, wire.HTTPValidationError]
    types += [t for *_, t in _CORE_ROUTES]
    for spec in specs:
        types += [spec.request, spec.response]
    _, components = msgspec.json.schema_components(list(dict.fromkeys(types)), ref_template=_REF)
    for spec in specs:
        if spec.file_fields:
            _binary_file_fields(components[spec.request.__name__], spec.file_fields)
    components.pop(File.__name__, None)

    paths: dict[str, Any] = {}
    for spec in specs:
        operation = _pipeline_operation(spec)
        for path in spec.paths:
            paths[path] = {"post": operation}
    for path, op_id, summary, type_ in _CORE_ROUTES:
        paths[path] = {"get": {"summary": summary, "operationId": op_id,
                               "responses": {"200": _json_response("Successful Response", type_.__name__)}}}
    return {
        "openapi": "3.1.0",
        "info": {"title": "warmgate", "description": "An open, serverless AI gateway speaking the Livepeer AI API.",
                 "version": __version__},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {"schemas": components,
                       "securitySchemes": {"HTTPBearer": {"type": "http", "scheme": "bearer"}}},
    }


def _pipeline_operation(spec: PipelineSpec) -> dict[str, Any]:
    media = "multipart/form-data" if spec.encoding == "multipart" else "application/json"
    responses = {"200": _json_response("Successful Response", spec.response.__name__)}
    for code, text in _ERRORS.items():
        responses[code] = _json_response(text, "HTTPError")
    responses["422"] = _json_response("Validation Error", "HTTPValidationError")
    operation: dict[str, Any] = {
        "tags": list(spec.tags),
        "summary": spec.summary or spec.name.replace("-", " ").title(),
        "operationId": _operation_id(spec),
        "requestBody": {"required": True, "content": {media: {"schema": {"$ref": _REF.format(name=spec.request.__name__)}}}},
        "responses": dict(sorted(responses.items())),
        "security": [{"HTTPBearer": []}],
        "x-warmgate-price-unit": spec.price_unit.value,
    }
    if spec.description:
        operation["description"] = spec.description
    return operation


def _json_response(description: str, schema: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(name=schema)}}}}


def _binary_file_fields(schema: dict[str, Any], names: Iterable[str]) -> None:
    for name in names:
        prop = schema["properties"][name]
        binary = {"type": "string", "format": "binary"}
        if "title" in prop:
            binary["title"] = prop["title"]
        if "description" in prop:
            binary["description"] = prop["description"]
        schema["properties"][name] = binary
