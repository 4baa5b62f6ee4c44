"""storage/bd over storage/posix, on a real volume group on loop devices.

Each file is an LV: every step is checked against LVM's own report (what
`lvs` says) and data against checksums, and read straight from the
physical volumes too.  Then the bad input the issue lists - illegal LV
names, sizes beyond the VG, shrinking below written data, unlinking an
origin of snapshots, a missing VG - each answered with a clear errno and
nothing left behind; what snapshots refuse (test_bd_snapshot.py has the
snapshots themselves);
LVs made outside glusterpy; a restart; and the conformance suite where a
flat namespace of LVs can follow it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat

import pytest
import trio

from glusterpy import bd as lvm
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Iatt, Loc, SET_ATTR_SIZE
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph

from xlators.storage.bd import mapping as bd_mapping

from conformance import CHECKS
import test_bd_lvm
from test_bd_lvm import LoopVG

# test_bd_lvm's fixtures, used here: bound by assignment, since a test's
# parameter named after an imported fixture reads to pyflakes as a redefinition
loop_vg, vg = test_bd_lvm.loop_vg, test_bd_lvm.vg

EXT = 4096          # the test VG's extent size
MiB = 1 << 20


@pytest.fixture
def meta(tmp_path):
    path = tmp_path / "meta"
    path.mkdir()
    return path


@contextlib.asynccontextmanager
async def bd_graph(vg: LoopVG, meta, **options):
    """A running posix+bd graph; yields its top (storage/bd)."""
    graph = Graph.from_text(vg.volfile(meta, **options))
    async with graph.running():
        yield graph.top


@contextlib.asynccontextmanager
async def bd_volume(vg: LoopVG, meta, **options):
    async with AsyncVolume(Graph.from_text(vg.volfile(meta, **options))) as vol:
        yield vol


def sha(data) -> str:
    return hashlib.sha256(bytes(data)).hexdigest()


def entry(name: str) -> Loc:
    return Loc(path=f"/{name}", pargfid=ROOT_GFID, name=name)


async def errno_of(awaitable) -> int:
    try:
        await awaitable
    except FopError as e:
        return e.errno
    except OSError as e:
        return e.errno
    raise AssertionError("no error")


# -- the mapping: create, truncate, write, read, clone, unlink, rename ---------------


@pytest.mark.parametrize("aio", ["off", "on"])
async def test_create_truncate_write_read_resize(vg, meta, aio):
    async with bd_volume(vg, meta, bd_aio=aio) as vol:
        f = await vol.open("/vm1", os.O_CREAT | os.O_RDWR, 0o640)
        # a just-created file is a name without an LV: size 0, not in lvs
        assert (await vol.stat("/vm1")).st_size == 0 and "vm1" not in vg.lvs()
        await f.ftruncate(10 * EXT + 1)                 # rounded up to whole extents
        assert vg.lvs()["vm1"] == 11 * EXT
        assert (await vol.stat("/vm1")).st_size == 11 * EXT
        data = os.urandom(40000)
        assert await f.pwrite(data, 0) == len(data)
        assert sha(await f.pread(len(data), 0)) == sha(data)
        assert sha(vg.read_lv("vm1")[:len(data)]) == sha(data)    # straight off the PV
        await f.ftruncate(MiB)                          # grow: data kept, new extents zero
        assert vg.lvs()["vm1"] == MiB
        back = await f.pread(MiB, 0)
        assert sha(back[:len(data)]) == sha(data) and back[len(data):] == bytes(MiB - len(data))
        assert await f.pread(10, MiB) == b""
        # a write past the end grows the LV to cover it
        await f.pwrite(b"tail", 2 * MiB)
        assert vg.lvs()["vm1"] == 2 * MiB + EXT
        assert await f.pread(8, 2 * MiB - 4) == bytes(4) + b"tail"
        # shrinking below written data is refused; nothing changes
        with pytest.raises(OSError) as e:
            await f.ftruncate(8192)
        assert e.value.errno == errno.EPERM and vg.lvs()["vm1"] == 2 * MiB + EXT
        await f.close()
        assert (await vol.stat("/vm1")).st_mode & 0o777 == 0o640


async def test_forced_shrink_and_truncate_to_zero(vg, meta):
    async with bd_graph(vg, meta) as top:
        fd = Fd(flags=os.O_RDWR)
        r = await top.create(entry("img"), os.O_RDWR | os.O_CREAT, 0o600, 0, fd,
                             {"gfid-req": GFID.random()})
        loc = Loc(path="/img", gfid=r.iatt.gfid)
        data = os.urandom(5 * EXT)
        w = await top.writev(fd, data, 0, 0, None)
        assert w.postbuf.size == 5 * EXT and vg.lvs() == {"img": 5 * EXT}
        assert await errno_of(top.truncate(loc, 2 * EXT, None)) == errno.EPERM
        # a truncate that keeps the LV's extents changes nothing and is allowed
        assert (await top.truncate(loc, 5 * EXT - 10, None)).postbuf.size == 5 * EXT
        post = (await top.truncate(loc, 2 * EXT, {lvm.XDATA_FORCE: 1})).postbuf
        assert post.size == 2 * EXT and vg.lvs() == {"img": 2 * EXT}
        assert bytes((await top.readv(fd, 5 * EXT, 0, 0, None)).data) == data[:2 * EXT]
        # setattr with a size is a truncate too
        await top.setattr(loc, Iatt(size=3 * EXT), SET_ATTR_SIZE, None)
        assert vg.lvs() == {"img": 3 * EXT}
        # to 0: the LV goes, the file stays, without an LV
        assert await errno_of(top.ftruncate(fd, 0, None)) == errno.EPERM
        assert (await top.ftruncate(fd, 0, {lvm.XDATA_FORCE: 1})).postbuf.size == 0
        assert vg.lvs() == {} and (await top.stat(loc, None)).iatt.size == 0
        assert (await top.readv(fd, 100, 0, 0, None)).data == b""
        await top.release(fd, None)


async def test_force_shrink_option(vg, meta):
    async with bd_volume(vg, meta, force_shrink="on") as vol:
        async with await vol.fopen("/a", "w") as f:
            await f.write(os.urandom(3 * EXT))
        await vol.truncate("/a", EXT)
        assert vg.lvs() == {"a": EXT}


async def test_clone_copies_data_and_stands_alone(vg, meta):
    async with bd_volume(vg, meta) as vol:
        data = os.urandom(3 * EXT + 100)
        async with await vol.fopen("/base", "w") as f:
            await f.write(data)
        await vol.chmod("/base", 0o604)
        await vol.link("/base", "/copy")
        assert vg.lvs() == {"base": 4 * EXT, "copy": 4 * EXT}
        assert sorted(await vol.listdir("/")) == ["base", "copy"]
        async with await vol.fopen("/copy", "r+") as f:
            got = await f.read()
            assert sha(got[:len(data)]) == sha(data) and got[len(data):] == bytes(EXT - 100)
            await f.pwrite(b"changed", 0)
        async with await vol.fopen("/base") as f:
            assert (await f.read(7)) == data[:7]
        a, b = await vol.stat("/base"), await vol.stat("/copy")
        assert a.st_ino != b.st_ino and b.st_mode & 0o777 == 0o604
        # a clone of a file without an LV is a file without an LV
        await (await vol.fopen("/empty", "w")).close()
        await vol.link("/empty", "/empty2")
        assert "empty2" not in vg.lvs() and await vol.getsize("/empty2") == 0
        assert await errno_of(vol.link("/base", "/copy")) == errno.EEXIST


async def test_clone_while_a_writer_goes_on(vg, meta):
    """A clone of 4 MiB, copied chunk by chunk while another task rewrites
    the source: every block of the clone is one whole version, the source
    ends with the last."""
    block = 64 << 10
    blocks = 64
    async with bd_volume(vg, meta) as vol:
        src = await vol.open("/src", os.O_CREAT | os.O_RDWR)
        await src.pwrite(b"".join(bytes([0]) * block for _ in range(blocks)), 0)
        done = trio.Event()
        versions = [0] * blocks

        async def writer():
            v = 0
            while not done.is_set():
                v += 1
                for i in range(blocks):
                    await src.pwrite(bytes([v % 250 + 1]) * block, i * block)
                    versions[i] = v % 250 + 1
                    await trio.lowlevel.checkpoint()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await trio.sleep(0.05)
            await vol.link("/src", "/clone")
            done.set()
        assert vg.lvs() == {"src": blocks * block, "clone": blocks * block}
        async with await vol.fopen("/clone") as f:
            clone = await f.read()
        seen = set()
        for i in range(blocks):
            chunk = clone[i * block:(i + 1) * block]
            assert chunk == bytes([chunk[0]]) * block, f"block {i} is torn"
            seen.add(chunk[0])
        assert seen != {0}, "the writer never ran before the copy ended"
        for i in range(blocks):
            assert await src.pread(1, i * block) == bytes([versions[i]])
        await src.close()


async def test_unlink_rename_and_replace(vg, meta):
    async with bd_volume(vg, meta) as vol:
        for name in ("a", "b"):
            async with await vol.fopen(f"/{name}", "w") as f:
                await f.write(name.encode() * EXT)
        await vol.rename("/a", "/c")
        assert vg.lvs() == {"b": EXT, "c": EXT}
        await vol.rename("/c", "/b")            # replaces b: b's LV goes
        assert vg.lvs() == {"b": EXT}
        async with await vol.fopen("/b") as f:
            assert await f.read(1) == b"a"
        await vol.unlink("/b")
        assert vg.lvs() == {} and await vol.listdir("/") == []


async def test_unlinked_open_file_keeps_its_lv_until_closed(vg, meta):
    async with bd_volume(vg, meta) as vol:
        f = await vol.open("/x", os.O_CREAT | os.O_RDWR)
        await f.pwrite(b"still here", 0)
        await vol.unlink("/x")
        assert await vol.listdir("/") == []
        (hidden,) = vg.lvs()
        assert hidden.startswith(lvm.UNLINKED_PREFIX)
        assert await f.pread(10, 0) == b"still here"
        await f.pwrite(b"more", EXT)            # even grows
        async with await vol.fopen("/x", "w") as g:  # the name is free again
            await g.write(b"new")
        await f.close()
        assert vg.lvs() == {"x": EXT}


async def test_write_past_the_end_without_extend_on_write(vg, meta):
    async with bd_volume(vg, meta, extend_on_write="off") as vol:
        f = await vol.open("/fixed", os.O_CREAT | os.O_RDWR)
        with pytest.raises(OSError) as e:
            await f.pwrite(b"x", 0)
        assert e.value.errno == errno.ENOSPC
        await f.ftruncate(EXT)
        await f.pwrite(b"y" * EXT, 0)
        with pytest.raises(OSError) as e:
            await f.pwrite(b"z", EXT)
        assert e.value.errno == errno.ENOSPC and vg.lvs() == {"fixed": EXT}
        await f.close()


async def test_space_fops_seek_and_checksum(vg, meta):
    async with bd_graph(vg, meta) as top:
        fd = Fd(flags=os.O_RDWR)
        r = await top.create(entry("s"), os.O_RDWR | os.O_CREAT, 0o600, 0, fd, None)
        fd.gfid = r.iatt.gfid
        await top.fallocate(fd, 0, 0, 4 * EXT, None)         # grows the LV
        assert vg.lvs() == {"s": 4 * EXT}
        await top.writev(fd, b"\x01" * 4 * EXT, 0, 0, None)
        await top.discard(fd, EXT, EXT, None)
        await top.zerofill(fd, 3 * EXT, 2 * EXT, None)       # past the end: grows
        assert vg.lvs() == {"s": 5 * EXT}
        data = bytes((await top.readv(fd, 5 * EXT, 0, 0, None)).data)
        assert data == b"\x01" * EXT + bytes(EXT) + b"\x01" * EXT + bytes(2 * EXT)
        await top.fallocate(fd, 1, 0, 100 * EXT, None)       # KEEP_SIZE: nothing
        assert vg.lvs() == {"s": 5 * EXT}
        assert (await top.seek(fd, 100, 0, None)).offset == 100
        assert (await top.seek(fd, 100, 1, None)).offset == 5 * EXT
        assert await errno_of(top.seek(fd, 5 * EXT, 0, None)) == errno.ENXIO
        ck = await top.rchecksum(fd, 0, EXT, None)
        assert ck.strong == hashlib.md5(b"\x01" * EXT).digest()
        await top.release(fd, None)


async def test_statfs_and_virtual_xattrs(vg, meta):
    async with bd_volume(vg, meta) as vol:
        sv = await vol.statvfs("/")
        rep = vg.report()
        assert sv.f_blocks * sv.f_frsize == rep.size and sv.f_bfree * sv.f_frsize == rep.free
        assert sv.f_namemax == 127 - len(vg.name) - 1
        assert await vol.getxattr("/", "volume.type") == b"1"
        caps = int(await vol.getxattr("/", "volume.caps"))
        assert caps & lvm.CAPS_BD and caps & lvm.CAPS_OFFLOAD_COPY
        assert await vol.getxattr("/", lvm.VG_KEY) == vg.name.encode()
        await (await vol.fopen("/z", "w")).close()
        with pytest.raises(OSError) as e:
            await vol.getxattr("/z", lvm.BD_XATTR)
        assert e.value.errno == errno.ENODATA
        # GlusterFS's way to give a file its LV
        await vol.setxattr("/z", lvm.BD_XATTR, b"lv:64K")
        assert vg.lvs() == {"z": 64 << 10}
        assert await vol.getxattr("/z", lvm.BD_XATTR) == b"lv:65536"
        assert lvm.WRITTEN_XATTR not in await vol.listxattr("/z")
        with pytest.raises(OSError) as e:
            await vol.setxattr("/z", lvm.BD_XATTR, b"lv:1M")
        assert e.value.errno == errno.EEXIST
        with pytest.raises(OSError) as e:
            await vol.getxattr("/z", lvm.ORIGIN_KEY)
        assert e.value.errno == errno.ENODATA
        await vol.setxattr("/z", "user.note", b"kept")
        assert await vol.getxattr("/z", "user.note") == b"kept"


# -- bad input ----------------------------------------------------------------------


ILLEGAL_NAMES = ["bad name", "a:b", "-lead", "snapshot1", "x_tmeta", "glusterpy_unlinked_1",
                 "n" * 120]


async def test_illegal_lv_names_create_nothing(vg, meta):
    async with bd_graph(vg, meta) as top:
        fd = Fd(flags=os.O_RDWR)
        r = await top.create(entry("ok"), os.O_CREAT | os.O_RDWR, 0o644, 0, fd, None)
        await top.release(fd, None)
        src = Loc(path="/ok", gfid=r.iatt.gfid, pargfid=ROOT_GFID, name="ok")
        for name in ILLEGAL_NAMES:
            for make in (lambda: top.create(entry(name), os.O_CREAT | os.O_RDWR, 0o644, 0,
                                            Fd(), None),
                         lambda: top.mknod(entry(name), stat.S_IFREG | 0o644, 0, 0, None)):
                with pytest.raises(FopError) as e:
                    await make()
                assert e.value.errno == errno.EINVAL and "LV" in e.value.message, name
            # the same names as targets of clone, snapshot and rename
            assert await errno_of(top.link(src, entry(name), None)) == errno.EINVAL
            assert await errno_of(top.symlink("ok", entry(name), 0, None)) == errno.EINVAL
            assert await errno_of(top.rename(src, entry(name), None)) == errno.EINVAL
        assert vg.lvs() == {} and sorted(os.listdir(meta)) == [".glusterfs", "ok"]


async def test_size_beyond_the_vg_is_enospc_with_nothing_left(vg, meta):
    free = vg.report().free
    async with bd_volume(vg, meta) as vol:
        f = await vol.open("/big", os.O_CREAT | os.O_RDWR)
        with pytest.raises(OSError) as e:
            await f.ftruncate(free + EXT)
        assert e.value.errno == errno.ENOSPC
        assert vg.lvs() == {} and await vol.getsize("/big") == 0
        await f.ftruncate(free)                         # exactly what is free: fine
        assert vg.lvs() == {"big": free}
        g = await vol.open("/more", os.O_CREAT | os.O_RDWR)
        with pytest.raises(OSError) as e:
            await g.pwrite(b"x", 0)                    # even one extent is too much now
        assert e.value.errno == errno.ENOSPC and set(vg.lvs()) == {"big"}
        await f.close()
        await g.close()


async def test_unlink_of_an_origin_with_snapshots_is_ebusy(vg, meta):
    """The snapshot is made outside glusterpy, in LVM's metadata (see
    LoopVG.craft_snapshot)."""
    async with bd_volume(vg, meta) as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(b"b" * 4 * EXT)
        vg.craft_snapshot("base", "snap", 4)
        with pytest.raises(OSError) as e:
            await vol.unlink("/base")
        assert e.value.errno == errno.EBUSY
        assert set(vg.lvs()) == {"base", "snap"} and await vol.exists("/base")
        # the snapshot is listed (adopted) and served; the origin's writes
        # copy the old data to it first
        assert sorted(await vol.listdir("/")) == ["base", "snap"]
        async with await vol.fopen("/base", "r+") as f:
            assert await f.read(1) == b"b"
            await f.pwrite(b"x", 0)
        async with await vol.fopen("/snap") as f:
            assert await f.read() == b"b" * 4 * EXT
        assert await errno_of(vol.truncate("/base", 0)) in (errno.EPERM, errno.EBUSY)
        await vol.unlink("/snap")
        await vol.unlink("/base")
        assert vg.lvs() == {}


async def test_what_a_snapshot_refuses(vg, meta):
    """Each refused with its errno and nothing created: an origin that is no
    LV of the group, a name taken, an origin without an LV yet, a COW store
    bigger than the VG's free space."""
    async with bd_graph(vg, meta) as top:
        fd = Fd(flags=os.O_RDWR)
        await top.create(entry("base"), os.O_CREAT | os.O_RDWR, 0o644, 0, fd, None)
        await top.writev(fd, b"x" * EXT, 0, 0, None)
        await top.release(fd, None)
        fd = Fd(flags=os.O_RDWR)
        await top.create(entry("empty"), os.O_CREAT | os.O_RDWR, 0o644, 0, fd, None)
        await top.release(fd, None)
        before = sorted(os.listdir(meta))
        for linkname, name, xdata, err in [
                ("nothere", "s1", None, errno.ENOENT),
                ("base", "empty", None, errno.EEXIST),
                ("empty", "s2", None, errno.EINVAL),
                ("base", "s3", {lvm.XDATA_SNAPSHOT_SIZE: 1 << 40}, errno.ENOSPC),
                ("base", "s4", {lvm.XDATA_SNAPSHOT_SIZE: "lots"}, errno.EINVAL),
                ("base", "bad:name", None, errno.EINVAL)]:
            got = await errno_of(top.symlink(linkname, entry(name), 0, xdata))
            assert got == err, (linkname, name, got)
        assert vg.lvs() == {"base": EXT} and sorted(os.listdir(meta)) == before


@pytest.mark.skipif(not lvm.device_mapper_available(),
                    reason="no device-mapper in this kernel: bd serves snapshots in user "
                           "space (test_bd_snapshot.py)")
async def test_snapshot_with_device_mapper(vg, meta):
    async with bd_volume(vg, meta) as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(b"v1" * EXT)
        await vol.symlink("base", "/snap")
        assert vg.report().lvs["snap"].origin == "base"
        async with await vol.fopen("/base", "r+") as f:
            await f.write(b"v2")
        async with await vol.fopen("/snap") as f:
            assert await f.read(2) == b"v1"
        with pytest.raises(OSError) as e:
            await vol.unlink("/base")
        assert e.value.errno == errno.EBUSY


@pytest.mark.skipif(lvm.device_mapper_available(),
                    reason="this kernel has device-mapper: thin pools are used")
async def test_thin_pool_without_device_mapper(vg, meta, caplog):
    """The pool and its thin LV are written to LVM's metadata (see
    LoopVG.craft_thin): the pool is no file and not used, the thin LV is
    listed but its blocks (in the pool's btree) need device-mapper, new
    files are linear LVs."""
    vg.craft_thin("pool0", "thin1", 64, 16)
    async with bd_volume(vg, meta) as vol:
        assert "thin pool" in caplog.text and "not used" in caplog.text
        assert await vol.listdir("/") == ["thin1"]
        assert await vol.getsize("/thin1") == 16 * EXT
        for op in (vol.open("/thin1", os.O_RDONLY), vol.unlink("/thin1"),
                   vol.truncate("/thin1", 32 * EXT)):
            with pytest.raises(OSError) as e:
                await op
            assert e.value.errno == errno.ENOTSUP
        assert not int(await vol.getxattr("/", "volume.caps")) & lvm.CAPS_THIN
        async with await vol.fopen("/new", "w") as f:
            await f.write(b"linear")
        new = vg.report().lvs["new"]
        assert not new.thin and new.segments[0].segtype == "linear"


async def test_missing_volume_group_fails_init(vg, meta):
    graph = Graph.from_text(vg.volfile(meta, export="no-such-vg"))
    with pytest.raises(FopError) as e:
        async with graph.running():
            pass
    assert e.value.errno == errno.ENOENT
    assert "volume group 'no-such-vg' does not exist" in e.value.message


async def test_one_graph_per_volume_group(vg, meta, tmp_path):
    other = tmp_path / "other-meta"
    other.mkdir()
    async with bd_graph(vg, meta):
        with pytest.raises(FopError) as e:
            async with bd_graph(vg, other):
                pass
        assert e.value.errno == errno.EBUSY and "already served" in e.value.message


async def test_metadata_directory_is_bound_to_its_vg(vg, meta):
    os.setxattr(meta, lvm.VG_BINDING_XATTR, b"some-other-vg-uuid")
    with pytest.raises(FopError) as e:
        async with bd_graph(vg, meta):
            pass
    assert e.value.errno == errno.EEXIST and "belongs to" in e.value.message


async def test_volume_id_tag(vg, meta):
    vid = "6f1c32d8-1df0-4bd5-a6a3-1b9c1bd3a6a5"
    tag = f"{lvm.VOLUME_ID_TAG}:{vid}"
    try:
        async with bd_graph(vg, meta, volume_id=vid):
            pass
        assert tag in vg.report().tags
        with pytest.raises(FopError) as e:
            async with bd_graph(vg, meta, volume_id="0e2b9a2c-0000-4000-8000-000000000001"):
                pass
        assert e.value.errno == errno.EEXIST and vid in e.value.message
    finally:
        vg.lvm.vg_tags(vg.name, remove=[tag])


async def test_no_directories_and_no_special_files(vg, meta):
    async with bd_graph(vg, meta) as top:
        assert await errno_of(top.mkdir(entry("d"), 0o755, 0, None)) == errno.ENOTSUP
        assert await errno_of(top.mknod(entry("p"), stat.S_IFIFO | 0o644, 0, 0,
                                        None)) == errno.ENOTSUP
        assert os.listdir(meta) == [".glusterfs"]


# -- LVM's view and the metadata directory's ------------------------------------------


async def test_lvs_made_outside_are_adopted_and_vanished_ones_let_go(vg, meta, monkeypatch):
    # a lookup that misses re-reads LVM once its last look is a second old
    monkeypatch.setattr(bd_mapping, "LVM_RESCAN_INTERVAL", 0)
    gfid = GFID.random()
    vg.lvm.lvcreate(vg.name, "outside", 2, tags=[lvm.gfid_tag(gfid)])
    vg.lvm.lvcreate(vg.name, "untagged", 1)
    async with bd_volume(vg, meta) as vol:
        assert sorted(await vol.listdir("/")) == ["outside", "untagged"]
        st_ = await vol.stat("/outside")
        assert st_.st_size == 2 * EXT and st_.st_ino == int.from_bytes(gfid[8:], "big")
        assert await vol.getxattr("/outside", "glusterfs.gfid.string") == str(gfid).encode()
        assert any(t.startswith(lvm.GFID_TAG) for t in vg.report().lvs["untagged"].tags)
        # all of an adopted LV counts as written
        with pytest.raises(OSError) as e:
            await vol.truncate("/outside", EXT)
        assert e.value.errno == errno.EPERM
        vg.lvm.lvcreate(vg.name, "later", 1)
        assert await vol.getsize("/later") == EXT          # a lookup adopts it
        vg.lvm.lvremove(vg.name, "outside")
        assert "outside" in await vol.listdir("/")          # the file stays...
        assert await vol.getsize("/outside") == 0           # ...without an LV


async def test_state_survives_a_restart(vg, meta):
    data = os.urandom(3 * EXT)
    async with bd_volume(vg, meta) as vol:
        async with await vol.fopen("/keep", "w") as f:
            await f.write(data)
        await vol.setxattr("/keep", "user.k", b"v")
        first = await vol.stat("/keep")
    async with bd_volume(vg, meta) as vol:
        st_ = await vol.stat("/keep")
        assert (st_.st_ino, st_.st_size, st_.st_mtime_ns) == \
            (first.st_ino, first.st_size, first.st_mtime_ns)
        async with await vol.fopen("/keep") as f:
            assert await f.read() == data
        assert await vol.getxattr("/keep", "user.k") == b"v"
        with pytest.raises(OSError) as e:           # the written mark was kept
            await vol.truncate("/keep", EXT)
        assert e.value.errno == errno.EPERM


async def test_zero_new_extents(vg, meta):
    """Extents an earlier LV wrote hold its data; a new file must not
    show it - unless zero-new-extents is off (LVM's own behaviour)."""
    async def leftover():
        vg.lvm.lvcreate(vg.name, "old", 4)
        rep = vg.report()
        devices = lvm.Devices()
        try:
            lvm.ExtentMap.for_lv(rep.lvs["old"], rep, devices).pwrite(b"\xee" * 4 * EXT, 0)
        finally:
            devices.close()
        vg.lvm.lvremove(vg.name, "old")

    await leftover()
    async with bd_volume(vg, meta) as vol:
        async with await vol.fopen("/fresh", "w") as f:
            await f.ftruncate(4 * EXT)
        async with await vol.fopen("/fresh") as f:
            assert await f.read() == bytes(4 * EXT)
        await vol.unlink("/fresh")
    await leftover()
    async with bd_volume(vg, meta, zero_new_extents="off") as vol:
        async with await vol.fopen("/stale", "w") as f:
            await f.ftruncate(4 * EXT)
        async with await vol.fopen("/stale") as f:
            assert await f.read() == b"\xee" * 4 * EXT


# -- the conformance suite, where a flat namespace of LVs can follow it ----------------

NOT_APPLICABLE = {
    "namespace_errors": "mkdir: a volume group has no directories",
    "rename_link_symlink": "link is a full clone (a new gfid, nlink 1) and symlink a "
                           "snapshot (a regular file), not a symbolic link",
    "readdir_resumes_from_offsets": "mkdir: a volume group has no directories",
    "xattrs_and_xattrop": "its target is a directory, which a volume group has not",
    "setattr_truncate_and_space_fops": "ftruncate to 100 bytes shrinks the LV below its "
                                       "written data, which bd refuses unless forced",
    "gfapi_tree_round_trip": "makedirs: a volume group has no directories",
    "concurrent_writers_do_not_mix": "it passes, but its 128 appends of 8 KiB each grow an "
                                     "LV with lvresize (~0.1 s each, ~16 s in all): too slow "
                                     "for this suite; test_clone_while_a_writer_goes_on "
                                     "covers concurrent writers",
}


@pytest.mark.parametrize("check_fn", [
    pytest.param(c, marks=pytest.mark.skip(reason=NOT_APPLICABLE[c.__name__]))
    if c.__name__ in NOT_APPLICABLE else c for c in CHECKS], ids=[c.__name__ for c in CHECKS])
async def test_conformance(check_fn, vg, meta):
    graph = Graph.from_text(vg.volfile(meta))
    if check_fn.kind == "gfapi":
        async with AsyncVolume(graph) as vol:
            await check_fn(vol)
    else:
        async with graph.running():
            assert await graph.wait_child_up(20)
            await check_fn(graph)
