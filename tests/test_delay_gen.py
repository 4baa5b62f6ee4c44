"""debug/delay-gen delays exactly the fops it is told to (virtual clock)."""

import pytest
import trio

from glusterpy.fops import Loc
from glusterpy.graph import Graph
from glusterpy.volfile import VolfileError


def volfile(brick, enable, percentage="100%"):
    return (f"volume d-posix\n type storage/posix\n option directory {brick}\nend-volume\n"
            f"volume d\n type debug/delay-gen\n option delay-percentage {percentage}\n"
            f" option delay-duration 250000\n option enable {enable}\n"
            f" subvolumes d-posix\nend-volume\n")


async def timed(fn):
    start = trio.current_time()
    await fn()
    return trio.current_time() - start


async def test_only_enabled_fops_wait(brick, autojump_clock):
    graph = Graph.from_text(volfile(brick, "LOOKUP,write"))
    async with graph.running():
        top = graph.top
        assert await timed(lambda: top.lookup(Loc.root(), None)) == pytest.approx(0.25)
        assert await timed(lambda: top.statfs(Loc.root(), None)) == 0
        top.reconfigure({"enable": "statfs", "delay-percentage": "100%",
                         "delay-duration": "1000"})
        assert await timed(lambda: top.statfs(Loc.root(), None)) == pytest.approx(0.001)
        assert await timed(lambda: top.lookup(Loc.root(), None)) == 0


async def test_zero_percent_never_waits(brick, autojump_clock):
    graph = Graph.from_text(volfile(brick, "lookup", "0%"))
    async with graph.running():
        for _ in range(20):
            assert await timed(lambda: graph.top.lookup(Loc.root(), None)) == 0


def test_unknown_fop_is_refused(brick):
    with pytest.raises(VolfileError, match="unknown fop 'frobnicate'"):
        Graph.from_text(volfile(brick, "lookup,frobnicate"))
