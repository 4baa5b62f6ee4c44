"""storage/posix: every fop on a brick directory, its errnos, GlusterFS 10's
on-disk layout, and confinement to the brick.

The graphs are real (Graph.from_text + running()); the checks on disk use
os.* on the brick directly.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import hashlib
import os
import random
import stat
import struct
import time
import types
import uuid
import zlib

import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from glusterpy import fops
from glusterpy.fops import (GFID, NULL_GFID, ROOT_GFID, Caller, Fd, FopError, Iatt, Loc,
                            UInt, XattropType)
from glusterpy.graph import Graph
from glusterpy.volfile import VolfileError
from glusterpy.xlator import overridden_fops
from xlators.storage import posix as posix_mod
from xlators.storage.posix.handles import xxh64
from xlators.storage.posix.helpers import (DIR_CACHE_MAX, DeferredEviction, MdataCache, xremove,
                                           xset)
from xlators.storage.posix.xattr_ops import combine

from conftest import posix_volfile

GFID_KEY = "trusted.gfid"
MDATA_KEY = "trusted.glusterfs.mdata"


# -- helpers ------------------------------------------------------------------

def req(gfid: GFID | None = None) -> dict:
    return {"gfid-req": gfid or GFID.random()}


def child(parent: Loc, name: str, gfid: GFID | None = None) -> Loc:
    return Loc.child(parent, name, gfid)


async def mkdir(top, parent: Loc, name: str, mode: int = 0o755) -> Loc:
    r = await top.mkdir(child(parent, name), mode, 0, req())
    return child(parent, name, r.iatt.gfid)


async def mkfile(top, parent: Loc, name: str, data: bytes = b"", mode: int = 0o644) -> Loc:
    fd = Fd()
    r = await top.create(child(parent, name), os.O_RDWR | os.O_CREAT | os.O_EXCL, mode, 0,
                         fd, req())
    if data:
        await top.writev(fd, data, 0, 0, None)
    await top.release(fd, None)
    return child(parent, name, r.iatt.gfid)


async def read_all(top, loc: Loc) -> bytes:
    fd = Fd(gfid=loc.gfid)
    await top.open(Loc(gfid=loc.gfid), os.O_RDONLY, fd, None)
    try:
        return bytes((await top.readv(fd, 1 << 20, 0, 0, None)).data)
    finally:
        await top.release(fd, None)


def handle(brick, gfid) -> str:
    g = bytes(gfid)
    return os.path.join(brick, ".glusterfs", f"{g[0]:02x}", f"{g[1]:02x}", str(GFID(g)))


def disk_gfid(path) -> GFID:
    return GFID(os.getxattr(path, GFID_KEY, follow_symlinks=False))


def gfid2path_key(pgfid, name) -> str:
    return "trusted.gfid2path." + f"{xxh64(f'{pgfid}/{name}'.encode()):016x}"


@contextlib.contextmanager
def as_caller(**kw):
    token = fops.caller.set(Caller(**kw))
    try:
        yield
    finally:
        fops.caller.reset(token)


async def errno_of(coro) -> int:
    with pytest.raises(FopError) as e:
        await coro
    return e.value.errno


async def refused(posix_graph, directory, **options) -> FopError:
    """The FopError a graph's init raises (Graph.running wraps it in trio's
    exception groups)."""
    try:
        async with posix_graph(directory, **options):
            pass
    except BaseException as e:
        leaf = e
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, FopError):
            return leaf
        raise
    pytest.fail("the brick was accepted")


def snapshot(root) -> dict:
    """Everything observable about a tree: modes, sizes, times, links,
    contents and xattrs - to prove nothing was touched."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [""] + dirnames + filenames:
            p = os.path.join(dirpath, name) if name else dirpath
            s = os.lstat(p)
            xattrs = tuple(sorted((k, os.getxattr(p, k, follow_symlinks=False))
                                  for k in os.listxattr(p, follow_symlinks=False)))
            content = None
            if stat.S_ISREG(s.st_mode):
                content = open(p, "rb").read()
            elif stat.S_ISLNK(s.st_mode):
                content = os.readlink(p)
            # not atime: reading the tree (relatime) moves it
            out[p] = (s.st_mode, s.st_uid, s.st_gid, s.st_size, s.st_mtime_ns, s.st_ctime_ns,
                      s.st_nlink, xattrs, content)
    return out


# -- init, options and the layout of a fresh brick ------------------------------

async def test_fresh_brick_gets_glusterfs10_layout(brick, posix_graph):
    async with posix_graph(brick):
        pass
    hidden = brick / ".glusterfs"
    assert stat.S_IMODE(os.lstat(hidden).st_mode) == 0o600
    hashes = sorted(p.name for p in hidden.iterdir() if len(p.name) == 2)
    assert hashes == [f"{i:02x}" for i in range(256)]
    assert all(stat.S_IMODE(os.lstat(hidden / h).st_mode) == 0o700 for h in hashes)
    root_handle = hidden / "00" / "00" / "00000000-0000-0000-0000-000000000001"
    assert os.readlink(root_handle) == "../../.."
    assert os.stat(root_handle).st_ino == os.stat(brick).st_ino
    assert stat.S_IMODE(os.lstat(hidden / "landfill").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(hidden / "unlink").st_mode) == 0o600
    assert disk_gfid(brick) == ROOT_GFID
    with pytest.raises(OSError):
        os.getxattr(brick, "trusted.glusterfs.volume-id")


async def test_volume_id_stamps_an_empty_directory_and_then_must_match(brick, posix_graph):
    vid = uuid.uuid4()
    async with posix_graph(brick, volume_id=vid):
        pass
    assert os.getxattr(brick, "trusted.glusterfs.volume-id") == vid.bytes
    async with posix_graph(brick, volume_id=vid) as top:
        assert (await top.lookup(Loc.root(), None)).iatt.gfid == ROOT_GFID
    e = await refused(posix_graph, brick, volume_id=uuid.uuid4())
    assert e.errno == errno.EEXIST and str(vid) in e.message


async def test_non_empty_directory_without_volume_id_is_refused(brick, posix_graph):
    (brick / "data").write_text("not a brick of this volume")
    e = await refused(posix_graph, brick, volume_id=uuid.uuid4())
    assert e.errno == errno.ENODATA
    assert not (brick / ".glusterfs").exists()


async def test_brick_root_with_foreign_gfid_is_refused(brick, posix_graph):
    os.setxattr(brick, GFID_KEY, uuid.uuid4().bytes)
    assert (await refused(posix_graph, brick)).errno == errno.EINVAL


async def test_missing_or_non_directory_brick_is_refused(tmp_path, posix_graph):
    assert (await refused(posix_graph, tmp_path / "absent")).errno == errno.ENOENT
    (tmp_path / "file").write_text("x")
    assert (await refused(posix_graph, tmp_path / "file")).errno == errno.ENOTDIR


def test_options_are_checked_at_build_time(brick):
    with pytest.raises(VolfileError, match="directory"):
        Graph.from_text("volume p\n type storage/posix\nend-volume\n")
    with pytest.raises(VolfileError, match="volume-id"):
        Graph.from_text(posix_volfile(brick, volume_id="not-a-uuid"))
    with pytest.raises(VolfileError, match="o-direct"):
        Graph.from_text(posix_volfile(brick, o_direct="maybe"))
    with pytest.raises(VolfileError, match="unknown option"):
        Graph.from_text(posix_volfile(brick, health_check_interval="5"))
    g = Graph.from_text(posix_volfile(brick, shared_brick_count="2", fips_mode_rchecksum="on"))
    assert g.top.opts.shared_brick_count == 2 and g.top.opts.fips_mode_rchecksum


async def test_reconfigure_brick_owner_but_not_directory(brick, tmp_path):
    graph = Graph.from_text(posix_volfile(brick))
    async with graph.running():
        graph.top.reconfigure({"directory": str(brick), "brick-uid": "4321",
                               "brick-gid": "8765"})
        assert (os.stat(brick).st_uid, os.stat(brick).st_gid) == (4321, 8765)
        with pytest.raises(FopError):
            graph.top.reconfigure({"directory": str(tmp_path)})


async def test_leaf_answers_parent_up_with_child_up(brick):
    graph = Graph.from_text(posix_volfile(brick))
    async with graph.running():
        assert await graph.wait_child_up(1)


# -- lookup ---------------------------------------------------------------------

async def test_lookup_root_named_and_nameless(brick, posix_graph):
    async with posix_graph(brick) as top:
        root = await top.lookup(Loc.root(), None)
        assert root.iatt.gfid == ROOT_GFID and root.iatt.is_dir and root.postparent is None
        d = await mkdir(top, Loc.root(), "d")
        named = await top.lookup(child(Loc.root(), "d"), None)
        assert named.iatt.gfid == d.gfid and named.iatt.is_dir
        assert named.postparent.gfid == ROOT_GFID
        nameless = await top.lookup(Loc(gfid=d.gfid), None)
        assert nameless.iatt.gfid == d.gfid and nameless.iatt.ino == fops.gfid_to_ino(d.gfid)
        by_path = await top.lookup(Loc(path="/d"), None)
        assert by_path.iatt.gfid == d.gfid
        assert await errno_of(top.lookup(child(Loc.root(), "nope"), None)) == errno.ENOENT
        assert await errno_of(top.lookup(Loc(gfid=GFID.random()), None)) == errno.ENOENT
        assert await errno_of(top.lookup(Loc(), None)) == errno.EINVAL


async def test_lookup_heals_gfid_and_handles_of_entries_made_outside(brick, posix_graph):
    (brick / "plain").write_bytes(b"made without glusterfs")
    (brick / "pdir").mkdir()
    async with posix_graph(brick) as top:
        assert await errno_of(top.lookup(child(Loc.root(), "plain"), None)) == errno.ENODATA
        g = GFID.random()
        r = await top.lookup(child(Loc.root(), "plain"), req(g))
        assert r.iatt.gfid == g == disk_gfid(brick / "plain")
        assert os.stat(handle(brick, g)).st_ino == os.stat(brick / "plain").st_ino
        dg = GFID.random()
        await top.lookup(child(Loc.root(), "pdir"), req(dg))
        assert os.readlink(handle(brick, dg)) == f"../../00/00/{ROOT_GFID}/pdir"
        # a lost handle comes back on a fresh lookup
        os.unlink(handle(brick, g))
        await top.lookup(child(Loc.root(), "plain"), None)
        assert os.path.exists(handle(brick, g))
        # gfidless lookups are allowed to see entries without a gfid
        (brick / "other").write_bytes(b"")
        r = await top.lookup(child(Loc.root(), "other"), {"gfidless-lookup": 1})
        assert r.iatt.gfid == NULL_GFID


async def test_lookup_fills_requested_xattrs(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"content!")
        await top.setxattr(Loc(gfid=f.gfid), {"trusted.afr.vol-client-0": bytes(12),
                                              "trusted.afr.vol-client-1": b"\0" * 11 + b"\1",
                                              "user.other": b"o"}, 0, None)
        r = await top.lookup(child(Loc.root(), "f"), {
            "trusted.afr.*": 0, "user.other": 0, "user.absent": 0, "gfid-req": GFID.random(),
            "glusterfs.content": 1024, "glusterfs.open-fd-count": 0, "get-size": 0,
            "gf_request_link_count": 7})
        x = r.xdata
        assert x["trusted.afr.vol-client-0"] == bytes(12)
        assert x["trusted.afr.vol-client-1"] == b"\0" * 11 + b"\1"
        assert x["user.other"] == b"o" and "user.absent" not in x and "gfid-req" not in x
        assert x["glusterfs.content"] == b"content!"
        assert x["glusterfs.open-fd-count"] == 0 and isinstance(x["glusterfs.open-fd-count"], UInt)
        assert x["get-size"] == 8 and x["gf_request_link_count"] == 7
        listed = (await top.lookup(Loc(gfid=f.gfid), {"list-xattr": 1})).xdata
        assert "user.other" in listed and GFID_KEY not in listed
        assert not any(k.startswith("trusted.gfid2path.") for k in listed)
        small = (await top.lookup(Loc(gfid=f.gfid), {"glusterfs.content": 3})).xdata
        assert small is None or "glusterfs.content" not in small


# -- entry creation: gfids, handles, modes, owners --------------------------------

async def test_new_entries_take_gfid_req_and_get_handles(brick, posix_graph):
    async with posix_graph(brick) as top:
        gd, gf, gs, gn = (GFID.random() for _ in range(4))
        d = await top.mkdir(child(Loc.root(), "d"), 0o755, 0, req(gd))
        assert d.iatt.gfid == gd == disk_gfid(brick / "d")
        assert os.readlink(handle(brick, gd)) == f"../../00/00/{ROOT_GFID}/d"
        assert d.preparent.gfid == d.postparent.gfid == ROOT_GFID
        dloc = child(Loc.root(), "d", gd)
        fd = Fd()
        c = await top.create(child(dloc, "f"), 0, 0o644, 0, fd, req(gf))
        await top.release(fd, None)
        assert c.iatt.gfid == gf == disk_gfid(brick / "d" / "f") and c.iatt.nlink == 1
        assert os.stat(handle(brick, gf)).st_ino == os.stat(brick / "d" / "f").st_ino
        assert os.stat(brick / "d" / "f").st_nlink == 2
        s = await top.symlink("target/elsewhere", child(dloc, "s"), 0, req(gs))
        assert s.iatt.gfid == gs and s.iatt.is_link
        assert os.lstat(handle(brick, gs)).st_ino == os.lstat(brick / "d" / "s").st_ino
        assert os.readlink(handle(brick, gs)) == "target/elsewhere"
        n = await top.mknod(child(dloc, "fifo"), stat.S_IFIFO | 0o600, 0, 0, req(gn))
        assert n.iatt.gfid == gn and stat.S_ISFIFO(n.iatt.mode)
        assert stat.S_ISFIFO(os.lstat(handle(brick, gn)).st_mode)
        # gfid2path: "<pargfid>/<name>" under trusted.gfid2path.<xxh64>
        for gfid, name in ((gf, "f"), (gs, "s"), (gn, "fifo")):
            key = gfid2path_key(gd, name)
            assert os.getxattr(brick / "d" / name, key, follow_symlinks=False) == \
                f"{gd}/{name}".encode()
        assert not [k for k in os.listxattr(brick / "d") if k.startswith("trusted.gfid2path")]


async def test_missing_gfid_req_makes_one_and_bad_ones_are_refused(brick, posix_graph):
    async with posix_graph(brick) as top:
        r = await top.mkdir(child(Loc.root(), "d"), 0o755, 0, None)
        assert r.iatt.gfid not in (NULL_GFID, ROOT_GFID)
        assert os.path.islink(handle(brick, r.iatt.gfid))
        for bad in (NULL_GFID, ROOT_GFID, b"short", "not-a-uuid"):
            e = await errno_of(top.mkdir(child(Loc.root(), f"x{id(bad)}"), 0o755, 0,
                                         {"gfid-req": bad}))
            assert e == errno.EINVAL
        assert sorted(os.listdir(brick)) == [".glusterfs", "d"]


async def test_gfid_in_use_by_another_file_is_refused(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        e = await errno_of(top.mknod(child(Loc.root(), "g"), stat.S_IFREG | 0o644, 0, 0,
                                     req(f.gfid)))
        assert e == errno.EEXIST
        assert not (brick / "g").exists()
        assert await errno_of(top.mkdir(child(Loc.root(), "f"), 0o755, 0, req())) == \
            errno.EEXIST


async def test_modes_are_exact_whatever_the_process_umask(brick, posix_graph):
    old = os.umask(0o077)
    try:
        async with posix_graph(brick) as top:
            d = await top.mkdir(child(Loc.root(), "d"), 0o2775, 0o002, req())
            assert stat.S_IMODE(d.iatt.mode) == 0o2775
            fd = Fd()
            c = await top.create(child(Loc.root(), "f"), os.O_CREAT | os.O_RDWR, 0o4666, 0o022,
                                 fd, req())
            await top.release(fd, None)
            assert stat.S_IMODE(c.iatt.mode) == 0o4644
            n = await top.mknod(child(Loc.root(), "p"), stat.S_IFIFO | 0o666, 0, 0o027, req())
            assert stat.S_IMODE(n.iatt.mode) == 0o640
            assert stat.S_IMODE(os.stat(brick / "d").st_mode) == 0o2775
            assert stat.S_IMODE(os.stat(brick / "f").st_mode) == 0o4644
            assert stat.S_IMODE(os.lstat(brick / "p").st_mode) == 0o640
    finally:
        os.umask(old)


async def test_ownership_follows_caller_and_setgid_parent(brick, posix_graph):
    async with posix_graph(brick) as top:
        with as_caller(uid=1001, gid=2002):
            d = await mkdir(top, Loc.root(), "d")
            f = await mkfile(top, Loc.root(), "f")
            await top.symlink("x", child(Loc.root(), "l"), 0, req())
        assert (os.stat(brick / "d").st_uid, os.stat(brick / "d").st_gid) == (1001, 2002)
        assert (os.stat(brick / "f").st_uid, os.stat(brick / "f").st_gid) == (1001, 2002)
        assert (os.lstat(brick / "l").st_uid, os.lstat(brick / "l").st_gid) == (1001, 2002)
        os.chown(brick / "d", 1001, 3003)
        os.chmod(brick / "d", 0o2775)
        with as_caller(uid=1005, gid=2005):
            sub = await top.mkdir(child(d, "sub"), 0o755, 0, req())
            g = await mkfile(top, d, "g")
        assert (sub.iatt.uid, sub.iatt.gid) == (1005, 3003)
        assert sub.iatt.mode & stat.S_ISGID
        st_g = os.stat(brick / "d" / "g")
        assert (st_g.st_uid, st_g.st_gid) == (1005, 3003) and g.gfid == disk_gfid(brick / "d/g")
        assert f.gfid


async def test_create_existing_and_exclusive(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"keep")
        fd = Fd()
        e = await errno_of(top.create(child(Loc.root(), "f"), os.O_CREAT | os.O_EXCL | os.O_RDWR,
                                      0o644, 0, fd, req()))
        assert e == errno.EEXIST
        c = await top.create(child(Loc.root(), "f"), os.O_CREAT | os.O_RDWR, 0o600, 0, fd, req())
        assert c.iatt.gfid == f.gfid and fd.gfid == f.gfid
        assert stat.S_IMODE(os.stat(brick / "f").st_mode) == 0o644   # not re-moded
        assert bytes((await top.readv(fd, 10, 0, 0, None)).data) == b"keep"
        await top.release(fd, None)
        await top.mkdir(child(Loc.root(), "d"), 0o755, 0, req())
        assert await errno_of(top.create(child(Loc.root(), "d"), os.O_CREAT | os.O_RDWR,
                                         0o644, 0, Fd(), req())) == errno.EISDIR


async def test_times_move_only_when_something_changed(brick, posix_graph):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        f = await mkfile(top, d, "f", b"data")
        old = Iatt(atime=1000, mtime=1000)
        both = fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME
        await top.setattr(Loc(gfid=d.gfid), old, both, None)
        await top.setattr(Loc(gfid=f.gfid), old, both, None)
        fd = Fd()
        c = await top.create(child(d, "f"), os.O_CREAT | os.O_RDWR, 0o644, 0, fd, req())
        await top.release(fd, None)
        assert c.postparent.mtime == 1000 and c.iatt.mtime == 1000   # opened, not created
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDWR | os.O_TRUNC, fd, None)
        st = (await top.fstat(fd, None)).iatt
        await top.release(fd, None)
        assert st.size == 0 and st.mtime > 1000
        assert (await top.stat(Loc(gfid=d.gfid), None)).iatt.mtime == 1000


async def test_new_entries_store_xattrs_from_xdata(brick, posix_graph):
    async with posix_graph(brick) as top:
        linkto = b"vol-client-2\0"
        await top.mknod(child(Loc.root(), "lk"), stat.S_IFREG | stat.S_ISVTX, 0, 0,
                        {**req(), "trusted.glusterfs.dht.linkto": linkto,
                         "user.note": "text", "glusterfs-internal-fop": 1,
                         "not-an-xattr": b"x"})
        assert os.getxattr(brick / "lk", "trusted.glusterfs.dht.linkto") == linkto
        assert os.getxattr(brick / "lk", "user.note") == b"text"
        assert "not-an-xattr" not in os.listxattr(brick / "lk")
        assert stat.S_IMODE(os.stat(brick / "lk").st_mode) == stat.S_ISVTX


async def test_internal_mknod_links_an_existing_gfid(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"data")
        r = await top.mknod(child(Loc.root(), "linkto"), stat.S_IFREG | stat.S_ISVTX, 0, 0,
                            {**req(f.gfid), "glusterfs-internal-fop": 1})
        assert r.iatt.gfid == f.gfid and r.iatt.nlink == 2
        assert os.stat(brick / "linkto").st_ino == os.stat(brick / "f").st_ino


async def test_mknod_devices_and_open_refuses_them(brick, posix_graph):
    async with posix_graph(brick) as top:
        rdev = os.makedev(1, 3)
        n = await top.mknod(child(Loc.root(), "null"), stat.S_IFCHR | 0o600, rdev, 0, req())
        # the iatt carries GlusterFS's ia_makedev encoding, as on the wire
        assert stat.S_ISCHR(n.iatt.mode) and n.iatt.rdev == (1 << 32) | 3
        assert await errno_of(top.open(Loc(gfid=n.iatt.gfid), os.O_RDWR, Fd(), None)) == \
            errno.EINVAL
        sock = await top.mknod(child(Loc.root(), "sock"), stat.S_IFSOCK | 0o600, 0, 0, req())
        assert stat.S_ISSOCK(sock.iatt.mode)


async def test_names_and_parents_are_checked(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        for bad in ("a/b", "a\0b", ".", "..", "", "x" * 256):
            e = await errno_of(top.mkdir(child(Loc.root(), bad), 0o755, 0, req()))
            assert e in (errno.EINVAL, errno.ENAMETOOLONG), bad
        assert await errno_of(top.mkdir(Loc(pargfid=f.gfid, name="x"), 0o755, 0, req())) == \
            errno.ENOTDIR
        assert await errno_of(top.mkdir(Loc(pargfid=GFID.random(), name="x"), 0o755, 0,
                                        req())) == errno.ENOENT
        assert await errno_of(top.mkdir(child(Loc.root(), "f"), 0o755, 0, req())) == errno.EEXIST
        assert sorted(os.listdir(brick)) == [".glusterfs", "f"]


# -- unlink, rmdir ------------------------------------------------------------------

async def test_unlink_removes_name_handle_and_gfid2path(brick, posix_graph):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        f = await mkfile(top, d, "f", b"x")
        await top.link(Loc(gfid=f.gfid), child(Loc.root(), "hl"), None)
        r = await top.unlink(child(d, "f"), 0, {"get-link-count": 1, "gf_request_link_count": 1})
        assert r.preparent.gfid == r.postparent.gfid == d.gfid
        assert r.xdata["get-link-count"] == 2 and r.xdata["gf_response_link_count"] == 2
        assert os.path.exists(handle(brick, f.gfid))
        keys = [k for k in os.listxattr(brick / "hl") if k.startswith("trusted.gfid2path.")]
        assert keys == [gfid2path_key(ROOT_GFID, "hl")]
        await top.unlink(child(Loc.root(), "hl"), 0, None)
        assert not os.path.lexists(handle(brick, f.gfid))
        assert await errno_of(top.unlink(child(d, "f"), 0, None)) == errno.ENOENT
        assert await errno_of(top.unlink(child(Loc.root(), "d"), 0, None)) == errno.EISDIR


async def test_unlink_dht_guards(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDONLY, fd, None)
        e = await errno_of(top.unlink(child(Loc.root(), "f"), 0, {"dont-unlink-for-open-fd": 1}))
        assert e == errno.EBUSY
        e = await errno_of(top.unlink(child(Loc.root(), "f"), 0,
                                      {"unlink-only-if-dht-linkto-file": 1}))
        assert e == errno.EBUSY
        await top.release(fd, None)
        await top.mknod(child(Loc.root(), "lt"), stat.S_IFREG | stat.S_ISVTX, 0, 0,
                        {**req(), "trusted.glusterfs.dht.linkto": b"v-client-1\0"})
        await top.unlink(child(Loc.root(), "lt"), 0, {"unlink-only-if-dht-linkto-file": 1})
        assert not (brick / "lt").exists()


async def test_unlinked_open_file_stays_readable(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"still here")
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDWR, fd, None)
        await top.unlink(child(Loc.root(), "f"), 0, None)
        parked = brick / ".glusterfs" / "unlink" / str(f.gfid)
        assert parked.exists() and not os.path.lexists(handle(brick, f.gfid))
        assert bytes((await top.readv(fd, 100, 0, 0, None)).data) == b"still here"
        await top.writev(fd, b"!", 10, 0, None)
        # an anonymous fd finds it in .glusterfs/unlink, as GlusterFS's does
        anon = Fd(gfid=f.gfid, flags=os.O_RDONLY)
        assert bytes((await top.readv(anon, 100, 0, 0, None)).data) == b"still here!"
        await top.release(anon, None)
        assert (await top.lookup(Loc(gfid=f.gfid), {"unlinked-lookup": 1})).iatt.nlink == 0
        await top.release(fd, None)
        assert not parked.exists()


async def test_rmdir(brick, posix_graph):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        await mkfile(top, d, "f")
        assert await errno_of(top.rmdir(child(Loc.root(), "d"), 0, None)) == errno.ENOTEMPTY
        f2 = await mkfile(top, Loc.root(), "f2")
        assert await errno_of(top.rmdir(child(Loc.root(), "f2"), 0, None)) == errno.ENOTDIR
        await top.unlink(child(d, "f"), 0, None)
        r = await top.rmdir(child(Loc.root(), "d"), 0, None)
        assert r.postparent.gfid == ROOT_GFID
        assert not (brick / "d").exists() and not os.path.lexists(handle(brick, d.gfid))
        assert await errno_of(top.stat(Loc(gfid=d.gfid), None)) == errno.ENOENT
        assert f2.gfid


async def test_rmdir_with_flags_moves_tree_to_landfill_for_the_janitor(brick, posix_graph):
    async with posix_graph(brick, janitor_sleep_duration="60") as top:
        d = await mkdir(top, Loc.root(), "d")
        sub = await mkdir(top, d, "sub")
        f = await mkfile(top, sub, "f", b"bye")
        await top.rmdir(child(Loc.root(), "d"), 1, None)
        assert not (brick / "d").exists()
        assert not os.path.lexists(handle(brick, d.gfid))
        with trio.fail_after(5):
            while os.listdir(brick / ".glusterfs" / "landfill"):
                await trio.sleep(0.01)
        assert not os.path.lexists(handle(brick, sub.gfid))
        assert not os.path.lexists(handle(brick, f.gfid))


# -- rename, link -------------------------------------------------------------------

async def test_rename_file_over_file_and_across_directories(brick, posix_graph):
    async with posix_graph(brick) as top:
        a = await mkdir(top, Loc.root(), "a")
        b = await mkdir(top, Loc.root(), "b")
        f = await mkfile(top, a, "f", b"moved")
        v = await mkfile(top, b, "v", b"victim")
        r = await top.rename(child(a, "f", f.gfid), child(b, "v", v.gfid),
                             {"gf_request_link_count": 1})
        assert r.iatt.gfid == f.gfid
        assert (r.preoldparent.gfid, r.postoldparent.gfid) == (a.gfid, a.gfid)
        assert (r.prenewparent.gfid, r.postnewparent.gfid) == (b.gfid, b.gfid)
        assert r.xdata["gf_response_link_count"] == 1
        assert (brick / "b" / "v").read_bytes() == b"moved"
        assert not os.path.lexists(handle(brick, v.gfid))
        assert os.stat(handle(brick, f.gfid)).st_ino == os.stat(brick / "b" / "v").st_ino
        keys = [k for k in os.listxattr(brick / "b/v") if k.startswith("trusted.gfid2path")]
        assert keys == [gfid2path_key(b.gfid, "v")]
        assert await errno_of(top.rename(child(a, "f"), child(b, "x"), None)) == errno.ENOENT


async def test_rename_over_open_victim_keeps_it_readable(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"new")
        v = await mkfile(top, Loc.root(), "v", b"old")
        fd = Fd()
        await top.open(Loc(gfid=v.gfid), os.O_RDONLY, fd, None)
        await top.rename(child(Loc.root(), "f"), child(Loc.root(), "v"), None)
        assert bytes((await top.readv(fd, 10, 0, 0, None)).data) == b"old"
        await top.release(fd, None)
        assert os.listdir(brick / ".glusterfs" / "unlink") == []
        assert f.gfid


async def test_rename_directory_updates_its_handle(brick, posix_graph):
    async with posix_graph(brick) as top:
        a = await mkdir(top, Loc.root(), "a")
        d = await mkdir(top, a, "d")
        f = await mkfile(top, d, "f", b"inside")
        assert (await top.stat(Loc(gfid=d.gfid), None)).iatt.gfid == d.gfid   # cached now
        await top.rename(child(a, "d"), child(Loc.root(), "e"), None)
        assert os.readlink(handle(brick, d.gfid)) == f"../../00/00/{ROOT_GFID}/e"
        e = await top.lookup(child(Loc.root(), "e"), None)
        assert e.iatt.gfid == d.gfid
        assert (await top.lookup(Loc(pargfid=d.gfid, name="f"), None)).iatt.gfid == f.gfid
        # a fresh graph resolves the new handle from scratch
    async with posix_graph(brick) as top:
        r = await top.lookup(Loc(pargfid=d.gfid, name="f"), None)
        assert r.iatt.gfid == f.gfid
        assert await read_all(top, Loc(gfid=f.gfid)) == b"inside"


async def test_rename_directory_over_directory(brick, posix_graph):
    async with posix_graph(brick) as top:
        a = await mkdir(top, Loc.root(), "a")
        b = await mkdir(top, Loc.root(), "b")
        await mkfile(top, b, "x")
        assert await errno_of(top.rename(child(Loc.root(), "a"), child(Loc.root(), "b"),
                                         None)) == errno.ENOTEMPTY
        c = await mkdir(top, Loc.root(), "c")
        assert await errno_of(top.rename(child(Loc.root(), "a"),
                                         child(Loc.root(), "c", GFID.random()),
                                         None)) == errno.EEXIST
        await top.rename(child(Loc.root(), "a"), child(Loc.root(), "c", c.gfid), None)
        assert disk_gfid(brick / "c") == a.gfid
        assert not os.path.lexists(handle(brick, c.gfid))
        assert await errno_of(top.rename(child(Loc.root(), "c"), Loc(pargfid=a.gfid, name="in"),
                                         None)) == errno.EINVAL
        assert await errno_of(top.rename(child(Loc.root(), "b"),
                                         child(Loc.root(), ".glusterfs"), None)) == errno.EPERM


async def test_rename_to_another_name_of_the_same_inode_is_a_no_op(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        await top.link(Loc(gfid=f.gfid), child(Loc.root(), "g"), None)
        await top.rename(child(Loc.root(), "f"), child(Loc.root(), "g"), None)
        assert (brick / "f").exists() and (brick / "g").exists()
        assert os.path.exists(handle(brick, f.gfid))


async def test_link(brick, posix_graph):
    async with posix_graph(brick, max_hardlinks="3") as top:
        d = await mkdir(top, Loc.root(), "d")
        f = await mkfile(top, Loc.root(), "f", b"x")
        r = await top.link(Loc(gfid=f.gfid), child(d, "l1"), None)
        assert r.iatt.gfid == f.gfid and r.iatt.nlink == 2
        assert r.preparent.gfid == r.postparent.gfid == d.gfid
        assert os.getxattr(brick / "d/l1", gfid2path_key(d.gfid, "l1")) == f"{d.gfid}/l1".encode()
        assert await errno_of(top.link(Loc(gfid=f.gfid), child(d, "l1"), None)) == errno.EEXIST
        # the kernel's order: a taken name before a directory source
        assert await errno_of(top.link(Loc(gfid=d.gfid), child(d, "l1"), None)) == errno.EEXIST
        assert await errno_of(top.link(Loc(gfid=f.gfid), Loc(pargfid=GFID.random(), name="x"),
                                       None)) == errno.ENOENT
        await top.link(Loc(gfid=f.gfid), child(d, "l2"), None)
        assert await errno_of(top.link(Loc(gfid=f.gfid), child(d, "l3"), None)) == errno.EMLINK
        assert await errno_of(top.link(Loc(gfid=d.gfid), child(Loc.root(), "dl"), None)) == \
            errno.EPERM
        s = await top.symlink("/abs", child(Loc.root(), "s"), 0, req())
        ls = await top.link(Loc(gfid=s.iatt.gfid), child(d, "ls"), None)
        assert ls.iatt.is_link and os.readlink(brick / "d/ls") == "/abs"


# -- inode fops --------------------------------------------------------------------

async def test_stat_fstat_access_readlink(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"12345", 0o640)
        st = (await top.stat(Loc(gfid=f.gfid), None)).iatt
        disk = os.stat(brick / "f")
        assert (st.size, st.mode, st.uid, st.gid, st.nlink) == \
            (5, disk.st_mode, disk.st_uid, disk.st_gid, 1)
        assert st.ino == fops.gfid_to_ino(f.gfid) and st.gfid == f.gfid
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDONLY, fd, None)
        assert (await top.fstat(fd, None)).iatt.size == 5
        await top.release(fd, None)
        await top.access(Loc(gfid=f.gfid), os.R_OK | os.W_OK, None)
        s = await top.symlink("../some/where", child(Loc.root(), "s"), 0, req())
        r = await top.readlink(Loc(gfid=s.iatt.gfid), 4096, None)
        assert r.path == "../some/where" and r.iatt.gfid == s.iatt.gfid
        assert (await top.readlink(Loc(gfid=s.iatt.gfid), 4, None)).path == "../s"
        assert await errno_of(top.readlink(Loc(gfid=f.gfid), 100, None)) == errno.EINVAL


async def test_truncate_and_ftruncate(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"0123456789")
        r = await top.truncate(Loc(gfid=f.gfid), 4, None)
        assert (r.prebuf.size, r.postbuf.size) == (10, 4)
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDWR, fd, None)
        r = await top.ftruncate(fd, 100, None)
        assert (r.prebuf.size, r.postbuf.size) == (4, 100)
        await top.release(fd, None)
        assert (brick / "f").read_bytes() == b"0123" + bytes(96)
        d = await mkdir(top, Loc.root(), "d")
        assert await errno_of(top.truncate(Loc(gfid=d.gfid), 0, None)) == errno.EISDIR


async def test_setattr_every_valid_bit(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"abcdef")
        loc = Loc(gfid=f.gfid)
        want = Iatt(mode=0o4750, uid=123, gid=456, size=3, atime=1_000_000, atime_nsec=5,
                    mtime=2_000_000, mtime_nsec=7)
        valid = (fops.SET_ATTR_MODE | fops.SET_ATTR_UID | fops.SET_ATTR_GID |
                 fops.SET_ATTR_SIZE | fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME)
        r = await top.setattr(loc, want, valid, None)
        assert r.prebuf.size == 6
        post = r.postbuf
        assert (stat.S_IMODE(post.mode), post.uid, post.gid, post.size) == (0o4750, 123, 456, 3)
        assert (post.atime, post.atime_nsec, post.mtime, post.mtime_nsec) == \
            (1_000_000, 5, 2_000_000, 7)
        disk = os.stat(brick / "f")
        assert (disk.st_atime_ns, disk.st_mtime_ns) == (1_000_000 * 10**9 + 5,
                                                         2_000_000 * 10**9 + 7)
        before = time.time_ns()
        r = await top.setattr(loc, Iatt(), fops.SET_ATTR_ATIME_NOW | fops.SET_ATTR_MTIME_NOW,
                              None)
        assert r.postbuf.mtime_ns >= before - 10**9 and r.postbuf.atime_ns >= before - 10**9
        only_m = await top.setattr(loc, Iatt(mtime=42), fops.SET_ATTR_MTIME, None)
        assert only_m.postbuf.mtime == 42 and only_m.postbuf.atime_ns == r.postbuf.atime_ns
        nothing = await top.setattr(loc, Iatt(), 0, None)    # GlusterFS's lchown(-1, -1)
        assert (nothing.postbuf.uid, nothing.postbuf.size) == (123, 3)
        assert stat.S_IMODE(nothing.postbuf.mode) & 0o777 == 0o750
        future = (time.time_ns() // 10**9 + 3600) * 10**9
        c = await top.setattr(loc, Iatt(ctime=future // 10**9), fops.SET_ATTR_CTIME, None)
        assert c.postbuf.ctime_ns == future            # kept in trusted.glusterfs.mdata
        fd = Fd()
        await top.open(loc, os.O_RDWR, fd, None)
        r = await top.fsetattr(fd, Iatt(mode=0o600, size=1, mtime=99),
                               fops.SET_ATTR_MODE | fops.SET_ATTR_SIZE | fops.SET_ATTR_MTIME,
                               None)
        assert (stat.S_IMODE(r.postbuf.mode), r.postbuf.size, r.postbuf.mtime) == (0o600, 1, 99)
        await top.release(fd, None)


async def test_statfs(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        sv = (await top.statfs(Loc.root(), None)).statvfs
        real = os.statvfs(brick)
        assert (sv.bsize, sv.frsize, sv.blocks, sv.namemax) == \
            (real.f_bsize, real.f_frsize, real.f_blocks, real.f_namemax)
        assert (await top.statfs(Loc(gfid=f.gfid), None)).statvfs.blocks == real.f_blocks
    async with posix_graph(brick, shared_brick_count="4") as top:
        assert (await top.statfs(Loc.root(), None)).statvfs.blocks == real.f_blocks // 4
    async with posix_graph(brick, export_statfs_size="off") as top:
        sv = (await top.statfs(Loc.root(), None)).statvfs
        assert (sv.blocks, sv.bfree, sv.files) == (0, 0, 0) and sv.bsize == real.f_bsize


# -- open, read, write ---------------------------------------------------------------

async def test_open_flags_append_trunc_and_symlinks(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"start")
        fd = Fd(flags=os.O_WRONLY | os.O_APPEND)
        await top.open(Loc(gfid=f.gfid), os.O_WRONLY | os.O_APPEND, fd, None)
        w = await top.writev(fd, b"+end", 0, 0, None)     # offset ignored: appended
        assert w.count == 4 and w.postbuf.size == 9
        await top.release(fd, None)
        assert (brick / "f").read_bytes() == b"start+end"
        fd = Fd()
        await top.open(Loc(gfid=f.gfid), os.O_RDWR | os.O_TRUNC, fd, None)
        assert (await top.fstat(fd, None)).iatt.size == 0
        await top.release(fd, None)
        s = await top.symlink("f", child(Loc.root(), "s"), 0, req())
        assert await errno_of(top.open(Loc(gfid=s.iatt.gfid), os.O_RDONLY, Fd(), None)) == \
            errno.ELOOP
        d = await mkdir(top, Loc.root(), "d")
        assert await errno_of(top.open(Loc(gfid=d.gfid), os.O_WRONLY, Fd(), None)) == \
            errno.EISDIR
        fifo = await top.mknod(child(Loc.root(), "p"), stat.S_IFIFO | 0o600, 0, 0, req())
        rfd = Fd()
        await top.open(Loc(gfid=fifo.iatt.gfid), os.O_RDONLY, rfd, None)  # does not block
        await top.release(rfd, None)


async def test_readv_writev_buffers(brick, posix_graph):
    async with posix_graph(brick) as top:
        fd = Fd()
        await top.create(child(Loc.root(), "f"), 0, 0o644, 0, fd, req())
        assert (await top.writev(fd, bytearray(b"ab"), 0, 0, None)).count == 2
        assert (await top.writev(fd, memoryview(b"xxcdxx")[2:4], 2, 0, None)).count == 2
        w = await top.writev(fd, [b"ef", memoryview(b"gh"), bytearray(b"ij")], 4, os.O_SYNC,
                             {"glusterfs.write-is-append": 1, "glusterfs.open-fd-count": 1})
        assert w.count == 6 and (w.prebuf.size, w.postbuf.size) == (4, 10)
        assert w.xdata["glusterfs.write-is-append"] == 1
        assert w.xdata["glusterfs.open-fd-count"] == 1
        r = await top.readv(fd, 100, 0, 0, None)
        assert bytes(r.data) == b"abcdefghij" and r.iatt.size == 10
        assert bytes((await top.readv(fd, 3, 8, 0, None)).data) == b"ij"
        assert bytes((await top.readv(fd, 3, 50, 0, None)).data) == b""
        assert await errno_of(top.readv(fd, 0, 0, 0, None)) == errno.EINVAL
        assert await errno_of(top.writev(fd, b"x", -1, 0, None)) == errno.EINVAL
        await top.release(fd, None)
        ro = Fd()
        await top.open(child(Loc.root(), "f"), os.O_RDONLY, ro, None)
        assert await errno_of(top.writev(ro, b"x", 0, 0, None)) == errno.EBADF
        await top.release(ro, None)


async def test_o_direct_option(brick, posix_graph):
    async with posix_graph(brick, o_direct="on") as top:
        fd = Fd()
        await top.create(child(Loc.root(), "f"), 0, 0o644, 0, fd, req())
        assert fd.ctx[top].odirect
        block = bytes(range(256)) * 16
        assert (await top.writev(fd, block, 0, 0, None)).count == 4096
        assert bytes((await top.readv(fd, 4096, 0, 0, None)).data) == block
        await top.zerofill(fd, 0, 4096, None)
        assert bytes((await top.readv(fd, 4096, 0, 0, None)).data) == bytes(4096)
        await top.release(fd, None)


async def test_anonymous_fds(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"anonymous")
        anon = Fd(gfid=f.gfid, flags=os.O_RDWR | os.O_TRUNC | os.O_CREAT)
        assert bytes((await top.readv(anon, 100, 0, 0, None)).data) == b"anonymous"  # no trunc
        await top.writev(anon, b"A", 0, 0, None)
        assert (await top.fstat(anon, None)).iatt.gfid == f.gfid
        await top.release(anon, None)
        assert (brick / "f").read_bytes() == b"Anonymous"
        d = await mkdir(top, Loc.root(), "d")
        danon = Fd(gfid=d.gfid, is_dir=True)
        names = {e.name for e in (await top.readdir(danon, 4096, 0, None)).entries}
        assert names == {".", ".."}
        assert await errno_of(top.readv(Fd(), 1, 0, 0, None)) == errno.EBADF
        assert await errno_of(top.readv(Fd(gfid=GFID.random()), 1, 0, 0, None)) == errno.ENOENT


async def test_dropped_fds_are_closed(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"x")
        before = len(os.listdir("/proc/self/fd"))
        for _ in range(20):
            fd = Fd(gfid=f.gfid)
            await top.readv(fd, 1, 0, 0, None)
        del fd
        gc.collect()
        assert len(os.listdir("/proc/self/fd")) <= before
        assert top.dump_state()["open-fds"] == 0


async def test_flush_fsync_fsyncdir(brick, posix_graph):
    async with posix_graph(brick) as top:
        fd = Fd()
        await top.create(child(Loc.root(), "f"), 0, 0o644, 0, fd, req())
        await top.writev(fd, b"durable", 0, 0, None)
        await top.flush(fd, None)
        r = await top.fsync(fd, 0, None)
        assert r.prebuf.size == r.postbuf.size == 7
        await top.fsync(fd, 1, None)
        await top.release(fd, None)
        dfd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), dfd, None)
        await top.fsyncdir(dfd, 0, None)
        await top.releasedir(dfd, None)


# -- directories ---------------------------------------------------------------------

async def test_readdir_cookies_resume_anywhere(brick, posix_graph):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        names = {f"file-{i:03d}-{'x' * (i % 40)}" for i in range(300)}
        for name in names:
            await top.mknod(child(d, name), stat.S_IFREG | 0o644, 0, 0, req())
        fd = Fd(gfid=d.gfid, is_dir=True)
        await top.opendir(Loc(gfid=d.gfid), fd, None)
        seen, offset, calls = [], 0, 0
        while True:
            ents = (await top.readdir(fd, 4096, offset, None)).entries
            if not ents:
                break
            calls += 1
            cost = sum(posix_mod.DIRENT_COST + len(os.fsencode(e.name)) + 1 for e in ents)
            assert cost <= 4096 or len(ents) == 1
            seen.extend(e.name for e in ents)
            offset = ents[-1].off
        assert sorted(seen) == sorted(names | {".", ".."}) and calls > 10
        # any entry's cookie resumes the listing, from another (anonymous) fd too
        first = (await top.readdir(fd, 1 << 20, 0, None)).entries
        cut = first[100]
        rest = (await top.readdir(Fd(gfid=d.gfid, is_dir=True), 1 << 20, cut.off, None)).entries
        assert [e.name for e in rest] == [e.name for e in first[101:]]
        await top.releasedir(fd, None)


async def test_readdir_hides_glusterfs_and_readdirp_fills_iatt(brick, posix_graph):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        f = await mkfile(top, Loc.root(), "f", b"xyz")
        s = await top.symlink("/etc", child(Loc.root(), "s"), 0, req())
        await top.setxattr(Loc(gfid=f.gfid), {"trusted.glusterfs.dht.linkto": b"c-1\0"}, 0, None)
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), fd, None)
        plain = (await top.readdir(fd, 1 << 16, 0, None)).entries
        assert {e.name for e in plain} == {".", "..", "d", "f", "s"}
        types = {e.name: e.type for e in plain}
        assert (types["d"], types["f"], types["s"]) == (4, 8, 10)
        plus = {e.name: e for e in (await top.readdirp(
            fd, 1 << 16, 0, {"trusted.glusterfs.dht.linkto": 0})).entries}
        assert plus["d"].iatt.gfid == d.gfid and plus["d"].iatt.is_dir
        assert plus["f"].iatt.gfid == f.gfid and plus["f"].iatt.size == 3
        assert plus["f"].iatt.nlink == 1 and plus["f"].ino == fops.gfid_to_ino(f.gfid)
        assert plus["s"].iatt.gfid == s.iatt.gfid and plus["s"].iatt.is_link
        assert plus["f"].xdata == {"trusted.glusterfs.dht.linkto": b"c-1\0"}
        assert plus["."].iatt.gfid == ROOT_GFID and plus[".."].iatt.gfid == ROOT_GFID
        nodirs = (await top.readdirp(fd, 1 << 16, 0, {"readdir-filter-directories": 1})).entries
        assert {e.name for e in nodirs} == {"f", "s"}
        await top.releasedir(fd, None)
        sub = Fd(gfid=d.gfid, is_dir=True)
        await top.opendir(Loc(gfid=d.gfid), sub, None)
        dots = {e.name: e for e in (await top.readdirp(sub, 4096, 0, None)).entries}
        assert dots[".."].iatt.gfid == ROOT_GFID and dots["."].iatt.gfid == d.gfid
        await top.releasedir(sub, None)
        assert await errno_of(top.opendir(Loc(gfid=f.gfid), Fd(), None)) == errno.ENOTDIR
        assert await errno_of(top.readdir(Fd(gfid=f.gfid), 4096, 0, None)) == errno.ENOTDIR


async def test_directory_cache_survives_renames_and_forgets_removals(brick, posix_graph):
    async with posix_graph(brick) as top:
        dirs = [await mkdir(top, Loc.root(), f"d{i}") for i in range(DIR_CACHE_MAX + 50)]
        for d in dirs:
            await top.stat(Loc(gfid=d.gfid), None)
        await top.stat(Loc.root(), None)
        assert top.dump_state()["cached-directories"] <= DIR_CACHE_MAX + 1
        last = dirs[-1]
        await top.rmdir(child(Loc.root(), "d0"), 0, None)
        assert await errno_of(top.lookup(Loc(pargfid=dirs[0].gfid, name="x"), None)) == \
            errno.ENOENT
        f = await mkfile(top, last, "f")
        await top.rename(child(Loc.root(), last.name), child(Loc.root(), "moved"), None)
        assert (await top.lookup(Loc(pargfid=last.gfid, name="f"), None)).iatt.gfid == f.gfid


# -- xattrs ----------------------------------------------------------------------------

async def test_setxattr_getxattr_listxattr_removexattr(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        loc = Loc(gfid=f.gfid)
        r = await top.setxattr(loc, {"user.a": b"1", "user.b": "two"}, 0, None)
        assert r.xdata["virt-gf-prestat"].gfid == f.gfid
        assert (await top.getxattr(loc, "user.a", None)).dict == {"user.a": b"1"}
        assert os.getxattr(brick / "f", "user.b") == b"two"
        assert await errno_of(top.setxattr(loc, {"user.a": b"x"}, os.XATTR_CREATE, None)) == \
            errno.EEXIST
        assert await errno_of(top.setxattr(loc, {"user.c": b"x"}, os.XATTR_REPLACE, None)) == \
            errno.ENODATA
        await top.setxattr(loc, {"user.a": b"3"}, os.XATTR_REPLACE, None)
        everything = (await top.getxattr(loc, None, None)).dict
        assert everything == {"user.a": b"3", "user.b": b"two"}
        assert (await top.getxattr(loc, "", None)).dict == everything
        assert await errno_of(top.getxattr(loc, "user.none", None)) == errno.ENODATA
        await top.removexattr(loc, "user.a", None)
        assert await errno_of(top.removexattr(loc, "user.a", None)) == errno.ENODATA
        await top.setxattr(loc, {"user.x": b"1", "user.y": b"2"}, 0, None)
        await top.removexattr(loc, "", {"user.x": 0, "user.y": 0, "user.gone": 0})
        assert (await top.getxattr(loc, None, None)).dict == {"user.b": b"two"}
        fd = Fd()
        await top.open(loc, os.O_RDWR, fd, None)
        await top.fsetxattr(fd, {"user.fd": b"via fd"}, 0, {"trusted.glusterfs.durable-op": 1})
        assert (await top.fgetxattr(fd, "user.fd", None)).dict == {"user.fd": b"via fd"}
        assert set((await top.fgetxattr(fd, None, None)).dict) == {"user.b", "user.fd"}
        await top.fremovexattr(fd, "user.fd", None)
        assert await errno_of(top.fgetxattr(fd, "user.fd", None)) == errno.ENODATA
        await top.release(fd, None)
        d = await mkdir(top, Loc.root(), "d")
        await top.setxattr(Loc(gfid=d.gfid), {"trusted.glusterfs.dht": bytes(16)}, 0, None)
        assert os.getxattr(brick / "d", "trusted.glusterfs.dht") == bytes(16)


async def test_internal_xattrs_are_protected(brick, posix_graph):
    vid = uuid.uuid4()
    async with posix_graph(brick, volume_id=vid) as top:
        f = await mkfile(top, Loc.root(), "f")
        loc = Loc(gfid=f.gfid)
        # trusted.gfid and volume-id are dropped silently, as GlusterFS does
        await top.setxattr(loc, {GFID_KEY: GFID.random(), "user.ok": b"1"}, 0, None)
        assert disk_gfid(brick / "f") == f.gfid and os.getxattr(brick / "f", "user.ok") == b"1"
        await top.setxattr(Loc.root(), {"trusted.glusterfs.volume-id": uuid.uuid4().bytes},
                           0, None)
        assert os.getxattr(brick, "trusted.glusterfs.volume-id") == vid.bytes
        for key in (GFID_KEY, "trusted.glusterfs.volume-id"):
            assert await errno_of(top.removexattr(Loc.root(), key, None)) == errno.EPERM
            assert await errno_of(top.getxattr(Loc.root(), key, None)) == errno.ENODATA
        assert await errno_of(top.removexattr(loc, "", {GFID_KEY: 0})) == errno.EPERM
        assert await errno_of(top.setxattr(loc, {"trusted.glusterfs.pathinfo": b"x"}, 0,
                                           None)) == errno.EACCES
        key = gfid2path_key(ROOT_GFID, "f")
        assert await errno_of(top.setxattr(loc, {key: b"x"}, 0, None)) == errno.ENOTSUP
        assert await errno_of(top.getxattr(loc, key, None)) == errno.ENODATA
        assert await errno_of(top.removexattr(loc, key, None)) == errno.ENODATA
        assert await errno_of(top.getxattr(loc, MDATA_KEY, None)) == errno.ENODATA
        with as_caller(pid=-6):          # internal clients (self-heal) see mdata
            assert len((await top.getxattr(loc, MDATA_KEY, None)).dict[MDATA_KEY]) == 57
        listed = (await top.getxattr(loc, None, None)).dict
        assert listed == {"user.ok": b"1"}
        assert set((await top.getxattr(Loc.root(), None, None)).dict) == set()


async def test_sync_times_only_for_gsyncd(brick, posix_graph):
    """geo-replication's stime: set by anyone with access, read back by
    gsyncd's pid only (GlusterFS's marker), never listed."""
    key = f"trusted.glusterfs.{uuid.uuid4()}.{uuid.uuid4()}.0.stime"
    async with posix_graph(brick) as top:
        await top.setxattr(Loc.root(), {key: b"\0" * 8}, 0, None)
        assert await errno_of(top.getxattr(Loc.root(), key, None)) == errno.ENODATA
        with as_caller(pid=-6):          # another internal client: no
            assert await errno_of(top.getxattr(Loc.root(), key, None)) == errno.ENODATA
        with as_caller(pid=-1):          # GF_CLIENT_PID_GSYNCD
            assert (await top.getxattr(Loc.root(), key, None)).dict == {key: b"\0" * 8}
            assert key not in (await top.getxattr(Loc.root(), None, None)).dict


async def test_virtual_xattrs(brick, posix_graph):
    async with posix_graph(brick, hostname="brickhost",
                           glusterd_uuid="11111111-2222-3333-4444-555555555555") as top:
        d = await mkdir(top, Loc.root(), "Dir")
        f = await mkfile(top, d, "f")
        await top.link(Loc(gfid=f.gfid), child(Loc.root(), "second"), None)
        floc = Loc(gfid=f.gfid)
        assert (await top.getxattr(floc, "glusterfs.gfid.string", None)).dict == \
            {"glusterfs.gfid.string": str(f.gfid)}
        assert (await top.getxattr(floc, "glusterfs.gfid", None)).dict["glusterfs.gfid"] == \
            bytes(f.gfid)
        pinfo = (await top.getxattr(Loc(gfid=d.gfid), "trusted.glusterfs.pathinfo",
                                    None)).dict["trusted.glusterfs.pathinfo"]
        assert pinfo == f"<POSIX({brick}):brickhost:{brick}/Dir>"
        assert (await top.getxattr(floc, "trusted.glusterfs.node-uuid", None)).dict == \
            {"trusted.glusterfs.node-uuid": "11111111-2222-3333-4444-555555555555"}
        real = await top.getxattr(Loc.root(), "glusterfs.get_real_filename:dIR", None)
        assert real.dict == {"glusterfs.get_real_filename:dIR": "Dir"}
        assert await errno_of(top.getxattr(Loc.root(), "glusterfs.get_real_filename:.GLUSTERFS",
                                           None)) == errno.ENODATA
        paths = (await top.getxattr(floc, "glusterfs.gfidtopath", None)).dict[
            "glusterfs.gfidtopath"]
        assert sorted(paths.split(":")) == ["/Dir/f", "/second"]
        assert (await top.getxattr(Loc(gfid=d.gfid), "glusterfs.gfidtopath", None)).dict == \
            {"glusterfs.gfidtopath": "/Dir"}
        fd = Fd()
        await top.open(floc, os.O_RDONLY, fd, None)
        assert (await top.getxattr(floc, "glusterfs.open-fd-count", None)).dict == \
            {"glusterfs.open-fd-count": 1}
        await top.release(fd, None)


def test_xattrop_arithmetic_matches_glusterfs():
    add = combine(XattropType.ADD_ARRAY, struct.pack(">3i", 1, -1, 0x7fffffff),
                  struct.pack(">3i", 2, 1, 1), 12)
    assert struct.unpack(">3i", add) == (3, 0, -0x80000000)          # wraps like int32
    add64 = combine(XattropType.ADD_ARRAY64, struct.pack(">q", 2**40), struct.pack(">q", -1), 8)
    assert struct.unpack(">q", add64) == (2**40 - 1,)
    dflt = combine(XattropType.ADD_ARRAY_WITH_DEFAULT, struct.pack(">2i", 0, 5),
                   struct.pack(">4i", 1, 1, 10, 10), 8)
    assert struct.unpack(">2i", dflt) == (11, 6)
    assert combine(XattropType.OR_ARRAY, b"\x0f\x00", b"\xf0\x01", 2) == b"\xff\x01"
    assert combine(XattropType.AND_ARRAY, b"\x0f\xff", b"\xf1\x01", 2) == b"\x01\x01"


@given(st.lists(st.lists(st.integers(-2**31, 2**31 - 1), min_size=3, max_size=3),
                min_size=1, max_size=20))
def test_xattrop_add_array_is_a_sum_of_int32(deltas):
    value = bytes(12)
    for delta in deltas:
        value = combine(XattropType.ADD_ARRAY, value, struct.pack(">3i", *delta), 12)
    want = [((sum(col) + 2**31) % 2**32) - 2**31 for col in zip(*deltas)]
    assert list(struct.unpack(">3i", value)) == want


async def test_xattrop_every_type(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        loc = Loc(gfid=f.gfid)
        key = "trusted.afr.vol-client-1"
        three = struct.pack(">3i", 0, 2, 0)
        r = await top.xattrop(loc, XattropType.ADD_ARRAY, {key: three, "trusted.afr.dirty":
                                                           bytes(12)}, None)
        assert r.dict == {key: three, "trusted.afr.dirty": bytes(12)}
        assert "trusted.afr.dirty" not in os.listxattr(brick / "f")   # zeros: nothing written
        r = await top.xattrop(loc, XattropType.ADD_ARRAY, {key: struct.pack(">3i", 0, -2, 1)},
                              None)
        assert r.dict[key] == struct.pack(">3i", 0, 0, 1) == os.getxattr(brick / "f", key)
        zero = await top.xattrop(loc, XattropType.ADD_ARRAY, {key: bytes(12)}, None)
        assert zero.dict[key] == struct.pack(">3i", 0, 0, 1)          # the stored value
        r = await top.xattrop(loc, XattropType.ADD_ARRAY64, {"trusted.q": struct.pack(">q", 7)},
                              None)
        assert r.dict == {"trusted.q": struct.pack(">q", 7)}
        r = await top.xattrop(loc, XattropType.GET_AND_SET, {"trusted.gs": b"new"}, None)
        assert r.dict == {}                                       # absent before: no key
        r = await top.xattrop(loc, XattropType.GET_AND_SET, {"trusted.gs": b"NEW"}, None)
        assert r.dict == {"trusted.gs": b"new"} and os.getxattr(brick / "f", "trusted.gs") == \
            b"NEW"
        r = await top.xattrop(loc, XattropType.ADD_ARRAY_WITH_DEFAULT,
                              {"trusted.d": struct.pack(">4i", 1, 1, 100, 100)}, None)
        assert r.dict == {"trusted.d": struct.pack(">2i", 101, 101)}
        r = await top.xattrop(loc, XattropType.ADD_ARRAY64_WITH_DEFAULT,
                              {"trusted.d64": struct.pack(">2q", 1, 9)}, None)
        assert r.dict == {"trusted.d64": struct.pack(">q", 10)}
        r = await top.xattrop(loc, XattropType.OR_ARRAY, {"trusted.bits": b"\x01\x02"}, None)
        r = await top.xattrop(loc, XattropType.OR_ARRAY, {"trusted.bits": b"\x10\x00"}, None)
        assert r.dict == {"trusted.bits": b"\x11\x02"}
        r = await top.xattrop(loc, XattropType.AND_ARRAY, {"trusted.bits": b"\x01\x03"}, None)
        assert r.dict == {"trusted.bits": b"\x01\x02"}
        assert await errno_of(top.xattrop(loc, XattropType.ADD_ARRAY, {key: b"\0\0\0\1"},
                                          None)) == errno.ERANGE
        assert await errno_of(top.xattrop(loc, 99, {key: three}, None)) == errno.EINVAL
        fd = Fd()
        await top.open(loc, os.O_RDWR, fd, None)
        r = await top.fxattrop(fd, XattropType.ADD_ARRAY, {key: struct.pack(">3i", 1, 0, 0)},
                               {key: 0})
        assert r.dict[key] == struct.pack(">3i", 1, 0, 1) and r.xdata[key] == r.dict[key]
        await top.release(fd, None)


# -- space, seek, checksums, copies -------------------------------------------------------

async def test_fallocate_discard_zerofill_seek(brick, posix_graph):
    async with posix_graph(brick) as top:
        fd = Fd()
        await top.create(child(Loc.root(), "f"), 0, 0o644, 0, fd, req())
        r = await top.fallocate(fd, 1, 0, 1 << 20, None)          # FALLOC_FL_KEEP_SIZE
        assert r.postbuf.size == 0 and r.postbuf.blocks >= (1 << 20) // 512
        r = await top.fallocate(fd, 0, 0, 64 << 10, None)
        assert r.postbuf.size == 64 << 10
        await top.writev(fd, b"\xff" * (64 << 10), 0, 0, None)
        before = (await top.fstat(fd, None)).iatt.blocks
        r = await top.discard(fd, 0, 32 << 10, None)
        assert r.postbuf.size == 64 << 10 and r.postbuf.blocks < before
        assert bytes((await top.readv(fd, 8, 0, 0, None)).data) == bytes(8)
        await top.zerofill(fd, 60 << 10, 8 << 10, None)
        assert (await top.fstat(fd, None)).iatt.size == 68 << 10
        data = bytes((await top.readv(fd, 16 << 10, 56 << 10, 0, None)).data)
        assert data == b"\xff" * (4 << 10) + bytes(8 << 10)
        assert (await top.seek(fd, 0, posix_mod.GF_SEEK_DATA, None)).offset == 32 << 10
        assert (await top.seek(fd, 0, posix_mod.GF_SEEK_HOLE, None)).offset == 0
        assert (await top.seek(fd, 0, os.SEEK_DATA, None)).offset == 32 << 10
        assert await errno_of(top.seek(fd, 1 << 30, posix_mod.GF_SEEK_DATA, None)) == errno.ENXIO
        assert await errno_of(top.seek(fd, 0, 7, None)) == errno.ENOTSUP
        await top.release(fd, None)


async def test_rchecksum_weak_and_strong(brick, posix_graph):
    payload = os.urandom(10000)
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", payload)
        fd = Fd(gfid=f.gfid)
        r = await top.rchecksum(fd, 100, 4096, {"check-zero-filled": 1})
        assert r.weak == zlib.adler32(payload[100:4196], 0)
        assert r.strong == hashlib.md5(payload[100:4196]).digest()
        assert r.xdata["buf-has-zeroes"] == 0
    async with posix_graph(brick, fips_mode_rchecksum="on") as top:
        r = await top.rchecksum(Fd(gfid=f.gfid), 0, 20000, None)
        assert r.strong == hashlib.sha256(payload).digest()
        assert r.xdata == {"fips-mode-rchecksum": 1}


async def test_copy_file_range_and_put(brick, posix_graph):
    async with posix_graph(brick) as top:
        src = await mkfile(top, Loc.root(), "src", b"0123456789")
        dst = await mkfile(top, Loc.root(), "dst", b"abc")
        r = await top.copy_file_range(Fd(gfid=src.gfid), 2, Fd(gfid=dst.gfid, flags=os.O_RDWR),
                                      1, 5, 0, None)
        assert r.count == 5 and r.prebuf_dst.size == 3 and r.postbuf_dst.size == 6
        assert r.iatt.gfid == src.gfid
        assert (brick / "dst").read_bytes() == b"a23456"
        g = GFID.random()
        p = await top.put(child(Loc.root(), "put"), 0o640, 0, os.O_CREAT | os.O_RDWR,
                          b"put data", 0, {"user.put": b"1"}, req(g))
        assert p.iatt.gfid == g and p.iatt.size == 8 and p.preparent.gfid == ROOT_GFID
        assert (brick / "put").read_bytes() == b"put data"
        assert os.getxattr(brick / "put", "user.put") == b"1"
        assert stat.S_IMODE(os.stat(brick / "put").st_mode) == 0o640
        assert top.dump_state()["open-fds"] == 0


# -- fops storage/posix leaves to others -------------------------------------------------

async def test_locks_leases_ipc_and_unserved_fops(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f")
        loc, fd = Loc(gfid=f.gfid), Fd(gfid=f.gfid)
        lock = fops.Flock(type=fops.LockType.WRLCK)
        assert await errno_of(top.lk(fd, fops.LockCmd.SETLK, lock, None)) == errno.ENOSYS
        assert await errno_of(top.inodelk("v", loc, fops.LockCmd.SETLK, lock, None)) == \
            errno.ENOSYS
        assert await errno_of(top.finodelk("v", fd, fops.LockCmd.SETLK, lock, None)) == \
            errno.ENOSYS
        assert await errno_of(top.entrylk("v", Loc.root(), "f", fops.EntrylkCmd.LOCK,
                                          fops.EntrylkType.WRLCK, None)) == errno.ENOSYS
        assert await errno_of(top.fentrylk("v", fd, "f", fops.EntrylkCmd.LOCK,
                                           fops.EntrylkType.WRLCK, None)) == errno.ENOSYS
        assert await errno_of(top.lease(loc, fops.Lease(), None)) == errno.ENOSYS
        assert await errno_of(top.ipc(1, None)) == errno.EOPNOTSUPP
        assert await errno_of(top.icreate(child(Loc.root(), "i"), 0o644, None)) == errno.ENOTSUP
        assert await errno_of(top.namelink(child(Loc.root(), "n"), None)) == errno.ENOTSUP
        assert await errno_of(top.getactivelk(loc, None)) == errno.ENOTSUP
        assert await errno_of(top.setactivelk(loc, [], None)) == errno.ENOTSUP


def test_every_catalogue_fop_is_served_here():
    assert set(overridden_fops(posix_mod.Posix)) == set(fops.FOP_NAMES)


# -- times: trusted.glusterfs.mdata --------------------------------------------------------

async def test_times_live_in_mdata(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"x")
        raw = os.getxattr(brick / "f", MDATA_KEY)
        version, flags, cs, cn, ms, mn, as_, an = struct.unpack(">BQqQqQqQ", raw)
        assert (version, flags) == (1, 0)
        st = (await top.stat(Loc(gfid=f.gfid), None)).iatt
        assert (st.ctime, st.ctime_nsec, st.mtime, st.mtime_nsec) == (cs, cn, ms, mn)
        # what GlusterFS stored wins over the backend's times
        os.setxattr(brick / "f", MDATA_KEY, struct.pack(">BQqQqQqQ", 1, 0, 2000000000, 1,
                                                        1900000000, 2, 1800000000, 3))
        st = (await top.stat(Loc(gfid=f.gfid), None)).iatt
        assert (st.ctime, st.mtime, st.atime) == (2000000000, 1900000000, 1800000000)
        fd = Fd(gfid=f.gfid, flags=os.O_RDWR)
        w = await top.writev(fd, b"y", 0, 0, None)
        assert w.prebuf.mtime == 1900000000 and w.postbuf.mtime == 2000000000 or \
            w.postbuf.mtime_ns >= time.time_ns() - 10**10
        assert w.postbuf.ctime == 2000000000                   # never moves back
        await top.release(fd, None)
    async with posix_graph(brick, ctime="off") as top:
        st = (await top.stat(Loc(gfid=f.gfid), None)).iatt
        assert st.mtime_ns == os.stat(brick / "f").st_mtime_ns


async def test_reads_see_every_change_of_the_stored_times(brick, posix_graph):
    """readv answers from a cache of the mdata xattr: a change from outside
    the brick process (ctime moves) and a store through the brick within
    the same clock tick (ctime may not move) both show in the next read."""
    def mdata(c, m, a):
        return struct.pack(">BQqQqQqQ", 1, 0, c, 0, m, 0, a, 0)
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"data")
        fd = Fd(gfid=f.gfid, flags=os.O_RDONLY)
        await top.open(Loc(gfid=f.gfid), os.O_RDONLY, fd, None)
        first = (await top.readv(fd, 4, 0, 0, None)).iatt
        assert (await top.readv(fd, 4, 0, 0, None)).iatt.mtime_ns == first.mtime_ns
        os.setxattr(brick / "f", MDATA_KEY, mdata(2000000000, 1900000000, 1800000000))
        seen = (await top.readv(fd, 4, 0, 0, None)).iatt
        assert (seen.ctime, seen.mtime, seen.atime) == (2000000000, 1900000000, 1800000000)
        mtime = random.randrange(1, 1800000000)
        await top.setattr(Loc(gfid=f.gfid), Iatt(mtime=mtime), fops.SET_ATTR_MTIME, None)
        assert (await top.readv(fd, 4, 0, 0, None)).iatt.mtime == mtime
        await top.release(fd, None)


def test_the_mdata_cache_trusts_ctime_only_for_changes_it_did_not_make(tmp_path):
    """A store through the brick may keep the inode's ctime (same clock
    tick): the cache must not answer with what it held before it."""
    path = tmp_path / "f"
    path.write_bytes(b"")
    fd = os.open(path, os.O_RDONLY)
    try:
        cache = MdataCache()
        xset(fd, MDATA_KEY, b"one", 0)
        st = os.fstat(fd)
        assert cache.get(fd, st) == b"one"
        os.setxattr(fd, MDATA_KEY, b"two")                  # from outside, ctime kept
        assert cache.get(fd, st) == b"one"                  # what ctime cannot show
        moved = types.SimpleNamespace(st_dev=st.st_dev, st_ino=st.st_ino,
                                      st_ctime_ns=st.st_ctime_ns + 1)
        assert cache.get(fd, moved) == b"two"               # a moved ctime re-reads
        assert cache.get(fd, st) == b"two"
        xset(fd, MDATA_KEY, b"three", 0)                    # through the brick
        assert cache.get(fd, st) == b"three"                # same stat: still seen
    finally:
        os.close(fd)


def test_listed_gfid_and_mdata_are_kept_while_ctime_and_stores_allow(tmp_path):
    """readdirp's gfid and mdata of an entry (MdataCache.listed): kept per
    inode while its ctime stands; a moved ctime, or a gfid or mdata stored
    or removed through the brick, reads them again."""
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    (tmp_path / "f").write_bytes(b"")
    path = f"/proc/self/fd/{d}/f"
    g1, g2 = uuid.uuid4().bytes, uuid.uuid4().bytes
    try:
        cache = MdataCache()
        xset(path, GFID_KEY, g1, 0)
        xset(path, MDATA_KEY, b"one", 0)
        st = os.stat("f", dir_fd=d, follow_symlinks=False)
        assert cache.listed(d, "f", st, True) == (g1, b"one")
        assert cache.listed(d, "f", st, False) == (g1, b"one")   # held: no read needed
        os.setxattr(path, MDATA_KEY, b"two", follow_symlinks=False)   # outside, ctime kept
        assert cache.listed(d, "f", st, True) == (g1, b"one")
        moved = types.SimpleNamespace(st_dev=st.st_dev, st_ino=st.st_ino,
                                      st_ctime_ns=st.st_ctime_ns + 1)
        assert cache.listed(d, "f", moved, True) == (g1, b"two")
        xset(path, GFID_KEY, g2, 0)                          # through the brick
        assert cache.listed(d, "f", moved, True) == (g2, b"two")
        xremove(path, GFID_KEY)
        assert cache.listed(d, "f", moved, True) == (None, b"two")
        fresh = MdataCache()
        assert fresh.listed(d, "f", moved, False) == (None, None)  # ctime off: no mdata read
        assert fresh.listed(d, "f", moved, True) == (None, b"two")
        os.unlink(tmp_path / "f")
        with pytest.raises(FileNotFoundError):
            MdataCache().listed(d, "f", moved, True)
    finally:
        os.close(d)


def test_a_full_listed_cache_keeps_what_it_holds(tmp_path, monkeypatch):
    """Past its bound the cache admits nothing new (a walk larger than the
    bound still hits on what it holds) until a store retires everything."""
    monkeypatch.setattr(MdataCache, "LISTED_LIMIT", 2)
    d = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        stats = {}
        for name in ("a", "b", "c"):
            (tmp_path / name).write_bytes(b"")
            xset(f"/proc/self/fd/{d}/{name}", GFID_KEY, name.encode() * 16, 0)
        cache = MdataCache()
        for name in ("a", "b", "c"):
            stats[name] = os.stat(name, dir_fd=d, follow_symlinks=False)
            assert cache.listed(d, name, stats[name], False)[0] == name.encode() * 16
        for name in ("a", "b", "c"):     # changed outside, ctime kept: only c is read again
            os.setxattr(f"/proc/self/fd/{d}/{name}", GFID_KEY, b"z" * 16, follow_symlinks=False)
        assert [cache.listed(d, n, stats[n], False)[0] for n in ("a", "b", "c")] == \
            [b"a" * 16, b"b" * 16, b"z" * 16]
        xset(f"/proc/self/fd/{d}/c", GFID_KEY, b"y" * 16, 0)   # a store retires them all
        assert [cache.listed(d, n, stats[n], False)[0] for n in ("a", "b", "c")] == \
            [b"z" * 16, b"z" * 16, b"y" * 16]
    finally:
        os.close(d)


async def test_readdirp_sees_times_and_gfids_change(brick, posix_graph):
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"x")

        async def listed():
            fd = Fd(gfid=ROOT_GFID, is_dir=True)
            await top.opendir(Loc.root(), fd, None)
            try:
                return {e.name: e.iatt for e in
                        (await top.readdirp(fd, 1 << 16, 0, None)).entries}
            finally:
                await top.releasedir(fd, None)
        first = await listed()
        assert first["f"].gfid == f.gfid and (await listed())["f"] == first["f"]
        # a store through the brick within the same clock tick as the listing
        mtime = random.randrange(1, 1800000000)
        await top.setattr(Loc(gfid=f.gfid), Iatt(mtime=mtime), fops.SET_ATTR_MTIME, None)
        assert (await listed())["f"].mtime == mtime
        # a change from outside moves ctime
        time.sleep(0.02)
        os.setxattr(brick / "f", MDATA_KEY, struct.pack(">BQqQqQqQ", 1, 0, 2000000000, 0,
                                                        1900000000, 0, 1800000000, 0))
        seen = (await listed())["f"]
        assert (seen.ctime, seen.mtime, seen.atime) == (2000000000, 1900000000, 1800000000)
        assert seen.gfid == f.gfid and seen.nlink == 1


# -- confinement --------------------------------------------------------------------------

@pytest.fixture
def outside(tmp_path):
    """A tree beside the brick that no fop may touch."""
    out = tmp_path / "outside"
    (out / "dir").mkdir(parents=True)
    (out / "secret").write_bytes(b"top secret")
    os.chmod(out / "secret", 0o600)
    os.setxattr(out / "secret", "user.mark", b"untouched")
    return out


async def test_symlinks_are_never_followed(brick, posix_graph, outside, tmp_path):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        links = {}
        targets = {"abs": str(outside), "rel": "../outside", "relfile": "../../outside/secret",
                   "absfile": str(outside / "secret"), "loop": "loop", "dloop": "d/../dloop"}
        for name, target in targets.items():
            links[name] = (await top.symlink(target, child(Loc.root(), name), 0, req())).iatt.gfid
        before = snapshot(outside)
        for name, gfid in links.items():
            sl = Loc(gfid=gfid)
            assert await errno_of(top.lookup(Loc(pargfid=gfid, name="secret"), None)) == \
                errno.ENOTDIR
            assert await errno_of(top.mkdir(Loc(pargfid=gfid, name="x"), 0o755, 0, req())) == \
                errno.ENOTDIR
            assert await errno_of(top.create(Loc(pargfid=gfid, name="x"), 0, 0o644, 0, Fd(),
                                             req())) == errno.ENOTDIR
            assert await errno_of(top.open(sl, os.O_RDWR, Fd(), None)) == errno.ELOOP
            assert await errno_of(top.opendir(sl, Fd(), None)) == errno.ENOTDIR
            assert await errno_of(top.truncate(sl, 0, None)) == errno.EINVAL
            assert await errno_of(top.readv(Fd(gfid=gfid), 10, 0, 0, None)) == errno.ELOOP
            assert await errno_of(top.lookup(Loc(path=f"/{name}/secret"), None)) in \
                (errno.ENOTDIR, errno.ELOOP)
            st = (await top.stat(sl, None)).iatt
            assert st.is_link
            await top.setattr(sl, Iatt(mode=0o777, uid=999, gid=999, atime=1, mtime=1),
                              fops.SET_ATTR_MODE | fops.SET_ATTR_UID | fops.SET_ATTR_GID |
                              fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME, None)
            await top.setxattr(sl, {"trusted.mark": b"on the link"}, 0, None)
            assert (await top.getxattr(sl, "trusted.mark", None)).dict == \
                {"trusted.mark": b"on the link"}
            await top.access(sl, os.F_OK, None)
            await top.statfs(sl, None)
            await top.xattrop(sl, XattropType.ADD_ARRAY, {"trusted.x": b"\0\0\0\1"}, None)
            await top.link(sl, child(d, name), None)
            await top.rename(child(d, name), child(d, name + "2"), None)
            await top.unlink(child(d, name + "2"), 0, None)
        for name, target in targets.items():       # stored verbatim
            assert (await top.readlink(Loc(gfid=links[name]), 4096, None)).path == target
            assert os.readlink(brick / name) == target
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        plus = (await top.readdirp(fd, 1 << 16, 0, None)).entries
        assert all(e.iatt.is_link for e in plus if e.name in links)
        await top.releasedir(fd, None)
        for name in links:
            await top.unlink(child(Loc.root(), name), 0, None)
    assert snapshot(outside) == before
    assert sorted(os.listdir(tmp_path)) == ["brick", "outside"]


async def test_paths_and_names_cannot_escape(brick, posix_graph, outside):
    before = snapshot(outside)
    async with posix_graph(brick) as top:
        await mkdir(top, Loc.root(), "d")
        for path in ("/../outside/secret", "/d/../../outside", "/./d", "/d/..", "/.glusterfs/00"):
            e = await errno_of(top.lookup(Loc(path=path), None))
            assert e in (errno.EINVAL, errno.EPERM), path
            e = await errno_of(top.mkdir(Loc(path=path + "/x"), 0o755, 0, req()))
            assert e in (errno.EINVAL, errno.EPERM, errno.ENOENT), path
        for name in ("../outside", "..", "/etc", "a\0b", "d/../x"):
            for call in (top.mkdir(child(Loc.root(), name), 0o755, 0, req()),
                         top.create(child(Loc.root(), name), 0, 0o644, 0, Fd(), req()),
                         top.mknod(child(Loc.root(), name), stat.S_IFREG, 0, 0, req()),
                         top.symlink("x", child(Loc.root(), name), 0, req()),
                         top.lookup(child(Loc.root(), name), None),
                         top.unlink(child(Loc.root(), name), 0, None),
                         top.rmdir(child(Loc.root(), name), 0, None),
                         top.rename(child(Loc.root(), "d"), child(Loc.root(), name), None)):
                assert await errno_of(call) == errno.EINVAL, name
    assert snapshot(outside) == before
    assert sorted(os.listdir(brick)) == [".glusterfs", "d"]


@settings(max_examples=40, deadline=None)
@given(st.text(min_size=1, max_size=12))
def test_any_name_stays_inside_the_brick(tmp_path_factory, name):
    base = tmp_path_factory.mktemp("fuzz")
    brick = base / "brick"
    brick.mkdir()

    async def run():
        graph = Graph.from_text(posix_volfile(brick))
        async with graph.running():
            top = graph.top
            try:
                await top.mkdir(child(Loc.root(), name), 0o755, 0, req())
                await top.create(Loc(path=f"/{name}/f"), 0, 0o644, 0, Fd(), req())
            except FopError as e:
                assert e.errno in (errno.EINVAL, errno.ENAMETOOLONG, errno.EPERM, errno.EEXIST,
                                   errno.ENOENT, errno.ENOTDIR), e
    trio.run(run)
    assert sorted(os.listdir(base)) == ["brick"]
    for entry in os.listdir(brick):
        assert "/" not in entry


async def test_glusterfs_dir_is_private(brick, posix_graph):
    async with posix_graph(brick) as top:
        hidden = child(Loc.root(), ".glusterfs")
        assert await errno_of(top.lookup(hidden, None)) == errno.EPERM
        assert await errno_of(top.mkdir(hidden, 0o755, 0, req())) == errno.EPERM
        assert await errno_of(top.rmdir(hidden, 0, None)) == errno.EPERM
        assert await errno_of(top.unlink(hidden, 0, None)) == errno.EPERM
        assert await errno_of(top.create(hidden, 0, 0o644, 0, Fd(), req())) == errno.EPERM
        assert await errno_of(top.mknod(hidden, stat.S_IFREG, 0, 0, req())) == errno.EPERM
        assert await errno_of(top.symlink("x", hidden, 0, req())) == errno.EPERM
        assert await errno_of(top.stat(hidden, None)) == errno.EPERM
        d = await mkdir(top, Loc.root(), "d")
        assert await errno_of(top.rename(hidden, child(Loc.root(), "x"), None)) == errno.EPERM
        assert await errno_of(top.rename(child(Loc.root(), "d"), hidden, None)) == errno.EPERM
        assert await errno_of(top.link(Loc(gfid=d.gfid), hidden, None)) == errno.EPERM
        assert await errno_of(top.lookup(Loc(path="/.glusterfs/unlink"), None)) == errno.EPERM
        # but a sub-directory may have that name: only the root's is private
        sub = await top.mkdir(Loc(pargfid=d.gfid, name=".glusterfs"), 0o755, 0, req())
        assert sub.iatt.is_dir
    assert stat.S_IMODE(os.lstat(brick / ".glusterfs").st_mode) == 0o600


async def test_planted_handles_cannot_lead_outside(brick, posix_graph, outside):
    before = snapshot(outside)
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
        e = await mkdir(top, Loc.root(), "e")
        await top.symlink(str(outside), child(Loc.root(), "out"), 0, req())
    # tamper with the brick behind the translator's back
    os.unlink(handle(brick, d.gfid))
    os.symlink(f"../../00/00/{ROOT_GFID}/../../outside", handle(brick, d.gfid))
    os.unlink(handle(brick, e.gfid))
    os.symlink(f"../../00/00/{ROOT_GFID}/out", handle(brick, e.gfid))
    x = GFID.random()
    os.makedirs(os.path.dirname(handle(brick, x)), exist_ok=True)
    os.symlink(str(outside), handle(brick, x))
    async with posix_graph(brick) as top:
        for gfid in (d.gfid, e.gfid, x):
            err = await errno_of(top.create(Loc(pargfid=gfid, name="planted"), 0, 0o644, 0,
                                            Fd(), req()))
            assert err in (errno.ESTALE, errno.ELOOP, errno.ENOTDIR)
            err = await errno_of(top.lookup(Loc(pargfid=gfid, name="secret"), None))
            assert err in (errno.ESTALE, errno.ELOOP, errno.ENOTDIR)
    assert snapshot(outside) == before


async def test_directory_replaced_by_symlink_is_not_followed(brick, posix_graph, outside):
    async with posix_graph(brick) as top:
        d = await mkdir(top, Loc.root(), "d")
    os.rename(brick / "d", brick / "moved-away")
    os.symlink(outside, brick / "d")
    before = snapshot(outside)
    async with posix_graph(brick) as top:
        assert await errno_of(top.create(Loc(pargfid=d.gfid, name="f"), 0, 0o644, 0, Fd(),
                                         req())) in (errno.ELOOP, errno.ENOTDIR)
    assert snapshot(outside) == before


async def test_set_ctime_mdata_stores_times_for_a_legacy_file(brick, posix_graph):
    """features/utime's setxattr of 'set-ctime-mdata' (regression: it was
    refused with EINVAL, where GlusterFS's posix stores the times)."""
    from glusterpy.rpc.structs import MdataIatt
    from glusterpy.keys import MDATA_KEY
    async with posix_graph(brick, ctime="on") as top:
        made = await top.mknod(Loc(path="/legacy", pargfid=fops.ROOT_GFID, name="legacy"),
                               0o100644, 0, 0, {"gfid-req": fops.GFID.random()})
        os.removexattr(brick / "legacy", MDATA_KEY)   # as if made without ctime
        loc = Loc(path="/legacy", gfid=made.iatt.gfid)
        times = MdataIatt(atime=100, mtime=200, ctime=300, atime_nsec=1, mtime_nsec=2,
                          ctime_nsec=3)
        await top.setxattr(loc, {"set-ctime-mdata": times}, 0, None)
        ia = (await top.stat(loc, None)).iatt
        assert (ia.mtime, ia.mtime_nsec, ia.ctime, ia.atime) == (200, 2, 300, 100)
        # a second client's older times do not move them back
        older = MdataIatt(atime=1, mtime=1, ctime=1)
        await top.setxattr(loc, {"set-ctime-mdata": older}, 0, None)
        assert (await top.stat(loc, None)).iatt.mtime == 200
        with pytest.raises(FopError) as e:
            await top.setxattr(loc, {"set-ctime-mdata": b"junk"}, 0, None)
        assert e.value.errno == errno.EINVAL


async def test_create_of_a_new_file_makes_only_the_syscalls_it_needs(brick, posix_graph,
                                                                     monkeypatch):
    """A small file's create, counted (issue 17): the O_EXCL open says
    whether the name existed (no stat before it), a file the open gave the
    owner and exact mode is not chmod'ed nor stat'ed again, a fresh entry's
    gfid and mdata are stored without reading them first, and the handle is
    linked without a stat first.  GlusterFS's posix_create list, in that
    order: open, gfid xattr, handle link, gfid2path, mdata, parent's times."""
    calls: dict[str, list] = {}

    def counted(name):
        real = getattr(os, name)

        def call(*args, **kw):
            calls.setdefault(name, []).append(args[:2])
            return real(*args, **kw)
        return call
    async with posix_graph(brick) as top:
        first = GFID.random()
        await mkfile(top, Loc.root(), "first", mode=0o644)
        with as_caller(uid=os.getuid(), gid=os.getgid()):
            await top.create(child(Loc.root(), "warm"), os.O_CREAT | os.O_EXCL | os.O_RDWR,
                             0o644, 0o022, Fd(), req(first))
        # the same .glusterfs/xx/yy as `first`: that directory exists already
        second = GFID(bytes(first)[:2] + bytes(GFID.random())[2:])
        for name in ("stat", "fstat", "getxattr", "setxattr", "chmod", "fchmod", "mkdir",
                     "link", "open", "listxattr"):
            monkeypatch.setattr(os, name, counted(name))
        fd = Fd()
        with as_caller(uid=os.getuid(), gid=os.getgid()):
            c = await top.create(child(Loc.root(), "f"), os.O_CREAT | os.O_EXCL | os.O_RDWR,
                                 0o644, 0o022, fd, req(second))
        monkeypatch.undo()
        await top.release(fd, None)
        got = {k: len(v) for k, v in calls.items()}
        # stat: none (no existence check, no handle check); fstat: the new
        # file once, after its times once, the parent before and after
        assert got.get("stat", 0) == 0, calls.get("stat")
        assert got.get("fchmod", 0) == 0 and got.get("chmod", 0) == 0
        assert got.get("mkdir", 0) == 0 and got["link"] == 1 and got["open"] == 1
        # no mdata is read: the new file has none, and the parent's was kept
        # when the create before stored it (MdataCache.put), good while its
        # ctime and its last store stand - and is not read again as its
        # times move
        assert got.get("getxattr", 0) == 0, calls["getxattr"]
        assert got["fstat"] == 4, calls["fstat"]
        # what the file has to show for it
        st = os.stat(brick / "f")
        assert stat.S_IMODE(st.st_mode) == 0o644 and c.iatt.gfid == second
        assert disk_gfid(brick / "f") == second
        assert os.stat(handle(brick, second)).st_ino == st.st_ino
        assert c.iatt.mtime_nsec or c.iatt.mtime
        assert os.getxattr(brick / "f", MDATA_KEY)


async def test_create_still_sets_what_the_open_could_not(brick, posix_graph):
    """The cuts above keep their fallbacks: a mode the brick's umask masked
    is chmod'ed, a set-id bit too; a gfid whose handle names another inode
    is refused and leaves no file; an orphaned handle is replaced."""
    async with posix_graph(brick) as top:
        old = os.umask(0o077)
        try:
            for name, mode in (("wide", 0o666), ("sgid", 0o2755)):
                fd = Fd()
                await top.create(child(Loc.root(), name), os.O_CREAT | os.O_EXCL | os.O_RDWR,
                                 mode, 0, fd, req())
                await top.release(fd, None)
                assert stat.S_IMODE(os.stat(brick / name).st_mode) == mode
        finally:
            os.umask(old)
        taken = await mkfile(top, Loc.root(), "taken")
        assert await errno_of(top.create(child(Loc.root(), "g"),
                                         os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644, 0, Fd(),
                                         req(taken.gfid))) == errno.EEXIST
        assert not os.path.exists(brick / "g")
        orphan = GFID.random()
        os.makedirs(os.path.dirname(handle(brick, orphan)), exist_ok=True)
        (brick / "stray").write_bytes(b"")
        os.link(brick / "stray", handle(brick, orphan))
        os.unlink(brick / "stray")           # the handle is the inode's only name now
        fd = Fd()
        await top.create(child(Loc.root(), "h"), os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o644, 0,
                         fd, req(orphan))
        await top.release(fd, None)
        assert os.stat(handle(brick, orphan)).st_ino == os.stat(brick / "h").st_ino


async def test_a_lookup_asked_for_mdata_reads_it_once(brick, posix_graph, monkeypatch):
    """features/utime asks every lookup for the mdata xattr the brick reads
    anyway for the iatt's times: it is read once and answered from that
    read (issue 17: one getxattr fewer per stat through a mount)."""
    async with posix_graph(brick) as top:
        f = await mkfile(top, Loc.root(), "f", b"data")
        reads = []
        real = os.getxattr

        def getxattr(target, key, *a, **kw):
            if isinstance(target, str) and target.endswith("/f"):   # not the parent's
                reads.append(key)
            return real(target, key, *a, **kw)
        monkeypatch.setattr(os, "getxattr", getxattr)
        r = await top.lookup(Loc(pargfid=ROOT_GFID, name="f"),
                             {MDATA_KEY: 1, "trusted.glusterfs.dht.linkto": 256})
        monkeypatch.undo()
        assert reads.count(MDATA_KEY) == 1, reads
        assert r.xdata[MDATA_KEY] == os.getxattr(brick / "f", MDATA_KEY)
        assert "trusted.glusterfs.dht.linkto" not in r.xdata and r.iatt.gfid == f.gfid
        os.removexattr(brick / "f", MDATA_KEY)     # absent: not in the reply either
        r = await top.lookup(Loc(pargfid=ROOT_GFID, name="f"), {MDATA_KEY: 1})
        assert MDATA_KEY not in (r.xdata or {})


async def test_unlink_frees_inodes_itself_once_the_eviction_helper_is_gone(brick, posix_graph):
    """The helper that frees unlinked inodes killed (or gone any other way):
    the next unlink notices, closes its descriptor itself and goes on doing
    so - no unlink fails, no inode stays pinned."""
    async with posix_graph(brick) as top:
        for i in range(6):
            fd = Fd()
            await top.create(Loc.child(Loc.root(), f"f{i}"), os.O_RDWR | os.O_CREAT, 0o644, 0,
                             fd, {"gfid-req": GFID.random()})
            await top.release(fd, None)
        await top.unlink(Loc.child(Loc.root(), "f0"), 0, None)
        ev = top._evictions
        assert ev.deferred == 1
        ev._helper.kill()
        ev._helper.wait()
        for i in range(1, 6):
            await top.unlink(Loc.child(Loc.root(), f"f{i}"), 0, None)
        assert (ev.deferred, ev.inline) == (1, 5) and ev._helper is None
        assert sorted(os.listdir(brick)) == [".glusterfs"]
    pinned = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
              if os.path.islink(f"/proc/self/fd/{fd}")]
    assert not [p for p in pinned if p.startswith(str(brick)) and p.endswith("(deleted)")]


@pytest.mark.parametrize("limit", [DeferredEviction.LIMIT, 0], ids=["deferred", "bound-reached"])
async def test_unlink_leaves_freeing_the_inode_to_a_helper_process(brick, posix_graph,
                                                                    monkeypatch, limit):
    """The unlink of a file's last name (and a rename over one) keeps an
    O_PATH descriptor on the inode and hands it to DeferredEviction, whose
    helper process's close frees it; with LIMIT descriptors waiting the
    caller closes (and frees) itself.  Either way the names are gone at
    once and every inode is freed by the time the translator has stopped."""
    monkeypatch.setattr(DeferredEviction, "LIMIT", limit)
    names = [f"f{i}" for i in range(50)]
    async with posix_graph(brick) as top:
        for name in names:
            fd = Fd()
            await top.create(Loc.child(Loc.root(), name), os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                             {"gfid-req": GFID.random()})
            await top.writev(fd, b"x" * 8192, 0, 0, None)
            await top.release(fd, None)
        # a rename over a file frees the replaced one's inode the same way
        await top.rename(Loc.child(Loc.root(), names[0]), Loc.child(Loc.root(), names[1]), None)
        for name in names[1:]:
            await top.unlink(Loc.child(Loc.root(), name), 0, None)
            assert not (brick / name).exists()
        ev = top._evictions
        assert (ev.deferred, ev.inline) == ((len(names), 0) if limit else (0, len(names)))
        assert not [p for p in (brick / ".glusterfs").rglob("*") if p.is_file()]
        helper = ev._helper
        assert (helper is not None) == bool(limit)
    # fini drained the helper, which closed everything it was sent and ended
    assert helper is None or helper.returncode == 0
    # and no descriptor of this process still pins an unlinked file of the
    # brick
    pinned = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(brick)) and target.endswith("(deleted)"):
            pinned.append(target)
    assert pinned == []
