"""Brick CPU per request under `qemu-img bench` (issue 15's A/B measure).

    python -m bench.brick_cpu [--rounds N] [--count N] [--size 4096] [--write]
                              [--syscalls OUT.txt]
                              [--profile OUT.txt] [--set KEY=VALUE ...]

Starts glusterpyd on a free port with a one-brick volume, fills a raw
image, then runs `qemu-img bench -t none -d 64` rounds and prints, per
round, the IOPS and the brick process's CPU (utime+stime from /proc) per
request.  With --profile, the last round is sampled by py-spy (raw format,
the brick's threads) into OUT.txt.  --set runs `volume set` before the
rounds, so two invocations compare a translator's modes.
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

from .suite_distribute import Glusterpyd
from .suite_protocol import drop_caches

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def brick_pid(gd: Glusterpyd) -> int:
    """The brick process glusterpyd started (its only `brick` child)."""
    out = subprocess.run(["ps", "-o", "pid=,args=", "--ppid", str(gd.proc.pid)],
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        pid, _, args = line.strip().partition(" ")
        if " brick" in args:
            return int(pid)
    raise RuntimeError(f"no brick process under glusterpyd: {out}")


def bench(url: str, size: int, count: int, write: bool) -> float:
    if not write:
        drop_caches()
    out = subprocess.run(["qemu-img", "bench", "-f", "raw", "-t", "none", "-d", "64",
                          "-c", str(count), "-s", str(size), "-S", str(size),
                          *(["-w"] if write else []), url],
                         capture_output=True, text=True, check=True).stdout
    m = re.search(r"Run completed in ([0-9.]+) seconds", out)
    if not m:
        raise RuntimeError(out)
    return float(m.group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--count", type=int, default=20000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--write", action="store_true")
    ap.add_argument("--profile")
    ap.add_argument("--syscalls", help="strace -c -f the brick's last round into this file")
    ap.add_argument("--set", action="append", default=[])
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="brickcpu-") as tmp:
        gd = Glusterpyd(Path(tmp))
        try:
            gd.cli("volume", "create", "bcpu", f"127.0.0.1:{Path(tmp) / 'brick'}")
            for kv in a.set:
                gd.cli("volume", "set", "bcpu", *kv.split("=", 1))
            gd.cli("volume", "start", "bcpu")
            pid = brick_pid(gd)
            url = f"gluster://127.0.0.1:{gd.port}/bcpu/b.img"
            span = a.count * a.size
            subprocess.run(["qemu-img", "create", "-q", "-f", "raw", url, str(span)],
                           check=True, capture_output=True)
            bench(url, 65536, span // 65536, True)  # fill it
            for r in range(a.rounds):
                spy = None
                if a.profile and r == a.rounds - 1:
                    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record", "--format", "raw", "-r", "200",
                                            "-p", str(pid), "-o", a.profile],
                                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                    time.sleep(1)
                if a.syscalls and r == a.rounds - 1:
                    spy = subprocess.Popen(["strace", "-c", "-f", "-p", str(pid), "-o",
                                            a.syscalls], stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL)
                    time.sleep(1)
                before = cpu_seconds(pid)
                seconds = bench(url, a.size, a.count, a.write)
                used = cpu_seconds(pid) - before
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait()
                print(f"round {r}: {a.count / seconds:,.0f} IOPS, brick CPU "
                      f"{used / a.count * 1e6:.1f} us/request", flush=True)
        finally:
            gd.stop()


if __name__ == "__main__":
    main()
