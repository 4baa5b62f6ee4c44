"""glusterpy.bd: LVM's naming rules, its JSON report, and the user-space
extent map checked against real lvm2 on loop devices.

`LoopVG` (used by every test_bd* module) makes a volume group on loop
devices over sparse files in the test's tmp directory, with LVM restricted
to those devices by a devices filter (and no metadata backups), so the
host's LVM is never scanned or touched; it removes LVs, VG, PVs and loop
devices again, also when a test fails.  Without lvm2, root or loop devices
the tests skip and say which is missing.
"""

from __future__ import annotations

import errno
import os
import subprocess
import uuid
from pathlib import Path

import pytest

from glusterpy import bd
from glusterpy.bd import ExtentMap, Lvm, LvmError

#: lvm.conf settings for tests: no metadata backups in /etc/lvm, no udev
TEST_LVM_CONFIG = "backup{backup=0 archive=0} activation{udev_sync=0 udev_rules=0}"

_serial = 0


def need_lvm() -> None:
    if bd.find_lvm() is None:
        pytest.skip("lvm2 is not installed (make test installs it)")
    if os.geteuid() != 0:
        pytest.skip("LVM on loop devices needs root")
    if not os.path.exists("/dev/loop-control"):
        pytest.skip("no loop devices here (/dev/loop-control is missing)")


class LoopVG:
    """A VG named uniquely for this process on `pvs` loop devices."""

    def __init__(self, base: Path, *, pvs: int = 1, size: int = 64 << 20,
                 extent: str = "4k", name: str | None = None):
        global _serial
        _serial += 1
        self.base = base
        self.name = name or f"gpbd{os.getpid()}n{_serial}"
        self.files = [base / f"{self.name}-pv{i}.img" for i in range(pvs)]
        self.devices: list[str] = []
        self.lvm: Lvm | None = None
        try:
            for f in self.files:
                with open(f, "wb") as out:
                    out.truncate(size)
                try:
                    dev = subprocess.run(["losetup", "-f", "--show", str(f)], check=True,
                                         capture_output=True, text=True).stdout.strip()
                except (OSError, subprocess.CalledProcessError) as e:
                    pytest.skip(f"cannot attach a loop device: "
                                f"{getattr(e, 'stderr', '') or e}")
                self.devices.append(dev)
            self.lvm = Lvm(devices=self.devices, config=TEST_LVM_CONFIG)
            self.lvm.run("pvcreate", "-y", *self.devices)
            self.lvm.run("vgcreate", "-s", extent, self.name, *self.devices)
        except BaseException:
            self.destroy()
            raise

    # -- what the tests look at -----------------------------------------------

    def report(self) -> bd.VolumeGroup:
        return self.lvm.report(self.name)

    def lvs(self) -> dict[str, int]:
        """name -> size in bytes, as `lvm fullreport` says."""
        return {lv.name: lv.size for lv in self.report().lvs.values()}

    def read_lv(self, name: str) -> bytes:
        """An LV's bytes read straight from the PVs (through ExtentMap, whose
        placement test_extent_map_places_bytes_where_lvm_says checks)."""
        vg = self.report()
        devices = bd.Devices()
        try:
            m = ExtentMap.for_lv(vg.lvs[name], vg, devices)
            return bytes(m.pread(m.size, 0))
        finally:
            devices.close()

    def options(self) -> dict[str, str]:
        """storage/bd options that keep LVM on this VG's devices."""
        return {"export": self.name, "device": "lv", "lvm-devices": ",".join(self.devices),
                "lvm-config": TEST_LVM_CONFIG}

    def volfile(self, meta: Path, prefix: str = "t", **extra: str) -> str:
        opts = {**self.options(), **{k.replace("_", "-"): v for k, v in extra.items()}}
        lines = [f"volume {prefix}-posix", "    type storage/posix",
                 f'    option directory "{meta}"', "end-volume",
                 f"volume {prefix}-bd", "    type storage/bd"]
        lines += [f'    option {k} "{v}"' for k, v in opts.items()]
        lines += [f"    subvolumes {prefix}-posix", "end-volume"]
        return "\n".join(lines) + "\n"

    def _restore_with(self, blocks: str, rename: dict[str, str] | None = None, *,
                      force: bool = False) -> None:
        """vgcfgbackup, add LV `blocks` (LVM's text format) to
        logical_volumes, rename LVs (those then hidden), vgcfgrestore."""
        backup = self.base / f"{self.name}.meta"
        self.lvm.run("vgcfgbackup", "-f", str(backup), self.name)
        text = backup.read_text()
        for old, new in (rename or {}).items():
            head = f"\t\t{old} {{"
            at = text.index(head)
            block_end = text.index("\t\t}", at)
            body = text[at:block_end].replace(head, f"\t\t{new} {{").replace(
                '"VISIBLE"', '').replace(', ]', ']')
            text = text[:at] + body + text[block_end:]
        start = text.index("logical_volumes {") + len("logical_volumes {")
        depth, end = 1, start
        while depth:
            depth += {"{": 1, "}": -1}.get(text[end], 0)
            end += 1
        backup.write_text(text[:end - 1] + blocks + text[end - 1:])
        self.lvm.run("vgcfgrestore", *(["--force"] if force else []), "-f", str(backup),
                     self.name)

    def craft_thin(self, pool: str, thin: str, pool_extents: int, thin_extents: int) -> None:
        """A thin pool with one thin LV, in LVM's metadata (lvcreate needs
        device-mapper for both): data and metadata LVs made linear, then
        renamed <pool>_tdata/_tmeta and hidden, as LVM keeps them."""
        self.lvm.lvcreate(self.name, "tm", 2)
        self.lvm.lvcreate(self.name, "td", pool_extents)
        blocks = (f'\n\t\t{pool} {{\n\t\t\tid = "{_lvm_id()}"\n'
                  f'\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]\n\t\t\tflags = []\n'
                  f'\t\t\tsegment_count = 1\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n'
                  f'\t\t\t\textent_count = {pool_extents}\n\t\t\t\ttype = "thin-pool"\n'
                  f'\t\t\t\tmetadata = "{pool}_tmeta"\n\t\t\t\tpool = "{pool}_tdata"\n'
                  f'\t\t\t\ttransaction_id = 1\n\t\t\t\tchunk_size = 128\n'
                  f'\t\t\t\tdiscards = "passdown"\n\t\t\t\tzero_new_blocks = 1\n'
                  f'\t\t\t}}\n\t\t}}\n'
                  f'\n\t\t{thin} {{\n\t\t\tid = "{_lvm_id()}"\n'
                  f'\t\t\tstatus = ["READ", "WRITE", "VISIBLE"]\n\t\t\tflags = []\n'
                  f'\t\t\tsegment_count = 1\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n'
                  f'\t\t\t\textent_count = {thin_extents}\n\t\t\t\ttype = "thin"\n'
                  f'\t\t\t\tthin_pool = "{pool}"\n\t\t\t\ttransaction_id = 0\n'
                  f'\t\t\t\tdevice_id = 1\n\t\t\t}}\n\t\t}}\n')
        self._restore_with(blocks, {"tm": f"{pool}_tmeta", "td": f"{pool}_tdata"}, force=True)
        assert self.report().lvs[thin].thin

    def craft_snapshot(self, origin: str, name: str, extents: int) -> None:
        """Make `name` a copy-on-write snapshot of `origin` in LVM's metadata.

        lvcreate -s needs device-mapper; LVM's metadata does not: the
        snapshot is written the way LVM writes one (a COW LV plus a hidden
        `snapshotN` LV of segment type "snapshot" naming origin and
        cow_store) and put back with vgcfgrestore, so `lvs` shows a real
        origin/snapshot pair.  The COW LV's start is zeroed, as lvcreate -s
        blanks it: a fresh exception store."""
        self.lvm.lvcreate(self.name, name, extents)
        self.zero_lv_start(name, min(extents, 2) * self.report().extent_size)
        extent_count = self.report().lvs[origin].size // self.report().extent_size
        snap = (f'\n\t\tsnapshot{uuid.uuid4().int % 10000} {{\n\t\t\tid = "{_lvm_id()}"\n'
                f'\t\t\tstatus = ["READ", "WRITE"]\n\t\t\tflags = []\n'
                f'\t\t\tsegment_count = 1\n\t\t\tsegment1 {{\n\t\t\t\tstart_extent = 0\n'
                f'\t\t\t\textent_count = {extent_count}\n\t\t\t\ttype = "snapshot"\n'
                f'\t\t\t\tchunk_size = 8\n\t\t\t\torigin = "{origin}"\n'
                f'\t\t\t\tcow_store = "{name}"\n\t\t\t}}\n\t\t}}\n')
        self._restore_with(snap)
        assert self.report().lvs[name].origin == origin

    def zero_lv_start(self, name: str, nbytes: int) -> None:
        """Zeros over an LV's first bytes, written to its first PV area."""
        rep = self.report()
        pv_name, first = rep.lvs[name].segments[0].areas[0]
        pv = rep.pvs[pv_name]
        with open(pv.name, "r+b") as dev:
            dev.seek(pv.pe_start + first * rep.extent_size)
            dev.write(bytes(nbytes))

    # -- clean-up ----------------------------------------------------------------

    def remove_all_lvs(self) -> None:
        self.lvm.run("lvremove", "-f", self.name)

    def destroy(self) -> None:
        """Everything goes, each step tried even when one before failed
        (with storage/bd's lock file of the VG: no graph serves it now)."""
        if self.lvm is not None:
            try:
                from xlators.storage.bd import vg_lock_path
                os.unlink(vg_lock_path(self.report().uuid))
            except (LvmError, OSError):
                pass
            for args in (("vgremove", "-f", self.name), ("pvremove", "-y", *self.devices)):
                try:
                    self.lvm.run(*args)
                except LvmError:
                    pass
        for dev in self.devices:
            subprocess.run(["losetup", "-d", dev], capture_output=True)
        for f in self.files:
            try:
                f.unlink()
            except FileNotFoundError:
                pass


def _lvm_id() -> str:
    """An LVM object id: 32 characters grouped 6-4-4-4-4-4-6."""
    h = uuid.uuid4().hex
    return "-".join(h[i:j] for i, j in ((0, 6), (6, 10), (10, 14), (14, 18), (18, 22),
                                         (22, 26), (26, 32)))


@pytest.fixture(scope="module")
def loop_vg(tmp_path_factory):
    need_lvm()
    vg = LoopVG(tmp_path_factory.mktemp("vg"))
    try:
        yield vg
    finally:
        vg.destroy()


@pytest.fixture
def vg(loop_vg):
    """The module's VG, left without LVs by each test."""
    yield loop_vg
    loop_vg.remove_all_lvs()


# -- names and sizes ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["vm1", "a+b.c-d_e", "x" * 100, "lvol0", "disk.qcow2"])
def test_lv_names_lvm_takes(name):
    bd.check_lv_name(name, "vg0")


@pytest.mark.parametrize("name,why", [
    ("", "empty"), ("a/b", "characters"), ("sp ace", "characters"), ("über", "characters"),
    ("-x", "hyphen"), (".", "not an LV name"), ("..", "not an LV name"),
    ("snapshot1", "reserved"), ("pvmove0", "reserved"), ("a_tmeta", "reserved"),
    ("x_rimage_0", "reserved"), ("glusterpy_unlinked_00", "reserved by glusterpy"),
    ("y" * 124, "longer"),
])
def test_lv_names_lvm_refuses(name, why):
    with pytest.raises(ValueError, match=why):
        bd.check_lv_name(name, "vg0")


def test_lvm_refuses_what_check_lv_name_refuses(vg):
    """The rules are LVM's: lvcreate says no to the same names."""
    for name in ("snapshotx", "a_tmeta", "-lead", "über"):
        with pytest.raises(LvmError) as e:
            vg.lvm.lvcreate(vg.name, name, 1)
        assert e.value.errno == errno.EINVAL, e.value
    assert vg.lvs() == {}


def test_dm_name_doubles_hyphens():
    assert bd.dm_name("vg-a", "lv-b") == "vg--a-lv--b"


@pytest.mark.parametrize("text,size", [("4096", 4096), ("512k", 512 << 10), ("10M", 10 << 20),
                                       ("10MB", 10 << 20), ("1GiB", 1 << 30), ("1.5g", 3 << 29)])
def test_sizes(text, size):
    assert bd.parse_size(text) == size


@pytest.mark.parametrize("text", ["", "ten", "10X", "-5", "5 M B"])
def test_bad_sizes(text):
    with pytest.raises(ValueError):
        bd.parse_size(text)


@pytest.mark.parametrize("stderr,err", [
    ('  Volume group "vg" has insufficient free space (10 extents): 20 required.', errno.ENOSPC),
    ('  Logical Volume "a" already exists in volume group "vg"', errno.EEXIST),
    ('  Failed to find logical volume "vg/x"', errno.ENOENT),
    ('  Volume group "nosuch" not found\n  Cannot process volume group nosuch', errno.ENOENT),
    ('  Names starting "snapshot" are reserved. Please choose a different LV name.',
     errno.EINVAL),
    ("  Can't create snapshot without using device-mapper kernel driver.", errno.ENOTSUP),
    ('  Logical volume vg/a in use.', errno.EBUSY),
    ("  something unexpected", errno.EIO),
])
def test_lvm_messages_become_errnos(stderr, err):
    e = bd.lvm_error("lvcreate", "  WARNING: Activation disabled.\n" + stderr)
    assert e.errno == err
    assert "WARNING" not in e.strerror


def test_device_mapper_detection_reads_proc_misc():
    with open("/proc/misc") as f:
        listed = any(line.split()[1:] == ["device-mapper"] for line in f)
    assert bd.device_mapper_available() == listed


# -- the report and the extent map on real LVM --------------------------------------


def test_report_reads_the_vg(vg):
    vg.lvm.lvcreate(vg.name, "a", 3, tags=[bd.gfid_tag(uuid.uuid4().bytes)])
    rep = vg.report()
    assert rep.name == vg.name and rep.extent_size == 4096
    assert rep.free == rep.size - 3 * 4096 and rep.free_extents == rep.free // 4096
    assert list(rep.pvs) == vg.devices and rep.pvs[vg.devices[0]].pe_start > 0
    lv = rep.lvs["a"]
    assert lv.size == 3 * 4096 and lv.public and lv.mappable and not lv.thin
    assert lv.gfid is not None and len(lv.gfid) == 16
    assert lv.segments[0].areas == ((vg.devices[0], 0),)


def test_nonexistent_vg_is_enoent(vg):
    with pytest.raises(LvmError) as e:
        vg.lvm.report(vg.name + "-nope")
    assert e.value.errno == errno.ENOENT


def test_extent_map_places_bytes_where_lvm_says(vg):
    """An LV in three segments (another LV in the way of each extension):
    bytes written through the map sit on the PV at pe_start + physical
    extent * extent size, the extents LVM's report names."""
    vg.lvm.lvcreate(vg.name, "frag", 2)
    vg.lvm.lvcreate(vg.name, "wall1", 1)
    vg.lvm.lvresize(vg.name, "frag", 5)
    vg.lvm.lvcreate(vg.name, "wall2", 1)
    vg.lvm.lvresize(vg.name, "frag", 9)
    rep = vg.report()
    lv = rep.lvs["frag"]
    assert len(lv.segments) == 3
    devices = bd.Devices()
    try:
        m = ExtentMap.for_lv(lv, rep, devices)
        data = os.urandom(lv.size)
        assert m.pwrite([data[:5000], data[5000:]], 0) == lv.size
        assert bytes(m.pread(lv.size + 100, 0)) == data        # short at the end
        assert m.pread(10, lv.size) == b""
        pv = rep.pvs[vg.devices[0]]
        with open(pv.name, "rb") as raw:
            for seg in lv.segments:
                (_, first_pe), = seg.areas
                raw.seek(pv.pe_start + first_pe * rep.extent_size)
                got = raw.read(seg.extents * rep.extent_size)
                start = seg.start_extent * rep.extent_size
                assert got == data[start:start + len(got)]
        m.zero(100, 3 * 4096)
        assert bytes(m.pread(lv.size, 0)) == data[:100] + bytes(3 * 4096) + data[100 + 3 * 4096:]
        with pytest.raises(OSError) as e:
            m.pwrite(b"x", lv.size)
        assert e.value.errno == errno.ENOSPC
        small = m.truncated(3 * 4096)
        assert small.size == 3 * 4096 and m.size == lv.size
    finally:
        devices.close()


def test_striped_lv_round_trips(tmp_path):
    """Two PVs, -i2: stripes alternate between the PVs, stripe_size each
    (a stripe is at most an extent, hence 64 KiB extents here)."""
    need_lvm()
    two = LoopVG(tmp_path, pvs=2, size=16 << 20, extent="64k")
    try:
        two.lvm.run("lvcreate", "-y", "-n", "st", "-i", "2", "-I", "8k", "-l", "4", two.name)
        rep = two.report()
        lv = rep.lvs["st"]
        (seg,) = lv.segments
        assert len(seg.areas) == 2 and seg.stripe_size == 8192
        devices = bd.Devices()
        try:
            m = ExtentMap.for_lv(lv, rep, devices)
            data = os.urandom(lv.size)
            m.pwrite(data, 0)
            assert bytes(m.pread(lv.size, 0)) == data
            assert bytes(m.pread(10000, 8000)) == data[8000:18000]
            # stripe 0 on the first PV, stripe 1 on the second
            for i, (pv_name, first_pe) in enumerate(seg.areas):
                pv = rep.pvs[pv_name]
                with open(pv.name, "rb") as raw:
                    raw.seek(pv.pe_start + first_pe * rep.extent_size)
                    assert raw.read(8192) == data[i * 8192:(i + 1) * 8192]
        finally:
            devices.close()
    finally:
        two.destroy()


def test_snapshot_and_origin_without_device_mapper(vg):
    """A snapshot's segments are its exception store, so it has no map of
    its own; its origin's map reads but refuses writes (nothing would copy
    the old data to the snapshot)."""
    vg.lvm.lvcreate(vg.name, "base", 4)
    vg.craft_snapshot("base", "snap", 2)
    rep = vg.report()
    assert rep.snapshots_of("base") == ["snap"] and rep.lvs["base"].has_snapshots
    assert rep.lvs["snap"].snapshot and not rep.lvs["snap"].mappable
    devices = bd.Devices()
    try:
        with pytest.raises(LvmError) as e:
            ExtentMap.for_lv(rep.lvs["snap"], rep, devices)
        assert e.value.errno == errno.ENOTSUP and "copy-on-write" in e.value.strerror
        m = ExtentMap.for_lv(rep.lvs["base"], rep, devices)
        assert len(m.pread(10, 0)) == 10
        with pytest.raises(OSError) as e:
            m.pwrite(b"x", 0)
        assert e.value.errno == errno.EROFS
    finally:
        devices.close()
