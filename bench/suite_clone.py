"""VM image clones (issue 21): copy_file_range through the translators
against GlusterFS 10's `cp` on its FUSE mount.

Images of random data (1 GiB and 8 GiB; 64 MiB with --quick), cloned once
per contender, timed from the first call to the clone being on the disks;
one table per size:

  (a) glusterpy replica 3, ext4 bricks:  gfapi copy_file (what
      `glusterpy vm clone` does) - each brick copies its own replica
  (b) glusterpy 1 brick, XFS reflink=1:  the same - a reflink
  (e) glusterpy storage/bd, an LV on a loop-device volume group: the same
      - a new LV and an LV-to-LV block copy in the brick (no device-mapper
      here, so in user space through the LVs' extent maps)
  (f) glusterpy storage/bd: a copy-on-write snapshot (symlink, what
      `glusterpy bd snapshot` does) - an LVM snapshot LV served in user space
  (c) GlusterFS 10 replica 3, ext4:      `cp` on its FUSE mount, then fsync
  (d) GlusterFS 10 1 brick, XFS:         the same

GlusterFS 10 serves copy_file_range on one brick only, and its FUSE client
here is built without it, so `cp` reads the image through the client and
writes it back (three times over the wire for replica 3); it has no
storage/bd any more (removed in GlusterFS 6), so the bd rows are compared
with its 1-brick `cp`.  The XFS filesystem and the volume group are loop
devices over sparse files on the same disk.  Each posix clone is checked
against its source on the bricks; a bd clone or snapshot is checked by
samples read through the volume (64 ranges of 1 MiB).  The bricks of each
contender are removed before the next, so the disk holds one contender's
source and clone at a time (replica 3: six images); when that does not fit
in the free space, the large size is halved until it does, and the table
says so.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from glusterpy import bd
from glusterpy.gfapi import Volume

from .report import Section
from .servers import GLUSTERFS_PORT, port_24007, unique_volume_name
from .suite_bd import LoopVolumeGroup
from .suite_distribute import FuseMount, GlusterD, Glusterpyd, make_bricks, require_glusterfs
from .suite_protocol import drop_caches

NAME = "clone"
TITLE = "VM image clone: copy_file_range through the translators vs GlusterFS 10 cp"

MiB = 1 << 20
GiB = 1 << 30

A = "(a) glusterpy replica 3, ext4: vm clone"
B = "(b) glusterpy 1 brick, XFS reflink: vm clone"
E = "(e) glusterpy storage/bd (LV on a loop VG): vm clone"
F = "(f) glusterpy storage/bd (LV on a loop VG): COW snapshot"
C = "(c) GlusterFS 10 replica 3, ext4: cp on FUSE"
D = "(d) GlusterFS 10 1 brick, XFS: cp on FUSE"
#: each row and the GlusterFS 10 row it is compared with
REFERENCE = {A: C, B: D, E: D, F: D, C: C, D: D}
#: the samples a bd clone or snapshot is checked by
SAMPLES = 64


class XfsLoop:
    """An XFS filesystem (reflink=1) in a sparse file on a loop device,
    mounted with discard so removed bricks give their space back."""

    def __init__(self, base: Path, size: int):
        base.mkdir(parents=True, exist_ok=True)
        self.image, self.where = base / "xfs.img", base / "xfs"
        with open(self.image, "wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", str(self.image)],
                       check=True)
        self.dev = subprocess.run(["losetup", "--find", "--show", str(self.image)], check=True,
                                  capture_output=True, text=True).stdout.strip()
        try:
            self.where.mkdir(exist_ok=True)
            subprocess.run(["mount", "-o", "discard", self.dev, str(self.where)], check=True)
        except BaseException:
            subprocess.run(["losetup", "-d", self.dev], capture_output=True)
            raise

    def close(self) -> None:
        if subprocess.run(["umount", str(self.where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True)
        subprocess.run(["losetup", "-d", self.dev], capture_output=True)
        self.image.unlink(missing_ok=True)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(8 * MiB):
            h.update(chunk)
    return h.hexdigest()


def check_clone(bricks: list[Path], src: str, dst: str) -> None:
    for b in bricks:
        if (b / src).exists() and sha256(b / src) != sha256(b / dst):
            raise AssertionError(f"{b / dst} differs from {b / src}")


def remove_bricks(bricks: list[Path]) -> None:
    for b in bricks:
        shutil.rmtree(b, ignore_errors=True)


def write_image(f, size: int) -> None:
    """Random data, a fresh MiB every 64 (so no block repeats too often
    for a filesystem or device to share)."""
    block = os.urandom(MiB)
    for off in range(0, size, MiB):
        if off % (64 * MiB) == 0:
            block = os.urandom(MiB)
        f.pwrite(block, off)


def glusterpy_clone(gd: Glusterpyd, vol: str, bricks: list[Path], layout: list[str],
                    size: int) -> float:
    gd.cli("volume", "create", vol, *layout, *[f"127.0.0.1:{p}" for p in bricks])
    gd.cli("volume", "start", vol)
    try:
        with Volume("127.0.0.1", vol, port=gd.port) as v:
            with v.open("/base.img", os.O_CREAT | os.O_WRONLY, 0o644) as f:
                write_image(f, size)
                f.fsync()
            drop_caches()
            start = time.perf_counter()
            if v.copy_file("/base.img", "/clone.img") != size:
                raise AssertionError("a short clone")
            seconds = time.perf_counter() - start
    finally:
        gd.cli("volume", "stop", vol, check=False)
        gd.cli("volume", "delete", vol, check=False)
    check_clone(bricks, "base.img", "clone.img")
    remove_bricks(bricks)
    return seconds


def same_samples(v: Volume, a: str, b: str, size: int) -> None:
    """`b` reads as `a` at SAMPLES ranges spread over the image."""
    with v.open(a, os.O_RDONLY) as fa, v.open(b, os.O_RDONLY) as fb:
        for k in range(SAMPLES):
            off = (size - MiB) * k // (SAMPLES - 1) // 4096 * 4096
            if fa.pread(MiB, off) != fb.pread(MiB, off):
                raise AssertionError(f"{b} differs from {a} at {off}")


def bd_clone_and_snapshot(gd: Glusterpyd, work: Path, size: int) -> tuple[float, float]:
    """(e) and (f): a bd volume on a fresh loop-device VG, served by
    glusterpyd; the image is sized first (bd makes the LV then), then
    written, cloned (copy_file) and snapshotted (symlink)."""
    vg = LoopVolumeGroup(work, 2 * size + size // 2 + 512 * MiB)
    try:
        gd.cli("volume", "create", "bdv", "device", "lv", f"127.0.0.1:/{vg.name}")
        gd.cli("volume", "start", "bdv")
        try:
            with Volume("127.0.0.1", "bdv", port=gd.port) as v:
                with v.open("/base.img", os.O_CREAT | os.O_RDWR, 0o644) as f:
                    f.ftruncate(size)
                    write_image(f, size)
                    f.fsync()
                drop_caches()
                start = time.perf_counter()
                copied = v.copy_file("/base.img", "/clone.img")
                clone = time.perf_counter() - start
                if copied < size:
                    raise AssertionError(f"a short clone: {copied}")
                drop_caches()
                start = time.perf_counter()
                v.symlink("base.img", "/snap.img")
                snapshot = time.perf_counter() - start
                same_samples(v, "/base.img", "/clone.img", size)
                same_samples(v, "/base.img", "/snap.img", size)
        finally:
            gd.cli("volume", "stop", "bdv", check=False)
            gd.cli("volume", "delete", "bdv", check=False)
    finally:
        vg.remove()
    return clone, snapshot


def glusterfs_clone(g: GlusterD, work: Path, prefix: str, bricks: list[Path],
                    layout: list[str], size: int) -> float:
    vol = unique_volume_name(prefix)
    host = socket.gethostname()
    g.cli("volume", "create", vol, *layout, *[f"{host}:{p}" for p in bricks], "force")
    g.volumes.append(vol)
    g.cli("volume", "start", vol)
    mount = FuseMount(work / f"mnt-{prefix}", GLUSTERFS_PORT, vol, work / f"fuse-{prefix}.log")
    try:
        with open(mount.where / "base.img", "wb") as f:
            block = os.urandom(MiB)
            for off in range(0, size, MiB):
                if off % (64 * MiB) == 0:
                    block = os.urandom(MiB)
                f.write(block)
            os.fsync(f.fileno())
        drop_caches()
        start = time.perf_counter()
        subprocess.run(["cp", str(mount.where / "base.img"), str(mount.where / "clone.img")],
                       check=True, timeout=3600)
        fd = os.open(mount.where / "clone.img", os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        seconds = time.perf_counter() - start
    finally:
        mount.close()
    g.cli("volume", "stop", vol, "force")
    check_clone(bricks, "base.img", "clone.img")
    remove_bricks(bricks)
    return seconds


def fitting(work: Path, sizes: list[int]) -> tuple[list[int], list[str]]:
    """The sizes whose worst contender (replica 3: source and clone on
    three bricks) fits in the free space with 4 GiB to spare; a size that
    does not is halved until it does."""
    st = os.statvfs(work)
    free = st.f_bavail * st.f_frsize
    out, notes = [], []
    for size in sizes:
        want = size
        while size > 64 * MiB and 6 * size + 4 * GiB > free:
            size //= 2
        if size != want:
            notes.append(f"{want // MiB} MiB images did not fit twice over on three bricks "
                         f"in the {free / GiB:.0f} GiB free: sized down to {size // MiB} MiB.")
        if size not in out:
            out.append(size)
    return out, notes


def one_size(work: Path, size: int) -> dict[str, float]:
    times: dict[str, float] = {}
    run_dir = work / f"{size // MiB}M"
    # under glusterpyd's brick root
    xfs = XfsLoop(run_dir / "glusterpy" / "loop", 3 * size + 1024 * MiB)
    try:
        gd = Glusterpyd(run_dir / "glusterpy")
        try:
            print(f" {size // MiB} MiB {A}", flush=True)
            times[A] = glusterpy_clone(gd, "r3", make_bricks(run_dir / "glusterpy", "r3", 3),
                                       ["replica", "3"], size)
            print(f" {size // MiB} MiB {B}", flush=True)
            times[B] = glusterpy_clone(gd, "x1", make_bricks(xfs.where, "py", 1), [], size)
            if os.geteuid() == 0 and bd.find_lvm() is not None:
                print(f" {size // MiB} MiB {E}, {F}", flush=True)
                times[E], times[F] = bd_clone_and_snapshot(gd, run_dir, size)
        finally:
            gd.stop()
        with port_24007():
            g = GlusterD(run_dir / "glusterfs")
            try:
                print(f" {size // MiB} MiB {C}", flush=True)
                times[C] = glusterfs_clone(g, run_dir, "gr3",
                                           make_bricks(run_dir / "glusterfs", "gr3", 3),
                                           ["replica", "3"], size)
                print(f" {size // MiB} MiB {D}", flush=True)
                times[D] = glusterfs_clone(g, run_dir, "gx1", make_bricks(xfs.where, "gf", 1),
                                           [], size)
            finally:
                g.stop()
    finally:
        xfs.close()
    return times


def run(work: Path, quick: bool = False) -> list[Section]:
    require_glusterfs()
    for tool in ("mkfs.xfs", "losetup"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    sizes, size_notes = fitting(work, [64 * MiB] if quick else [GiB, 8 * GiB])
    sections = []
    for size in sizes:
        times = one_size(work, size)
        section = Section(f"{TITLE} ({size // MiB} MiB image)",
                          ["contender", "seconds", "MiB/s", "vs GlusterFS 10 cp"])
        for label in (A, B, E, F, C, D):
            if label not in times:
                continue
            seconds, ref = times[label], REFERENCE[label]
            ratio = "" if label == ref else f"{times[ref] / seconds:.1f}x faster than {ref[:3]}"
            section.add(label, f"{seconds:.2f}", f"{size / MiB / seconds:,.0f}", ratio)
        section.notes += size_notes + [
            "glusterpy's clone is copy_file_range through the client graph: distribute creates "
            "the clone on the source's brick, replicate has every replica copy its own copy, "
            "storage/posix copies data extents with the kernel's copy_file_range (a reflink "
            "on XFS); the client sends requests, not the image.",
            "storage/bd: the clone is a new LV filled by the brick's LV-to-LV copy, the "
            "snapshot an LVM snapshot LV with a copy-on-write store in the kernel's format "
            f"(this kernel runs {'with' if bd.device_mapper_available() else 'without'} "
            "device-mapper: bd reads and writes the LVs through their extent maps on the loop "
            "device). GlusterFS 10 has no storage/bd (removed in GlusterFS 6): (e) and (f) "
            "are compared with its 1-brick cp (d).",
            "GlusterFS 10's cp reads the image through its FUSE client and writes it back "
            "(its fuse-bridge has no copy_file_range here; its DHT/AFR would wind it to one "
            "child only).",
            "The page cache is dropped before each clone; each ends with the clone on disk "
            "(copy_file fsyncs; cp is followed by an fsync of the clone; a snapshot's "
            "metadata is written by LVM).",
            f"All bricks on this machine's one disk, {os.cpu_count()} cores shared with "
            "other work.",
        ]
        if len(times) < len(REFERENCE):
            section.notes.append("bd rows not run: they need root and lvm2.")
        sections.append(section)
    return sections
