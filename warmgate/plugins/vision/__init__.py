"""The vision plugin: image-to-text and segment-anything-2 on transformers, wire-compatible with
the Livepeer runner.
Heavy imports happen in the loaders only."""

from __future__ import annotations

from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import ImageInput, prepare_image_input
from warmgate.core.settings import Price
from warmgate.core.spec import DemoModel, PipelineSpec, PriceUnit, deferred
from warmgate.plugins.vision.segment_anything_2 import SegmentationRequest, prepare_segmentation
from warmgate.plugins.vision.wire import ImageToTextParams, ImageToTextResponse, MasksResponse, SegmentAnything2Params

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {"image-to-text": "Salesforce/blip-image-captioning-large", "segment-anything-2": "facebook/sam2-hiera-large"}


def _input_pixels(request: ImageInput | SegmentationRequest) -> int:
    width, height = request.image.size
    return width * height


@hookimpl
def register_pipelines(register: Any) -> None:
    register(
        PipelineSpec(
            name="image-to-text",
            request=ImageToTextParams,
            response=ImageToTextResponse,
            encoding="multipart",
            load=deferred("warmgate.plugins.vision.image_to_text:load_image_to_text"),
            engine_modules=("torch", "transformers.modeling_utils"),
            default_model_id=DEFAULT_MODELS["image-to-text"],
            prepare=prepare_image_input,
            price_unit=PriceUnit.PIXEL,
            units=_input_pixels,
            summary="Image To Text",
            operation_id="genImageToText",
            description="Transform image files to text.",
            max_body_size=50 * 2**20,
            demo=DemoModel(
                model_id="warmgate-demo/tiny-blip",
                build=deferred("warmgate.plugins.vision.demo:build_tiny_blip"),
                price=Price(price_per_unit=1_192_093),
            ),
        )
    )
    register(
        PipelineSpec(
            name="segment-anything-2",
            request=SegmentAnything2Params,
            response=MasksResponse,
            encoding="multipart",
            load=deferred("warmgate.plugins.vision.segment_anything_2:load_segment_anything_2"),
            engine_modules=("torch", "transformers.modeling_utils"),
            default_model_id=DEFAULT_MODELS["segment-anything-2"],
            prepare=prepare_segmentation,
            price_unit=PriceUnit.PIXEL,
            units=_input_pixels,
            summary="Segment Anything 2",
            operation_id="genSegmentAnything2",
            description="Segment objects in an image.",
            max_body_size=50 * 2**20,
            demo=DemoModel(
                model_id="warmgate-demo/tiny-sam2",
                build=deferred("warmgate.plugins.vision.demo:build_tiny_sam2"),
                price=Price(price_per_unit=1_192_093),
            ),
        )
    )
