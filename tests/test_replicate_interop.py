"""GlusterFS 10's own AFR and ours on the same bricks (issue 6, point 5).

Three ``glusterpy brick`` processes (posix -> locks -> index -> server)
serve volume rep3.  In one direction the real ``glusterfs`` FUSE client -
GlusterFS's cluster/replicate - writes while a brick is killed, and our
replicate heals what GlusterFS's changelogs say; in the other our replicate
writes while a brick is down and GlusterFS's self-heal daemon (a glusterfs
process with ``iam-self-heal-daemon yes``, crawling the index of the bricks
it finds local) heals what our changelogs say.  Either way the bricks end
byte-identical with nothing pending.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import trio

from glusterpy.fops import Fd, Loc
from glusterpy.graph import Graph

from replicate_support import (create_file, network_client_volfile, pending, tree_of,
                               wait_for)
from test_replicate_heal import assert_clean, heal_until_clean
from test_replicate_processes import BrickProcesses

pytestmark = [pytest.mark.interop, pytest.mark.slow]


def need(*tools):
    for tool in tools:
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (make test installs it)")
    if os.geteuid() != 0:
        pytest.skip("FUSE mounts need root")


def gluster_volfile(vol: str, ports: list[int], shd: bool = False) -> str:
    """A GlusterFS client (or self-heal daemon) volfile for our bricks."""
    text = ""
    names = []
    for i, port in enumerate(ports):
        name = f"{vol}-client-{i}"
        names.append(name)
        text += (f"volume {name}\n    type protocol/client\n"
                 f"    option remote-host 127.0.0.1\n    option remote-port {port}\n"
                 f"    option remote-subvolume {vol}-index-{i}\n"
                 f"    option transport-type tcp\n    option ping-timeout 42\nend-volume\n\n")
    text += (f"volume {vol}-replicate-0\n    type cluster/replicate\n"
             f"    option afr-pending-xattr {','.join(names)}\n"
             f"    option granular-entry-heal on\n")
    if shd:
        text += ("    option iam-self-heal-daemon yes\n    option self-heal-daemon enable\n"
                 "    option entry-self-heal on\n    option data-self-heal on\n"
                 "    option metadata-self-heal on\n    option background-self-heal-count 0\n")
    text += f"    subvolumes {' '.join(names)}\nend-volume\n\n"
    text += (f"volume {vol}\n    type debug/io-stats\n"
             f"    subvolumes {vol}-replicate-0\nend-volume\n")
    return text


@contextlib.contextmanager
def fuse_mount(volfile: Path, mnt: Path, log: Path):
    pidfile = mnt.parent / "fuse.pid"
    mnt.mkdir()
    subprocess.run(["glusterfs", f"--volfile={volfile}", f"--log-file={log}",
                    f"--pid-file={pidfile}", str(mnt)], check=True, timeout=60)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mnt):
            assert time.monotonic() < deadline, f"no mount; see {log}"
            time.sleep(0.1)
        yield mnt
    finally:
        if os.path.ismount(mnt):
            if subprocess.run(["umount", str(mnt)], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", str(mnt)], capture_output=True)
        _end(pidfile)


def _end(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def bricks_settled(procs) -> bool:
    trees = [tree_of(b) for b in procs.bricks]
    if any(t != trees[0] for t in trees[1:]):
        return False
    try:
        assert_clean(procs.bricks)
    except AssertionError:
        return False
    return True


async def test_glusterfs_fuse_writes_and_our_replicate_heals(tmp_path, monkeypatch):
    need("glusterfs", "umount")
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.2)
    (tmp_path / "bricks").mkdir()
    procs = BrickProcesses(tmp_path / "bricks", vol="rep3")
    try:
        for i in range(3):
            procs.start(i)
        volfile = tmp_path / "rep3-fuse.vol"
        volfile.write_text(gluster_volfile("rep3", procs.ports))
        with fuse_mount(volfile, tmp_path / "mnt", tmp_path / "fuse.log") as mnt:
            (mnt / "before").write_bytes(b"all three" * 1000)
            procs.kill(1)
            await trio.to_thread.run_sync(time.sleep, 1)
            (mnt / "before").write_bytes(b"while brick 1 was dead" * 500)
            (mnt / "dir").mkdir()
            (mnt / "dir" / "new").write_bytes(os.urandom(200_000))
            os.chmod(mnt / "before", 0o640)
            expected = {"before": (mnt / "before").read_bytes(),
                        "dir/new": (mnt / "dir" / "new").read_bytes()}
        b0, b1 = procs.bricks[0], procs.bricks[1]
        # GlusterFS's AFR accused brick 1 in our format
        assert pending(b0 / "before", "trusted.afr.rep3-client-1")[0] > 0
        assert pending(b0, "trusted.afr.rep3-client-1")[2] > 0
        procs.start(1)
        graph = Graph.from_text(network_client_volfile("rep3", procs.ports))
        async with graph.running():
            afr = graph.by_name["rep3-replicate-0"]
            await wait_for(lambda: all(afr.child_up), timeout=30)
            await graph.top.lookup(Loc.root(), None)
            await heal_until_clean(afr, rounds=8)
        assert bricks_settled(procs), "bricks differ or changelogs pending after our heal"
        for rel, data in expected.items():
            assert (b1 / rel).read_bytes() == data
        assert (b1 / "before").stat().st_mode & 0o777 == 0o640
    finally:
        procs.stop_all()


async def test_our_replicate_writes_and_glusterfs_shd_heals(tmp_path, monkeypatch):
    need("glusterfs")
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.2)
    (tmp_path / "bricks").mkdir()
    procs = BrickProcesses(tmp_path / "bricks", vol="rep3")
    shd_pid = tmp_path / "shd.pid"
    try:
        for i in range(3):
            procs.start(i)
        graph = Graph.from_text(network_client_volfile("rep3", procs.ports,
                                                       {"granular-entry-heal": "on"}))
        async with graph.running():
            afr = graph.by_name["rep3-replicate-0"]
            await wait_for(lambda: all(afr.child_up), timeout=30)
            top = graph.top
            await top.lookup(Loc.root(), None)
            fd, gfid = await create_file(top, "f", b"first" * 1000)
            await top.release(fd, None)
            procs.kill(2)
            await wait_for(lambda: not afr.child_up[2])
            fd, _ = await create_file(top, "g", b"made while brick 2 was dead" * 300)
            await top.release(fd, None)
            fd = Fd(gfid=gfid, flags=os.O_RDWR)
            await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
            await top.writev(fd, b"SECOND" * 2000, 0, 0, None)
            await top.release(fd, None)
        b0, b2 = procs.bricks[0], procs.bricks[2]
        assert pending(b0 / "f", "trusted.afr.rep3-client-2")[0] > 0
        procs.start(2)
        shd_vol = tmp_path / "shd.vol"
        shd_vol.write_text(gluster_volfile("rep3", procs.ports, shd=True))
        subprocess.run(["glusterfs", f"--volfile={shd_vol}", f"--pid-file={shd_pid}",
                        f"--log-file={tmp_path / 'shd.log'}", "--process-name", "glustershd"],
                       check=True, timeout=60)
        deadline = time.monotonic() + 90
        while not bricks_settled(procs):
            assert time.monotonic() < deadline, f"GlusterFS's shd did not heal; see " \
                                                f"{tmp_path / 'shd.log'}"
            await trio.sleep(0.5)
        assert (b2 / "f").read_bytes() == (b0 / "f").read_bytes()
        assert (b2 / "g").read_bytes() == b"made while brick 2 was dead" * 300
    finally:
        _end_kill(shd_pid)
        procs.stop_all()


def _end_kill(pidfile: Path) -> None:
    try:
        pid = int(pidfile.read_text().strip())
    except (OSError, ValueError):
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    _end(pidfile)
