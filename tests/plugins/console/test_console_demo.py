"""The console in a real browser against ``warmgate serve --profile demo`` in a process of its
own: the functions table (cold, then loaded), text-to-image, a streamed LLM chat, audio-to-text,
SAM 2 by clicking on the picture, prices, usage and hardware. Screenshots go to the artifacts."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import wave
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest

import warmgate.plugins.console
from warmgate.testing import wait_for
from warmgate.testing.process import free_port

LOADED = ("idle", "warm")  # a loaded function is warm while it serves, idle between requests


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``warmgate serve --profile demo`` on a free port, run where its own serverless.yaml is (the
    repository root has another): USD rates for the prices, its cache and ledger in a temp dir."""
    root = tmp_path_factory.mktemp("demo-gateway")
    (root / "serverless.yaml").write_text("pricing:\n  eth_rates: {USD: 3000}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WARMGATE_")}
    env.update(OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1", WARMGATE_CACHE_DIR=str(root / "cache"),
               WARMGATE_LOG_FORMAT="json")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = root / "gateway.log"
    with log.open("wb") as stderr:  # a file, not a pipe: a full pipe would stall the gateway
        process = subprocess.Popen([sys.executable, "-m", "warmgate", "serve", "--profile", "demo", "--port", str(port)],
                                   cwd=root, env=env, stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        started = wait_for(lambda: process.poll() is not None or _healthy(url), timeout=60)
        if not started or process.poll() is not None:
            pytest.fail(f"the demo gateway did not start:\n{log.read_text(errors='replace')[-3000:]}")
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


def _function(demo: str, pipeline: str) -> dict:
    [fn] = [f for f in httpx.get(f"{demo}/functions").json()["functions"] if f["pipeline"] == pipeline]
    return fn


def _open(page, demo: str, pipeline: str | None = None):
    page.goto(f"{demo}/console")
    page.wait_for_selector("body[data-ready=true]")
    if pipeline is not None:
        page.click(f'#pipeline-tabs button[data-pipeline="{pipeline}"]')
    return page.locator(f'.pipeline-form[data-pipeline="{pipeline}"]')


def test_the_gateway_links_and_serves_this_checkouts_console(demo):
    assert httpx.get(f"{demo}/").json()["console"] == "/console"
    served = httpx.get(f"{demo}/console/static/console.js")
    assert served.status_code == 200 and served.headers["content-type"].startswith("text/javascript")
    assert served.content == (Path(warmgate.plugins.console.__file__).parent / "static" / "console.js").read_bytes()


def test_functions_table_shows_every_function_cold(demo, page, artifacts):
    t2i = _function(demo, "text-to-image")
    assert t2i["state"] == "cold"
    _open(page, demo)
    row = page.locator(f'#functions-table tr[data-function="{t2i["name"]}"]')
    row.wait_for()
    assert row.get_attribute("data-state") == "cold" and row.get_attribute("data-loads") == "0"
    assert "warmgate-demo/tiny-sd" in row.inner_text()
    names = {f["name"] for f in httpx.get(f"{demo}/functions").json()["functions"]}
    assert set(page.locator("#functions-table tbody tr").evaluate_all("rows => rows.map(r => r.dataset.function)")) == names
    assert page.locator("#functions-table tbody tr[data-state=cold]").count() == len(names)
    page.locator("#functions").screenshot(path=artifacts / "functions-cold.png")


def test_text_to_image_from_its_form_shows_the_image_and_the_function_loaded(demo, page, artifacts):
    name = _function(demo, "text-to-image")["name"]
    panel = _open(page, demo, "text-to-image")
    form = panel.locator("form.fields")
    form.locator("[name=prompt]").fill("a lighthouse at dusk")
    for field, value in (("width", "64"), ("height", "64"), ("num_inference_steps", "2"), ("seed", "7")):
        form.locator(f"[name={field}]").fill(value)
    with page.expect_response(lambda r: r.url.endswith("/text-to-image")) as answer:
        form.locator("button[type=submit]").click()
    assert answer.value.status == 200
    image = panel.locator(".result figure img")
    image.wait_for(timeout=180_000)
    assert image.evaluate("img => img.complete && img.naturalWidth") == 64
    assert image.get_attribute("src").startswith("data:image/png;base64,")
    caption = panel.locator(".result figcaption").inner_text()
    assert "seed 7" in caption and "nsfw" in caption
    meta = panel.locator(".call-meta").inner_text()
    assert re.search(r"price [\d,]+ wei for 4,096 units \(≈ \$", meta), meta  # 64 x 64 pixels, USD at 3000/ETH
    assert re.search(r"gateway overhead \d+\.\d ms", meta) and re.search(r"round trip \d+ ms", meta), meta
    row = page.locator(f'#functions-table tr[data-function="{name}"][data-loads="1"]')
    row.wait_for(timeout=10_000)  # the table polls /functions every second
    assert row.get_attribute("data-state") in LOADED
    # the cold start as the table saw it (the load imports torch and builds the tiny model: seconds,
    # while the table polls four times a second during a request from the page)
    assert row.locator(".trail").inner_text().startswith("cold → loading →")
    page.screenshot(path=artifacts / "text-to-image.png", full_page=True)
    panel.screenshot(path=artifacts / "text-to-image-form.png")
    page.locator("#functions").screenshot(path=artifacts / "functions-after-text-to-image.png")


def test_llm_chat_streams_the_reply(demo, page, artifacts):
    panel = _open(page, demo, "llm")
    panel.locator("form.fields [name=max_tokens]").fill("24")
    panel.locator(".chat-text").fill("Say hello")
    with page.expect_request(lambda r: r.url.endswith("/llm") and r.method == "POST") as sent:
        panel.locator(".chat-input button.primary").click()
    body = json.loads(sent.value.post_data)
    assert body["stream"] is True and body["messages"] == [{"role": "user", "content": "Say hello"}]
    assert sent.value.response().headers["content-type"].startswith("text/event-stream")
    reply = panel.locator(".msg.assistant[data-done=true]")
    reply.wait_for(timeout=180_000)
    assert int(reply.get_attribute("data-chunks")) >= 2  # appended chunk by chunk as the events came
    assert reply.inner_text().strip()
    assert "first token after" in panel.locator(".call-meta").inner_text()
    panel.screenshot(path=artifacts / "llm-chat.png")


def test_llm_chat_sends_an_image_to_the_demo_vision_model(demo, page, artifacts, tmp_path):
    from PIL import Image

    picture = tmp_path / "red.png"
    Image.new("RGB", (40, 30), (200, 30, 30)).save(picture)
    panel = _open(page, demo, "llm")
    panel.locator("form.fields [name=model]").fill("warmgate-demo/tiny-vision-chat")
    panel.locator("form.fields [name=max_tokens]").fill("8")
    panel.locator(".chat-openai summary").click()
    panel.locator(".chat-image").set_input_files(str(picture))
    panel.locator(".chat-text").fill("What is in this picture?")
    with page.expect_request(lambda r: r.url.endswith("/v1/chat/completions") and r.method == "POST") as sent:
        panel.locator(".chat-input button.primary").click()
    body = json.loads(sent.value.post_data)
    assert body["model"] == "warmgate-demo/tiny-vision-chat"
    [text, image] = body["messages"][0]["content"]
    assert text == {"type": "text", "text": "What is in this picture?"}
    assert image["type"] == "image_url" and image["image_url"]["url"].startswith("data:image/png;base64,")
    reply = panel.locator(".msg.assistant[data-done=true]")
    reply.wait_for(timeout=180_000)
    assert "failure" not in (reply.get_attribute("class") or "")
    assert panel.locator(".msg.user img.chat-picture").count() == 1
    panel.screenshot(path=artifacts / "llm-chat-image.png")


def _tone_wav(seconds: float = 1.0, rate: int = 16_000) -> bytes:
    t = np.arange(int(seconds * rate)) / rate
    samples = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype("<i2")
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(samples.tobytes())
    return out.getvalue()


def test_audio_to_text_upload_shows_a_transcript_with_timestamps(demo, page, artifacts):
    panel = _open(page, demo, "audio-to-text")
    panel.locator("[name=audio]").set_input_files(files=[{"name": "tone.wav", "mimeType": "audio/wav",
                                                          "buffer": _tone_wav()}])
    panel.locator("button[type=submit]").click()
    rows = panel.locator(".result .transcript tr")
    rows.first.wait_for(timeout=180_000)
    assert re.fullmatch(r"\d+\.\d\d s – (\d+\.\d\d s|…)", rows.first.locator("td").first.inner_text())
    assert panel.locator(".result .text-result").is_visible()
    assert "for 1,000 units" in panel.locator(".call-meta").inner_text()  # one second = 1000 ms of audio
    panel.screenshot(path=artifacts / "audio-to-text.png")


def _png(width: int, height: int) -> bytes:
    from PIL import Image

    picture = Image.new("RGB", (width, height), (240, 240, 240))
    for x in range(width // 4, width // 2):
        for y in range(height // 4, 3 * height // 4):
            picture.putpixel((x, y), (200, 30, 30))
    out = io.BytesIO()
    picture.save(out, format="PNG")
    return out.getvalue()


def test_segment_anything_by_clicking_points_on_the_picture(demo, page, artifacts):
    panel = _open(page, demo, "segment-anything-2")
    panel.locator("[name=image]").set_input_files(files=[{"name": "square.png", "mimeType": "image/png",
                                                          "buffer": _png(96, 64)}])
    page.wait_for_function("() => document.querySelector('[data-pipeline=\"segment-anything-2\"] canvas.picture').width === 96")
    picture = panel.locator("canvas.picture")  # drawn scaled, inside a 1 px border
    scale = picture.evaluate("canvas => canvas.clientWidth / canvas.width")
    assert scale > 1  # a small picture is shown larger, so it can be clicked

    def click(x: int, y: int, **options) -> None:  # the middle of image pixel (x, y)
        picture.click(position={"x": 1 + (x + 0.5) * scale, "y": 1 + (y + 0.5) * scale}, **options)

    click(36, 32)
    click(90, 6, modifiers=["Shift"])
    coords = json.loads(panel.locator("[name=point_coords]").input_value())
    assert coords == [[36, 32], [90, 6]]  # image pixels, not page pixels
    assert json.loads(panel.locator("[name=point_labels]").input_value()) == [1, 0]
    panel.locator("button[type=submit]").click()
    summary = panel.locator(".mask-summary")
    summary.wait_for(timeout=180_000)
    assert re.search(r"best of \d+ mask\(s\): \d+ of 6144 pixels", summary.inner_text())
    panel.screenshot(path=artifacts / "segment-anything-2.png")


def test_image_to_video_result_plays_in_the_page(demo, page, artifacts):
    panel = _open(page, demo, "image-to-video")
    panel.locator("[name=image]").set_input_files(files=[{"name": "start.png", "mimeType": "image/png",
                                                          "buffer": _png(64, 64)}])
    for field, value in (("width", "64"), ("height", "64"), ("num_inference_steps", "2"), ("seed", "3")):
        panel.locator(f"[name={field}]").fill(value)
    panel.locator("button[type=submit]").click()
    video = panel.locator(".result video")
    video.wait_for(timeout=180_000)
    assert video.get_attribute("src").startswith("data:video/mp4;base64,")
    page.wait_for_function("v => v.readyState >= 2 && v.currentTime > 0", arg=video.element_handle())  # it plays
    assert video.evaluate("v => [v.videoWidth, v.error]") == [64, None]
    assert "seed 3" in panel.locator(".result figcaption").inner_text()
    panel.screenshot(path=artifacts / "image-to-video.png")


def test_text_to_speech_result_is_playable_audio(demo, page, artifacts):
    panel = _open(page, demo, "text-to-speech")
    panel.locator("[name=text]").fill("hello there")
    panel.locator("button[type=submit]").click()
    audio = panel.locator(".result audio[controls]")
    audio.wait_for(timeout=180_000)
    assert audio.get_attribute("src").startswith("data:audio/wav;base64,")
    page.wait_for_function("a => a.readyState >= 1 && a.duration > 0", arg=audio.element_handle())
    assert "for 11 units" in panel.locator(".call-meta").inner_text()  # characters of text
    panel.screenshot(path=artifacts / "text-to-speech.png")


def test_prices_usage_and_hardware(demo, page, artifacts):
    _open(page, demo)
    t2i = _function(demo, "text-to-image")["name"]
    price = page.locator(f'#prices-table tr[data-function="{t2i}"]')
    price.wait_for()
    assert re.search(r"pixel\s+4,768,371 wei per pixel\s+4,768,371\s+\$", price.inner_text())
    usage = page.locator("#usage-table")
    usage.wait_for()  # the demo gateway keeps a ledger: the calls above are in it
    assert t2i in usage.inner_text() and "total" in usage.inner_text()
    hardware = page.locator("#hardware-body")
    page.wait_for_selector("#host-table")
    gpus = httpx.get(f"{demo}/hardware/info").json()["gpu_info"]
    assert page.locator("#gpu-table" if gpus else "#no-gpu").is_visible()
    assert f"× {os.cpu_count()}" in hardware.inner_text()
    page.screenshot(path=artifacts / "console-full.png", full_page=True)


def test_live_sessions_show_with_their_frames_and_cost(demo, page, artifacts):
    import asyncio
    import threading

    from warmgate.testing.live import clip, publish, read_segments

    urls = httpx.post(f"{demo}/live/sessions", json={"params": {"width": 384, "height": 384}}).json()

    async def stream():
        reading = asyncio.ensure_future(read_segments(urls["subscribe_url"]))
        await publish(urls["publish_url"], clip(seconds=2))
        return await asyncio.wait_for(reading, 60)

    streamed = []  # in a thread of its own: playwright's sync API keeps this thread's event loop
    sender = threading.Thread(target=lambda: streamed.append(asyncio.run(stream())))
    sender.start()
    sender.join(90)
    assert streamed and streamed[0]
    _open(page, demo)
    row = page.locator(f'#live-table tr[data-session="{urls["id"]}"]')
    row.wait_for()
    page.wait_for_function("r => r.dataset.state === 'OFFLINE'", arg=row.element_handle(), timeout=30_000)
    text = row.inner_text()
    assert "noop" in text and "384×384" in text
    # a clip sent faster than real time: frames over max_lag behind are skipped (and counted)
    frames_in, frames_out, dropped = map(int, re.search(r"(\d+) / (\d+) / (\d+)", text).groups())
    assert frames_in == 48 and frames_out > 0 and frames_out + dropped <= 48
    assert f"{384 * 384 * frames_out * 1000:,}" in text  # the demo's 1,000 wei per output pixel
    page.locator("#live").screenshot(path=artifacts / "live-sessions.png")
