"""Bricks stay under the node's allowed brick roots (issue 14).

A brick is a directory glusterpyd's bricks write into as root, for anyone
who can reach the volume: `volume create x NODE:/etc force` must not hand
out /etc.  Through the real CLI against a real glusterpyd process: every
system directory is refused, with force or not, and so are symlink and `..`
escapes, a brick that holds one, and anything outside `--brick-root`; the
refusal names the rule (and the setting), happens at stage on the node that
holds the brick, and leaves the state on disk byte-for-byte as it was and
creates no directory.  A brick root that is / or a system directory stops
the daemon at start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from glusterpy.glusterd import ops
from glusterpy.glusterd.model import Brick, Volume
from test_glusterd_support import free_port, running_daemon, snapshot

live = pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")

SYSTEM = ["/etc", "/usr", "/boot", "/proc", "/sys", "/dev", "/root", "/var/lib/glusterpy"]


@pytest.fixture
def daemon(tmp_path):
    with running_daemon(tmp_path / "wd", brick_roots=[tmp_path / "bricks"]) as d:
        (tmp_path / "bricks").mkdir()
        yield d


def refused(d, argv: list[str], *needles: str) -> str:
    before = snapshot(d.workdir)
    r = d.cli(*argv)
    assert r.rc != 0, f"{argv} was accepted: {r.text}"
    for needle in needles:
        assert needle in r.text, (argv, needle, r.text)
    assert snapshot(d.workdir) == before, f"{argv} changed the state on disk"
    return r.text


@live
def test_system_directories_are_never_bricks(daemon, tmp_path):
    d = daemon
    targets = [*SYSTEM, str(d.workdir)]
    for target in targets:
        for path in (target, f"{target}/glusterpy-confinement-test"):
            for force in ([], ["force"]):
                text = refused(d, ["volume", "create", "v", f"127.0.0.1:{path}", *force])
                assert "can never be a brick" in text or "working directory" in text, text
                assert "volume create: v: failed: " in text and "127.0.0.1:" in text, text
    assert not Path("/etc/glusterpy-confinement-test").exists()
    assert not Path("/root/glusterpy-confinement-test").exists()
    # the root directory itself, with force too
    for force in ([], ["force"]):
        refused(d, ["volume", "create", "v", "127.0.0.1:/", *force], "root directory")
    assert d.ok("volume", "list").out.strip() == "No volumes present in cluster"


@live
def test_escapes_by_symlink_and_dotdot_are_refused(daemon, tmp_path):
    d = daemon
    roots = tmp_path / "bricks"
    (roots / "etc-link").symlink_to("/etc")
    (roots / "deep").mkdir()
    (roots / "deep" / "up").symlink_to("../../../../../../../../..")
    for path, force in [(roots / "etc-link", []), (roots / "etc-link", ["force"]),
                        (roots / "etc-link" / "sub", ["force"]),
                        (roots / "deep" / "up" / "etc", ["force"]),
                        (roots / "deep" / "up", ["force"])]:
        text = refused(d, ["volume", "create", "v", f"127.0.0.1:{path}", *force],
                       "can never be a brick")
        assert "resolves to" in text, text
    assert not Path("/etc/sub").exists()
    # `..` in the brick itself: normalised before anything is checked
    refused(d, ["volume", "create", "v", f"127.0.0.1:{roots}/../../../../../../../etc",
                "force"], "/etc is a system directory and can never be a brick")
    # a brick that holds a system directory (the working directory here)
    refused(d, ["volume", "create", "v", f"127.0.0.1:{tmp_path}", "force"],
            "working directory")


@live
def test_outside_the_brick_roots_is_refused_and_names_the_setting(daemon, tmp_path):
    d = daemon
    outside = tmp_path / "elsewhere" / "b1"
    for force in ([], ["force"]):
        refused(d, ["volume", "create", "v", f"127.0.0.1:{outside}", *force],
                "is not under an allowed brick root", str(tmp_path / "bricks"),
                "glusterpyd --brick-root")
    assert not outside.exists() and not outside.parent.exists()
    # inside: accepted, and the volume works as before
    inside = tmp_path / "bricks" / "b1"
    d.ok("volume", "create", "v", f"127.0.0.1:{inside}")
    assert os.getxattr(inside, "trusted.glusterfs.volume-id")
    # a symlink from outside to inside resolves inside: accepted
    (tmp_path / "alias").symlink_to(tmp_path / "bricks")
    (tmp_path / "bricks" / "link-out").symlink_to(tmp_path / "elsewhere2")
    refused(d, ["volume", "create", "w", f"127.0.0.1:{tmp_path / 'bricks' / 'link-out'}"],
            "not under an allowed brick root")


@live
def test_add_brick_is_confined_too(daemon, tmp_path):
    d = daemon
    d.ok("volume", "create", "v", f"127.0.0.1:{tmp_path / 'bricks' / 'b1'}")
    for path in ("/etc/glusterpy-confinement-test", "/usr", str(tmp_path / "out")):
        for force in ([], ["force"]):
            refused(d, ["volume", "add-brick", "v", f"127.0.0.1:{path}", *force],
                    "volume add-brick: v: failed:")
    assert not Path("/etc/glusterpy-confinement-test").exists()
    d.ok("volume", "add-brick", "v", f"127.0.0.1:{tmp_path / 'bricks' / 'b2'}")
    info = d.ok("volume", "info", "v").out
    assert "Number of Bricks: 2" in info, info


@live
def test_a_root_that_holds_a_system_directory_does_not_open_it(tmp_path):
    # /var holds /var/lib/glusterpy: the root is fine, what it holds is not
    with running_daemon(tmp_path / "wd", brick_roots=[tmp_path, "/var"]) as d:
        for path in ("/var/lib/glusterpy", "/var/lib/glusterpy/b", "/var"):
            refused(d, ["volume", "create", "v", f"127.0.0.1:{path}", "force"],
                    "can never be a brick")
        assert not Path("/var/lib/glusterpy/b").exists()


@pytest.mark.parametrize("root", ["/", "/etc", "/usr/local", "/proc/self", "relative",
                                  "WORKDIR/sub"])
def test_a_bad_brick_root_stops_the_daemon_at_start(tmp_path, root):
    wd = tmp_path / "wd"
    root = root.replace("WORKDIR", str(wd))
    done = subprocess.run([sys.executable, "-m", "glusterpy.glusterd.main", "--workdir",
                           str(wd), "--port", str(free_port()), "--address", "127.0.0.1",
                           "--brick-root", str(tmp_path), "--brick-root", root],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2, done
    assert "--brick-root" in done.stderr and root in done.stderr, done.stderr


def test_default_brick_roots():
    assert ops.brick_roots(None, "/var/lib/glusterpy") == tuple(
        os.path.realpath(r) for r in ops.DEFAULT_BRICK_ROOTS)
    roots = ops.brick_roots(None, "/var/lib/glusterpy")
    ops.check_brick_path("/data/brick1/gv0", "n:/data/brick1/gv0", roots,
                         "/var/lib/glusterpy")
    with pytest.raises(ValueError, match="not under an allowed brick root .*--brick-root"):
        ops.check_brick_path("/home/x", "n:/home/x", roots, "/var/lib/glusterpy")


def test_a_volume_group_in_use_is_never_a_device_lv_brick(tmp_path, monkeypatch):
    """storage/bd hands out every LV of its VG as a file: a VG with an open
    LV (the system's root, swap) is refused, with force or not."""
    from types import SimpleNamespace
    import glusterpy.bd as bd

    def lv(name, attr):
        return SimpleNamespace(name=name, attr=attr)

    class FakeLvm:
        def report(self, vg):
            lvs = {"root": lv("root", "-wi-ao----"), "spare": lv("spare", "-wi-a-----")} \
                if vg == "system" else {"img": lv("img", "-wi-a-----")}
            return SimpleNamespace(lvs=lvs)
    monkeypatch.setattr(bd, "Lvm", FakeLvm)
    vol = Volume(name="v", id="", device="lv")
    for force in (False, True):
        with pytest.raises(ValueError, match="in use on this node .root"):
            ops._stage_vg_brick(tmp_path, vol, Brick(host="h", path="/system", node=""), force)
    assert ops._stage_vg_brick(tmp_path, vol, Brick(host="h", path="/vg0", node=""), False) == \
        str(tmp_path / "bd" / "v" / "vg0")
