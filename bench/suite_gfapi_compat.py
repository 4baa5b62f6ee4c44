"""A libgfapi-python program on glusterpy vs GlusterFS 10 (issue 18).

The same unchanged program - examples/gfapi_tree_checksum.py, written for
libgfapi-python's `from gluster import gfapi` - copies one local tree into
a one-brick volume, walks it there and checks every file's SHA-256, run as
a user runs it (a new Python process each time), against:

  glusterpy     `glusterpy volfile-server` + one `glusterpy brick`
  GlusterFS 10  its glusterd on 24007 + one brick (bench.servers)

Both through glusterpy's client (gluster.gfapi): libgfapi-python 1.2 itself
does not import on Python 3.11 and, per issue 18, crashes on GlusterFS 10's
libgfapi, which is why gluster.gfapi exists.  Timed:
the whole run (process start, import, mount, copy, walk + checksum,
rmtree, umount) and the program's own copy and walk+checksum phases;
median of ROUNDS runs, alternating the servers so load drifts hit both.
"""

from __future__ import annotations

import os
import random
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .report import Section
from .servers import (GLUSTERFS_PORT, free_port, glusterfs_volume, glusterpy_volume,
                      port_24007, unique_volume_name)

NAME = "gfapi-compat"
TITLE = "A libgfapi-python program (copy a tree, walk it, checksum it): glusterpy vs GlusterFS 10"
PROGRAM = Path(__file__).resolve().parent.parent / "examples" / "gfapi_tree_checksum.py"
PHASES = re.compile(r"(\d+) files \((\d+) bytes\), (\d+) directories, (\d+) symlinks: "
                    r"copy ([\d.]+)s, walk\+checksum ([\d.]+)s, total ([\d.]+)s: OK")


def make_tree(root: Path, dirs: int, small: int, large: int, large_size: int) -> None:
    """`small` files of 1-64 KiB spread over `dirs` directories (two levels),
    `large` files of `large_size`, a few symlinks; fixed seed, same every run."""
    rng = random.Random(18)
    paths = []
    for i in range(dirs):
        d = root / f"d{i % 5}" / f"sub{i}"
        d.mkdir(parents=True, exist_ok=True)
        paths.append(d)
    for i in range(small):
        (paths[i % dirs] / f"f{i}.dat").write_bytes(rng.randbytes(rng.randint(1, 64) * 1024))
    for i in range(large):
        (root / f"large{i}.bin").write_bytes(rng.randbytes(large_size))
    os.symlink("d0", root / "link-to-dir")
    os.symlink("large0.bin", root / "link-to-file")


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_program(host: str, port: int, vol: str, src: Path) -> dict[str, float]:
    started, cpu = time.monotonic(), _children_cpu()
    done = subprocess.run([sys.executable, str(PROGRAM), host, vol, str(src), "--port",
                           str(port)], capture_output=True, text=True, timeout=1800,
                          cwd="/")
    wall = time.monotonic() - started
    cpu = _children_cpu() - cpu
    match = PHASES.search(done.stdout)
    if done.returncode or not match:
        raise RuntimeError(f"{PROGRAM.name} failed ({done.returncode}): "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return {"wall": wall, "cpu": cpu, "copy": float(match[5]), "check": float(match[6]),
            "files": int(match[1]), "bytes": int(match[2]), "dirs": int(match[3])}


def load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(work: Path, quick: bool = False) -> Section:
    rounds, dirs, small, large, large_size = (1, 10, 100, 1, 4 << 20) if quick else \
        (3, 40, 800, 4, 16 << 20)
    src = work / "tree"
    src.mkdir()
    make_tree(src, dirs, small, large, large_size)
    load_before = load()
    times: dict[str, list[dict[str, float]]] = {"glusterpy": [], "GlusterFS 10": []}
    vol, gvol = unique_volume_name("benchcompat"), unique_volume_name("benchgfcompat")
    vport = free_port()
    # glusterpy's volfile server on a port of its own; GlusterFS's glusterd
    # needs 24007, held against the test suite's for the whole run
    with port_24007(), \
            glusterpy_volume(work / "glusterpy", vol, volfile_port=vport), \
            glusterfs_volume(work / "glusterfs", gvol):
        for _ in range(rounds):
            times["glusterpy"].append(run_program("127.0.0.1", vport, vol, src))
            times["GlusterFS 10"].append(run_program("127.0.0.1", GLUSTERFS_PORT, gvol, src))
    first = times["glusterpy"][0]
    mib = first["bytes"] / 2**20
    section = Section(f"{TITLE} ({first['files']} files, {mib:.0f} MiB, {first['dirs']} "
                      f"directories; median of {rounds})",
                      ["phase", "glusterpy (s)", "GlusterFS 10 (s)",
                       "ratio GlusterFS time / glusterpy time"])
    med = {who: {k: statistics.median(r[k] for r in runs)
                 for k in ("wall", "cpu", "copy", "check")}
           for who, runs in times.items()}
    for key, label in (("copy", "copy the tree in (fopen/write, chmod, utime, symlink)"),
                       ("check", "walk + read + SHA-256 every file"),
                       ("wall", "whole run (start, mount, copy, check, rmtree, umount)")):
        ours, ref = med["glusterpy"][key], med["GlusterFS 10"][key]
        section.add(label, f"{ours:.2f}", f"{ref:.2f}", f"{ref / ours:.2f}x")
    section.add("the program's own CPU time (client, user+sys)",
                f"{med['glusterpy']['cpu']:.2f}", f"{med['GlusterFS 10']['cpu']:.2f}", "-")
    section.add("copy throughput MiB/s", f"{mib / med['glusterpy']['copy']:.0f}",
                f"{mib / med['GlusterFS 10']['copy']:.0f}",
                f"{med['GlusterFS 10']['copy'] / med['glusterpy']['copy']:.2f}x")
    section.notes += [
        "The client is glusterpy's gluster.gfapi in both columns; the columns differ in the "
        "servers: glusterpy's brick and volfile server vs GlusterFS 10's glusterd and "
        "brick, one brick each on the same local disk. libgfapi-python 1.2 itself is not a "
        "contender: on this Python (3.11) it fails at import (`from collections import "
        "Iterator`), and issue 18 reports its ctypes signatures crash against GlusterFS 10's "
        "libgfapi.",
        "The program's CPU time next to its whole run shows where the time goes: when "
        "the two are close, the client process (Python: gfapi calls handed to the volume's "
        "loop thread, RPC encoding, SHA-256) is the bound, whichever server it talks to.",
        "Each run is a new Python process running examples/gfapi_tree_checksum.py unchanged; "
        "the ratio above 1 means glusterpy's server was faster.",
        "All runs: " + "; ".join(
            f"{who} " + ", ".join(f"{r['wall']:.2f}s" for r in runs)
            for who, runs in times.items()) + " (whole run).",
        f"Load average (1/5/15 min) before: {load_before}, after: {load()}. The machine has "
        "2 cores, shared by client, bricks and the sessions of three other engineers running "
        "their own tests meanwhile: numbers are noisy, compare within this run only.",
    ]
    return section
