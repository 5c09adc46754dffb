"""Image-to-video requests: the upload decoded before a function is acquired, and the frame
count the price is quoted for."""

from __future__ import annotations

from typing import Any

from warmgate.core.media import ImageInput, prepare_image_input

__all__ = ["PRICED_FRAMES", "decode_video_input"]

PRICED_FRAMES = 25
"""Frames a video is priced at unless the function sets ``num_frames`` (go-livepeer's 25)."""


def decode_video_input(params: Any, options: dict[str, Any]) -> ImageInput:
    request = prepare_image_input(params, options)
    return ImageInput(params, request.image, int(options.get("num_frames", PRICED_FRAMES)))
