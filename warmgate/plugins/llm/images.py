"""Images in chat messages: each ``image_url`` part decoded before the engine runs, so a bad
image is a 4xx naming its part, never an engine failure. ``data:`` URLs are read in place;
http(s) URLs are fetched only when the function allows it (``fetch_image_urls``), with a size
cap and a timeout, and then reach the engine as ``data:`` URLs (an engine never fetches)."""

from __future__ import annotations

import asyncio
import base64
import binascii
from dataclasses import dataclass
from typing import Any

from warmgate.core.functions.spec import File
from warmgate.core.http.errors import ClientError, PayloadTooLarge, UnsupportedMediaType
from warmgate.core.media import DEFAULT_MAX_INPUT_PIXELS, data_url, decode_image
from warmgate.plugins.llm.backend import GenerationParams

__all__ = ["IMAGE_OPTIONS", "ImageLimits", "resolve_images"]

DEFAULT_MAX_IMAGE_BYTES = 20 * 1024 * 1024
DEFAULT_FETCH_TIMEOUT = 10.0

IMAGE_OPTIONS = ("fetch_image_urls", "max_image_bytes", "max_input_pixels", "image_fetch_timeout")
"""The function options read here; the gateway's, never passed to an engine."""


@dataclass(frozen=True)
class ImageLimits:
    """What a function accepts in ``image_url`` parts (its options of the same names)."""

    fetch_urls: bool = False
    max_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_pixels: int = DEFAULT_MAX_INPUT_PIXELS
    fetch_timeout: float = DEFAULT_FETCH_TIMEOUT

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> ImageLimits:
        return cls(fetch_urls=bool(options.get("fetch_image_urls", False)),
                   max_bytes=int(options.get("max_image_bytes", DEFAULT_MAX_IMAGE_BYTES)),
                   max_pixels=int(options.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS)),
                   fetch_timeout=float(options.get("image_fetch_timeout", DEFAULT_FETCH_TIMEOUT)))


async def resolve_images(params: GenerationParams, limits: ImageLimits) -> None:
    """Decode every image part of ``params`` in place: ``params.images`` gets the RGB Pillow
    images in the order of their parts, and each part's URL becomes a ``data:`` URL.
    Undecodable → 400, over the byte or pixel cap → 413, both naming the part."""
    images = []
    for i, message in enumerate(params.messages):
        content = message.get("content")
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if part.get("type") != "image_url":
                continue
            field = f"`messages[{i}].content[{j}]`"
            url = (part.get("image_url") or {}).get("url") or ""
            if url.startswith("data:"):
                data, media_type = _data_url_bytes(url, field, limits.max_bytes)
            elif url.startswith(("http://", "https://")):
                data, media_type = await _fetch(url, field, limits)
            else:
                raise ClientError(f"{field}: an image URL is a `data:` URL or an http(s) URL, not {url[:40]!r}")
            try:  # in a thread: a large image takes a while to decode
                image = await asyncio.to_thread(decode_image, File("", media_type, data), field=field,
                                                max_pixels=limits.max_pixels)
            except UnsupportedMediaType as exc:  # a part of a JSON body: a bad request, not a bad upload type
                raise ClientError(exc.msg) from None
            images.append(image)
            if not url.startswith("data:"):
                part["image_url"] = {**part["image_url"], "url": data_url(data, media_type or "image/png")}
    params.images = images


def _data_url_bytes(url: str, field: str, max_bytes: int) -> tuple[bytes, str]:
    header, comma, payload = url[5:].partition(",")
    if not comma or not header.endswith(";base64"):
        raise ClientError(f"{field}: an image data URL is `data:<media type>;base64,<data>`")
    if len(payload) * 3 // 4 > max_bytes + 2:  # checked before decoding
        raise _too_large(field, max_bytes)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ClientError(f"{field}: the data URL's base64 data is malformed") from None
    return data, header.removesuffix(";base64")


async def _fetch(url: str, field: str, limits: ImageLimits) -> tuple[bytes, str]:
    if not limits.fetch_urls:
        raise ClientError(f"{field}: this function does not fetch image URLs; send the image as a "
                          f"`data:image/...;base64,` URL, or set the function option `fetch_image_urls: true`")
    import httpx

    chunks, size = [], 0
    try:  # the timeout bounds the whole fetch, not each read: a server that drips bytes is cut off too
        async with asyncio.timeout(limits.fetch_timeout), httpx.AsyncClient(follow_redirects=True) as client, \
                client.stream("GET", url) as response:
            if response.status_code != 200:
                raise ClientError(f"{field}: fetching the image answered HTTP {response.status_code}")
            stated = response.headers.get("content-length")
            if stated and stated.isdigit() and int(stated) > limits.max_bytes:
                raise _too_large(field, limits.max_bytes)
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limits.max_bytes:
                    raise _too_large(field, limits.max_bytes)
                chunks.append(chunk)
            media_type = response.headers.get("content-type", "").partition(";")[0].strip()
    except (TimeoutError, httpx.TimeoutException):
        raise ClientError(f"{field}: fetching the image took over {limits.fetch_timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise ClientError(f"{field}: the image could not be fetched: {type(exc).__name__}: {exc}") from None
    return b"".join(chunks), media_type


def _too_large(field: str, max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"{field}: the image is over {max_bytes} bytes, the most this function accepts "
                           f"(its `max_image_bytes` option)")
