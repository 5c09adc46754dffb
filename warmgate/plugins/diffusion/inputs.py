"""Uploaded images, decoded before a function is acquired (the specs' ``prepare``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from warmgate.core.media import DEFAULT_MAX_INPUT_PIXELS, decode_image

__all__ = ["PRICED_FRAMES", "ImageRequest", "decode_input_image", "decode_video_input"]

PRICED_FRAMES = 25
"""Frames a video is priced at unless the function sets ``num_frames`` (go-livepeer's 25)."""


@dataclass(frozen=True)
class ImageRequest:
    """A validated request whose upload is already decoded (by the spec's ``prepare``)."""

    params: Any
    image: Any
    """RGB ``PIL.Image``."""
    frames: int = 1
    """Outputs per input pixel, for the price: images, or video frames."""


def decode_input_image(params: Any, options: dict[str, Any]) -> ImageRequest:
    image = decode_image(params.image, max_pixels=int(options.get("max_input_pixels", DEFAULT_MAX_INPUT_PIXELS)))
    return ImageRequest(params, image, getattr(params, "num_images_per_prompt", 1))


def decode_video_input(params: Any, options: dict[str, Any]) -> ImageRequest:
    request = decode_input_image(params, options)
    return ImageRequest(params, request.image, int(options.get("num_frames", PRICED_FRAMES)))
