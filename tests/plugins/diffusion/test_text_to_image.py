"""POST /text-to-image over HTTP with tiny SD and SDXL models on the real diffusers loaders."""

import json

import numpy as np
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.diffusion.loading import family_of
from warmgate.testing import wait_for

from .helpers import open_image

SMALL = {"width": 64, "height": 48, "num_inference_steps": 2}


@pytest.fixture
def t2i(warmgate_server, tiny):
    functions = [
        FunctionConfig(pipeline="text-to-image", model_id=tiny["text-to-image"], price=Price(price_per_unit=2),
                       options={"safety_checker": tiny["safety_checker"], "progress_interval": 0}),
        FunctionConfig(pipeline="text-to-image", model_id=tiny["sdxl"], aliases=["sdxl"]),
        FunctionConfig(pipeline="text-to-image", model_id=tiny["lightning"], aliases=["lightning"],
                       options={"base_model": tiny["sdxl"], "progress_interval": 0}),
    ]
    server, client = warmgate_server(Settings(functions=functions))
    client.functions = server.app.state.functions.functions  # the OOM test reaches the loaded pipeline
    return client


def pixels(url):
    return np.asarray(open_image(url), dtype=np.float64)


def test_images_come_back_as_pngs_of_the_requested_size_with_consecutive_seeds(t2i):
    r = t2i.post("/text-to-image", json={"prompt": "a red cat", "seed": 40, "num_images_per_prompt": 3, **SMALL})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert [m["seed"] for m in images] == [40, 41, 42]
    for media in images:
        assert set(media) == {"url", "seed", "nsfw"} and isinstance(media["nsfw"], bool)
        image = open_image(media["url"])
        assert (image.format, image.size, image.mode) == ("PNG", (64, 48), "RGB")
    # the quote is width x height x images, at 2 wei per pixel
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == (str(64 * 48 * 3), str(64 * 48 * 3 * 2))


def test_a_fixed_seed_is_deterministic_and_image_i_is_the_image_of_seed_plus_i(t2i):
    body = {"prompt": "a lighthouse", "seed": 7, "num_images_per_prompt": 2, **SMALL}
    first = t2i.post("/text-to-image", json=body).json()["images"]
    again = t2i.post("/text-to-image", json=body).json()["images"]
    assert [m["url"] for m in first] == [m["url"] for m in again]
    alone = t2i.post("/text-to-image", json={**body, "seed": 8, "num_images_per_prompt": 1}).json()["images"][0]
    assert alone["seed"] == 8
    assert np.abs(pixels(alone["url"]) - pixels(first[1]["url"])).mean() < 1.0  # same noise, batch rounding aside
    assert np.abs(pixels(first[0]["url"]) - pixels(first[1]["url"])).mean() > 1.0


def test_without_a_seed_each_request_draws_a_random_one(t2i):
    seeds = [t2i.post("/text-to-image", json={"prompt": "x", "num_images_per_prompt": 2, **SMALL}).json()["images"]
             for _ in range(2)]
    assert seeds[0][1]["seed"] == seeds[0][0]["seed"] + 1
    assert seeds[0][0]["seed"] != seeds[1][0]["seed"]
    assert all(0 <= m["seed"] < 2**32 for m in seeds[0])


def test_the_safety_checker_flags_each_image_only_when_asked(t2i, tiny):
    import torch
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import AutoImageProcessor

    body = {"prompt": "x", "seed": 3, "num_images_per_prompt": 2, **SMALL}
    checked = t2i.post("/text-to-image", json=body).json()["images"]
    checker = StableDiffusionSafetyChecker.from_pretrained(tiny["safety_checker"])
    processor = AutoImageProcessor.from_pretrained(tiny["safety_checker"])
    images = [open_image(m["url"]) for m in checked]
    with torch.no_grad():
        _, expected = checker(clip_input=processor(images, return_tensors="pt").pixel_values,
                              images=np.stack([np.asarray(i, dtype=np.float32) / 255 for i in images]))
    assert [m["nsfw"] for m in checked] == [bool(flag) for flag in expected]
    unchecked = t2i.post("/text-to-image", json={**body, "safety_check": False}).json()["images"]
    assert [m["nsfw"] for m in unchecked] == [False, False]
    assert [m["url"] for m in unchecked] == [m["url"] for m in checked]  # flagging never alters the pictures
    # a model with no checker configured or shipped answers nsfw=false rather than failing
    sdxl = t2i.post("/text-to-image", json={**body, "model_id": "sdxl"})
    assert sdxl.status_code == 200 and [m["nsfw"] for m in sdxl.json()["images"]] == [False, False]


def test_a_lora_changes_the_picture_and_is_switched_off_for_requests_without_it(t2i, tiny):
    body = {"prompt": "a dog", "seed": 11, **SMALL}
    plain = t2i.post("/text-to-image", json=body).json()["images"][0]["url"]
    styled = t2i.post("/text-to-image", json={**body, "loras": json.dumps({tiny["lora"]: 1.0})})
    assert styled.status_code == 200, styled.text
    assert np.abs(pixels(styled.json()["images"][0]["url"]) - pixels(plain)).mean() > 1.0
    weaker = t2i.post("/text-to-image", json={**body, "loras": json.dumps({tiny["lora"]: 0.0})}).json()
    assert np.abs(pixels(weaker["images"][0]["url"]) - pixels(plain)).mean() < 1.0
    assert t2i.post("/text-to-image", json=body).json()["images"][0]["url"] == plain


@pytest.mark.parametrize(("loras", "reason"), [
    ("{not json", "not valid JSON"),
    ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
    ('["a", "b"]', "expected a JSON object"),
    ('{"a/b": -0.5}', "must not be negative"),
    ('{"a/b": "heavy"}', "must be a number"),
    (json.dumps({f"x/lora{i}": 1 for i in range(5)}), "at most 4"),
    ('{"/no/such/lora": 1.0}', "could not be loaded"),
])
def test_bad_loras_are_a_400_with_the_reason(t2i, loras, reason):
    r = t2i.post("/text-to-image", json={"prompt": "x", "loras": loras, **SMALL})
    assert r.status_code == 400, r.text
    assert "loras" in r.json()["detail"]["msg"] and reason in r.json()["detail"]["msg"]
    assert t2i.post("/text-to-image", json={"prompt": "x", **SMALL}).status_code == 200  # nothing left half-loaded


@pytest.mark.parametrize(("body", "field"), [
    ({}, "prompt"),
    ({"prompt": ""}, "prompt"),
    ({"prompt": "x", "width": 65}, "width"),
    ({"prompt": "x", "height": 0}, "height"),
    ({"prompt": "x", "num_images_per_prompt": 0}, "num_images_per_prompt"),
    ({"prompt": "x", "num_inference_steps": 0}, "num_inference_steps"),
    ({"prompt": "x", "guidance_scale": -1}, "guidance_scale"),
    ({"prompt": "x", "seed": -3}, "seed"),
    ({"prompt": "x", "seed": "abc"}, "seed"),
])
def test_out_of_range_fields_are_a_422_naming_the_field(t2i, body, field):
    r = t2i.post("/text-to-image", json=body)
    assert r.status_code == 422, r.text
    [error] = r.json()["detail"]
    assert error["loc"] == ["body", field]


def test_malformed_json_is_a_400(t2i):
    r = t2i.post("/text-to-image", content=b'{"prompt": ', headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and "malformed JSON" in r.json()["detail"]["msg"]


def test_sdxl_takes_a_second_prompt_after_a_bar_and_refuses_a_third(t2i):
    ok = t2i.post("/text-to-image", json={"prompt": "a castle | watercolor", "negative_prompt": "blur|noise",
                                          "model_id": "sdxl", **SMALL})
    assert ok.status_code == 200, ok.text
    r = t2i.post("/text-to-image", json={"prompt": "a|b|c", "model_id": "sdxl", **SMALL})
    assert r.status_code == 400 and "at most 2 prompts" in r.json()["detail"]["msg"]
    # one text encoder: the bar is just text
    assert t2i.post("/text-to-image", json={"prompt": "a|b|c", **SMALL}).status_code == 200


def test_sdxl_lightning_runs_its_step_count_whatever_the_request_asks(t2i, capfd):
    r = t2i.post("/text-to-image", json={"prompt": "fast", "model_id": "lightning", "width": 64, "height": 64,
                                         "num_inference_steps": 9, "seed": 1})
    assert r.status_code == 200, r.text
    assert open_image(r.json()["images"][0]["url"]).size == (64, 64)
    steps = []

    def logged():
        for line in capfd.readouterr().err.splitlines():
            if '"event":"diffusion_progress"' in line and "Lightning" in line:
                steps.append(json.loads(line))
        return len(steps) >= 4

    assert wait_for(logged)
    assert [s["step"] for s in steps] == [1, 2, 3, 4] and {s["steps"] for s in steps} == {4}


def test_model_families():
    assert family_of("ByteDance/SDXL-Lightning-8step").steps == 8
    assert family_of("ByteDance/SDXL-Lightning").steps == 2
    assert family_of("ByteDance/SDXL-Lightning").guidance_scale == 0
    assert family_of("SG161222/RealVisXL_V4.0_Lightning").name == "lightning"
    assert family_of("stabilityai/sdxl-turbo").guidance_scale == 0
    assert family_of("black-forest-labs/FLUX.1-dev").negative_prompt is False
    assert family_of("black-forest-labs/FLUX.1-schnell").guidance_scale == 0
    assert family_of("stabilityai/stable-diffusion-3-medium-diffusers").name == "sd3"
    assert family_of("runwayml/stable-diffusion-v1-5").name == "default"


def test_out_of_memory_is_a_500_saying_what_to_shrink_and_the_function_recovers(t2i):
    import torch

    function = next(f for f in t2i.functions.values() if not f.config.aliases)
    assert t2i.post("/text-to-image", json={"prompt": "x", **SMALL}).status_code == 200
    unet = function._runner.pipe.unet
    original = unet.forward

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    unet.forward = exhausted
    try:
        r = t2i.post("/text-to-image", json={"prompt": "x", **SMALL})
    finally:
        unet.forward = original
    assert r.status_code == 500
    msg = r.json()["detail"]["msg"]
    assert "out of memory" in msg and "smaller width x height" in msg
    assert t2i.post("/text-to-image", json={"prompt": "x", **SMALL}).status_code == 200
