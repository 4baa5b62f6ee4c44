"""Brick CPU per request under `qemu-img bench` (issue 15's A/B measure).

    python -m bench.brick_cpu [--rounds N] [--count N] [--size 4096] [--write]
                              [--cache none|writeback] [--depth 64]
                              [--set KEY=VALUE ...] [--syscalls OUT.txt]
                              [--profile OUT.txt [--native] [--modules M ...]]

Starts glusterpyd on a free port with a one-brick volume, fills a raw
image, then runs `qemu-img bench -t none -d 64` rounds (sequential reads,
or writes with --write; `--cache writeback` opens the image without
O_DIRECT, so the brick writes into its page cache; --depth 1 for one request
in flight, the latency case of fio's gfapi engine with one job) and prints, per round, the IOPS and the brick
process's CPU (utime+stime from /proc) per request.  --set runs `volume
set` before the rounds, so two invocations compare a translator's modes.
With --syscalls the last round is counted by `strace -c`; with --profile it
is sampled by py-spy (raw format) into OUT.txt, and --modules then gives
each module's share of the samples (inclusive, and its own time).
glusterpyd and its bricks inherit this process's environment, so
GLUSTERPY_PURE_PYTHON=1 measures the pure-Python codec (glusterpy.rpc.compiled).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .servers import unique_volume_name
from .suite_distribute import Glusterpyd
from .suite_protocol import drop_caches

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """utime+stime of every thread of pid, in seconds."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of pid, in seconds: the interpreter's
    work and the kernel's (a large WRITE's receive is mostly the latter)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICK, int(fields[12]) / TICK


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


def bench(url: str, size: int, count: int, write: bool, cache: str = "none",
          depth: int = 64) -> float:
    """Seconds of one qemu-img bench run (its IO phase)."""
    if not write:
        drop_caches()
    out = subprocess.run(["qemu-img", "bench", "-f", "raw", "-t", cache, "-d", str(depth),
                          "-c", str(count), "-s", str(size), "-S", str(size),
                          *(["-w"] if write else []), url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if not m:
        raise RuntimeError(out)
    return float(m.group(1))


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


def _watcher(a, pid: int) -> subprocess.Popen | None:
    """py-spy or strace on the brick for the last round, if asked."""
    if a.profile:
        return subprocess.Popen(
            [str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw",
             "--rate", "200",
             # py-spy unwinds C stacks (mypyc's compiled functions) only with
             # the process paused
             *(["--native"] if a.native else ["--nonblocking"]),
             "-p", str(pid), "-o", str(a.profile)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if a.syscalls:
        return subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o", a.syscalls],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return None


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--cache", choices=("none", "writeback"), default="none",
                    help="qemu-img's -t: none opens the image O_DIRECT, writeback does not")
    ap.add_argument("--depth", type=int, default=64, help="requests in flight (qemu-img -d)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--syscalls", help="strace -c -f the brick's last round into this file")
    ap.add_argument("--profile", type=Path, help="py-spy the brick's last round into this file")
    ap.add_argument("--native", action="store_true",
                    help="py-spy --native: C frames too (mypyc's compiled functions have "
                         "no Python frames; without it their time is their caller's)")
    ap.add_argument("--modules", nargs="*", default=[],
                    help="with --profile: these modules' shares of the samples")
    a = ap.parse_args()
    from glusterpy.rpc import compiled
    mode = f"codec {compiled.MODE}"
    vol = unique_volume_name("bcpu")
    with tempfile.TemporaryDirectory(prefix="brickcpu-", dir="/var/tmp") as tmp:
        gd = Glusterpyd(Path(tmp))
        try:
            brick = Path(tmp) / "brick"
            gd.cli("volume", "create", vol, f"127.0.0.1:{brick}")
            for kv in a.set:
                gd.cli("volume", "set", vol, *kv.split("=", 1))
            gd.cli("volume", "start", vol)
            pid = brick_pid(brick)
            url = f"gluster://127.0.0.1:{gd.port}/{vol}/b.img"
            span = a.count * a.size
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", url, str(span)],
                           check=True, capture_output=True)
            bench(url, 65536, max(span // 65536, 1), True)  # fill it
            for r in range(a.rounds):
                watcher = _watcher(a, pid) if r == a.rounds - 1 else None
                if watcher is not None:
                    time.sleep(1)
                user0, sys0 = cpu_split(pid)
                seconds = bench(url, a.size, a.count, a.write, a.cache, a.depth)
                user1, sys1 = cpu_split(pid)
                used = user1 - user0 + sys1 - sys0
                if watcher is not None:
                    watcher.send_signal(2)
                    watcher.wait(60)
                print(f"{mode} round {r}: {a.count / seconds:,.0f} IOPS, brick CPU "
                      f"{used / a.count * 1e6:.1f} us/request (user {(user1 - user0) / a.count * 1e6:.1f}, "
                      f"system {(sys1 - sys0) / a.count * 1e6:.1f})", flush=True)
            if a.profile and a.modules:
                print("   module: inclusive %, own %")
                for m, (incl, own) in module_shares(a.profile, a.modules).items():
                    print(f"   {m}: {incl:.1f}, {own:.1f}")
        finally:
            gd.stop()


if __name__ == "__main__":
    main()
