"""The graph's inode table (glusterpy/inode.py): one per tree of
translators, per-translator context slots, lookup counts, an LRU bound whose
`forget` hook lets each translator release what it kept - and a client that
walks a namespace larger than the bound keeps a flat heap."""

from __future__ import annotations

import gc
import os
import tracemalloc

import pytest

from glusterpy.fops import GFID, ROOT_GFID, Dirent, Fd, Iatt, Loc
from glusterpy.graph import Graph
from glusterpy.inode import InodeTable
from glusterpy.xlator import Translator


class Keeper(Translator):
    """A leaf that keeps a context per inode and records its forgets."""

    CHILDREN = (0, 0)

    def __init__(self, name="keeper", options=None, children=()):
        super().__init__(name, options, children)
        self.forgotten: list[tuple[GFID, object]] = []
        self.busy: set[object] = set()

    def forget(self, inode):
        self.forgotten.append((inode.gfid, inode.ctx[self]))

    def inode_busy(self, ctx):
        return ctx in self.busy


class Parent(Translator):
    CHILDREN = (1, None)


def gfids(n):
    return [GFID.random() for _ in range(n)]


def test_lru_bound_forgets_the_least_recently_used_and_tells_the_translator():
    xl = Keeper()
    table = xl.itable
    table.limit = 3
    a, b, c, d = gfids(4)
    for g, v in ((a, "A"), (b, "B"), (c, "C")):
        table.set_ctx(xl, g, v)
    assert table.ctx(xl, a) == "A"           # a use: a is now the youngest
    table.set_ctx(xl, d, "D")                # one too many: b, the oldest, goes
    assert b not in table and len(table) == 3
    assert xl.forgotten == [(b, "B")]
    assert table.peek_ctx(xl, b) is None and table.ctx(xl, a) == "A"
    assert table.stats()["pruned"] == 1


def test_listed_ctx_is_peek_ctx_of_each_entry_and_moves_nothing():
    xl, other = Keeper(), Keeper("other")
    table = xl.itable
    a, b, c, unknown = gfids(4)
    table.set_ctx(xl, a, "A")
    table.set_ctx(other, b, "B")              # b is known, but not to xl
    table.set_ctx(xl, c, "C")
    entries = [Dirent(".", iatt=None), Dirent("a", iatt=Iatt(gfid=a)),
               Dirent("b", iatt=Iatt(gfid=b)), Dirent("u", iatt=Iatt(gfid=unknown)),
               Dirent("c", iatt=Iatt(gfid=c)), Dirent("a2", iatt=Iatt(gfid=a))]
    order = list(table._inodes)
    assert table.listed_ctx(xl, entries) == \
        [None if e.iatt is None else table.peek_ctx(xl, e.iatt.gfid) for e in entries] == \
        [None, "A", None, None, "C", "A"]
    assert [(e.name, ctx) for e, ctx in table.listed_held(xl, entries)] == \
        [("a", "A"), ("c", "C"), ("a2", "A")]
    assert list(table._inodes) == order and unknown not in table   # a peek: no use


def test_each_translators_contexts_are_counted_and_a_listing_skips_one_holding_none():
    xl, other = Keeper(), Keeper("other")
    table = xl.itable
    table.limit = 3
    a, b, c, d = gfids(4)
    table.set_ctx(xl, a, "A")
    table.set_ctx(xl, a, "A2")                # the same slot again: still one
    table.set_ctx(other, a, "a")
    table.set_ctx(xl, b, "B")
    assert (table.held(xl), table.held(other)) == (2, 1)
    assert table.del_ctx(xl, b) == "B" and table.del_ctx(xl, b) is None
    assert table.held(xl) == 1
    table.set_ctx(xl, c, "C")
    table.set_ctx(xl, d, "D")
    table.set_ctx(other, b, "b")              # past the bound: a, the oldest, goes
    assert a not in table and (table.held(xl), table.held(other)) == (2, 1)
    table.forget(c)
    assert table.held(xl) == 1
    # a translator holding nothing is not even looked up per entry: these
    # entries have no iatt attribute to read
    assert table.held(Keeper("none")) == 0
    assert table.listed_held(Keeper("none"), [object(), object()]) == []
    # a table joined into another brings its counts along
    joined = Keeper("joined")
    joined.itable.set_ctx(joined, d, "J")
    joined.itable.set_ctx(xl, d, "dup")       # xl already holds d here
    table.adopt(joined.itable)
    assert (table.held(joined), table.held(xl)) == (1, 1)
    assert joined.itable.held(joined) == 0


def test_busy_referenced_and_root_inodes_are_passed_over():
    xl = Keeper()
    table = xl.itable
    table.limit = 2
    root, busy, held, plain = ROOT_GFID, *gfids(3)
    table.set_ctx(xl, root, "root")
    table.set_ctx(xl, busy, "busy")
    xl.busy.add("busy")
    table.ref(held)
    table.set_ctx(xl, plain, "plain")
    # four inodes, limit two: the newest is never dropped as it is made
    assert not xl.forgotten and len(table) == 4
    # the next prune may take only `plain`, and does
    assert table.prune() == 1
    assert xl.forgotten == [(plain, "plain")]
    assert root in table and busy in table and held in table
    # once no longer busy or referenced, the next prune takes them
    xl.busy.clear()
    table.unref(table.peek(held))
    table.prune()
    assert len(table) == 2 and root in table
    with pytest.raises(ValueError, match="at least one"):
        table.limit = 0
    assert table.limit == 2


def test_lookup_counts_forget_drops_the_inode_at_zero():
    xl = Keeper()
    table = xl.itable
    g = GFID.random()
    table.lookup(g, 2)
    table.set_ctx(xl, g, "ctx")
    table.forget(g, 1)
    assert g in table and not xl.forgotten
    table.forget(g, 1)
    assert g not in table and xl.forgotten == [(g, "ctx")]
    table.forget(GFID.random())              # unknown: nothing to do
    table.lookup(ROOT_GFID)
    table.forget(ROOT_GFID)
    assert ROOT_GFID in table                # the root is never dropped


def test_one_table_per_tree_whatever_the_build_order():
    left, right = Keeper("left"), Keeper("right")
    g = GFID.random()
    right.itable.set_ctx(right, g, "known on the right before the join")
    top = Parent("top", children=[left, right])
    assert top.itable is left.itable is right.itable
    assert top.itable.peek_ctx(right, g) == "known on the right before the join"
    # contexts are per translator: one inode, two slots
    top.itable.set_ctx(left, g, "left's")
    inode = top.itable.peek(g)
    assert inode.ctx == {right: "known on the right before the join", left: "left's"}
    assert isinstance(InodeTable(), InodeTable) and InodeTable().limit == 65536


def test_a_graph_shares_one_table_across_its_translators(tmp_path):
    graph = Graph.from_text(walk_volfile([tmp_path / f"b{i}" for i in range(4)]))
    tables = {id(xl.itable) for xl in graph.bottom_up()}
    assert tables == {id(graph.top.itable)}


# -- a client walking a namespace larger than its bound --------------------------


def walk_volfile(bricks) -> str:
    """distribute over two replica pairs, io-cache on top: each keeps
    something per inode."""
    text = ""
    for i, b in enumerate(bricks):
        b.mkdir(parents=True, exist_ok=True)
        text += (f"volume p{i}-posix\n    type storage/posix\n    option directory {b}\n"
                 f"end-volume\n\nvolume p{i}\n    type features/locks\n"
                 f"    subvolumes p{i}-posix\nend-volume\n\n")
    pairs = [f"r{j}" for j in range(len(bricks) // 2)]
    for j, name in enumerate(pairs):
        text += (f"volume {name}\n    type cluster/replicate\n"
                 f"    subvolumes p{2 * j} p{2 * j + 1}\nend-volume\n\n")
    text += (f"volume dht\n    type cluster/distribute\n    subvolumes {' '.join(pairs)}\n"
             "end-volume\n\n"
             "volume ioc\n    type performance/io-cache\n    subvolumes dht\nend-volume\n")
    return text


FILES = 3000
LIMIT = 300


async def _make_namespace(top, dirs: int, per_dir: int) -> list[tuple[GFID, str]]:
    made = []
    for d in range(dirs):
        name = f"d{d}"
        reply = await top.mkdir(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name), 0o755, 0,
                                {"gfid-req": GFID.random()})
        dgfid = reply.iatt.gfid
        for f in range(per_dir):
            fname = f"f{f}"
            fd = Fd(flags=os.O_RDWR)
            await top.create(Loc(path=f"/{name}/{fname}", pargfid=dgfid, name=fname),
                             os.O_RDWR | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
            await top.release(fd, None)
        made.append((dgfid, name))
    return made


async def _walk(top, dirs, start, stop):
    """Look up every file of dirs[start:stop] by name, as `find` or `ls -l` do."""
    for dgfid, name in dirs[start:stop]:
        for f in range(FILES // len(dirs)):
            fname = f"f{f}"
            await top.lookup(Loc(path=f"/{name}/{fname}", pargfid=dgfid, name=fname), None)


def _heap() -> int:
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def _growth_of_second_half(tmp_path, limit: int) -> tuple[int, int, dict]:
    """Heap growth while walking the second half of a namespace whose
    first half is already walked, and the table's size at the end."""
    bricks = [tmp_path / f"b{i}" for i in range(4)]
    graph = Graph.from_text(walk_volfile(bricks))
    graph.top.itable.limit = limit
    async with graph.running():
        top = graph.top
        dirs = await _make_namespace(top, 30, FILES // 30)
        # a fresh graph on the same bricks plays the long-lived client
        client = Graph.from_text(walk_volfile(bricks))
        client.top.itable.limit = limit
        async with client.running():
            half = len(dirs) // 2
            tracemalloc.start()
            try:
                await _walk(client.top, dirs, 0, half)
                before = _heap()
                await _walk(client.top, dirs, half, len(dirs))
                after = _heap()
            finally:
                tracemalloc.stop()
            return after - before, len(client.top.itable), client.top.itable.stats()


async def test_walking_past_the_bound_keeps_the_heap_flat(tmp_path):
    bounded_growth, size, stats = await _growth_of_second_half(tmp_path / "bounded", LIMIT)
    assert size <= LIMIT and stats["pruned"] >= FILES - LIMIT
    # the same walk with no effective bound: the measurement can tell them apart
    unbounded_growth, unbounded_size, _ = await _growth_of_second_half(tmp_path / "unbounded",
                                                                       10 ** 9)
    assert unbounded_size > FILES
    per_inode = unbounded_growth / (FILES // 2)
    assert per_inode > 100, f"an inode should cost the client something ({per_inode:.0f} B)"
    # bounded: what the second half adds is small against what it adds unbounded
    assert bounded_growth < unbounded_growth / 5, (bounded_growth, unbounded_growth)
