"""The graph skips a translator for the fops it passes through unchanged
as its options stand (issue 15: fewer frames per request on the brick),
and stops skipping it the moment a reconfigure switches it on."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from glusterpy import changelog as cl
from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Caller, Fd, Loc
from glusterpy.graph import Graph


def brick_volfile(brick: Path) -> str:
    """posix -> changelog -> locks -> upcall -> index: the brick graph's
    order, every feature at its default (off)."""
    return (f"volume b-posix\n    type storage/posix\n    option directory {brick}\n"
            "end-volume\n"
            "volume b-changelog\n    type features/changelog\n    subvolumes b-posix\n"
            "end-volume\n"
            "volume b-locks\n    type features/locks\n    subvolumes b-changelog\nend-volume\n"
            "volume b-upcall\n    type features/upcall\n    subvolumes b-locks\nend-volume\n"
            "volume b-index\n    type features/index\n"
            f"    option index-base {brick}/.glusterfs/indices\n"
            "    subvolumes b-upcall\nend-volume\n")


def lands_on(xl, fop: str):
    """The translator whose own method `xl.<fop>` is now."""
    return getattr(xl, fop).__self__


async def make_file(top, name: str) -> Fd:
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(Loc(pargfid=ROOT_GFID, name=name), os.O_RDWR | os.O_CREAT,
                             stat.S_IFREG | 0o644, 0, fd, {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    return fd


async def test_off_translators_are_skipped_and_rebound_on_reconfigure(brick):
    graph = Graph.from_text(brick_volfile(brick))
    posix, changelog, locks, upcall, index = (
        graph.by_name[n] for n in ("b-posix", "b-changelog", "b-locks", "b-upcall", "b-index"))
    # before the graph runs nothing is skipped
    assert lands_on(index, "readv") is index
    async with graph.running():
        # off: index and upcall land on locks (which counts), changelog on posix
        assert lands_on(index, "readv") is locks
        assert lands_on(index, "lookup") is index     # index's own fop stays
        assert lands_on(upcall, "writev") is locks
        assert lands_on(changelog, "writev") is posix
        assert lands_on(locks, "readv") is locks
        fd = await make_file(index, "f")
        await index.writev(fd, b"hello", 0, 0, None)
        assert bytes((await index.readv(fd, 5, 0, 0, None)).data) == b"hello"

        # upcall on: it serves its fops again, and index, above it, goes to it
        upcall.reconfigure({"cache-invalidation": "on"})
        assert lands_on(upcall, "readv") is upcall
        assert lands_on(index, "readv") is upcall
        token = fops.caller.set(Caller(client="client-a"))
        try:
            await index.readv(fd, 5, 0, 0, None)
        finally:
            fops.caller.reset(token)
        assert upcall.dump_state()["inodes"] == 1   # the read registered its client

        # changelog on: a write through the top is journalled
        changelog.reconfigure({"changelog": "on", "rollover-time": "3600"})
        assert lands_on(changelog, "writev") is changelog
        assert lands_on(changelog, "readv") is posix    # never its business
        await index.writev(fd, b"again", 5, 0, None)
        assert changelog.dump_state()["records"] >= 1

        # and off again: skipped again, all the way up
        upcall.reconfigure({"cache-invalidation": "off"})
        changelog.reconfigure({"changelog": "off"})
        assert lands_on(index, "writev") is locks
        assert lands_on(changelog, "writev") is posix
        await index.release(fd, None)
    assert cl.history(str(brick / ".glusterfs" / "changelogs"))


CLIENT_STACK = ("features/utime", "performance/write-behind", "performance/io-cache",
                "performance/open-behind", "performance/quick-read", "performance/md-cache",
                "performance/io-threads")


def client_volfile(brick: Path) -> str:
    """posix under the client's stack of performance translators, in
    glusterd's order (utime at the bottom, io-threads on top)."""
    text = f"volume c-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n"
    below = "c-posix"
    for kind in CLIENT_STACK:
        name = "c-" + kind.split("/")[1]
        text += f"volume {name}\n    type {kind}\n    subvolumes {below}\nend-volume\n"
        below = name
    return text


async def test_client_translators_are_skipped_for_the_fops_they_leave_to_the_default(brick):
    """The client's performance translators say SKIP_DEFAULT_FOPS (issue 17:
    the mount pays a coroutine per translator per request): each fop lands
    on the nearest translator below that serves it itself, and files still
    work through the stack."""
    graph = Graph.from_text(client_volfile(brick))
    chain = [graph.by_name["c-" + k.split("/")[1]] for k in reversed(CLIENT_STACK)]
    chain.append(graph.by_name["c-posix"])
    top = chain[0]
    hot = ("lookup", "stat", "create", "unlink", "flush", "release", "getxattr", "writev",
           "readv", "opendir", "releasedir", "statfs")

    def own(xl, fop):
        return not getattr(getattr(type(xl), fop), "is_default_fop", False)

    async with graph.running():
        skipped = 0
        for i, xl in enumerate(chain[:-1]):
            assert type(xl).SKIP_DEFAULT_FOPS, xl.name
            for fop in hot:
                want = next(x for x in chain[i:] if own(x, fop))
                assert lands_on(xl, fop) is want, (xl.name, fop)
                skipped += want is not xl
        assert skipped > 20   # most of the stack's defaults among these fops
        fd = await make_file(top, "f")
        await top.writev(fd, b"hello", 0, 0, None)
        await top.flush(fd, None)
        assert bytes((await top.readv(fd, 5, 0, 0, None)).data) == b"hello"
        await top.release(fd, None)
        await top.unlink(Loc(pargfid=ROOT_GFID, name="f"), 0, None)
        assert not (brick / "f").exists()
