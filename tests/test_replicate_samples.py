"""GlusterFS 10's replica-3 bricks as test vectors.

../shared/glusterfs10-samples/bricks/rep3-bricks.tar.gz holds r1, r2 and r3
of volume rep3 as GlusterFS left them after brick 2 was killed, written
around and healed: zeroed ``trusted.afr.rep3-client-1`` keys on r1 and r3,
the index base files, the anonymous-inode directory.  Our replicate (over
our posix -> locks -> index stacks on those directories) must read them as
one healthy volume with nothing to heal.  Then the state *before* the heal
is rebuilt from the capture of that run - the entries made while brick 2
was down removed from r2 (handles included), r1 and r3 accusing client-1
with the counters GlusterFS's AFR wrote (keep: 2 entries; the new file
2 data + 1 metadata; the new directory 1/1/1) - and our heal must bring r2
back to what GlusterFS's heal made of it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from glusterpy.fops import GFID, ROOT_GFID, Fd, Loc
from glusterpy.graph import Graph

from replicate_support import index_entries, local_volfile, pending, tree_of
from test_replicate_heal import assert_clean, read_all
from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.heal_common import Outcome

SAMPLES = Path(__file__).resolve().parents[2] / "shared" / "glusterfs10-samples"
KEEP = GFID("bae16153-2435-424e-82d4-2db97c09246e")
CREATED = GFID("b5fa3231-7be7-41c7-abb5-b8c7c715b0de")
MADE_DIR = GFID("c12594c1-6bac-4431-82e1-5d7eaea15798")
KEY1 = "trusted.afr.rep3-client-1"


@pytest.fixture
def bricks(tmp_path):
    tarball = SAMPLES / "bricks" / "rep3-bricks.tar.gz"
    if not tarball.exists():
        pytest.skip(f"GlusterFS 10 sample bricks not found at {tarball}")
    if os.geteuid() != 0:
        pytest.skip("the sample bricks carry trusted.* xattrs: root only")
    subprocess.run(["tar", "--xattrs", "--xattrs-include=*", "-xzf", str(tarball), "-C",
                    str(tmp_path)], check=True)
    return [tmp_path / f"r{i}" for i in (1, 2, 3)]


def graph_on(bricks, **options) -> Graph:
    opts = {"volume-id": "7872a669-dc65-4f0c-9894-cdb84af9e503"}
    opts.update(options)
    return Graph.from_text(local_volfile(bricks, vol="rep3", options=opts))


async def test_glusterfs_healed_bricks_read_as_one_healthy_volume(bricks):
    async with graph_on(bricks).running() as g:
        assert await g.wait_child_up(5)
        top = g.top
        afr = g.by_name["rep3-replicate-0"]
        await top.lookup(Loc.root(), None)
        for rel in ("keep/f1", "keep/f2", "keep/f3", "keep/created-while-down",
                    "keep2/f1", "keep2/created-while-down"):
            parent, name = rel.split("/")
            p = await top.lookup(Loc(path="/" + parent, pargfid=ROOT_GFID, name=parent), None)
            f = await top.lookup(Loc(path="/" + rel, pargfid=p.iatt.gfid, name=name), None)
            assert await read_all(top, f.iatt.gfid) == (bricks[0] / rel).read_bytes()
            assert await afr.heal_info(f.iatt.gfid) == "no-heal"
        for gfid in (ROOT_GFID, KEEP, MADE_DIR):
            assert await afr.heal_info(gfid) == "no-heal"
        stats = await afr.heal_full()
        assert stats.healed == 0 and stats.split_brain == 0 and stats.failed == 0
        # the anonymous-inode directory stays private to replicate
        names = []
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), fd, None)
        offset = 0
        while entries := (await top.readdir(fd, 4096, offset, None)).entries:
            names += [e.name for e in entries]
            offset = entries[-1].off
        await top.releasedir(fd, None)
        assert sorted(n for n in names if n not in (".", "..")) == ["keep", "keep2"]
    trees = [tree_of(b) for b in bricks]
    assert trees[0] == trees[1] == trees[2]


def undo_glusterfs_heal(bricks) -> None:
    """The moment before GlusterFS's heal: r2 lacks what was made while it
    was down; r1 and r3 accuse client-1 (values from the capture)."""
    r1, r2, r3 = bricks
    for rel, gfid in (("keep/created-while-down", CREATED),
                      ("keep/dir-while-down", MADE_DIR)):
        p = r2 / rel
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()
        handle = r2 / ".glusterfs" / str(gfid)[:2] / str(gfid)[2:4] / str(gfid)
        handle.unlink()
    for b in (r1, r3):
        os.setxattr(b / "keep", KEY1, cl.encode((0, 0, 2)))
        os.setxattr(b / "keep/created-while-down", KEY1, cl.encode((2, 1, 0)))
        os.setxattr(b / "keep/dir-while-down", KEY1, cl.encode((1, 1, 1)))


async def test_our_heal_redoes_what_glusterfs_healed(bricks):
    undo_glusterfs_heal(bricks)
    r1, r2, r3 = bricks
    expected = tree_of(r1)
    async with graph_on(bricks, **{"granular-entry-heal": "on"}).running() as g:
        assert await g.wait_child_up(5)
        afr = g.by_name["rep3-replicate-0"]
        await g.top.lookup(Loc.root(), None)
        assert await afr.heal_info(KEEP) == "heal-pending"
        # the dir heal (a full crawl here: no name index was left behind)
        # creates both names on r2, with r1's gfids, and marks them new
        assert await afr.heal_gfid(KEEP) == Outcome.HEALED
        assert pending(r1 / "keep", KEY1) == (0, 0, 0)
        assert pending(r1 / "keep/created-while-down", KEY1)[0] > 0
        for gfid in (CREATED, MADE_DIR):
            assert await afr.heal_gfid(gfid) == Outcome.HEALED
    assert tree_of(r2) == expected == tree_of(r3)
    assert_clean(bricks)
    for b in bricks:
        assert index_entries(b, "entry-changes") == set()
