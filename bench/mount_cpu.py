"""The FUSE mount's CPU per file and per listed entry, A/B between checkouts.

    python -m bench.mount_cpu [--files N] [--rounds R] [--noperf] CHECKOUT...

A glusterpy brick process and a foreground FUSE mount of a client graph
like glusterpyd's (distribute, utime, write-behind, io-cache, open-behind,
quick-read, md-cache, io-threads over protocol/client; `--noperf`: none of
the performance translators), both run from CHECKOUT (its directory goes
first on PYTHONPATH).  Each round creates N files of 100 bytes in 10
directories through the mount, then runs find, ls -lR and du -s (warm),
ls -lR after the kernel dropped its dentries and inodes (cold), stat of
every file once the attribute and md-cache timeouts have passed, and
rm -rf (`--steps` picks some); `warm stat` (not in the default steps) is
bench/suite_fio.py's small-file stat row: every file stat'ed right after
the create step, so the kernel and md-cache still hold some of them.  The
mount's and the brick's on-CPU time (every thread's
/proc/PID/task/TID/schedstat) are taken around each step; the report gives
both, mount/brick.  The checkouts alternate round
by round, so a load that comes and goes on a shared machine falls on all of
them alike; the report is the median per step, in microseconds per file.
Counts of work, not times, are what cProfile gives: `--profile FILE` runs
the mount under cProfile (one checkout, one round) and writes its stats.

Nothing here talks to glusterd: the brick serves on a free port and the
client volfile names it, so this runs beside real GlusterFS and glusterpyd.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STEPS = ("create", "find", "ls -lR", "du -s", "cold ls -lR", "stat", "rm -rf")
#: steps run only when --steps names them
EXTRA_STEPS = ("warm stat",)
PERF = ("performance/write-behind", "performance/io-cache", "performance/open-behind",
        "performance/quick-read", "performance/md-cache", "performance/io-threads")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def client_volfile(port: int, perf: bool) -> str:
    text = ("volume v-client-0\n    type protocol/client\n    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume v-locks\n"
            "end-volume\n\n")
    layers = [("cluster/distribute", []), ("features/utime", ["option noatime on"])]
    if perf:
        layers += [(kind, []) for kind in PERF]
    below = "v-client-0"
    for kind, options in layers:
        name = "v-" + kind.split("/")[1]
        text += f"volume {name}\n    type {kind}\n" + "".join(f"    {o}\n" for o in options)
        text += f"    subvolumes {below}\nend-volume\n\n"
        below = name
    return text + f"volume v\n    type debug/io-stats\n    subvolumes {below}\nend-volume\n"


def brick_volfile(directory: Path) -> str:
    return (f"volume v-posix\n    type storage/posix\n    option directory {directory}\n"
            "end-volume\n\nvolume v-locks\n    type features/locks\n    subvolumes v-posix\n"
            "end-volume\n\nvolume v-server\n    type protocol/server\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            "    option auth.addr.v-locks.allow 127.0.0.1\n    subvolumes v-locks\nend-volume\n")


def cpu(pid: int) -> float:
    """Seconds on a CPU of every thread of `pid` (schedstat counts in ns;
    /proc/PID/stat's clock ticks are too coarse for a step of 50 ms)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return total / 1e9


class Setup:
    """A brick and a mount, both from `checkout`."""

    def __init__(self, base: Path, checkout: Path, perf: bool, profile: Path | None = None):
        self.base = base
        self.env = {**os.environ, "PYTHONPATH": str(checkout)}
        # `python -m` puts the working directory first on sys.path: it must
        # be the checkout too, or every checkout runs the caller's code
        self.cwd = checkout
        self.procs: list[subprocess.Popen] = []
        brick = base / "brick"
        brick.mkdir(parents=True)
        self.mnt = base / "mnt"
        self.mnt.mkdir()
        port = free_port()
        (base / "brick.vol").write_text(brick_volfile(brick))
        (base / "client.vol").write_text(client_volfile(port, perf))
        self.brick = self._spawn([sys.executable, "-m", "glusterpy.cli.main", "brick", "--volfile",
                     str(base / "brick.vol"), "--port", str(port), "--log-file",
                     str(base / "brick.log")])
        self._wait(lambda: (base / "brick.log").exists() and
                   "signed in" in (base / "brick.log").read_text() or _listening(port), "brick")
        prof = ["-m", "cProfile", "-o", str(profile)] if profile else []
        mount = [sys.executable, *prof, "-m", "glusterpy.fuse"]
        self.mount = self._spawn([*mount, "--volfile", str(base / "client.vol"), "-N", "-o",
                                  f"log-file={base / 'mount.log'}", str(self.mnt)])
        self._wait(lambda: os.path.ismount(self.mnt), "mount")

    def _spawn(self, argv: list[str]) -> subprocess.Popen:
        proc = subprocess.Popen(argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def _wait(self, ready, what: str) -> None:
        deadline = time.monotonic() + 30
        while not ready():
            if any(p.poll() is not None for p in self.procs) or time.monotonic() > deadline:
                raise RuntimeError(f"the {what} did not start; logs in {self.base}")
            time.sleep(0.1)

    def close(self) -> None:
        if os.path.ismount(self.mnt):
            if subprocess.run(["fusermount3", "-u", str(self.mnt)]).returncode:
                subprocess.run(["fusermount3", "-uz", str(self.mnt)])
        for p in reversed(self.procs):
            try:
                p.wait(20 if p is self.mount else 0.1)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        return True
    except OSError:
        return False


def drop_caches() -> None:
    """The kernel forgets the mount's dentries and inodes (its forgets
    reach the mount, so a listing after it looks every name up again)."""
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("2\n")


def workload(mnt: Path, pid: int, files: int, steps=STEPS,
             brick: int | None = None) -> dict[str, tuple[float, float]]:
    """(mount, brick) CPU seconds per step (create always runs: the others
    need it); the brick's is 0 without its pid."""
    top = mnt / "t"
    dirs = 10
    out: dict[str, tuple[float, float]] = {}
    payload = b"x" * 100

    def step(name, fn):
        if name not in steps and name != "create":
            return
        before, brick_before = cpu(pid), cpu(brick) if brick else 0.0
        fn()
        out[name] = (cpu(pid) - before, (cpu(brick) - brick_before) if brick else 0.0)

    def create():
        top.mkdir()
        for d in range(dirs):
            (top / f"d{d}").mkdir()
            for f in range(files // dirs):
                with open(top / f"d{d}" / f"f{f:05}", "wb") as fh:
                    fh.write(payload)

    def run(*argv):
        return lambda: subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)

    def stat_all():
        for d in range(dirs):
            for f in range(files // dirs):
                os.stat(top / f"d{d}" / f"f{f:05}")
    step("create", create)
    step("warm stat", stat_all)
    step("find", run("find", str(top)))
    step("ls -lR", run("ls", "-lR", str(top)))
    step("du -s", run("du", "-s", str(top)))
    step("cold ls -lR", lambda: (drop_caches(), run("ls", "-lR", str(top))()))
    if "stat" in steps:
        time.sleep(1.1)  # past the attribute and md-cache timeouts: each stat reaches the mount
    step("stat", stat_all)
    step("rm -rf", run("rm", "-rf", str(top)))
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.mount_cpu")
    p.add_argument("checkouts", nargs="+", type=Path)
    p.add_argument("--files", type=int, default=5000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--noperf", action="store_true")
    p.add_argument("--steps", default=",".join(STEPS),
                   help="the steps to run, comma-separated (create always runs)")
    p.add_argument("--profile", type=Path, help="cProfile the mount (first checkout, one round)")
    args = p.parse_args(argv)
    results: dict[Path, list[dict[str, float]]] = {c: [] for c in args.checkouts}
    rounds = 1 if args.profile else args.rounds
    for r in range(rounds):
        for checkout in args.checkouts[:1] if args.profile else args.checkouts:
            base = Path(tempfile.mkdtemp(prefix="mountcpu."))
            setup = Setup(base, checkout.resolve(), not args.noperf, args.profile)
            try:
                results[checkout].append(workload(setup.mnt, setup.mount.pid, args.files,
                                                    args.steps.split(","), setup.brick.pid))
            finally:
                setup.close()
                shutil.rmtree(base, ignore_errors=True)
            print(f"round {r + 1} {checkout} (load {os.getloadavg()[0]:.1f}): " + ", ".join(
                f"{k} {m * 1e6 / args.files:.0f}/{b * 1e6 / args.files:.0f}"
                for k, (m, b) in results[checkout][-1].items()), flush=True)
    print(f"median CPU, us per file, mount/brick ({args.files} files, "
          f"{'no performance translators' if args.noperf else 'performance stack'}):")
    shown = [s for s in (*STEPS, *EXTRA_STEPS) if any(s in r for rs in results.values()
                                                        for r in rs)]
    print("checkout".ljust(40) + "".join(s.rjust(14) for s in shown))
    for checkout, runs in results.items():
        if runs:
            print(str(checkout).ljust(40) + "".join(
                (f"{statistics.median(r[s][0] for r in runs) * 1e6 / args.files:.0f}/"
                 f"{statistics.median(r[s][1] for r in runs) * 1e6 / args.files:.0f}").rjust(14)
                if s in runs[0] else "-".rjust(14) for s in shown))
    return 0


if __name__ == "__main__":
    sys.exit(main())
