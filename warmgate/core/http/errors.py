"""Errors warmgate raises, each carrying the HTTP status it answers with.

The tree::

    WarmgateError (500)
    ├── ClientError (400)                  the caller sent something wrong
    │   ├── Unauthorized (401)             missing or bad bearer token
    │   ├── PaymentRequired (402)          over budget or over the caller's max price
    │   ├── NotFound (404)                 unknown route or model
    │   ├── PayloadTooLarge (413)
    │   ├── RateLimited (429)              over the key's rpm, tpm or max_parallel; carries Retry-After
    │   ├── UnsupportedMediaType (415)
    │   └── RequestValidationError (422)   body does not match the schema; carries the field
    │       └── ContextExceeded (422)      prompt + max_tokens over the model's context (fallbacks serve it)
    │   └── ClientDisconnected (499)       the caller left while its request waited
    ├── CapacityError (503)                queue full or no memory; carries Retry-After
    ├── LoadError (503)                    a function could not load its model
    └── InferenceError (500)               the model failed on a valid request

    ConfigError                            bad serverless.yaml / aiModels.json, raised before start

Every HTTP error renders as ``{"detail": {"msg": ...}}`` except 422, which renders as the
``HTTPValidationError`` shape ``{"detail": [{"loc": [...], "msg": ..., "type": ...}]}``.
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = [
    "Forbidden",
    "CapacityError",
    "ClientDisconnected",
    "ClientError",
    "ConfigError",
    "ContextExceeded",
    "InferenceError",
    "LoadError",
    "NotFound",
    "PayloadTooLarge",
    "PaymentRequired",
    "RateLimited",
    "RequestValidationError",
    "Unauthorized",
    "UnsupportedMediaType",
    "WarmgateError",
]


class WarmgateError(Exception):
    """Base of every error that becomes an HTTP response."""

    status_code: int = 500

    def __init__(self, msg: str, *, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg)
        self.msg = msg
        self.headers = headers or {}

    def to_body(self) -> dict[str, Any]:
        return {"detail": {"msg": self.msg}}


class ClientError(WarmgateError):
    status_code = 400


class Unauthorized(ClientError):
    status_code = 401

    def __init__(self, msg: str = "Invalid bearer token") -> None:
        super().__init__(msg, headers={"WWW-Authenticate": "Bearer"})


class PaymentRequired(ClientError):
    status_code = 402


class Forbidden(ClientError):
    status_code = 403


class NotFound(ClientError):
    status_code = 404


class PayloadTooLarge(ClientError):
    status_code = 413


class UnsupportedMediaType(ClientError):
    status_code = 415


class RateLimited(ClientError):
    """Over one of the key's rate limits: 429 with ``Retry-After`` (whole seconds until the
    request could pass) and OpenAI's ``x-ratelimit-*`` headers."""

    status_code = 429

    def __init__(self, msg: str, retry_after: float, headers: dict[str, str] | None = None) -> None:
        super().__init__(msg, headers={**(headers or {}), "Retry-After": str(max(1, math.ceil(retry_after)))})


class ClientDisconnected(ClientError):
    """The client closed the connection while its request was queued; nobody reads the answer."""

    status_code = 499


class RequestValidationError(ClientError):
    """A request body that parsed but does not fit the schema."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors))
        self.errors = errors

    @classmethod
    def single(cls, loc: list[str | int], msg: str, type_: str = "value_error") -> RequestValidationError:
        return cls([{"loc": loc, "msg": msg, "type": type_}])

    @classmethod
    def from_msgspec(cls, exc: Exception, prefix: str = "body") -> RequestValidationError:
        """Turn msgspec's ``"Expected `int`, got `str` - at `$.seed`"`` into loc/msg/type."""
        text = str(exc)
        loc: list[str | int] = [prefix]
        msg, _, path = text.partition(" - at `")
        if path:
            loc += _parse_path(path.rstrip("`"))
        missing = re.match(r"Object missing required field `(.+)`", msg)
        if missing:
            loc.append(missing.group(1))
            return cls.single(loc, "Field required", "missing")
        kind = "type_error" if re.match(r"Expected `[^`]+`, got `", msg) else "value_error"
        return cls.single(loc, msg, kind)

    def to_body(self) -> dict[str, Any]:
        return {"detail": self.errors}


CONTEXT_EXCEEDED_HEADER = "X-Warmgate-Context-Exceeded"
"""Sent with a ``ContextExceeded`` answer, so a gateway in front (``executor: remote``) knows the
prompt overflowed and can fall back as well."""


class ContextExceeded(RequestValidationError):
    """The prompt and ``max_tokens`` overflow the model's context: a 422 naming the field, or,
    when the function has ``fallbacks``, the next one serves (a model with a longer context)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)
        self.headers = {**self.headers, CONTEXT_EXCEEDED_HEADER: "true"}


def _parse_path(path: str) -> list[str | int]:
    """``$.a[0].b`` -> ``["a", 0, "b"]``."""
    parts: list[str | int] = []
    for name, index in re.findall(r"\.([^.\[]+)|\[(\d+)\]", path.removeprefix("$")):
        parts.append(int(index) if index else name)
    return parts


class CapacityError(WarmgateError):
    status_code = 503

    def __init__(self, msg: str, retry_after: float = 1.0) -> None:
        super().__init__(msg, headers={"Retry-After": str(max(1, round(retry_after)))})


class LoadError(WarmgateError):
    status_code = 503


class InferenceError(WarmgateError):
    status_code = 500


class ConfigError(Exception):
    """Invalid configuration: names the file, where in it, and what was expected."""

    def __init__(self, source: str, location: str, expected: str) -> None:
        self.source, self.location, self.expected = source, location, expected
        where = f"{source}: {location}" if location else source
        super().__init__(f"{where}: {expected}")
