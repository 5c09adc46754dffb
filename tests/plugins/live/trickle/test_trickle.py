"""The trickle server over real HTTP (uvicorn on 127.0.0.1), checked on the wire with httpx and
driven by warmgate's own publisher and subscriber."""

import asyncio

import httpx
import pytest
from litestar import Litestar

from warmgate.plugins.live.trickle import TrickleServer, trickle_route
from warmgate.plugins.live.trickle.client import TricklePublisher, TrickleSubscriber
from warmgate.testing import serve


@pytest.fixture
def trickle():
    server = TrickleServer(autocreate=True)
    with serve(Litestar(route_handlers=[trickle_route(server)])) as live:
        yield server, f"{live.url}/ai/trickle"


def test_a_segment_is_relayed_while_it_is_written_from_byte_0(trickle):
    _, base = trickle

    async def run():
        async with TricklePublisher(f"{base}/stream", "video/MP2T") as publisher, httpx.AsyncClient() as http:
            segment = await publisher.next()
            await segment.write(b"first ")
            await asyncio.sleep(0.05)
            async with http.stream("GET", f"{base}/stream/0") as late:  # joins mid-segment
                assert late.status_code == 200
                assert (late.headers["lp-trickle-seq"], late.headers["content-type"]) == ("0", "video/MP2T")
                chunks = late.aiter_raw()
                assert await chunks.__anext__() == b"first "  # what was written before it joined
                await segment.write(b"second")
                assert await chunks.__anext__() == b"second"  # and what comes after, as it comes
                await segment.close()
                assert [c async for c in chunks] == []

    asyncio.run(run())


def test_readers_wait_for_the_next_segment_and_follow_the_live_edge(trickle):
    server, base = trickle

    async def run():
        server.create("live")
        async with TricklePublisher(f"{base}/live") as publisher, TrickleSubscriber(f"{base}/live", start=-1) as sub:
            waiting = asyncio.ensure_future(sub.next())  # -1: blocks until segment 0 starts
            await asyncio.sleep(0.05)
            assert not waiting.done()
            async with await publisher.next() as segment:
                await segment.write(b"zero")
            reader = await waiting
            assert (reader.seq, await reader.read()) == (0, b"zero")
            for n in range(1, 8):  # beyond the 5 kept: the subscriber keeps up
                async with await publisher.next() as segment:
                    await segment.write(f"seg{n}".encode())
                reader = await sub.next()
                assert (reader.seq, await reader.read()) == (n, f"seg{n}".encode())
        assert server.channels["live"].closed  # closing the publisher closed the channel

    asyncio.run(run())


def test_a_reader_that_fell_behind_gets_470_with_the_latest_then_catches_up(trickle):
    _, base = trickle

    async def run():
        async with TricklePublisher(f"{base}/busy") as publisher:
            for n in range(8):
                async with await publisher.next() as segment:
                    await segment.write(f"s{n}".encode())
            async with httpx.AsyncClient() as http:
                gone = await http.get(f"{base}/busy/0")
                assert gone.status_code == 470 and gone.text == "Entry not found"
                assert (gone.headers["lp-trickle-latest"], gone.headers["lp-trickle-seq"]) == ("8", "0")
                assert (await http.get(f"{base}/busy/next")).text == "8"
                current = await http.get(f"{base}/busy/-2")  # the current segment, whole
                assert (current.status_code, current.headers["lp-trickle-seq"], current.text) == (200, "7", "s7")
                assert current.headers["lp-trickle-latest"] == "8"  # it is behind the live edge
            async with TrickleSubscriber(f"{base}/busy", start=2) as sub:  # too old: jumps to the edge
                waiting = asyncio.ensure_future(sub.next())
                await asyncio.sleep(0.1)  # its 470 came back and it waits at the edge (8), not past it
                async with await publisher.next() as segment:
                    await segment.write(b"s8")
                reader = await waiting
                assert (reader.seq, await reader.read()) == (8, b"s8")

    asyncio.run(run())


def test_closing_the_channel_ends_readers_and_later_requests_get_404(trickle):
    server, base = trickle
    server.linger = 0.3

    async def run():
        server.create("gone", "application/json")
        async with TrickleSubscriber(f"{base}/gone") as sub, httpx.AsyncClient() as http:
            waiting = asyncio.ensure_future(sub.next())
            await asyncio.sleep(0.05)
            assert (await http.delete(f"{base}/gone")).status_code == 200
            assert await waiting is None and sub.ended
            late = await http.get(f"{base}/gone/1")  # lingering: a late reader learns it ended
            assert (late.status_code, late.headers["lp-trickle-closed"]) == (200, "terminated")
            refused = await http.post(f"{base}/gone/1", content=b"x")
            assert refused.headers["lp-trickle-closed"] == "terminated"
            await asyncio.sleep(0.5)
            assert (await http.get(f"{base}/gone/0")).status_code == 404
            assert (await http.get(f"{base}/gone/next")).status_code == 404
            assert (await http.delete(f"{base}/gone")).status_code == 400

    asyncio.run(run())


def test_bad_requests_and_unknown_channels(trickle):
    server, base = trickle
    server.autocreate = False
    with httpx.Client() as http:
        refused = http.post(f"{base}/nobody/0", content=b"x")
        assert refused.status_code == 404 and refused.headers["connection"] == "close"
        assert http.post(f"{base}/nobody", headers={"Expect-Content": "video/MP2T"}).status_code == 404
        server.create("known")
        assert http.get(f"{base}/known/abc").status_code == 400
        assert http.delete(f"{base}/known/3").status_code == 400  # no such segment in its slot
        assert http.put(f"{base}/known/0").status_code in (404, 405)
        assert http.get(f"{base}/a/b/c").status_code == 404


def test_delete_of_a_segment_frees_its_waiting_reader(trickle):
    server, base = trickle

    async def run():
        server.create("drop")
        async with httpx.AsyncClient() as http:
            waiting = asyncio.ensure_future(http.get(f"{base}/drop/0"))
            await asyncio.sleep(0.05)
            assert (await http.delete(f"{base}/drop/0")).status_code == 200
            dropped = await waiting
            assert (dropped.status_code, dropped.content, dropped.headers["lp-trickle-seq"]) == (200, b"", "0")

    asyncio.run(run())


def test_idle_channels_are_swept_except_underscored_ones(trickle):
    server, _ = trickle

    async def run():
        server.create("old")
        server.create("_changes")
        assert server.sweep(now=10**9) == ["old"]
        assert server.channels["old"].closed and not server.channels["_changes"].closed

    asyncio.run(run())


def test_a_publisher_retries_a_segment_whose_connection_failed_at_the_same_seq():
    import aiohttp

    from warmgate.testing.process import free_port

    async def run():
        publisher = TricklePublisher(f"http://127.0.0.1:{free_port()}/ai/trickle/gone")  # nothing listens
        first = await publisher.next()  # seq 0, and seq 1 preconnects
        with pytest.raises(aiohttp.ClientError):
            await first.close()
        await asyncio.sleep(0.2)  # seq 1's preconnect has failed too, before a byte
        second = await publisher.next()
        assert second.seq == 1 and not second.failed  # seq 1 again, on a fresh connection
        with pytest.raises(aiohttp.ClientError):
            await second.close()
        await publisher.close()

    asyncio.run(run())
