"""A long-lived FUSE client walking a large namespace: its memory (issue 16).

One brick, 1,000,000 files in 1,000 directories, written straight onto the
brick in GlusterFS's layout (each file's trusted.gfid and its .glusterfs
handle, each directory's handle symlink) so that making the namespace
takes a minute, not hours of creates.  A FUSE mount of the volume -
glusterpy's mount against glusterpyd, GlusterFS 10's glusterfs against its
glusterd - then walks it the way `ls -lR` does (readdir and lstat of every
entry), and the client process's resident memory is read after each tenth
of the walk.  glusterpy's client keeps what its translators know per inode
in one inode table bounded by `lru-limit` (65,536 by default, GlusterFS's
default too), so its RSS should stop growing once the table is full.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

from .report import Section
from .servers import GLUSTERFS_PORT, glusterfs_volume, port_24007, unique_volume_name
from .suite_fio import GLUSTERPY, fuse_mount, glusterpyd_volume, wait_for_free_port

NAME = "inode-walk"
TITLE = "A FUSE client walking 1,000,000 entries: resident memory"

DIRS, PER_DIR = 1000, 1000
QUICK_DIRS, QUICK_PER_DIR = 40, 500
SAMPLES = 10


def _handle(brick: Path, gfid: uuid.UUID) -> Path:
    h = gfid.hex
    return brick / ".glusterfs" / h[:2] / h[2:4] / str(gfid)


def populate(brick: Path, dirs: int, per_dir: int) -> None:
    """GlusterFS's brick layout, written directly: what a volume holding
    these files would have on disk."""
    root_gfid = uuid.UUID(int=1)
    for d in range(dirs):
        dgfid = uuid.uuid4()
        path = brick / f"d{d:04}"
        path.mkdir()
        os.setxattr(path, "trusted.gfid", dgfid.bytes)
        handle = _handle(brick, dgfid)
        handle.parent.mkdir(parents=True, exist_ok=True)
        # a directory's handle is a symlink to its parent's handle + name
        rh = root_gfid.hex
        os.symlink(f"../../{rh[:2]}/{rh[2:4]}/{root_gfid}/{path.name}", handle)
        for f in range(per_dir):
            fpath = path / f"f{f:04}"
            fd = os.open(fpath, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
            os.close(fd)
            fgfid = uuid.uuid4()
            os.setxattr(fpath, "trusted.gfid", fgfid.bytes)
            fh = _handle(brick, fgfid)
            fh.parent.mkdir(parents=True, exist_ok=True)
            os.link(fpath, fh)


def client_pid(mnt: Path) -> int:
    """The FUSE daemon serving `mnt`: the process whose command line names it."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            args = (proc / "cmdline").read_bytes().split(b"\0")
            if str(mnt).encode() in args and proc.name != str(os.getpid()):
                return int(proc.name)
    raise RuntimeError(f"no process serves {mnt}")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def walk(mnt: Path, dirs: int) -> tuple[list[tuple[int, float]], float]:
    """readdir + lstat of everything, as ls -lR; (entries walked, client RSS
    in MiB) after each tenth, and the seconds the walk took."""
    pid = client_pid(mnt)
    samples = []
    walked = 0
    start = time.monotonic()
    step = max(1, dirs // SAMPLES)
    for d in range(dirs):
        with os.scandir(mnt / f"d{d:04}") as it:
            for entry in it:
                entry.stat(follow_symlinks=False)
                walked += 1
        if (d + 1) % step == 0:
            samples.append((walked, rss_mib(pid)))
    return samples, time.monotonic() - start


def glusterpy_side(work: Path, dirs: int, per_dir: int):
    vol = unique_volume_name("walkpy")
    with glusterpyd_volume(work / "glusterpy", vol) as brick:
        populate(brick, dirs, per_dir)
        with fuse_mount([*GLUSTERPY, "mount", "-o",
                         f"log-file={work / 'glusterpy-mount.log'}",
                         f"127.0.0.1:{GLUSTERFS_PORT}:/{vol}"], work / "glusterpy-mnt") as mnt:
            return walk(mnt, dirs)


def glusterfs_side(work: Path, dirs: int, per_dir: int):
    vol = unique_volume_name("walkgf")
    with glusterfs_volume(work / "glusterfs", vol) as brick:
        populate(brick, dirs, per_dir)
        with fuse_mount(["glusterfs", "--volfile-server=127.0.0.1", f"--volfile-id={vol}",
                         f"--log-file={work / 'glusterfs-mount.log'}"],
                        work / "glusterfs-mnt") as mnt:
            return walk(mnt, dirs)


def run(work: Path, quick: bool = False) -> Section:
    dirs, per_dir = (QUICK_DIRS, QUICK_PER_DIR) if quick else (DIRS, PER_DIR)
    wait_for_free_port(GLUSTERFS_PORT)
    with port_24007():
        ours, our_time = glusterpy_side(work, dirs, per_dir)
    wait_for_free_port(GLUSTERFS_PORT)
    with port_24007():
        theirs, their_time = glusterfs_side(work, dirs, per_dir)
    section = Section(f"A FUSE client walking {dirs * per_dir:,} entries: resident memory",
                      ["entries walked", "glusterpy client RSS (MiB)",
                       "GlusterFS 10 client RSS (MiB)"])
    for (n, mine), (_, gf) in zip(ours, theirs):
        section.add(f"{n:,}", f"{mine:.0f}", f"{gf:.0f}")
    half = len(ours) // 2
    growth = ours[-1][1] - ours[half - 1][1]
    section.notes += [
        f"{dirs} directories of {per_dir} empty files made on each brick in GlusterFS's "
        "layout; the walk is readdir + lstat of every entry (ls -lR) through the mount, "
        "default mount options and each daemon's default client graph.",
        f"glusterpy's client grew {growth:+.0f} MiB over the second half of the walk "
        f"({ours[half - 1][0]:,} -> {ours[-1][0]:,} entries); its inode table keeps "
        "lru-limit (65,536) inodes.",
        f"walk time: glusterpy {our_time:.0f} s, GlusterFS 10 {their_time:.0f} s "
        f"(ratio {their_time / our_time:.2f}x).",
    ]
    return section
