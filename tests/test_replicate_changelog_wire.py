"""What cluster/replicate sends to its bricks, against what GlusterFS 10 sends.

../shared/glusterfs10-samples/captures/replica3-kill-heal.pcap holds a
GlusterFS 10.3 FUSE client on volume rep3 (replica 3).  A Recorder between
our replicate and each brick stack sees the locks and xattrops we send for
the same operations; they must be GlusterFS's: the same lock domains and
ranges, the same changelog dicts key for key and byte for byte, the same
number of round trips thanks to eager locking and the delayed post-op.
"""

from __future__ import annotations

import functools
import os
import stat

import pytest
import trio

from glusterpy.fops import (ROOT_GFID, EntrylkCmd, Fd, Iatt, Loc, LockCmd, LockType,
                            SET_ATTR_MODE)
from glusterpy.graph import Graph
from glusterpy.rpc import ALL_PROGRAMS, FopRequest, RpcCall, decode_message
from glusterpy.rpc.dicts import dict_bytes
from xlators.cluster.replicate import changelog as cl

from pcap import capture_path, rpc_records
from replicate_support import (NetworkReplica, afr_xattrs, create_file, gfid_req,
                               index_entries, insert_recorders, local_volfile, make_bricks,
                               root_loc, wait_for)

KEYS = [f"trusted.afr.rep3-client-{i}" for i in range(3)]
DIRTY = "trusted.afr.dirty"
LLONG_MAX = (1 << 63) - 1


@functools.cache
def captured_calls() -> list[tuple[str, FopRequest, object]]:
    """(procedure, request, credential) of every fop call in the capture."""
    out = []
    for stream, direction, record in rpc_records(capture_path("replica3-kill-heal.pcap")):
        msg = decode_message(memoryview(record)[4:])
        if not isinstance(msg, RpcCall):
            continue
        proc = ALL_PROGRAMS.procedure(msg.prog, msg.vers, msg.proc)
        value = proc.decode_args(msg.body)
        if isinstance(value, FopRequest):
            out.append((proc.name, value, msg.cred))
    return out


needs_capture = pytest.mark.skipif(
    not capture_path("replica3-kill-heal.pcap").exists(),
    reason=f"GlusterFS 10 sample captures not found at {capture_path('')}")


def rep3(tmp_path, options=None):
    bricks = make_bricks(tmp_path, 3)
    graph = Graph.from_text(local_volfile(bricks, vol="rep3", options=options))
    afr = graph.by_name["rep3-replicate-0"]
    recs = insert_recorders(graph, afr)
    return bricks, graph, afr, recs


def calls(rec, *names):
    return [(n, a) for n, a in rec.calls if n in names]


@needs_capture
async def test_write_transaction_matches_glusterfs(tmp_path):
    """A write: FINODELK the whole file in domain rep3-replicate-0, FXATTROP
    dirty +1 (pre-op), WRITEV, FXATTROP dirty -1 (post-op), FINODELK
    unlock - with the pre/post-op dicts GlusterFS sends, byte for byte."""
    theirs = [(n, v) for n, v, _ in captured_calls() if n in ("FINODELK", "FXATTROP")]
    their_pre = next(v.args["xattrs"] for n, v in theirs if n == "FXATTROP")
    their_post = next(v.args["xattrs"] for n, v in theirs
                      if n == "FXATTROP" and v.args["xattrs"][DIRTY][:4] == b"\xff" * 4)
    their_lock = next(v for n, v in theirs if n == "FINODELK")
    bricks, graph, afr, recs = rep3(tmp_path)
    async with graph.running():
        assert await graph.wait_child_up(5)
        await graph.top.lookup(Loc.root(), None)
        fd, gfid = await create_file(graph.top, "f", b"x" * 4096)
        await graph.top.flush(fd, None)
        await graph.top.release(fd, None)
    for rec in recs:
        seen = calls(rec, "finodelk", "inodelk", "fxattrop", "xattrop", "writev")
        assert [n for n, _ in seen] == ["finodelk", "fxattrop", "writev", "fxattrop",
                                        "finodelk"]
        (_, lock), (_, pre), _w, (_, post), (_, unlock) = seen
        assert lock[0] == their_lock.args["volume"] == "rep3-replicate-0"
        assert lock[2] == LockCmd.SETLK and lock[3].type == LockType.WRLCK
        assert (lock[3].start, lock[3].len) == (their_lock.args["flock"].start,
                                                their_lock.args["flock"].len) == (0, 0)
        assert unlock[3].type == LockType.UNLCK
        assert list(pre[2]) == list(their_pre) and pre[2] == their_pre
        assert dict_bytes(pre[2]) == dict_bytes(their_pre)
        assert dict_bytes(post[2]) == dict_bytes(their_post)
        assert pre[1] == post[1] == 0      # GF_XATTROP_ADD_ARRAY


@needs_capture
async def test_namespace_and_metadata_transactions_match_glusterfs(tmp_path):
    """With every brick up: ENTRYLK (LOCK_NB, WRLCK) on the parent for a
    name, no xattrop at all (optimistic changelog); a chmod takes INODELK
    on the metadata range LLONG_MAX-1, also without xattrops."""
    theirs = captured_calls()
    entry = next(v for n, v, _ in theirs if n == "ENTRYLK")
    meta = next(v for n, v, _ in theirs if n == "INODELK"
                and v.args["flock"].start == LLONG_MAX - 1)
    bricks, graph, afr, recs = rep3(tmp_path)
    async with graph.running():
        assert await graph.wait_child_up(5)
        await graph.top.lookup(Loc.root(), None)
        for rec in recs:
            rec.calls.clear()
        d = await graph.top.mkdir(root_loc("dir1"), 0o755, 0, gfid_req())
        await graph.top.setattr(Loc(path="/dir1", gfid=d.iatt.gfid), Iatt(mode=0o700),
                                SET_ATTR_MODE, None)
    for rec in recs:
        assert not calls(rec, "xattrop", "fxattrop")
        # the mkdir's unlock goes on behind its answer (GlusterFS unwinds a
        # fop that failed nowhere before its unlock): it may reach the
        # brick after the chmod's lock
        entry_calls, inode_calls = calls(rec, "entrylk"), calls(rec, "inodelk")
        assert len(entry_calls) == len(inode_calls) == 2
        (_, lk), (_, unlk) = entry_calls
        (_, mlk), (_, munlk) = inode_calls
        assert lk[0] == entry.args["volume"] == "rep3-replicate-0"
        assert lk[1].gfid == ROOT_GFID and lk[2] == "dir1"
        assert lk[3] == entry.args["cmd"] == EntrylkCmd.LOCK_NB
        assert lk[4] == entry.args["type"]
        assert unlk[3] == EntrylkCmd.UNLOCK
        assert (mlk[3].start, mlk[3].len) == (meta.args["flock"].start,
                                              meta.args["flock"].len)
        assert munlk[3].type == LockType.UNLCK


async def test_sequential_writes_share_one_lock_and_one_pre_op(tmp_path):
    """Eager locking with the delayed post-op: 50 writes on one fd cost one
    lock, one pre-op, one post-op and one unlock per brick; the dirty mark
    stays on disk while the delay runs and is gone after flush."""
    bricks, graph, afr, recs = rep3(tmp_path)
    async with graph.running():
        assert await graph.wait_child_up(5)
        await graph.top.lookup(Loc.root(), None)
        fd, gfid = await create_file(graph.top, "seq")
        for rec in recs:
            rec.calls.clear()
        for k in range(50):
            await graph.top.writev(fd, bytes([k]) * 1000, k * 1000, 0, None)
        for b in bricks:
            assert afr_xattrs(b / "seq") == {DIRTY: bytes.fromhex("000000010000000000000000")}
            assert index_entries(b, "dirty") == {str(gfid)}
        await graph.top.flush(fd, None)
        for b in bricks:
            assert afr_xattrs(b / "seq") == {DIRTY: bytes(12)}
            assert index_entries(b, "dirty") == set()
        await graph.top.release(fd, None)
    for rec in recs:
        names = [n for n, _ in calls(rec, "finodelk", "fxattrop", "writev")]
        assert names.count("writev") == 50
        assert names.count("finodelk") == 2 and names.count("fxattrop") == 2


async def test_the_delayed_post_op_ends_by_itself(tmp_path, autojump_clock):
    bricks, graph, afr, recs = rep3(tmp_path, {"post-op-delay-secs": "2"})
    async with graph.running():
        assert await graph.wait_child_up(5)
        fd, gfid = await create_file(graph.top, "f", b"abc")
        await trio.sleep(1)
        assert afr_xattrs(bricks[0] / "f")[DIRTY] == bytes.fromhex("000000010000000000000000")
        await trio.sleep(1.5)
        assert afr_xattrs(bricks[0] / "f")[DIRTY] == bytes(12)
        assert not afr.itable.peek_ctx(afr, gfid).locks[0].acquired
        await graph.top.release(fd, None)


async def test_without_eager_lock_each_write_is_a_transaction(tmp_path):
    bricks, graph, afr, recs = rep3(tmp_path, {"eager-lock": "off"})
    async with graph.running():
        assert await graph.wait_child_up(5)
        fd, gfid = await create_file(graph.top, "f")
        for rec in recs:
            rec.calls.clear()
        for k in range(5):
            await graph.top.writev(fd, b"z" * 10, k * 10, 0, None)
        for b in bricks:
            assert afr_xattrs(b / "f") == {DIRTY: bytes(12)}
        await graph.top.release(fd, None)
    for rec in recs:
        locks = [a for n, a in calls(rec, "finodelk")]
        assert len(locks) == 10 and len(calls(rec, "fxattrop")) == 10
        # full-lock (the default) takes the whole file even without eager locking
        assert all((a[3].start, a[3].len) == (0, 0) for a in locks)


async def test_overlapping_concurrent_writes_are_serialized(tmp_path):
    """Two writers on overlapping ranges never run their writes at the
    same time (afr_has_lock_conflict): every brick ends with the same
    bytes."""
    bricks, graph, afr, recs = rep3(tmp_path)
    async with graph.running():
        assert await graph.wait_child_up(5)
        fd, gfid = await create_file(graph.top, "f")

        async def writer(byte):
            for k in range(30):
                await graph.top.writev(fd, bytes([byte]) * 4096, (k % 3) * 1000, 0, None)
        async with trio.open_nursery() as nursery:
            for byte in (1, 2, 3):
                nursery.start_soon(writer, byte)
        await graph.top.flush(fd, None)
        await graph.top.release(fd, None)
    contents = {(b / "f").read_bytes() for b in bricks}
    assert len(contents) == 1
    for b in bricks:
        assert afr_xattrs(b / "f") == {DIRTY: bytes(12)}


async def test_new_entry_and_unchanged_bricks_keep_no_afr_keys(tmp_path):
    """Zero-valued xattrops create no keys: a brick untouched by failures
    carries only the dirty key of its data transactions, as the sample
    bricks show."""
    bricks, graph, afr, recs = rep3(tmp_path)
    async with graph.running():
        assert await graph.wait_child_up(5)
        await graph.top.mkdir(root_loc("d"), 0o755, 0, gfid_req())
        await graph.top.symlink("d", root_loc("l"), 0, gfid_req())
    for b in bricks:
        assert afr_xattrs(b / "d") == {} and afr_xattrs(b) == {}
        assert stat.S_ISLNK(os.lstat(b / "l").st_mode)


@needs_capture
async def test_heal_locks_and_undo_pending_match_glusterfs(tmp_path, monkeypatch):
    """One write missed by brick 1, healed: the self-heal daemon's
    sequence in the capture - inodelk in rep3-replicate-0:self-heal, the
    data lock and 1 MiB block locks in rep3-replicate-0, then XATTROP
    undoing the pending count (client-2, client-1, client-0, dirty; data
    -1 against client 1) - is ours, byte for byte."""
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)
    theirs = [v for n, v, cred in captured_calls()
              if n == "XATTROP" and getattr(cred, "pid", 0) == -6]
    their_undo = next(v for v in theirs
                      if v.args["xattrs"].get(KEYS[1]) == bytes.fromhex("ffffffff" + "00" * 8))
    net = NetworkReplica(tmp_path, 3, vol="rep3")
    async with net.running():
        graph = net.client_graph()
        afr = graph.by_name["rep3-replicate-0"]
        recs = insert_recorders(graph, afr)
        async with graph.running():
            await wait_for(lambda: all(afr.child_up))
            top = graph.top
            await top.lookup(Loc.root(), None)
            fd, gfid = await create_file(top, "f", b"a" * 3_000_000)
            # closed as close(2) closes, flush first: the flush waits for
            # the write's delayed post-op (a bare release leaves it behind,
            # and brick 1 would go down still dirty)
            await top.flush(fd, None)
            await top.release(fd, None)
            await net.stop(1)
            await wait_for(lambda: not afr.child_up[1])
            fd = Fd(gfid=gfid, flags=os.O_RDWR)
            await top.open(Loc(gfid=gfid), os.O_RDWR, fd, None)
            await top.writev(fd, b"b" * 10, 0, 0, None)
            await top.release(fd, None)
            await net.start(1)
            await wait_for(lambda: afr.child_up[1])
            for rec in recs:
                rec.calls.clear()
            await afr.heal_gfid(gfid)
    for i, rec in enumerate(recs):
        locks = [a for n, a in rec.calls if n == "inodelk"]
        domains = [(a[0], a[3].type, a[3].start, a[3].len) for a in locks]
        assert domains[:2] == [("rep3-replicate-0:self-heal", LockType.WRLCK, 0, 0),
                               ("rep3-replicate-0", LockType.WRLCK, 0, 0)]
        assert ("rep3-replicate-0", LockType.WRLCK, 1 << 20, 1 << 20) in domains
        undo = [a[2] for n, a in rec.calls if n == "xattrop"][-1]
        if i == 1:
            assert undo == cl.changelog_dict(KEYS, None, DIRTY, dirty_last=True)
        else:
            assert list(undo) == list(their_undo.args["xattrs"])
            assert dict_bytes(undo) == dict_bytes(their_undo.args["xattrs"])
