"""VM image clones (issue 21): copy_file_range through the translators
against GlusterFS 10's `cp` on its FUSE mount.

One image of random data (1 GiB; 64 MiB with --quick), cloned once per
contender, timed from the first call to the clone being on the disks:

  (a) glusterpy replica 3, ext4 bricks:  gfapi copy_file (what
      `glusterpy vm clone` does) - each brick copies its own replica
  (b) glusterpy 1 brick, XFS reflink=1:  the same - a reflink
  (c) GlusterFS 10 replica 3, ext4:      `cp` on its FUSE mount, then fsync
  (d) GlusterFS 10 1 brick, XFS:         the same

GlusterFS 10 serves copy_file_range on one brick only, and its FUSE client
here is built without it, so `cp` reads the image through the client and
writes it back (three times over the wire for replica 3).  The XFS
filesystem is a loop device on the same disk.  Each clone is checked
against its source on the bricks.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

from glusterpy.gfapi import Volume

from .report import Section
from .servers import GLUSTERFS_PORT, port_24007, unique_volume_name
from .suite_distribute import FuseMount, GlusterD, Glusterpyd, make_bricks, require_glusterfs
from .suite_protocol import drop_caches

NAME = "clone"
TITLE = "VM image clone: copy_file_range through the translators vs GlusterFS 10 cp"

MiB = 1 << 20

A = "(a) glusterpy replica 3, ext4: vm clone"
B = "(b) glusterpy 1 brick, XFS reflink: vm clone"
C = "(c) GlusterFS 10 replica 3, ext4: cp on FUSE"
D = "(d) GlusterFS 10 1 brick, XFS: cp on FUSE"


class XfsLoop:
    """An XFS filesystem (reflink=1) in a sparse file on a loop device."""

    def __init__(self, base: Path, size: int):
        base.mkdir(parents=True, exist_ok=True)
        self.image, self.where = base / "xfs.img", base / "xfs"
        with open(self.image, "wb") as f:
            f.truncate(size)
        subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=1", str(self.image)], check=True)
        self.dev = subprocess.run(["losetup", "--find", "--show", str(self.image)], check=True,
                                  capture_output=True, text=True).stdout.strip()
        self.where.mkdir()
        subprocess.run(["mount", self.dev, str(self.where)], check=True)

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


def glusterpy_clone(gd: Glusterpyd, vol: str, bricks: list[Path], layout: list[str],
                    size: int) -> float:
    gd.cli("volume", "create", vol, *layout, *[f"127.0.0.1:{p}" for p in bricks])
    gd.cli("volume", "start", vol)
    block = os.urandom(MiB)
    with Volume("127.0.0.1", vol, port=gd.port) as v:
        with v.open("/base.img", os.O_CREAT | os.O_WRONLY, 0o644) as f:
            for off in range(0, size, MiB):
                f.pwrite(block, off)
            f.fsync()
        drop_caches()
        start = time.perf_counter()
        if v.copy_file("/base.img", "/clone.img") != size:
            raise AssertionError("a short clone")
        seconds = time.perf_counter() - start
    gd.cli("volume", "stop", vol)
    check_clone(bricks, "base.img", "clone.img")
    return seconds


def glusterfs_clone(g: GlusterD, work: Path, prefix: str, bricks: list[Path],
                    layout: list[str], size: int) -> float:
    vol = unique_volume_name(prefix)
    host = socket.gethostname()
    g.cli("volume", "create", vol, *layout, *[f"{host}:{p}" for p in bricks], "force")
    g.volumes.append(vol)
    g.cli("volume", "start", vol)
    mount = FuseMount(work / f"mnt-{prefix}", GLUSTERFS_PORT, vol, work / f"fuse-{prefix}.log")
    try:
        block = os.urandom(MiB)
        with open(mount.where / "base.img", "wb") as f:
            for _ in range(0, size, MiB):
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
    return seconds


def run(work: Path, quick: bool = False) -> Section:
    size = (64 if quick else 1024) * MiB
    require_glusterfs()
    for tool in ("mkfs.xfs", "losetup"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} is not installed")
    times: dict[str, float] = {}
    # under glusterpyd's brick root
    xfs = XfsLoop(work / "glusterpy" / "loop", 4 * size + 1024 * MiB)
    try:
        gd = Glusterpyd(work / "glusterpy")
        try:
            print(f" {A}", flush=True)
            times[A] = glusterpy_clone(gd, "r3", make_bricks(work / "glusterpy", "r3", 3),
                                       ["replica", "3"], size)
            print(f" {B}", flush=True)
            times[B] = glusterpy_clone(gd, "x1", make_bricks(xfs.where, "py", 1), [], size)
        finally:
            gd.stop()
        with port_24007():
            g = GlusterD(work / "glusterfs")
            try:
                print(f" {C}", flush=True)
                times[C] = glusterfs_clone(g, work, "gr3",
                                           make_bricks(work / "glusterfs", "gr3", 3),
                                           ["replica", "3"], size)
                print(f" {D}", flush=True)
                times[D] = glusterfs_clone(g, work, "gx1", make_bricks(xfs.where, "gf", 1), [],
                                           size)
            finally:
                g.stop()
    finally:
        xfs.close()
    section = Section(f"{TITLE} ({size // MiB} MiB image)",
                      ["contender", "seconds", "MiB/s", "vs GlusterFS 10 (same bricks)"])
    for label, ref in ((A, C), (B, D), (C, C), (D, D)):
        seconds = times[label]
        ratio = "" if label == ref else f"{times[ref] / seconds:.1f}x faster"
        section.add(label, f"{seconds:.2f}", f"{size / MiB / seconds:,.0f}", ratio)
    section.notes += [
        "glusterpy's clone is copy_file_range through the client graph: distribute creates "
        "the clone on the source's brick, replicate has every replica copy its own copy, "
        "storage/posix copies data extents with the kernel's copy_file_range (a reflink "
        "on XFS); the client sends requests, not the image.",
        "GlusterFS 10's cp reads the image through its FUSE client and writes it back "
        "(its fuse-bridge has no copy_file_range here; its DHT/AFR would wind it to one "
        "child only).",
        "The page cache is dropped before each clone; each ends with the clone fsynced "
        "(copy_file fsyncs; cp is followed by an fsync of the clone).",
        f"All bricks on this machine's one disk, {os.cpu_count()} cores shared with "
        "other work.",
    ]
    return section
