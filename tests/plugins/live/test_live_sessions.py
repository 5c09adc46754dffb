"""Live video end to end over real HTTP: MPEG-TS (with audio) published to a session's trickle
channel on the gateway, frames through a live pipeline plugin, MPEG-TS read back; control
updates and events; a publisher that dies; two sessions at once; metering; auth."""

import asyncio
import sys

import httpx
import pytest

import warmgate
from warmgate import FrameProcessor, Settings
from warmgate.core.settings import AuthSettings, GatewaySettings, Price
from warmgate.core.tracing.settings import TracingSettings
from warmgate.plugins.live.settings import LiveSettings
from warmgate.plugins.live.trickle.client import TricklePublisher
from warmgate.plugins.pricing.settings import PricingSettings
from warmgate.testing import EchoPipeline
from warmgate.testing.live import clip, decode, publish, read_events, read_segments, until_true
from warmgate.testing.logs import access_lines
from warmgate.testing.otlp import OTLPReceiver


class Inverter(FrameProcessor):
    updates: list = []
    loaded: list = []
    stopped: list = []

    async def load_model(self, **params):
        Inverter.loaded.append(params)

    async def process_video(self, frame):
        return 255 - frame

    async def update_params(self, params):
        Inverter.updates.append(params)

    async def stop(self):
        Inverter.stopped.append(True)


class InverterPlugin:
    @warmgate.hookimpl
    def register_live_pipelines(self, register):
        register("invert", Inverter)


NO_SKIPS = LiveSettings(max_lag=600)
"""Clips here are published faster than real time; a pipeline skips frames over ``max_lag``
behind the newest (see test_media and the diffusion test), which would make counts vary."""


@pytest.fixture
def gateway(warmgate_server, register_plugin):
    def start(settings=None):
        register_plugin(InverterPlugin(), "undo-invert")
        for log in (Inverter.updates, Inverter.loaded, Inverter.stopped):
            log.clear()
        return warmgate_server(settings or Settings(sections=[NO_SKIPS]), pipelines={"echo": EchoPipeline().spec})[1]

    return start


def test_a_hosted_session_transforms_the_stream_passes_audio_and_applies_control_updates(gateway):
    client = gateway()
    r = client.post("/live/sessions", json={"model_id": "invert", "params": {"width": 384, "height": 448, "x": 1}})
    assert r.status_code == 200, r.text
    urls = r.json()
    segments = clip(audio=True)

    async def run():
        reading = asyncio.ensure_future(read_segments(urls["subscribe_url"]))
        reading_events = asyncio.ensure_future(read_events(urls["events_url"]))
        await until_true(lambda: client.get("/health").json()["status"] == "OK")  # a session runs
        async with TricklePublisher(urls["publish_url"]) as publisher, \
                TricklePublisher(urls["control_url"], "application/json") as control:
            async with await publisher.next() as writer:
                await writer.write(segments[0])
            deep = b"[" * 100_000 + b"]" * 100_000  # nested too deeply: an error event, the session goes on
            for message in (b'{"keep": "alive"}', deep, b'{"width": 384, "height": 448, "strength": 0.7}'):
                async with await control.next() as writer:
                    await writer.write(message)
            await until_true(lambda: Inverter.updates)  # the update reaches the pipeline while the video runs
            for segment in segments[1:]:
                async with await publisher.next() as writer:
                    await writer.write(segment)
        return await asyncio.wait_for(reading, 60), await asyncio.wait_for(reading_events, 60)

    out, events = asyncio.run(run())
    video, audio = decode(out)
    assert len(video) == 72 and {(f.width, f.height) for f in video} == {(384, 448)}
    assert video[0].to_ndarray(format="rgb24").mean() > 200  # black in, inverted out
    pts = [f.pts for f in video]
    assert pts == sorted(pts)
    assert abs(sum(f.samples for f in audio) / 48000 - 3) < 0.15  # the tone went through
    assert {(f.sample_rate, f.layout.name) for f in audio} == {(48000, "mono")}
    assert Inverter.loaded == [{"width": 384, "height": 448, "x": 1}]
    assert Inverter.updates == [{"width": 384, "height": 448, "strength": 0.7}]  # the keepalive was not passed on
    assert Inverter.stopped == [True]
    statuses = [e["event"] for e in events if e["event"]["type"] == "status"]
    assert all(e["queue_event_type"] == "ai_stream_events" for e in events if e["event"]["type"] == "status")
    traces = [e["event"]["type"] for e in events if e["queue_event_type"] == "stream_trace"]
    assert traces == ["runner_receive_stream_request", "runner_receive_first_ingest_segment",
                      "runner_send_first_processed_segment"]
    assert statuses[0]["pipeline"] == "invert" and statuses[-1]["state"] == "OFFLINE"
    errors = [e["event"]["message"] for e in events if e["event"]["type"] == "error"]
    assert errors == ["control message is nested too deeply"]
    assert {"width": 384, "height": 448, "strength": 0.7} in [s["inference_status"]["last_params"] for s in statuses]
    [listed] = client.get("/live/sessions").json()["sessions"]
    assert (listed["pipeline"], listed["state"], listed["frames_in"], listed["frames_out"]) == ("invert", "OFFLINE", 72, 72)
    assert listed["latency_ms"] > 0 and listed["last_error"] is None
    assert client.get("/health").json()["status"] == "IDLE"  # nothing runs any more


def test_the_runner_contract_on_channels_the_caller_hosts(gateway):
    """As go-livepeer's orchestrator drives a runner: it creates the four channels on its own
    trickle server and posts their URLs to ``/live-video-to-video``."""
    from litestar import Litestar

    from warmgate.plugins.live.trickle import TrickleServer, trickle_route
    from warmgate.testing import serve

    client = gateway()
    orchestrator = TrickleServer()
    for name, mime in (("mid", "video/MP2T"), ("mid-out", "video/MP2T"), ("mid-control", "application/json"),
                       ("mid-events", "application/json")):
        orchestrator.create(name, mime)
    with serve(Litestar(route_handlers=[trickle_route(orchestrator)])) as other:
        base = f"{other.url}/ai/trickle/mid"
        body = {"subscribe_url": base, "publish_url": f"{base}-out", "control_url": f"{base}-control",
                "events_url": f"{base}-events", "model_id": "invert", "params": {"width": 384, "height": 384},
                "gateway_request_id": "req-1", "manifest_id": "mid", "stream_id": "stream-1"}
        r = client.post("/live-video-to-video", json=body)
        assert r.status_code == 200, r.text
        assert r.json() == {"subscribe_url": base, "publish_url": f"{base}-out", "control_url": f"{base}-control",
                            "events_url": f"{base}-events", "request_id": "req-1", "manifest_id": "mid"}

        async def run():
            reading = asyncio.ensure_future(read_segments(f"{base}-out", count=2))
            events = asyncio.ensure_future(read_events(f"{base}-events"))
            first, *rest = clip()
            # the runner joins at the live edge (-2): the first segment is the edge until it has read it
            publisher = await publish(base, [first], close=False)
            await until_true(lambda: client.get("/live/sessions").json()["sessions"][0]["frames_in"] > 0)
            for segment in rest:
                async with await publisher.next() as writer:
                    await writer.write(segment)
            await publisher.close()  # closes the input channel, which ends the session
            return await asyncio.wait_for(reading, 60), await asyncio.wait_for(events, 60)

        out, events = asyncio.run(run())
    video, _ = decode(out)
    assert len(video) == 72 and video[0].to_ndarray(format="rgb24").mean() > 200
    assert events[-1]["event"]["state"] == "OFFLINE"
    assert client.get("/live/sessions").json()["sessions"][0]["id"] == "mid"


def test_an_output_channel_that_goes_away_ends_the_session_with_an_error_event(gateway):
    from litestar import Litestar

    from warmgate.plugins.live.trickle import TrickleServer, trickle_route
    from warmgate.testing import serve

    client = gateway()
    orchestrator = TrickleServer()
    for name in ("mid", "mid-out", "mid-events"):
        orchestrator.create(name)
    with serve(Litestar(route_handlers=[trickle_route(orchestrator)])) as other:
        base = f"{other.url}/ai/trickle/mid"
        r = client.post("/live-video-to-video", json={"subscribe_url": base, "publish_url": f"{base}-out",
                                                       "events_url": f"{base}-events", "manifest_id": "mid"})
        assert r.status_code == 200, r.text

        async def run():
            events = asyncio.ensure_future(read_events(f"{base}-events"))
            segments = clip(seconds=8)
            publisher = await publish(base, segments[:2], close=False)
            await until_true(lambda: client.get("/live/sessions").json()["sessions"][0]["frames_out"] > 0)
            orchestrator.close("mid-out")  # the orchestrator drops the output mid-stream
            for segment in segments[2:]:
                async with await publisher.next() as writer:
                    await writer.write(segment)
            await publisher.close()
            return await asyncio.wait_for(events, 60)

        events = [e["event"] for e in asyncio.run(run())]
    [error] = [e for e in events if e["type"] == "error"]
    assert "output channel" in error["message"] and events[-1]["state"] == "ERROR"
    [session] = client.get("/live/sessions").json()["sessions"]
    assert session["state"] == "ERROR" and "is gone" in session["last_error"]


PUBLISHER = """
import asyncio, sys
from warmgate.plugins.live.trickle.client import TricklePublisher

async def main(url, first, second):
    publisher = TricklePublisher(url)
    async with await publisher.next() as writer:
        await writer.write(open(first, "rb").read())
    writer = await publisher.next()
    await writer.write(open(second, "rb").read()[:50_000])
    print("half-way", flush=True)
    await asyncio.sleep(60)  # killed here, mid-segment

asyncio.run(main(*sys.argv[1:]))
"""


def test_a_publisher_that_dies_ends_the_session_with_an_error_event_and_frees_it(gateway, tmp_path):
    # long enough for the publisher process to start on a busy machine, short enough for a test
    client = gateway(Settings(sections=[LiveSettings(input_timeout=4, max_lag=600)]))
    urls = client.post("/live/sessions", json={"model_id": "invert", "params": {"width": 384, "height": 384}}).json()
    segments = clip(seconds=4)
    (tmp_path / "0.ts").write_bytes(segments[0])
    (tmp_path / "1.ts").write_bytes(segments[1])

    async def run():
        events = asyncio.ensure_future(read_events(urls["events_url"]))
        publisher = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PUBLISHER, urls["publish_url"], str(tmp_path / "0.ts"), str(tmp_path / "1.ts"),
            stdout=asyncio.subprocess.PIPE)
        try:
            assert await asyncio.wait_for(publisher.stdout.readline(), 30) == b"half-way\n"
        finally:
            publisher.kill()  # SIGKILL: the connection drops mid-segment, nothing is closed
            await publisher.wait()
        return await asyncio.wait_for(events, 30)

    events = [e["event"] for e in asyncio.run(run())]
    errors = [e for e in events if e["type"] == "error"]
    assert len(errors) == 1 and "no input for 4 s" in errors[0]["message"] and errors[0]["pipeline"] == "invert"
    assert events[-1]["type"] == "status" and events[-1]["state"] == "ERROR"
    [listed] = client.get("/live/sessions").json()["sessions"]
    assert listed["state"] == "ERROR" and "no input" in listed["last_error"] and listed["frames_out"] >= 48
    assert Inverter.stopped == [True]  # the pipeline was told, so it can free its model

    async def channels_gone():  # closed with the session (after a short linger for late readers)
        await until_true(lambda: client.get(urls["publish_url"].removeprefix(str(client.base_url)) + "/next")
                       .status_code == 404, 15)

    asyncio.run(channels_gone())
    assert client.get("/health").json()["status"] == "IDLE"


def test_two_sessions_at_once_keep_their_own_frames(gateway):
    client = gateway()
    dark = client.post("/live/sessions", json={"params": {"width": 384, "height": 384}}).json()
    light = client.post("/live/sessions", json={"params": {"width": 448, "height": 384}}).json()
    assert {s["id"] for s in client.get("/live/sessions").json()["sessions"]} == {dark["id"], light["id"]}

    async def run():
        outputs = [asyncio.ensure_future(read_segments(s["subscribe_url"])) for s in (dark, light)]
        await asyncio.gather(publish(dark["publish_url"], clip(shade=10)),
                             publish(light["publish_url"], clip(shade=240)))
        return await asyncio.wait_for(asyncio.gather(*outputs), 60)

    dark_out, light_out = [decode(out)[0] for out in asyncio.run(run())]
    assert len(dark_out) == len(light_out) == 72
    assert {(f.width, f.height) for f in dark_out} == {(384, 384)}
    assert {(f.width, f.height) for f in light_out} == {(448, 384)}
    assert max(f.to_ndarray(format="rgb24").mean() for f in dark_out) < 40
    assert min(f.to_ndarray(format="rgb24").mean() for f in light_out) > 210


def test_sessions_are_metered_per_output_pixel_in_the_ledger(gateway, tmp_path):
    ledger = tmp_path / "usage.sqlite"
    client = gateway(Settings(sections=[LiveSettings(price=Price(price_per_unit=3, pixels_per_unit=2), max_lag=600),
                                        PricingSettings(ledger=str(ledger))]))
    urls = client.post("/live/sessions", json={"params": {"width": 384, "height": 384}}).json()

    async def run():
        reading = asyncio.ensure_future(read_segments(urls["subscribe_url"]))
        await publish(urls["publish_url"], clip(seconds=5))
        return await asyncio.wait_for(reading, 60)

    assert len(decode(asyncio.run(run()))[0]) == 120
    [total] = client.get("/usage").json()["usage"]
    pixels = 384 * 384 * 120
    assert (total["function"], total["units"], total["wei"]) == ("live-video-to-video:noop", pixels, str(pixels * 3 // 2))
    assert total["requests"] == 3  # one usage row per output segment (2 s, 2 s, 1 s)
    [listed] = client.get("/live/sessions").json()["sessions"]
    assert (listed["units"], listed["wei"]) == (pixels, pixels * 3 // 2)
    prices = {row["name"]: row for row in client.get("/pricing").json()["functions"]}
    assert prices["live-video-to-video:invert"]["unit"] == "pixel"
    assert prices["live-video-to-video:noop"]["wei_per_unit"] == "3/2"


def test_keys_need_the_balance_and_the_permission_for_a_session(gateway, tmp_path):
    from warmgate.plugins.pricing.keys import KeyStore

    ledger = tmp_path / "usage.sqlite"
    client = gateway(Settings(sections=[LiveSettings(price=Price(price_per_unit=1)), PricingSettings(ledger=str(ledger))],
                              auth=AuthSettings(keys=True)))
    store = KeyStore(ledger)
    hold = 384 * 384 * 48  # the first 2 s of output, held before the session starts
    _, poor = store.create(credit=hold - 1)
    _, other = store.create(credit=10 * hold, functions=["text-to-image"])
    _, rich = store.create(credit=10 * hold, functions=["live-video-to-video:noop"])
    body = {"params": {"width": 384, "height": 384}}
    assert client.post("/live/sessions", json=body).status_code == 401
    refused = client.post("/live/sessions", json=body, headers={"Authorization": f"Bearer {poor}"})
    assert refused.status_code == 402 and f"costs {hold} wei" in refused.json()["detail"]["msg"]
    forbidden = client.post("/live/sessions", json=body, headers={"Authorization": f"Bearer {other}"})
    assert forbidden.status_code == 403 and "live-video-to-video:noop" in forbidden.json()["detail"]["msg"]
    started = client.post("/live/sessions", json=body, headers={"Authorization": f"Bearer {rich}"})
    assert started.status_code == 200
    assert client.get("/live/sessions", headers={"Authorization": f"Bearer {other}"}).json() == {"sessions": []}
    mine = client.get("/live/sessions", headers={"Authorization": f"Bearer {rich}"}).json()["sessions"]
    assert [s["id"] for s in mine] == [started.json()["id"]]
    assert client.delete(f"/live/sessions/{started.json()['id']}",
                         headers={"Authorization": f"Bearer {other}"}).status_code == 404
    store.close()


@pytest.mark.parametrize(("params", "field"), [({"width": 500}, "width"), ({"height": 320}, "height"),
                                               ({"width": "512"}, "width"), ({"height": 1088}, "height")])
def test_sizes_outside_384_to_1024_or_not_multiples_of_64_are_422(gateway, params, field):
    r = gateway().post("/live/sessions", json={"params": params})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "params", field]


def test_unknown_pipeline_and_bad_bodies(gateway):
    client = gateway(Settings(sections=[LiveSettings(max_sessions=1)]))
    r = client.post("/live/sessions", json={"model_id": "nope"})
    assert r.status_code == 400 and "noop" in r.json()["detail"]["msg"] and "'nope'" in r.json()["detail"]["msg"]
    assert client.post("/live-video-to-video", json={"publish_url": "http://127.0.0.1:9/x"}).status_code == 422
    r = client.post("/live-video-to-video", json={"subscribe_url": "file:///etc/passwd", "publish_url": "http://a/b"})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "subscribe_url"]
    assert client.post("/live-video-to-video", content=b"{").status_code == 400
    assert client.delete("/live/sessions/none").status_code == 404
    assert client.get("/ai/trickle/unknown/0").status_code == 404
    assert client.post("/live/sessions", json={}).status_code == 200
    busy = client.post("/live/sessions", json={})
    assert busy.status_code == 503 and "live.max_sessions" in busy.json()["detail"]["msg"]


def test_a_reader_that_leaves_a_long_poll_is_logged_499_not_500(gateway):
    import httpx

    client = gateway()
    urls = client.post("/live/sessions", json={}).json()
    with pytest.raises(httpx.ReadTimeout):  # nothing is published: the GET waits for the first segment
        httpx.get(f"{urls['subscribe_url']}/0", timeout=0.5)

    def counted(status):
        return [line for line in client.get("/metrics").text.splitlines()
                if line.startswith("warmgate_requests_total") and 'method="GET"' in line and f'status="{status}"' in line]

    asyncio.run(until_true(lambda: counted(499), 10))
    assert not counted(500)


def test_the_access_log_names_trickle_requests_by_their_full_path(warmgate_server, register_plugin, capfd):
    register_plugin(InverterPlugin(), "undo-invert")
    settings = Settings(sections=[NO_SKIPS], gateway=GatewaySettings(log_format="json"))
    client = warmgate_server(settings, pipelines={"echo": EchoPipeline().spec})[1]
    urls = client.post("/live/sessions", json={"model_id": "invert", "params": {"width": 384, "height": 384}}).json()
    control = httpx.URL(urls["control_url"]).path
    assert control.startswith("/ai/trickle/")
    sent = client.post(f"{control}/0", content=b'{"width": 384, "height": 384}',
                       headers={"Content-Type": "application/json", "X-Request-Id": "trickle-write"})
    missing = client.get("/ai/trickle/no-such-channel/0", headers={"X-Request-Id": "trickle-missing"})
    assert (sent.status_code, missing.status_code) == (200, 404)
    assert client.delete(f"/live/sessions/{urls['id']}").status_code == 200
    lines = access_lines(capfd, ["trickle-write", "trickle-missing"])
    assert (lines["trickle-write"]["path"], lines["trickle-write"]["status"]) == (f"{control}/0", 200)
    assert (lines["trickle-missing"]["path"], lines["trickle-missing"]["status"]) == ("/ai/trickle/no-such-channel/0", 404)


def test_a_traced_session_is_one_span_with_its_milestones_as_events(gateway):
    with OTLPReceiver() as receiver:
        client = gateway(Settings(sections=[NO_SKIPS, TracingSettings(endpoint=receiver.endpoint, service_name="gw")]))
        r = client.post("/live/sessions", json={"model_id": "invert", "params": {"width": 384, "height": 384}})
        assert r.status_code == 200, r.text
        urls = r.json()

        async def run():
            reading = asyncio.ensure_future(read_segments(urls["subscribe_url"]))
            async with TricklePublisher(urls["publish_url"]) as publisher:
                for segment in clip():
                    async with await publisher.next() as writer:
                        await writer.write(segment)
            return await asyncio.wait_for(reading, 60)

        assert asyncio.run(run())
        spans = receiver.wait_for(lambda got: any(s.name == "live session invert" for s in got))
    [session] = [s for s in spans if s.name == "live session invert"]
    [started] = [s for s in spans if s.kind == 2 and s.attributes["url.path"] == "/live/sessions"]
    assert (session.trace_id, session.parent_id) == (started.trace_id, started.span_id)  # the request that started it
    assert session.events == ["runner_receive_stream_request", "runner_receive_first_ingest_segment",
                              "runner_send_first_processed_segment"]
    assert session.status_code != 2 and session.attributes["warmgate.live.frames_out"] > 0
    assert session.end_ns > started.end_ns  # it outlived the request
