"""storage/posix's readdirp and the xattrs each entry is asked for: held
with the entry's gfid and mdata (MdataCache.keep_xattrs) while its ctime
stands, retired by every store through the brick, read again after any
change beside it - and what a listing costs in syscalls per entry."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from glusterpy.fops import ROOT_GFID, Fd, GFID, Loc
from glusterpy.keys import GET_SIZE, OPEN_FD_COUNT
from xlators.storage.posix.helpers import MdataCache
from xlators.storage.posix.xattr_ops import Asked

REPO = Path(__file__).resolve().parents[1]
#: what md-cache (its default groups) and distribute ask of every entry
LISTING_ASKS = {"security.capability": 0, "security.ima": 0,
                "trusted.glusterfs.dht.linkto": 0}


async def _mkfile(top, name: str) -> GFID:
    fd = Fd()
    r = await top.create(Loc.child(Loc.root(), name), os.O_RDWR | os.O_CREAT | os.O_EXCL,
                         0o644, 0, fd, {"gfid-req": GFID.random()})
    await top.release(fd, None)
    return r.iatt.gfid


async def _listed(top, xdata: dict) -> dict:
    fd = Fd(gfid=ROOT_GFID, is_dir=True)
    await top.opendir(Loc.root(), fd, None)
    try:
        return {e.name: e.xdata or {} for e in
                (await top.readdirp(fd, 1 << 16, 0, dict(xdata))).entries}
    finally:
        await top.releasedir(fd, None)


def _settle() -> None:
    """Past MdataCache.SETTLED_NS: an entry's xattrs are held from now on."""
    time.sleep(MdataCache.SETTLED_NS / 1e9 + 0.02)


@pytest.mark.parametrize("asks", [
    {"user.a": 0, "user.b": 0, **LISTING_ASKS},    # listed, then read
    {"user.a": 0},                                 # one name: read straight
    {"user.*": 0},                                 # a pattern
], ids=["names", "one-name", "pattern"])
async def test_readdirp_sees_every_xattr_change(brick, posix_graph, asks):
    """A setxattr or removexattr through the brick is seen by the next
    readdirp at once (even within the clock tick of the ctime held), one
    made beside the brick, on its file, by the next one too (its ctime
    moved); in between, the entry's xattrs are held, not read again."""
    wanted = [k for k in ("user.a", "user.b") if k in asks or "user.*" in asks]
    async with posix_graph(brick) as top:
        gfid = await _mkfile(top, "f")
        _settle()
        assert (await _listed(top, asks))["f"] == {}
        held = top._mdata.listed_xattrs(os.lstat(brick / "f"), Asked.of(asks).stored)
        assert held == {}, "the entry's xattrs were not held: this test would prove nothing"

        # through the brick, right after the listing
        await top.setxattr(Loc(gfid=gfid), {"user.a": b"1"}, 0, None)
        assert (await _listed(top, asks))["f"] == {"user.a": b"1"}
        _settle()
        assert (await _listed(top, asks))["f"] == {"user.a": b"1"}
        assert top._mdata.listed_xattrs(os.lstat(brick / "f"), Asked.of(asks).stored) == \
            {"user.a": b"1"}

        # beside the brick: only its ctime tells
        os.setxattr(brick / "f", "user.a", b"2")
        os.setxattr(brick / "f", "user.b", b"3")
        expect = {k: v for k, v in (("user.a", b"2"), ("user.b", b"3")) if k in wanted}
        assert (await _listed(top, asks))["f"] == expect
        _settle()
        assert (await _listed(top, asks))["f"] == expect
        os.removexattr(brick / "f", "user.a")
        expect.pop("user.a")
        assert (await _listed(top, asks))["f"] == expect

        # removed through the brick (and through an fd)
        _settle()
        assert (await _listed(top, asks))["f"] == expect
        fd = Fd(gfid=gfid)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        await top.fsetxattr(fd, {"user.a": b"4"}, 0, None)
        assert (await _listed(top, asks))["f"].get("user.a") == b"4"
        _settle()
        await _listed(top, asks)
        await top.fremovexattr(fd, "user.a", None)
        await top.release(fd, None)
        assert "user.a" not in (await _listed(top, asks))["f"]
        if "user.b" in wanted:
            _settle()
            await _listed(top, asks)
            await top.removexattr(Loc(gfid=gfid), "user.b", None)
            assert (await _listed(top, asks))["f"] == {}


async def test_a_recent_ctime_is_not_held(brick, posix_graph):
    """A change in the same tick of the coarse clock as the ctime seen
    might not move it: an entry changed within SETTLED_NS is read again."""
    async with posix_graph(brick) as top:
        await _mkfile(top, "f")
        assert (await _listed(top, LISTING_ASKS))["f"] == {}
        assert top._mdata.listed_xattrs(os.lstat(brick / "f"),
                                        Asked.of(LISTING_ASKS).stored) is None


async def test_special_keys_are_answered_per_listing(brick, posix_graph):
    """What posix answers from the iatt or its own state (a file's size,
    its open count) is never held: only stored xattrs are."""
    async with posix_graph(brick) as top:
        gfid = await _mkfile(top, "f")
        _settle()
        asks = {GET_SIZE: 0, OPEN_FD_COUNT: 0, **LISTING_ASKS}
        first = (await _listed(top, asks))["f"]
        assert int(first[GET_SIZE]) == 0 and int(first[OPEN_FD_COUNT]) == 0
        fd = Fd(gfid=gfid)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        try:
            (brick / "f").write_bytes(b"abc")      # beside the brick: size and ctime move
            again = (await _listed(top, asks))["f"]
            assert int(again[GET_SIZE]) == 3 and int(again[OPEN_FD_COUNT]) == 1
        finally:
            await top.release(fd, None)


_CHILD = textwrap.dedent("""
    import os, sys, time, trio
    from glusterpy.fops import ROOT_GFID, Fd, GFID, Loc
    from glusterpy.graph import Graph
    from conftest import posix_volfile
    from xlators.storage.posix import dir_ops
    # these counts are of the listing's own reads: no prefetch, no probe
    # (strace slows every syscall - the probe would find the disk cold)
    dir_ops.PREFETCH_MIN = 10**9
    brick, files, asks = sys.argv[1], int(sys.argv[2]), dict.fromkeys(sys.argv[3].split(","), 0)

    async def listing(top):
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), fd, None)
        n, off = 0, 0
        while True:
            entries = (await top.readdirp(fd, 1 << 16, off, dict(asks))).entries
            if not entries:
                break
            n += len(entries)
            off = entries[-1].off
        await top.releasedir(fd, None)
        return n

    async def main():
        graph = Graph.from_text(posix_volfile(brick))
        async with graph.running():
            top = graph.top
            for i in range(files):
                fd = Fd()
                await top.create(Loc.child(Loc.root(), f"f{i:04}"), os.O_RDWR | os.O_CREAT,
                                 0o644, 0, fd, {"gfid-req": GFID.random()})
                await top.release(fd, None)
            time.sleep(0.2)
            for step in ("cold", "warm"):
                os.path.exists(f"/MARK-{step}-start")
                n = await listing(top)
                os.path.exists(f"/MARK-{step}-end")
            print(n)
    trio.run(main)
""")

_COUNTED = ("newfstatat", "statx", "lstat", "stat", "llistxattr", "listxattr", "flistxattr",
            "lgetxattr", "getxattr", "fgetxattr")


def _syscalls(tmp_path: Path, files: int, asks: str) -> tuple[int, dict[str, dict[str, int]]]:
    brick = tmp_path / "brick"
    brick.mkdir()
    trace = tmp_path / "trace"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    out = subprocess.run(["strace", "-f", "-qq", "-e", "trace=" + ",".join(_COUNTED), "-o",
                          str(trace), sys.executable, "-c", _CHILD, str(brick), str(files), asks],
                         env=env, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    listed = int(out.stdout.split()[-1])
    counts: dict[str, dict[str, int]] = {}
    step = None
    for line in trace.read_text().splitlines():
        if "/MARK-" in line:
            mark = line.split("/MARK-")[1].split('"')[0]
            step = mark.rsplit("-", 1)[0] if mark.endswith("-start") else None
            continue
        if step is not None:
            call = line.split(None, 1)[1].split("(", 1)[0] if " " in line else ""
            counts.setdefault(step, {}).setdefault(call, 0)
            counts[step][call] += 1
    return listed, counts


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_a_listing_seen_before_costs_one_lstat_per_entry(tmp_path):
    """Syscalls per listed entry, counted by strace around two listings of
    300 files asking what md-cache and distribute ask: the first reads
    each entry's gfid, mdata and xattr names beside its lstat; the second
    (nothing changed) the lstat alone."""
    listed, counts = _syscalls(tmp_path, 300, ",".join(LISTING_ASKS))
    assert listed >= 300
    cold, warm = counts["cold"], counts.get("warm", {})
    stats = sum(n for c, n in warm.items() if "stat" in c)
    assert cold.get("llistxattr", 0) >= 300 and cold.get("lgetxattr", 0) >= 600, counts
    assert stats <= listed + 5, counts
    # by name, through /proc: none ("." and ".." of the root are read by
    # their descriptor, f*xattr, and are not held)
    assert warm.get("llistxattr", 0) + warm.get("lgetxattr", 0) == 0, counts


@pytest.mark.skipif(shutil.which("strace") is None, reason="needs strace")
def test_one_asked_name_is_read_straight(tmp_path):
    """One name asked: a getxattr of it per entry, no listxattr."""
    listed, counts = _syscalls(tmp_path, 100, "trusted.glusterfs.dht.linkto")
    cold = counts["cold"]
    assert cold.get("llistxattr", 0) == 0, counts
    assert 3 * 100 <= cold.get("lgetxattr", 0) <= 3 * listed + 5, counts


async def test_readdirp_iatts_follow_the_file(brick, posix_graph):
    """An entry's iatt is made again whenever any field of its lstat moved
    (MdataCache.listed_iatt): a mode, size or owner changed beside the
    brick shows in the next listing, and each reply has its own iatt."""
    async with posix_graph(brick) as top:
        await _mkfile(top, "f")
        _settle()

        async def iatt():
            fd = Fd(gfid=ROOT_GFID, is_dir=True)
            await top.opendir(Loc.root(), fd, None)
            try:
                return {e.name: e.iatt for e in
                        (await top.readdirp(fd, 1 << 16, 0, None)).entries}["f"]
            finally:
                await top.releasedir(fd, None)
        first, second = await iatt(), await iatt()
        assert first == second and first is not second
        os.chmod(brick / "f", 0o600)
        assert (await iatt()).mode & 0o777 == 0o600
        _settle()
        await iatt()
        os.truncate(brick / "f", 7)
        assert (await iatt()).size == 7
        _settle()
        await iatt()
        os.chown(brick / "f", 1234, 5678)
        seen = await iatt()
        assert (seen.uid, seen.gid, seen.size) == (1234, 5678, 7)


async def test_readdirp_iatts_follow_an_atime_that_moved_alone(brick, posix_graph):
    """A read beside the brick moves atime and not ctime: with the ctime
    option off the iatt's atime is the lstat's, and the next listing shows
    the new one (the iatt is kept by the whole lstat, not by ctime)."""
    async with posix_graph(brick, ctime="off") as top:
        await _mkfile(top, "f")
        os.utime(brick / "f", ns=(1_000_000_000, 2_000_000_000))   # atime <= mtime: relatime reads move it
        _settle()

        async def atime():
            fd = Fd(gfid=ROOT_GFID, is_dir=True)
            await top.opendir(Loc.root(), fd, None)
            try:
                ia = {e.name: e.iatt for e in
                      (await top.readdirp(fd, 1 << 16, 0, None)).entries}["f"]
                return ia.atime, ia.ctime, ia.ctime_nsec
            finally:
                await top.releasedir(fd, None)
        before = await atime()
        assert before[0] == 1 and before == await atime()
        ctime = os.lstat(brick / "f").st_ctime_ns
        (brick / "f").read_bytes()
        st = os.lstat(brick / "f")
        if st.st_atime_ns == 1_000_000_000 or st.st_ctime_ns != ctime:
            pytest.skip("this file system did not move atime alone on a read")
        after = await atime()
        assert after[0] == st.st_atime_ns // 1_000_000_000 and after[1:] == before[1:]


async def test_a_cold_directory_is_read_ahead_in_parallel(brick, posix_graph, monkeypatch):
    """The entries a listing finds neither in MdataCache nor (by the probe)
    in the kernel's caches are read by dir_ops' prefetch threads first; the
    listing is the same as one without them, and a listing whose entries
    are held reads nothing ahead."""
    from xlators.storage.posix import dir_ops
    names = [f"f{i:03}" for i in range(3 * dir_ops.PREFETCH_MIN)]
    async with posix_graph(brick) as top:
        gfids = {name: await _mkfile(top, name) for name in names}
    _settle()

    async def listing(top):
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), fd, None)
        try:
            return {e.name: (e.iatt.gfid, e.iatt.size, e.iatt.mtime, e.xdata)
                    for e in (await top.readdirp(fd, 1 << 20, 0, dict(LISTING_ASKS))).entries
                    if e.name in gfids}
        finally:
            await top.releasedir(fd, None)

    # a probe that always finds the disk slow: every unheld entry is read ahead
    monkeypatch.setattr(dir_ops, "PREFETCH_COLD_NS", 0)
    async with posix_graph(brick) as top:      # a new brick process: nothing held
        read_ahead = await listing(top)
        assert top.prefetched == len(names) - dir_ops.PREFETCH_PROBE
        assert {n: v[0] for n, v in read_ahead.items()} == gfids
        again = await listing(top)             # held now: nothing to read ahead
        assert top.prefetched == len(names) - dir_ops.PREFETCH_PROBE
        assert again == read_ahead
    # a probe that always finds the kernel's caches warm: no read-ahead
    monkeypatch.setattr(dir_ops, "PREFETCH_COLD_NS", 10**12)
    async with posix_graph(brick) as top:
        assert await listing(top) == read_ahead
        assert top.prefetched == 0
