"""The diffusion plugin: text-to-image, image-to-image, image-to-video and upscale on diffusers,
wire-compatible with the Livepeer runner, and the ``diffusion`` live video pipeline. Heavy
imports happen in the loaders only."""

from __future__ import annotations

from typing import Any

from warmgate.core.hookspecs import hookimpl
from warmgate.core.media import ImageInput
from warmgate.core.settings import Price
from warmgate.core.spec import DemoModel, PipelineSpec, PriceUnit, deferred
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


def _input_pixels(request: ImageInput) -> int:
    """Input width x height x outputs (images for image-to-image, 1 for upscale)."""
    width, height = request.image.size
    return width * height * request.outputs


def _video_pixels(request: ImageInput) -> int:
    return request.params.width * request.params.height * request.outputs


TINY_SD = DemoModel(
    model_id="warmgate-demo/tiny-sd",
    build=deferred("warmgate.plugins.diffusion.demo:build_tiny_sd"),
    price=Price(price_per_unit=4_768_371),
)


TINY_SD_TURBO = DemoModel(
    model_id="warmgate-demo/tiny-sd-turbo",
    build=deferred("warmgate.plugins.diffusion.demo:build_tiny_sd_turbo"),
)


@hookimpl
def register_live_pipelines(register: Any) -> None:
    """``diffusion``: image-to-image on every frame (StreamDiffusion-style; default model
    sd-turbo, a tiny sd-turbo layout under the demo profile)."""
    register("diffusion", deferred("warmgate.plugins.diffusion.live:DiffusionLiveProcessor"), demo=TINY_SD_TURBO)


@hookimpl
def register_pipelines(register: Any) -> None:
    register(
        PipelineSpec(
            name="text-to-image",
            request=TextToImageParams,
            response=ImageResponse,
            load=deferred("warmgate.plugins.diffusion.text_to_image:load_text_to_image"),
            engine_modules=("torch", "transformers.modeling_utils", "diffusers"),
            default_model_id=DEFAULT_MODELS["text-to-image"],
            price_unit=PriceUnit.PIXEL,
            units=_text_to_image_pixels,
            summary="Text To Image",
            operation_id="genTextToImage",
            description="Generate images from text prompts.",
            demo=TINY_SD,
        )
    )
    register(
        PipelineSpec(
            name="image-to-image",
            request=ImageToImageParams,
            response=ImageResponse,
            encoding="multipart",
            load=deferred("warmgate.plugins.diffusion.image_to_image:load_image_to_image"),
            engine_modules=("torch", "transformers.modeling_utils", "diffusers"),
            default_model_id=DEFAULT_MODELS["image-to-image"],
            prepare=decode_latent_image_input,
            price_unit=PriceUnit.PIXEL,
            units=_input_pixels,
            summary="Image To Image",
            operation_id="genImageToImage",
            description="Apply image transformations to a provided image.",
            demo=DemoModel(
                model_id="warmgate-demo/tiny-pix2pix",
                build=deferred("warmgate.plugins.diffusion.demo:build_tiny_pix2pix"),
                price=Price(price_per_unit=4_768_371),
            ),
        )
    )
    register(
        PipelineSpec(
            name="image-to-video",
            request=ImageToVideoParams,
            response=VideoResponse,
            encoding="multipart",
            load=deferred("warmgate.plugins.diffusion.image_to_video:load_image_to_video"),
            engine_modules=("torch", "transformers.modeling_utils", "diffusers"),
            default_model_id=DEFAULT_MODELS["image-to-video"],
            prepare=decode_video_input,
            price_unit=PriceUnit.PIXEL,
            units=_video_pixels,
            summary="Image To Video",
            operation_id="genImageToVideo",
            description="Generate a video from a provided image.",
            demo=DemoModel(
                model_id="warmgate-demo/tiny-svd",
                build=deferred("warmgate.plugins.diffusion.demo:build_tiny_svd"),
                price=Price(price_per_unit=3_390_842),
            ),
        )
    )
    register(
        PipelineSpec(
            name="upscale",
            request=UpscaleParams,
            response=ImageResponse,
            encoding="multipart",
            load=deferred("warmgate.plugins.diffusion.upscale:load_upscale"),
            engine_modules=("torch", "transformers.modeling_utils", "diffusers"),
            default_model_id=DEFAULT_MODELS["upscale"],
            prepare=decode_latent_image_input,
            price_unit=PriceUnit.PIXEL,
            units=_input_pixels,
            summary="Upscale",
            operation_id="genUpscale",
            description="Upscale an image by increasing its resolution.",
            demo=DemoModel(
                model_id="warmgate-demo/tiny-x4-upscaler",
                build=deferred("warmgate.plugins.diffusion.demo:build_tiny_upscaler"),
                price=Price(price_per_unit=4_768_371),
            ),
        )
    )
