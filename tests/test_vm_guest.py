"""A guest runs from a glusterpy volume: QEMU's gluster driver, no FUSE.

The guest is Debian's cloud kernel with an initramfs built here
(tests/guest/: busybox-static and the kernel's virtio modules), booted
under TCG (`-accel tcg`; a KVM guest hangs after "Probing EDD" on these
machines) with one virtio disk described by `glusterpy vm disk-xml` and
turned into QEMU's `-drive file=gluster://HOST:PORT/VOL/IMAGE,if=virtio,
cache=...,format=...`.  The image is made by `glusterpy vm create-image`.
The guest's job writes a known pattern to /dev/vda with O_DIRECT (dd),
reads it back the same way, and powers off (`poweroff -f`); then the test
reads the pattern through gfapi - from the raw image directly, or by
following the qcow2 image's L1/L2 tables - and checks the image with
qemu-img.

On a replica 3 volume a brick process is killed (kill -9) while the guest
runs, between its first and its second write: both writes succeed in the
guest, and after `volume start force` and `volume heal` the three bricks
hold the same bytes, pattern included.

Every wait is bounded; the serial console goes to a log file whose end is
quoted when something fails; QEMU, the bricks and the daemon are ended on
the way out.
"""

from __future__ import annotations

import os
import random
import signal
import struct
import subprocess
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from glusterpy.gfapi import Volume
from guest.initramfs import GuestUnavailable, build_initramfs, busybox_path, find_kernel
from guest.qemu import qemu_binary, running_guest
from test_glusterd_support import Daemon, running_daemon, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.interop,
              pytest.mark.skipif(os.geteuid() != 0, reason="bricks need trusted.* xattrs (root)")]

MiB = 1 << 20
BOOT = 90          # seconds to the guest's first marker (TCG on a busy 2-core machine)
JOB = 90           # seconds for the guest's job
EXIT = 60          # QEMU's exit after poweroff (libgfapi's glfs_fini takes ~10 s)


@pytest.fixture(scope="module")
def kernel():
    try:
        qemu_binary()
        busybox_path()
        return find_kernel()
    except GuestUnavailable as e:
        pytest.skip(str(e))


def pattern(seed: int, size: int = MiB) -> bytes:
    return random.Random(seed).randbytes(size)


def drive_from_disk_xml(xml: str) -> str:
    """QEMU's -drive for libvirt's <disk>: what libvirt would pass (its
    first <host>; QEMU's URL syntax takes one server)."""
    disk = ET.fromstring(xml)
    driver, source = disk.find("driver"), disk.find("source")
    host = source.find("host")
    assert source.get("protocol") == "gluster" and host.get("transport") == "tcp"
    assert disk.find("target").get("bus") == "virtio"
    url = f"gluster://{host.get('name')}:{host.get('port')}/{source.get('name')}"
    return f"file={url},if=virtio,cache={driver.get('cache')},format={driver.get('type')}"


def qcow2_read(vol: Volume, path: str, offset: int, length: int) -> bytes:
    """The guest's view of a qcow2 image, read through gfapi: the L1 entry
    gives the L2 table, its entry the data cluster (0: unallocated, zeros).
    Only what a guest's plain writes produce is handled: no compressed
    clusters, no backing file."""
    with vol.fopen(path, "rb") as f:
        header = f.pread(72, 0)
        assert header[:4] == b"QFI\xfb"
        cluster_bits = struct.unpack_from(">I", header, 20)[0]
        l1_offset = struct.unpack_from(">Q", header, 40)[0]
        cluster = 1 << cluster_bits
        entries = cluster // 8
        out = bytearray()
        pos = offset
        while pos < offset + length:
            in_cluster = pos % cluster
            take = min(cluster - in_cluster, offset + length - pos)
            guest_cluster = pos // cluster
            l1 = struct.unpack(">Q", f.pread(8, l1_offset + 8 * (guest_cluster // entries)))[0]
            l2_table = l1 & 0x00FFFFFFFFFFFE00
            data = b"\0" * take
            if l2_table:
                l2 = struct.unpack(">Q", f.pread(8, l2_table + 8 * (guest_cluster % entries)))[0]
                assert not l2 & (1 << 62), "compressed cluster"
                host = l2 & 0x00FFFFFFFFFFFE00
                if host and not l2 & 1:
                    data = f.pread(take, host + in_cluster)
            out += data
            pos += take
        return bytes(out)


def boot(kernel, tmp_path: Path, drive: str, job: str, files: dict[str, bytes], name: str):
    initrd = tmp_path / f"{name}-initrd.gz"
    build_initramfs(initrd, job, files, kernel)
    return running_guest(kernel, initrd, drive, tmp_path / f"{name}-console.log")


WRITE_AND_VERIFY = """
dd if=/pattern of=/dev/vda bs=64k seek={seek} oflag=direct conv=fsync || exit 1
dd if=/dev/vda bs=64k skip={seek} count=16 iflag=direct 2>/dev/null | cmp - /pattern || exit 2
echo GUEST-VERIFY-OK
"""


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_guest_writes_its_disk_on_a_volume(kernel, tmp_path, fmt):
    data = pattern(1)
    offset = 3 * MiB   # 64 KiB blocks: seek=48
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vm", f"127.0.0.1:{tmp_path / 'b1'}")
        d.ok("volume", "start", "vm")
        d.ok("vm", "create-image", "vm", "disk.img", "16M", "--format", fmt)
        drive = drive_from_disk_xml(d.ok("vm", "disk-xml", "vm", "disk.img",
                                         "--format", fmt).out)
        assert drive == (f"file=gluster://127.0.0.1:{d.port}/vm/disk.img,if=virtio,"
                         f"cache=none,format={fmt}")
        with boot(kernel, tmp_path, drive, WRITE_AND_VERIFY.format(seek=offset // 65536),
                  {"pattern": data}, fmt) as guest:
            guest.wait_for("GUEST-INIT", BOOT)
            guest.wait_for("GUEST-JOB-EXIT", JOB)
            rc = guest.wait_exit(EXIT)
            console = guest.console
        assert "GUEST-VERIFY-OK" in console and "GUEST-JOB-EXIT 0" in console, console[-3000:]
        assert rc == 0, f"QEMU exited with {rc}; see {guest.log}"

        with Volume("127.0.0.1", "vm", port=d.port) as vol:
            if fmt == "raw":
                with vol.fopen("/disk.img", "rb") as f:
                    assert f.pread(len(data), offset) == data
                    assert f.pread(offset, 0) == bytes(offset)   # nothing else written
                assert vol.stat("/disk.img").st_size == 16 * MiB
            else:
                assert qcow2_read(vol, "/disk.img", offset, len(data)) == data
                assert qcow2_read(vol, "/disk.img", 0, offset) == bytes(offset)
        if fmt == "qcow2":   # QEMU's allocations in our metadata are consistent
            check = subprocess.run(["qemu-img", "check", str(tmp_path / "b1" / "disk.img")],
                                   capture_output=True, text=True, timeout=60)
            assert check.returncode == 0, check.stdout + check.stderr


KILL_BETWEEN_WRITES = """
dd if=/part-a of=/dev/vda bs=64k seek=16 oflag=direct conv=fsync || exit 1
echo GUEST-PART-A-WRITTEN
read -t {wait} word
[ "$word" = go ] || {{ echo "GUEST-NO-GO [$word]"; exit 2; }}
i=0
while [ $i -lt 16 ]; do
    dd if=/part-b of=/dev/vda bs=64k skip=$i seek=$((32 + i)) count=1 oflag=direct conv=fsync \
        2>/dev/null || exit 3
    i=$((i + 1))
done
echo GUEST-PART-B-WRITTEN
dd if=/dev/vda bs=64k skip=16 count=16 iflag=direct 2>/dev/null | cmp - /part-a || exit 4
dd if=/dev/vda bs=64k skip=32 count=16 iflag=direct 2>/dev/null | cmp - /part-b || exit 5
echo GUEST-VERIFY-OK
"""


def brick_rows(d: Daemon, name: str) -> list[dict]:
    return d.ok("volume", "status", name, "--json").json()["volumes"][0]["bricks"]


def heal_counts(d: Daemon, name: str) -> list[int | None]:
    """Per brick, the "Number of entries" of `volume heal NAME info`."""
    counts = []
    for line in d.ok("volume", "heal", name, "info").out.splitlines():
        if line.startswith("Number of entries:"):
            value = line.split(":", 1)[1].strip()
            counts.append(int(value) if value.isdigit() else None)
    return counts


def test_guest_keeps_writing_while_a_replica_brick_is_killed(kernel, tmp_path):
    part_a, part_b = pattern(2), pattern(3)
    bricks = [tmp_path / f"b{i}" for i in range(3)]
    with running_daemon(tmp_path / "wd") as d:
        d.ok("volume", "create", "vmr", "replica", "3", *(f"127.0.0.1:{b}" for b in bricks))
        d.ok("volume", "start", "vmr")
        d.ok("vm", "create-image", "vmr", "disk.img", "16M")
        drive = drive_from_disk_xml(d.ok("vm", "disk-xml", "vmr", "disk.img").out)
        with boot(kernel, tmp_path, drive, KILL_BETWEEN_WRITES.format(wait=JOB),
                  {"part-a": part_a, "part-b": part_b}, "replica") as guest:
            guest.wait_for("GUEST-PART-A-WRITTEN", BOOT + JOB)
            victim = brick_rows(d, "vmr")[1]["pid"]
            os.kill(victim, signal.SIGKILL)
            wait_for(lambda: not Path(f"/proc/{victim}").exists() or
                     Path(f"/proc/{victim}/stat").read_text().rsplit(")", 1)[1].split()[0]
                     == "Z", 10, "the killed brick to be gone")
            killed_at = time.monotonic()
            guest.send("go")   # the second write starts with the brick dead
            guest.wait_for("GUEST-JOB-EXIT", JOB)
            rc = guest.wait_exit(EXIT)
            console = guest.console
        assert "GUEST-VERIFY-OK" in console and "GUEST-JOB-EXIT 0" in console, console[-3000:]
        assert rc == 0, f"QEMU exited with {rc}; see {guest.log}"

        # the writes are readable through gfapi, whether or not the brick is back
        with Volume("127.0.0.1", "vmr", port=d.port) as vol:
            with vol.fopen("/disk.img", "rb") as f:
                assert f.pread(MiB, MiB) == part_a and f.pread(MiB, 2 * MiB) == part_b

        d.ok("volume", "start", "vmr", "force")
        wait_for(lambda: all(r["online"] for r in brick_rows(d, "vmr")), 60,
                 "all three bricks online after volume start force")
        assert brick_rows(d, "vmr")[1]["pid"] != victim
        d.ok("volume", "heal", "vmr")
        wait_for(lambda: heal_counts(d, "vmr") == [0, 0, 0], 90,
                 "volume heal info to show nothing pending")
        # the surviving bricks recorded that brick 1 missed writes: AFR keeps a
        # changelog key per brick it had to leave out (all zero once healed)
        for b in (bricks[0], bricks[2]):
            assert os.getxattr(b / "disk.img", "trusted.afr.vmr-client-1") == bytes(12), b
        copies = [(b / "disk.img").read_bytes() for b in bricks]
        for i, copy in enumerate(copies):
            assert len(copy) == 16 * MiB, f"brick {i}"
            assert copy[MiB:2 * MiB] == part_a, f"brick {i} lacks the first write"
            assert copy[2 * MiB:3 * MiB] == part_b, f"brick {i} lacks the write made while " \
                f"brick 1 was down ({time.monotonic() - killed_at:.0f}s ago)"
        assert copies[0] == copies[1] == copies[2]
