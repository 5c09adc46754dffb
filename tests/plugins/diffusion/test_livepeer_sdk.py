"""The official ``livepeer-ai`` SDK, unchanged, against the diffusion routes."""

import pytest
from livepeer_ai import Livepeer
from livepeer_ai.models import components

from warmgate import FunctionConfig, Settings

from .helpers import decode_data_url, open_image, png


@pytest.fixture
def livepeer(warmgate_server, tiny):
    functions = [FunctionConfig(pipeline=pipeline, model_id=tiny[pipeline], aliases=["tiny"])
                 for pipeline in ("text-to-image", "image-to-image", "image-to-video", "upscale")]
    server, _ = warmgate_server(Settings(functions=functions))
    with Livepeer(http_bearer="unused", server_url=server.url) as sdk:
        yield sdk


def test_text_to_image_through_the_sdk(livepeer):
    result = livepeer.generate.text_to_image(request={
        "model_id": "tiny", "prompt": "a boat", "width": 64, "height": 64, "num_inference_steps": 2, "seed": 3,
        "num_images_per_prompt": 2})
    assert [m.seed for m in result.image_response.images] == [3, 4]
    assert open_image(result.image_response.images[0].url).size == (64, 64)


def test_image_to_image_and_upscale_through_the_sdk(livepeer):
    image = components.Image(file_name="in.png", content=png(32, 32))
    edited = livepeer.generate.image_to_image(request={"model_id": "tiny", "prompt": "x", "image": image,
                                                       "num_inference_steps": 2})
    assert open_image(edited.image_response.images[0].url).size == (32, 32)
    upscaled = livepeer.generate.upscale(request={"model_id": "tiny", "prompt": "x", "num_inference_steps": 2,
                                                  "image": components.BodyGenUpscaleImage(file_name="in.png",
                                                                                          content=png(16, 16))})
    assert open_image(upscaled.image_response.images[0].url).size == (64, 64)


def test_image_to_video_through_the_sdk(livepeer):
    image = components.BodyGenImageToVideoImage(file_name="in.png", content=png(64, 64))
    result = livepeer.generate.image_to_video(request={"model_id": "tiny", "image": image, "width": 32, "height": 32,
                                                       "num_inference_steps": 2})
    [video] = result.video_response.images
    assert decode_data_url(video.url, "video/mp4")[4:8] == b"ftyp"
