"""Each diffusion pipeline called with only its required fields (the spec's defaults: 1024x576,
50 / 100 / 25 / 75 steps) against the tiny demo models answers correctly: the demo is usable
as a new user first tries it. Times are in bench/spec_defaults.py."""

import io

import httpx
import pytest

from warmgate import FunctionConfig, Settings

from .helpers import decode_data_url, open_image, png


@pytest.fixture(scope="module")
def defaults(tiny):
    from warmgate.core.http.app import create_app
    from warmgate.testing import serve

    functions = [FunctionConfig(pipeline=name, model_id=tiny[name])
                 for name in ("text-to-image", "image-to-image", "image-to-video", "upscale")]
    with serve(create_app(Settings(functions=functions))) as server, \
            httpx.Client(base_url=server.url, timeout=600) as client:
        yield client


def test_text_to_image_with_only_a_prompt_is_1024x576(defaults):
    r = defaults.post("/text-to-image", json={"prompt": "a lighthouse"})
    assert r.status_code == 200, r.text
    [image] = r.json()["images"]
    assert open_image(image["url"]).size == (1024, 576)


def test_image_to_image_with_only_a_prompt_and_an_image_keeps_its_size(defaults):
    r = defaults.post("/image-to-image", files={"image": ("in.png", png(1024, 576), "image/png")},
                      data={"prompt": "make it night"})
    assert r.status_code == 200, r.text
    assert open_image(r.json()["images"][0]["url"]).size == (1024, 576)


def test_image_to_video_with_only_an_image_is_a_1024x576_mp4(defaults):
    import av

    r = defaults.post("/image-to-video", files={"image": ("in.png", png(512, 512), "image/png")})
    assert r.status_code == 200, r.text
    video = decode_data_url(r.json()["images"][0]["url"], "video/mp4")
    with av.open(io.BytesIO(video)) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (1024, 576)
        assert len(list(container.decode(video=0))) == 4  # the tiny SVD's num_frames


def test_upscale_with_only_a_prompt_and_an_image_is_four_times_larger(defaults):
    r = defaults.post("/upscale", files={"image": ("in.png", png(128, 96), "image/png")}, data={"prompt": "sharp"})
    assert r.status_code == 200, r.text
    assert open_image(r.json()["images"][0]["url"]).size == (512, 384)
