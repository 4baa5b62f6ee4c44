"""cluster/replicate when bricks go away and come back: changelogs, heal,
split-brain, quorum and the arbiter.

Bricks are served in process by protocol/server on loopback and reached
through protocol/client (replicate_support.NetworkReplica), so stopping a
brick closes real connections and replicate gets real CHILD_DOWN and
CHILD_UP events from protocol/client.  Every test ends by comparing the
bricks themselves.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import os
import stat

import pytest
import trio

from glusterpy.fops import (GFID, ROOT_GFID, EntrylkCmd, Fd, FopError, Iatt, Loc, LockType,
                            SET_ATTR_MODE)

from replicate_support import (NetworkReplica, afr_xattrs, create_file, gfid_req,
                               index_entries, pending, root_loc, tree_of, wait_for)
from sparse_support import (MIB, assert_sparse_copy, data_extents, sparse_chunks,
                            sparse_content, write_sparse)
from xlators.cluster.replicate.heal_common import Outcome


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    """protocol/client retries a lost brick every 3 s (rpc-clnt's timer);
    the tests restart bricks often, so they retry every 0.1 s."""
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)


@contextlib.asynccontextmanager
async def replica(tmp_path, n=3, options=None, arbiter=False, vol="rep"):
    net = NetworkReplica(tmp_path, n, vol=vol, arbiter=arbiter)
    async with net.running():
        graph = net.client_graph(options)
        async with graph.running():
            afr = graph.by_name[f"{vol}-replicate-0"]
            await wait_for(lambda: all(afr.child_up))
            await graph.top.lookup(Loc.root(), None)
            yield net, graph, afr


async def down(net, afr, i):
    await net.stop(i)
    await wait_for(lambda: not afr.child_up[i])


async def up(net, afr, i):
    await net.start(i)
    await wait_for(lambda: afr.child_up[i])


def key(i, vol="rep"):
    return f"trusted.afr.{vol}-client-{i}"


def assert_identical(bricks, ignore=()):
    trees = [tree_of(b) for b in bricks]
    for t in trees[1:]:
        assert t == trees[0]


def assert_clean(bricks):
    """No pending counters, nothing in any index."""
    for b in bricks:
        for dirpath, dirnames, filenames in os.walk(b):
            if dirpath == str(b):
                dirnames[:] = [d for d in dirnames if d != ".glusterfs"]
            for name in [dirpath] + [os.path.join(dirpath, f) for f in filenames + dirnames]:
                for k, v in afr_xattrs(name).items():
                    assert v == bytes(12), f"{name}: {k} = {v.hex()}"
        for kind in ("xattrop", "dirty"):
            assert index_entries(b, kind) == set(), f"{b}: {kind} index not empty"


async def heal_until_clean(afr, rounds: int = 5):
    """What the self-heal daemon does: crawl every brick's index again
    until nothing is pending (an inode whose parent directory is not
    healed yet cannot be healed in the same round)."""
    total = None
    for _ in range(rounds):
        pending_now = []
        for i in range(afr.child_count):
            if afr.child_up[i]:
                pending_now += await afr.pending_entries(i)
        if not pending_now:
            return total
        for i in range(afr.child_count):
            if afr.child_up[i]:
                stats = await afr.heal_index(i)
                assert stats.split_brain == 0, stats
                total = stats if total is None else total
    raise AssertionError(f"still pending after {rounds} crawls")


async def read_all(top, gfid, chunk_size=65536):
    fd = Fd(gfid=gfid, flags=os.O_RDONLY)
    await top.open(Loc(gfid=gfid), os.O_RDONLY, fd, None)
    try:
        out = b""
        while True:
            chunk = bytes((await top.readv(fd, chunk_size, len(out), 0, None)).data)
            if not chunk:
                return out
            out += chunk
    finally:
        await top.release(fd, None)


async def test_a_child_down_mid_writes_then_heal_makes_bricks_identical(tmp_path):
    """A writer keeps writing while brick 1 goes down: every write is
    acknowledged, the others accuse brick 1 (data, metadata, entries) and
    index the inodes; brick 1 comes back; one index crawl heals everything
    and the three bricks are byte-identical with every acknowledged write."""
    async with replica(tmp_path, options={"granular-entry-heal": "on"}) as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "log")
        expected = bytearray()
        stop_writing = trio.Event()

        async def writer():
            k = 0
            while not stop_writing.is_set():
                chunk = bytes([k % 251]) * 1500
                await top.writev(fd, chunk, len(expected), 0, None)
                expected.extend(chunk)
                k += 1
                await trio.sleep(0.002)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.1)
            await down(net, afr, 1)
            await trio.sleep(0.1)
            # namespace and metadata changes while it is down
            d = await top.mkdir(root_loc("dir"), 0o755, 0, gfid_req())
            f2, g2 = await create_file(top, "new", b"made while down", parent=d.iatt.gfid,
                                       parent_path="/dir")
            await top.release(f2, None)
            await top.rename(Loc(path="/dir/new", pargfid=d.iatt.gfid, name="new", gfid=g2),
                             Loc(path="/dir/renamed", pargfid=d.iatt.gfid, name="renamed"),
                             None)
            await top.setattr(Loc(path="/log", gfid=gfid), Iatt(mode=0o600), SET_ATTR_MODE,
                              None)
            await top.setxattr(Loc(path="/log", gfid=gfid), {"user.tag": b"v"}, 0, None)
            await trio.sleep(0.1)
            stop_writing.set()
        await top.flush(fd, None)
        b0, b1, b2 = net.bricks
        for b in (b0, b2):
            data, meta, _ = pending(b / "log", key(1))
            assert data > 0 and meta > 0
            assert pending(b, key(1))[2] > 0 and pending(b / "dir", key(1))[2] > 0
            assert str(gfid) in index_entries(b)
        assert not (b1 / "dir").exists()

        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert_identical(net.bricks)
        assert_clean(net.bricks)
        assert (b1 / "log").read_bytes() == bytes(expected)
        assert stat.S_IMODE((b1 / "log").stat().st_mode) == 0o600
        assert os.getxattr(b1 / "log", "user.tag") == b"v"
        assert (b1 / "dir" / "renamed").read_bytes() == b"made while down"
        assert await read_all(top, gfid) == bytes(expected)
        await top.release(fd, None)


async def test_reads_never_come_from_a_stale_brick(tmp_path):
    """read-subvolume-index points at brick 1, which missed a write: after
    it comes back, reads come from a good copy, and its copy is healed
    only when asked."""
    async with replica(tmp_path, options={"read-subvolume-index": "1"}) as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "f", b"old" * 100)
        await top.flush(fd, None)
        await down(net, afr, 1)
        await top.writev(fd, b"new" * 100, 0, 0, None)
        await top.flush(fd, None)
        await up(net, afr, 1)
        assert (net.bricks[1] / "f").read_bytes() == b"old" * 100
        assert bytes((await top.readv(fd, 300, 0, 0, None)).data) == b"new" * 100
        assert await read_all(top, gfid) == b"new" * 100
        assert afr.itable.peek_ctx(afr, gfid).data == [True, False, True]
        assert await afr.heal_info(gfid) == "heal-pending"
        assert await afr.heal_info_entries(0) == [(gfid, "/f", "heal-pending")]
        assert await afr.heal_info_entries(0, split_brain_only=True) == []
        assert await afr.heal_gfid(gfid) == Outcome.HEALED
        assert await afr.heal_info(gfid) == "no-heal"
        assert await afr.heal_info_entries(0) == []
        assert (net.bricks[1] / "f").read_bytes() == b"new" * 100
        await top.release(fd, None)


async def test_client_side_heal_starts_from_lookup(tmp_path):
    options = {"data-self-heal": "on", "metadata-self-heal": "on", "entry-self-heal": "on"}
    async with replica(tmp_path, options=options) as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "f", b"1" * 5000)
        await top.release(fd, None)
        await down(net, afr, 2)
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
        await top.writev(fd, b"2" * 8000, 0, 0, None)
        await top.release(fd, None)
        f2, g2 = await create_file(top, "while-down", b"x")
        await top.release(f2, None)
        await up(net, afr, 2)
        # a lookup of the name heals it (name heal is not optional) ...
        await top.lookup(root_loc("while-down"), None)
        assert (net.bricks[2] / "while-down").exists()
        # ... and the accused copies are healed in the background
        await top.lookup(root_loc("f"), None)
        await wait_for(lambda: (net.bricks[2] / "f").read_bytes() == b"2" * 8000)
        await top.lookup(root_loc("while-down"), None)
        await wait_for(lambda: (net.bricks[2] / "while-down").read_bytes() == b"x")
        await wait_for(lambda: pending(net.bricks[0] / "f", key(2)) == (0, 0, 0))


async def make_data_split_brain(net, afr, top, name="sb"):
    """Replica 2 without quorum: each brick gets a write the other missed."""
    fd, gfid = await create_file(top, name, b"base" * 10)
    await top.flush(fd, None)
    await down(net, afr, 1)
    await top.writev(fd, b"A" * 100, 0, 0, None)        # on brick 0 only: 100 bytes
    await top.flush(fd, None)
    await trio.sleep(0.05)
    await up(net, afr, 1)
    await down(net, afr, 0)
    await top.writev(fd, b"B" * 60, 0, 0, None)         # on brick 1 only: 60 bytes
    await top.flush(fd, None)
    await up(net, afr, 0)
    return fd, gfid


async def test_split_brain_is_detected_and_reads_fail(tmp_path):
    async with replica(tmp_path, n=2) as (net, graph, afr):
        top = graph.top
        fd, gfid = await make_data_split_brain(net, afr, top)
        b0, b1 = net.bricks
        assert pending(b0 / "sb", key(1))[0] > 0 and pending(b1 / "sb", key(0))[0] > 0
        with pytest.raises(FopError) as e:
            await top.readv(fd, 100, 0, 0, None)
        assert e.value.errno == errno.EIO
        with pytest.raises(FopError) as e:
            await top.writev(fd, b"C", 0, 0, None)
        assert e.value.errno == errno.EIO
        assert (await afr.heal_info(gfid)).startswith("split-brain")
        listed = await afr.heal_info_entries(0, split_brain_only=True)
        assert [(g, p) for g, p, st in listed] == [(gfid, "/sb")]
        assert listed[0][2].startswith("split-brain")
        status = await afr.split_brain_status(gfid)
        assert status.startswith("data-split-brain:yes    metadata-split-brain:no    "
                                 "Choices:rep-client-0,rep-client-1")
        with pytest.raises(FopError) as e:
            await afr.heal_gfid(gfid)
        assert e.value.errno == errno.EIO
        # nothing was picked silently
        assert b0.joinpath("sb").read_bytes()[:100] == b"A" * 100
        assert b1.joinpath("sb").read_bytes()[:60] == b"B" * 60
        # the same through getxattr, as glfsheal asks
        got = await top.getxattr(Loc(path="/sb", gfid=gfid), "glusterfs.heal-info", None)
        assert got.dict["heal-info"].startswith("split-brain")
        await top.release(fd, None)


@pytest.mark.parametrize("policy,source,winner", [
    ("bigger-file", None, "A"), ("latest-mtime", None, "B"),
    ("source-brick", "rep-client-1", "B"), ("source-brick", "rep-client-0", "A")])
async def test_split_brain_resolution_policies(tmp_path, policy, source, winner):
    async with replica(tmp_path, n=2) as (net, graph, afr):
        top = graph.top
        fd, gfid = await make_data_split_brain(net, afr, top)
        assert await afr.resolve_split_brain(gfid, policy, source) == ""
        contents = {b.joinpath("sb").read_bytes() for b in net.bricks}
        assert len(contents) == 1
        data = contents.pop()
        assert data == (b"A" * 100 if winner == "A" else b"B" * 60)
        assert_clean(net.bricks)
        assert await read_all(top, gfid) == data
        assert await afr.resolve_split_brain(gfid, policy, source) == "File not in split-brain"
        await top.release(fd, None)


async def test_resolution_refusals_and_the_getxattr_interface(tmp_path):
    async with replica(tmp_path, n=2) as (net, graph, afr):
        top = graph.top
        fd, gfid = await make_data_split_brain(net, afr, top)
        assert await afr.resolve_split_brain(gfid, "source-brick", "no-such") == \
            "Invalid brick name"
        with pytest.raises(FopError):
            await afr.resolve_split_brain(gfid, "coin-toss")
        got = await top.getxattr(Loc(path="/sb", gfid=gfid), "glusterfs.heal-sbrain",
                                 {"heal-op": 10})
        assert "sh-fail-msg" not in got.dict
        assert {b.joinpath("sb").read_bytes() for b in net.bricks} == {b"A" * 100}
        await top.release(fd, None)


async def test_favorite_child_policy_heals_automatically(tmp_path):
    async with replica(tmp_path, n=2, options={"favorite-child-policy": "size"}) as (
            net, graph, afr):
        top = graph.top
        fd, gfid = await make_data_split_brain(net, afr, top)
        assert await afr.heal_gfid(gfid) == Outcome.HEALED
        assert {b.joinpath("sb").read_bytes() for b in net.bricks} == {b"A" * 100}
        assert_clean(net.bricks)
        await top.release(fd, None)


async def test_split_brain_choice_lets_one_copy_be_read(tmp_path):
    async with replica(tmp_path, n=2) as (net, graph, afr):
        top = graph.top
        fd, gfid = await make_data_split_brain(net, afr, top)
        await top.setxattr(Loc(path="/sb", gfid=gfid),
                           {"replica.split-brain-choice": b"rep-client-1"}, 0, None)
        assert bytes((await top.readv(fd, 60, 0, 0, None)).data) == b"B" * 60
        await top.release(fd, None)


async def test_gfid_and_type_mismatch_are_reported_not_guessed(tmp_path):
    """The same name created on each brick while the other was down: the
    parent is in entry split-brain; the conservative merge keeps both
    copies, reports the mismatch (EIO) and lookup fails with EIO."""
    async with replica(tmp_path, n=2) as (net, graph, afr):
        top = graph.top
        await down(net, afr, 1)
        f, g0 = await create_file(top, "x", b"zero")
        await top.release(f, None)
        await top.mkdir(root_loc("t"), 0o755, 0, gfid_req())
        await up(net, afr, 1)
        await down(net, afr, 0)
        f, g1 = await create_file(top, "x", b"one")
        await top.release(f, None)
        f, _ = await create_file(top, "t", b"a file here")
        await top.release(f, None)
        await up(net, afr, 0)
        b0, b1 = net.bricks
        for name in ("x", "t"):
            with pytest.raises(FopError) as e:
                await top.lookup(root_loc(name), None)
            assert e.value.errno == errno.EIO
        with pytest.raises(FopError) as e:
            await afr.heal_gfid(ROOT_GFID)
        assert e.value.errno == errno.EIO
        assert (b0 / "x").read_bytes() == b"zero" and (b1 / "x").read_bytes() == b"one"
        assert (b0 / "t").is_dir() and (b1 / "t").is_file()
        assert (await afr.heal_info(ROOT_GFID)).startswith("split-brain")


OLD_B, C_DATA = b"the old b", b"c's data, renamed over b"

#: (stale, dead): the brick that misses the rename, the brick that goes down
#: after it; the stale brick once after the good one in index order, once
#: before it (a lookup must not answer from the first reply it got)
STALE_THEN_DEAD = [pytest.param(2, 0, id="stale-after-good"),
                   pytest.param(0, 1, id="stale-before-good")]


async def rename_over_missed_by(net, afr, top, stale, dead):
    """b and c written on every brick; `stale` misses the rename of c over b
    (the others accuse it in the root's entry changelog); then `dead` goes
    down and `stale` comes back: the two up hold b with different gfids."""
    f, gb = await create_file(top, "b", OLD_B)
    await top.release(f, None)
    f, gc = await create_file(top, "c", C_DATA)
    await top.release(f, None)
    await down(net, afr, stale)
    await top.rename(root_loc("c", gc), root_loc("b", gb), None)
    await down(net, afr, dead)
    await up(net, afr, stale)
    return gb, gc


@pytest.mark.parametrize("stale,dead", STALE_THEN_DEAD)
async def test_lookup_trusts_the_parents_good_copy_when_a_stale_brick_comes_back(
        tmp_path, stale, dead):
    """With the stale brick back and the other good one down, a lookup of
    b sees two gfids; the root's changelog on the good brick accuses the
    stale one, so b is c's file (its gfid, its data) - not EIO, though the
    root's readable set was computed before the stale brick came back.
    With every brick back, heal makes the copies equal, c's data kept."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        gb, gc = await rename_over_missed_by(net, afr, top, stale, dead)
        good = 3 - stale - dead
        assert pending(net.bricks[good], key(stale))[2] > 0
        reply = await top.lookup(root_loc("b"), None)
        assert reply.iatt.gfid == gc
        assert (await top.stat(root_loc("b", gc), None)).iatt.size == len(C_DATA)
        assert await read_all(top, gc) == C_DATA
        await up(net, afr, dead)
        await heal_until_clean(afr)
        assert (await top.lookup(root_loc("b"), None)).iatt.gfid == gc
        for b in net.bricks:
            assert (b / "b").read_bytes() == C_DATA and not (b / "c").exists()
        assert_identical(net.bricks)
        assert_clean(net.bricks)


@pytest.mark.parametrize("stale,dead", STALE_THEN_DEAD)
async def test_unlink_over_a_stale_brick_back_removes_the_good_name(tmp_path, stale, dead):
    """The sequence the kills model found: unlink b in that state removes
    b (c's file) instead of failing with EIO; heal then removes the stale
    names from the brick that was down, and nothing is left pending."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        await rename_over_missed_by(net, afr, top, stale, dead)
        await top.unlink(root_loc("b", (await top.lookup(root_loc("b"), None)).iatt.gfid),
                         0, None)
        with pytest.raises(FopError) as e:
            await top.lookup(root_loc("b"), None)
        assert e.value.errno == errno.ENOENT
        await up(net, afr, dead)
        await heal_until_clean(afr)
        for b in net.bricks:
            assert sorted(p.name for p in b.iterdir() if p.name != ".glusterfs") == []
        assert_clean(net.bricks)


async def test_gfid_mismatch_no_copy_accuses_is_eio(tmp_path):
    """The same state with the accusation wiped from the good bricks' root
    (a real gfid split-brain: no copy says which b is right): the refreshed
    parent vouches for both, so the lookup answers EIO and neither copy is
    touched."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        f, gb = await create_file(top, "b", OLD_B)
        await top.release(f, None)
        f, gc = await create_file(top, "c", C_DATA)
        await top.release(f, None)
        await down(net, afr, 2)
        await top.rename(root_loc("c", gc), root_loc("b", gb), None)
        for b in net.bricks[:2]:
            os.removexattr(b, key(2))
        await down(net, afr, 0)
        await up(net, afr, 2)
        with pytest.raises(FopError) as e:
            await top.lookup(root_loc("b"), None)
        assert e.value.errno == errno.EIO
        b0, b1, b2 = net.bricks
        assert (b1 / "b").read_bytes() == C_DATA and (b2 / "b").read_bytes() == OLD_B
        assert (b2 / "c").read_bytes() == C_DATA


async def test_quorum_refuses_writes_instead_of_splitting(tmp_path):
    """Replica 3 (auto quorum): with two bricks down a write, a create and
    a read fail with ENOTCONN; with one down everything works."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "f", b"data")
        await top.flush(fd, None)
        await down(net, afr, 1)
        await top.writev(fd, b"more", 4, 0, None)
        await down(net, afr, 2)
        for attempt in (top.writev(fd, b"x", 0, 0, None),
                        top.create(root_loc("g"), os.O_RDWR | os.O_CREAT, 0o644, 0,
                                   Fd(flags=os.O_RDWR), gfid_req()),
                        top.readv(fd, 4, 0, 0, None)):
            with pytest.raises(FopError) as e:
                await attempt
            assert e.value.errno == errno.ENOTCONN
        assert (net.bricks[0] / "f").read_bytes() == b"datamore"
        assert not (net.bricks[0] / "g").exists()
        await up(net, afr, 1)
        await up(net, afr, 2)
        await top.release(fd, None)


async def test_fixed_quorum_count(tmp_path):
    options = {"quorum-type": "fixed", "quorum-count": "1"}
    async with replica(tmp_path, options=options) as (net, graph, afr):
        assert afr.quorum_count == 1
        await down(net, afr, 1)
        await down(net, afr, 2)
        fd, gfid = await create_file(graph.top, "alone", b"ok")
        await graph.top.release(fd, None)
        assert (net.bricks[0] / "alone").read_bytes() == b"ok"


async def test_replica2_without_quorum_writes_with_one_brick(tmp_path):
    async with replica(tmp_path, n=2) as (net, graph, afr):
        assert afr.quorum_count == 0
        await down(net, afr, 0)
        fd, gfid = await create_file(graph.top, "f", b"one brick")
        await graph.top.release(fd, None)
        assert pending(net.bricks[1], key(0))[2] == 1


async def test_arbiter_keeps_names_and_changelogs_not_data(tmp_path):
    """replica 3 arbiter 1: the arbiter's files are empty but carry the
    changelogs; with only the arbiter agreeing with a stale copy, writes
    are refused (ENOTCONN) and reads fail; heal fills the data bricks."""
    options = {"arbiter-count": "1"}
    async with replica(tmp_path, options=options, arbiter=True) as (net, graph, afr):
        top = graph.top
        b0, b1, b2 = net.bricks
        fd, gfid = await create_file(top, "f", b"payload" * 100)
        await top.flush(fd, None)
        assert (b0 / "f").read_bytes() == b"payload" * 100 == (b1 / "f").read_bytes()
        assert (b2 / "f").stat().st_size == 0
        assert await read_all(top, gfid) == b"payload" * 100
        await down(net, afr, 0)
        await top.writev(fd, b"NEW!", 0, 0, None)
        await top.flush(fd, None)
        assert pending(b2 / "f", key(0))[0] > 0       # the arbiter accuses brick 0
        await down(net, afr, 1)
        await up(net, afr, 0)
        # brick 0 is stale and the arbiter alone cannot vouch for data
        with pytest.raises(FopError) as e:
            await top.writev(fd, b"x", 0, 0, None)
        assert e.value.errno in (errno.ENOTCONN, errno.EIO)
        with pytest.raises(FopError) as e:
            await top.readv(fd, 4, 0, 0, None)
        assert e.value.errno in (errno.EIO, errno.ENOTCONN)
        await up(net, afr, 1)
        assert await afr.heal_gfid(gfid) == Outcome.HEALED
        assert (b0 / "f").read_bytes() == (b1 / "f").read_bytes() == b"NEW!" + \
            (b"payload" * 100)[4:]
        assert (b2 / "f").stat().st_size == 0
        assert_clean(net.bricks)
        await top.release(fd, None)



@pytest.mark.parametrize("algorithm", ["diff", "full"])
async def test_heal_keeps_a_sparse_files_holes(tmp_path, algorithm):
    """A 64 MiB file with three 1 MiB data extents is created while brick 1
    is down; heal (entry, then data) copies the data and leaves the holes:
    the healed brick file allocates about 3 MiB and its SEEK_DATA/SEEK_HOLE
    extents are the source brick's.  Either algorithm: zero blocks past
    the sink's size are not written (heal_data._heal_block)."""
    async with replica(tmp_path, options={"data-self-heal-algorithm": algorithm}) \
            as (net, graph, afr):
        top = graph.top
        await down(net, afr, 1)
        fd, gfid = await create_file(top, "sparse")
        await write_sparse(top, fd)
        await top.flush(fd, None)
        await top.release(fd, None)
        b0, b1, b2 = net.bricks
        assert not (b1 / "sparse").exists()
        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert_clean(net.bricks)
        assert_sparse_copy(b0 / "sparse")
        assert_sparse_copy(b1 / "sparse", source=b0 / "sparse")
        assert await read_all(top, gfid, 1 << 20) == sparse_content()


@pytest.mark.parametrize("algorithm", ["diff", "full"])
async def test_heal_of_an_existing_file_keeps_new_holes(tmp_path, algorithm):
    """The sink already has the file (empty) when brick 1 goes down; the
    sparse writes while it is down are healed by data heal alone, which
    extends the sink and writes only the data."""
    async with replica(tmp_path, options={"data-self-heal-algorithm": algorithm}) \
            as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "sparse")
        await top.flush(fd, None)
        await down(net, afr, 1)
        await write_sparse(top, fd)
        await top.flush(fd, None)
        await top.release(fd, None)
        b0, b1, b2 = net.bricks
        assert (b1 / "sparse").stat().st_size == 0
        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert_clean(net.bricks)
        assert_sparse_copy(b1 / "sparse", source=b0 / "sparse")


async def test_diff_heal_of_a_sparse_file_leaves_its_holes_alone(tmp_path):
    """The sink has the whole sparse file and misses one rewrite: the diff
    heal compares checksums block by block and, the source being sparse,
    takes equal zero blocks as healed (heal_data._block_matches) - the
    holes inside the sink's size stay holes."""
    async with replica(tmp_path, options={"data-self-heal-algorithm": "diff"}) \
            as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "sparse")
        await write_sparse(top, fd)
        chunks = sparse_chunks()
        await top.flush(fd, None)
        await down(net, afr, 1)
        off, data = chunks[1]
        await top.writev(fd, bytes(len(data)).replace(b"\0", b"\x07"), off, 0, None)
        await top.writev(fd, data, off, 0, None)    # back to the layout, still dirty
        await top.flush(fd, None)
        await top.release(fd, None)
        b0, b1, b2 = net.bricks
        assert pending(b0 / "sparse", key(1))[0] > 0
        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert_clean(net.bricks)
        assert_sparse_copy(b1 / "sparse", source=b0 / "sparse")


@pytest.mark.parametrize("algorithm", ["diff", "full"])
async def test_heal_of_a_discard_punches_the_hole_on_the_sink(tmp_path, algorithm):
    """A guest discards a range while brick 1 is down: the sources punch
    a hole, the sink still has the data.  Heal makes the sink's range a
    hole too (a discard, not zeros written), so the replicas keep the
    same extents."""
    async with replica(tmp_path, options={"data-self-heal-algorithm": algorithm}) \
            as (net, graph, afr):
        top = graph.top
        fd, gfid = await create_file(top, "img")
        for off in range(0, 4 * MIB, MIB):
            await top.writev(fd, bytes([off // MIB + 1]) * MIB, off, 0, None)
        await top.flush(fd, None)
        await down(net, afr, 1)
        await top.discard(fd, MIB, 2 * MIB, None)
        await top.flush(fd, None)
        await top.release(fd, None)
        b0, b1, b2 = net.bricks
        assert data_extents(b0 / "img") == [(0, MIB), (3 * MIB, 4 * MIB)]
        assert data_extents(b1 / "img") == [(0, 4 * MIB)]
        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert_clean(net.bricks)
        assert (b1 / "img").read_bytes() == (b0 / "img").read_bytes()
        assert data_extents(b1 / "img") == data_extents(b0 / "img")
        assert (b1 / "img").stat().st_blocks <= (b0 / "img").stat().st_blocks


# -- fewer round trips per healed name and file (issue 17) -----------------------


@contextlib.asynccontextmanager
async def recorded_replica(tmp_path, monkeypatch, watched, options=None):
    """`replica` with a replicate_support.Recorder under replicate on each
    child, recording the fops in `watched`."""
    import replicate_support
    from replicate_support import insert_recorders
    monkeypatch.setattr(replicate_support, "WATCHED", tuple(watched))
    net = NetworkReplica(tmp_path, 3)
    async with net.running():
        graph = net.client_graph(options)
        afr = graph.by_name["rep-replicate-0"]
        recs = insert_recorders(graph, afr)
        async with graph.running():
            await wait_for(lambda: all(afr.child_up))
            await graph.top.lookup(Loc.root(), None)
            yield net, graph, afr, recs


async def test_entry_heal_takes_the_directory_lock_once_a_batch_of_names(tmp_path,
                                                                          monkeypatch):
    """A directory with 150 names made while brick 2 was away (a
    subdirectory and two hard links of one file among them) heals with one
    taking of its entry lock per ENTRY_BATCH names, not one per name (as
    GlusterFS does), and the names come out right: the links share one
    inode on the healed brick too."""
    from xlators.cluster.replicate.heal_entry import ENTRY_BATCH
    async with recorded_replica(tmp_path, monkeypatch, ("entrylk",)) as (net, graph, afr,
                                                                        recs):
        top = graph.top
        await down(net, afr, 2)
        d = (await top.mkdir(root_loc("many"), 0o755, 0, gfid_req())).iatt.gfid
        names = 150
        for k in range(names - 2):
            fd, g = await create_file(top, f"f{k}", b"x" * k, parent=d, parent_path="/many")
            await top.release(fd, None)
        await top.link(Loc(path="/many/f1", gfid=g), Loc(path="/many/link", pargfid=d,
                                                        name="link"), None)
        await top.mkdir(Loc(path="/many/sub", pargfid=d, name="sub"), 0o700, 0, gfid_req())
        await up(net, afr, 2)
        recs[2].calls.clear()
        await heal_until_clean(afr)
        assert_identical(net.bricks)
        assert_clean(net.bricks)
        b2 = net.bricks[2] / "many"
        assert (b2 / "link").stat().st_ino == (b2 / f"f{names - 3}").stat().st_ino
        assert (b2 / "sub").is_dir()
        locks = [args for name, args in recs[2].calls
                 if name == "entrylk" and args[1].gfid == d and args[0] == afr.domain
                 and args[3] != EntrylkCmd.UNLOCK]
        batches = -(-names // ENTRY_BATCH)
        # the batches, the heal's look and its post-op, in at most two sweeps
        assert batches + 2 <= len(locks) <= 2 * (batches + 2), len(locks)


async def test_data_heal_of_a_file_new_to_the_sink_asks_no_checksums(tmp_path, monkeypatch):
    """A file created while brick 2 was away is copied to it without
    rchecksums (the new copy holds nothing a checksum could spare) in one
    write, and synced; a file the sink already had still has its blocks
    compared (the "diff" algorithm)."""
    watched = ("rchecksum", "writev", "fsync", "inodelk")
    async with recorded_replica(tmp_path, monkeypatch, watched) as (net, graph, afr, recs):
        top = graph.top
        old_fd, old = await create_file(top, "old", b"a" * 65536)
        await down(net, afr, 2)
        new_fd, new = await create_file(top, "new", os.urandom(128 << 10))
        await top.writev(old_fd, b"b" * 100, 0, 0, None)
        for fd in (old_fd, new_fd):
            await top.release(fd, None)
        await up(net, afr, 2)
        for rec in recs:
            rec.calls.clear()
        await heal_until_clean(afr)
        assert_identical(net.bricks)
        assert_clean(net.bricks)

        def calls(name, gfid, rec=None):
            return [args for rec_ in ([rec] if rec else recs) for n, args in rec_.calls
                    if n == name and (getattr(args[0], "gfid", None) == gfid or
                                      getattr(args[1], "gfid", None) == gfid)]
        assert calls("rchecksum", new) == []
        assert len(calls("writev", new, recs[2])) == 1
        assert len(calls("fsync", new, recs[2])) == 1
        assert calls("rchecksum", old), "the diff algorithm compares a block the sink had"


async def test_one_index_sweep_heals_a_directory_before_the_files_listed_with_it(tmp_path):
    """Over the wire an index's readdir gives each entry's type, not an
    iatt: a directory written while a brick was away is still healed by
    the sweep before the files it lists (the directory's gfid sorts after
    theirs here), so one sweep heals them all - none is tried before its
    name exists on the sink."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        await down(net, afr, 2)
        last = GFID(bytes([0xFF] * 15 + [1]))
        d = (await top.mkdir(root_loc("late"), 0o755, 0, {"gfid-req": last})).iatt.gfid
        for k in range(5):
            fd, _ = await create_file(top, f"f{k}", b"data", parent=d, parent_path="/late")
            await top.release(fd, None)
        await up(net, afr, 2)
        stats = await afr.heal_index(0)
        assert stats.failed == 0, stats
        assert await afr.pending_entries(0) == []
        assert await afr.pending_entries(1) == []
        assert_identical(net.bricks)


async def test_two_index_healers_share_the_files_instead_of_healing_each_twice(tmp_path):
    """The index healers of two bricks list the same pending files in the
    same order; swept at once (as the self-heal daemon sweeps them, with
    one GfidGuard), each file is healed once, and a healer passes over a
    file the other began after its listing instead of waiting for it and
    inspecting it again."""
    from xlators.cluster.replicate import crawl
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        d = (await top.mkdir(root_loc("h"), 0o755, 0, gfid_req())).iatt.gfid
        await down(net, afr, 2)
        files = 20
        for k in range(files):
            fd, _ = await create_file(top, f"f{k}", b"z" * 5000, parent=d, parent_path="/h")
            await top.release(fd, None)
        await up(net, afr, 2)
        guard = crawl.GfidGuard()
        stats = [crawl.CrawlStats(), crawl.CrawlStats()]
        async with trio.open_nursery() as nursery:
            for i in (0, 1):
                nursery.start_soon(crawl.heal_index, afr, i, stats[i], guard)
        assert stats[0].healed + stats[1].healed == files + 1, stats
        # at most the directory is looked at twice (a healer waits for a
        # directory's entry heal, which makes its files healable)
        assert stats[0].skipped + stats[1].skipped <= 1, stats
        assert guard.passed_over >= files - 1
        assert_identical(net.bricks)
        assert_clean(net.bricks)


class CriticalPath:
    """The round trips a heal waits for one after the other: each call
    under replicate (through the recorders) is one step further than the
    furthest call that had come back when it was sent, and `steps` is the
    furthest of all - calls sent together count once."""

    def __init__(self, recs):
        from glusterpy import fops as _fops
        self.steps = 0
        self.calls = 0
        for rec in recs:
            for f in _fops.CATALOGUE:
                setattr(rec, f.name, self._timed(getattr(rec, f.name)))

    def _timed(self, method):
        async def call(*args):
            depth = self.steps + 1
            self.calls += 1
            try:
                return await method(*args)
            finally:
                self.steps = max(self.steps, depth)
        return call


async def test_index_heal_of_a_small_file_waits_for_fewer_round_trips(tmp_path, monkeypatch):
    """A file made while brick 2 was away, smaller than one copy window,
    healed from brick 0's index as the self-heal daemon heals it: its
    data lock is taken once for the whole heal (not again for the block
    and the post-op), the indexing brick's lookup is the heal's own, and
    the post-ops of the sources go out together, the metadata heal's
    times with its post-op, the data and metadata heals run at once, the
    source is read with the sinks' ftruncate and the last unlocks go
    together - 9 round trips in a row (49 calls) instead of 27 (62 calls),
    and the copy ends the same: contents, mode, xattrs, times.  The
    metadata heal runs under the data heal's whole-file lock with the data
    heal's look at the copies (heal_common.MetadataHold): no metadata lock
    of its own, no lookup of its own, and the data lock is let go only
    after it; its post-op goes in the data heal's xattrop and its times in
    the data heal's setattr; the file is opened on the source read and the
    sink only - 33 calls (before: 49, a metadata lock, unlock, lookup and
    post-op on each child, the sink's times twice, and an open and a
    release on brick 1)."""
    from xlators.cluster.replicate import crawl
    from xlators.cluster.replicate.heal_common import METADATA_LOCK_START, CrawlStats, Heal
    from xlators.cluster.replicate.heal_inode import heal_gfid
    from xlators.storage.posix.mdata import mdata_decode
    watched = ("inodelk", "setattr", "lookup", "open", "release", "xattrop")
    async with recorded_replica(tmp_path, monkeypatch, watched) as (net, graph, afr, recs):
        top = graph.top
        await down(net, afr, 2)
        data = os.urandom(100_000)
        fd, gfid = await create_file(top, "small", data)
        await top.setxattr(Loc(gfid=gfid), {"user.tag": b"v"}, 0, None)
        await top.setattr(Loc(gfid=gfid), Iatt(mode=0o600), SET_ATTR_MODE, None)
        await top.release(fd, None)
        await trio.sleep(0.05)  # times a copy made now could not have by chance
        await up(net, afr, 2)
        # the root's entry heal makes the name on brick 2 (pending there)
        assert await heal_gfid(afr, ROOT_GFID) == Outcome.HEALED
        for rec in recs:
            rec.calls.clear()
        path = CriticalPath(recs)
        stats = CrawlStats()
        await crawl._heal_indexed(Heal(afr), 0, "xattrop", gfid, stats)
        assert stats.healed == 1, stats
        assert (net.bricks[2] / "small").read_bytes() == data
        assert os.getxattr(net.bricks[2] / "small", "user.tag") == b"v"
        # the data and metadata heals ran at once: each set the source's
        # times after its own changes, so the copy's are the source's
        b0, b2 = net.bricks[0] / "small", net.bricks[2] / "small"
        assert stat.S_IMODE(b2.stat().st_mode) == 0o600
        times = [mdata_decode(os.getxattr(b, "trusted.glusterfs.mdata")) for b in (b0, b2)]
        assert times[1][1] == times[0][1], times  # (ctime, mtime, atime)
        assert_identical(net.bricks)
        assert_clean(net.bricks)
        data_locks = [args for name, args in recs[2].calls if name == "inodelk"
                      and args[0] == afr.domain and args[3].type != LockType.UNLCK
                      and args[3].start == 0]
        assert len(data_locks) == 1, data_locks
        # the metadata heal ran under the data lock, without a lock of its
        # own: the sink's owner and mode were set before the data unlock
        for rec in recs:
            assert not [args for name, args in rec.calls if name == "inodelk"
                        and args[3].start == METADATA_LOCK_START], rec.calls
        calls = [(name, args) for name, args in recs[2].calls
                 if name == "setattr" or (name == "inodelk" and args[0] == afr.domain)]
        owner = next(k for k, (name, args) in enumerate(calls)
                     if name == "setattr" and args[2] & SET_ATTR_MODE)
        unlock = next(k for k, (name, args) in enumerate(calls)
                      if name == "inodelk" and args[3].type == LockType.UNLCK)
        assert owner < unlock, calls
        # lookups: the index sweep's look and one under the lock, a child
        counts = [collections.Counter(name for name, _ in rec.calls) for rec in recs]
        assert [c["lookup"] for c in counts] == [2, 2, 2], counts
        # the fd: on the source read (brick 0) and the sink (brick 2)
        assert [(c["open"], c["release"]) for c in counts] == [(1, 1), (0, 0), (1, 1)], counts
        # the self-heal domain's and the whole file's lock and unlock
        assert [c["inodelk"] for c in counts] == [4, 4, 4], counts
        # one post-op a child (data and metadata together), and on the
        # sink: owner and mode, then the times once
        assert [c["xattrop"] for c in counts] == [1, 1, 1], counts
        assert [c["setattr"] for c in counts] == [0, 0, 2], counts
        # 8 to 10 (the self-heal domain's lock and the data lock tried
        # together): with two branches at once `steps` is an upper bound
        # (a call counts a reply of the other branch as one it waited for)
        assert path.steps <= 10, (path.steps, path.calls)


async def _as_owner(owner: bytes, fn):
    """fn() as another lock owner - a client's transaction, another daemon."""
    from glusterpy import fops
    token = fops.caller.set(fops.Caller(lk_owner=owner))
    try:
        return await fn()
    finally:
        fops.caller.reset(token)


def _lock_on(afr, i, dom, gfid, type_, cmd=None):
    from glusterpy.fops import Flock, LockCmd
    return afr.children[i].inodelk(dom, Loc(gfid=gfid), cmd or LockCmd.SETLK,
                                   Flock(type=type_, start=0, len=0), None)


async def test_heal_waits_for_a_clients_data_lock_then_heals(tmp_path):
    """The self-heal domain's lock and the data lock are tried together
    (heal_data._lock_both); another owner holding the data lock on one
    child - a client's write - makes the heal let go of the data locks it
    got, keep the self-heal domain's, wait for the data lock as before,
    and heal once the client lets go."""
    from xlators.cluster.replicate.heal_inode import heal_gfid
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        await down(net, afr, 2)
        data = os.urandom(100_000)
        fd, gfid = await create_file(top, "f", data)
        await top.release(fd, None)
        await up(net, afr, 2)
        assert await heal_gfid(afr, ROOT_GFID) == Outcome.HEALED
        await _as_owner(b"client-1", lambda: _lock_on(afr, 1, afr.domain, gfid, LockType.WRLCK))
        done = trio.Event()
        outcome = []

        async def heal():
            outcome.append(await heal_gfid(afr, gfid))
            done.set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(heal)
            await trio.sleep(0.5)
            assert not done.is_set()
            assert (net.bricks[2] / "f").read_bytes() != data
            await _as_owner(b"client-1",
                            lambda: _lock_on(afr, 1, afr.domain, gfid, LockType.UNLCK))
            with trio.fail_after(10):
                await done.wait()
        assert outcome == [Outcome.HEALED]
        assert (net.bricks[2] / "f").read_bytes() == data
        assert_clean(net.bricks)


async def test_heal_skipped_for_another_daemons_heal_leaves_no_data_lock(tmp_path):
    """Another owner holds the self-heal domain's lock on every child
    (another daemon healing the file): the heal is skipped (ENOTCONN, as
    GlusterFS skips it), and the data locks it got in the same round trip
    are let go - another owner can take the whole file's data lock on
    every child at once."""
    from xlators.cluster.replicate.heal_inode import heal_gfid
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        await down(net, afr, 2)
        fd, gfid = await create_file(top, "f", os.urandom(50_000))
        await top.release(fd, None)
        await up(net, afr, 2)
        assert await heal_gfid(afr, ROOT_GFID) == Outcome.HEALED
        for i in range(3):
            await _as_owner(b"daemon-2", lambda i=i: _lock_on(afr, i, afr.sh_domain, gfid,
                                                               LockType.WRLCK))
        with pytest.raises(FopError) as e:
            with trio.fail_after(10):
                await heal_gfid(afr, gfid)
        assert e.value.errno == errno.ENOTCONN
        for i in range(3):
            await _as_owner(b"client-9", lambda i=i: _lock_on(afr, i, afr.domain, gfid,
                                                               LockType.WRLCK))
