"""The diffusion plugin: text-to-image, image-to-image, image-to-video and upscale on diffusers,
wire-compatible with the Livepeer runner, and the ``diffusion`` live video pipeline. Heavy
imports happen in the loaders only."""

from __future__ import annotations

from typing import Any

from warmgate.core.functions.spec import DemoModel, PipelineSpec, PriceUnit, SpecBase, deferred
from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import IMAGE_INPUT, ImageInput
from warmgate.core.settings import Price
from warmgate.plugins.diffusion.inputs import decode_latent_image_input, decode_video_input
from warmgate.plugins.diffusion.wire import (
    ImageResponse,
    ImageToImageParams,
    ImageToVideoParams,
    TextToImageParams,
    UpscaleParams,
    VideoResponse,
)

__all__ = ["DEFAULT_MODELS"]

DEFAULT_MODELS = {
    "text-to-image": "SG161222/RealVisXL_V4.0_Lightning",
    "image-to-image": "timbrooks/instruct-pix2pix",
    "image-to-video": "stabilityai/stable-video-diffusion-img2vid-xt",
    "upscale": "stabilityai/stable-diffusion-x4-upscaler",
}


def _text_to_image_pixels(request: TextToImageParams) -> int:
    return request.width * request.height * request.num_images_per_prompt


def _video_pixels(request: ImageInput) -> int:
    return request.params.width * request.params.height * request.outputs


def _demo(name: str, builder: str, price: int | None = 4_768_371) -> DemoModel:
    return DemoModel(model_id=f"warmgate-demo/{name}", build=deferred(f"warmgate.plugins.diffusion.demo:{builder}"),
                     price=Price(price_per_unit=price) if price is not None else None)


TINY_SD = _demo("tiny-sd", "build_tiny_sd")
TINY_SD_TURBO = _demo("tiny-sd-turbo", "build_tiny_sd_turbo", price=None)


def _diffusers(name: str, **fields: Any) -> PipelineSpec:
    """A diffusers pipeline: its loader is ``<name>.py:load_<name>``, its model the default one."""
    module = name.replace("-", "_")
    return fields.pop("base", _DIFFUSERS).spec(
        name=name, load=deferred(f"warmgate.plugins.diffusion.{module}:load_{module}"),
        default_model_id=DEFAULT_MODELS[name], **fields)


_DIFFUSERS = SpecBase(response=ImageResponse, price_unit=PriceUnit.PIXEL,
                      engine_modules=("torch", "transformers.modeling_utils", "diffusers"))
_IMAGE_IN = IMAGE_INPUT.extend(**_DIFFUSERS.fields, prepare=decode_latent_image_input)


@hookimpl
def register_live_pipelines(register: Any) -> None:
    """``diffusion``: image-to-image on every frame (StreamDiffusion-style; default model
    sd-turbo, a tiny sd-turbo layout under the demo profile)."""
    register("diffusion", deferred("warmgate.plugins.diffusion.live:DiffusionLiveProcessor"), demo=TINY_SD_TURBO)


@hookimpl
def register_pipelines(register: Any) -> None:
    register(_diffusers("text-to-image", request=TextToImageParams, units=_text_to_image_pixels, demo=TINY_SD,
                        description="Generate images from text prompts."))
    register(_diffusers("image-to-image", base=_IMAGE_IN, request=ImageToImageParams,
                        description="Apply image transformations to a provided image.",
                        demo=_demo("tiny-pix2pix", "build_tiny_pix2pix")))
    register(_diffusers("image-to-video", base=_IMAGE_IN, request=ImageToVideoParams, response=VideoResponse,
                        prepare=decode_video_input, units=_video_pixels,
                        description="Generate a video from a provided image.",
                        demo=_demo("tiny-svd", "build_tiny_svd", price=3_390_842)))
    register(_diffusers("upscale", base=_IMAGE_IN, request=UpscaleParams,
                        description="Upscale an image by increasing its resolution.",
                        demo=_demo("tiny-x4-upscaler", "build_tiny_upscaler")))
