"""Sequential IO over loopback: glusterpy's protocol against GlusterFS 10's
(issue 3).

Contenders, in one run, 4 files x 256 MiB in 128 KiB requests:

  (a) glusterpy gfapi -> glusterpy brick
  (b) fio --ioengine=gfapi (GlusterFS's libgfapi) -> glusterpy brick
  (c) fio --ioengine=gfapi -> GlusterFS 10 brick  (the reference)

fio's gfapi engine always fetches the volfile from port 24007, so our
volfile server takes 24007 for (a) and (b) and GlusterFS's glusterd takes
it for (c), one after the other.  Writes are followed by fsync in every
contender; reads come after a drop of the page cache, so they hit the
brick's disk the same way for everyone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

from glusterpy.gfapi import Volume

from .report import Section
from .servers import GLUSTERFS_PORT, glusterfs_volume, glusterpy_volume, port_24007, \
    unique_volume_name

NAME = "protocol"
TITLE = "sequential IO over loopback: glusterpy vs GlusterFS 10"
REQUEST = 128 * 1024


def drop_caches() -> None:
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass  # not root: reads may come from the page cache


def fio(vol: str, rw: str, files: int, size: int, directory_hint: str) -> float:
    """MiB/s of one fio gfapi run (numjobs = files, each its own file)."""
    cmd = ["fio", f"--name={directory_hint}", "--ioengine=gfapi", f"--volume={vol}",
           "--brick=127.0.0.1", f"--rw={rw}", f"--bs={REQUEST}", f"--size={size}",
           f"--numjobs={files}", "--group_reporting", "--output-format=json",
           "--end_fsync=1" if rw == "write" else "--invalidate=1"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise RuntimeError(f"fio failed: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    job = json.loads(done.stdout[done.stdout.index("{"):])["jobs"][0]
    side = job["write" if rw == "write" else "read"]
    return side["bw_bytes"] / 2**20


def ours(vol: str, port: int, files: int, size: int) -> dict[str, float]:
    """4 files written then read by 4 threads through one gfapi Volume."""
    buf = os.urandom(REQUEST)
    out = {}
    with Volume("127.0.0.1", vol, port=port) as volume:
        def writer(n):
            f = volume.open(f"/py{n}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            for off in range(0, size, REQUEST):
                f.pwrite(buf, off)
            f.fsync()
            f.close()

        def reader(n):
            f = volume.open(f"/py{n}", os.O_RDONLY)
            for off in range(0, size, REQUEST):
                f.pread(REQUEST, off)
            f.close()
        for label, fn in (("seq write MiB/s", writer), ("seq read MiB/s", reader)):
            if fn is reader:
                drop_caches()
            threads = [threading.Thread(target=fn, args=(n,)) for n in range(files)]
            start = time.perf_counter()
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            out[label] = files * size / 2**20 / (time.perf_counter() - start)
    return out


def fio_pair(vol: str, files: int, size: int) -> dict[str, float]:
    write = fio(vol, "write", files, size, "seq")
    drop_caches()
    read = fio(vol, "read", files, size, "seq")
    return {"seq write MiB/s": write, "seq read MiB/s": read}


def run(work: Path, quick: bool = False) -> Section:
    files, size = (4, 32 << 20) if quick else (4, 256 << 20)
    if shutil.which("fio") is None:
        raise RuntimeError("fio is not installed (make bench installs it)")
    results: dict[str, dict[str, float]] = {}
    with port_24007():
        vol = unique_volume_name("benchpy")
        with glusterpy_volume(work / "glusterpy", vol, volfile_port=GLUSTERFS_PORT):
            results["(a) glusterpy gfapi -> glusterpy brick"] = ours(vol, GLUSTERFS_PORT,
                                                                      files, size)
            results["(b) fio gfapi -> glusterpy brick"] = fio_pair(vol, files, size)
        gvol = unique_volume_name("benchgf")
        with glusterfs_volume(work / "glusterfs", gvol):
            results["(c) fio gfapi -> GlusterFS 10 brick"] = fio_pair(gvol, files, size)
    reference = results["(c) fio gfapi -> GlusterFS 10 brick"]
    section = Section(f"{TITLE} ({files} x {size >> 20} MiB, {REQUEST >> 10} KiB requests)",
                      ["contender", "seq write MiB/s", "ratio to (c)", "seq read MiB/s",
                       "ratio to (c)"])
    for label, r in results.items():
        section.add(label, f"{r['seq write MiB/s']:,.0f}",
                    f"{r['seq write MiB/s'] / reference['seq write MiB/s']:.2f}x",
                    f"{r['seq read MiB/s']:,.0f}",
                    f"{r['seq read MiB/s'] / reference['seq read MiB/s']:.2f}x")
    section.notes += [
        "Aim (issue 3): (a) and (b) >= 1.0x of (c).",
        "Writes end with fsync; the page cache is dropped before reads (as root).",
        "One machine: client and brick share its 2 cores and one disk.",
    ]
    return section
