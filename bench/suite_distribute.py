"""cluster/distribute over 1, 2 and 4 bricks, and rebalance - glusterpy vs
GlusterFS 10 (issue 5).

For each brick count, a distribute volume of that many bricks, each
contender in turn:

  (a) glusterpy gfapi -> glusterpy bricks      (glusterpyd on a free port)
  (b) GlusterFS FUSE  -> glusterpy bricks      (GlusterFS's DHT over ours,
                                                volfile from glusterpyd)
  (c) GlusterFS FUSE  -> GlusterFS 10 bricks   (glusterd on 24007: the reference)

measuring creates/s (THREADS threads each creating small files, a 4 KiB
write each) and sequential write and read MiB/s (THREADS files, 128 KiB
requests, fsync at the end of each file; the page cache dropped before
reading).  Then rebalance speed: a volume of two bricks filled with files,
a third brick added, `volume rebalance start` until completed - files
and MiB moved per second of wall time (from the command to "completed"),
counted on the new brick, for glusterpy's rebalance process and for
GlusterFS's.  The two glusterds never run at the same time; 24007 is held
under the lock the interop tests take (bench/servers.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from glusterpy.gfapi import Volume

from .report import Section
from .servers import (GLUSTERFS_PORT, _kill_gluster_processes, _wait_for, free_port,
                      port_24007, unique_volume_name)
from .suite_protocol import drop_caches

NAME = "distribute"
TITLE = "cluster/distribute over 1, 2 and 4 bricks, and rebalance: glusterpy vs GlusterFS 10"

MiB = 1 << 20
REQUEST = 128 * 1024
BRICK_COUNTS = (1, 2, 4)
PY = [sys.executable]


# -- the servers ---------------------------------------------------------------


class Glusterpyd:
    """A glusterpyd process on a private working directory and a free port."""

    def __init__(self, base: Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.proc = subprocess.Popen(
            [*PY, "-m", "glusterpy.glusterd.main", "--workdir", str(base / "wd"), "--port",
             str(self.port), "--address", "127.0.0.1", "--brick-root", str(base),
             "--log-file", str(base / "gd.log")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _wait_for(lambda: self.cli("volume", "list", check=False).returncode == 0,
                  "glusterpyd answering")

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        done = subprocess.run([*PY, "-m", "glusterpy.cli.main", args[0], "--remote-host",
                               f"127.0.0.1:{self.port}", "--mode=script", *args[1:]],
                              capture_output=True, text=True, timeout=600)
        if check and done.returncode:
            raise RuntimeError(f"glusterpy {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def stop(self) -> None:
        for name in json.loads(self.cli("volume", "list", "--json").stdout)["volumes"]:
            self.cli("volume", "stop", name, check=False)
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class GlusterD:
    """GlusterFS 10's glusterd on 24007, private working directory."""

    def __init__(self, base: Path):
        self.base = base
        self.sock = base / "glusterd.socket"
        self.volumes: list[str] = []
        (base / "wd").mkdir(parents=True)
        (base / "glusterd.vol").write_text(
            "volume management\n    type mgmt/glusterd\n"
            f"    option working-directory {base / 'wd'}\n"
            f"    option glusterd-sockfile {self.sock}\n"
            "    option transport-type socket\n    option transport.socket.listen-port 24007\n"
            "    option ping-timeout 0\n    option event-threads 1\nend-volume\n")
        glusterd = shutil.which("glusterd") or "/usr/sbin/glusterd"
        self.proc = subprocess.Popen([glusterd, "-N", "-f", str(base / "glusterd.vol"),
                                      "-p", str(base / "glusterd.pid"),
                                      "-l", str(base / "glusterd.log")],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        _wait_for(lambda: self.sock.exists() and
                  self.cli("volume", "list", check=False).returncode == 0, "glusterd answering")

    def cli(self, *args, check=True) -> subprocess.CompletedProcess:
        gluster = shutil.which("gluster") or "/usr/sbin/gluster"
        done = subprocess.run([gluster, "--mode=script", f"--glusterd-sock={self.sock}",
                               f"--log-file={self.base / 'cli.log'}", *args],
                              capture_output=True, text=True, timeout=600)
        if check and done.returncode:
            raise RuntimeError(f"gluster {' '.join(args)}: {done.stdout}{done.stderr}")
        return done

    def stop(self) -> None:
        for vol in self.volumes:
            self.cli("volume", "stop", vol, "force", check=False)
            self.cli("volume", "delete", vol, check=False)
            _kill_gluster_processes(vol)
            shutil.rmtree(f"/var/run/gluster/vols/{vol}", ignore_errors=True)
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def make_bricks(base: Path, label: str, count: int) -> list[Path]:
    out = []
    for i in range(count):
        brick = base / f"{label}-b{i}"
        brick.mkdir(parents=True)
        out.append(brick)
    return out


class FuseMount:
    """GlusterFS's FUSE client (glusterfs) on a mount point."""

    def __init__(self, where: Path, port: int, volfile_id: str, log: Path):
        self.where = where
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["glusterfs", "--volfile-server=127.0.0.1",
                        f"--volfile-server-port={port}", f"--volfile-id={volfile_id}",
                        f"--log-file={log}", f"--pid-file={log.with_suffix('.pid')}",
                        str(where)], check=True, timeout=60, capture_output=True)
        _wait_for(lambda: os.path.ismount(where), "the FUSE mount")

    def close(self) -> None:
        if subprocess.run(["umount", str(self.where)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(self.where)], capture_output=True)


# -- the workloads -------------------------------------------------------------


def _threads(fn, count: int) -> float:
    errors: list[BaseException] = []

    def guarded(n):
        try:
            fn(n)
        except BaseException as e:
            errors.append(e)
    threads = [threading.Thread(target=guarded, args=(n,)) for n in range(count)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - start


class GfapiFiles:
    """The workloads through our gfapi client."""

    def __init__(self, vol: Volume):
        self.vol = vol

    def creates(self, threads: int, per_thread: int) -> float:
        data = b"c" * 4096

        def one(n):
            self.vol.makedirs(f"/c{n}", exist_ok=True)
            for i in range(per_thread):
                with self.vol.fopen(f"/c{n}/f{i}", "w") as f:
                    f.write(data)
        return threads * per_thread / _threads(one, threads)

    def seq(self, threads: int, size: int) -> tuple[float, float]:
        buf = os.urandom(REQUEST)

        def write(n):
            f = self.vol.open(f"/s{n}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            for off in range(0, size, REQUEST):
                f.pwrite(buf, off)
            f.fsync()
            f.close()

        def read(n):
            f = self.vol.open(f"/s{n}", os.O_RDONLY)
            for off in range(0, size, REQUEST):
                f.pread(REQUEST, off)
            f.close()
        w = threads * size / MiB / _threads(write, threads)
        drop_caches()
        return w, threads * size / MiB / _threads(read, threads)


class PosixFiles:
    """The same workloads on a mount point (GlusterFS's FUSE client)."""

    def __init__(self, root: Path):
        self.root = root

    def creates(self, threads: int, per_thread: int) -> float:
        data = b"c" * 4096

        def one(n):
            (self.root / f"c{n}").mkdir(exist_ok=True)
            for i in range(per_thread):
                fd = os.open(self.root / f"c{n}" / f"f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
                os.write(fd, data)
                os.close(fd)
        return threads * per_thread / _threads(one, threads)

    def seq(self, threads: int, size: int) -> tuple[float, float]:
        buf = os.urandom(REQUEST)

        def write(n):
            fd = os.open(self.root / f"s{n}", os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644)
            for off in range(0, size, REQUEST):
                os.pwrite(fd, buf, off)
            os.fsync(fd)
            os.close(fd)

        def read(n):
            fd = os.open(self.root / f"s{n}", os.O_RDONLY)
            for off in range(0, size, REQUEST):
                os.pread(fd, REQUEST, off)
            os.close(fd)
        w = threads * size / MiB / _threads(write, threads)
        drop_caches()
        return w, threads * size / MiB / _threads(read, threads)


def measure(files, threads: int, per_thread: int, size: int) -> dict[str, float]:
    creates = files.creates(threads, per_thread)
    write, read = files.seq(threads, size)
    return {"creates/s": creates, "write MiB/s": write, "read MiB/s": read}


def moved_to(brick: Path) -> tuple[int, int]:
    """Data files (not linkto files) on a brick and their bytes."""
    count = size = 0
    for p in brick.rglob("*"):
        if ".glusterfs" in p.parts or not p.is_file():
            continue
        st = p.stat()
        if st.st_mode & 0o7777 == 0o1000 and st.st_size == 0:
            continue        # a linkto file
        count += 1
        size += st.st_size
    return count, size


def fill(files, count: int, size: int) -> None:
    data = os.urandom(size)
    if isinstance(files, GfapiFiles):
        files.vol.makedirs("/r", exist_ok=True)
        for i in range(count):
            with files.vol.fopen(f"/r/f{i}", "w") as f:
                f.write(data)
    else:
        (files.root / "r").mkdir(exist_ok=True)
        for i in range(count):
            (files.root / "r" / f"f{i}").write_bytes(data)


# -- the run -------------------------------------------------------------------


def require_glusterfs() -> None:
    for tool in ("glusterfs", "glusterd", "gluster"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise RuntimeError(f"{tool} is not installed (make bench installs it)")


def rebalance_glusterpy(gd: Glusterpyd, work: Path, rb_files: int, rb_size: int) -> dict:
    """Two bricks filled, a third added, `rebalance start` until completed:
    files and MiB on the new brick and the seconds it took."""
    bricks = make_bricks(work / "glusterpy", "rb", 3)
    gd.cli("volume", "create", "rb", *[f"127.0.0.1:{p}" for p in bricks[:2]])
    gd.cli("volume", "start", "rb")
    with Volume("127.0.0.1", "rb", port=gd.port) as v:
        fill(GfapiFiles(v), rb_files, rb_size)
    gd.cli("volume", "add-brick", "rb", f"127.0.0.1:{bricks[2]}")
    start = time.perf_counter()
    # one CLI process follows the run (it looks every 0.5 s): a `status`
    # command every 0.1 s, as GlusterFS's row polls with its C CLI, costs
    # half a second of CPU each in Python - most of one of the two cores,
    # taken from the rebalance it measures
    gd.cli("volume", "rebalance", "rb", "start", "--watch")
    seconds = time.perf_counter() - start
    status = json.loads(gd.cli("volume", "rebalance", "rb", "status", "--json").stdout)
    if status["aggregate"]["status"] != "completed":
        raise RuntimeError(f"glusterpy's rebalance ended {status['aggregate']['status']}")
    files, nbytes = moved_to(bricks[2])
    return {"files": files, "MiB": nbytes / MiB, "seconds": seconds}


def rebalance_glusterfs(g: GlusterD, work: Path, host: str, rb_files: int,
                        rb_size: int) -> dict:
    """The same with GlusterFS 10's rebalance process."""
    vol = unique_volume_name("brb")
    bricks = make_bricks(work / "glusterfs", vol, 3)
    g.cli("volume", "create", vol, *[f"{host}:{p}" for p in bricks[:2]], "force")
    g.volumes.append(vol)
    g.cli("volume", "start", vol)
    mount = FuseMount(work / "mnt-gf-rb", GLUSTERFS_PORT, vol, work / "fuse-gf-rb.log")
    try:
        fill(PosixFiles(mount.where), rb_files, rb_size)
    finally:
        mount.close()
    g.cli("volume", "add-brick", vol, f"{host}:{bricks[2]}", "force")
    start = time.perf_counter()
    g.cli("volume", "rebalance", vol, "start")

    def done() -> bool:
        out = g.cli("volume", "rebalance", vol, "status", check=False).stdout
        if "failed" in out:
            raise RuntimeError(f"GlusterFS's rebalance failed: {out}")
        return "completed" in out and "in progress" not in out
    _wait_for(done, "GlusterFS's rebalance", timeout=3600)
    seconds = time.perf_counter() - start
    files, nbytes = moved_to(bricks[2])
    return {"files": files, "MiB": nbytes / MiB, "seconds": seconds}


def run(work: Path, quick: bool = False) -> list[Section]:
    threads = 2 if quick else 4
    per_thread = 100 if quick else 1000
    size = (16 if quick else 256) * MiB
    rb_files, rb_size = (200, 64 << 10) if quick else (2000, 256 << 10)
    require_glusterfs()
    scaling: dict[str, dict[int, dict[str, float]]] = {
        "(a) glusterpy gfapi -> glusterpy bricks": {},
        "(b) GlusterFS FUSE -> glusterpy bricks": {},
        "(c) GlusterFS FUSE -> GlusterFS 10 bricks": {}}
    rebalance: dict[str, dict[str, float]] = {}
    a, b, c = scaling

    gd = Glusterpyd(work / "glusterpy")
    try:
        for n in BRICK_COUNTS:
            vol = f"d{n}"
            bricks = make_bricks(work / "glusterpy", vol, n)
            gd.cli("volume", "create", vol, *[f"127.0.0.1:{p}" for p in bricks])
            gd.cli("volume", "start", vol)
            with Volume("127.0.0.1", vol, port=gd.port) as v:
                scaling[a][n] = measure(GfapiFiles(v), threads, per_thread, size)
            mount = FuseMount(work / f"mnt-py-{n}", gd.port, vol, work / f"fuse-py-{n}.log")
            try:
                (mount.where / "fuse").mkdir()
                scaling[b][n] = measure(PosixFiles(mount.where / "fuse"), threads,
                                        per_thread, size)
            finally:
                mount.close()
            gd.cli("volume", "stop", vol)
        rebalance["glusterpy rebalance process"] = rebalance_glusterpy(gd, work, rb_files,
                                                                       rb_size)
    finally:
        gd.stop()

    with port_24007():
        g = GlusterD(work / "glusterfs")
        host = socket.gethostname()
        try:
            for n in BRICK_COUNTS:
                vol = unique_volume_name(f"bd{n}x")
                bricks = make_bricks(work / "glusterfs", vol, n)
                g.cli("volume", "create", vol, *[f"{host}:{p}" for p in bricks], "force")
                g.volumes.append(vol)
                g.cli("volume", "start", vol)
                mount = FuseMount(work / f"mnt-gf-{n}", GLUSTERFS_PORT, vol,
                                  work / f"fuse-gf-{n}.log")
                try:
                    scaling[c][n] = measure(PosixFiles(mount.where), threads, per_thread,
                                            size)
                finally:
                    mount.close()
                g.cli("volume", "stop", vol, "force")
            rebalance["GlusterFS 10 rebalance process"] = rebalance_glusterfs(
                g, work, host, rb_files, rb_size)
        finally:
            g.stop()
    return report(scaling, rebalance, threads, per_thread, size, rb_files, rb_size)


def report(scaling, rebalance, threads, per_thread, size, rb_files, rb_size) -> list[Section]:
    ref_label = "(c) GlusterFS FUSE -> GlusterFS 10 bricks"
    columns = ["contender", "bricks", "creates/s", "vs 1 brick", "write MiB/s", "vs 1 brick",
               "read MiB/s", "vs 1 brick", "creates vs (c)"]
    table = Section(f"{TITLE}: scaling ({threads} threads; {threads} x {per_thread} creates "
                    f"of 4 KiB files; {threads} x {size // MiB} MiB sequential, "
                    f"{REQUEST >> 10} KiB requests)", columns)
    for label, by_count in scaling.items():
        one = by_count[BRICK_COUNTS[0]]
        for n, r in by_count.items():
            ref = scaling[ref_label][n]
            table.add(label, n, f"{r['creates/s']:,.0f}",
                      f"{r['creates/s'] / one['creates/s']:.2f}x",
                      f"{r['write MiB/s']:,.0f}", f"{r['write MiB/s'] / one['write MiB/s']:.2f}x",
                      f"{r['read MiB/s']:,.0f}", f"{r['read MiB/s'] / one['read MiB/s']:.2f}x",
                      f"{r['creates/s'] / ref['creates/s']:.2f}x")
    table.notes += [
        "Issue 5: does it scale with bricks?  On this machine every brick is a directory "
        "on the same disk and every process shares the same 2 cores, so more bricks add "
        "processes competing for them, not disks or CPUs: a flat or falling column is "
        "what one machine can show.  Real scaling needs bricks on separate disks and "
        "nodes; what this table can show is the cost of distribute's fan-out (lookups, "
        "layouts, one connection per brick) as bricks are added.",
        "(a) uses our client library in this process; (b) and (c) the kernel FUSE client "
        "with GlusterFS's own DHT, so (b) vs (c) compares the bricks with the same client.",
        "Writes end with fsync; the page cache is dropped before reads (as root).",
    ]
    return [table, rebalance_section(rebalance, rb_files, rb_size)]


def rebalance_section(rebalance, rb_files, rb_size, loads=None) -> Section:
    rb = Section(f"{TITLE}: rebalance speed (2 bricks with {rb_files} files of "
                 f"{rb_size >> 10} KiB, a third brick added, then rebalance start)",
                 ["contender", "files moved", "MiB moved", "seconds", "files/s", "MiB/s",
                  "MiB/s vs GlusterFS"])
    ref = rebalance.get("GlusterFS 10 rebalance process")
    for label, r in rebalance.items():
        mibs = r["MiB"] / r["seconds"]
        rb.add(label, r["files"], f"{r['MiB']:,.1f}", f"{r['seconds']:.1f}",
               f"{r['files'] / r['seconds']:,.1f}", f"{mibs:,.1f}",
               f"{mibs / (ref['MiB'] / ref['seconds']):.2f}x" if ref else "-")
    rb.notes += [
        "Seconds of wall time from `volume rebalance start` to every node showing "
        "completed (both include starting the rebalance process and the crawl); files "
        "and bytes counted on the new brick afterwards.  Both rebalances copy within one "
        "disk here, so they measure the migration machinery (lookups, phases, copies "
        "through the bricks), not a network or a second disk.",
    ]
    if loads:
        rb.notes.append("Load average (1/5/15 min) before: "
                        + ", after: ".join("/".join(f"{x:.2f}" for x in load)
                                           for load in loads) + ".")
    return rb
