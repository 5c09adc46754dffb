"""POST /audio-to-text over HTTP with a tiny Whisper model, on audio files PyAV writes in the
containers users send (wav, mp3, flac, ogg, webm, m4a), and every bad-input case."""

import io
import json
import socket
from urllib.parse import urlparse

import numpy as np
import pytest

from warmgate import FunctionConfig, Settings
from warmgate.core.plugins import get_pipelines
from warmgate.core.settings import Price

FORMATS = [("wav", "pcm_s16le", 44100), ("mp3", "libmp3lame", 44100), ("flac", "flac", 44100),
           ("ogg", "libopus", 48000), ("webm", "libopus", 48000), ("ipod", "aac", 44100)]
SUFFIX = {"ipod": "m4a"}


def encode_audio(fmt="wav", codec="pcm_s16le", rate=44100, seconds=1.5):
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "stereo"
        t = np.arange(int(rate * seconds)) / rate
        tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


def empty_wav():
    import wave

    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
    return buffer.getvalue()


def video_without_audio():
    import av
    from PIL import Image

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=5)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for packet in [*stream.encode(av.VideoFrame.from_image(Image.new("RGB", (32, 32)))), *stream.encode()]:
            container.mux(packet)
    return buffer.getvalue()


@pytest.fixture(scope="session")
def tiny_whisper(tiny_model_dir):
    return str(tiny_model_dir(get_pipelines()["audio-to-text"]))


@pytest.fixture
def asr(warmgate_server, tiny_whisper):
    config = FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper, price=Price(price_per_unit=1),
                            options={"max_new_tokens": 12, "batch_size": 2})
    _, client = warmgate_server(Settings(functions=[config]))
    return client


def transcribe(client, data, name="speech.wav", **fields):
    return client.post("/audio-to-text", files={"audio": (name, data)}, data=fields)


@pytest.mark.parametrize(("fmt", "codec", "rate"), FORMATS)
def test_common_containers_are_transcribed_and_priced_by_duration(asr, fmt, codec, rate):
    r = transcribe(asr, encode_audio(fmt, codec, rate), f"speech.{SUFFIX.get(fmt, fmt)}")
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"text", "chunks"} and isinstance(body["text"], str)
    for chunk in body["chunks"]:
        assert set(chunk) == {"timestamp", "text"} and len(chunk["timestamp"]) == 2
    assert abs(int(r.headers["x-warmgate-units"]) - 1500) <= 50  # ms of audio (AAC adds priming samples)


def test_timestamp_modes(asr):
    audio = encode_audio()
    segments = transcribe(asr, audio, return_timestamps="sentence").json()
    words = transcribe(asr, audio, return_timestamps="word").json()
    none = transcribe(asr, audio, return_timestamps="false").json()
    assert none["chunks"] == []
    for body in (segments, words):
        assert all(isinstance(c["timestamp"][0], float) for c in body["chunks"])
    r = transcribe(asr, audio, return_timestamps="paragraph")
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "return_timestamps"]


def test_long_audio_is_transcribed_in_30_second_windows(asr):
    r = transcribe(asr, encode_audio("flac", "flac", 16000, seconds=65), "long.flac")
    assert r.status_code == 200, r.text
    assert r.headers["x-warmgate-units"] == "65000"
    stamps = [c["timestamp"] for c in r.json()["chunks"]]
    assert stamps == sorted(stamps, key=lambda s: s[0])


@pytest.mark.parametrize(("data", "status", "words"), [
    (b"these bytes are not audio", 415, "Unsupported audio format or malformed file."),
    (b"", 400, "empty"),
    (None, 400, "no samples"),  # a valid WAV header with no frames
])
def test_bad_audio_is_refused_with_the_reason(asr, data, status, words):
    r = transcribe(asr, empty_wav() if data is None else data)
    assert r.status_code == status, r.text
    assert words in r.json()["detail"]["msg"]


def test_a_video_without_an_audio_stream_is_a_415(asr):
    r = transcribe(asr, video_without_audio(), "clip.mp4")
    assert r.status_code == 415 and "no audio stream" in r.json()["detail"]["msg"]


def test_metadata_must_be_a_json_object(asr):
    assert transcribe(asr, encode_audio(), metadata=json.dumps({"job": 7})).status_code == 200
    r = transcribe(asr, encode_audio(), metadata="{job")
    assert r.status_code == 400 and "metadata" in r.json()["detail"]["msg"]


def test_a_missing_audio_field_is_a_422(asr):
    r = asr.post("/audio-to-text", files={"file": ("a.wav", encode_audio())})
    assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", "audio"]


def test_a_body_over_50_mb_is_a_413(warmgate_server, tiny_whisper):
    server, _ = warmgate_server(Settings(functions=[FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper)]))
    url = urlparse(server.url)
    with socket.create_connection((url.hostname, url.port), timeout=10) as sock:
        sock.sendall(b"POST /audio-to-text HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                     b"Content-Length: %d\r\n\r\n" % (51 * 2**20))
        assert b" 413 " in sock.recv(4096).split(b"\r\n", 1)[0]


@pytest.mark.parametrize(("fmt", "codec", "rate"), [("wav", "pcm_s16le", 16000), ("ogg", "libopus", 48000)])
def test_audio_longer_than_the_limit_is_a_413_before_the_model_runs(warmgate_server, tiny_whisper, fmt, codec, rate):
    config = FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper, options={"max_audio_seconds": 2})
    server, client = warmgate_server(Settings(functions=[config]))
    r = transcribe(client, encode_audio(fmt, codec, rate, seconds=3), f"long.{fmt}")
    assert r.status_code == 413, r.text
    assert "3.0 s long" in r.json()["detail"]["msg"] and "at most 2 s" in r.json()["detail"]["msg"]
    assert transcribe(client, encode_audio(fmt, codec, rate, seconds=1), f"short.{fmt}").status_code == 200


def test_audio_whose_container_states_no_duration_is_stopped_while_decoding(warmgate_server, tiny_whisper):
    import av

    buffer = io.BytesIO()  # raw ADTS AAC: no header with a duration, frames only
    with av.open(buffer, "w", format="adts") as container:
        stream = container.add_stream("aac", rate=16000)
        stream.layout = "mono"
        tone = (0.3 * np.sin(2 * np.pi * 440 * np.arange(16000 * 3) / 16000)).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(tone.reshape(1, -1), format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in [*stream.encode(frame), *stream.encode()]:
            container.mux(packet)
    config = FunctionConfig(pipeline="audio-to-text", model_id=tiny_whisper, options={"max_audio_seconds": 2})
    _, client = warmgate_server(Settings(functions=[config]))
    r = transcribe(client, buffer.getvalue(), "stream.aac")
    assert r.status_code == 413 and "at most 2 s" in r.json()["detail"]["msg"], r.text
