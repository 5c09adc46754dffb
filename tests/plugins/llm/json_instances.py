"""What an engine constrained by a JSON schema answers, for the fakes (Ollama's ``format``, an
OpenAI-compatible engine's ``response_format``): plain Python, so the engine scripts run alone."""

from __future__ import annotations

from typing import Any

__all__ = ["instance_of"]


def instance_of(schema: dict[str, Any], text: str) -> Any:
    """A value valid for the (simple) JSON ``schema``, its strings ``text``."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {name: instance_of(properties.get(name) or {}, text) for name in schema.get("required") or properties}
    if kind == "array":
        return [instance_of(schema.get("items") or {}, text) for _ in range(schema.get("minItems", 1))]
    return {"string": text, "integer": len(text.split()), "number": 0.5, "boolean": True, "null": None}[kind]
