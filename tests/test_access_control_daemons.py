"""glusterpyd's own clients still reach what no user may read, now that its
bricks check permissions (features/access-control): glustershd heals, and
the rebalance process migrates, files of mode 0000 owned by a user inside a
0700 directory of another user.  Real processes, as in test_heal_cli.py
and test_rebalance_cli.py.
"""

from __future__ import annotations

import os
import time

import pytest

from glusterpy.gfapi import Volume
from test_glusterd_support import running_daemon, wait_for
from test_heal_cli import all_online, assert_replicas, healed, kill9_brick, make_replica3
from test_rebalance_cli import bricks, on_hashed_brick

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")

OWNER, OTHER = 4242, 4343


def locked_tree(vol: Volume, count: int, tag: bytes) -> dict[str, bytes]:
    """/locked (OTHER's, 0700) holding files of OWNER's with mode 0000."""
    if not vol.exists("/locked"):
        vol.mkdir("/locked", 0o700)
        vol.chown("/locked", OTHER, OTHER)
    files = {}
    for i in range(count):
        path = f"/locked/f{i}"
        data = tag + b"-%d-" % i + os.urandom(1000 + i)
        with vol.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600) as f:
            f.write(data)
        vol.chown(path, OWNER, OWNER)
        vol.chmod(path, 0)
        files[path] = data
    return files


def assert_unreadable_to_users(port: int, volname: str, path: str) -> None:
    with Volume("127.0.0.1", volname, port=port) as user:
        user.setfsuid(OWNER)
        user.setfsgid(OWNER)
        user.setfsgroups(())
        with pytest.raises(OSError):
            with user.open(path, os.O_RDONLY) as f:
                f.read(10)


def test_shd_heals_files_no_user_may_read(tmp_path):
    with running_daemon(tmp_path / "wd") as d:
        base = make_replica3(d, tmp_path, "acl", options=[("cluster.heal-timeout", "5")])
        with Volume("127.0.0.1", "acl", port=d.port) as vol:
            expected = locked_tree(vol, 4, b"before")
            kill9_brick(d, "acl", 1)
            time.sleep(0.3)
            expected.update(locked_tree(vol, 6, b"while-down"))
        d.ok("volume", "start", "acl", "force")
        wait_for(lambda: all_online(d, "acl"), 30, "brick 1 back")
        wait_for(lambda: healed(d, "acl"), 90, "glustershd to heal the locked files")
        assert_replicas(base, {p.lstrip("/"): v for p, v in expected.items()})
        for b in base:
            st = (b / "locked" / "f5").stat()
            assert (st.st_uid, st.st_mode & 0o7777) == (OWNER, 0)
        assert_unreadable_to_users(d.port, "acl", "/locked/f5")


def test_rebalance_moves_files_no_user_may_read(tmp_path):
    b = bricks(tmp_path, "r1", "r2")
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "racl", b[0])
        d.ok("volume", "start", "racl")
        with Volume("127.0.0.1", "racl", port=d.port) as vol:
            expected = locked_tree(vol, 40, b"move")
        d.ok("volume", "add-brick", "racl", b[1])
        r = d.ok("volume", "rebalance", "racl", "start", "--watch")
        assert "completed" in r.out, r.text
        paths = [tmp_path / "r1", tmp_path / "r2"]
        assert all(on_hashed_brick(paths, p) for p in expected)
        moved = [p for p in expected if (paths[1] / p.lstrip("/")).exists()]
        assert moved, "nothing hashed to the new brick"
        with Volume("127.0.0.1", "racl", port=d.port) as vol:
            for p, data in expected.items():
                with vol.open(p, os.O_RDONLY) as f:
                    assert f.read(len(data) + 1) == data
                st = vol.stat(p)
                assert (st.st_uid, st.st_mode & 0o7777) == (OWNER, 0)
        assert_unreadable_to_users(d.port, "racl", moved[0])

