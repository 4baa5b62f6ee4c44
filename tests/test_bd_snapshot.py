"""storage/bd's copy-on-write snapshots without device-mapper (issue 21).

On a real volume group on loop devices, with LVM's activation off (this
kernel has no device-mapper): symlink makes an LVM snapshot whose COW LV
holds the kernel's persistent exception store, and bd serves it in user
space.  Checked: the snapshot keeps the origin's old data, its own writes
(whole and partial chunks) leave the origin alone, `lvs` shows it with its
origin, a full store invalidates it (header valid = 0, reads EIO), a
restart reloads its exceptions from the store, and the store's bytes -
read straight off the loop device - decode with `decode_store`, written
from the format's description in the kernel's dm-snap-persistent.c, not
from glusterpy's code.  Last, a served volume: a brick process and a
client, the snapshot made and read through the client.
"""

from __future__ import annotations

import errno
import os
import struct

import pytest
import trio

from glusterpy import bd as lvm
from glusterpy import bd_snapshot as snapshots
from glusterpy.fops import FopError, Fd

import test_bd
import test_bd_lvm
import test_bd_served
from test_bd import bd_graph, bd_volume, entry

loop_vg, vg = test_bd_lvm.loop_vg, test_bd_lvm.vg
meta = test_bd.meta
served = test_bd_served.served

EXT = 4096                  # the test VG's extent size
CHUNK = 4096                # LVM's default snapshot chunk, which bd uses

pytestmark = pytest.mark.skipif(lvm.device_mapper_available(),
                                reason="this kernel has device-mapper: LVM makes the "
                                       "snapshots (test_bd's test_snapshot_with_device_mapper)")


# -- a decoder of the kernel's format, from its description -------------------------
#
# dm-snap-persistent.c: the COW device is cut into chunks.  Chunk 0 is a
# header of four little-endian u32: magic 0x70416e53 ("SnAp" on disk),
# valid, version (1), chunk size in 512-byte sectors.  Chunk 1 is the first
# metadata area: chunk_size/16 records of two little-endian u64, old chunk
# (in the origin) and new chunk (in the COW device); a record whose new
# chunk is 0 ends the table.  After each metadata area come as many data
# chunks as it has records, then the next metadata area.


def decode_store(raw: bytes) -> dict:
    magic, valid, version, sectors = struct.unpack_from("<4sIII", raw, 0)
    if magic == bytes(4):
        return {"fresh": True}
    assert magic == b"SnAp", magic
    chunk = sectors * 512
    records = chunk // 16
    table, area, ended = {}, 0, False
    while not ended:
        where = 1 + area * (records + 1)
        if (where + 1) * chunk > len(raw):
            break
        block = raw[where * chunk:(where + 1) * chunk]
        for i in range(records):
            old, new = struct.unpack_from("<QQ", block, 16 * i)
            if new == 0:
                ended = True
                break
            # a data chunk is never the header nor a metadata area
            assert new > 0 and (new - 1) % (records + 1) != 0, (old, new)
            table[old] = new
        area += 1
    return {"fresh": False, "valid": valid, "version": version, "chunk": chunk,
            "exceptions": table, "data": lambda new: raw[new * chunk:(new + 1) * chunk]}


def raw_lv(vg: test_bd_lvm.LoopVG, name: str) -> bytes:
    """An LV's bytes read off its loop devices where LVM's report puts its
    segments (linear only), not through glusterpy's maps."""
    rep = vg.report()
    lv, out = rep.lvs[name], bytearray()
    for seg in lv.segments:
        (pv_name, first), = seg.areas
        pv = rep.pvs[pv_name]
        with open(pv.name, "rb") as dev:
            dev.seek(pv.pe_start + first * rep.extent_size)
            out += dev.read(seg.extents * rep.extent_size)
    return bytes(out)


def lvs_origins(vg: test_bd_lvm.LoopVG) -> dict[str, str]:
    """`lvs -o lv_name,origin`: what LVM itself says."""
    out = vg.lvm.run("lvs", "--noheadings", "--separator", ":", "-o", "lv_name,origin",
                     vg.name)
    rows = (line.strip().split(":") for line in out.splitlines() if line.strip())
    return {name: origin for name, origin in rows}


def pattern(tag: int, size: int) -> bytes:
    """Distinct bytes per chunk and tag, so a chunk read from the wrong
    place shows."""
    return b"".join(bytes([tag, i % 251]) * (CHUNK // 2) for i in range(size // CHUNK))


# -- the tests ----------------------------------------------------------------------


@pytest.mark.parametrize("aio", ["off", "on"])
async def test_snapshot_keeps_old_data_and_lvs_shows_it(vg, meta, aio):
    size = 16 * CHUNK
    v1, v2 = pattern(1, size), pattern(2, size)
    async with bd_volume(vg, meta, bd_aio=aio, snapshot_size="65536") as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(v1)
        await vol.symlink("base", "/snap")
        assert lvs_origins(vg) == {"base": "", "snap": "base"}
        rep = vg.report()
        assert rep.lvs["snap"].chunk_size == CHUNK and rep.lvs["snap"].origin_size == size
        assert sorted(await vol.listdir("/")) == ["base", "snap"]
        assert await vol.getsize("/snap") == size
        # overwrite the origin: a whole chunk, a partial one, one across two
        async with await vol.fopen("/base", "r+") as f:
            await f.pwrite(v2[:CHUNK], 0)
            await f.pwrite(b"x" * 10, 5 * CHUNK + 100)
            await f.pwrite(b"y" * CHUNK, 8 * CHUNK + 2048)
        now = bytearray(v1)
        now[:CHUNK] = v2[:CHUNK]
        now[5 * CHUNK + 100:5 * CHUNK + 110] = b"x" * 10
        now[8 * CHUNK + 2048:9 * CHUNK + 2048] = b"y" * CHUNK
        async with await vol.fopen("/snap") as f:
            assert await f.read() == v1
        async with await vol.fopen("/base") as f:
            assert await f.read() == bytes(now)
        # the store, decoded off the device: the origin's four old chunks
        store = decode_store(raw_lv(vg, "snap"))
        assert store["valid"] == 1 and store["version"] == 1 and store["chunk"] == CHUNK
        assert sorted(store["exceptions"]) == [0, 5, 8, 9]
        for old, new in store["exceptions"].items():
            assert store["data"](new) == v1[old * CHUNK:(old + 1) * CHUNK]
        # rules: no snapshot of a snapshot, no resize of one, the origin stays
        with pytest.raises(OSError) as e:
            await vol.symlink("snap", "/snap2")
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            await vol.truncate("/snap", 32 * CHUNK)
        assert e.value.errno == errno.EINVAL
        with pytest.raises(OSError) as e:
            await vol.unlink("/base")
        assert e.value.errno == errno.EBUSY
        assert set(vg.lvs()) == {"base", "snap"}
        await vol.unlink("/snap")
        async with await vol.fopen("/base", "r+") as f:      # no store to copy into now
            await f.pwrite(b"z" * CHUNK, 0)
            assert await f.pread(CHUNK, 0) == b"z" * CHUNK
        await vol.unlink("/base")
    assert vg.lvs() == {}


async def test_writing_the_snapshot_leaves_the_origin(vg, meta):
    size = 16 * CHUNK
    v1 = pattern(1, size)
    # 16 data chunks, a header and a metadata area
    async with bd_volume(vg, meta, snapshot_size=str(18 * CHUNK)) as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(v1)
        await vol.symlink("/base", "/snap")      # a path names the origin too
        want = bytearray(v1)
        async with await vol.fopen("/snap", "r+") as f:
            await f.pwrite(b"A" * CHUNK, 2 * CHUNK)            # a whole chunk
            want[2 * CHUNK:3 * CHUNK] = b"A" * CHUNK
            await f.pwrite(b"B" * 7, 4 * CHUNK + 33)           # partial: the rest copied
            want[4 * CHUNK + 33:4 * CHUNK + 40] = b"B" * 7
            await f.pwrite(b"C" * 300, 7 * CHUNK - 100)        # across two chunks
            want[7 * CHUNK - 100:7 * CHUNK + 200] = b"C" * 300
            await f.pwrite(b"D" * 5, 2 * CHUNK + 1)            # into an exception
            want[2 * CHUNK + 1:2 * CHUNK + 6] = b"D" * 5
            assert await f.pread(size, 0) == bytes(want)
        async with await vol.fopen("/base") as f:
            assert await f.read() == v1
        # the origin's later writes to those chunks do not reach the snapshot
        async with await vol.fopen("/base", "r+") as f:
            await f.pwrite(b"O" * size, 0)
        async with await vol.fopen("/snap") as f:
            assert await f.read() == bytes(want)
        store = decode_store(raw_lv(vg, "snap"))
        assert set(store["exceptions"]) == set(range(16))   # every chunk copied or written
        for old, new in store["exceptions"].items():
            assert store["data"](new) == want[old * CHUNK:(old + 1) * CHUNK]
        # writing past the snapshot's end would grow it: refused
        async with await vol.fopen("/snap", "r+") as f:
            with pytest.raises(OSError) as e:
                await f.pwrite(b"x", size)
            assert e.value.errno == errno.EINVAL
        await vol.unlink("/snap")
        await vol.unlink("/base")


async def test_a_snapshot_taken_while_a_writer_goes_on_stays_put(vg, meta):
    """With bd-aio (writes in worker threads) a writer rewrites the origin
    chunk by chunk, version after version, while the snapshot is taken: the
    snapshot then holds whole versions and no longer changes."""
    chunks = 32
    async with bd_volume(vg, meta, bd_aio="on", snapshot_size=str(40 * CHUNK)) as vol:
        f = await vol.open("/base", os.O_CREAT | os.O_RDWR)
        await f.ftruncate(chunks * CHUNK)
        started, stop = trio.Event(), trio.Event()

        async def writer():
            v = 0
            while not stop.is_set():
                v = v % 250 + 1
                for i in range(chunks):
                    await f.pwrite(bytes([v]) * CHUNK, i * CHUNK)
                started.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(writer)
            await started.wait()
            await vol.symlink("base", "/snap")
            async with await vol.fopen("/snap") as s:
                first = await s.read()
            for _ in range(3):      # more versions over the origin
                await trio.sleep(0.05)
            async with await vol.fopen("/snap") as s:
                assert await s.read() == first
            stop.set()
        for i in range(chunks):
            block = first[i * CHUNK:(i + 1) * CHUNK]
            assert block == bytes([block[0]]) * CHUNK and block[0], f"chunk {i} is torn"
        await f.close()
        await vol.unlink("/snap")
        await vol.unlink("/base")


async def test_a_full_store_invalidates_the_snapshot(vg, meta):
    """Three chunks hold the header, one metadata area and one exception:
    the origin's second overwritten chunk does not fit."""
    async with bd_graph(vg, meta) as top:
        fd = Fd(flags=os.O_RDWR)
        await top.create(entry("base"), os.O_CREAT | os.O_RDWR, 0o644, 0, fd, None)
        await top.writev(fd, b"1" * 8 * CHUNK, 0, 0, None)
        await top.symlink("base", entry("snap"), 0, {lvm.XDATA_SNAPSHOT_SIZE: 3 * CHUNK})
        assert vg.lvs()["snap"] == 3 * CHUNK
        await top.writev(fd, b"2" * CHUNK, 0, 0, None)          # fits
        sfd = Fd(flags=os.O_RDONLY)
        await top.open(entry("snap"), os.O_RDONLY, sfd, None)
        assert (await top.readv(sfd, CHUNK, 0, 0, None)).data == b"1" * CHUNK
        assert decode_store(raw_lv(vg, "snap"))["valid"] == 1
        await top.writev(fd, b"3" * CHUNK, 4 * CHUNK, 0, None)  # does not: origin written
        assert (await top.readv(fd, CHUNK, 4 * CHUNK, 0, None)).data == b"3" * CHUNK
        assert decode_store(raw_lv(vg, "snap"))["valid"] == 0
        with pytest.raises(FopError) as e:
            await top.readv(sfd, CHUNK, 0, 0, None)
        assert e.value.errno == errno.EIO and "invalid" in e.value.message
        # a store too small for even one exception is refused at creation
        await top.release(sfd, None)
        await top.release(fd, None)
    async with bd_graph(vg, meta) as top:      # still invalid after a restart
        sfd = Fd(flags=os.O_RDONLY)
        await top.open(entry("snap"), os.O_RDONLY, sfd, None)
        with pytest.raises(FopError) as e:
            await top.readv(sfd, 10, 0, 0, None)
        assert e.value.errno == errno.EIO
        await top.release(sfd, None)


async def test_a_restart_reloads_the_exceptions(vg, meta):
    """More exceptions than one metadata area holds (256 per 4 KiB chunk),
    so the reload crosses areas; then the graph restarts."""
    size = 300 * CHUNK
    v1, v2 = pattern(1, size), pattern(2, size)
    async with bd_volume(vg, meta, snapshot_size=str(2 * size)) as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(v1)
        await vol.symlink("base", "/snap")
        async with await vol.fopen("/base", "r+") as f:
            await f.pwrite(v2[:280 * CHUNK], 0)
        async with await vol.fopen("/snap", "r+") as f:
            await f.pwrite(b"S" * 100, 290 * CHUNK + 7)
    store = decode_store(raw_lv(vg, "snap"))
    assert len(store["exceptions"]) == 281
    async with bd_volume(vg, meta) as vol:
        want = bytearray(v1)
        want[290 * CHUNK + 7:290 * CHUNK + 107] = b"S" * 100
        async with await vol.fopen("/snap") as f:
            assert await f.read() == bytes(want)
        async with await vol.fopen("/base", "r+") as f:
            assert await f.read() == v2[:280 * CHUNK] + v1[280 * CHUNK:]
            await f.pwrite(b"N" * CHUNK, 299 * CHUNK)          # a new exception after the reload
        async with await vol.fopen("/snap") as f:
            assert await f.pread(CHUNK, 299 * CHUNK) == v1[299 * CHUNK:]
        await vol.unlink("/snap")
        await vol.unlink("/base")


async def test_a_snapshot_made_outside_glusterpy_is_served(vg, meta):
    """An LVM snapshot whose store is fresh (zeroed, as lvcreate -s leaves
    it; made in LVM's metadata by LoopVG.craft_snapshot, with 8-sector
    chunks) is adopted and served, its header written at the first
    exception."""
    async with bd_volume(vg, meta) as vol:
        async with await vol.fopen("/base", "w") as f:
            await f.write(b"b" * 4 * EXT)
        vg.craft_snapshot("base", "snap", 4)
        assert decode_store(raw_lv(vg, "snap")) == {"fresh": True}
        assert sorted(await vol.listdir("/")) == ["base", "snap"]
        async with await vol.fopen("/base", "r+") as f:
            await f.pwrite(b"n" * 10, 0)
        async with await vol.fopen("/snap") as f:
            assert await f.read() == b"b" * 4 * EXT
        store = decode_store(raw_lv(vg, "snap"))
        assert store["valid"] == 1 and store["chunk"] == 8 * 512
        assert list(store["exceptions"]) == [0]
        await vol.unlink("/snap")
        await vol.unlink("/base")


async def test_snapshot_through_a_served_volume(served):
    """A brick process serves the VG; `glusterpy bd snapshot` (a client's
    symlink with the COW size) makes the snapshot, a client overwrites the
    origin and reads both."""
    v1 = os.urandom(64 << 10)
    vg = served.vg.name
    async with served.volume() as vol:
        async with await vol.fopen("/img", "w") as f:
            await f.write(v1)
        r = await trio.to_thread.run_sync(
            served.cli, "snapshot", f"{test_bd_served.VOL}:/{vg}/img", "img-snap", "64k")
        assert r.returncode == 0 and "img-snap" in r.stdout, r.stderr
        assert lvs_origins(served.vg).get("img-snap") == "img"
        assert served.vg.lvs()["img-snap"] == 64 << 10       # the COW store's size
        assert await vol.getsize("/img-snap") == 64 << 10    # the origin's
        async with await vol.fopen("/img", "r+") as f:
            await f.pwrite(b"\0" * (32 << 10), 1000)
        async with await vol.fopen("/img-snap") as f:
            assert await f.read() == v1
        async with await vol.fopen("/img") as f:
            assert await f.read() == v1[:1000] + bytes(32 << 10) + v1[1000 + (32 << 10):]
        await vol.unlink("/img-snap")
        await vol.unlink("/img")
    assert not {"img", "img-snap"} & set(served.vg.lvs())


class Recorded:
    """A real LV's map that records the order of its writes and flushes
    (by chunk), so the commit order can be checked."""

    def __init__(self, real: lvm.ExtentMap, log: list):
        self.real, self.log = real, log
        self.size, self.fds = real.size, real.fds

    def pread(self, size, offset):
        return self.real.pread(size, offset)

    def pwrite(self, data, offset):
        self.log.append(("write", offset // CHUNK))
        return self.real.pwrite(data, offset)

    def sync(self, datasync=True):
        self.log.append(("sync",))
        self.real.sync(datasync)


def test_data_is_flushed_before_its_metadata_entry(vg):
    """The exceptions' data chunks, a flush, then the metadata area, a
    flush; a full area zeroes the next one before it is written (the
    kernel's persistent_commit_exception)."""
    per_area = CHUNK // 16
    vg.lvm.lvcreate(vg.name, "cow", per_area + 8)
    rep = vg.report()
    devices = lvm.Devices()
    try:
        log: list = []
        cow = Recorded(lvm.ExtentMap.for_lv(rep.lvs["cow"], rep, devices), log)
        store = snapshots.ExceptionStore.create(cow, CHUNK, "t/cow")
        assert log == [("write", 1), ("write", 0), ("sync",)]    # area 0 zeroed, header
        del log[:]
        store.copy_in([(7, b"7" * CHUNK), (3, b"3" * CHUNK)])
        assert log == [("write", 2), ("write", 3), ("sync",), ("write", 1), ("sync",)]
        del log[:]
        # fill area 0 (two more than it holds): area 1 (at chunk 1 + 257)
        # zeroed, area 0 written, then area 1 with the rest; data skips area 1
        store.copy_in([(100 + i, bytes([i % 256]) * CHUNK) for i in range(per_area)])
        data = [e[1] for e in log if e[0] == "write"][:per_area]
        assert data == list(range(4, 2 + per_area)) + [per_area + 3, per_area + 4]
        assert log[per_area:] == [("sync",), ("write", per_area + 2), ("write", 1),
                                  ("write", per_area + 2), ("sync",)]
        decoded = decode_store(raw_lv(vg, "cow"))
        assert len(decoded["exceptions"]) == per_area + 2 and decoded["valid"] == 1
        assert decoded["data"](decoded["exceptions"][3]) == b"3" * CHUNK
        # and it reads back as written
        again = snapshots.ExceptionStore.load(lvm.ExtentMap.for_lv(rep.lvs["cow"], rep, devices),
                                              CHUNK, "t/cow")
        assert again.exceptions == store.exceptions and again.next_free == store.next_free
    finally:
        devices.close()
