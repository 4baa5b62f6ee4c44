"""cluster/stripe: the conformance suite over 2 and 4 posix bricks (both
packings), the geometry's arithmetic, where pieces and xattrs land on the
bricks, where each fop goes, a child that goes down, and bad options."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat

import pytest
import trio
from hypothesis import given, settings, strategies as st

from glusterpy.fops import (GFID, ROOT_GFID, Fd, FopError, Iatt, Loc, SET_ATTR_MODE,
                            SET_ATTR_SIZE, SeekWhat)
from glusterpy.gfapi import AsyncVolume, LibgfapiException
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError
from glusterpy.xlator import Event
from xlators.cluster.stripe import Geometry

from conformance import conformance_tests

KB = 1024
BLOCK = 16 * KB


def stripe_volfile(root, bricks: int = 2, coalesce: bool = True, block_size: str = "16KB",
                   name: str = "st", extra: str = "", brick_type: str | None = None) -> str:
    """storage/posix bricks root/brick0.. under one cluster/stripe; with
    `brick_type` the last child is that text instead of a posix volume."""
    out = []
    for i in range(bricks):
        if brick_type is not None and i == bricks - 1:
            out.append(brick_type.format(name=f"b{i}"))
            continue
        path = os.path.join(root, f"brick{i}")
        os.makedirs(path, exist_ok=True)
        out.append(f"volume b{i}\n    type storage/posix\n    option directory {path}\n"
                   f"end-volume\n")
    out.append(f"volume {name}\n    type cluster/stripe\n    option block-size {block_size}\n"
               f"    option coalesce {'on' if coalesce else 'off'}\n{extra}"
               f"    subvolumes {' '.join(f'b{i}' for i in range(bricks))}\nend-volume\n")
    return "".join(out)


def bricks_of(root, n):
    return [os.path.join(root, f"brick{i}") for i in range(n)]


@contextlib.asynccontextmanager
async def mounted(root, bricks=2, **kw):
    graph = Graph.from_text(stripe_volfile(root, bricks, **kw))
    async with AsyncVolume(graph, mount_timeout=5) as vol:
        yield vol, graph


def gfid_req() -> dict:
    return {"gfid-req": GFID.random()}


async def errno_of(awaitable) -> str:
    try:
        await awaitable
    except FopError as e:
        return errno.errorcode[e.errno]
    except OSError as e:
        return errno.errorcode[e.errno]
    return "ok"


def check_placement(bricks, relpath, content: bytes, block: int, coalesce: bool) -> None:
    """Each block of `content` is where the geometry puts it on its brick;
    holes and unwritten tails read as zeros; no piece implies a larger file."""
    n = len(bricks)
    pieces = []
    for brick in bricks:
        with open(os.path.join(brick, relpath), "rb") as f:
            pieces.append(f.read())
    geometry = Geometry(block, n, coalesce)
    for number in range(-(-len(content) // block)):
        want = content[number * block:(number + 1) * block]
        local = geometry.local_offset(number * block)
        got = pieces[number % n][local:local + len(want)]
        assert got + bytes(len(want) - len(got)) == want, f"block {number}"
    implied = [geometry.implied_size(i, len(p)) for i, p in enumerate(pieces)]
    assert max(implied) == len(content)


# -- the conformance suite ------------------------------------------------------

def stripe_stack(bricks, coalesce):
    @contextlib.asynccontextmanager
    async def factory(tmp_path):
        yield Graph.from_text(stripe_volfile(tmp_path, bricks, coalesce))
    return factory


test_conformance_2_bricks_coalesced = conformance_tests(stripe_stack(2, True))
test_conformance_2_bricks_with_holes = conformance_tests(stripe_stack(2, False))
test_conformance_4_bricks_coalesced = conformance_tests(stripe_stack(4, True))
test_conformance_4_bricks_with_holes = conformance_tests(stripe_stack(4, False))


# -- the geometry -----------------------------------------------------------------

geometries = st.builds(Geometry, st.sampled_from([16 * KB, 64 * KB, 128 * KB]),
                       st.integers(2, 6), st.booleans())


@settings(max_examples=300, deadline=None)
@given(geometries, st.integers(0, 10**8))
def test_shares_imply_exactly_the_size(geometry, size):
    """What truncate leaves on the pieces implies the size it set, and no
    piece implies more - the rule stat relies on."""
    implied = [geometry.implied_size(i, geometry.share(i, size))
               for i in range(geometry.count)]
    assert max(implied) == size
    if geometry.coalesce:
        assert sum(geometry.share(i, size) for i in range(geometry.count)) == size


@settings(max_examples=300, deadline=None)
@given(geometries, st.integers(0, 10**7), st.integers(1, 10**6))
def test_plan_covers_the_range_once(geometry, offset, length):
    """The calls of a plan cover the range exactly, each segment on the
    child that owns its block, at the geometry's local offset, and with
    coalesce a child's segments are contiguous where its call puts them."""
    ops = geometry.plan(offset, length)
    segments = sorted(s for op in ops for s in op.segments)
    assert segments[0][0] == offset
    assert sum(n for _, n in segments) == length
    for (a, n), (b, _) in zip(segments, segments[1:]):
        assert a + n == b
    for op in ops:
        pos = op.local
        for file_offset, n in op.segments:
            assert (file_offset // geometry.block_size) % geometry.count == op.child
            assert geometry.local_offset(file_offset) == pos
            pos += n
    if geometry.coalesce:
        assert len({op.child for op in ops}) == len(ops)
        ranges = {op.child: (op.local, op.length) for op in geometry.ranges(offset, length)}
        assert ranges == {op.child: (op.local, op.length) for op in ops}


def test_geometry_follows_glusterfs_arithmetic():
    """coalesced_offset and uncoalesced_size, worked by hand: 3 pieces of 16KB."""
    g = Geometry(BLOCK, 3, True)
    assert g.local_offset(0) == 0
    assert g.local_offset(BLOCK + 5) == 5            # block 1: piece 1, first block
    assert g.local_offset(3 * BLOCK + 7) == BLOCK + 7  # block 3: piece 0, second block
    assert g.implied_size(1, 5) == BLOCK + 5
    assert g.implied_size(0, BLOCK) == BLOCK
    assert g.implied_size(2, 2 * BLOCK) == 6 * BLOCK
    assert Geometry(BLOCK, 3, False).local_offset(3 * BLOCK + 7) == 3 * BLOCK + 7


# -- pieces and xattrs on the bricks ------------------------------------------------

@pytest.mark.parametrize("coalesce", [True, False], ids=["coalesced", "with-holes"])
async def test_pieces_land_where_the_geometry_says(tmp_path, coalesce):
    content = bytes(range(251)) * 1000                 # 251000 bytes, not block-aligned
    async with mounted(tmp_path, 4, coalesce=coalesce) as (vol, graph):
        await vol.makedirs("/vm")
        async with await vol.fopen("/vm/disk", "w") as f:
            await f.write(content)
        assert (await vol.stat("/vm/disk")).st_size == len(content)
        bricks = bricks_of(tmp_path, 4)
        check_placement(bricks, "vm/disk", content, BLOCK, coalesce)
        sizes = [os.path.getsize(os.path.join(b, "vm/disk")) for b in bricks]
        if coalesce:
            # packed: the pieces add up to the file; blocks 0,4,8,12 on brick 0,
            # 3,7,11 and the partial block 15 on brick 3
            assert sum(sizes) == len(content)
            assert sizes == [4 * BLOCK, 4 * BLOCK, 4 * BLOCK,
                             3 * BLOCK + len(content) - 15 * BLOCK]
        else:
            # at file offsets: each piece ends after its last block, holes between
            assert sizes == [13 * BLOCK, 14 * BLOCK, 15 * BLOCK, len(content)]
            blocks = os.stat(os.path.join(bricks[1], "vm/disk")).st_blocks * 512
            assert blocks < 6 * BLOCK
        for i, brick in enumerate(bricks):
            piece = os.path.join(brick, "vm/disk")
            assert {k: os.getxattr(piece, k) for k in os.listxattr(piece) if "stripe" in k} == {
                "trusted.st.stripe-size": b"16384\0",
                "trusted.st.stripe-count": b"4\0",
                "trusted.st.stripe-index": f"{i}\0".encode(),
                "trusted.st.stripe-coalesce": b"1\0" if coalesce else b"0\0"}
            # one file: the same gfid on every brick
            assert os.getxattr(piece, "trusted.gfid") == \
                os.getxattr(os.path.join(bricks[0], "vm/disk"), "trusted.gfid")


async def test_block_size_per_pattern_and_kept_by_each_file(tmp_path):
    """`*.img:32KB,*:16KB`: the first matching pattern sizes a new file; a
    file keeps its geometry when the options change."""
    async with mounted(tmp_path, 2, block_size="*.img:32KB,*:16KB") as (vol, graph):
        for name in ("a.img", "b.txt"):
            async with await vol.fopen(f"/{name}", "w") as f:
                await f.write(os.urandom(100 * KB))
        brick0 = bricks_of(tmp_path, 2)[0]
        assert os.getxattr(os.path.join(brick0, "a.img"), "trusted.st.stripe-size") == b"32768\0"
        assert os.getxattr(os.path.join(brick0, "b.txt"), "trusted.st.stripe-size") == b"16384\0"
        stripe = graph.by_name["st"]
        stripe.reconfigure({"block-size": "64KB", "coalesce": "off"})
        data = os.urandom(200 * KB)
        async with await vol.fopen("/a.img", "r+") as f:
            await f.write(data)
        async with await vol.fopen("/c.img", "w") as f:
            await f.write(data)
        async with await vol.fopen("/a.img", "r") as f:
            assert await f.read() == data
        check_placement(bricks_of(tmp_path, 2), "a.img", data, 32 * KB, True)
        check_placement(bricks_of(tmp_path, 2), "c.img", data, 64 * KB, False)


async def test_use_xattr_off_stores_no_geometry(tmp_path):
    extra = "    option use-xattr off\n"
    async with mounted(tmp_path, 2, extra=extra) as (vol, graph):
        data = os.urandom(70 * KB)
        async with await vol.fopen("/f", "w") as f:
            await f.write(data)
        async with await vol.fopen("/f", "r") as f:
            assert await f.read() == data
        piece = os.path.join(bricks_of(tmp_path, 2)[1], "f")
        assert not [k for k in os.listxattr(piece) if "stripe" in k]
        check_placement(bricks_of(tmp_path, 2), "f", data, BLOCK, True)
    # a new graph knows nothing of the file: by gfid alone it cannot tell
    graph = Graph.from_text(stripe_volfile(tmp_path, 2, extra=extra))
    async with graph.running():
        gfid = GFID(os.getxattr(piece, "trusted.gfid"))
        assert await errno_of(graph.top.fstat(Fd(gfid=gfid), None)) == "EINVAL"
        looked = await graph.top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"), None)
        assert looked.iatt.size == len(data)


# -- where each fop goes -------------------------------------------------------------

async def test_namespace_reaches_every_child_and_links_stay_on_the_first(tmp_path):
    async with mounted(tmp_path, 4) as (vol, graph):
        bricks = bricks_of(tmp_path, 4)

        def on(rel):
            return [os.path.lexists(os.path.join(b, rel)) for b in bricks]
        await vol.makedirs("/d/e")
        assert on("d/e") == [True] * 4
        async with await vol.fopen("/d/f", "w") as f:
            await f.write(b"x" * (3 * BLOCK))
        await vol.symlink("f", "/d/s")
        await vol.mknod("/d/fifo", stat.S_IFIFO | 0o600)
        assert on("d/f") == [True] * 4
        assert on("d/s") == on("d/fifo") == [True, False, False, False]
        await vol.link("/d/f", "/d/g")
        assert on("d/g") == [True] * 4
        await vol.rename("/d/g", "/d/e/h")
        assert on("d/g") == [False] * 4 and on("d/e/h") == [True] * 4
        # a symlink renamed over a regular file takes the file's pieces away
        await vol.rename("/d/s", "/d/e/h")
        assert on("d/e/h") == [True, False, False, False]
        assert await vol.readlink("/d/e/h") == "f"
        await vol.chmod("/d/f", 0o600)
        assert [stat.S_IMODE(os.stat(os.path.join(b, "d/f")).st_mode) for b in bricks] == \
            [0o600] * 4
        await vol.setxattr("/d/f", "user.k", b"v")
        assert [os.getxattr(os.path.join(b, "d/f"), "user.k") for b in bricks] == [b"v"] * 4
        assert await vol.getxattr("/d/f", "user.k") == b"v"
        await vol.removexattr("/d/f", "user.k")
        assert not any("user.k" in os.listxattr(os.path.join(b, "d/f")) for b in bricks)
        # rmdir: ENOTEMPTY because of a name only the first brick holds
        # leaves the directory everywhere
        await vol.symlink("x", "/d/e/only-here")
        assert await errno_of(vol.rmdir("/d/e")) == "ENOTEMPTY"
        assert on("d/e") == [True] * 4
        await vol.unlink("/d/e/only-here")
        await vol.unlink("/d/e/h")
        await vol.rmdir("/d/e")
        assert on("d/e") == [False] * 4
        await vol.unlink("/d/f")
        await vol.unlink("/d/fifo")
        assert on("d/f") == [False] * 4
        assert sorted(os.listdir(os.path.join(bricks[0], "d"))) == []


async def test_geometry_xattrs_are_stripes_own(tmp_path):
    async with mounted(tmp_path, 2) as (vol, graph):
        async with await vol.fopen("/f", "w") as f:
            await f.write(b"data")
        assert await errno_of(vol.setxattr("/f", "trusted.st.stripe-size", b"1")) == "EPERM"
        assert await errno_of(vol.removexattr("/f", "trusted.st.stripe-index")) == "EPERM"
        assert await errno_of(vol.getxattr("/f", "trusted.st.stripe-size")) == "ENODATA"
        assert not [k for k in await vol.listxattr("/f") if "stripe" in k]
        looked = await graph.top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"), None)
        assert not looked.xdata or not [k for k in looked.xdata if "stripe" in k]
        info = (await graph.top.getxattr(Loc(path="/f", gfid=looked.iatt.gfid),
                                         "trusted.glusterfs.pathinfo", None)).dict
        text = info["trusted.glusterfs.pathinfo"]
        assert text.startswith("(<STRIPE:st:[16384]> <POSIX(") and text.endswith(">)")
        assert text.count("<POSIX(") == 2 and "brick1" in text


async def test_attributes_merge_every_piece(tmp_path):
    """Size from the geometry, blocks summed, mtime moved by a write that
    only the second piece saw; readdirp agrees with stat; statfs sums."""
    async with mounted(tmp_path, 2) as (vol, graph):
        async with await vol.fopen("/f", "w") as f:
            await f.write(os.urandom(2 * BLOCK))
        await vol.utime("/f", (1000, 1000))
        async with await vol.fopen("/f", "r+") as f:
            await f.pwrite(b"z", BLOCK + 10)              # only piece 1
        st_ = await vol.stat("/f")
        assert st_.st_size == 2 * BLOCK and st_.st_mtime > 1000
        bricks = bricks_of(tmp_path, 2)
        assert st_.st_blocks == sum(os.stat(os.path.join(b, "f")).st_blocks for b in bricks)
        listed = dict(await vol.listdir_with_stat("/"))
        assert listed["f"].st_size == st_.st_size and listed["f"].st_mtime == st_.st_mtime
        sv = await vol.statvfs("/")
        one = os.statvfs(bricks[0])
        assert sv.f_blocks == 2 * one.f_blocks    # both bricks share this filesystem


async def test_appends_land_at_the_true_end(tmp_path):
    """O_APPEND is kept by stripe: concurrent appenders through two fds
    never overwrite each other, whatever their offsets."""
    async with mounted(tmp_path, 2) as (vol, graph):
        async with await vol.fopen("/log", "w") as f:
            await f.write(b"-" * 100)

        async def appender(tag):
            async with await vol.fopen("/log", "a") as f:
                for _ in range(10):
                    await f.write(tag * 5000)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(appender, b"a")
            nursery.start_soon(appender, b"b")
        async with await vol.fopen("/log", "r") as f:
            data = await f.read()
        assert len(data) == 100 + 2 * 10 * 5000
        chunks = [data[100 + i * 5000:100 + (i + 1) * 5000] for i in range(20)]
        assert all(len(set(c)) == 1 for c in chunks)     # no write split or overlaid
        assert sorted(c[:1] for c in chunks) == [b"a"] * 10 + [b"b"] * 10
        check_placement(bricks_of(tmp_path, 2), "log", data, BLOCK, True)


async def test_create_of_an_existing_file_keeps_its_geometry(tmp_path):
    async with mounted(tmp_path, 2) as (vol, graph):
        async with await vol.fopen("/f", "w") as f:
            await f.write(os.urandom(5 * BLOCK))
        graph.by_name["st"].reconfigure({"block-size": "32KB"})
        top = graph.top
        fd = Fd(flags=os.O_RDWR | os.O_CREAT | os.O_TRUNC)
        made = await top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644, 0, fd, gfid_req())
        assert made.iatt.size == 0
        data = os.urandom(3 * BLOCK + 5)
        await top.writev(fd, data, 0, 0, None)
        await top.release(fd, None)
        check_placement(bricks_of(tmp_path, 2), "f", data, BLOCK, True)
        fd = Fd(flags=os.O_RDWR)
        assert await errno_of(top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                         os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644, 0, fd,
                                         gfid_req())) == "EEXIST"


async def test_put_and_copy_file_range_stripe_the_data(tmp_path):
    async with mounted(tmp_path, 2) as (vol, graph):
        top = graph.top
        data = os.urandom(3 * BLOCK + 100)
        put = await top.put(Loc(path="/p", pargfid=ROOT_GFID, name="p"), 0o644, 0,
                            os.O_RDWR | os.O_CREAT, data, 0, {"user.tag": b"t"}, gfid_req())
        assert put.iatt.size == len(data)
        check_placement(bricks_of(tmp_path, 2), "p", data, BLOCK, True)
        src = Fd(gfid=put.iatt.gfid, flags=os.O_RDONLY)
        await top.open(Loc(path="/p", gfid=put.iatt.gfid), os.O_RDONLY, src, None)
        dst = Fd(flags=os.O_RDWR)
        await top.create(Loc(path="/q", pargfid=ROOT_GFID, name="q"), os.O_RDWR | os.O_CREAT,
                         0o644, 0, dst, gfid_req())
        copied = await top.copy_file_range(src, 10, dst, BLOCK, 2 * BLOCK, 0, None)
        assert copied.count == 2 * BLOCK and copied.postbuf_dst.size == 3 * BLOCK
        back = (await top.readv(dst, 4 * BLOCK, 0, 0, None)).data
        assert bytes(back) == bytes(BLOCK) + data[10:10 + 2 * BLOCK]
        for fd in (src, dst):
            await top.release(fd, None)


async def test_fops_a_striped_file_cannot_serve_answer_enotsup(tmp_path):
    async with mounted(tmp_path, 2) as (vol, graph):
        top = graph.top
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                os.O_RDWR | os.O_CREAT, 0o644, 0, fd, gfid_req())
        await top.writev(fd, b"x" * (3 * BLOCK), 0, 0, None)
        assert (await top.seek(fd, 0, SeekWhat.DATA, None)).offset == 0
        assert (await top.seek(fd, 0, SeekWhat.HOLE, None)).offset == 3 * BLOCK
        assert await errno_of(top.seek(fd, 3 * BLOCK, SeekWhat.DATA, None)) == "ENXIO"
        assert await errno_of(top.rchecksum(fd, 0, 100, None)) == "ENOTSUP"
        assert await errno_of(top.icreate(Loc(gfid=GFID.random()), 0o644, None)) == \
            "ENOTSUP"
        assert await errno_of(top.namelink(Loc(pargfid=ROOT_GFID, name="n"), None)) == \
            "ENOTSUP"
        collapse, insert = 0x08, 0x20
        assert await errno_of(top.fallocate(fd, collapse, 0, BLOCK, None)) == "ENOTSUP"
        assert await errno_of(top.fallocate(fd, insert, 0, BLOCK, None)) == "ENOTSUP"
        assert (await top.fstat(fd, None)).iatt.size == 3 * BLOCK
        # a size change through setattr is a truncate of each piece to its share
        await top.setattr(Loc(path="/f", gfid=made.iatt.gfid), Iatt(size=BLOCK + 1, mode=0o600),
                          SET_ATTR_SIZE | SET_ATTR_MODE, None)
        st_ = (await top.fstat(fd, None)).iatt
        assert st_.size == BLOCK + 1 and stat.S_IMODE(st_.mode) == 0o600
        assert [os.path.getsize(os.path.join(b, "f")) for b in bricks_of(tmp_path, 2)] == \
            [BLOCK, 1]
        await top.release(fd, None)


async def test_anonymous_fds_learn_the_geometry_by_gfid(tmp_path):
    """An fd never opened through stripe (protocol/server's anonymous fds),
    in a graph that has not seen the file: the geometry comes from a lookup
    by gfid; reads, writes, fsync and fstat are exact."""
    data = os.urandom(5 * BLOCK + 3)
    async with mounted(tmp_path, 4) as (vol, graph):
        async with await vol.fopen("/f", "w") as f:
            await f.write(data)
        gfid = GFID(os.getxattr(os.path.join(bricks_of(tmp_path, 4)[0], "f"), "trusted.gfid"))
    graph = Graph.from_text(stripe_volfile(tmp_path, 4))
    async with graph.running():
        top = graph.top
        fd = Fd(gfid=gfid, flags=os.O_RDWR)
        assert bytes((await top.readv(fd, 8 * BLOCK, BLOCK - 1, 0, None)).data) == \
            data[BLOCK - 1:]
        await top.writev(fd, b"new", len(data), 0, None)
        assert (await top.fsync(fd, 0, None)).postbuf.size == len(data) + 3
        assert (await top.fstat(fd, None)).iatt.size == len(data) + 3
        await top.release(fd, None)
        root = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), root, None)
        assert "f" in [e.name for e in (await top.readdir(root, 4096, 0, None)).entries]
        await top.fsyncdir(root, 0, None)
        await top.releasedir(root, None)
    check_placement(bricks_of(tmp_path, 4), "f", data + b"new", BLOCK, True)


# -- a child that is down, or a piece that is gone --------------------------------------

async def test_a_child_down_stops_every_fop_with_enotconn(tmp_path):
    """CHILD_DOWN from one brick: the stripe reports CHILD_DOWN and answers
    ENOTCONN - reads never come back short or zero-filled; CHILD_UP again
    and everything is as it was."""
    graph = Graph.from_text(stripe_volfile(tmp_path, 4))
    async with graph.running():
        assert await graph.wait_child_up(5)
        top = graph.top
        data = os.urandom(10 * BLOCK)
        fd = Fd(flags=os.O_RDWR)
        made = await top.create(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                os.O_RDWR | os.O_CREAT, 0o644, 0, fd, gfid_req())
        await top.writev(fd, data, 0, 0, None)
        brick = graph.by_name["b2"]
        brick.notify_parents(Event.CHILD_DOWN)
        assert not graph.root.child_up
        loc = Loc(path="/f", pargfid=ROOT_GFID, name="f", gfid=made.iatt.gfid)
        attempts = [top.readv(fd, BLOCK, 0, 0, None),           # piece 0 is up, still no
                    top.readv(fd, 10 * BLOCK, 0, 0, None),
                    top.writev(fd, b"y", 0, 0, None),
                    top.fstat(fd, None), top.lookup(loc, None), top.stat(loc, None),
                    top.truncate(loc, 0, None), top.ftruncate(fd, 0, None),
                    top.zerofill(fd, 0, BLOCK, None), top.unlink(loc, 0, None),
                    top.mkdir(Loc(path="/d", pargfid=ROOT_GFID, name="d"), 0o755, 0,
                              gfid_req()),
                    top.readdir(Fd(gfid=ROOT_GFID, is_dir=True), 4096, 0, None),
                    top.statfs(Loc.root(), None)]
        for attempt in attempts:
            assert await errno_of(attempt) == "ENOTCONN"
        brick.notify_parents(Event.CHILD_UP)
        assert graph.root.child_up
        assert bytes((await top.readv(fd, 20 * BLOCK, 0, 0, None)).data) == data
        await top.release(fd, None)


async def test_an_unreachable_brick_keeps_the_volume_down(tmp_path):
    """A real protocol/client child whose brick refuses connections: the
    stripe goes CHILD_DOWN, gfapi's mount says so, raw fops get ENOTCONN."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]       # closed again before anyone connects
    client = ("volume {name}\n    type protocol/client\n    option remote-host 127.0.0.1\n"
              f"    option remote-port {port}\n    option remote-subvolume /nowhere\n"
              "end-volume\n")
    text = stripe_volfile(tmp_path, 2, brick_type=client)
    with pytest.raises(LibgfapiException, match="CHILD_DOWN"):
        async with AsyncVolume(Graph.from_text(text), mount_timeout=10):
            pass
    graph = Graph.from_text(text)
    async with graph.running():
        with trio.move_on_after(10):
            while graph.by_name["st"]._reported is None:
                await trio.sleep(0.01)
        assert graph.by_name["st"]._reported == Event.CHILD_DOWN
        assert await errno_of(graph.top.lookup(Loc.root(), None)) == "ENOTCONN"


async def test_a_missing_piece_is_eio_never_zeros(tmp_path):
    """A piece removed behind the volume's back (with its gfid handle): the
    file's lookup and an fd that must reopen the piece give EIO."""
    async with mounted(tmp_path, 2) as (vol, graph):
        data = os.urandom(4 * BLOCK)
        async with await vol.fopen("/f", "w") as f:
            await f.write(data)
        brick1 = bricks_of(tmp_path, 2)[1]
        gfid = GFID(os.getxattr(os.path.join(brick1, "f"), "trusted.gfid"))
        os.unlink(os.path.join(brick1, "f"))
        os.unlink(os.path.join(brick1, ".glusterfs", f"{gfid.hex()[:2]}",
                               f"{gfid.hex()[2:4]}", str(gfid)))
        top = graph.top
        assert await errno_of(top.lookup(Loc(path="/f", pargfid=ROOT_GFID, name="f"),
                                         None)) == "EIO"
        anonymous = Fd(gfid=gfid, flags=os.O_RDONLY)
        assert await errno_of(top.readv(anonymous, 4 * BLOCK, 0, 0, None)) == "EIO"
        assert await errno_of(vol.stat("/f")) == "EIO"


async def test_pieces_that_disagree_on_the_geometry_are_eio(tmp_path):
    async with mounted(tmp_path, 2) as (vol, graph):
        async with await vol.fopen("/f", "w") as f:
            await f.write(b"x" * (2 * BLOCK))
        piece = os.path.join(bricks_of(tmp_path, 2)[1], "f")
        os.setxattr(piece, "trusted.st.stripe-size", b"32768\0")
        with pytest.raises(OSError) as e:
            await vol.stat("/f")
        assert e.value.errno == errno.EIO
        os.setxattr(piece, "trusted.st.stripe-size", b"16384\0")
        os.setxattr(piece, "trusted.st.stripe-index", b"0\0")
        assert await errno_of(vol.stat("/f")) == "EIO"


async def test_a_slow_child_cancelled_mid_read_returns_nothing_partial(tmp_path):
    """delay-gen holds piece 1's reads; a read cancelled while it waits
    gives no data at all, and the next read is whole."""
    delayed = ("volume {name}-posix\n    type storage/posix\n"
               f"    option directory {tmp_path}/brick1\nend-volume\n"
               "volume {name}\n    type debug/delay-gen\n    option enable READ\n"
               "    option delay-percentage 100%\n    option delay-duration 200000\n"
               "    subvolumes {name}-posix\nend-volume\n")
    os.makedirs(tmp_path / "brick1")
    graph = Graph.from_text(stripe_volfile(tmp_path, 2, brick_type=delayed))
    async with AsyncVolume(graph, mount_timeout=5) as vol:
        data = os.urandom(4 * BLOCK)
        async with await vol.fopen("/f", "w") as f:
            await f.write(data)
        async with await vol.fopen("/f", "r") as f:
            got = None
            with trio.move_on_after(0.05) as scope:
                got = await f.pread(4 * BLOCK, 0)
            assert scope.cancelled_caught and got is None
            assert await f.pread(4 * BLOCK, 0) == data


# -- options -------------------------------------------------------------------

@pytest.mark.parametrize("value, reason", [
    ("0", "is zero"),
    ("8KB", "below the minimum 16384"),
    ("16900", "not a multiple of 512"),
    ("2GB", "above the maximum 1073741824"),
    ("*.img:1MB,*:4KB", "block size 4096 for '*' is below"),
    ("*.img:1000000", "for '*.img' is not a multiple of 512"),
    (":1MB", "empty pattern"),
    ("big", "is not a size"),
])
def test_bad_block_sizes_are_refused_naming_file_and_line(tmp_path, value, reason):
    text = stripe_volfile(tmp_path, 2, block_size=value)
    with pytest.raises(VolfileError) as e:
        Graph.from_text(text, filename="bad-stripe.vol")
    line = text.splitlines().index(f"    option block-size {value}") + 1
    assert (e.value.filename, e.value.line) == ("bad-stripe.vol", line)
    assert "'block-size'" in str(e.value) and reason in str(e.value)


def test_other_bad_configurations_are_refused(tmp_path):
    with pytest.raises(VolfileError, match=r"takes 2 to 256 subvolumes, not 1"):
        Graph.from_text(stripe_volfile(tmp_path, 1), filename="one.vol")
    with pytest.raises(VolfileError, match=r"option 'coalesce': 'maybe' is not a boolean"):
        Graph.from_text(stripe_volfile(tmp_path, 2).replace("coalesce on", "coalesce maybe"))
    with pytest.raises(VolfileError, match=r"unknown option 'stripe-count'"):
        Graph.from_text(stripe_volfile(tmp_path, 2, extra="    option stripe-count 2\n"))


async def test_reconfigure_refuses_a_bad_block_size_and_keeps_the_old(tmp_path):
    graph = Graph.from_text(stripe_volfile(tmp_path, 2))
    stripe = graph.by_name["st"]
    with pytest.raises(OptionError, match="below the minimum"):
        stripe.reconfigure({"block-size": "1KB"})
    assert stripe.opts.block_size == (("*", BLOCK),)
    with pytest.raises(FopError, match="use-xattr"):
        stripe.reconfigure({"block-size": "16KB", "use-xattr": "off"})
