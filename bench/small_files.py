"""What quick-read, open-behind and nl-cache buy (issue 17), in process: a
posix brick under each stack, optionally behind debug/delay-gen standing in
for the network (every fop that reaches the brick waits DELAY us).

* 1,000 small (1-4 KiB) files read whole: lookup, open, readv, flush, release;
* 10,000 lookups of missing names (100 names, 100 times each).

Prints the wall time and the fops that reached the brick.  Not a suite:
python -m bench.small_files [DELAY_US]"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import trio

from glusterpy import fops
from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.graph import Graph

STACKS = {
    "posix": [],
    "open-behind+quick-read": ["performance/open-behind", "performance/quick-read"],
    "nl-cache": ["performance/nl-cache"],
}


def volfile(brick: Path, stack: list[str], delay_us: int) -> str:
    text = f"volume b-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n"
    below = "b-posix"
    if delay_us:
        text += (f"volume b-net\n    type debug/delay-gen\n    option delay-percentage 100\n"
                 f"    option delay-duration {delay_us}\n"
                 f"    option enable {','.join(f.gf_name for f in fops.CATALOGUE)}\n"
                 f"    subvolumes {below}\nend-volume\n")
        below = "b-net"
    for i, kind in enumerate(stack):
        text += f"volume b-{i}\n    type {kind}\n    subvolumes {below}\nend-volume\n"
        below = f"b-{i}"
    return text


def count_brick_fops(graph: Graph) -> dict[str, int]:
    posix = graph.by_name["b-posix"]
    counts: dict[str, int] = {}
    for fop in fops.CATALOGUE:
        original = getattr(posix, fop.name)

        def counted(*args, _name=fop.name, _orig=original, **kwargs):
            counts[_name] = counts.get(_name, 0) + 1
            return _orig(*args, **kwargs)
        setattr(posix, fop.name, counted)
    return counts


async def read_files(top, n: int) -> None:
    for i in range(n):
        loc = Loc(path=f"/f{i}", pargfid=ROOT_GFID, name=f"f{i}")
        gfid = (await top.lookup(loc, None)).iatt.gfid
        fd = Fd(gfid=gfid, flags=os.O_RDONLY)
        await top.open(Loc(path=loc.path, gfid=gfid), os.O_RDONLY, fd, None)
        data = (await top.readv(fd, 1 << 20, 0, 0, None)).data
        assert len(data) == 1024 + (i % 4) * 1024
        await top.flush(fd, None)
        await top.release(fd, None)


async def missing_lookups(top, n: int) -> None:
    for i in range(n):
        name = f"missing{i % 100}"
        try:
            await top.lookup(Loc(pargfid=ROOT_GFID, name=name), None)
        except FopError:
            pass


async def run(stack: list[str], delay_us: int, workload, n: int) -> tuple[float, dict]:
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        brick = Path(tmp)
        graph = Graph.from_text(volfile(brick, stack, delay_us))
        async with graph.running():
            top = graph.top
            if workload is read_files:
                for i in range(n):
                    fd = Fd(flags=os.O_RDWR)
                    loc = Loc(path=f"/f{i}", pargfid=ROOT_GFID, name=f"f{i}")
                    reply = await graph.by_name["b-posix"].create(
                        loc, os.O_RDWR | os.O_CREAT, 0o644, 0, fd, {"gfid-req": GFID.random()})
                    fd.gfid = reply.iatt.gfid
                    await graph.by_name["b-posix"].writev(fd, b"x" * (1024 + (i % 4) * 1024),
                                                          0, 0, None)
                    await graph.by_name["b-posix"].release(fd, None)
            counts = count_brick_fops(graph)
            start = time.perf_counter()
            await workload(top, n)
            return time.perf_counter() - start, counts


async def main(delay_us: int) -> None:
    print(f"brick fops delayed by {delay_us} us" if delay_us else "no delay (local brick)")
    for label, workload, n, stacks in (
            ("1,000 small files, open+read+close", read_files, 1000,
             ["posix", "open-behind+quick-read"]),
            ("10,000 lookups of missing names", missing_lookups, 10000, ["posix", "nl-cache"])):
        print(label)
        for name in stacks:
            seconds, counts = await run(STACKS[name], delay_us, workload, n)
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            print(f"  {name:24s} {seconds:7.3f} s  brick fops: {sum(counts.values())} "
                  f"({shown})")


if __name__ == "__main__":
    trio.run(main, int(sys.argv[1]) if len(sys.argv) > 1 else 0)
