"""A client that disconnects from a running generation stops it at the next step: the slot is
freed, the next request is served, and the abandoned one is billed nothing."""

import socket
from urllib.parse import urlparse

import httpx
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.settings import Price
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import wait_for

from .helpers import png

STEPS = 25


@pytest.fixture
def video(warmgate_server, tiny, tmp_path):
    config = FunctionConfig(pipeline="image-to-video", model_id=tiny["image-to-video"], price=Price(price_per_unit=1),
                            max_concurrency=1, warm=True, options={"num_frames": 4, "decode_chunk_size": 4})
    server, client = warmgate_server(Settings(functions=[config],
                                              sections=[PricingSettings(ledger=str(tmp_path / "usage.sqlite"))]))
    [function] = [f for f in server.app.state.functions.functions.values() if f.config.pipeline == "image-to-video"]
    assert wait_for(lambda: function.runner is not None, timeout=60)
    return server, client, function


def send_and_hold(url, request):
    """Send ``request`` over a raw socket and return the socket, still open (closing it is the
    client going away)."""
    address = urlparse(url)
    sock = socket.create_connection((address.hostname, address.port), timeout=30)
    head = f"{request.method} {request.url.raw_path.decode()} HTTP/1.1\r\nHost: {address.netloc}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in request.headers.items() if k.lower() != "host")
    sock.sendall(head.encode() + b"\r\n" + request.read())
    return sock


def test_a_disconnected_image_to_video_request_stops_at_the_next_step(video):
    server, client, function = video
    request = httpx.Request("POST", f"{server.url}/image-to-video", files={"image": ("in.png", png(64, 64), "image/png")},
                            data={"width": "256", "height": "256", "num_inference_steps": str(STEPS), "seed": "1"})
    sock = send_and_hold(server.url, request)
    assert wait_for(lambda: function.runner.steps_done >= 1, timeout=60)  # the generation is running
    sock.close()  # the client leaves after the first step
    assert wait_for(lambda: function.in_flight == 0, timeout=60)
    assert {f["name"]: f["in_flight"] for f in client.get("/functions").json()["functions"]}[function.name] == 0
    stopped_at = function.runner.steps_done
    assert stopped_at < STEPS // 2, f"the abandoned generation ran {stopped_at} of {STEPS} steps"

    small = client.post("/image-to-video", files={"image": ("in.png", png(64, 64), "image/png")},
                        data={"width": "64", "height": "64", "num_inference_steps": "2", "seed": "2"})
    assert small.status_code == 200, small.text
    assert function.runner.steps_done == 2
    [usage] = client.get("/usage").json()["usage"]
    assert usage["requests"] == 2  # recorded (status 499), and
    assert int(usage["wei"]) == int(small.headers["x-warmgate-price"])  # the abandoned request is billed nothing
