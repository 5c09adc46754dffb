"""Form descriptions written from PipelineSpecs, so the console draws a form for any pipeline,
a third party's included, without knowing it in advance."""

from __future__ import annotations

import types
import typing
from typing import Annotated, Any, Literal, Union

import msgspec
from msgspec import inspect

from warmgate.core.functions.spec import File, PipelineSpec

__all__ = ["FormField", "PipelineForm", "pipeline_form", "pipeline_forms"]


class FormField(msgspec.Struct, kw_only=True, omit_defaults=True):
    """One input of a form: what to draw and how to send what the user typed."""

    name: str
    """The field's name on the wire (JSON key or multipart field name)."""
    kind: str
    """``string``, ``integer``, ``number``, ``boolean``, ``choice``, ``file`` or ``json`` (anything
    structured, typed in as JSON text)."""
    required: bool
    default: Any = None
    """The default value, when the field has one that can be written as JSON."""
    nullable: bool = False
    """``None`` is allowed: a blank input leaves the field out."""
    description: str = ""
    choices: list[Any] | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: float | None = None
    exclusive_maximum: float | None = None
    multiple_of: float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None


class PipelineForm(msgspec.Struct, kw_only=True):
    pipeline: str
    path: str
    """Where the form posts: the pipeline's first path."""
    encoding: str
    """``json`` or ``multipart``."""
    summary: str
    description: str
    plugin: str
    price_unit: str
    model_field: str
    """The field naming the model, which the console offers the pipeline's functions for."""
    widget: str
    """``chat`` (a ``messages`` list of role/content: a streaming chat), ``points`` (an image and
    ``point_coords``/``point_labels``: click on the picture) or ``""`` (fields only)."""
    fields: list[FormField]


def pipeline_forms(specs: dict[str, PipelineSpec]) -> list[PipelineForm]:
    """A form per pipeline that has functions of its own (a spec that ``serves`` another is a
    second wire format for the same models, so it gets no form of its own)."""
    return [pipeline_form(spec) for spec in sorted(specs.values(), key=lambda s: s.name) if not spec.serves]


def pipeline_form(spec: PipelineSpec) -> PipelineForm:
    infos = inspect.type_info(spec.request).fields  # type: ignore[attr-defined]
    hints = typing.get_type_hints(spec.request, include_extras=True)
    fields = [_field(f, hints.get(f.name)) for f in infos]
    return PipelineForm(pipeline=spec.name, path=spec.paths[0], encoding=spec.encoding, summary=spec.summary
                        or spec.name.replace("-", " ").capitalize(), description=spec.description,
                        plugin=spec.plugin, price_unit=spec.price_unit.value, model_field=spec.model_field,
                        widget=_widget(infos, fields), fields=fields)


def _field(info: inspect.Field, annotation: Any) -> FormField:
    type_, schema = _unwrap(info.type)
    nullable = False
    if isinstance(type_, inspect.UnionType):
        others = [t for t in type_.types if not isinstance(t, inspect.NoneType)]
        nullable = len(others) < len(type_.types)
        if len(others) == 1:
            type_, inner = _unwrap(others[0])
            schema = {**inner, **schema}
    field = FormField(name=info.encode_name, kind="json", required=info.required, nullable=nullable,
                      description=str(schema.get("description", "")), default=_default(info))
    _describe(field, type_)
    if field.kind == "choice" and isinstance(type_, inspect.LiteralType):
        field.choices = _declared_order(annotation) or field.choices  # msgspec sorts a Literal's values
    return field


def _declared_order(annotation: Any) -> list[Any] | None:
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return list(typing.get_args(annotation))
    if origin in (Annotated, Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _declared_order(arg)
            if found:
                return found
    return None


def _unwrap(type_: inspect.Type) -> tuple[inspect.Type, dict[str, Any]]:
    """The type under ``Annotated`` layers, with their JSON-schema extras merged (outer wins)."""
    schema: dict[str, Any] = {}
    while isinstance(type_, inspect.Metadata):
        schema = {**(type_.extra_json_schema or {}), **schema}
        type_ = type_.type
    return type_, schema


def _describe(field: FormField, type_: inspect.Type) -> None:
    if isinstance(type_, inspect.StrType):
        field.kind, field.min_length, field.max_length, field.pattern = \
            "string", type_.min_length, type_.max_length, type_.pattern
    elif isinstance(type_, inspect.BoolType):
        field.kind = "boolean"
    elif isinstance(type_, inspect.IntType | inspect.FloatType):
        field.kind = "integer" if isinstance(type_, inspect.IntType) else "number"
        field.minimum, field.maximum = type_.ge, type_.le
        field.exclusive_minimum, field.exclusive_maximum = type_.gt, type_.lt
        field.multiple_of = type_.multiple_of
    elif isinstance(type_, inspect.LiteralType):
        field.kind, field.choices = "choice", list(type_.values)
    elif isinstance(type_, inspect.EnumType):
        field.kind, field.choices = "choice", [member.value for member in type_.cls]
    elif isinstance(type_, inspect.StructType) and type_.cls is File:
        field.kind = "file"


def _default(info: inspect.Field) -> Any:
    if info.default is not msgspec.NODEFAULT:
        value = info.default
    elif info.default_factory is not msgspec.NODEFAULT:
        value = info.default_factory()
    else:
        return None
    try:
        return msgspec.to_builtins(value)
    except TypeError:  # a default JSON cannot carry: the form starts blank and the server fills it in
        return None


def _widget(infos: tuple[inspect.Field, ...], fields: list[FormField]) -> str:
    if any(info.encode_name == "messages" and _is_message_list(info.type) for info in infos):
        return "chat"
    if {"point_coords", "point_labels"} <= {f.name for f in fields} and any(f.kind == "file" for f in fields):
        return "points"
    return ""


def _is_message_list(type_: inspect.Type) -> bool:
    type_, _ = _unwrap(type_)
    if not isinstance(type_, inspect.ListType):
        return False
    item, _ = _unwrap(type_.item_type)
    return isinstance(item, inspect.StructType) and {"role", "content"} <= {f.encode_name for f in item.fields}
