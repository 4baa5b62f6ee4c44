"""A VM image as an LV on storage/bd vs the same image as a file on
storage/posix (issue 9), through gfapi on local graphs, in one run.

Sequential 128 KiB writes and reads over the whole image, then 4 KiB
random reads and writes at aligned offsets.  The image is sized by
ftruncate before the clock starts on both sides (on bd that creates the
LV, so the writes measure IO, not lvresize).  The volume group lives on a
loop device over a sparse file in the work directory; LVM is restricted to
that device.  Without device-mapper (as here) bd reaches the LV's bytes
through its extent map on the loop device, so both sides go through the
page cache: the ratios show storage/bd's own cost per call.  "bd-aio"
runs bd's reads and writes in worker threads.  Every side runs its fops on
gfapi's loop thread (inline_fops=False), as a brick runs them in its event
loop: storage/posix alone could run them in the caller's thread, bd cannot
(its LVM commands suspend).
"""

from __future__ import annotations

import os
import random
import subprocess
import time
from pathlib import Path

from glusterpy import bd
from glusterpy.gfapi import Volume

from .report import Section

NAME = "bd"
TITLE = "a VM image on storage/bd (an LV) vs on storage/posix (a file), gfapi"

SEQ = 128 * 1024
RANDOM = 4096
LVM_CONFIG = "backup{backup=0 archive=0} activation{udev_sync=0 udev_rules=0}"

POSIX = """
volume bench-posix
    type storage/posix
    option directory {brick}
end-volume
"""
BD = """
volume bench-meta
    type storage/posix
    option directory {meta}
end-volume
volume bench-bd
    type storage/bd
    option export {vg}
    option device lv
    option lvm-devices {device}
    option lvm-config "{config}"
    option bd-aio {aio}
    subvolumes bench-meta
end-volume
"""


class LoopVolumeGroup:
    """A VG on one loop device over a sparse file, removed again after."""

    def __init__(self, work: Path, size: int):
        self.name = f"gpbench{os.getpid()}"
        self.file = work / f"{self.name}.img"
        with open(self.file, "wb") as f:
            f.truncate(size)
        self.device = subprocess.run(["losetup", "-f", "--show", str(self.file)], check=True,
                                     capture_output=True, text=True).stdout.strip()
        self.lvm = bd.Lvm(devices=[self.device], config=LVM_CONFIG)
        try:
            self.lvm.run("pvcreate", "-y", self.device)
            self.lvm.run("vgcreate", "-s", "4m", self.name, self.device)
        except BaseException:
            self.remove()
            raise

    def remove(self) -> None:
        for args in (("vgremove", "-f", self.name), ("pvremove", "-y", self.device)):
            try:
                self.lvm.run(*args)
            except bd.LvmError:
                pass
        subprocess.run(["losetup", "-d", self.device], capture_output=True)
        self.file.unlink(missing_ok=True)


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(vol: Volume, size: int, ops: int) -> dict[str, float]:
    f = vol.open("/disk.img", os.O_CREAT | os.O_RDWR, 0o600)
    try:
        f.ftruncate(size)
        buf = os.urandom(SEQ)
        small = os.urandom(RANDOM)
        rng = random.Random(9)
        offsets = [rng.randrange(size // RANDOM) * RANDOM for _ in range(ops)]
        out = {}
        out["seq write MiB/s"] = size / 2**20 / _timed(
            lambda: [f.pwrite(buf, off) for off in range(0, size, SEQ)])
        out["seq read MiB/s"] = size / 2**20 / _timed(
            lambda: [f.pread(SEQ, off) for off in range(0, size, SEQ)])
        out["4k random read IOPS"] = ops / _timed(
            lambda: [f.pread(RANDOM, off) for off in offsets])
        out["4k random write IOPS"] = ops / _timed(
            lambda: [f.pwrite(small, off) for off in offsets])
        f.fsync()
    finally:
        f.close()
    vol.unlink("/disk.img")
    return out


def run(work: Path, quick: bool = False) -> Section:
    size, ops = (32 << 20, 2000) if quick else (512 << 20, 50000)
    section = Section(f"{TITLE} ({size >> 20} MiB image, {SEQ >> 10} KiB sequential and "
                      f"{RANDOM >> 10} KiB random requests, {ops} random ops)",
                      ["metric", "posix file", "bd LV", "ratio", "bd LV (bd-aio)", "ratio"])
    if os.geteuid() != 0 or bd.find_lvm() is None:
        section.notes.append("not run: needs root and lvm2")
        return section
    results = {}
    brick = work / "posix-brick"
    brick.mkdir()
    (work / "posix.vol").write_text(POSIX.format(brick=brick))
    with Volume.from_volfile(work / "posix.vol", inline_fops=False) as vol:
        results["posix"] = measure(vol, size, ops)
    vg = LoopVolumeGroup(work, size + (64 << 20))
    try:
        for aio in ("off", "on"):
            meta = work / f"bd-meta-{aio}"
            meta.mkdir()
            volfile = work / f"bd-{aio}.vol"
            volfile.write_text(BD.format(meta=meta, vg=vg.name, device=vg.device,
                                         config=LVM_CONFIG, aio=aio))
            with Volume.from_volfile(volfile, inline_fops=False) as vol:
                results[f"bd-{aio}"] = measure(vol, size, ops)
    finally:
        vg.remove()
    for metric, base in results["posix"].items():
        off, on = results["bd-off"][metric], results["bd-on"][metric]
        section.add(metric, f"{base:,.0f}", f"{off:,.0f}", f"{off / base:.2f}x",
                    f"{on:,.0f}", f"{on / base:.2f}x")
    dm = "with" if bd.device_mapper_available() else "without"
    section.notes.append(f"This kernel runs {dm} device-mapper; bd's IO went "
                         f"{'to the LV device node' if dm == 'with' else 'through its extent map onto the loop device'}.")
    section.notes.append("The image is sized before timing; reads come from the page cache on "
                         "every side; fops run on gfapi's loop thread on every side.")
    return section
