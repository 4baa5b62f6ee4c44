"""The seed's FIO table, for glusterpy and for GlusterFS 10 in one run (issue 8).

Four files read sequentially with direct IO by four fio jobs, aggregate
bandwidth (fio's group figure: all bytes over the longest job's time) and
the slowest and fastest job, through each way a client reaches a one-brick
volume:

  Base       fio on the brick's own directory (the filesystem under the brick)
  FUSE       fio on a FUSE mount of the volume (glusterpy mount / glusterfs)
  native     fio --ioengine=gfapi, the volfile fetched from the management
             daemon (volfile-id VOL: the default client graph)
  custom     fio --ioengine=gfapi with a client volfile without performance
             translators: glusterpyd's own VOL.noperf variant, and for GlusterFS
             its client volfile minus performance/*.  fio hands --volume to
             glfs_new(), which refuses a name with a dot, so the volfile-id
             VOL.noperf cannot be asked for; instead the custom volfile goes
             where both daemons look first for the volfile-id VOL -
             WORKDIR/vols/VOL/VOL.vol (glusterd's build_volfile_path, and
             glusterpyd's volfile server alike) - for that row only.

fio's gfapi engine asks port 24007 for the volfile, so glusterpyd runs on
24007 for the glusterpy half and GlusterFS's glusterd for the other, one
after the other under the bench's 24007 lock.  Besides the table, each row
gets sequential write (with fsync at the end), 4 KiB random read and write
IOPS (direct, time-bounded), and, for Base and FUSE, small-file
create(+4 KiB write)/stat/unlink rates from a Python loop.  The page cache
is dropped before every read phase (as root).  The chart of the table goes
to bench/fio-seqread.png.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .report import RESULTS, Section
from .servers import GLUSTERFS_PORT, glusterfs_volume, port_24007, port_free, \
    unique_volume_name

NAME = "fio"
TITLE = "FIO: 4 files, sequential read, direct IO - glusterpy vs GlusterFS 10"
CHART = RESULTS.with_name("fio-seqread.png")
GLUSTERPY = [sys.executable, "-m", "glusterpy.cli.main"]
JOBS = 4
SEQ_BS = 128 * 1024
ROWS = ("Base", "FUSE", "native", "native, custom volfile")


@dataclass
class Sizes:
    file_mib: int
    random_seconds: int
    small_files: int


FULL = Sizes(file_mib=256, random_seconds=10, small_files=1000)
QUICK = Sizes(file_mib=16, random_seconds=2, small_files=100)


@dataclass
class Row:
    """One way to the volume: how fio reaches it."""

    label: str
    fio_args: list[str]          # --directory=... or --ioengine=gfapi --volume=...
    directory: Path | None = None  # for the small-file loop (Base, FUSE)
    #: what the row's volfile needs, around the row (the custom volfile)
    setting: contextlib.AbstractContextManager = field(default_factory=contextlib.nullcontext)
    results: dict[str, float] = field(default_factory=dict)


# -- fio ------------------------------------------------------------------------------

def drop_caches() -> None:
    os.sync()
    with contextlib.suppress(OSError):
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def fio(row: Row, name: str, rw: str, bs: int, sizes: Sizes, extra=()) -> list[dict]:
    """One fio run of JOBS jobs (one file each); the jobs' JSON."""
    cmd = ["fio", f"--name={name}", f"--rw={rw}", f"--bs={bs}",
           f"--size={sizes.file_mib}m", f"--numjobs={JOBS}", "--direct=1",
           "--fallocate=none", "--output-format=json", *row.fio_args, *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200)
    if done.returncode:
        raise RuntimeError(f"fio failed on {row.label} ({' '.join(cmd)}):\n"
                           f"{done.stdout[-2000:]}{done.stderr[-2000:]}")
    # fio may print warnings before the JSON document
    return json.loads(done.stdout[done.stdout.index("{"):])["jobs"]


def group(jobs: list[dict], side: str) -> tuple[float, float, float, float]:
    """(aggregate MiB/s, min, max, IOPS) as fio's group report computes
    them: all bytes over the longest job's run time; per job for min/max."""
    total = sum(j[side]["io_bytes"] for j in jobs)
    longest = max(j[side]["runtime"] for j in jobs) / 1000
    per_job = [j[side]["bw_bytes"] / 2**20 for j in jobs]
    iops = sum(j[side]["iops"] for j in jobs)
    return total / 2**20 / longest, min(per_job), max(per_job), iops


def measure(row: Row, sizes: Sizes) -> None:
    """Every figure of one row, into row.results."""
    name = re.sub(r"\W+", "-", row.label.lower()).strip("-")
    write = group(fio(row, name, "write", SEQ_BS, sizes, ["--end_fsync=1"]), "write")
    drop_caches()
    read = group(fio(row, name, "read", SEQ_BS, sizes), "read")
    timed = ["--time_based", f"--runtime={sizes.random_seconds}", "--norandommap",
             "--randrepeat=0"]
    drop_caches()
    randread = group(fio(row, name, "randread", 4096, sizes, timed), "read")
    randwrite = group(fio(row, name, "randwrite", 4096, sizes, timed), "write")
    row.results.update({
        "read": read[0], "read min": read[1], "read max": read[2], "write": write[0],
        "randread iops": randread[3], "randwrite iops": randwrite[3]})
    if row.directory is not None:
        row.results.update(small_files(row.directory / f"small-{name}", sizes.small_files))


def small_files(directory: Path, count: int) -> dict[str, float]:
    directory.mkdir()
    data = os.urandom(4096)
    names = [str(directory / f"s{i}") for i in range(count)]

    def timed(fn) -> float:
        start = time.perf_counter()
        for n in names:
            fn(n)
        return count / (time.perf_counter() - start)

    def create(n):
        fd = os.open(n, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    out = {"create/s": timed(create), "stat/s": timed(os.stat), "unlink/s": timed(os.unlink)}
    directory.rmdir()
    return out


def remove_fio_files(directory: Path) -> None:
    """The files fio laid out (NAME.JOB.FILE), so the next row starts clean."""
    for p in directory.iterdir():
        if p.is_file() and re.fullmatch(r"[\w-]+\.\d+\.\d+", p.name):
            p.unlink()


# -- glusterpy: glusterpyd on 24007, its FUSE mount ----------------------------------------

@contextlib.contextmanager
def glusterpyd_volume(base: Path, vol: str):
    """glusterpyd on 24007 with a started one-brick volume; yields the brick."""
    wd, brick = base / "wd", base / "brick"
    base.mkdir(parents=True)
    remote = f"127.0.0.1:{GLUSTERFS_PORT}"
    log = base / "glusterpyd.log"
    daemon = subprocess.Popen([sys.executable, "-m", "glusterpy.glusterd.main", "--workdir",
                               str(wd), "--port", str(GLUSTERFS_PORT), "--address",
                               "127.0.0.1", "--brick-root", str(base), "--log-file",
                               str(log), "--log-level", "INFO"],
                              stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)

    def cli(*args, check=True):
        done = subprocess.run([*GLUSTERPY, "--remote-host", remote, "--mode=script", *args],
                              capture_output=True, text=True, timeout=120)
        if check and done.returncode:
            raise RuntimeError(f"glusterpy {' '.join(args)}: {done.stdout}{done.stderr}")
        return done
    started = False
    try:
        deadline = time.monotonic() + 30
        while cli("volume", "list", check=False).returncode:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"glusterpyd did not start; see {log}")
            time.sleep(0.2)
        cli("volume", "create", vol, f"127.0.0.1:{brick}")
        cli("volume", "start", vol)
        started = True
        yield brick
    finally:
        if started:
            cli("volume", "stop", vol, check=False)
        daemon.send_signal(signal.SIGTERM)
        try:
            daemon.wait(20)
        except subprocess.TimeoutExpired:
            daemon.kill()
            daemon.wait()
        # bricks outlive the daemon by design: end any the stop left
        for pidfile in (wd / "run").rglob("*.pid") if (wd / "run").exists() else ():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


@contextlib.contextmanager
def fuse_mount(command: list[str], mnt: Path):
    mnt.mkdir(parents=True, exist_ok=True)
    done = subprocess.run([*command, str(mnt)], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout}{done.stderr}")
    deadline = time.monotonic() + 30
    while not os.path.ismount(mnt):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(command)}: no mount on {mnt}")
        time.sleep(0.1)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def wait_for_free_port(port: int, timeout: float = 600) -> None:
    """A daemon someone started by hand (make run) may hold the port for a
    while; wait for it rather than fail at once."""
    deadline = time.monotonic() + timeout
    if not port_free(port):
        print(f"  waiting for port {port} to be free", flush=True)
    while not port_free(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"port {port} stayed busy for {timeout:g}s")
        time.sleep(2)


def gfapi_args(volfile_id: str) -> list[str]:
    return ["--ioengine=gfapi", f"--volume={volfile_id}", "--brick=127.0.0.1"]


def run_rows(rows: list[Row], sizes: Sizes, clean) -> None:
    for row in rows:
        print(f"   {row.label}", flush=True)
        with row.setting:
            measure(row, sizes)
        clean()


@contextlib.contextmanager
def served_as(path: Path, text: str):
    """`text` as the volfile at `path` while the row runs."""
    path.write_text(text)
    try:
        yield
    finally:
        path.unlink()


def glusterpy_rows(work: Path, sizes: Sizes) -> list[Row]:
    vol = unique_volume_name("fiopy")
    vols = work / "glusterpy" / "wd" / "vols" / vol
    with glusterpyd_volume(work / "glusterpy", vol) as brick, \
            fuse_mount([*GLUSTERPY, "mount", "-o",
                        f"log-file={work / 'glusterpy-mount.log'}",
                        f"127.0.0.1:{GLUSTERFS_PORT}:/{vol}"], work / "glusterpy-mnt") as mnt:
        base_dir = brick / "base"
        base_dir.mkdir()  # beside the volume's files, on the brick's filesystem
        rows = [Row("Base", [f"--directory={base_dir}", "--ioengine=psync"], base_dir),
                Row("FUSE", [f"--directory={mnt}", "--ioengine=psync"], mnt),
                Row("native", gfapi_args(vol)),
                Row("native, custom volfile", gfapi_args(vol),
                    setting=served_as(vols / f"{vol}.vol",
                                      (vols / f"{vol}.noperf.vol").read_text()))]
        # the gfapi rows' files are removed through the mount: deleting them
        # on the brick would leave their .glusterfs handles holding the data
        run_rows(rows, sizes, lambda: (remove_fio_files(base_dir), remove_fio_files(mnt)))
        served = re.findall(rf"GETSPEC '{vol}' from \S+: (\S+)",
                            (work / "glusterpy" / "glusterpyd.log").read_text())
        if f"{vol}.vol" not in served:
            raise RuntimeError(f"glusterpyd did not serve the custom volfile ({served})")
    return rows


# -- GlusterFS 10: glusterd on 24007, glusterfs FUSE, libgfapi ------------------------------

def noperf_volfile(workdir: Path, vol: str) -> str:
    """glusterd's own client volfile of VOL minus its performance/*
    translators (each child takes its place)."""
    from glusterpy import volfile as vf
    source = workdir / "vols" / vol / f"{vol}.tcp-fuse.vol"
    volfile = vf.parses(source.read_text(), str(source))
    for vdef in [v for v in volfile.volumes if (v.type or "").startswith("performance/")]:
        [child] = vdef.subvolumes
        volfile.volumes.remove(vdef)
        for other in volfile.volumes:
            other.subvolumes = [child if s == vdef.name else s for s in other.subvolumes]
    return vf.dumps(volfile)


def glusterfs_rows(work: Path, sizes: Sizes) -> list[Row]:
    vol = unique_volume_name("fiogf")
    base = work / "glusterfs"
    with glusterfs_volume(base, vol) as brick:
        custom = noperf_volfile(base / "wd", vol)
        with fuse_mount(["glusterfs", "--volfile-server=127.0.0.1", f"--volfile-id={vol}",
                         f"--log-file={work / 'glusterfs-mount.log'}"],
                        work / "glusterfs-mnt") as mnt:
            base_dir = brick / "base"
            base_dir.mkdir()
            rows = [Row("Base", [f"--directory={base_dir}", "--ioengine=psync"], base_dir),
                    Row("FUSE", [f"--directory={mnt}", "--ioengine=psync"], mnt),
                    Row("native", gfapi_args(vol)),
                    Row("native, custom volfile", gfapi_args(vol),
                        setting=served_as(base / "wd" / "vols" / vol / f"{vol}.vol", custom))]
            run_rows(rows, sizes, lambda: (remove_fio_files(base_dir), remove_fio_files(mnt)))
    return rows


# -- the tables and the chart -----------------------------------------------------------------

def run(work: Path, quick: bool = False) -> list[Section]:
    sizes = QUICK if quick else FULL
    if shutil.which("fio") is None:
        raise RuntimeError("fio is not installed (make bench installs it)")
    wait_for_free_port(GLUSTERFS_PORT)
    with port_24007():
        print("  glusterpy (glusterpyd on 24007)", flush=True)
        ours = glusterpy_rows(work, sizes)
        print("  GlusterFS 10 (glusterd on 24007)", flush=True)
        theirs = glusterfs_rows(work, sizes)
    size = f"{JOBS} x {sizes.file_mib} MiB"
    table = Section(f"{TITLE} ({size}, {SEQ_BS >> 10} KiB requests)",
                    ["system", "row", "aggregate MiB/s", "min MiB/s", "max MiB/s",
                     "of Base"])
    for system, rows in (("glusterpy", ours), ("GlusterFS 10", theirs)):
        base = rows[0].results["read"]
        for row in rows:
            r = row.results
            table.add(system, row.label, f"{r['read']:,.0f}", f"{r['read min']:,.0f}",
                      f"{r['read max']:,.0f}", f"{r['read'] / base:.0%}")
    chart = CHART if not quick else work / CHART.name
    drawn = draw_chart(ours, theirs, chart, size)
    table.notes += [
        "fio --rw=read --direct=1 --numjobs=4 (one file per job), psync on Base and FUSE, "
        "the gfapi engine (libgfapi) for native; aggregate as fio's group report "
        "(all bytes over the longest job's time), min/max per job.",
        "Custom volfile: glusterpyd's VOL.noperf graph; for GlusterFS 10 glusterd's own "
        "client volfile minus performance/*.  fio's gfapi engine cannot ask for the "
        "volfile-id VOL.noperf (glfs_new refuses a dot), so each is placed as "
        "vols/VOL/VOL.vol in its daemon's working directory, which glusterd and glusterpyd "
        "both serve first for the volfile-id VOL.",
        "Aims (issue 8): native >= 85 % of Base, custom volfile >= 95 % of Base.",
        "One machine: client, brick and disk shared; the page cache is dropped before reads.",
    ]
    if drawn:
        table.notes.append(f"![sequential read, direct IO]({CHART.name})")
    else:
        table.notes.append("(no chart: matplotlib is missing - make bench installs it)")
    besides = Section(f"FIO and small files besides the table ({size}; random IO "
                      f"{sizes.random_seconds} s per row; {sizes.small_files} small files)",
                      ["system", "row", "seq write MiB/s", "4K randread IOPS",
                       "4K randwrite IOPS", "create/s", "stat/s", "unlink/s"])
    for system, rows in (("glusterpy", ours), ("GlusterFS 10", theirs)):
        for row in rows:
            r = row.results
            small = [f"{r[k]:,.0f}" if k in r else "-" for k in ("create/s", "stat/s",
                                                                  "unlink/s")]
            besides.add(system, row.label, f"{r['write']:,.0f}", f"{r['randread iops']:,.0f}",
                        f"{r['randwrite iops']:,.0f}", *small)
    ours_fuse, their_fuse = ours[1].results, theirs[1].results
    besides.notes += [
        "Sequential write ends with fsync (--end_fsync=1); random IO is direct, 4 jobs, "
        "--time_based.  Small files: one Python loop of open(O_CREAT|O_EXCL)+write 4 KiB+"
        "close, then stat, then unlink (Base and FUSE only).",
        f"Aims (issue 8): glusterpy FUSE >= GlusterFS 10 FUSE on 128 KiB sequential read "
        f"({ours_fuse['read'] / their_fuse['read']:.2f}x) and write "
        f"({ours_fuse['write'] / their_fuse['write']:.2f}x); >= 1000 small-file creates/s "
        f"({ours_fuse['create/s']:,.0f}/s).",
    ]
    return [table, besides]


def draw_chart(ours: list[Row], theirs: list[Row], path: Path, size: str) -> bool:
    """Grouped bars: aggregate sequential read per row, min-max as a range."""
    try:
        import matplotlib
    except ImportError:
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=100)
    width = 0.38
    for i, (system, rows, colour) in enumerate((("glusterpy", ours, "#3b7dd8"),
                                                ("GlusterFS 10", theirs, "#e0863a"))):
        xs = [n + (i - 0.5) * width for n in range(len(rows))]
        agg = [r.results["read"] for r in rows]
        low = [a - r.results["read min"] * JOBS for a, r in zip(agg, rows)]
        high = [r.results["read max"] * JOBS - a for a, r in zip(agg, rows)]
        bars = ax.bar(xs, agg, width, label=system, color=colour,
                      yerr=[[max(v, 0) for v in low], [max(v, 0) for v in high]],
                      capsize=3, error_kw={"elinewidth": 1, "ecolor": "#333333"})
        ax.bar_label(bars, labels=[f"{a:,.0f}" for a in agg], fontsize=8, padding=2)
    ax.set_xticks(range(len(ROWS)), ROWS)
    ax.set_ylabel("aggregate MiB/s (4 jobs)")
    ax.set_title(f"fio sequential read, direct IO, {size}\n"
                 "(whiskers: slowest and fastest job x 4)", fontsize=10)
    ax.legend()
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
