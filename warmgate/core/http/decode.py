"""Request bodies -> validated request structs: malformed is 400, wrong shape is 422."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException

from warmgate.core.functions.spec import File, PipelineSpec
from warmgate.core.http.errors import ClientError, PayloadTooLarge, RequestValidationError, UnsupportedMediaType

__all__ = ["MAX_FORM_PARTS", "MAX_FORM_TEXT_CHARS", "json_body", "json_decoder", "json_field", "multipart_decoder"]

MAX_FORM_PARTS = 100
"""Parts a multipart body may have (Litestar's parser stops at this count; the app passes it)."""
MAX_FORM_TEXT_CHARS = 2_000_000
"""Largest text field of a multipart body (files are bounded by the body size only)."""

TOO_DEEP = "{where} is nested too deeply (arrays and objects within each other)"


def json_decoder(spec: PipelineSpec) -> Callable[[bytes], Any]:
    """``decode(body)`` for a JSON pipeline (synchronous: the body is read by the caller)."""
    if spec.decode is not None:
        return spec.decode
    decoder = msgspec.json.Decoder(spec.request)
    return lambda body: _decode(decoder, body)


def json_body(body: bytes, type_: type) -> Any:
    """A JSON body as ``type_`` for routes that are not pipelines, with the same errors."""
    return _decode(_decoder_for(type_), body)


@functools.lru_cache(maxsize=128)
def _decoder_for(type_: Any) -> msgspec.json.Decoder[Any]:
    """One decoder per type: building one costs more than decoding a small body."""
    return msgspec.json.Decoder(type_)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    if not body:
        raise ClientError("request body is empty; expected a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestValidationError.from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise ClientError(f"malformed JSON body: {exc}") from None
    except RecursionError:  # msgspec stops at the interpreter's recursion limit (about 1000 levels)
        raise ClientError(TOO_DEEP.format(where="the JSON body")) from None


def json_field(field: str, text: str, expected: str) -> Any:
    """A JSON value carried in a text field (a form field, a JSON string), with the same errors
    as a body: malformed or nested too deeply → 400 naming the field and what was ``expected``."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        raise ClientError(f"{field}: not valid JSON ({exc}); expected {expected}") from None
    except RecursionError:
        raise ClientError(TOO_DEEP.format(where=field)) from None


def multipart_decoder(spec: PipelineSpec) -> Callable[[Request[Any, Any, Any]], Awaitable[Any]]:
    """``await decode(request)`` for a multipart pipeline: reads the form, files into memory."""
    fields = spec.request_fields
    file_fields = set(spec.file_fields)
    field_names = tuple(f.encode_name for f in fields)
    list_fields = {f.name for f in fields if msgspec.inspect.type_info(f.type).__class__ is msgspec.inspect.ListType}

    async def decode(request: Request[Any, Any, Any]) -> Any:
        media_type, _ = request.content_type
        if not media_type:  # no form, as the runner spec (and its FastAPI runner) reads it: 422, field required
            return _convert({}, spec.request)
        if media_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise UnsupportedMediaType(f"expected multipart/form-data, got {media_type}")
        try:
            form = await request.form()
        except ClientException as exc:
            if exc.status_code == 413:  # Litestar checks the size while it reads the form
                raise PayloadTooLarge("Request body is larger than this route accepts") from None
            if exc.detail == "Request Entity Too Large":  # the part limit, which Litestar 2 answers as 400
                raise PayloadTooLarge(f"multipart body has more than {MAX_FORM_PARTS} parts") from None
            raise ClientError(f"malformed multipart body: {exc.detail}") from None
        data: dict[str, Any] = {}
        for name in field_names:  # fields the request does not declare are ignored, as in JSON
            values = form.getall(name) if name in form else []
            if not values:
                continue
            if name in file_fields:
                upload = values[0]
                if not isinstance(upload, UploadFile):
                    raise RequestValidationError.single(["body", name], "Expected an uploaded file", "type_error")
                data[name] = File(filename=upload.filename or "", content_type=upload.content_type or "",
                                  data=await upload.read())
            elif name in list_fields:
                data[name] = [_text(name, v) for v in values]
            else:
                data[name] = _text(name, values[0])
        return _convert(data, spec.request)

    return decode


def _convert(data: dict[str, Any], type_: type) -> Any:
    try:
        return msgspec.convert(data, type_, strict=False)
    except msgspec.ValidationError as exc:
        raise RequestValidationError.from_msgspec(exc) from None


def _text(name: str, value: Any) -> Any:
    if isinstance(value, UploadFile):
        raise RequestValidationError.single(["body", name], "Expected a text field, got a file", "type_error")
    if len(value) > MAX_FORM_TEXT_CHARS:
        raise PayloadTooLarge(f"{name}: a text field of at most {MAX_FORM_TEXT_CHARS} characters, got {len(value)}")
    return value
