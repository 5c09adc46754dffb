"""The vision plugin: image-to-text and segment-anything-2 on transformers, wire-compatible with
the Livepeer runner.
Heavy imports happen in the loaders only."""

from __future__ import annotations

from typing import Any

from warmgate.core.functions.spec import DemoModel, deferred
from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import IMAGE_INPUT
from warmgate.core.settings import Price
from warmgate.plugins.vision.segment_anything_2 import prepare_segmentation
from warmgate.plugins.vision.wire import ImageToTextParams, ImageToTextResponse, MasksResponse, SegmentAnything2Params

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {"image-to-text": "Salesforce/blip-image-captioning-large", "segment-anything-2": "facebook/sam2-hiera-large"}


_VISION = IMAGE_INPUT.extend(engine_modules=("torch", "transformers.modeling_utils"), max_body_size=50 * 2**20)


def _demo(name: str, builder: str) -> DemoModel:
    return DemoModel(model_id=f"warmgate-demo/{name}", build=deferred(f"warmgate.plugins.vision.demo:{builder}"),
                     price=Price(price_per_unit=1_192_093))


@hookimpl
def register_pipelines(register: Any) -> None:
    register(_VISION.spec(
        name="image-to-text", request=ImageToTextParams, response=ImageToTextResponse,
        load=deferred("warmgate.plugins.vision.image_to_text:load_image_to_text"),
        default_model_id=DEFAULT_MODELS["image-to-text"], description="Transform image files to text.",
        demo=_demo("tiny-blip", "build_tiny_blip")))
    register(_VISION.spec(
        name="segment-anything-2", request=SegmentAnything2Params, response=MasksResponse,
        load=deferred("warmgate.plugins.vision.segment_anything_2:load_segment_anything_2"),
        default_model_id=DEFAULT_MODELS["segment-anything-2"], prepare=prepare_segmentation,
        description="Segment objects in an image.", demo=_demo("tiny-sam2", "build_tiny_sam2")))
