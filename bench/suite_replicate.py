"""cluster/replicate: replica 3 beside distribute-only and beside GlusterFS 10
replica 3, and heal speed (issue 6).

Volumes of three bricks (all on this machine's one disk), each contender in
turn:

  (a) glusterpy gfapi -> glusterpy replica 3
  (b) glusterpy gfapi -> glusterpy distribute 3   (what replication costs us)
  (c) GlusterFS FUSE  -> glusterpy replica 3      (GlusterFS's AFR over ours)
  (d) GlusterFS FUSE  -> GlusterFS 10 replica 3   (the reference)
  (e) GlusterFS FUSE  -> GlusterFS 10 distribute 3

with the workloads of the distribute suite: creates/s (threads creating 4
KiB files) and sequential write and read MiB/s (128 KiB requests, fsync at
the end of each file, the page cache dropped before reading).

Heal speed: a replica 3 volume with a directory, one brick kept away while
files are written, then the self-heal daemon brings it level.  GlusterFS:
its brick process killed (glusterd leaves it down), files written through
FUSE, `volume start force`, `volume heal`.  glusterpy: glusterpyd restarts
a killed brick within a second, so the brick is kept away the way the heal
tests keep it away - the files are written through the volume's own client
volfile with that brick's port pointing nowhere, with healing disabled -
which leaves the same changelogs and index entries; then `volume heal
enable` and `volume heal`.  Timed from the heal command until every brick's
`statistics heal-count` is 0; files and MiB are what was written.
"""

from __future__ import annotations

import os
import re
import socket
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from glusterpy.gfapi import Volume

from .report import Section
from .servers import GLUSTERFS_PORT, _wait_for, free_port, port_24007, unique_volume_name
from .suite_distribute import (FuseMount, GfapiFiles, GlusterD, Glusterpyd, PosixFiles,
                               make_bricks, measure, require_glusterfs)

NAME = "replicate"
TITLE = "cluster/replicate: replica 3 vs distribute and vs GlusterFS 10, and heal speed"

MiB = 1 << 20
REQUEST = 128 * 1024

A = "(a) glusterpy gfapi -> glusterpy replica 3"
B = "(b) glusterpy gfapi -> glusterpy distribute 3"
C = "(c) GlusterFS FUSE -> glusterpy replica 3"
D = "(d) GlusterFS FUSE -> GlusterFS 10 replica 3"
E = "(e) GlusterFS FUSE -> GlusterFS 10 distribute 3"


def heal_counts(cli, vol: str) -> list[int]:
    """Per brick, the pending heal entries `volume heal VOL statistics
    heal-count` prints (both CLIs print GlusterFS's lines)."""
    out = cli("volume", "heal", vol, "statistics", "heal-count", check=False).stdout
    return [int(n) for n in re.findall(r"Number of entries: (\d+)", out)]


def wait_healed(cli, vol: str, label: str, timeout: float = 3600) -> None:
    """Poll once a second: each poll is a CLI process, and a tighter loop
    would take CPU from the heal it is timing."""
    deadline = time.monotonic() + timeout
    while True:
        counts = heal_counts(cli, vol)
        if len(counts) == 3 and not any(counts):
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{label}'s heal left {counts} after {timeout:g}s")
        time.sleep(1)


def write_heal_set(files, count: int, size: int) -> None:
    data = os.urandom(size)
    if isinstance(files, GfapiFiles):
        for i in range(count):
            with files.vol.fopen(f"/h/f{i}", "w") as f:
                f.write(data)
    else:
        for i in range(count):
            (files.root / "h" / f"f{i}").write_bytes(data)


def pending_on(brick: Path) -> int:
    """Entries in a brick's xattrop index (heal-count is refused while the
    self-heal daemon is disabled, so the bench looks at the brick)."""
    index = brick / ".glusterfs" / "indices" / "xattrop"
    return sum(1 for p in index.iterdir() if not p.name.startswith("xattrop-"))


def glusterfs_brick_pid(g: GlusterD, vol: str, brick: Path) -> int:
    out = g.cli("volume", "status", vol, "--xml").stdout
    for node in ET.fromstring(out).iter("node"):
        if node.findtext("path") == str(brick):
            return int(node.findtext("pid"))
    raise RuntimeError(f"no pid for brick {brick} in gluster volume status")


def heal_glusterpy(gd: Glusterpyd, work: Path, heal_files: int, heal_size: int,
                   options: dict[str, str] | None = None, vol: str = "h3") -> float:
    """Seconds glusterpyd's self-heal daemon takes to heal `heal_files` files
    written while one brick of three was away (`options`: `volume set`
    before the files are written)."""
    print(" heal: glusterpy", flush=True)
    bricks = make_bricks(work / "glusterpy", vol, 3)
    gd.cli("volume", "create", vol, "replica", "3", *[f"127.0.0.1:{p}" for p in bricks])
    for key, value in (options or {}).items():
        gd.cli("volume", "set", vol, key, value)
    gd.cli("volume", "start", vol)
    with Volume("127.0.0.1", vol, port=gd.port) as v:
        v.mkdir("/h")
    gd.cli("volume", "heal", vol, "disable")
    two = Volume.from_volfile(gd.base / "wd" / "vols" / vol / f"{vol}.noperf.vol",
                              xlator_options=[f"{vol}-client-2.remote-port={free_port()}"])
    try:
        write_heal_set(GfapiFiles(two), heal_files, heal_size)
    finally:
        two.umount()
    if not pending_on(bricks[0]):
        raise RuntimeError("writes with a brick away left nothing to heal")
    gd.cli("volume", "heal", vol, "enable")
    start = time.perf_counter()
    gd.cli("volume", "heal", vol)
    wait_healed(gd.cli, vol, "glusterpy")
    seconds = time.perf_counter() - start
    gd.cli("volume", "stop", vol)
    return seconds


def heal_glusterfs(g: GlusterD, work: Path, host: str, heal_files: int,
                   heal_size: int, options: dict[str, str] | None = None) -> float:
    """The same for GlusterFS 10 (its brick process killed, then `start force`)."""
    print(" heal: GlusterFS 10", flush=True)
    vol = unique_volume_name("gh3")
    bricks = make_bricks(work / "glusterfs", vol, 3)
    g.cli("volume", "create", vol, "replica", "3", *[f"{host}:{p}" for p in bricks],
          "force")
    for key, value in (options or {}).items():
        g.cli("volume", "set", vol, key, value)
    g.volumes.append(vol)
    g.cli("volume", "start", vol)
    mount = FuseMount(work / "mnt-gh3", GLUSTERFS_PORT, vol, work / "fuse-gh3.log")
    try:
        (mount.where / "h").mkdir()
        pid = glusterfs_brick_pid(g, vol, bricks[2])
        os.kill(pid, 9)
        # until reaped, glusterd's `start force` takes the zombie
        # for a running brick ("discovered already-running brick")
        _wait_for(lambda: not os.path.exists(f"/proc/{pid}"), "the brick reaped")
        write_heal_set(PosixFiles(mount.where), heal_files, heal_size)
    finally:
        mount.close()
    if not pending_on(bricks[0]):
        raise RuntimeError("GlusterFS: writes with a brick away left nothing to heal")
    start = time.perf_counter()
    g.cli("volume", "start", vol, "force")
    # refused until its shd reaches the brick again; the shd also
    # starts an index crawl by itself when it does
    for _ in range(20):
        if g.cli("volume", "heal", vol, check=False).returncode == 0:
            break
        time.sleep(0.5)
    wait_healed(g.cli, vol, "GlusterFS")
    seconds = time.perf_counter() - start
    return seconds


def run(work: Path, quick: bool = False) -> list[Section]:
    threads = 2 if quick else 4
    per_thread = 50 if quick else 500
    size = (8 if quick else 128) * MiB
    heal_files, heal_size = (100, 16 << 10) if quick else (1000, 128 << 10)
    require_glusterfs()
    io: dict[str, dict[str, float]] = {label: {} for label in (A, B, C, D, E)}
    heal: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()

    gd = Glusterpyd(work / "glusterpy")
    try:
        for label, vol, layout in ((A, "r3", ["replica", "3"]), (B, "d3", [])):
            bricks = make_bricks(work / "glusterpy", vol, 3)
            gd.cli("volume", "create", vol, *layout, *[f"127.0.0.1:{p}" for p in bricks])
            gd.cli("volume", "start", vol)
            print(f" {label}", flush=True)
            with Volume("127.0.0.1", vol, port=gd.port) as v:
                io[label] = measure(GfapiFiles(v), threads, per_thread, size)
            if vol == "r3":
                print(f" {C}", flush=True)
                mount = FuseMount(work / "mnt-py", gd.port, vol, work / "fuse-py.log")
                try:
                    (mount.where / "fuse").mkdir()
                    io[C] = measure(PosixFiles(mount.where / "fuse"), threads, per_thread,
                                    size)
                finally:
                    mount.close()
            gd.cli("volume", "stop", vol)

        heal["glusterpy glustershd"] = {"seconds": heal_glusterpy(gd, work, heal_files,
                                                                   heal_size)}
    finally:
        gd.stop()

    with port_24007():
        g = GlusterD(work / "glusterfs")
        host = socket.gethostname()
        try:
            for label, prefix, layout in ((D, "gr3", ["replica", "3"]), (E, "gd3", [])):
                vol = unique_volume_name(prefix)
                bricks = make_bricks(work / "glusterfs", vol, 3)
                g.cli("volume", "create", vol, *layout, *[f"{host}:{p}" for p in bricks],
                      "force")
                g.volumes.append(vol)
                g.cli("volume", "start", vol)
                print(f" {label}", flush=True)
                mount = FuseMount(work / f"mnt-{prefix}", GLUSTERFS_PORT, vol,
                                  work / f"fuse-{prefix}.log")
                try:
                    io[label] = measure(PosixFiles(mount.where), threads, per_thread, size)
                finally:
                    mount.close()
                g.cli("volume", "stop", vol, "force")

            heal["GlusterFS 10 glustershd"] = {
                "seconds": heal_glusterfs(g, work, host, heal_files, heal_size)}
        finally:
            g.stop()
    load_after = os.getloadavg()
    return report(io, heal, threads, per_thread, size, heal_files, heal_size,
                  load_before, load_after)


def report(io, heal, threads, per_thread, size, heal_files, heal_size, load_before,
           load_after) -> list[Section]:
    table = Section(f"{TITLE}: IO ({threads} threads; {threads} x {per_thread} creates of "
                    f"4 KiB files; {threads} x {size // MiB} MiB sequential, "
                    f"{REQUEST >> 10} KiB requests)",
                    ["contender", "creates/s", "vs (d)", "write MiB/s", "vs (d)",
                     "read MiB/s", "vs (d)"])
    ref = io[D]
    for label, r in io.items():
        cells = []
        for key in ("creates/s", "write MiB/s", "read MiB/s"):
            cells += [f"{r[key]:,.0f}", f"{r[key] / ref[key]:.2f}x"]
        table.add(label, *cells)

    def cost(rep: str, dist: str) -> str:
        return ", ".join(f"{key.split()[0]} {io[rep][key] / io[dist][key]:.2f}x"
                         for key in ("creates/s", "write MiB/s", "read MiB/s"))
    table.notes += [
        f"Replica 3 / distribute 3 on the same stack - glusterpy: {cost(A, B)}; "
        f"GlusterFS 10: {cost(D, E)}.",
        "All three bricks share one disk and the 2 cores with the client, so a replica "
        "write is three writes to the same disk here: the ratios show the replication "
        "machinery (locks, changelog pre-op/post-op, fan-out), not a network.",
        "Writes end with fsync; the page cache is dropped before reads (as root).",
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in load_after)}.",
    ]
    return [table, heal_section(heal, heal_files, heal_size, load_before, load_after)]


def heal_section(heal, heal_files, heal_size, load_before, load_after) -> Section:
    mib = heal_files * heal_size / MiB
    hs = Section(f"{TITLE}: heal speed ({heal_files} files of {heal_size >> 10} KiB written "
                 "while one brick of three was away)",
                 ["self-heal daemon", "files", "MiB", "seconds", "files/s", "MiB/s",
                  "vs GlusterFS"])
    for label, r in heal.items():
        # a row with options is compared with GlusterFS's row with the same
        suffix = label[label.index(" ("):] if " (" in label else ""
        ref_s = heal.get("GlusterFS 10 glustershd" + suffix, {}).get("seconds")
        hs.add(label, heal_files, f"{mib:,.1f}", f"{r['seconds']:.1f}",
               f"{heal_files / r['seconds']:,.1f}", f"{mib / r['seconds']:,.1f}",
               f"{ref_s / r['seconds']:.2f}x" if ref_s else "-")
    hs.notes += [
        "Seconds from the heal command (GlusterFS: from `volume start force`, which brings "
        "its brick back) until every brick's `statistics heal-count` shows 0, polled once "
        "a second by the CLI.  Each heal copies the files within one disk.",
    ]
    hs.notes.append(f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
                    f"after: {'/'.join(f'{x:.2f}' for x in load_after)}.")
    return hs
