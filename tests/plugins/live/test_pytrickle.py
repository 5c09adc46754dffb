"""Wire compatibility with PyTrickle, Livepeer's Python trickle client (the code its BYOC
workers and the ai-runner's streaming are built on): PyTrickle's own publisher feeds a session
on warmgate's trickle server and PyTrickle's own subscriber reads the output back. PyTrickle
lives in .venv-pytrickle (scripts/install-pytrickle; .ci/run installs it): it pins an older PyAV
and pulls opencv, which warmgate's environment does not take."""

import subprocess
from pathlib import Path

import pytest

from warmgate import Settings
from warmgate.plugins.live.settings import LiveSettings
from warmgate.testing import EchoPipeline
from warmgate.testing.live import clip, decode

REPO = Path(__file__).resolve().parents[3]
PYTRICKLE_PYTHON = REPO / ".venv-pytrickle" / "bin" / "python"

pytestmark = pytest.mark.skipif(not PYTRICKLE_PYTHON.exists(), reason=f"no PyTrickle: {PYTRICKLE_PYTHON} does not exist "
                                "(run scripts/install-pytrickle; CI does)")

CLIENT = """
import asyncio, pathlib, sys
import aiohttp
from pytrickle.publisher import TricklePublisher
from pytrickle.subscriber import TrickleSubscriber

async def main(publish_url, subscribe_url, out_dir, *inputs):
    async def read():
        count = 0
        async with TrickleSubscriber(subscribe_url, start_seq=0) as subscriber:
            while (segment := await subscriber.next()) is not None:
                data = bytearray()
                while chunk := await segment.read():
                    data += chunk
                if data:
                    pathlib.Path(out_dir, f"{count}.ts").write_bytes(data)
                    count += 1

    reading = asyncio.ensure_future(read())
    publisher = TricklePublisher(publish_url, "video/mp2t")
    await publisher.start()
    for path in inputs:
        writer = await publisher.next()
        await writer.write(pathlib.Path(path).read_bytes())
        await writer.close()
        await asyncio.sleep(0.5)  # as a live source would: PyTrickle preconnects the next segment meanwhile
    await asyncio.sleep(1)  # PyTrickle's close cancels POSTs still sending; let the last one finish
    await publisher.close()
    async with aiohttp.ClientSession() as session:  # PyTrickle skips the DELETE; a gateway sends it
        async with session.delete(publish_url) as response:
            assert response.status == 200, response.status
    await asyncio.wait_for(reading, 60)
    print("read", len(list(pathlib.Path(out_dir).glob("*.ts"))), flush=True)

asyncio.run(main(*sys.argv[1:]))
"""


def test_pytrickle_publishes_to_a_session_and_reads_its_output(warmgate_server, tmp_path):
    _, client = warmgate_server(Settings(sections=[LiveSettings(max_lag=600)]), pipelines={"echo": EchoPipeline().spec})
    urls = client.post("/live/sessions", json={"params": {"width": 448, "height": 384}}).json()
    inputs = []
    for n, segment in enumerate(clip(seconds=5, shade=90, audio=True)):
        inputs.append(tmp_path / f"in-{n}.ts")
        inputs[-1].write_bytes(segment)
    out = tmp_path / "out"
    out.mkdir()
    done = subprocess.run([str(PYTRICKLE_PYTHON), "-c", CLIENT, urls["publish_url"], urls["subscribe_url"], str(out),
                           *map(str, inputs)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    segments = [(out / f"{n}.ts").read_bytes() for n in range(len(list(out.glob("*.ts"))))]
    assert len(segments) == 3, done.stderr[-4000:]  # 2 s + 2 s + 1 s
    video, audio = decode(segments)
    assert len(video) == 120 and {(f.width, f.height) for f in video} == {(448, 384)}
    assert abs(sum(f.samples for f in audio) / 48000 - 5) < 0.15
    [session] = client.get("/live/sessions").json()["sessions"]
    assert (session["state"], session["frames_out"]) == ("OFFLINE", 120)
