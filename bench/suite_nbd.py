"""`qemu-img bench` over nbd:// (glusterpy's NBD export of a volume) against
gluster:// on the same volume and image, and against qemu-nbd serving a
local file - the physical reference - in one run (issue 22).

Contenders, one glusterpyd with a one-brick volume on the local disk:

  (a) nbd://      `volume set VOL nbd.export on`: glusterpy nbd (a gfapi
                  client of the brick) serves VOL/bench.img
  (b) gluster://  QEMU's gluster driver (libgfapi in qemu-img) on the same
                  image through the same brick
  (c) qemu-nbd    serving a raw file of the same size in the same directory
                  tree (no glusterpy at all), nbd://
  (d) the file    qemu-img bench on that file directly, no NBD (context for (c))

The same four runs as the qemu suite (sequential 64 KiB writes then reads,
4 KiB writes then reads), `-f raw -t none`, queue depth 64, the page cache
dropped before reads.  qemu-img prints the time of the IO phase alone.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from .report import Section
from .suite_distribute import PY, Glusterpyd, free_port
from .suite_qemu import RUNS, bench, qemu_img
from .servers import unique_volume_name

NAME = "nbd"
TITLE = "qemu-img bench over nbd://: glusterpy's NBD export vs gluster:// vs qemu-nbd"
KiB = 1024
MiB = 1024 * KiB
#: measured beside the suite (hand runs), kept with its section
NOTE_PROFILE = (
    'By hand, after this run: 64 KiB reads from the page cache (no drop) took 2.1-2.3 s '
    'for 4096 requests over nbd:// against 0.8-0.9 s over gluster:// (0.38x); under '
    "cProfile the NBD server was busy for the whole run (trio's loop, io-cache's readv "
    "and the RPC client's record handling, no single hot spot) - three processes (qemu-"
    'img, NBD server, brick) share the 2 cores where gluster:// has two.')


def sizes(quick: bool) -> tuple[int, dict[int, int]]:
    if quick:
        return 64 * MiB, {64 * KiB: 512, 4 * KiB: 2048}
    return 256 * MiB, {64 * KiB: 4096, 4 * KiB: 16384}


def _listening(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port}")


def contender(url: str, counts: dict[int, int]) -> dict[str, float]:
    out = {}
    for label, size, write in RUNS:
        out[label] = bench(url, size, counts[size], write)
        print(f"   {label}: {counts[size]} x {size >> 10} KiB in {out[label]:.2f} s", flush=True)
    return out


def run(work: Path, quick: bool = False) -> Section:
    image_size, counts = sizes(quick)
    load_before = os.getloadavg()
    results: dict[str, dict[str, float]] = {}
    vol = unique_volume_name("nbench")
    nbd_port = free_port()
    gd = Glusterpyd(work / "glusterpy")
    try:
        gd.cli("volume", "create", vol, f"127.0.0.1:{work / 'glusterpy' / 'brick'}")
        gd.cli("volume", "start", vol)
        gd.cli("volume", "set", vol, "nbd.port", str(nbd_port))
        gd.cli("volume", "set", vol, "nbd.export", "on")
        # a sparse file through gfapi (the vm command takes no --mode, so not gd.cli)
        subprocess.run([*PY, "-m", "glusterpy.cli.main", "--remote-host",
                        f"127.0.0.1:{gd.port}", "vm", "create-image", vol, "bench.img",
                        f"{image_size >> 20}M"], check=True, capture_output=True, timeout=120)
        _listening(nbd_port)
        print(" (a) nbd:// glusterpy", flush=True)
        results["nbd"] = contender(f"nbd://127.0.0.1:{nbd_port}/{vol}/bench.img", counts)
        print(" (b) gluster:// same volume", flush=True)
        results["gluster"] = contender(f"gluster://127.0.0.1:{gd.port}/{vol}/bench.img",
                                       counts)
    finally:
        gd.stop()
    print(" (c) qemu-nbd, local file", flush=True)
    local = work / "local.img"
    qemu_img("create", "-q", "-f", "raw", str(local), str(image_size))
    qport = free_port()
    proc = subprocess.Popen(["qemu-nbd", "-t", "-f", "raw", "-p", str(qport), "-b", "127.0.0.1",
                             "-x", "bench", "--shared=8", str(local)],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        _listening(qport)
        results["qemu-nbd"] = contender(f"nbd://127.0.0.1:{qport}/bench", counts)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    print(" (d) qemu-img on the local file itself", flush=True)
    results["file"] = contender(str(local), counts)
    load_after = os.getloadavg()

    section = Section(f"{TITLE} (raw image of {image_size >> 20} MiB, cache=none, depth 64)",
                      ["qemu-img bench", "requests", "nbd:// glusterpy", "gluster:// glusterpy",
                       "qemu-nbd local file", "local file, no NBD", "nbd / gluster",
                       "nbd / qemu-nbd"])
    for label, size, _ in RUNS:
        count = counts[size]
        vals = {}
        for k in ("nbd", "gluster", "qemu-nbd", "file"):
            t = results[k][label]
            vals[k] = count * size / MiB / t if size >= 64 * KiB else count / t
        unit = "MiB/s" if size >= 64 * KiB else "IOPS"
        section.add(f"{label} ({unit})", f"{count} x {size >> 10} KiB",
                    *(f"{vals[k]:,.0f}" for k in ("nbd", "gluster", "qemu-nbd", "file")),
                    f"{vals['nbd'] / vals['gluster']:.2f}x",
                    f"{vals['nbd'] / vals['qemu-nbd']:.2f}x")
    section.notes += [
        "nbd:// and gluster:// use the same image on the same one-brick volume (local "
        "disk); qemu-nbd serves a plain file beside it with its default cache "
        "(writeback), as glusterpy's NBD server and brick use the page cache too.",
        "qemu-nbd (QEMU 7.2) took ~2.5 ms per request here whatever its cache mode "
        "(writeback and none tried by hand), cached reads included, which column (d) - the "
        "same file without NBD - does not; not investigated further, so (c) is a weak "
        "reference for now.",
        "The NBD server is one Python process (trio) between qemu-img and the brick: "
        "every request costs an NBD hop plus the gfapi->brick RPC that gluster:// makes "
        "directly from inside qemu-img.",
        NOTE_PROFILE,
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in load_after)}; 2 cores shared with other "
        "engineers' work while this ran, so absolute numbers are noisy; the ratios "
        "come from one run.",
    ]
    return section
