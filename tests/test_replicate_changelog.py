"""AFR's changelog arithmetic (xlators/cluster/replicate/changelog.py), without bricks.

The 12-byte counters, the dicts in GlusterFS's wire order, the decision
rules of afr_selfheal_find_direction on the matrices GlusterFS's own tests
and the sample bricks exercise, quorum, the read hash.  SuperFastHash
values were computed with GlusterFS's libglusterfs/src/hashfn.c.
"""

import errno
import stat

import pytest
from hypothesis import given, strategies as st

from glusterpy.fops import FopError, Iatt
from xlators.cluster.replicate import changelog as cl

KEYS = ["trusted.afr.rep3-client-0", "trusted.afr.rep3-client-1", "trusted.afr.rep3-client-2"]
DIRTY = "trusted.afr.dirty"


def xd(**counters):
    """xdata with pending counters: xd(c1=(1,0,0), dirty=(1,0,0))."""
    out = {}
    for name, value in counters.items():
        key = DIRTY if name == "dirty" else KEYS[int(name[1:])]
        out[key] = cl.encode(value)
    return out


@given(st.tuples(*[st.integers(-(1 << 31), (1 << 31) - 1)] * 3))
def test_encode_decode_round_trip(counts):
    raw = cl.encode(counts)
    assert len(raw) == 12
    assert cl.decode(raw) == counts


def test_counters_are_big_endian_and_wrap_like_the_brick():
    assert cl.encode((1, 0, 0)) == bytes.fromhex("000000010000000000000000")
    assert cl.encode((-1, 0, 0)) == bytes.fromhex("ffffffff0000000000000000")
    assert cl.encode((0, 0, -2)) == bytes.fromhex("0000000000000000fffffffe")
    assert cl.decode(b"\x00\x00\x00\x02") == (2, 0, 0)
    assert cl.decode(None) == (0, 0, 0)


def test_pre_op_dict_is_what_glusterfs_sends():
    """replica3-kill-heal.pcap, a write's pre-op FXATTROP: dirty first,
    then client-2, client-1, client-0, all zero."""
    d = cl.changelog_dict(KEYS, None, DIRTY, cl.one_slot(cl.DATA, 1))
    assert list(d) == [DIRTY, KEYS[2], KEYS[1], KEYS[0]]
    assert d[DIRTY] == bytes.fromhex("000000010000000000000000")
    assert all(d[k] == bytes(12) for k in KEYS)


def test_undo_pending_dict_puts_dirty_last():
    d = cl.changelog_dict(KEYS, [(0, 0, 0), (-1, 0, 0), (0, 0, 0)], DIRTY, (0, 0, 0),
                          dirty_last=True)
    assert list(d) == [KEYS[2], KEYS[1], KEYS[0], DIRTY]
    assert d[KEYS[1]] == bytes.fromhex("ffffffff0000000000000000")


def test_new_entry_marks_follow_the_type():
    """A file created while child 1 was down: data and metadata; a
    directory: entry, metadata and (granular) the full-heal marker."""
    missed = [False, True, False]
    assert cl.new_entry_rows(missed, stat.S_IFREG | 0o644, True)[1] == (1, 1, 0)
    assert cl.new_entry_rows(missed, stat.S_IFDIR | 0o755, True)[1] == (1, 1, 1)
    assert cl.new_entry_rows(missed, stat.S_IFDIR | 0o755, False)[1] == (0, 1, 1)
    assert cl.new_entry_rows(missed, stat.S_IFLNK | 0o777, True)[1] == (0, 1, 0)
    assert cl.new_entry_rows(missed, stat.S_IFREG, True)[0] == (0, 0, 0)


def test_find_direction_one_stale_child():
    """Children 0 and 2 accuse 1: 0 and 2 are sources, 1 the sink."""
    xdatas = [xd(c1=(2, 1, 0)), xd(), xd(c1=(2, 1, 0))]
    d = cl.find_direction(xdatas, [True] * 3, KEYS, DIRTY, cl.DATA, [True] * 3)
    assert d.sources == [True, False, True] and d.sinks == [False, True, False]
    assert not d.split_brain and d.pflag & cl.PFLAG_PENDING


def test_find_direction_split_brain():
    xdatas = [xd(c1=(1, 0, 0)), xd(c0=(1, 0, 0))]
    d = cl.find_direction(xdatas, [True] * 2, KEYS[:2], DIRTY, cl.DATA, [True] * 2)
    assert d.sources == [False, False] and d.sinks == [True, True] and d.split_brain


def test_find_direction_self_accusing_child_is_a_fool():
    """A child that accuses itself cannot accuse others (afr-v1's FOOL):
    nobody is a sink, and its markers count as witnesses instead."""
    xdatas = [xd(c0=(1, 0, 0), c1=(1, 0, 0)), xd(), xd()]
    d = cl.find_direction(xdatas, [True] * 3, KEYS, DIRTY, cl.DATA, [True] * 3)
    assert d.sources == [True, True, True] and d.sinks == [False, False, False]
    assert d.witness == [2, 0, 0]


def test_find_direction_needs_every_child():
    with pytest.raises(FopError) as e:
        cl.find_direction([xd(), None, xd()], [True, False, True], KEYS, DIRTY, cl.DATA,
                          [True, False, True])
    assert e.value.errno == errno.ENOTCONN


def test_post_op_failure_accounting_with_quorum():
    """Every child accused by exactly one other (a post-op that reached
    only a minority): with auto quorum those accused by fewer than two are
    sources again; without quorum it stays a split-brain."""
    xdatas = [xd(c1=(1, 0, 0)), xd(c2=(1, 0, 0)), xd(c0=(1, 0, 0))]
    d = cl.find_direction(xdatas, [True] * 3, KEYS, DIRTY, cl.DATA, [True] * 3,
                          cl.QUORUM_AUTO)
    assert d.sources == [True, True, True] and not d.split_brain
    d = cl.find_direction(xdatas, [True] * 3, KEYS, DIRTY, cl.DATA, [True] * 3, 0)
    assert d.split_brain


def test_dirty_counts_as_witness():
    xdatas = [xd(dirty=(1, 0, 0)), xd(), xd()]
    d = cl.find_direction(xdatas, [True] * 3, KEYS, DIRTY, cl.DATA, [True] * 3)
    assert d.sources == [True, True, True] and d.witness == [1, 0, 0]


def test_undo_pending_resets_what_was_healed():
    """After healing child 1 from 0 and 2, each locked child subtracts
    what it held; a sink that could not be healed stays accused."""
    xdatas = [xd(c1=(3, 0, 0), dirty=(1, 0, 0)), xd(), xd(c1=(3, 0, 0))]
    sinks = [False, True, False]
    out = cl.undo_pending(xdatas, KEYS, DIRTY, cl.DATA, sinks, sinks, [True] * 3)
    assert out[0] == ([(0, 0, 0), (-3, 0, 0), (0, 0, 0)], (-1, 0, 0))
    assert out[1] == ([(0, 0, 0)] * 3, (0, 0, 0))
    out = cl.undo_pending(xdatas, KEYS, DIRTY, cl.DATA, sinks, [False] * 3, [True] * 3)
    assert out[0][0][1] == (1, 0, 0) and out[1][1] == (0, 0, 0)


def test_readables_accuse_and_skip_the_arbiter():
    a = Iatt(mode=stat.S_IFREG | 0o644, size=10)
    b = Iatt(mode=stat.S_IFREG | 0o644, size=10)
    r = cl.readables([a, b, Iatt(mode=stat.S_IFREG, size=0)],
                     [xd(c1=(1, 0, 0)), None, None], KEYS, arbiter=2)
    assert r.data == [True, False, False] and r.metadata == [True, True, False]
    assert r.accused


def test_readables_accuse_smaller_files():
    r = cl.readables([Iatt(mode=stat.S_IFREG, size=10), Iatt(mode=stat.S_IFREG, size=5)],
                     [None, None], KEYS[:2])
    assert r.data == [True, False]
    r = cl.readables([Iatt(mode=stat.S_IFREG, size=10), Iatt(mode=stat.S_IFREG, size=5)],
                     [None, None], KEYS[:2], accuse_small_files=False)
    assert r.data == [True, True]


def test_directories_use_the_entry_slot():
    d = Iatt(mode=stat.S_IFDIR | 0o755)
    r = cl.readables([d, d], [xd(c1=(1, 0, 0)), None], KEYS[:2])
    assert r.data == [True, True]       # a data counter on a directory is the full-heal marker
    r = cl.readables([d, d], [xd(c1=(0, 0, 1)), None], KEYS[:2])
    assert r.data == [True, False]


@pytest.mark.parametrize("up,count,expect", [
    ([1, 1, 0], cl.QUORUM_AUTO, True), ([1, 0, 0], cl.QUORUM_AUTO, False),
    ([1, 0], cl.QUORUM_AUTO, True), ([0, 1], cl.QUORUM_AUTO, False),
    ([1, 1, 0, 0], cl.QUORUM_AUTO, True), ([0, 1, 1, 0], cl.QUORUM_AUTO, False),
    ([1, 0, 0], 1, True), ([1, 1, 0], 3, False), ([0, 0, 0], 0, True)])
def test_quorum(up, count, expect):
    assert cl.has_quorum([bool(u) for u in up], count) is expect


@pytest.mark.parametrize("data,value", [
    (b"", 1), (b"a", 1), (b"ab", 1366002500), (b"abc", 3535673738), (b"abcd", 3671636187),
    (b"abcde", 1374488366), (b"hello world", 2794219650), (b"\xff\xfe\x80", 1621487627),
    (b"\x01\x02\x03\xff\xff\xff\xff", 3714815218),
    (bytes.fromhex("0620cca148de40b5afd285aa5509c0e5"), 57611886),
    (bytes(15) + b"\x01", 4266734359)])
def test_super_fast_hash_matches_glusterfs(data, value):
    assert cl.super_fast_hash(data) == value


def test_favorite_child_policies():
    a = Iatt(mode=stat.S_IFREG, size=100, mtime=5, ctime=9)
    b = Iatt(mode=stat.S_IFREG, size=50, mtime=7, ctime=8)
    c = Iatt(mode=stat.S_IFREG, size=50, mtime=7, ctime=1)
    assert cl.favorite_child("size", [a, b, c]) == 0
    assert cl.favorite_child("mtime", [a, b, c]) == 1
    assert cl.favorite_child("ctime", [a, b, c]) == 0
    assert cl.favorite_child("majority", [a, b, c]) == 1
    assert cl.favorite_child("size", [b, c]) == -1          # a tie
    assert cl.favorite_child("size", [a, None]) == -1       # every child must answer
    assert cl.favorite_child("none", [a, b]) == -1


def test_pathinfo_host_and_errno_order():
    assert cl.pathinfo_host("<POSIX(/srv/r1):vm:/srv/r1/f>") == "vm"
    assert cl.pathinfo_host("nohost") is None
    assert cl.final_errno([errno.EIO, errno.ENOENT, errno.ESTALE]) == errno.ENOENT
    assert cl.final_errno([errno.EIO, errno.ENODATA]) == errno.ENODATA


counters = st.tuples(*[st.integers(-(1 << 31), (1 << 31) - 1)] * 3)


@given(st.lists(counters, min_size=3, max_size=3), st.lists(counters, min_size=3, max_size=3),
       counters, st.booleans())
def test_two_post_ops_add_up_to_one(a_rows, b_rows, dirty, b_has_dirty):
    """add_dicts: the xattrop dict of the data heal's post-op plus the
    metadata heal's (MetadataHold) counts on a brick as the two one after
    the other - each counter the sum, wrapped as the brick's 32 bits wrap
    - in changelog_dict's order, the dirty key last."""
    a = cl.changelog_dict(KEYS, a_rows, DIRTY, dirty, dirty_last=True)
    b = cl.changelog_dict(KEYS, b_rows, DIRTY if b_has_dirty else None,
                          dirty if b_has_dirty else None, dirty_last=True)
    both = cl.add_dicts(a, b, DIRTY)
    assert list(both) == list(a)
    for key in both:
        want = [(x + y + (1 << 31)) % (1 << 32) - (1 << 31)
                for x, y in zip(cl.decode(a[key]), cl.decode(b.get(key)))]
        assert list(cl.decode(both[key])) == want
    assert cl.add_dicts({}, b, DIRTY) == {k: cl.encode(cl.decode(v)) for k, v in b.items()}
