"""Spans in OTLP's protobuf wire format (``ExportTraceServiceRequest``), as a collector reads it.

The resource and the instrumentation scope are encoded once with opentelemetry-proto's own
messages. Spans are written field by field here: building opentelemetry-proto messages cost
about 10 µs a span on the machine this was measured on (a no-op request's own work is about 45
µs), and these bytes about 3 µs. An attribute with the same key and value (a method,
a route, a function) is encoded once and reused. ``tests/core/test_tracing.py`` decodes what this
writes with opentelemetry-proto.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from typing import Any

from opentelemetry.proto.common.v1.common_pb2 import AnyValue, ArrayValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource

from warmgate.core.tracing.spans import Trace

__all__ = ["encode_request", "encode_trace", "resource_header"]

_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
_ERROR = b"\x18\x02"  # Status.code = STATUS_CODE_ERROR
_CACHED_ATTRIBUTES = 4096
_UNIQUE = frozenset({"gen_ai.response.time_to_first_chunk"})
"""Attributes whose values are never seen twice: not worth a place in the cache."""


def _varint(n: int) -> bytes:
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(number: int, data: bytes) -> bytes:
    """A length-delimited field (a string, bytes or an embedded message)."""
    return _varint(number << 3 | 2) + _varint(len(data)) + data


def _any_value(value: Any) -> bytes:
    if isinstance(value, str):
        return _field(1, value.encode())
    if isinstance(value, bool):
        return b"\x10" + _varint(int(value))
    if isinstance(value, int):
        return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # int64: two's complement
    if isinstance(value, float):
        return b"\x21" + _double(value)
    if isinstance(value, (list, tuple)):
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    return _field(1, str(value).encode())


_key_values: dict[tuple[str, type, Any], bytes] = {}
"""Encoded ``KeyValue`` messages by key, type and value (``True`` and ``1`` are equal keys of a
dict, not the same attribute)."""
_name_cache: dict[str, bytes] = {}
_KINDS = {kind: b"\x30" + _varint(kind) for kind in range(6)}
_TAGS = {number: _varint(number << 3 | 2) for number in (3, 9)}
"""A repeated ``KeyValue`` field's tag: 9 in a span, 3 in an event."""


def _name(name: str) -> bytes:
    """``Span.name`` (span names repeat: a route, a step), encoded once."""
    encoded = _name_cache.get(name)
    if encoded is None:
        encoded = _field(5, name.encode())
        if len(_name_cache) < _CACHED_ATTRIBUTES:
            _name_cache[name] = encoded
    return encoded


def _key_value(key: str, value: Any) -> bytes:
    return _field(1, key.encode()) + _field(2, _any_value(value))


def _each_attribute(number: int, attributes: Mapping[str, Any]) -> bytes:
    """Each attribute as a repeated ``KeyValue`` field ``number``; one seen before (a method, a
    route, a function) is looked up, not encoded again."""
    tag = _TAGS[number]
    cache = _key_values
    parts = []
    for key, value in attributes.items():
        kind = type(value)
        if kind is list or key in _UNIQUE:
            encoded = _key_value(key, value)
        else:
            encoded = cache.get((key, kind, value))
            if encoded is None:
                encoded = _key_value(key, value)
                if len(cache) < _CACHED_ATTRIBUTES:
                    cache[(key, kind, value)] = encoded
        size = len(encoded)
        parts.append(tag + (bytes((size,)) if size < 0x80 else _varint(size)) + encoded)
    return b"".join(parts)


_attribute_sets: dict[tuple[int, tuple[tuple[str, Any], ...]], bytes] = {}
"""Encoded attributes by their whole set: a step's spans repeat theirs exactly (a route's
method, path and status; an executor's function), so one lookup stands for the lot."""


def _attributes(number: int, attributes: Mapping[str, Any]) -> bytes:
    if not _UNIQUE.isdisjoint(attributes):  # a request id: the rest may still repeat
        unique = {key: value for key, value in attributes.items() if key in _UNIQUE}
        rest = {key: value for key, value in attributes.items() if key not in _UNIQUE}
        return _attributes(number, rest) + _each_attribute(number, unique)
    key = (number, tuple(attributes.items()))
    try:
        encoded = _attribute_sets.get(key)
    except TypeError:  # a list among the values
        return _each_attribute(number, attributes)
    if encoded is None:
        encoded = _each_attribute(number, attributes)
        if len(_attribute_sets) < _CACHED_ATTRIBUTES:
            _attribute_sets[key] = encoded
    return encoded


_REQUEST_ID = _field(1, b"warmgate.request_id")
_request_id_heads = [b"\x4a" + bytes((len(_REQUEST_ID) + 4 + size,)) + _REQUEST_ID + bytes((0x12, size + 2, 0x0A, size))
                     for size in range(0x80 - len(_REQUEST_ID) - 4)]
"""The bytes before a request id of each length whose lengths all fit a byte (a request id is
at most 128 characters; the gateway's own are 32): the id is then joined to them, not wrapped
in three fields."""


def _request_id(request_id: str) -> bytes:
    """The root span's ``warmgate.request_id`` attribute (a string never seen twice)."""
    encoded = request_id.encode()
    if len(encoded) < len(_request_id_heads):
        return _request_id_heads[len(encoded)] + encoded
    return _field(9, _REQUEST_ID + _field(2, _field(1, encoded)))


_shapes: dict[tuple[str, int], bytes] = {}
"""A span's encoded name and kind, by both."""


_ids = struct.Struct(">HQQHQHQ").pack  # trace_id, span_id and parent_span_id: tag and length bytes, then big-endian
_root_ids = struct.Struct(">HQQHQ").pack  # trace_id and span_id
_span_id = struct.Struct(">HQ").pack
_times = struct.Struct("<BQBQ").pack  # start_time_unix_nano and end_time_unix_nano (fixed64)
_TRACE_ID, _SPAN_ID, _PARENT_ID, _START, _END = 0x0A10, 0x1208, 0x2208, 0x39, 0x41
_LOW = 0xFFFFFFFFFFFFFFFF


def encode_trace(trace: Trace) -> bytes:
    """A finished trace's spans, each a ``ScopeSpans.spans`` entry: bytes, which the garbage
    collector never scans while they wait for export (a queue of span objects it does, and at
    thousands of requests a second that costs more than encoding them)."""
    high, low = trace.trace_id >> 64, trace.trace_id & _LOW
    state = _field(3, trace.tracestate.encode()) if trace.tracestate else b""
    out = []
    for span in trace.spans:
        if state:
            ids = _root_ids(_TRACE_ID, high, low, _SPAN_ID, span.span_id) + state
            if span.parent_id:
                ids += _span_id(_PARENT_ID, span.parent_id)
        elif span.parent_id:
            ids = _ids(_TRACE_ID, high, low, _SPAN_ID, span.span_id, _PARENT_ID, span.parent_id)
        else:
            ids = _root_ids(_TRACE_ID, high, low, _SPAN_ID, span.span_id)
        shape = _shapes.get((span.name, span.kind))
        if shape is None:
            shape = _name(span.name) + _KINDS[span.kind]
            if len(_shapes) < _CACHED_ATTRIBUTES:
                _shapes[(span.name, span.kind)] = shape
        body = ids + shape + _times(_START, span.start_ns, _END, span.end_ns)
        if span.attributes:
            body += _attributes(9, span.attributes)
        if span is trace.root and trace.request_id:
            body += _request_id(trace.request_id)
        if span.events or span.links or span.error is not None:
            body += _rare_fields(span)
        size = len(body)
        out.append((b"\x12" + bytes((size,)) if size < 0x80 else b"\x12" + _varint(size)) + body)
    return b"".join(out)


def _rare_fields(span: Any) -> bytes:
    """A span's events, links and error status."""
    parts = []
    for name, at, attributes in span.events or ():
        parts.append(_field(11, b"\x09" + _fixed64(at) + _field(2, name.encode())
                            + (_attributes(3, attributes) if attributes else b"")))
    for linked, span_id in span.links or ():
        parts.append(_field(13, b"\x0a\x10" + linked.to_bytes(16, "big") + _span_id(_SPAN_ID, span_id)))
    if span.error is not None:
        parts.append(_field(15, _field(2, span.error.encode()) + _ERROR))
    return b"".join(parts)


def resource_header(resource: Mapping[str, Any], scope_name: str, scope_version: str) -> tuple[bytes, bytes]:
    """The encoded ``ResourceSpans.resource`` and ``ScopeSpans.scope`` fields (made once)."""

    def value(item: Any) -> AnyValue:
        if isinstance(item, (list, tuple)):
            return AnyValue(array_value=ArrayValue(values=[value(v) for v in item]))
        if isinstance(item, bool):
            return AnyValue(bool_value=item)
        if isinstance(item, int):
            return AnyValue(int_value=item)
        if isinstance(item, float):
            return AnyValue(double_value=item)
        return AnyValue(string_value=str(item))

    encoded = Resource(attributes=[KeyValue(key=k, value=value(v)) for k, v in resource.items()]).SerializeToString()
    scope = InstrumentationScope(name=scope_name, version=scope_version).SerializeToString()
    return _field(1, encoded), _field(1, scope)


def encode_request(traces: Iterable[bytes], header: tuple[bytes, bytes]) -> bytes:
    """One ``ExportTraceServiceRequest`` of encoded ``traces`` (``encode_trace``) under the
    resource and scope ``header``."""
    resource, scope = header
    return _field(1, resource + _field(2, scope + b"".join(traces)))
