"""POST /image-to-text over HTTP with a tiny BLIP model on the real transformers loaders."""

import io
import socket
from urllib.parse import urlparse

import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Price


def image_bytes(width=40, height=30, fmt="PNG", mode="RGB"):
    from PIL import Image

    buffer = io.BytesIO()
    Image.new(mode, (width, height), 128 if mode == "L" else (10, 200, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_blip(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["image-to-text"]))


@pytest.fixture
def captioner(warmgate_server, tiny_blip):
    config = FunctionConfig(pipeline="image-to-text", model_id=tiny_blip, aliases=["blip"],
                            price=Price(price_per_unit=3), options={"max_new_tokens": 8, "max_input_pixels": 10_000})
    _, client = warmgate_server(Settings(functions=[config]))
    return client


@pytest.mark.parametrize(("fmt", "mode"), [("PNG", "RGB"), ("JPEG", "RGB"), ("WEBP", "RGB"), ("GIF", "L"),
                                           ("BMP", "RGB")])
def test_a_caption_comes_back_for_common_formats(captioner, fmt, mode):
    r = captioner.post("/image-to-text", files={"image": (f"in.{fmt.lower()}", image_bytes(fmt=fmt, mode=mode))},
                       data={"model_id": "blip"})
    assert r.status_code == 200, r.text
    assert set(r.json()) == {"text"} and isinstance(r.json()["text"], str) and r.json()["text"]
    assert (r.headers["x-warmgate-units"], r.headers["x-warmgate-price"]) == (str(40 * 30), str(40 * 30 * 3))


def test_a_prompt_conditions_the_caption(captioner):
    r = captioner.post("/image-to-text/", files={"image": ("in.png", image_bytes())}, data={"prompt": "a photo of"})
    assert r.status_code == 200, r.text
    assert r.json()["text"].startswith("a photo of")  # BLIP continues the prompt


@pytest.mark.parametrize(("files", "data", "status", "words"), [
    ({"image": ("x.txt", b"plain text", "text/plain")}, {}, 415, "not an image"),
    ({"image": ("x.png", image_bytes()[:50], "image/png")}, {}, 400, "truncated"),
    ({"image": ("x.png", image_bytes(200, 100), "image/png")}, {}, 413, "at most 10000"),
])
def test_bad_images_are_refused_with_the_reason(captioner, files, data, status, words):
    r = captioner.post("/image-to-text", files=files, data=data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]["msg"]


def test_a_missing_image_is_a_422_naming_it(captioner):
    r = captioner.post("/image-to-text", data={"prompt": "x"}, files={"other": ("o", b"o")})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "image"]


def test_a_body_over_50_mb_is_a_413_from_its_content_length(warmgate_server, tiny_blip):
    server, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="image-to-text", model_id=tiny_blip)]))
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /image-to-text HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: %d\r\n\r\n" % (51 * 2**20))  # and no body at all
        reply = sock.recv(4096)
        status_line = reply.split(b"\r\n", 1)[0]
    assert b" 413 " in status_line and b"larger than this route accepts" in reply


@pytest.mark.parametrize(("width", "height"), [(1, 1), (2, 2), (4096, 1), (1, 4096)])
def test_tiny_and_extreme_images_are_captioned(warmgate_server, tiny_blip, width, height):
    config = FunctionConfig(pipeline="image-to-text", model_id=tiny_blip, options={"max_new_tokens": 4})
    _, client = warmgate_server(Settings(functions=[config]))
    r = client.post("/image-to-text", files={"image": ("in.png", image_bytes(width, height))})
    assert r.status_code == 200, r.text
    assert isinstance(r.json()["text"], str)
