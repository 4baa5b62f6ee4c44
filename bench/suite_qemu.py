"""QEMU's own numbers: `qemu-img bench` over gluster:// against a glusterpy
volume and against a GlusterFS 10 volume, in one run (issue 10).

QEMU reaches both through its gluster block driver - libgfapi inside
qemu-img, no FUSE - as a guest's disk would be reached.  Contenders:

  (a) glusterpy: glusterpyd on a free port, a one-brick volume made with
      `glusterpy volume create/start`, gluster://127.0.0.1:PORT/VOL/IMG
  (b) GlusterFS 10: its glusterd on 24007 (under the lock the interop tests
      take), a one-brick volume on a plain directory (force)

Each gets a raw image made with `qemu-img create`, then four runs of
`qemu-img bench -f raw -t none` (cache=none, QEMU's default queue depth of
64): sequential writes of 64 KiB requests over the whole image (which also
fills it), sequential reads of 64 KiB, then 4 KiB writes and 4 KiB reads
over its first part.  The page cache is dropped before each read run (as
root), so reads reach the brick's disk for both.  qemu-img prints the time
of the IO phase alone ("Run completed in N seconds"), so libgfapi's start
and its ~10 s glfs_fini are not counted.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

from .report import Section
from .suite_distribute import Glusterpyd
from .suite_protocol import drop_caches
from .servers import GLUSTERFS_PORT, glusterfs_volume, port_24007, \
    unique_volume_name

NAME = "qemu"
TITLE = "qemu-img bench over gluster://: glusterpy vs GlusterFS 10"
KiB = 1024
MiB = 1024 * KiB

#: measurements made beside this suite (profiles, micro-benchmarks), kept as
#: notes of its section: each "- " bullet at the start of a line is one note,
#: indented lines continue it; the file survives the suite rewriting its section
NOTES = Path(__file__).with_name("notes") / "qemu.md"

#: (label, request size, write?) in the order they run: writes fill what reads read
RUNS = (("write 64 KiB", 64 * KiB, True), ("read 64 KiB", 64 * KiB, False),
        ("write 4 KiB", 4 * KiB, True), ("read 4 KiB", 4 * KiB, False))


def sizes(quick: bool) -> tuple[int, dict[int, int]]:
    """The image size and the request count per request size: sized so that
    the full run of both contenders takes a few minutes here."""
    if quick:
        return 64 * MiB, {64 * KiB: 512, 4 * KiB: 2048}
    return 512 * MiB, {64 * KiB: 8192, 4 * KiB: 32768}


def qemu_img(*args: str, timeout: float = 900) -> str:
    done = subprocess.run(["qemu-img", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    if done.returncode:
        raise RuntimeError(f"qemu-img {' '.join(args)} failed: "
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return done.stdout


def bench(url: str, size: int, count: int, write: bool) -> float:
    """Seconds of one qemu-img bench run's IO phase."""
    if not write:
        drop_caches()
    out = qemu_img("bench", "-f", "raw", "-t", "none", "-c", str(count), "-s", str(size),
                   *(["-w"] if write else []), url)
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if not m:
        raise RuntimeError(f"qemu-img bench printed no time: {out[-1000:]}")
    return float(m.group(1))


def contender(url: str, image_size: int, counts: dict[int, int]) -> dict[str, float]:
    """label -> seconds, for every run of RUNS."""
    qemu_img("create", "-q", "-f", "raw", url, str(image_size))
    out = {}
    for label, size, write in RUNS:
        out[label] = bench(url, size, counts[size], write)
        print(f"   {label}: {counts[size]} x {size >> 10} KiB in {out[label]:.2f} s", flush=True)
    return out


def run(work: Path, quick: bool = False) -> Section:
    image_size, counts = sizes(quick)
    load_before = os.getloadavg()
    results: dict[str, dict[str, float]] = {}
    vol = unique_volume_name("qbench")
    print(" (a) glusterpy", flush=True)
    gd = Glusterpyd(work / "glusterpy")
    try:
        gd.cli("volume", "create", vol, f"127.0.0.1:{work / 'glusterpy' / 'brick'}")
        gd.cli("volume", "start", vol)
        results["glusterpy"] = contender(f"gluster://127.0.0.1:{gd.port}/{vol}/bench.img",
                                         image_size, counts)
    finally:
        gd.stop()  # stops the volume, so its brick, before the daemon
    gvol = unique_volume_name("qbenchgf")
    print(" (b) GlusterFS 10", flush=True)
    with port_24007():
        with glusterfs_volume(work / "glusterfs", gvol):
            results["GlusterFS 10"] = contender(
                f"gluster://127.0.0.1:{GLUSTERFS_PORT}/{gvol}/bench.img", image_size, counts)
    load_after = os.getloadavg()

    section = Section(f"{TITLE} (raw image of {image_size >> 20} MiB, cache=none, depth 64)",
                      ["qemu-img bench", "requests", "glusterpy", "GlusterFS 10",
                       "ratio glusterpy / GlusterFS"])
    for label, size, _ in RUNS:
        count = counts[size]
        ours, theirs = results["glusterpy"][label], results["GlusterFS 10"][label]
        if size >= 64 * KiB:
            unit = "MiB/s"
            a, b = count * size / MiB / ours, count * size / MiB / theirs
        else:
            unit = "IOPS"
            a, b = count / ours, count / theirs
        section.add(f"{label} ({unit})", f"{count} x {size >> 10} KiB", f"{a:,.0f}",
                    f"{b:,.0f}", f"{a / b:.2f}x")
    section.notes += [
        "Sequential requests (qemu-img bench's default step), queue depth 64, "
        "O_DIRECT semantics (-t none); one brick on the local disk for each.",
        "Timed: qemu-img's IO phase only; the page cache is dropped before reads.",
        f"Load average (1/5/15 min) before: {'/'.join(f'{x:.2f}' for x in load_before)}, "
        f"after: {'/'.join(f'{x:.2f}' for x in load_after)}; 2 cores shared by QEMU, "
        "the client translators and the brick.",
    ]
    section.notes += kept_notes()
    return section


def kept_notes(path: Path = NOTES) -> list[str]:
    """The bullets of the hand-written notes file (none when it is absent)."""
    if not path.exists():
        return []
    notes: list[str] = []
    for line in path.read_text().splitlines():
        if line.startswith("- "):
            notes.append(line[2:])
        elif notes and (line.startswith(" ") or not line.strip()):
            notes[-1] += "\n" + line
    return [n.rstrip() for n in notes]
