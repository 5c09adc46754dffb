"""The vision plugin: image-to-text on transformers, wire-compatible with the Livepeer runner.
Heavy imports happen in the loaders only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import ImageInput, prepare_image_input
from warmgate.core.spec import DemoModel, PipelineSpec, PriceUnit
from warmgate.plugins.vision.wire import ImageToTextParams, ImageToTextResponse

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {"image-to-text": "Salesforce/blip-image-captioning-large"}


def _load_image_to_text(model_id: str, options: dict[str, Any]) -> Any:
    from warmgate.plugins.vision.image_to_text import load_image_to_text

    return load_image_to_text(model_id, options)


def _build_blip(directory: Path) -> None:
    from warmgate.plugins.vision.demo import build_tiny_blip

    build_tiny_blip(directory)


def _input_pixels(request: ImageInput) -> int:
    width, height = request.image.size
    return width * height


@hookimpl
def register_pipelines(register: Any) -> None:
    register(PipelineSpec(
        name="image-to-text", request=ImageToTextParams, response=ImageToTextResponse, encoding="multipart",
        load=_load_image_to_text, default_model_id=DEFAULT_MODELS["image-to-text"], prepare=prepare_image_input,
        price_unit=PriceUnit.PIXEL, units=_input_pixels, summary="Image To Text", operation_id="genImageToText",
        description="Transform image files to text.", max_body_size=50 * 2**20,
        demo=DemoModel(model_id="warmgate-demo/tiny-blip", build=_build_blip),
    ))
