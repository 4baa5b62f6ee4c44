"""GlusterFS 10's FUSE client writes, glusterpyd's self-heal daemon heals.

A replica 3 volume made with the glusterpy CLI is mounted by the real
``glusterfs`` FUSE client, which fetches the volume's client volfile from
glusterpyd (GETSPEC) - so GlusterFS's own cluster/replicate does the
writing.  A brick is killed with kill -9 in the middle; GlusterFS's AFR
writes the other two and accuses the dead one in its changelogs (and our
bricks' features/index indexes them).  The client is unmounted, glusterpyd
starts the brick again, and glustershd - glusterpyd's, with our
cluster/replicate - heals from those changelogs, with no client at all:
the bricks end byte-identical with nothing pending.

(tests/test_replicate_interop.py covers both directions at translator
level: our replicate healing GlusterFS's changelogs when asked, and
GlusterFS's self-heal daemon healing ours.)
"""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from replicate_support import tree_of
from test_glusterd_support import running_daemon, wait_for
from test_heal_cli import all_online, healed, kill9_brick, make_replica3, shd_pid
from test_replicate_heal import assert_clean
from test_replicate_interop import _end, need

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def test_glusterfs_fuse_writes_and_glusterpyd_shd_heals(tmp_path):
    need("glusterfs", "umount")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    log, pidfile = tmp_path / "glusterfs.log", tmp_path / "glusterfs.pid"
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "gx", options=[("cluster.heal-timeout", "5")])
        assert shd_pid(d) is not None
        subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                        f"--volfile-server-port={d.port}", "--volfile-id=gx",
                        f"--log-file={log}", f"--pid-file={pidfile}", str(mnt)],
                       check=True, timeout=60)
        try:
            wait_for(lambda: os.path.ismount(mnt), 30, "the glusterfs FUSE mount")
            (mnt / "before").write_bytes(b"all three" * 1000)
            kill9_brick(d, "gx", 1)
            time.sleep(0.3)
            (mnt / "before").write_bytes(b"while brick 1 was dead" * 500)
            (mnt / "dir").mkdir()
            (mnt / "dir" / "new").write_bytes(os.urandom(200_000))
            os.chmod(mnt / "before", 0o640)
            expected = {"before": (mnt / "before").read_bytes(),
                        "dir/new": (mnt / "dir" / "new").read_bytes()}
        finally:
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
            _end(pidfile)
        assert not os.path.ismount(mnt)
        d.ok("volume", "start", "gx", "force")
        wait_for(lambda: all_online(d, "gx"), 30, "brick 1 back")
        wait_for(lambda: healed(d, "gx"), 60, "glustershd to heal")
        trees = [tree_of(b) for b in base]
        assert trees[0] == trees[1] == trees[2]
        assert_clean(base)
        for rel, data in expected.items():
            assert (base[1] / rel).read_bytes() == data
        assert (base[1] / "before").stat().st_mode & 0o777 == 0o640
        # GlusterFS's client heals nothing (its self-heal options are off):
        # what was healed, glustershd healed from GlusterFS's changelogs
        doc = d.ok("volume", "heal", "gx", "statistics", "--json").json()
        assert sum(e["healed"] for b in doc["bricks"] for e in b["events"]) >= 2
