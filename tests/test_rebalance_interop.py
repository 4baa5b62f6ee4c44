"""Rebalance against GlusterFS 10, both ways.

* GlusterFS rebalances, we read: a distribute volume made and filled by
  GlusterFS 10 (FUSE, with renames), extended with add-brick and
  rebalanced by GlusterFS's own rebalance process; then our distribute
  serves the three bricks: every file sits where our hash and GlusterFS's
  layouts put it, and the namespace reads back the same.
* We rebalance, GlusterFS reads: a glusterpyd volume (on a port that is not
  24007), filled through gfapi with renames, hard links and symlinks,
  extended and rebalanced by `glusterpy volume rebalance`; then GlusterFS's
  FUSE client, with its own DHT over our bricks and the volfile from
  glusterpyd, sees exactly the namespace our client sees, and what it
  writes there we read back.

(The translator-level interop - placement and layouts of a GlusterFS
volume, a volume we wrote served by GlusterFS - is in
test_distribute_interop.py.)
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest
import trio

from glusterpy.gfapi import AsyncVolume, Volume
from glusterpy.graph import Graph

from test_distribute import check_volume, disk_layout, distribute_volfile, is_linkto, make_bricks
from test_distribute_interop import create_distribute_volume, read_back, tree
from test_glusterd_interop import _end_pid_file, need
from test_glusterd_support import running_daemon, wait_for

pytestmark = pytest.mark.interop


def gluster_rebalance_done(gd, vol: str) -> bool:
    out = gd.cli("volume", "rebalance", vol, "status", check=False).stdout
    if "failed" in out:
        raise AssertionError(f"GlusterFS's rebalance failed:\n{out}")
    return "completed" in out and "in progress" not in out


async def test_a_glusterfs10_rebalance_reads_back_through_our_distribute(glusterd, tmp_path):
    bricks = make_bricks(tmp_path, 3, "gr")
    mnt = tmp_path / "mnt"
    vol = await trio.to_thread.run_sync(create_distribute_volume, glusterd,
                                        f"{glusterd.prefix}gr", bricks[:2])
    await trio.to_thread.run_sync(glusterd.mount, vol, mnt)
    try:
        (mnt / "d" / "e").mkdir(parents=True)
        for i in range(60):
            (mnt / "d" / f"f{i}").write_bytes(os.urandom(1000 + 37 * i))
            (mnt / "d" / "e" / f"g{i}").write_bytes(b"g%d" % i)
        for i in range(0, 60, 6):
            os.rename(mnt / "d" / f"f{i}", mnt / "d" / "e" / f"renamed{i}")
        written = tree(mnt)
    finally:
        await trio.to_thread.run_sync(glusterd.umount, mnt)
    glusterd.cli("volume", "add-brick", vol, f"{glusterd.host}:{bricks[2]}", "force")
    glusterd.cli("volume", "rebalance", vol, "start")
    deadline = time.monotonic() + 120
    while not await trio.to_thread.run_sync(gluster_rebalance_done, glusterd, vol):
        assert time.monotonic() < deadline, "GlusterFS's rebalance did not complete"
        await trio.sleep(1)
    await trio.to_thread.run_sync(glusterd.stop_volume, vol)

    moved = [p for p in (bricks[2] / "d").rglob("*") if p.is_file() and not is_linkto(p)]
    assert moved, "GlusterFS moved nothing to the new brick"
    assert disk_layout(bricks[2] / "d").start != disk_layout(bricks[2] / "d").stop
    check_volume(bricks)               # every name where our hash and its layouts say
    async with AsyncVolume(Graph.from_text(distribute_volfile(bricks, name=vol))) as v:
        assert await read_back(v, "/") == written


def test_glusterfs_fuse_sees_our_rebalanced_volume(tmp_path):
    need("glusterfs", "umount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    client_log, pidfile = tmp_path / "glusterfs.log", tmp_path / "glusterfs.pid"
    b = [f"127.0.0.1:{tmp_path / n}" for n in ("o1", "o2", "o3")]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "ours", *b[:2])
        d.ok("volume", "start", "ours")
        with Volume("127.0.0.1", "ours", port=d.port) as vol:
            vol.makedirs("/top/sub")
            for i in range(50):
                with vol.fopen(f"/top/f{i}", "w") as f:
                    f.write(os.urandom(500 + 91 * i))
            for i in range(0, 50, 5):
                vol.rename(f"/top/f{i}", f"/top/sub/r{i}")
            for i in (1, 2, 3):
                vol.link(f"/top/f{i}", f"/top/sub/h{i}")
            vol.symlink("sub/r5", "/top/sym")
        d.ok("volume", "add-brick", "ours", b[2])
        r = d.ok("volume", "rebalance", "ours", "start", "--watch")
        assert "completed" in r.out
        bricks = [tmp_path / n for n in ("o1", "o2", "o3")]
        check_volume(bricks)
        ours = trio.run(_read_back_remote, d.port)
        mounted = False
        try:
            subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                            f"--volfile-server-port={d.port}", "--volfile-id=ours",
                            f"--log-file={client_log}", f"--pid-file={pidfile}", str(mnt)],
                           check=True, timeout=60, capture_output=True)
            wait_for(lambda: os.path.ismount(mnt), what="the glusterfs FUSE mount")
            mounted = True
            theirs = tree(mnt)
            assert theirs == ours
            assert os.stat(mnt / "top" / "f1").st_ino == os.stat(mnt / "top" / "sub" /
                                                                  "h1").st_ino
            # GlusterFS's DHT writes on the rebalanced layout
            (mnt / "top" / "sub" / "from-gf").write_bytes(b"written by GlusterFS")
            os.rename(mnt / "top" / "f7", mnt / "top" / "gf-renamed")
        finally:
            if mounted or os.path.ismount(mnt):
                if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
                    subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end_pid_file(pidfile)
        check_volume(bricks)
        with Volume("127.0.0.1", "ours", port=d.port) as vol:
            assert vol.open("/top/sub/from-gf").read() == b"written by GlusterFS"
            assert vol.open("/top/gf-renamed").read() == ours["top/f7"][0]
            assert not vol.exists("/top/f7")


async def _read_back_remote(port: int) -> dict:
    async with AsyncVolume.from_server(["127.0.0.1"], "ours", port) as v:
        return await read_back(v, "/")
