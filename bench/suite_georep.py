"""Geo-replication: files/s, MiB/s and lag to a secondary (issue 19).

A primary and a secondary glusterpyd on this machine (each on a free port,
each with a one-brick volume, both on the same disk), a session between
them with change-interval 1 (its smallest value) and the primary's
changelog.rollover-time at GlusterFS's default, ROLLOVER (the worker asks
the brick for an explicit rollover when the journal holds records, so the
lag no longer waits for the timer), and:

* files/s: 2,000 files of 4 KiB (20 directories of 100) written through
  gfapi, from the first write to the completion of a checkpoint set after
  the last one (the worker's own completion time);
* MiB/s: one 256 MiB file (a random MiB repeated: every byte is data, no
  hole to skip), the same way;
* lag: one small file written, then the secondary's brick polled every
  10 ms until the file is there with its size; ten times, one second
  apart.

GlusterFS 10's geo-replication is measured the same way beside it
(bench/glusterfs_georep.py: one glusterd with both volumes, gsyncd over ssh
to an sshd of ours on 127.0.0.1, as GlusterFS's regression tests do), with
the same rollover-time and change_interval; its column holds what it
measured and the notes say where and why it stopped if it did.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .report import Section
from .servers import free_port

NAME = "georep"
TITLE = "Geo-replication: files/s, MiB/s and lag to a secondary"

SMALL_FILES, SMALL_DIRS, SMALL_SIZE = 2_000, 20, 4096
BIG_MIB = 256
QUICK_SMALL_FILES, QUICK_BIG_MIB = 200, 16
LAG_SAMPLES = 10
TIMEOUT = 1800.0
#: changelog.rollover-time on the primary (seconds): GlusterFS's default
ROLLOVER = 15


class Daemon:
    """One glusterpyd with its workdir, on a free port; every process it
    started (bricks, workers) is ended by pid in `close`."""

    def __init__(self, base: Path):
        self.base = base
        self.wd = base / "wd"
        self.port = free_port()
        self.remote = f"127.0.0.1:{self.port}"
        base.mkdir(parents=True)
        self.log = base / "glusterpyd.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "glusterpy.glusterd.main", "--workdir", str(self.wd),
             "--port", str(self.port), "--address", "127.0.0.1", "--brick-root", str(base),
             "--log-file", str(self.log), "--log-level", "INFO"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while self.cli("volume", "list", check=False)[0]:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise RuntimeError(f"glusterpyd did not start; see {self.log}")
            time.sleep(0.2)

    def cli(self, *args: str, check: bool = True) -> tuple[int, str]:
        """The glusterpy command in this process (no interpreter start per call)."""
        from glusterpy.cli.main import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            try:
                rc = main([args[0], "--remote-host", self.remote, "--mode=script", *args[1:]])
            except SystemExit as e:
                rc = e.code if isinstance(e.code, int) else 1
        if check and rc:
            raise RuntimeError(f"glusterpy {' '.join(args)}: {out.getvalue()}")
        return rc or 0, out.getvalue()

    def volume(self, name: str) -> Path:
        brick = self.base / f"{name}-brick"
        self.cli("volume", "create", name, f"127.0.0.1:{brick}")
        self.cli("volume", "start", name)
        return brick

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        # bricks and workers outlive the daemon by design: end them by pid
        run = self.wd / "run"
        for pidfile in run.rglob("*.pid") if run.exists() else ():
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)


class Session:
    def __init__(self, primary: Daemon, secondary: Daemon):
        self.p = primary
        self.secondary = f"127.0.0.1:{secondary.port}::sv"

    def geo(self, *words: str) -> str:
        return self.p.cli("volume", "geo-replication", "pv", self.secondary, *words)[1]

    def rows(self) -> list[dict]:
        return json.loads(self.geo("status", "--json"))["rows"]

    def checkpoint(self) -> float:
        """Set a checkpoint now; the wall-clock time its crawl completed."""
        time.sleep(0.01)  # (a checkpoint is complete for crawls started after it)
        self.geo("config", "checkpoint", "now")
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            for r in self.rows():
                if r["status"] == "Active" and r["checkpoint_completed"]:
                    return r["checkpoint_completion_time"]
            time.sleep(0.2)
        raise RuntimeError(f"the checkpoint did not complete: {self.rows()}")


def _on_brick(brick: Path, path: str, size: int) -> bool:
    try:
        return os.stat(brick / path.lstrip("/")).st_size == size
    except OSError:
        return False


def measure(work: Path, files: int, big_mib: int) -> dict[str, float]:
    from glusterpy.gfapi import Volume
    out: dict[str, float] = {}
    primary = Daemon(work / "primary")
    try:
        secondary = Daemon(work / "secondary")
        try:
            primary.volume("pv")
            sbrick = secondary.volume("sv")
            session = Session(primary, secondary)
            # no push-pem: it admits the primary's nodes to a secondary pool
            # over TLS (glusterpy/glusterd/georep_pem.py); both sides here are
            # one machine without TLS, as in tests/test_georep_changelog.py
            session.geo("create")
            primary.cli("volume", "set", "pv", "changelog.rollover-time", str(ROLLOVER))
            session.geo("config", "change-interval", "1")
            session.geo("start")
            session.checkpoint()  # the first crawl, of an empty volume
            with Volume("127.0.0.1", "pv", port=primary.port) as vol:
                payload = os.urandom(SMALL_SIZE)
                start = time.time()
                for d in range(SMALL_DIRS):
                    vol.mkdir(f"/small{d:02}")
                    for f in range(files // SMALL_DIRS):
                        with vol.fopen(f"/small{d:02}/f{f:04}", "wb") as fh:
                            fh.write(payload)
                out["small write"] = time.time() - start
                out["small"] = session.checkpoint() - start
                arrived = sum(1 for _ in sbrick.glob("small*/f*"))
                if arrived != files:
                    raise RuntimeError(f"{arrived} of {files} files on the secondary")

                block = os.urandom(1 << 20)
                start = time.time()
                with vol.fopen("/big", "wb") as fh:
                    for _ in range(big_mib):
                        fh.write(block)
                out["big write"] = time.time() - start
                out["big"] = session.checkpoint() - start
                if not _on_brick(sbrick, "/big", big_mib << 20):
                    raise RuntimeError("the big file did not arrive whole")

                lags = []
                for i in range(LAG_SAMPLES):
                    name = f"/lag{i}"
                    t0 = time.monotonic()
                    with vol.fopen(name, "wb") as fh:
                        fh.write(b"x" * 100)
                    deadline = t0 + 120
                    while not _on_brick(sbrick, name, 100):
                        if time.monotonic() > deadline:
                            raise RuntimeError(f"{name} did not arrive within 120 s")
                        time.sleep(0.01)
                    lags.append(time.monotonic() - t0)
                    time.sleep(1)
                out["lag median"] = statistics.median(lags)
                out["lag max"] = max(lags)
                out["crawl"] = ", ".join(sorted({r["crawl_status"] for r in session.rows()
                                                 if r["status"] == "Active"}))
            session.geo("stop")
        finally:
            secondary.close()
    finally:
        primary.close()
    return out


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def run(work: Path, quick: bool = False) -> Section:
    from . import glusterfs_georep
    files, big = (QUICK_SMALL_FILES, QUICK_BIG_MIB) if quick else (SMALL_FILES, BIG_MIB)
    load_before = _load()
    r = measure(work, files, big)
    load_between = _load()
    try:
        g = glusterfs_georep.measure(
            work, files, SMALL_DIRS, SMALL_SIZE, big, LAG_SAMPLES, ROLLOVER, 1, TIMEOUT)
    except Exception as e:  # (the 24007 lock, before anything started)
        g = {"error": f"{type(e).__name__}: {e}"}
    load_after = _load()
    section = Section("Geo-replication to a secondary volume on the same machine",
                      ["measure", "glusterpy", "GlusterFS 10"])

    def gf(key: str, cell: str) -> str:
        if key in g:
            return cell
        if f"{key} lost" in g:
            return "data not synced (the notes)"
        return "not measured (the notes)" if "error" in g else "not run"

    section.add(f"{files:,} files of 4 KiB, write to checkpoint: files/s",
                f"{files / r['small']:.0f} ({r['small']:.1f} s; writing {r['small write']:.1f} s)",
                gf("small", f"{files / g.get('small', 1):.0f} ({g.get('small', 0):.1f} s; "
                            f"writing {g.get('small write', 0):.1f} s)"))
    section.add(f"one {big} MiB file, write to checkpoint: MiB/s",
                f"{big / r['big']:.1f} ({r['big']:.1f} s; writing {r['big write']:.1f} s)",
                gf("big", f"{big / g.get('big', 1):.1f} ({g.get('big', 0):.1f} s; "
                          f"writing {g.get('big write', 0):.1f} s)"))
    section.add(f"lag from a write to its arrival, median of {LAG_SAMPLES} (max)",
                f"{r['lag median']:.2f} s ({r['lag max']:.2f} s)",
                gf("lag median", f"{g.get('lag median', 0):.2f} s ({g.get('lag max', 0):.2f} s)"))
    section.notes += [
        "one glusterpyd per side on this machine, a one-brick volume each on the same disk; "
        f"the session's change-interval is 1 s (its smallest) and the primary's "
        f"changelog.rollover-time {ROLLOVER} s (GlusterFS's default): after the "
        f"first full crawl (Hybrid Crawl, of the empty volume) the worker replays the "
        f"changelogs, asking the brick for an explicit rollover when its journal holds "
        f"records, so a change arrives within about change-interval plus the replay, "
        f"not rollover-time; the Active worker's crawl at the end: "
        f"{r['crawl']}.",
        "files/s and MiB/s count from the first write on the primary to the completion of "
        "a checkpoint set after the last one (the worker's completion time), so they include "
        "the writes themselves; the lag polls the secondary's brick every 10 ms.",
        "GlusterFS 10 (Debian's 10.3, its gsyncd): one glusterd (port 24007, "
        "/var/lib/glusterd copied aside and put back) with both one-brick volumes on the "
        "same disk, gsyncd reaching the secondary over ssh to an sshd of the suite's on "
        "127.0.0.1 (`system:: execute gsec_create`, `create ssh-port N push-pem`, "
        "`config ssh_port N` - create's ssh-port did not reach the monitor, which ran "
        "`ssh -p 22` without it), as GlusterFS's tests/00-geo-rep do on one host; "
        f"changelog.rollover-time {ROLLOVER} s and change_interval 1 as for glusterpy; "
        f"`config sync_method {glusterfs_georep.SYNC_METHOD}` (see below why not rsync); "
        "files written through GlusterFS's FUSE mount of the primary (glusterpy's through "
        "gfapi); the checkpoint's completion time from `status detail`, which GlusterFS "
        "gives to the second. gsyncd moves stime only when it replays a changelog with "
        "changes in it, so a checkpoint set after the last write never completes on its "
        "own: a marker file is rewritten once a second while waiting, which can add up to "
        "a rollover to GlusterFS's times. Active worker's crawl at the end: "
        f"{g.get('crawl', 'n/a')}.",
        f"Load average (1/5/15 min) before: {load_before}, between the two sessions: "
        f"{load_between}, after: {load_after}; the machine is shared with other work.",
    ]
    if "restarted" in g:
        section.notes.append(
            "GlusterFS: the first checkpoint (of the empty volume) did not complete in 90 s: "
            f"{g['restarted']} - the worker in Changelog Crawl was handed none of them by "
            "libgfchangelog, as in six of fourteen runs here (all three of the whole suite on 2026-12-07). Seen with gsyncd's "
            "changelog_log_level DEBUG: libgfchangelog registers with the brick (the brick "
            "connects back to its socket) and then receives no event at all, where a working "
            "session logs one per rollover (\"seq: 1\", \"seq: 2\", ...; the brick's DEBUG log: "
            "\"selector ref count for 1 (idx: 0): 1\" as it rolls over) - the brick does not "
            "send this consumer its journal events; the cause inside GlusterFS was not found. "
            "The session was stopped and started once" +
            ("; its History Crawl replayed those changelogs from the brick's htime index, "
             "the checkpoint completed and the live crawl worked from then on."
             if "error" not in g else "."))
    if "big short" in g:
        section.notes.append(
            "GlusterFS: when the big file's checkpoint completed, the file " +
            (f"had {g['big short']:,} of {big << 20:,} bytes" if g["big short"] >= 0 else
             "was not there at all") + " on the secondary's brick" +
            (f"; it never arrived whole: {g['big lost']}" if "big lost" in g else
             "; the time counts to its arrival whole") +
            ". That is gluster/glusterfs#4632's symptom (files on the secondary with "
            "size 0 while the session reports no failure).")
    if "small short" in g:
        section.notes.append(
            f"GlusterFS: when the small files' checkpoint completed, {g['small short']} "
            "(of their size) on the secondary's brick" +
            (f"; {g['small lost']}" if "small lost" in g else
             "; the time counts to the arrival of the last one whole") + ".")
    if "error" in g:
        section.notes.append(f"GlusterFS's session stopped early: {g['error'][:1500]}")
    section.notes.append(
        "GlusterFS: why not gsyncd's default sync method, rsync, here: "
        + glusterfs_georep.SYNC_METHOD_WHY)
    return section
