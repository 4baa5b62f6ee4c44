"""The brick's CPU per request under `qemu-img bench` 4 KiB reads (issue 15).

    python -m bench.brick_cpu [--rounds N] [--count N] [--profile OUT.txt]

One glusterpyd volume (one brick on the local disk, bench.suite_distribute's
Glusterpyd), a raw image written once, then rounds of `qemu-img bench -t none
-d 64 -s 4k` sequential reads over gluster://.  Each round prints the IOPS
and the brick process's utime+stime per request (from /proc/PID/stat, read
around the IO phase).  With --profile, py-spy samples the brick during one
more round and the raw (collapsed) stacks are written to OUT.txt; --modules
then gives the share of samples in the given modules (inclusive, and
their own time).  glusterpyd and its bricks inherit this process's environment,
so GLUSTERPY_PURE_PYTHON=1 measures the pure-Python codec (glusterpy.rpc.compiled).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .suite_distribute import Glusterpyd
from .suite_protocol import drop_caches
from .suite_qemu import qemu_img
from .servers import unique_volume_name

TICK = os.sysconf("SC_CLK_TCK")


def brick_pid(brick_dir: Path) -> int:
    """The brick process serving brick_dir (its command line names it)."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"brick" in cmd and any(str(brick_dir).encode() in a for a in cmd):
            return int(entry)
    raise RuntimeError(f"no brick process for {brick_dir}")


def cpu_seconds(pid: int) -> float:
    """utime+stime of every thread of pid, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def read_round(url: str, pid: int, count: int) -> tuple[float, float]:
    """(IOPS, brick CPU microseconds per request) of one 4 KiB read run."""
    drop_caches()
    before = cpu_seconds(pid)
    out = qemu_img("bench", "-f", "raw", "-t", "none", "-d", "64", "-c", str(count),
                   "-s", "4096", "-S", "4096", url)
    cpu = cpu_seconds(pid) - before
    secs = float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))
    return count / secs, cpu / count * 1e6


def module_shares(raw: Path, modules: list[str]) -> dict[str, tuple[float, float]]:
    """Per module (a substring of a frame's file path), the share of py-spy's
    samples (percent) whose stack passes through it (inclusive) and whose
    innermost frame of the project (glusterpy/, xlators/) is in it (its own
    time, the library calls it makes included); "ALL" for any of them."""
    incl = dict.fromkeys([*modules, "ALL"], 0)
    own = dict.fromkeys([*modules, "ALL"], 0)
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not n.isdigit():
            continue
        count = int(n)
        samples += count
        ours = [f for f in stack.split(";") if re.search(r"\((glusterpy|xlators)/", f)]
        innermost = ours[-1] if ours else ""
        hit_incl = hit_own = False
        for m in modules:
            if m in stack:
                incl[m] += count
                hit_incl = True
            if m in innermost:
                own[m] += count
                hit_own = True
        incl["ALL"] += count * hit_incl
        own["ALL"] += count * hit_own
    if not samples:
        raise RuntimeError(f"py-spy wrote no samples to {raw}")
    return {m: (incl[m] / samples * 100, own[m] / samples * 100) for m in incl}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=32768)
    ap.add_argument("--profile", type=Path)
    ap.add_argument("--modules", nargs="*", default=[])
    ap.add_argument("--native", action="store_true",
                    help="py-spy --native: C frames too (mypyc's compiled functions have "
                         "no Python frames; without it their time is their caller's)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="brickcpu-"))
    vol = unique_volume_name("bcpu")
    gd = Glusterpyd(work)
    try:
        gd.cli("volume", "create", vol, f"127.0.0.1:{work / 'brick'}")
        gd.cli("volume", "start", vol)
        url = f"gluster://127.0.0.1:{gd.port}/{vol}/bench.img"
        qemu_img("create", "-q", "-f", "raw", url, str(256 << 20))
        qemu_img("bench", "-f", "raw", "-t", "none", "-w", "-c", "4096", "-s", "65536", url)
        pid = brick_pid(work / "brick")
        # the brick inherits this environment and these files: the same codec
        from glusterpy.rpc import compiled
        mode = f"codec {compiled.MODE}"
        for i in range(args.rounds):
            iops, us = read_round(url, pid, args.count)
            print(f"{mode} round {i}: {iops:,.0f} IOPS, brick CPU {us:.1f} us/request",
                  flush=True)
        if args.profile:
            spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                                    "--format", "raw", "--rate", "200",
                                    # py-spy unwinds C stacks only with the process paused
                                    *(["--native"] if args.native else ["--nonblocking"]),
                                    "-p", str(pid), "-o", str(args.profile)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            time.sleep(1)
            iops, us = read_round(url, pid, args.count)
            spy.send_signal(2)
            _, err = spy.communicate(timeout=60)
            if not args.profile.exists():
                raise RuntimeError(f"py-spy wrote no profile: {err[-2000:]}")
            print(f"{mode} profiled round: {iops:,.0f} IOPS, brick CPU {us:.1f} us/request")
            if args.modules:
                print("   module: inclusive %, own %")
                for m, (incl, own) in module_shares(args.profile, args.modules).items():
                    print(f"   {m}: {incl:.1f}, {own:.1f}")
    finally:
        gd.stop()
        shutil.rmtree(work, ignore_errors=True)  # the image and the brick: 256 MiB


if __name__ == "__main__":
    main()
