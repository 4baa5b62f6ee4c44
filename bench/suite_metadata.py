"""Metadata on a FUSE mount: create, find, ls -lR, du, rm -rf (issue 17).

One brick, 50,000 files of 100 bytes in 100 directories, made through the
mount.  glusterpy's FUSE mount of a glusterpyd volume (its default client
graph: write-behind, io-cache, open-behind, quick-read, md-cache,
io-threads over distribute) against GlusterFS 10's FUSE client of a
glusterd volume on the same disk, one after the other in one run; and
glusterpy once more with volfile-id VOL.noperf (no performance
translators), which shows what the client stack buys.  The cold find runs
after the kernel's caches are dropped; the warm one right after it.
Ratios are GlusterFS 10's time over glusterpy's (above 1.0: glusterpy is
faster).
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from .report import Section
from .servers import GLUSTERFS_PORT, glusterfs_volume, port_24007, unique_volume_name
from .suite_fio import GLUSTERPY, fuse_mount, glusterpyd_volume, wait_for_free_port
from .suite_protocol import drop_caches
from .suite_qemu import kept_notes

NAME = "metadata"
TITLE = "Metadata on a FUSE mount: create, find, ls -lR, du, rm -rf"

#: hand-written notes of this section (what changed between runs, profiles)
NOTES = Path(__file__).with_name("notes") / "metadata.md"

FILES, DIRS = 50_000, 100
QUICK_FILES, QUICK_DIRS = 2_000, 20
STEPS = ("create", "cold find", "warm find", "ls -lR", "du -s", "rm -rf")


def _timed(argv: list[str]) -> float:
    start = time.monotonic()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                   timeout=3600)
    return time.monotonic() - start


def workload(mnt: Path, files: int, dirs: int) -> dict[str, float]:
    top = mnt / "meta"
    out: dict[str, float] = {}
    payload = b"x" * 100
    start = time.monotonic()
    top.mkdir()
    per_dir = files // dirs
    for d in range(dirs):
        where = top / f"d{d:03}"
        where.mkdir()
        for f in range(per_dir):
            with open(where / f"f{f:05}", "wb") as fh:
                fh.write(payload)
    out["create"] = time.monotonic() - start
    drop_caches()
    out["cold find"] = _timed(["find", str(top)])
    out["warm find"] = _timed(["find", str(top)])
    out["ls -lR"] = _timed(["ls", "-lR", str(top)])
    out["du -s"] = _timed(["du", "-s", str(top)])
    out["rm -rf"] = _timed(["rm", "-rf", str(top)])
    return out


def glusterpy_run(work: Path, files: int, dirs: int) -> tuple[dict, dict]:
    vol = unique_volume_name("metapy")
    with glusterpyd_volume(work / "glusterpy", vol):
        with fuse_mount([*GLUSTERPY, "mount", "-o", f"log-file={work / 'glusterpy-mount.log'}",
                         f"127.0.0.1:{GLUSTERFS_PORT}:/{vol}"], work / "glusterpy-mnt") as mnt:
            full = workload(mnt, files, dirs)
        with fuse_mount([*GLUSTERPY, "mount", "-o",
                         f"log-file={work / 'glusterpy-noperf-mount.log'}",
                         f"127.0.0.1:{GLUSTERFS_PORT}:/{vol}.noperf"],
                        work / "glusterpy-noperf-mnt") as mnt:
            noperf = workload(mnt, files, dirs)
    return full, noperf


def glusterfs_run(work: Path, files: int, dirs: int) -> dict:
    vol = unique_volume_name("metagf")
    with glusterfs_volume(work / "glusterfs", vol):
        with fuse_mount(["glusterfs", "--volfile-server=127.0.0.1", f"--volfile-id={vol}",
                         f"--log-file={work / 'glusterfs-mount.log'}"],
                        work / "glusterfs-mnt") as mnt:
            return workload(mnt, files, dirs)


def run(work: Path, quick: bool = False) -> Section:
    files, dirs = (QUICK_FILES, QUICK_DIRS) if quick else (FILES, DIRS)
    wait_for_free_port(GLUSTERFS_PORT)
    with port_24007():
        ours, noperf = glusterpy_run(work, files, dirs)
    wait_for_free_port(GLUSTERFS_PORT)
    with port_24007():
        theirs = glusterfs_run(work, files, dirs)
    section = Section(f"Metadata on a FUSE mount: {files:,} files of 100 bytes in {dirs} "
                      "directories (seconds)",
                      ["step", "glusterpy", "glusterpy, no performance translators",
                       "GlusterFS 10", "ratio"])
    for step in STEPS:
        section.add(step, f"{ours[step]:.2f}", f"{noperf[step]:.2f}", f"{theirs[step]:.2f}",
                    f"{theirs[step] / ours[step]:.2f}x")
    section.notes += [
        "one brick each on the same disk, default volume options, default mount options; "
        "ratio = GlusterFS 10's time / glusterpy's (above 1.0: glusterpy is faster).",
        "create: a Python loop of mkdir and open/write/close through the mount; find, "
        "ls -lR, du -s and rm -rf are the coreutils; cold find after "
        "echo 3 > /proc/sys/vm/drop_caches.",
    ]
    section.notes += kept_notes(NOTES)
    return section

