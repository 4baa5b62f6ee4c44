"""debug/io-stats over storage/posix: counts, latencies, block-size buckets,
intervals, the profile xattr, dumps, options, GlusterFS's sample volfiles,
and the conformance suite."""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
from pathlib import Path

import pytest
import trio

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Caller, Fd, FopError, Loc
from glusterpy.graph import Graph
from glusterpy.volfile import VolfileError
from glusterpy import volfile as vf
from glusterpy.xlator import Event

from conformance import conformance_tests
from glusterpy.keys import IOSTATS_XATTR
from xlators.debug.io_stats import BLOCK_BUCKETS, FORMAT_VERSION, IoStats

SAMPLES = Path("/work/shared/glusterfs10-samples/volfiles")


def volfile(brick, **options) -> str:
    text = (f"volume s-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\nvolume s-stats\n    type debug/io-stats\n")
    for key, value in options.items():
        text += f"    option {key.replace('_', '-')} {value}\n"
    return text + "    subvolumes s-posix\nend-volume\n"


@contextlib.asynccontextmanager
async def stats_graph(brick, **options):
    graph = Graph.from_text(volfile(brick, **options))
    async with graph.running():
        yield graph.top


PROFILING = {"count_fop_hits": "on", "latency_measurement": "on"}


async def create(top, name: str, flags=os.O_RDWR) -> Fd:
    fd = Fd(flags=flags)
    reply = await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             flags | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    return fd


async def profile(top, suffix: str = "") -> dict:
    key = IOSTATS_XATTR + suffix
    reply = await top.getxattr(Loc.root(), key, None)
    return json.loads(reply.dict[key])


# -- counts and latencies ------------------------------------------------------

async def test_counts_and_latencies_per_fop(brick):
    async with stats_graph(brick, **PROFILING) as top:
        for _ in range(5):
            await top.lookup(Loc.root(), None)
        with pytest.raises(FopError):
            await top.lookup(Loc(path="/nope", pargfid=ROOT_GFID, name="nope"), None)
        fd = await create(top, "f")
        await top.writev(fd, b"x" * 100, 0, 0, None)
        await top.fstat(fd, None)
        await top.fstat(fd, None)
        await top.readv(fd, 100, 0, 0, None)
        await top.release(fd, None)
        fop_stats = top.stats()["fops"]
    # failures count and are timed too, as GlusterFS's callbacks do
    assert {name: f["hits"] for name, f in fop_stats.items()} == {
        "LOOKUP": 6, "CREATE": 1, "WRITE": 1, "FSTAT": 2, "READ": 1, "RELEASE": 1}
    for name, f in fop_stats.items():
        assert f["timed"] == f["hits"], name
        assert 0 < f["min_ns"] <= f["avg_ns"] <= f["max_ns"], name
        assert f["avg_ns"] == pytest.approx(f["total_ns"] / f["timed"]), name
    assert fop_stats["LOOKUP"]["total_ns"] >= 6 * fop_stats["LOOKUP"]["min_ns"]


@pytest.mark.parametrize("options", [{}, PROFILING], ids=["off", "profiling"])
async def test_wrapper_locals_do_not_shadow_fop_arguments(brick, options):
    """Regression: the generated wrapper's local `mode` replaced create's
    `mode` argument, so files were created with mode 0."""
    async with stats_graph(brick, **options) as top:
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                os.O_RDWR | os.O_CREAT, 0o640, 0o022, fd,
                                {"gfid-req": GFID.random()})
        assert made.iatt.mode & 0o7777 == 0o640
        node = await top.mknod(Loc(path="/n", pargfid=ROOT_GFID, name="n"), 0o100604, 0, 0,
                               {"gfid-req": GFID.random()})
        assert node.iatt.mode & 0o7777 == 0o604


async def test_without_profiling_only_bytes_and_opens_are_kept(brick):
    """Both options off (glusterd's default): no per-fop figures, but bytes,
    block sizes and open files, as GlusterFS keeps them whatever the options."""
    async with stats_graph(brick) as top:
        fd = await create(top, "f")
        await top.writev(fd, b"x" * 3000, 0, 0, None)
        await top.readv(fd, 3000, 0, 0, None)
        assert top.open_fds == 1
        s = top.stats()
    assert s["fops"] == {}
    assert (s["data_written"], s["data_read"]) == (3000, 3000)
    assert s["block_write"] == {2048: 1} and s["block_read"] == {2048: 1}


async def test_hits_and_latency_are_independent(brick):
    async with stats_graph(brick, count_fop_hits="on") as top:
        await top.statfs(Loc.root(), None)
        assert top.stats()["fops"]["STATFS"] == {
            "hits": 1, "timed": 0, "total_ns": 0, "avg_ns": 0.0, "min_ns": 0, "max_ns": 0}
    async with stats_graph(brick, latency_measurement="on") as top:
        await top.statfs(Loc.root(), None)
        f = top.stats()["fops"]["STATFS"]
        assert (f["hits"], f["timed"]) == (0, 1) and f["total_ns"] > 0


# -- bytes and block-size buckets ------------------------------------------------

async def test_block_size_buckets_for_reads_and_writes(brick):
    sizes = [1, 2, 511, 512, 513, 4095, 4096, 131072, 131073, 1 << 20]
    async with stats_graph(brick) as top:
        fd = await create(top, "f")
        offset = 0
        for size in sizes:
            await top.writev(fd, b"w" * size, offset, 0, None)
            offset += size
        # a list of buffers counts as one write of their total
        await top.writev(fd, [b"a" * 1000, memoryview(b"b" * 1000)], offset, 0, None)
        offset += 2000
        for size in sizes:
            await top.readv(fd, size, 0, 0, None)
        # a read at the end of the file returns nothing and counts nothing
        await top.readv(fd, 4096, offset, 0, None)
        # a read returning less than asked counts what it returned
        await top.readv(fd, 65536, offset - 100, 0, None)
        s = top.stats()
    expected = {1: 1, 2: 1, 256: 1, 512: 2, 2048: 1, 4096: 1, 131072: 2, 1 << 20: 1}
    assert s["block_write"] == {**expected, 1024: 1}
    assert s["block_read"] == {**expected, 64: 1}
    assert s["data_written"] == sum(sizes) + 2000
    assert s["data_read"] == sum(sizes) + 100


async def test_empty_write_counts_in_the_first_bucket(brick):
    async with stats_graph(brick) as top:
        fd = await create(top, "f")
        await top.writev(fd, b"", 0, 0, None)
        assert top.stats()["block_write"] == {1: 1}
        assert len([1 << i for i in range(BLOCK_BUCKETS)]) == 32


# -- intervals ---------------------------------------------------------------------

async def test_interval_and_cumulative(brick):
    async with stats_graph(brick, **PROFILING) as top:
        fd = await create(top, "f")
        await top.writev(fd, b"a" * 1000, 0, 0, None)
        first = top.stats(interval=True)
        assert first["interval"] == 0 and first["fops"]["WRITE"]["hits"] == 1
        assert first["data_written"] == 1000

        await top.writev(fd, b"b" * 10, 0, 0, None)
        await top.writev(fd, b"c" * 10, 0, 0, None)
        # peeking does not end the interval
        assert top.stats(interval=True, peek=True)["interval"] == 1
        second = top.stats(interval=True)
        assert second["interval"] == 1
        assert second["fops"]["WRITE"]["hits"] == 2 and "CREATE" not in second["fops"]
        assert second["data_written"] == 20 and second["block_write"] == {8: 2}

        third = top.stats(interval=True)
        assert third["interval"] == 2 and third["fops"] == {} and third["data_written"] == 0

        cumulative = top.stats()
        assert cumulative["interval"] == -1
        writes = cumulative["fops"]["WRITE"]
        assert writes["hits"] == 3 and writes["timed"] == 3
        assert writes["min_ns"] == min(first["fops"]["WRITE"]["min_ns"],
                                       second["fops"]["WRITE"]["min_ns"])
        assert writes["max_ns"] == max(first["fops"]["WRITE"]["max_ns"],
                                       second["fops"]["WRITE"]["max_ns"])
        assert writes["total_ns"] == first["fops"]["WRITE"]["total_ns"] + \
            second["fops"]["WRITE"]["total_ns"]
        assert cumulative["data_written"] == 1020
        assert cumulative["block_write"] == {512: 1, 8: 2}
        assert cumulative["started_at"] == first["started_at"]


# -- the profile xattr ---------------------------------------------------------------

async def test_profile_xattr_json(brick):
    async with stats_graph(brick, **PROFILING, volume_id="7872a669-dc65-4f0c-9894-cdb84af9e503"
                           ) as top:
        fd = await create(top, "f")
        await top.writev(fd, b"z" * 8192, 0, 0, None)
        report = await profile(top)
        assert report["version"] == FORMAT_VERSION
        assert report["info_op"] == "all"
        assert (report["xlator"], report["unique_id"], report["side"]) == \
            ("s-stats", "s-stats", "client")
        assert report["volume_id"] == "7872a669-dc65-4f0c-9894-cdb84af9e503"
        assert report["latency_measurement"] is True and report["count_fop_hits"] is True
        assert report["open_fds"]["current"] == 1 and report["open_fds"]["max"] == 1
        for period in ("cumulative", "interval"):
            p = report[period]
            assert p["block_write"] == {"8192": 1}          # JSON keys are strings
            assert p["fops"]["WRITE"]["hits"] == 1
            assert set(p["fops"]["WRITE"]) == {"hits", "timed", "total_ns", "avg_ns",
                                              "min_ns", "max_ns"}
            assert set(p) == {"interval", "started_at", "duration", "data_read",
                              "data_written", "block_read", "block_write", "fops", "upcalls"}
        assert report["cumulative"]["interval"] == -1 and report["interval"]["interval"] == 0
        # the read above ended interval 0; peeking leaves interval 1 open
        assert (await profile(top, ".peek"))["interval"]["interval"] == 1
        assert (await profile(top, ".incremental.peek"))["interval"]["interval"] == 1
        assert "cumulative" not in await profile(top, ".incremental.peek")
        cumulative_only = await profile(top, ".cumulative")
        assert "interval" not in cumulative_only
        assert cumulative_only["cumulative"]["fops"]["WRITE"]["hits"] == 1
        # the getxattrs that asked are answered here and not counted
        assert "GETXATTR" not in cumulative_only["cumulative"]["fops"]
        assert await profile(top, ".clear") == {"version": 1, "info_op": "clear",
                                                "stats_cleared": True}
        after = await profile(top)
        assert after["cumulative"]["fops"] == {} and after["interval"]["interval"] == 0
        assert after["open_fds"]["current"] == 1   # still open: clearing keeps the count


async def test_profile_xattr_refuses_unknown_info_ops_and_passes_other_keys(brick):
    async with stats_graph(brick) as top:
        with pytest.raises(FopError) as e:
            await top.getxattr(Loc.root(), IOSTATS_XATTR + ".everything", None)
        assert e.value.errno == errno.EINVAL
        # a key that only starts like ours is an ordinary xattr
        with pytest.raises(FopError) as e:
            await top.getxattr(Loc.root(), IOSTATS_XATTR + "-other", None)
        assert e.value.errno == errno.ENODATA


# -- open files --------------------------------------------------------------------------

async def test_open_file_counts(brick):
    async with stats_graph(brick) as top:
        a = await create(top, "a")
        b = await create(top, "b")
        c = Fd(flags=os.O_RDONLY)
        await top.open(Loc(path="/a", gfid=a.gfid), os.O_RDONLY, c, None)
        assert (top.open_fds, top.max_open_fds) == (3, 3)
        for fd in (a, b):
            await top.release(fd, None)
        assert (top.open_fds, top.max_open_fds) == (1, 3)
        # an fd never opened through io-stats does not make the count negative
        await top.release(Fd(gfid=a.gfid), None)
        assert top.open_fds == 1
        dirfd = Fd(is_dir=True)
        await top.opendir(Loc.root(), dirfd, None)
        await top.releasedir(dirfd, None)
        assert top.open_fds == 1


async def test_dump_fd_stats_logs_each_file_on_release(brick, caplog):
    caplog.set_level(logging.INFO, logger="s-stats")
    async with stats_graph(brick, dump_fd_stats="on") as top:
        fd = await create(top, "f")
        await top.writev(fd, b"q" * 5000, 0, 0, None)
        await top.readv(fd, 100, 0, 0, None)
        await top.release(fd, None)
    text = caplog.text
    assert "--- fd stats ---" in text and "Filename : /f" in text
    assert "BytesWritten : 5000 bytes" in text and "BytesRead : 100 bytes" in text
    assert "Write 004096b+ : 1" in text and "Read 000064b+ :1" in text


# -- upcalls --------------------------------------------------------------------------------

async def test_upcalls_are_counted_and_passed_up(brick):
    from glusterpy.rpc.callback import CacheInvalidation
    from xlators.protocol.client import Upcall, UpcallType
    seen = []
    graph = Graph.from_text(volfile(brick, count_fop_hits="on"))
    async with graph.running():
        graph.root.listeners.append(lambda event, source, data: seen.append(event))
        top = graph.top
        invalidation = CacheInvalidation(flags=0x8 | 0x400)   # UP_SIZE | UP_XATTR
        top.notify(Event.UPCALL, top.children[0],
                   Upcall(UpcallType.CACHE_INVALIDATION, ROOT_GFID, invalidation))
        top.notify(Event.UPCALL, top.children[0],
                   Upcall(UpcallType.RECALL_LEASE, ROOT_GFID, None))
        assert top.stats()["upcalls"] == {"UPCALL": 2, "CI_IATT": 1, "CI_XATTR": 1,
                                          "LEASE_RECALL": 1}
    assert seen.count(Event.UPCALL) == 2


# -- options ------------------------------------------------------------------------------

async def test_options_change_live(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        await top.statfs(Loc.root(), None)
        assert top.stats()["fops"] == {}
        # as `volume profile start` does: a new volfile, same shape
        graph.reconfigure(vf.parses(volfile(brick, **PROFILING)))
        await top.statfs(Loc.root(), None)
        f = top.stats()["fops"]["STATFS"]
        assert (f["hits"], f["timed"]) == (1, 1)
        top.reconfigure({"count-fop-hits": "on"})
        await top.statfs(Loc.root(), None)
        f = top.stats()["fops"]["STATFS"]
        assert (f["hits"], f["timed"]) == (2, 1)
        top.reconfigure({})
        await top.statfs(Loc.root(), None)
        assert top.stats()["fops"]["STATFS"]["hits"] == 2
        with pytest.raises(Exception, match="unique-id"):
            top.reconfigure({"unique-id": "/elsewhere"})


async def test_log_level_sets_and_gives_back_the_graph_loggers(brick):
    loggers = [logging.getLogger(n) for n in ("glusterpy", "s-posix", "s-stats")]
    before = [lg.level for lg in loggers]
    graph = Graph.from_text(volfile(brick, log_level="DEBUG"))
    async with graph.running():
        assert [lg.level for lg in loggers] == [logging.DEBUG] * 3
        graph.top.reconfigure({"log-level": "NONE"})
        assert all(lg.level > logging.CRITICAL for lg in loggers)
        assert not logging.getLogger("s-posix").isEnabledFor(logging.CRITICAL)
        graph.top.reconfigure({"log-level": "TRACE"})
        assert logging.getLogger("s-posix").level == 5
        graph.top.reconfigure({})
        assert [lg.level for lg in loggers] == before
        graph.top.reconfigure({"log-level": "WARNING"})
        assert logging.getLogger("s-posix").level == logging.WARNING
    assert [lg.level for lg in loggers] == before


def test_bad_option_values_are_refused(brick):
    for options, why in (({"log-level": "LOUD"}, "log-level"),
                         ({"ios-dump-interval": "3601"}, "maximum"),
                         ({"ios-dump-format": "samples"}, "ios-dump-format"),
                         ({"ios-sample-interval": "2"}, "unknown option")):
        with pytest.raises(VolfileError, match=why):
            Graph.from_text(volfile(brick, **{k.replace("-", "_"): v
                                              for k, v in options.items()}))


def sample_io_stats_sections():
    for path in sorted(SAMPLES.glob("*.vol")):
        for vdef in vf.load(path).volumes:
            if vdef.type == "debug/io-stats":
                yield pytest.param(path, vdef, id=f"{path.name}:{vdef.name}")


@pytest.mark.parametrize("path,vdef", list(sample_io_stats_sections()))
async def test_sample_volfile_io_stats_sections_load(path, vdef, brick):
    """Every io-stats section glusterd 10 wrote loads, over our posix instead
    of the translators glusterpy lacks."""
    text = f"volume p\n    type storage/posix\n    option directory {brick}\nend-volume\n"
    text += f"volume {vdef.name}\n    type {vdef.type}\n"
    text += "".join(f"    option {k} {v}\n" for k, v in vdef.options.items())
    text += "    subvolumes p\nend-volume\n"
    graph = Graph.from_text(text, filename=str(path))
    async with graph.running():
        top = graph.top
        assert isinstance(top, IoStats)
        assert top.unique_id == vdef.options.get("unique-id", vdef.name)
        report = await profile(top)
        assert report["volume_id"] == vdef.options.get("volume-id")


def test_the_samples_are_there():
    assert len(list(sample_io_stats_sections())) >= 20


# -- dumps ---------------------------------------------------------------------------------

def json_objects(text: str) -> list[dict]:
    decoder, out, pos = json.JSONDecoder(), [], 0
    while pos < len(text.rstrip()):
        obj, pos = decoder.raw_decode(text, pos)
        out.append(obj)
        while pos < len(text) and text[pos].isspace():
            pos += 1
    return out


async def test_setxattr_dump_writes_text_and_json_files(brick, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    async with stats_graph(brick, **PROFILING) as top:
        top.run_dir = str(run_dir)
        fd = await create(top, "f")
        await top.writev(fd, b"d" * 4096, 0, 0, None)
        await top.setxattr(Loc.root(), {"trusted.io-stats-dump": b"sub/dump\0"}, 0, None)
        text = (run_dir / "sub-dump.s-stats").read_text()
        assert "=== Cumulative stats ===" in text and "=== Interval 0 stats ===" in text
        assert "  BytesWritten : 4096" in text
        assert "WRITE" in text and "Current open fd's: 1 Max open fd's: 1" in text

        key = f"trusted.io-stats-{os.getpid()}_json_dump"
        await top.setxattr(Loc.root(), {key: "/stats.json"}, 0, None)
        aggregate, interval = json_objects((run_dir / "stats.json.s-stats").read_text())
        assert aggregate["gluster.s-stats.aggr.write_4kb"] == 1
        assert aggregate["gluster.s-stats.aggr.fop.write.count"] == 1
        assert aggregate["gluster.s-stats.aggr.bytes_written"] == 4096
        assert aggregate["gluster.s-stats.aggr.fds.open_count"] == 1
        assert "gluster.s-stats.inter.bytes_written_per_sec" in interval

        # no way out of the run directory
        await top.setxattr(Loc.root(), {"trusted.io-stats-dump": "../escape"}, 0, None)
        assert sorted(os.listdir(run_dir)) == ["stats.json.s-stats", "sub-dump.s-stats"]
        assert not (tmp_path / "escape.s-stats").exists()


async def test_a_brick_refuses_setxattr_dumps(brick, tmp_path):
    """CVE-2018-14659: a client must not make a brick write files; a fop that
    arrived through protocol/server carries its client."""
    async with stats_graph(brick) as top:
        top.run_dir = str(tmp_path)
        token = fops.caller.set(Caller(client=object()))
        try:
            await top.setxattr(Loc.root(), {"trusted.io-stats-dump": "x"}, 0, None)
        finally:
            fops.caller.reset(token)
        assert not (tmp_path / "x.s-stats").exists()


async def test_periodic_dump(brick, tmp_path, autojump_clock):
    graph = Graph.from_text(volfile(brick, ios_dump_interval=5, ios_dump_format="text"))
    graph.top.stats_dir = str(tmp_path / "stats")
    async with graph.running():
        top = graph.top
        dump = tmp_path / "stats" / "glusterfs_s-stats.dump"
        await trio.sleep(4)
        assert not dump.exists()
        await trio.sleep(2)
        assert "=== Cumulative stats ===" in dump.read_text()
        top.reconfigure({"ios-dump-interval": "0"})
        dump.unlink()
        await trio.sleep(20)
        assert not dump.exists()
        top.reconfigure({"ios-dump-interval": "1"})
        await trio.sleep(1.5)
        assert json_objects(dump.read_text())[0]["gluster.s-stats.aggr.uptime"] >= 0


# -- over the wire: what the management daemon does --------------------------------------

def brick_with_io_stats(directory) -> str:
    """server -> io-stats -> posix: glusterd puts io-stats right under the
    server, named after the brick path and with unique-id set to it."""
    return (f"volume w-posix\n    type storage/posix\n    option directory {directory}\n"
            f"end-volume\n"
            f"volume {directory}\n    type debug/io-stats\n    option unique-id {directory}\n"
            f"    option count-fop-hits on\n    option latency-measurement on\n"
            f"    subvolumes w-posix\nend-volume\n"
            f"volume w-server\n    type protocol/server\n"
            f"    option transport.socket.listen-port 0\n"
            f"    option transport.socket.bind-address 127.0.0.1\n"
            f"    option auth.addr.{directory}.allow *\n"
            f"    subvolumes {directory}\nend-volume\n")


@contextlib.asynccontextmanager
async def client(port: int, subvolume: str):
    """A one-translator client graph, as glusterpyd's profile probe is."""
    graph = Graph.from_text(f"volume c\n    type protocol/client\n"
                            f"    option remote-host 127.0.0.1\n    option remote-port {port}\n"
                            f"    option remote-subvolume {subvolume}\nend-volume\n")
    async with graph.running():
        assert await graph.wait_child_up(10), "the client never came up"
        yield graph


async def test_profile_of_a_brick_through_a_client(brick, tmp_path):
    text = brick_with_io_stats(brick)
    brick_graph = Graph.from_text(text)
    async with brick_graph.running():
        stats_xl = brick_graph.by_name[str(brick)]
        assert brick_graph.top.children == [stats_xl]
        run_dir = tmp_path / "run"
        run_dir.mkdir()
        stats_xl.run_dir = str(run_dir)
        async with client(brick_graph.top.port, str(brick)) as graph:
            top = graph.top
            fd = await create(top, "f")
            await top.writev(fd, b"n" * 70000, 0, 0, None)
            report = await profile(top)
            assert report["side"] == "brick" and report["unique_id"] == str(brick)
            assert report["cumulative"]["block_write"] == {"65536": 1}
            assert report["cumulative"]["fops"]["WRITE"]["hits"] == 1
            assert report["interval"]["fops"]["CREATE"]["hits"] == 1
            assert (await profile(top, ".peek"))["interval"]["interval"] == 1
            # the brick refuses to dump to a file at a client's request
            await top.setxattr(Loc.root(), {"trusted.io-stats-dump": "x"}, 0, None)
            assert os.listdir(run_dir) == []


# -- gfapi and the conformance suite ----------------------------------------------------------

def test_gfapi_keeps_its_inline_path(brick, tmp_path):
    from glusterpy.gfapi import Volume
    path = tmp_path / "v.vol"
    path.write_text(volfile(brick, **PROFILING))
    with Volume.from_volfile(path) as vol:
        assert vol.runs_inline
        with vol.fopen("/g", "w") as f:
            f.write(b"gfapi" * 1000)
        assert vol.stat("/g").st_size == 5000


@contextlib.asynccontextmanager
async def io_stats_stack(tmp_path):
    brick = tmp_path / "brick"
    brick.mkdir()
    yield Graph.from_text(volfile(brick, **PROFILING))


test_io_stats_conformance = conformance_tests(io_stats_stack)
