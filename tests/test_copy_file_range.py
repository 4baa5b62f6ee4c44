"""copy_file_range through the translators (issue 21): replicate copies on
every replica in one changelog transaction, distribute on one brick or
between two, stripe block by block, and the clones gfapi makes.

Bricks are real graphs served by protocol/server on loopback and reached
through protocol/client, so the fop travels GlusterFS's wire encoding; the
client's bytes on the wire are read from its sockets (TCP_INFO).
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys

import pytest

import test_bd
import test_distribute as dist
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.keys import COLOCATE_KEY

from glusterpy.gfapi.files import SEEK_DATA, SEEK_HOLE
from test_interop_server import need, served_volume
from test_posix import mkfile
from test_stripe import bricks_of, mounted as stripe_mounted
from replicate_support import create_file, index_entries, pending
from test_replicate_heal import down, heal_until_clean, key, read_all, replica, up


# storage/bd's fixtures (a VG on loop devices), bound by assignment as test_bd does
vg, meta, loop_vg = test_bd.vg, test_bd.meta, test_bd.loop_vg


@pytest.fixture(autouse=True)
def quick_reconnect(monkeypatch):
    monkeypatch.setattr("xlators.protocol.client.RECONNECT_INTERVAL", 0.1)


MB = 1 << 20


# -- posix ----------------------------------------------------------------------------


def sparse_source(path, tail_hole=True) -> bytes:
    """A file with data, a hole, data (and a hole at the end): its bytes."""
    with open(path, "wb") as f:
        f.write(b"A" * 8192)
        f.seek(MB)
        f.write(b"B" * 8192)
        f.truncate(2 * MB if tail_hole else MB + 8192)
    return path.read_bytes()


def holes_of(path) -> list[tuple[int, int]]:
    """The file's data extents, by SEEK_DATA/SEEK_HOLE."""
    out, pos = [], 0
    with open(path, "rb") as f:
        fd, size = f.fileno(), os.fstat(f.fileno()).st_size
        while pos < size:
            try:
                data = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            hole = os.lseek(fd, data, os.SEEK_HOLE)
            out.append((data, hole))
            pos = hole
    return out


async def test_posix_copy_keeps_holes_and_clears_the_destination_under_them(brick,
                                                                         posix_graph):
    async with posix_graph(brick) as top:
        src = await mkfile(top, Loc.root(), "src")
        dst = await mkfile(top, Loc.root(), "dst", b"x" * (3 * MB))
        expected = sparse_source(brick / "src")
        r = await top.copy_file_range(Fd(gfid=src.gfid), 0, Fd(gfid=dst.gfid, flags=os.O_RDWR),
                                      0, 10 * MB, 0, None)
        assert r.count == 2 * MB and r.postbuf_dst.size == 3 * MB
        got = (brick / "dst").read_bytes()
        assert got[:2 * MB] == expected and got[2 * MB:] == b"x" * MB
        # the source's hole is a hole in the copy, not written zeros
        assert holes_of(brick / "dst")[:2] == [(0, 8192), (MB, MB + 8192)]
        # a new file: extended over the source's final hole
        new = await mkfile(top, Loc.root(), "new")
        r = await top.copy_file_range(Fd(gfid=src.gfid), 0, Fd(gfid=new.gfid, flags=os.O_RDWR),
                                      0, 2 * MB, 0, None)
        assert r.count == 2 * MB and (brick / "new").read_bytes() == expected
        assert holes_of(brick / "new") == [(0, 8192), (MB, MB + 8192)]


# -- replicate ------------------------------------------------------------------------


async def test_replicate_copies_on_every_replica_in_one_transaction(tmp_path):
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        data = os.urandom(300_000)
        src, sg = await create_file(top, "src", data)
        dst, dg = await create_file(top, "dst")
        reply = await top.copy_file_range(src, 1000, dst, 10, 200_000, 0, None)
        assert reply.count == 200_000
        assert reply.postbuf_dst.size == 200_010
        for b in net.bricks:
            assert (b / "dst").read_bytes() == b"\0" * 10 + data[1000:201_000]
            # the transaction's post-op cleared what its pre-op set
            assert pending(b / "dst", key(0)) == (0, 0, 0)
        # the end of the source ends the copy: a short count, the same everywhere
        reply = await top.copy_file_range(src, 299_000, dst, 0, 10_000, 0, None)
        assert reply.count == 1000
        with pytest.raises(FopError) as e:
            await top.copy_file_range(src, 0, dst, 0, 10, 1, None)
        assert e.value.errno == errno.EINVAL
        for fd in (src, dst):
            await top.release(fd, None)


async def test_replicate_does_not_copy_a_stale_source_copy(tmp_path):
    """The source changed while brick 2 was down: brick 2 is not asked to
    copy its old copy; the others accuse it for the destination, and heal
    gives it the right bytes."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        src, sg = await create_file(top, "src", b"old" * 1000)
        await down(net, afr, 2)
        await top.writev(src, b"new" * 1000, 0, 0, None)
        await top.release(src, None)  # the write's changelog reaches the disk
        await up(net, afr, 2)
        src = Fd(gfid=sg, flags=os.O_RDONLY)
        await top.open(Loc(gfid=sg), os.O_RDONLY, src, None)
        dst, dg = await create_file(top, "dst")
        reply = await top.copy_file_range(src, 0, dst, 0, 3000, 0, None)
        assert reply.count == 3000
        assert await read_all(top, dg) == b"new" * 1000
        for fd in (src, dst):   # ends the eager lock's delayed post-op
            await top.release(fd, None)
        b0, b1, b2 = net.bricks
        for b in (b0, b1):
            assert (b / "dst").read_bytes() == b"new" * 1000
            assert pending(b / "dst", key(2))[0] > 0
            assert str(dg) in index_entries(b)
        assert (b2 / "dst").read_bytes() != b"new" * 1000
        await heal_until_clean(afr)
        assert (b2 / "dst").read_bytes() == b"new" * 1000


async def test_replicate_copy_with_a_brick_killed_midway_is_complete_after_heal(tmp_path):
    """A clone in pieces (as gfapi's copy_file makes it): brick 1 goes away
    after a third of them; the copy goes on on the others, and heal makes
    brick 1's clone whole."""
    async with replica(tmp_path) as (net, graph, afr):
        top = graph.top
        data = os.urandom(12 * MB)
        src, sg = await create_file(top, "src", data)
        dst, dg = await create_file(top, "dst")
        for k in range(12):
            if k == 4:
                await down(net, afr, 1)
            r = await top.copy_file_range(src, k * MB, dst, k * MB, MB, 0, None)
            assert r.count == MB
        for fd in (src, dst):
            await top.release(fd, None)
        b0, b1, b2 = net.bricks
        assert (b0 / "dst").read_bytes() == data == (b2 / "dst").read_bytes()
        assert (b1 / "dst").read_bytes() != data
        await up(net, afr, 1)
        await heal_until_clean(afr)
        assert (b1 / "dst").read_bytes() == data
        assert await read_all(top, dg) == data


# -- stripe ---------------------------------------------------------------------------


@pytest.mark.parametrize("coalesce", [True, False])
async def test_stripe_copies_piece_by_piece_and_keeps_holes(tmp_path, coalesce):
    block = 16 * 1024
    async with stripe_mounted(tmp_path, 3, coalesce=coalesce) as (vol, graph):
        top = graph.top
        # data in blocks 0-1 and 7, a hole between and at the end
        image = bytearray(12 * block)
        image[:2 * block] = os.urandom(2 * block)
        image[7 * block:8 * block] = os.urandom(block)
        async with await vol.fopen("/src", "w") as f:
            await f.pwrite(bytes(image[:2 * block]), 0)
            await f.pwrite(bytes(image[7 * block:8 * block]), 7 * block)
            await f.ftruncate(len(image))
        src = await vol.open("/src", os.O_RDONLY)
        # SEEK_DATA/SEEK_HOLE across the pieces
        assert await src.lseek(0, SEEK_HOLE) == 2 * block
        assert await src.lseek(2 * block, SEEK_DATA) == 7 * block
        assert await src.lseek(7 * block + 5, SEEK_HOLE) == 8 * block
        with pytest.raises(OSError) as e:
            await src.lseek(8 * block, SEEK_DATA)
        assert e.value.errno == errno.ENXIO
        dst = await vol.open("/dst", os.O_RDWR | os.O_CREAT, 0o644)
        # the whole file, and then a stripe-aligned shift: per piece
        r = await top.copy_file_range(src.fd, 0, dst.fd, 0, 100 * block, 0, None)
        assert r.count == len(image) and r.postbuf_dst.size == len(image)
        assert await dst.pread(len(image) + 1, 0) == bytes(image)
        for brick in bricks_of(tmp_path, 3):
            # nothing of the holes was written out on any piece
            allocated = os.stat(os.path.join(brick, "dst")).st_blocks * 512
            assert allocated <= os.stat(os.path.join(brick, "src")).st_blocks * 512
        r = await top.copy_file_range(src.fd, 3 * block, dst.fd, 0, 6 * block, 0, None)
        assert r.count == 6 * block
        assert await dst.pread(len(image), 0) == bytes(image[3 * block:9 * block] +
                                                        image[6 * block:])
        # not a whole stripe apart: through the translator, the same bytes
        r = await top.copy_file_range(src.fd, 5, dst.fd, 1, 2 * block, 0, None)
        assert r.count == 2 * block
        assert await dst.pread(2 * block + 1, 1) == bytes(image[5:5 + 2 * block]) + \
            bytes(image[3 * block + 2 * block + 1:3 * block + 2 * block + 2])
        await src.close()
        await dst.close()


# -- distribute -------------------------------------------------------------------------


async def test_distribute_creates_a_clone_beside_its_source(tmp_path):
    bricks = dist.make_bricks(tmp_path, 3)
    async with dist.running(bricks) as top:
        src_gfid = await dist.create_file(top, ROOT_GFID, "/src", b"data")
        home = dist.hashed_brick(bricks, "", "src")
        away = [f"n{i}" for i in range(40) if dist.hashed_brick(bricks, "", f"n{i}") != home]
        for name in away[:3]:
            fd = Fd(flags=os.O_RDWR)
            await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                             os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                             {"gfid-req": GFID.random(), COLOCATE_KEY: src_gfid})
            await top.release(fd, None)
            # the data beside the source, a linkto file where the name hashes
            assert (bricks[home] / name).exists()
            hashed = bricks[dist.hashed_brick(bricks, "", name)] / name
            assert "trusted.glusterfs.dht.linkto" in os.listxattr(hashed)
        # a gfid distribute cannot find: the usual placement
        name = away[3]
        fd = Fd(flags=os.O_RDWR)
        await top.create(Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name),
                         os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                         {"gfid-req": GFID.random(), COLOCATE_KEY: GFID.random()})
        await top.release(fd, None)
        assert not (bricks[home] / name).exists()


# -- a GlusterFS 10 client ----------------------------------------------------------------


#: run by a python subprocess (libgfapi's glfs_fini takes ~10 s and its
#: threads stay behind): GlusterFS 10's libgfapi writes a sparse /src and
#: copies it to /dst with glfs_copy_file_range, over ctypes
LIBGFAPI_COPY = r"""
import ctypes, os, sys
from ctypes import byref, c_char_p, c_int, c_int64, c_size_t, c_uint, c_void_p
g = ctypes.CDLL("libgfapi.so.0", use_errno=True)
for name, res, args in (
        ("glfs_new", c_void_p, [c_char_p]),
        ("glfs_set_volfile_server", c_int, [c_void_p, c_char_p, c_char_p, c_int]),
        ("glfs_set_logging", c_int, [c_void_p, c_char_p, c_int]),
        ("glfs_init", c_int, [c_void_p]), ("glfs_fini", c_int, [c_void_p]),
        ("glfs_creat", c_void_p, [c_void_p, c_char_p, c_int, c_uint]),
        ("glfs_open", c_void_p, [c_void_p, c_char_p, c_int]),
        ("glfs_close", c_int, [c_void_p]),
        ("glfs_ftruncate", c_int, [c_void_p, c_int64, c_void_p, c_void_p]),
        ("glfs_pwrite", ctypes.c_ssize_t,
         [c_void_p, c_char_p, c_size_t, c_int64, c_int, c_void_p, c_void_p]),
        ("glfs_copy_file_range", ctypes.c_ssize_t,
         [c_void_p, ctypes.POINTER(c_int64), c_void_p, ctypes.POINTER(c_int64), c_size_t,
          c_uint, c_void_p, c_void_p, c_void_p])):
    f = getattr(g, name)
    f.restype, f.argtypes = res, args
vol, port, log, mb = sys.argv[1].encode(), int(sys.argv[2]), sys.argv[3].encode(), 1 << 20
fs = g.glfs_new(vol)
g.glfs_set_volfile_server(fs, b"tcp", b"127.0.0.1", port)
g.glfs_set_logging(fs, log, 7)
assert g.glfs_init(fs) == 0, "glfs_init"
src = g.glfs_creat(fs, b"/src", os.O_RDWR, 0o644)
assert src, "creat /src"
assert g.glfs_pwrite(src, b"A" * 8192, 8192, 0, 0, None, None) == 8192
assert g.glfs_pwrite(src, b"B" * 8192, 8192, mb, 0, None, None) == 8192
assert g.glfs_ftruncate(src, 2 * mb, None, None) == 0
dst = g.glfs_creat(fs, b"/dst", os.O_RDWR, 0o644)
off_in, off_out, done = c_int64(0), c_int64(0), 0
while done < 2 * mb:
    n = g.glfs_copy_file_range(src, byref(off_in), dst, byref(off_out), 2 * mb - done, 0,
                               None, None, None)
    assert n > 0, ("glfs_copy_file_range", n, os.strerror(ctypes.get_errno()))
    done += n
print(done, off_in.value, off_out.value)
g.glfs_close(src)
g.glfs_close(dst)
g.glfs_fini(fs)
"""


def test_glusterfs10_libgfapi_copy_file_range_against_our_brick(tmp_path):
    """GlusterFS 10's glfs_copy_file_range (its own client graph, its own
    wire encoding of COPY_FILE_RANGE) against a glusterpy brick: the copy
    is done by the brick, holes kept.  (GlusterFS 10's FUSE client here has
    no copy_file_range: fuse.so is built without it, so the kernel falls
    back to read and write on its mounts.)"""
    need("python3")
    if subprocess.run(["ldconfig", "-p"], capture_output=True, text=True).stdout.find(
            "libgfapi.so.0") < 0:
        pytest.skip("GlusterFS 10's libgfapi is not installed")
    with served_volume(tmp_path / "srv", "cfrvol") as sv:
        done = subprocess.run([sys.executable, "-c", LIBGFAPI_COPY, sv.vol,
                               str(sv.volfile_port), str(tmp_path / "gfapi.log")],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr + sv.logs()
        assert done.stdout.split() == [str(2 * MB)] * 3
        expected = sparse_source(tmp_path / "expected")
        assert (sv.brick / "src").read_bytes() == expected
        assert (sv.brick / "dst").read_bytes() == expected
        assert holes_of(sv.brick / "dst") == [(0, 8192), (MB, MB + 8192)]


async def test_distribute_between_two_bricks_keeps_holes(tmp_path):
    """Two existing files on two bricks: distribute reads and writes the
    source's data extents only; the source's holes over the destination's
    data are punched, so the range reads as the source's."""
    bricks = dist.make_bricks(tmp_path, 2)
    async with dist.running(bricks) as top:
        d = await dist.mkdir(top, ROOT_GFID, "/d")
        names = {}
        for i in range(40):
            names.setdefault(dist.hashed_brick(bricks, "d", f"f{i}"), f"f{i}")
        a, b = names[0], names[1]
        ga = await dist.create_file(top, d, f"/d/{a}")
        gb = await dist.create_file(top, d, f"/d/{b}", b"x" * (3 * MB))
        expected = sparse_source(bricks[0] / "d" / a)
        src, dst = Fd(gfid=ga, flags=os.O_RDONLY), Fd(gfid=gb, flags=os.O_RDWR)
        await top.open(Loc(gfid=ga), os.O_RDONLY, src, None)
        await top.open(Loc(gfid=gb), os.O_RDWR, dst, None)
        r = await top.copy_file_range(src, 0, dst, 0, 4 * MB, 0, None)
        assert r.count == 2 * MB and r.postbuf_dst.size == 3 * MB
        got = (bricks[1] / "d" / b).read_bytes()
        assert got[:2 * MB] == expected and got[2 * MB:] == b"x" * MB
        assert holes_of(bricks[1] / "d" / b)[:2] == [(0, 8192), (MB, MB + 8192)]
        for fd in (src, dst):
            await top.release(fd, None)


# -- storage/bd -------------------------------------------------------------------------


async def test_bd_clone_is_an_lv_to_lv_copy(vg, meta):
    """gfapi's copy_file (vm clone) on a bd volume: a new LV with the
    source LV's bytes, copied by storage/bd's copy_file_range."""
    from glusterpy import vm
    async with test_bd.bd_volume(vg, meta) as vol:
        data = os.urandom(5 * test_bd.EXT + 100)
        async with await vol.fopen("/base", "w") as f:
            await f.write(data)
        size = await vol.getsize("/base")      # whole extents, as bd sizes an LV
        assert await vm.clone_image(vol, "base", "copy") == size
        assert vg.lvs()["copy"] == vg.lvs()["base"] == size
        assert vg.read_lv("copy") == vg.read_lv("base")
        async with await vol.fopen("/copy") as f:
            assert (await f.read())[:len(data)] == data
        with pytest.raises(vm.VmError, match="already exists"):
            await vm.clone_image(vol, "base", "copy")


async def test_distribute_moves_an_empty_destination_beside_its_source(tmp_path):
    """`cp`'s case: the destination is new and empty and hashes to another
    brick.  It moves to the source's brick (a linkto file stays where its
    name hashes), the brick copies, and the fd goes on working there; a
    destination that has data or several names is copied into where it is."""
    bricks = dist.make_bricks(tmp_path, 2)
    async with dist.running(bricks) as top:
        d = await dist.mkdir(top, ROOT_GFID, "/d")
        names = {}
        for i in range(60):
            names.setdefault(dist.hashed_brick(bricks, "d", f"f{i}"), []).append(f"f{i}")
        a, (b, b2, b3) = names[0][0], names[1][:3]
        ga = await dist.create_file(top, d, f"/d/{a}")
        expected = sparse_source(bricks[0] / "d" / a)
        gb = await dist.create_file(top, d, f"/d/{b}")
        src, dst = Fd(gfid=ga, flags=os.O_RDONLY), Fd(gfid=gb, flags=os.O_RDWR)
        await top.open(Loc(gfid=ga), os.O_RDONLY, src, None)
        await top.open(Loc(gfid=gb), os.O_RDWR, dst, None)
        r = await top.copy_file_range(src, 0, dst, 0, 4 * MB, 0, None)
        assert r.count == 2 * MB and r.postbuf_dst.size == 2 * MB
        # the data beside the source, holes kept; a linkto file where it hashes
        assert (bricks[0] / "d" / b).read_bytes() == expected
        assert holes_of(bricks[0] / "d" / b) == [(0, 8192), (MB, MB + 8192)]
        assert dist.is_linkto(bricks[1] / "d" / b)
        assert dist.xget(bricks[1] / "d" / b, "trusted.glusterfs.dht.linkto") == b"dv-client-0\0"
        assert os.getxattr(bricks[0] / "d" / b, "trusted.gfid") == bytes(gb)
        # the fd was moved with the file: a write lands beside the source
        await top.writev(dst, b"Z" * 10, 5, 0, None)
        assert (bricks[0] / "d" / b).read_bytes()[:20] == b"A" * 5 + b"Z" * 10 + b"A" * 5
        await top.release(dst, None)
        # a fresh graph finds, reads and removes it by its name
    async with dist.running(bricks) as top:
        d = (await top.lookup(Loc(path="/d", pargfid=ROOT_GFID, name="d"), None)).iatt.gfid
        looked = await top.lookup(Loc(path=f"/d/{b}", pargfid=d, name=b), None)
        assert looked.iatt.gfid == gb and looked.iatt.size == 2 * MB
        assert (await dist.read_all(top, gb))[5:15] == b"Z" * 10
        await top.unlink(Loc(path=f"/d/{b}", pargfid=d, name=b), 0, None)
        assert not (bricks[0] / "d" / b).exists() and not (bricks[1] / "d" / b).exists()
        # a destination with data, or with a second name, is not moved
        for name, data in ((b2, b"q" * 100), (b3, b"")):
            g = await dist.create_file(top, d, f"/d/{name}", data)
            if not data:
                await top.link(Loc(gfid=g), Loc(path=f"/d/{name}l", pargfid=d,
                                                name=f"{name}l"), None)
            src, dst = Fd(gfid=ga, flags=os.O_RDONLY), Fd(gfid=g, flags=os.O_RDWR)
            await top.open(Loc(gfid=ga), os.O_RDONLY, src, None)
            await top.open(Loc(gfid=g), os.O_RDWR, dst, None)
            r = await top.copy_file_range(src, 0, dst, 0, 2 * MB, 0, None)
            assert r.count == 2 * MB
            assert (bricks[1] / "d" / name).read_bytes() == expected
            assert not (bricks[0] / "d" / name).exists()
            for fd in (src, dst):
                await top.release(fd, None)
