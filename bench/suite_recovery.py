"""Heal and rebalance speed alone (issue 17): the heal-speed table of the
replicate suite and the rebalance-speed table of the distribute suite,
without their IO tables, each contender run REPEAT times and its best run
kept - the machine is shared, and a run that met someone else's load says
more about them than about the heal.

The tables carry the same titles as the suites' own, so RESULTS.md keeps
one heal table and one rebalance table whichever suite wrote them last.

GLUSTERPY_BENCH_REPEAT (default 2) sets the runs per contender;
GLUSTERPY_BENCH_CONTENDERS=glusterpy (or glusterfs) runs one side only,
for iterating on one side (its tables then show no ratio);
GLUSTERPY_BENCH_SHD_THREADS=N adds heal rows with `cluster.shd-max-threads
N` set on both sides (each compared with the other's row of the same).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
from pathlib import Path

from .report import Section
from .servers import port_24007
from .suite_distribute import (GlusterD, Glusterpyd, rebalance_glusterfs, rebalance_glusterpy,
                               rebalance_section, require_glusterfs)
from .suite_replicate import heal_glusterfs, heal_glusterpy, heal_section

NAME = "recovery"
TITLE = "self-heal and rebalance speed"

#: the lock every engineer's real GlusterFS takes on this machine
REAL_GLUSTER_LOCK = "/tmp/realgluster.lock"


@contextlib.contextmanager
def real_gluster():
    with open(REAL_GLUSTER_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            with port_24007():
                yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def run(work: Path, quick: bool = False) -> list[Section]:
    heal_files, heal_size = (100, 16 << 10) if quick else (1000, 128 << 10)
    rb_files, rb_size = (200, 64 << 10) if quick else (2000, 256 << 10)
    repeat = int(os.environ.get("GLUSTERPY_BENCH_REPEAT", "2"))
    sides = os.environ.get("GLUSTERPY_BENCH_CONTENDERS", "glusterpy,glusterfs").split(",")
    require_glusterfs()
    heal: dict[str, dict[str, float]] = {}
    rebalance: dict[str, dict[str, float]] = {}
    load_before = os.getloadavg()

    def best(table, label, result):
        print(f"  {label}: {result}", flush=True)
        if label not in table or result["seconds"] < table[label]["seconds"]:
            table[label] = result

    threads = os.environ.get("GLUSTERPY_BENCH_SHD_THREADS")
    variants = [("", None)]
    if threads:
        variants.append((f" (shd-max-threads {threads})", {"cluster.shd-max-threads": threads}))
    for n in range(repeat):
        if "glusterpy" in sides:
            gd = Glusterpyd(work / f"glusterpy-{n}")
            try:
                for k, (suffix, options) in enumerate(variants):
                    best(heal, "glusterpy glustershd" + suffix,
                         {"seconds": heal_glusterpy(gd, work / f"glusterpy-{n}", heal_files,
                                                    heal_size, options, vol=f"h3v{k}")})
                best(rebalance, "glusterpy rebalance process",
                     rebalance_glusterpy(gd, work / f"glusterpy-{n}", rb_files, rb_size))
            finally:
                gd.stop()
        if "glusterfs" in sides:
            with real_gluster():
                g = GlusterD(work / f"glusterfs-{n}")
                try:
                    host = socket.gethostname()
                    for suffix, options in variants:
                        best(heal, "GlusterFS 10 glustershd" + suffix,
                             {"seconds": heal_glusterfs(g, work / f"glusterfs-{n}", host,
                                                        heal_files, heal_size, options)})
                    best(rebalance, "GlusterFS 10 rebalance process",
                         rebalance_glusterfs(g, work / f"glusterfs-{n}", host, rb_files,
                                             rb_size))
                finally:
                    g.stop()
    load_after = os.getloadavg()
    hs = heal_section(heal, heal_files, heal_size, load_before, load_after)
    rb = rebalance_section(rebalance, rb_files, rb_size, (load_before, load_after))
    for s in (hs, rb):
        s.notes.append(f"The better of {repeat} runs of each contender (bench/suite_recovery.py).")
    return [hs, rb]
