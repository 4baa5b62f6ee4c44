"""cluster/replicate must not read from a replica that just failed a write.

A brick that stays connected but fails a write (a full or read-only disk)
holds a stale copy from then on.  GlusterFS's AFR drops such a child from
the inode's readable set in memory as soon as the fop's replies are in
(afr_set_in_flight_sb_status, called by every inode write), so the next
read of that client goes to a good copy - whatever the changelog on disk
says yet.  A later refresh from the changelogs agrees (the post-op has
accused the child by then; while it has not, the in-memory mark still
holds), and a heal makes the child readable again.

Replica 3 in one graph (posix -> locks -> index per brick, glusterd's
order); between replicate and each brick a `Failer` (replicate_support)
answers chosen fops with an errno, as the brick would.  Reads are pinned to
the failing child (`read-subvolume-index`) or left to a read-hash-mode, and
repeated, so a stale copy in the readable set is seen, not hoped for.
"""

from __future__ import annotations

import contextlib
import errno
import stat as _stat
import subprocess

import pytest
import trio

from glusterpy.fops import SET_ATTR_MODE, FopError, Iatt, Loc
from glusterpy.graph import Graph
from xlators.cluster.replicate import changelog as cl

from replicate_support import (create_file, insert_failers, local_volfile, make_bricks,
                               pending, root_loc)

VOL = "rep"
BAD = 1                                     # the child that fails
KEY_BAD = f"trusted.afr.{VOL}-client-{BAD}"
OLD, NEW = b"old-" * 1024, b"NEW!" * 1024
READS = 50

#: reads pinned to the failing child, and two read-hash-modes that rotate
READ_POLICIES = [
    pytest.param({"read-subvolume-index": str(BAD)}, id="read-subvolume-index"),
    pytest.param({"read-hash-mode": "3", "choose-local": "off"}, id="least-pending"),
    pytest.param({"read-hash-mode": "0", "choose-local": "off"}, id="first-readable"),
]
#: the client heals nothing by itself: what is tested is where reads go
NO_CLIENT_HEAL = {"data-self-heal": "off", "metadata-self-heal": "off",
                  "entry-self-heal": "off"}


def rep3(tmp_path, options):
    bricks = make_bricks(tmp_path, 3)
    graph = Graph.from_text(local_volfile(bricks, vol=VOL,
                                          options={**NO_CLIENT_HEAL, **options}))
    afr = graph.by_name[f"{VOL}-replicate-0"]
    failers = insert_failers(graph, afr)
    return bricks, graph, afr, failers


async def read_all(top, fd, size):
    return bytes((await top.readv(fd, size, 0, 0, None)).data)


@pytest.mark.parametrize("policy", READ_POLICIES)
async def test_read_after_write_failed_on_one_replica(tmp_path, policy):
    """writev fails on one replica that stays up: every later read of the
    same client returns the new data, before and after the inode is
    refreshed from the changelogs; after a heal the child serves reads
    again."""
    bricks, graph, afr, failers = rep3(tmp_path, policy)
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        assert await read_all(top, fd, len(OLD)) == OLD
        failers[BAD].fail["writev"] = errno.ENOSPC
        failers[BAD].calls.clear()
        reply = await top.writev(fd, NEW, 0, 0, None)
        assert reply.count == len(NEW)
        assert (bricks[BAD] / "f").read_bytes() == OLD      # the stale copy is there
        for _ in range(READS):
            assert await read_all(top, fd, len(NEW)) == NEW
        assert "readv" not in failers[BAD].calls
        # the post-op accused the child on the good copies
        assert pending(bricks[0] / "f", KEY_BAD)[0] > 0
        # a refresh from the changelogs (lookup) agrees
        await top.lookup(root_loc("f", gfid), None)
        for _ in range(READS):
            assert await read_all(top, fd, len(NEW)) == NEW
        assert "readv" not in failers[BAD].calls
        # heal, then a refresh makes the healed child readable again
        failers[BAD].fail.clear()
        for i in range(3):
            if i != BAD:
                await afr.heal_index(i)
        assert (bricks[BAD] / "f").read_bytes() == NEW
        await top.lookup(root_loc("f", gfid), None)
        assert afr._ctx(gfid).data == [True, True, True]
        if "read-subvolume-index" in policy:
            for _ in range(3):
                assert await read_all(top, fd, len(NEW)) == NEW
            assert "readv" in failers[BAD].calls
        await top.flush(fd, None)
        await top.release(fd)


@pytest.mark.parametrize("policy", READ_POLICIES)
async def test_stat_after_setattr_failed_on_one_replica(tmp_path, policy):
    """setattr (and fsetattr) fails on one replica: stat and fstat show the
    new mode every time."""
    bricks, graph, afr, failers = rep3(tmp_path, policy)
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        loc = Loc(path="/f", gfid=gfid)
        assert _stat.S_IMODE((await top.stat(loc, None)).iatt.mode) == 0o644
        failers[BAD].fail["setattr"] = errno.EROFS
        await top.setattr(loc, Iatt(mode=0o600), SET_ATTR_MODE, None)
        assert _stat.S_IMODE((bricks[BAD] / "f").stat().st_mode) == 0o644
        for _ in range(READS):
            assert _stat.S_IMODE((await top.stat(loc, None)).iatt.mode) == 0o600
            assert _stat.S_IMODE((await top.fstat(fd, None)).iatt.mode) == 0o600
        failers[BAD].fail["fsetattr"] = errno.EROFS
        await top.fsetattr(fd, Iatt(mode=0o640), SET_ATTR_MODE, None)
        for _ in range(READS):
            assert _stat.S_IMODE((await top.stat(loc, None)).iatt.mode) == 0o640
        assert pending(bricks[0] / "f", KEY_BAD)[1] > 0
        await top.lookup(root_loc("f", gfid), None)
        for _ in range(READS):
            assert _stat.S_IMODE((await top.fstat(fd, None)).iatt.mode) == 0o640
        # metadata failed, data did not: data reads may still use the child
        assert afr._ctx(gfid).data[BAD] and not afr._ctx(gfid).metadata[BAD]
        await top.flush(fd, None)
        await top.release(fd)


@pytest.mark.parametrize("policy", READ_POLICIES[:1])
async def test_read_after_truncate_failed_on_one_replica(tmp_path, policy):
    """ftruncate and truncate fail on one replica: reads and stat show the
    new size."""
    bricks, graph, afr, failers = rep3(tmp_path, policy)
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        failers[BAD].fail["ftruncate"] = errno.EIO
        await top.ftruncate(fd, 100, None)
        for _ in range(READS):
            assert await read_all(top, fd, len(OLD)) == OLD[:100]
            assert (await top.fstat(fd, None)).iatt.size == 100
        fd2, gfid2 = await create_file(top, "g", OLD)
        failers[BAD].fail["truncate"] = errno.EIO
        await top.truncate(Loc(path="/g", gfid=gfid2), 10, None)
        for _ in range(READS):
            assert await read_all(top, fd2, len(OLD)) == OLD[:10]
        for f in (fd, fd2):
            await top.flush(f, None)
            await top.release(f)


async def test_refresh_before_the_post_op_keeps_the_failed_child_out(tmp_path):
    """The window between the fop and its post-op: the good copies are
    only dirty on disk, nobody is accused yet, so a refresh from the
    changelogs alone would find every copy readable.  The failure the
    client saw still keeps the child out of its readable set."""
    bricks, graph, afr, failers = rep3(tmp_path, {"read-subvolume-index": str(BAD)})
    bad_key = afr.pending_keys[BAD]

    def accuses_bad(name, args):
        if name not in ("fxattrop", "xattrop"):
            return False
        value = args[2].get(bad_key)
        return value is not None and any(cl.decode(value))

    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        for i in range(3):
            if i != BAD:
                failers[i].hold_when = accuses_bad
        failers[BAD].fail["writev"] = errno.ENOSPC
        async with trio.open_nursery() as nursery:
            nursery.start_soon(top.writev, fd, NEW, 0, 0, None)
            with trio.fail_after(10):
                await failers[0].held.wait()
            # the post-op is held: no copy is accused on disk yet
            assert pending(bricks[0] / "f", KEY_BAD) == (0, 0, 0)
            await afr._refresh(gfid, fd)
            assert not afr._ctx(gfid).data[BAD]
            for _ in range(5):
                assert await read_all(top, fd, len(NEW)) == NEW
            assert "readv" not in failers[BAD].calls
            for i in range(3):
                failers[i].let_go.set()
        assert pending(bricks[0] / "f", KEY_BAD)[0] > 0
        await afr._refresh(gfid, fd)
        assert not afr._ctx(gfid).data[BAD]
        assert await read_all(top, fd, len(NEW)) == NEW
        await top.flush(fd, None)
        await top.release(fd)


async def test_only_good_copy_failing_fails_the_write(tmp_path):
    """In-flight split-brain (afr_set_in_flight_sb_status): when the only
    good copy fails a write that stale copies take, the write fails with
    the good copy's errno, the good copy is not accused, and it stays the
    one that is read."""
    bricks, graph, afr, failers = rep3(tmp_path, {"quorum-type": "none",
                                                  "read-subvolume-index": "1"})
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        # copies 1 and 2 miss a write: copy 0 is the only good one
        failers[1].fail["writev"] = failers[2].fail["writev"] = errno.ENOSPC
        await top.writev(fd, NEW, 0, 0, None)
        assert pending(bricks[0] / "f", f"trusted.afr.{VOL}-client-1")[0] > 0
        assert afr._ctx(gfid).data == [True, False, False]
        failers[1].fail.clear()
        failers[2].fail.clear()
        # now copy 0 fails and the stale copies would take the write
        failers[0].fail["writev"] = errno.EDQUOT
        with pytest.raises(FopError) as e:
            await top.writev(fd, b"x" * 10, 0, 0, None)
        assert e.value.errno == errno.EDQUOT
        assert afr._ctx(gfid).data == [True, False, False]
        for b in bricks:
            assert pending(b / "f", f"trusted.afr.{VOL}-client-0") == (0, 0, 0)
        failers[0].fail.clear()
        for _ in range(READS):
            assert await read_all(top, fd, len(NEW)) == NEW
        await top.lookup(root_loc("f", gfid), None)
        assert await read_all(top, fd, len(NEW)) == NEW
        await top.flush(fd, None)
        await top.release(fd)


async def test_getxattr_after_setxattr_failed_on_one_replica(tmp_path):
    """setxattr and removexattr fail on one replica: getxattr answers from
    a copy that has the change."""
    bricks, graph, afr, failers = rep3(tmp_path, {"read-subvolume-index": str(BAD)})
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        loc = Loc(path="/f", gfid=gfid)
        # the stale copy answers these reads without an error (an old value,
        # an xattr still there), so no failed read leads to a refresh
        await top.setxattr(loc, {"user.gone": b"1", "user.tag": b"old"}, 0, None)
        failers[BAD].fail["setxattr"] = errno.ENOSPC
        await top.setxattr(loc, {"user.tag": b"new"}, 0, None)
        for _ in range(READS):
            assert bytes((await top.getxattr(loc, "user.tag", None)).dict["user.tag"]) == b"new"
        failers[BAD].fail["removexattr"] = errno.ENOSPC
        await top.removexattr(loc, "user.gone", None)
        for _ in range(READS):
            with pytest.raises(FopError) as e:
                await top.getxattr(loc, "user.gone", None)
            assert e.value.errno == errno.ENODATA
        await top.flush(fd, None)
        await top.release(fd)


@pytest.fixture
def small_fs(tmp_path):
    """A 4 MiB tmpfs: a brick on it runs out of space for real."""
    where = tmp_path / "small"
    where.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(where)], check=True)
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)


async def test_read_after_write_failed_on_a_full_brick(tmp_path, small_fs):
    """No injected failure: brick 1's filesystem is full, so its posix
    answers the write ENOSPC while the brick stays up; reads of the client
    that wrote return the new data."""
    bricks = make_bricks(tmp_path, 3)
    bricks[BAD] = small_fs
    graph = Graph.from_text(local_volfile(
        bricks, vol=VOL, options={**NO_CLIENT_HEAL, "read-subvolume-index": str(BAD)}))
    afr = graph.by_name[f"{VOL}-replicate-0"]
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", OLD)
        with open(small_fs / "filler", "wb", buffering=0) as f:
            with contextlib.suppress(OSError):
                while True:
                    f.write(b"\1" * 4096)
        big = NEW * 64                                      # 256 KiB
        await top.writev(fd, big, 0, 0, None)
        assert (small_fs / "f").read_bytes() != big
        for _ in range(READS):
            assert await read_all(top, fd, len(big)) == big
        assert not afr._ctx(gfid).data[BAD]
        await top.flush(fd, None)
        await top.release(fd)
