"""Request bodies -> validated request structs: malformed is 400, wrong shape is 422."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import msgspec
from litestar import Request
from litestar.datastructures import UploadFile
from litestar.exceptions import ClientException

from warmgate.core.errors import ClientError, PayloadTooLarge, RequestValidationError, UnsupportedMediaType
from warmgate.core.spec import File, PipelineSpec

__all__ = ["json_body", "json_decoder", "multipart_decoder"]


def json_decoder(spec: PipelineSpec) -> Callable[[bytes], Any]:
    """``decode(body)`` for a JSON pipeline (synchronous: the body is read by the caller)."""
    if spec.decode is not None:
        return spec.decode
    decoder = msgspec.json.Decoder(spec.request)
    return lambda body: _decode(decoder, body)


def json_body(body: bytes, type_: type) -> Any:
    """A JSON body as ``type_`` for routes that are not pipelines, with the same errors."""
    return _decode(msgspec.json.Decoder(type_), body)


def _decode(decoder: msgspec.json.Decoder[Any], body: bytes) -> Any:
    if not body:
        raise ClientError("request body is empty; expected a JSON object")
    try:
        return decoder.decode(body)
    except msgspec.ValidationError as exc:
        raise RequestValidationError.from_msgspec(exc) from None
    except msgspec.DecodeError as exc:
        raise ClientError(f"malformed JSON body: {exc}") from None


def multipart_decoder(spec: PipelineSpec) -> Callable[[Request[Any, Any, Any]], Awaitable[Any]]:
    """``await decode(request)`` for a multipart pipeline: reads the form, files into memory."""
    fields = spec.request_fields
    file_fields = set(spec.file_fields)
    field_names = tuple(f.encode_name for f in fields)
    list_fields = {f.name for f in fields if msgspec.inspect.type_info(f.type).__class__ is msgspec.inspect.ListType}

    async def decode(request: Request[Any, Any, Any]) -> Any:
        media_type, _ = request.content_type
        if media_type not in ("multipart/form-data", "application/x-www-form-urlencoded"):
            raise UnsupportedMediaType(f"expected multipart/form-data, got {media_type or 'no Content-Type'}")
        try:
            form = await request.form()
        except ClientException as exc:
            if exc.status_code == 413:  # Litestar checks the size while it reads the form
                raise PayloadTooLarge("Request body is larger than this route accepts") from None
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
        try:
            return msgspec.convert(data, spec.request, strict=False)
        except msgspec.ValidationError as exc:
            raise RequestValidationError.from_msgspec(exc) from None

    return decode


def _text(name: str, value: Any) -> Any:
    if isinstance(value, UploadFile):
        raise RequestValidationError.single(["body", name], "Expected a text field, got a file", "type_error")
    return value
