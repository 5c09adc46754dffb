"""Media in and out of pipelines: uploaded images decoded safely, results as data URLs, frames
as H.264 mp4. Pillow and PyAV are imported on first use, so the gateway starts without them."""

from __future__ import annotations

import base64
import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warmgate.core.errors import ClientError, PayloadTooLarge, UnsupportedMediaType
from warmgate.core.spec import File

if TYPE_CHECKING:
    from PIL.Image import Image

__all__ = [
    "DEFAULT_MAX_INPUT_PIXELS",
    "ImageInput",
    "data_url",
    "decode_image",
    "encode_mp4",
    "image_data_url",
    "prepare_image_input",
]

DEFAULT_MAX_INPUT_PIXELS = 4096 * 4096
"""Largest uploaded image (width x height) accepted unless a function configures another."""


def decode_image(upload: File, *, field: str = "image", max_pixels: int = DEFAULT_MAX_INPUT_PIXELS) -> Image:
    """An upload as an RGB Pillow image, upright per its EXIF orientation.

    The size is read from the header and checked against ``max_pixels`` before any pixel is
    decoded, so a decompression bomb costs nothing. Not an image → 415; truncated → 400; too
    many pixels → 413.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    if not upload.data:
        raise ClientError(f"{field}: the uploaded file is empty")
    with warnings.catch_warnings():
        # warmgate enforces its own pixel limit below; Pillow's bomb warning would only be noise
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(upload.data))
        except UnidentifiedImageError:
            raise UnsupportedMediaType(f"{field}: {_describe_upload(upload)} is not an image Pillow can decode "
                                       f"(PNG, JPEG, WebP, GIF, BMP, TIFF, ...)") from None
        except Image.DecompressionBombError as exc:
            raise PayloadTooLarge(f"{field}: {exc}") from None
        width, height = image.size
        if width * height > max_pixels:
            raise PayloadTooLarge(f"{field}: {width}x{height} is {width * height} pixels; "
                                  f"this function accepts at most {max_pixels}")
        try:
            image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise ClientError(f"{field}: the image is truncated or corrupt: {exc}") from None
    image = ImageOps.exif_transpose(image)
    return image if image.mode == "RGB" else image.convert("RGB")


@dataclass(frozen=True)
class ImageInput:
    """A validated request whose ``image`` upload is decoded (a spec's ``prepare`` result)."""

    params: Any
    image: Any
    """RGB ``PIL.Image``."""
    outputs: int = 1
    """Results per input pixel, for the price: images, or video frames."""


def prepare_image_input(params: Any, options: dict[str, Any]) -> ImageInput:
    """``PipelineSpec.prepare`` for requests with an ``image`` upload: decoded before a function
    is acquired, limited by the function's ``max_input_pixels`` option."""
    image = decode_image(params.image, max_pixels=int(options.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS)))
    return ImageInput(params, image, getattr(params, "num_images_per_prompt", 1))


def _describe_upload(upload: File) -> str:
    name = f"{upload.filename!r}" if upload.filename else "the upload"
    return f"{name} ({upload.content_type})" if upload.content_type else name


def data_url(data: bytes, media_type: str) -> str:
    return f"data:{media_type};base64,{base64.b64encode(data).decode('ascii')}"


def image_data_url(image: Image, *, fmt: str = "PNG") -> str:
    """``data:image/png;base64,...`` as the Livepeer runner returns images."""
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return data_url(buffer.getvalue(), f"image/{fmt.lower()}")


def encode_mp4(frames: Sequence[Image], fps: int, *, crf: int = 18) -> bytes:
    """Frames as an H.264 (yuv420p) mp4 at ``fps``, playable in browsers.

    yuv420p needs even dimensions, so an odd width or height loses its last pixel column/row.
    """
    import av

    if not frames:
        raise ValueError("no frames to encode")
    width, height = frames[0].size
    width, height = width - width % 2, height - height % 2
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": str(crf)}
        for frame in frames:
            picture = frame.convert("RGB")
            if picture.size != (width, height):
                picture = picture.crop((0, 0, width, height))
            for packet in stream.encode(av.VideoFrame.from_image(picture)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
