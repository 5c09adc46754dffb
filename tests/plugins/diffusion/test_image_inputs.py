"""The multipart diffusion routes (image-to-image, image-to-video, upscale) over HTTP with real
uploads: decoding, EXIF, limits, sizes, frames, mp4s, and every bad-input case."""

import io

import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price

from .helpers import decode_data_url, open_image, png


@pytest.fixture
def gateway(warmgate_server, tiny):
    functions = [
        FunctionConfig(pipeline="image-to-image", model_id=tiny["image-to-image"], price=Price(price_per_unit=1),
                       options={"max_input_pixels": 128 * 128}),
        FunctionConfig(pipeline="image-to-video", model_id=tiny["image-to-video"], price=Price(price_per_unit=1),
                       options={"num_frames": 4, "decode_chunk_size": 2}),
        FunctionConfig(pipeline="image-to-video", model_id=tiny["image-to-video"], name="frames", aliases=["frames"],
                       options={"video_output": "frames", "num_frames": 3}),
        FunctionConfig(pipeline="upscale", model_id=tiny["upscale"], price=Price(price_per_unit=1)),
    ]
    server, client = warmgate_server(Settings(functions=functions))
    client.functions = server.app.state.functions.functions
    return client


def upload(data, name="in.png", content_type="image/png"):
    return {"image": (name, data, content_type)}


def test_image_to_image_keeps_the_input_size_and_prices_input_pixels(gateway):
    r = gateway.post("/image-to-image", files=upload(png(64, 48)),
                     data={"prompt": "make it blue", "num_inference_steps": "2", "num_images_per_prompt": "2",
                           "seed": "5"})
    assert r.status_code == 200, r.text
    images = r.json()["images"]
    assert [m["seed"] for m in images] == [5, 6] and [m["nsfw"] for m in images] == [False, False]
    assert all(open_image(m["url"]).size == (64, 48) for m in images)
    assert r.headers["x-warmgate-units"] == str(64 * 48 * 2)
    again = gateway.post("/image-to-image/", files=upload(png(64, 48)),
                         data={"prompt": "make it blue", "num_inference_steps": "2", "num_images_per_prompt": "2",
                               "seed": "5"})
    assert [m["url"] for m in again.json()["images"]] == [m["url"] for m in images]


def test_exif_orientation_is_applied_before_the_model_sees_the_image(gateway):
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown rotated 90 degrees: portrait
    jpeg = png(64, 48, fmt="JPEG", exif=exif.tobytes())
    r = gateway.post("/image-to-image", files=upload(jpeg, "photo.jpg", "image/jpeg"),
                     data={"prompt": "x", "num_inference_steps": "2"})
    assert r.status_code == 200, r.text
    assert open_image(r.json()["images"][0]["url"]).size == (48, 64)


@pytest.mark.parametrize(("files", "status", "words"), [
    (upload(b"this is not an image", "notes.txt", "text/plain"), 415, "not an image"),
    (upload(png(64, 48)[:60]), 400, "truncated"),
    (upload(b""), 400, "empty"),
    (upload(png(256, 256)), 413, "at most 16384"),
])
def test_bad_uploads_are_rejected_before_the_model_loads(gateway, files, status, words):
    r = gateway.post("/image-to-image", files=files, data={"prompt": "x"})
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]["msg"]
    [function] = [f for f in gateway.functions.values() if f.config.pipeline == "image-to-image"]
    assert function.state.value == "cold"


def test_a_decompression_bomb_is_refused_from_its_header(gateway):
    # 20000 x 20000 pixels that compress to a few hundred kilobytes
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, format="PNG")
    r = gateway.post("/upscale", files=upload(buffer.getvalue()), data={"prompt": "x"})
    assert r.status_code == 413 and "400000000 pixels" in r.json()["detail"]["msg"]


@pytest.mark.parametrize(("data", "files", "field"), [
    ({"prompt": "x"}, None, "image"),
    ({"prompt": "x", "image": "not a file"}, None, "image"),
    ({}, upload(png()), "prompt"),
    ({"prompt": "x", "strength": "1.5"}, upload(png()), "strength"),
    ({"prompt": "x", "num_inference_steps": "many"}, upload(png()), "num_inference_steps"),
])
def test_image_to_image_form_errors_are_a_422_naming_the_field(gateway, data, files, field):
    r = gateway.post("/image-to-image", data=data, files=files or {"unused": ("u", b"u")})
    assert r.status_code == 422, r.text
    assert r.json()["detail"][0]["loc"] == ["body", field]


def test_json_sent_to_a_multipart_route_is_a_415(gateway):
    r = gateway.post("/upscale", json={"prompt": "x"})
    assert r.status_code == 415 and "multipart/form-data" in r.json()["detail"]["msg"]


def test_image_to_video_returns_an_h264_mp4_with_the_requested_size_fps_and_frames(gateway):
    import av

    r = gateway.post("/image-to-video", files=upload(png(64, 64)),
                     data={"width": "48", "height": "32", "fps": "8", "num_inference_steps": "2", "seed": "9"})
    assert r.status_code == 200, r.text
    [video] = r.json()["images"]
    assert video["seed"] == 9 and video["nsfw"] is False
    with av.open(io.BytesIO(decode_data_url(video["url"], "video/mp4"))) as container:
        stream = container.streams.video[0]
        frames = list(container.decode(stream))
        assert stream.codec_context.name == "h264" and stream.average_rate == 8
    assert len(frames) == 4 and (frames[0].width, frames[0].height) == (48, 32)
    assert r.headers["x-warmgate-units"] == str(48 * 32 * 4)  # output pixels x the function's frames


def test_image_to_video_can_answer_in_the_runner_frames_shape(gateway):
    r = gateway.post("/image-to-video", files=upload(png(64, 64)),
                     data={"model_id": "frames", "width": "32", "height": "32", "num_inference_steps": "2"})
    assert r.status_code == 200, r.text
    [frames] = r.json()["frames"]
    assert len(frames) == 3
    assert all(open_image(f["url"]).size == (32, 32) for f in frames)
    assert len({f["seed"] for f in frames}) == 1


def test_image_to_video_rejects_sizes_that_are_not_multiples_of_8(gateway):
    r = gateway.post("/image-to-video", files=upload(png()), data={"width": "50"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "width"]


def test_upscale_returns_four_times_the_input_and_prices_input_pixels(gateway):
    r = gateway.post("/upscale", files=upload(png(32, 24)), data={"prompt": "sharp", "num_inference_steps": "2",
                                                                  "seed": "4"})
    assert r.status_code == 200, r.text
    [image] = r.json()["images"]
    assert open_image(image["url"]).size == (128, 96) and image["seed"] == 4
    assert r.headers["x-warmgate-units"] == str(32 * 24)


@pytest.mark.parametrize("route", ["image-to-image", "upscale"])
@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 2), (7, 64), (4096, 1), (1, 4096)])
def test_images_too_small_for_the_latents_are_a_400_that_says_so(gateway, route, width, height):
    r = gateway.post(f"/{route}", files=upload(png(width, height)), data={"prompt": "x", "num_inference_steps": "1"})
    assert r.status_code == 400, r.text
    assert r.json()["detail"]["msg"] == (f"image: {width}x{height} is too small; this function needs at least "
                                         "8 pixels on each side")


@pytest.mark.parametrize(("route", "width", "height", "size"), [
    ("image-to-image", 8, 8, (8, 8)), ("image-to-image", 128, 8, (128, 8)),
    ("upscale", 8, 8, (32, 32)), ("upscale", 64, 8, (256, 32)),
])
def test_the_smallest_and_thinnest_accepted_images_are_served(gateway, route, width, height, size):
    r = gateway.post(f"/{route}", files=upload(png(width, height)), data={"prompt": "x", "num_inference_steps": "1"})
    assert r.status_code == 200, r.text
    assert open_image(r.json()["images"][0]["url"]).size == size


@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 2), (4096, 1), (1, 4096)])
def test_image_to_video_resizes_tiny_and_extreme_images_to_the_video_size(gateway, width, height):
    import av

    r = gateway.post("/image-to-video", files=upload(png(width, height)),
                     data={"width": "64", "height": "48", "num_inference_steps": "1"})
    assert r.status_code == 200, r.text
    with av.open(io.BytesIO(decode_data_url(r.json()["images"][0]["url"], "video/mp4"))) as container:
        stream = container.streams.video[0]
        assert (stream.width, stream.height) == (64, 48)
