"""Live video end to end over real HTTP: MPEG-TS published to a session's trickle channel on the
gateway, frames through a live pipeline plugin, MPEG-TS read back; control updates and events."""

import asyncio
import json

import numpy as np
import pytest

import warmgate
from warmgate import FrameProcessor, Settings
from warmgate.plugins.live.media import SegmentDecoder, SegmentEncoder, whole_segments
from warmgate.testing import EchoPipeline
from warmgate.trickle.client import TricklePublisher, TrickleSubscriber


class Inverter(FrameProcessor):
    updates: list = []
    loaded: list = []

    async def load_model(self, **params):
        Inverter.loaded.append(params)

    async def process_video(self, frame):
        return 255 - frame

    async def update_params(self, params):
        Inverter.updates.append(params)


class InverterPlugin:
    @warmgate.hookimpl
    def register_live_pipelines(self, register):
        register("invert", Inverter)


def input_segments(seconds=3, fps=24):
    segments = []
    encoder = SegmentEncoder(96, 64, whole_segments(segments.append), fps=fps)
    for i in range(seconds * fps):
        encoder.encode(np.zeros((64, 96, 3), np.uint8), i / fps)
    encoder.close()
    return segments


@pytest.fixture
def gateway(warmgate_server, register_plugin):
    register_plugin(InverterPlugin(), "undo-invert")
    Inverter.updates.clear()
    Inverter.loaded.clear()
    return warmgate_server(Settings(), pipelines={"echo": EchoPipeline().spec})[1]


def test_a_hosted_session_transforms_the_stream_and_applies_control_updates(gateway):
    r = gateway.post("/live/sessions", json={"model_id": "invert", "params": {"width": 384, "height": 448, "x": 1}})
    assert r.status_code == 200, r.text
    urls = r.json()
    segments = input_segments()

    async def run():
        async with TrickleSubscriber(urls["subscribe_url"], start=0) as output, \
                TrickleSubscriber(urls["events_url"], start=0) as events:
            async def read_video():  # 3 s in: two output segments (2 s each, the last one shorter)
                out = []
                while len(out) < 2 and (segment := await output.next()) is not None:
                    if body := await segment.read():
                        out.append(body)
                return out

            async def read_events():  # until the session says it is over
                out = []
                while (segment := await events.next()) is not None:
                    if body := await segment.read():
                        out.append(body)
                        if json.loads(body)["event"].get("state") == "OFFLINE":
                            break
                return out

            reading = asyncio.ensure_future(read_video())
            reading_events = asyncio.ensure_future(read_events())
            async with TricklePublisher(urls["publish_url"]) as publisher, \
                    TricklePublisher(urls["control_url"], "application/json") as control:
                async with await publisher.next() as writer:
                    await writer.write(segments[0])
                for message in ({"keep": "alive"}, {"width": 384, "height": 448, "strength": 0.7}):
                    async with await control.next() as writer:
                        await writer.write(json.dumps(message).encode())
                for _ in range(100):  # the update reaches the pipeline while the video still runs
                    if Inverter.updates:
                        break
                    await asyncio.sleep(0.05)
                for segment in segments[1:]:
                    async with await publisher.next() as writer:
                        await writer.write(segment)
            return await asyncio.wait_for(reading, 60), await asyncio.wait_for(reading_events, 60)

    out, events = asyncio.run(run())
    decoder = SegmentDecoder()
    for segment in out:
        decoder.feed(segment)
    decoder.end()
    frames = list(decoder.frames())
    assert len(frames) == 72 and {(f.width, f.height) for f in frames} == {(384, 448)}
    assert frames[0].to_ndarray(format="rgb24").mean() > 200  # black in, inverted out
    pts = [f.pts for f in frames]
    assert pts == sorted(pts)
    assert Inverter.loaded == [{"width": 384, "height": 448, "x": 1}]
    assert Inverter.updates == [{"width": 384, "height": 448, "strength": 0.7}]  # the keepalive was not passed on
    envelopes = [json.loads(e) for e in events]
    statuses = [e["event"] for e in envelopes if e["event"]["type"] == "status"]
    assert all(e["queue_event_type"] == "ai_stream_events" for e in envelopes)
    assert statuses[0]["pipeline"] == "invert" and statuses[-1]["state"] == "OFFLINE"
    assert statuses[-1]["inference_status"]["fps"] > 0
    listed = gateway.get("/live/sessions").json()["sessions"]
    assert [(s["pipeline"], s["state"], s["frames_out"]) for s in listed] == [("invert", "OFFLINE", 72)]


@pytest.mark.parametrize(("params", "field"), [({"width": 500}, "width"), ({"height": 320}, "height"),
                                               ({"width": "512"}, "width"), ({"height": 1088}, "height")])
def test_sizes_outside_384_to_1024_or_not_multiples_of_64_are_422(gateway, params, field):
    r = gateway.post("/live/sessions", json={"params": params})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "params", field]


def test_unknown_pipeline_and_bad_bodies(gateway):
    r = gateway.post("/live/sessions", json={"model_id": "nope"})
    assert r.status_code == 404 and "noop" in r.json()["detail"]["msg"]
    assert gateway.post("/live-video-to-video", json={"publish_url": "http://127.0.0.1:9/x"}).status_code == 422
    assert gateway.post("/live-video-to-video", content=b"{").status_code == 400
    assert gateway.delete("/live/sessions/none").status_code == 404
    assert gateway.get("/ai/trickle/unknown/0").status_code == 404
