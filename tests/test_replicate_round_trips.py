"""The round trips a replicate caller waits for (issue 17): a transaction's
tail that cannot change the answer - the unlock of an entry transaction
that failed nowhere, and the delayed post-op, unlock and release behind a
released fd - goes on behind the caller, as GlusterFS's AFR does
(__afr_dir_write_cbk unwinds before the post-op and unlock when nothing
failed; nobody waits for a release).  Each test holds the tail's call at
the bricks and looks whether the caller already has its answer: a count of
what the caller waited for, not a time.  What must not change: a create
that failed somewhere still answers only after its post-op has accused the
copy that missed it, and the tails are over before the graph stops.
"""

from __future__ import annotations

import errno
import os

import trio
import trio.testing

from glusterpy.fops import EntrylkCmd, Fd, Loc, LockType
from glusterpy.graph import Graph

from replicate_support import (create_file, insert_failers, local_volfile,
                               make_bricks, pending)

VOL = "rep"


def rep3(tmp_path, options=None):
    bricks = make_bricks(tmp_path, 3)
    graph = Graph.from_text(local_volfile(bricks, vol=VOL, options=options))
    afr = graph.by_name[f"{VOL}-replicate-0"]
    return bricks, graph, afr, insert_failers(graph, afr)


def is_entry_unlock(name, args):
    return name == "entrylk" and args[3] == EntrylkCmd.UNLOCK


def is_xattrop(name, args):
    return name in ("xattrop", "fxattrop")


def is_inode_unlock(name, args):
    return name in ("inodelk", "finodelk") and args[3].type == LockType.UNLCK


def is_release(name, args):
    return name == "release"


async def answered_while_held(failers, call) -> bool:
    """Run `call` with the held calls stopped at the bricks: True when it
    answered while they were still held (it did not wait for them)."""
    answered = []

    async def run():
        await call()
        answered.append(True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run)
        with trio.fail_after(10):
            await failers[0].held.wait()
        await trio.testing.wait_all_tasks_blocked()
        result = bool(answered)
        for f in failers:
            f.let_go.set()
    return result


async def test_a_create_that_failed_nowhere_does_not_wait_for_its_unlock(tmp_path):
    """lookup-free create: entrylk, CREATE, then the unlock goes on behind
    the answer - 2 round trips waited for, not 3; the lock is gone once it
    went through (another owner takes it without waiting)."""
    bricks, graph, afr, failers = rep3(tmp_path)
    async with graph.running():
        top = graph.top
        for f in failers:
            f.hold_when = is_entry_unlock
        assert await answered_while_held(failers, lambda: create_file(top, "f", b""))
        await trio.testing.wait_all_tasks_blocked()
        assert afr._behind_count == 0
        for f in failers:
            f.hold_when = None
        for f in failers:
            assert f.calls.count("entrylk") == 2        # the lock and its unlock


async def test_a_create_that_failed_somewhere_waits_for_its_post_op(tmp_path):
    """A copy that missed the create is accused on the parent before the
    create answers: that tail stays in front of the answer."""
    bricks, graph, afr, failers = rep3(tmp_path, {"quorum-type": "fixed",
                                                  "quorum-count": "2"})
    async with graph.running():
        top = graph.top
        failers[2].fail["create"] = errno.ENOSPC
        for f in failers[:2]:
            f.hold_when = is_xattrop
        assert not await answered_while_held(failers[:2], lambda: create_file(top, "f"))
        assert pending(bricks[0], f"trusted.afr.{VOL}-client-2")[2] > 0


async def test_a_release_does_not_wait_for_the_delayed_post_op(tmp_path):
    """write, then release with the write's post-op still delayed: the
    release answers while the post-op is held at the bricks (it waited for
    none of post-op, unlock and release); the post-op then lands - no copy
    dirty, the file's data lock free for the next writer."""
    bricks, graph, afr, failers = rep3(tmp_path)
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", b"old")
        await top.writev(fd, b"new", 0, 0, None)
        for f in failers:
            f.hold_when = is_xattrop
        assert await answered_while_held(failers, lambda: top.release(fd))
        await trio.testing.wait_all_tasks_blocked()
        assert afr._behind_count == 0
        for b in bricks:
            assert pending(b / "f", "trusted.afr.dirty") == (0, 0, 0)
        for f in failers:
            f.hold_when = None
        fd2 = Fd(flags=os.O_RDWR)
        await top.open(Loc(path="/f", gfid=gfid), os.O_RDWR, fd2, None)
        fd2.gfid = gfid
        await top.writev(fd2, b"again", 0, 0, None)
        await top.release(fd2)
    for b in bricks:
        assert (b / "f").read_bytes() == b"again"


async def test_a_flush_waits_for_the_post_op_not_the_unlock(tmp_path):
    """close(2)'s flush: the delayed post-op is done before the flush
    answers (afr_flush), its unlock (FINODELK, as GlusterFS's) goes on
    behind - and the fd's release waits for it, so no unlock reaches a
    brick after the fd it names was closed there."""
    bricks, graph, afr, failers = rep3(tmp_path)
    async with graph.running():
        top = graph.top
        fd, gfid = await create_file(top, "f", b"data")
        for f in failers:
            f.hold_when = is_inode_unlock
        assert await answered_while_held(failers, lambda: top.flush(fd, None))
        for b in bricks:
            assert pending(b / "f", "trusted.afr.dirty") == (0, 0, 0)
        await top.release(fd)
        for f in failers:
            f.hold_when = None
            f.let_go = trio.Event()
        failers[0].hold_when = is_inode_unlock      # brick 0's unlock held again
        fd_b, _ = await create_file(top, "g", b"data")
        await top.flush(fd_b, None)
        await top.release(fd_b)
        await trio.testing.wait_all_tasks_blocked()
        assert failers[0].calls[-1] == "finodelk"     # no release behind it yet
        failers[0].let_go.set()
        await trio.testing.wait_all_tasks_blocked()
        assert afr._behind_count == 0
        assert failers[0].calls[-2:] == ["finodelk", "release"]
        failers[0].hold_when = None
        fd2 = Fd(flags=os.O_RDWR)
        await top.open(Loc(path="/f", gfid=gfid), os.O_RDWR, fd2, None)
        fd2.gfid = gfid
        await top.writev(fd2, b"more", 0, 0, None)     # the data lock is free
        await top.flush(fd2, None)
        await top.release(fd2)


async def test_a_release_does_not_wait_for_the_bricks(tmp_path):
    """Nothing answers to a release: it returns while the bricks' releases
    are held; the fds are gone from the bricks once they go through."""
    bricks, graph, afr, failers = rep3(tmp_path)
    async with graph.running():
        top = graph.top
        fd, _ = await create_file(top, "f", b"")
        for f in failers:
            f.hold_when = is_release
        assert await answered_while_held(failers, lambda: top.release(fd))
        await trio.testing.wait_all_tasks_blocked()
        assert afr._behind_count == 0
        assert all(f.calls.count("release") == 1 for f in failers)


async def test_tails_behind_are_done_before_the_graph_stops(tmp_path):
    """Released fds with delayed post-ops, then the graph stops at once:
    fini waits for the tails, so every copy ends clean and unlocked."""
    bricks, graph, afr, failers = rep3(tmp_path)
    async with graph.running():
        top = graph.top
        for i in range(5):
            fd, _ = await create_file(top, f"f{i}", b"data %d" % i)
            await top.release(fd)
    for b in bricks:
        for i in range(5):
            assert (b / f"f{i}").read_bytes() == b"data %d" % i
            assert pending(b / f"f{i}", "trusted.afr.dirty") == (0, 0, 0)
