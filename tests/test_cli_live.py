"""Live reconfiguration: volume set, add-brick and remove-brick on a volume
that clients have mounted.

glusterpyd regenerates the volfiles, reloads (SIGHUP) or restarts the
bricks, and sends FETCHSPEC to the clients connected to it; gfapi and our
FUSE mount fetch the new volfile and either reconfigure the running graph
(same shape) or switch graphs (new shape) - with files kept open across
the switch and no call failing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")


def graph_types(vol: Volume) -> set[str]:
    return {xl.type_name for xl in vol._avol.graph.by_name.values()}


def test_gfapi_follows_set_and_add_brick_without_losing_open_files(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "live", f"127.0.0.1:{tmp_path / 'b1'}",
             f"127.0.0.1:{tmp_path / 'b2'}")
        d.ok("volume", "start", "live")
        with Volume("127.0.0.1", "live", port=d.port) as vol:
            assert "performance/io-cache" in graph_types(vol)
            f = vol.fopen("/kept-open", "w+")
            f.write(b"before|")
            stop = threading.Event()
            errors: list[BaseException] = []
            written = []

            def writer():  # in-flight IO while the graph switches under it
                i = 0
                try:
                    while not stop.is_set():
                        with vol.fopen(f"/w{i % 20}", "w") as g:
                            g.write(b"%d" % i)
                        written.append(i)
                        i += 1
                except BaseException as e:
                    errors.append(e)
            t = threading.Thread(target=writer)
            t.start()
            try:
                # same shape: options reach the running graph
                d.ok("volume", "set", "live", "performance.cache-size", "48MB")
                wait_for(lambda: vol._avol.graph.by_name["live-io-cache"].opts["cache-size"]
                         == 48 << 20, what="cache-size reconfigured in the client")
                # a new shape: io-cache leaves the graph - a graph switch
                d.ok("volume", "set", "live", "performance.io-cache", "off")
                wait_for(lambda: "performance/io-cache" not in graph_types(vol),
                         what="the client switched to a graph without io-cache")
                f.write(b"after-set|")
                # another brick: a graph switch to three subvolumes
                d.ok("volume", "add-brick", "live", f"127.0.0.1:{tmp_path / 'b3'}")
                wait_for(lambda: len(vol._avol.graph.by_name["live-dht"].children) == 3,
                         what="the client switched to the three-brick graph")
                f.write(b"after-add")
                assert f.pread(100, 0) == b"before|after-set|after-add"
                time.sleep(0.5)
            finally:
                stop.set()
                t.join(30)
            assert not errors, errors
            assert len(written) > 5
            f.close()
            # a new directory is laid out over all three bricks (the root
            # keeps its two-brick layout until a rebalance fix-layout)
            vol.mkdir("/new")
            for i in range(30):
                with vol.fopen(f"/new/n{i}", "w") as g:
                    g.write(b"n")
        assert os.listdir(tmp_path / "b3" / "new")
        status = d.ok("volume", "status", "live", "--json").json()["volumes"][0]
        assert [b["online"] for b in status["bricks"]] == [True] * 3


def test_brick_options_reload_or_restart(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "opts", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "start", "opts")
        pid = d.ok("volume", "status", "opts", "--json").json()["volumes"][0]["bricks"][0]["pid"]
        # auth.allow is reconfigurable on protocol/server: the brick reloads, same process
        d.ok("volume", "set", "opts", "auth.allow", "127.0.0.1")
        brick_log = next((d.workdir / "logs" / "bricks").glob("*.log"))
        wait_for(lambda: "brick reconfigured" in brick_log.read_text(), what="brick reload")
        vol_text = next((d.workdir / "vols" / "opts").glob("opts.127.0.0.1.*.vol")).read_text()
        assert f"option auth.addr.{tmp_path / 'b1'}.allow 127.0.0.1" in vol_text
        rows = d.ok("volume", "status", "opts", "--json").json()["volumes"][0]["bricks"]
        assert rows[0]["pid"] == pid and rows[0]["online"]
        # a client outside the allowed addresses is refused by the brick
        d.ok("volume", "set", "opts", "auth.allow", "10.99.99.99")
        with pytest.raises(Exception, match="refused|went CHILD_DOWN|not reachable"):
            with Volume("127.0.0.1", "opts", port=d.port):
                pass
        d.ok("volume", "reset", "opts", "auth.allow")
        with Volume("127.0.0.1", "opts", port=d.port) as vol:
            vol.listdir("/")


def test_remove_brick_cycle(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        b = [f"127.0.0.1:{tmp_path / n}" for n in ("b1", "b2", "b3")]
        d.ok("volume", "create", "shrink", *b)
        d.ok("volume", "start", "shrink")
        r = d.ok("volume", "remove-brick", "shrink", b[2], "start")
        assert "volume remove-brick start: success" in r.out
        assert "decommissioned-bricks shrink-client-2" in \
            (d.workdir / "vols/shrink/shrink.tcp-fuse.vol").read_text()
        wait_for(lambda: "completed" in d.ok("volume", "remove-brick", "shrink", b[2],
                                             "status").out, what="the migration off b3")
        d.ok("--yes", "volume", "remove-brick", "shrink", b[2], "commit")
        info = d.ok("volume", "info", "shrink", "--json").json()["volumes"][0]
        assert [x["name"] for x in info["bricks"]] == b[:2]
        # a brick with data is drained by the migration before commit removes it
        with Volume("127.0.0.1", "shrink", port=d.port) as vol:
            for i in range(20):
                with vol.fopen(f"/f{i}", "w") as g:
                    g.write(b"x%d" % i)
        assert [n for n in os.listdir(tmp_path / "b2") if n.startswith("f")]
        d.ok("volume", "remove-brick", "shrink", b[1], "start")
        wait_for(lambda: "completed" in d.ok("volume", "remove-brick", "shrink", b[1],
                                             "status").out, what="the migration off b2")
        d.ok("--yes", "volume", "remove-brick", "shrink", b[1], "commit")
        assert len(d.ok("volume", "info", "shrink", "--json").json()["volumes"][0]
                   ["bricks"]) == 1
        with Volume("127.0.0.1", "shrink", port=d.port) as vol:
            assert sorted(vol.listdir("/")) == sorted(f"f{i}" for i in range(20))
            assert all(vol.open(f"/f{i}").read() == b"x%d" % i for i in range(20))


def test_profile_counts_fops_per_brick(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "prof", f"127.0.0.1:{tmp_path / 'b1'}",
             f"127.0.0.1:{tmp_path / 'b2'}")
        d.ok("volume", "start", "prof")
        r = d.ok("volume", "profile", "prof", "start")
        assert r.out.strip() == "Starting volume profile on prof has been successful"
        with Volume("127.0.0.1", "prof", port=d.port) as vol:
            for i in range(10):
                with vol.fopen(f"/p{i}", "w") as f:
                    f.write(b"y" * 4096)
        doc = d.ok("volume", "profile", "prof", "info", "--json").json()
        assert len(doc["bricks"]) == 2
        total_writes = sum(b["report"]["cumulative"]["fops"].get("WRITE", {}).get("hits", 0)
                           for b in doc["bricks"])
        assert total_writes == 10
        text = d.ok("volume", "profile", "prof", "info").out
        assert f"Brick: 127.0.0.1:{tmp_path / 'b1'}" in text and "WRITE" in text
        assert "Data Written:" in text
        d.ok("volume", "profile", "prof", "stop")
        r = d.cli("volume", "profile", "prof", "info")
        assert r.rc != 0 and "not started" in r.err


def test_fuse_mount_switches_graphs_without_remount(tmp_path):
    if shutil.which("fusermount3") is None or not os.path.exists("/dev/fuse"):
        pytest.skip("FUSE is not available here")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log = tmp_path / "mount.log"
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "fz", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "start", "fz")
        subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "mount", "-o",
                        f"log-file={log},log-level=INFO", f"127.0.0.1:{d.port}:/fz", str(mnt)],
                       check=True, timeout=60)
        try:
            with open(mnt / "held", "w+b") as held:
                held.write(b"one|")
                held.flush()
                d.ok("volume", "set", "fz", "performance.io-cache", "off")
                wait_for(lambda: "switched to the new graph" in log.read_text(),
                         what="the FUSE mount switched graphs")
                held.write(b"two")
                held.flush()
                held.seek(0)
                assert held.read() == b"one|two"
            d.ok("volume", "add-brick", "fz", f"127.0.0.1:{tmp_path / 'b2'}")
            wait_for(lambda: log.read_text().count("switched to the new graph") >= 2,
                     what="the second switch")
            (mnt / "d").mkdir()
            for i in range(20):
                (mnt / "d" / f"m{i}").write_bytes(b"m")
            assert sorted(p.name for p in (mnt / "d").iterdir()) == sorted(
                f"m{i}" for i in range(20))
            assert os.listdir(tmp_path / "b2" / "d")
        finally:
            subprocess.run(["fusermount3", "-u", str(mnt)], capture_output=True)
            wait_for(lambda: not os.path.ismount(mnt), what="unmount")


def test_replica_3_arbiter_1(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        b = [f"127.0.0.1:{tmp_path / n}" for n in ("r1", "r2", "r3")]
        d.ok("volume", "create", "arb", "replica", "3", "arbiter", "1", *b)
        info = d.ok("volume", "info", "arb").out
        assert "Number of Bricks: 1 x (2 + 1) = 3" in info and f"Brick3: {b[2]} (arbiter)" in info
        d.ok("volume", "start", "arb")
        with Volume("127.0.0.1", "arb", port=d.port) as vol:
            with vol.fopen("/img", "w") as f:
                f.write(b"q" * 100_000)
            assert vol.open("/img").read() == b"q" * 100_000
        sizes = [os.stat(tmp_path / n / "img").st_size for n in ("r1", "r2", "r3")]
        assert sizes == [100_000, 100_000, 0]  # the arbiter keeps names, not data


def test_device_lv_volume_serves_logical_volumes_as_files(tmp_path):
    from test_bd_lvm import LoopVG, need_lvm
    from test_glusterd_support import snapshot
    need_lvm()
    vg = LoopVG(tmp_path)
    try:
        with running_daemon(tmp_path / "wd") as d:
            before = snapshot(d.workdir)
            for argv, message in [
                (["volume", "create", "bdv", "device", "lv", "127.0.0.1:/no-such-vg"],
                 "Volume group no-such-vg does not exist"),
                (["volume", "create", "bdv", "device", "lv", f"127.0.0.1:/{vg.name}/x"],
                 "names a volume group"),
                (["volume", "create", "bdv", "device", "lv", "127.0.0.1:/-bad"],
                 "not a valid volume group name"),
                (["volume", "create", "bdv", "device", "floppy", f"127.0.0.1:/{vg.name}"],
                 "not supported")]:
                r = d.cli(*argv)
                assert r.rc != 0 and message in r.err, (argv, r.text)
                assert snapshot(d.workdir) == before
            d.ok("volume", "create", "bdv", "device", "lv", f"127.0.0.1:/{vg.name}")
            d.ok("volume", "start", "bdv")
            brick = next((d.workdir / "vols" / "bdv").glob("bdv.127.0.0.1.*.vol")).read_text()
            assert "type storage/bd" in brick and f"option export {vg.name}" in brick
            with Volume("127.0.0.1", "bdv", port=d.port) as vol:
                with vol.fopen("/disk1", "w") as f:
                    f.ftruncate(8 << 20)
                    f.write(b"on an LV")
                assert vol.stat("/disk1").st_size == 8 << 20
                assert vol.open("/disk1").read(8) == b"on an LV"
            assert vg.lvs() == {"disk1": 8 << 20}
            assert vg.read_lv("disk1")[:8] == b"on an LV"
            # the bd commands against the daemon's volume (issue 9 point 3);
            # d.cli names the daemon with --remote-host, as for volume commands
            d.ok("bd", "create", f"bdv:/{vg.name}/disk2", "4M")
            d.ok("bd", "clone", f"bdv:/{vg.name}/disk1", "copy1")
            d.ok("bd", "resize", f"bdv:/{vg.name}/disk2", "12M")
            assert vg.lvs() == {"disk1": 8 << 20, "disk2": 12 << 20, "copy1": 8 << 20}
            assert vg.read_lv("copy1")[:8] == b"on an LV"
            # a copy-on-write snapshot (issue 21), with or without device-mapper
            d.ok("bd", "snapshot", f"bdv:/{vg.name}/disk1", "snap1", "4M")
            assert vg.report().lvs["snap1"].origin == "disk1"
            with Volume("127.0.0.1", "bdv", port=d.port) as vol:
                with vol.fopen("/disk1", "r+") as f:
                    f.write(b"rewritten")
                assert vol.open("/snap1").read(8) == b"on an LV"
            bad = d.cli("bd", "create", f"bdv:/{vg.name}/bad name!", "4M")
            assert bad.rc != 0
            d.ok("bd", "delete", f"bdv:/{vg.name}/disk2")
            d.ok("bd", "delete", f"bdv:/{vg.name}/snap1")
            assert vg.lvs() == {"disk1": 8 << 20, "copy1": 8 << 20}
            d.ok("--yes", "volume", "stop", "bdv")
    finally:
        vg.destroy()
