"""Uploads of the diffusion routes, decoded before a function is acquired: the smallest image a
latent model can work on, and the frame count a video is priced for."""

from __future__ import annotations

from typing import Any

from warmgate.core.media import ImageInput, prepare_image_input

__all__ = ["MIN_LATENT_SIDE", "PRICED_FRAMES", "decode_latent_image_input", "decode_video_input"]

MIN_LATENT_SIDE = 8
"""Smallest image side for image-to-image and upscale: the pipelines round the input down to a
multiple of 8 (the VAE's scale), so a smaller side becomes 0 pixels."""

PRICED_FRAMES = 25
"""Frames a video is priced at unless the function sets ``num_frames`` (go-livepeer's 25)."""


def decode_video_input(params: Any, options: dict[str, Any]) -> ImageInput:
    request = prepare_image_input(params, options)
    return ImageInput(params, request.image, int(options.get("num_frames", PRICED_FRAMES)))


def decode_latent_image_input(params: Any, options: dict[str, Any]) -> ImageInput:
    """An input image for image-to-image and upscale: 400 below ``MIN_LATENT_SIDE`` pixels a side."""
    return prepare_image_input(params, options, min_side=MIN_LATENT_SIDE)
