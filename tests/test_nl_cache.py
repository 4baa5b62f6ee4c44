"""performance/nl-cache: missing names are answered from the cache within
nl-cache-timeout; entry fops through the graph are seen at once; the cache
stays within nl-cache-limit."""

from __future__ import annotations

import errno
import os

import pytest
import trio

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc
from glusterpy.graph import Graph
from glusterpy.volfile import VolfileError
from glusterpy.xlator import Event


def volfile(brick, **options) -> str:
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    return (f"volume nl-posix\n    type storage/posix\n    option directory {brick}\n"
            f"end-volume\n\n"
            f"volume nl\n    type performance/nl-cache\n{opts}"
            f"    subvolumes nl-posix\nend-volume\n")


def at(name, parent=ROOT_GFID):
    return Loc(pargfid=parent, name=name)


def req():
    return {"gfid-req": GFID.random()}


class Lookups:
    def __init__(self, top):
        self.n = 0
        child = top.first_child
        original = child.lookup

        async def counted(loc, xdata=None):
            self.n += 1
            return await original(loc, xdata)
        child.lookup = counted


async def missing(top, loc):
    with pytest.raises(FopError) as e:
        await top.lookup(loc, None)
    assert e.value.errno == errno.ENOENT


async def test_repeated_negative_lookups_are_served_here(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        seen = Lookups(top)
        for _ in range(5):
            await missing(top, at("nothing"))
        assert seen.n == 1 and top.hits == 4 and top.misses == 1


async def test_names_made_through_the_graph_are_found_at_once(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        for name in ("f", "d", "s", "n", "l", "r"):
            await missing(top, at(name))
        fd = Fd()
        await top.create(at("f"), os.O_RDWR | os.O_CREAT, 0o644, 0, fd, req())
        assert (await top.lookup(at("f"), None)).iatt.is_reg
        await top.mkdir(at("d"), 0o755, 0, req())
        assert (await top.lookup(at("d"), None)).iatt.is_dir
        await top.symlink("f", at("s"), 0, req())
        assert (await top.lookup(at("s"), None)).iatt.is_link
        await top.mknod(at("n"), 0o10644, 0, 0, req())
        await top.lookup(at("n"), None)
        await top.link(Loc(gfid=fd.gfid or (await top.lookup(at("f"), None)).iatt.gfid),
                       at("l"), None)
        await top.lookup(at("l"), None)
        await missing(top, at("r"))
        await top.rename(at("n"), at("r"), None)
        await top.lookup(at("r"), None)
        await missing(top, at("n"))
        await top.unlink(at("r"), 0, None)
        await missing(top, at("r"))


async def test_another_client_is_seen_after_the_timeout(brick):
    mine = Graph.from_text(volfile(brick, nl_cache_timeout=1))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        await missing(mine.top, at("x"))
        await other.top.mkdir(at("x"), 0o755, 0, req())
        await missing(mine.top, at("x"))          # cached: GlusterFS needs upcalls here
        await trio.sleep(1.1)
        assert (await mine.top.lookup(at("x"), None)).iatt.is_dir


async def test_upcall_on_the_parent_clears_it(brick):
    class Message:
        flags = 0x200              # UP_PARENT_TIMES

        class parent_stat:
            gfid = ROOT_GFID

        class oldparent_stat:
            gfid = bytes(16)

    class Upcall:
        event_type = 1
        gfid = GFID.random()
        message = Message()

    mine = Graph.from_text(volfile(brick))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        await missing(mine.top, at("x"))
        await other.top.mkdir(at("x"), 0o755, 0, req())
        mine.top.notify(Event.UPCALL, mine.top.first_child, Upcall())
        assert (await mine.top.lookup(at("x"), None)).iatt.is_dir
        assert mine.top.invalidations == 1


async def test_child_events_make_the_cache_stale(brick):
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        seen = Lookups(top)
        await missing(top, at("x"))
        top.notify(Event.CHILD_UP, top.first_child)
        await missing(top, at("x"))
        assert seen.n == 2


async def test_a_lookup_racing_a_create_leaves_no_stale_entry(brick):
    """The lookup finds nothing on the brick, the create lands, then the
    lookup's ENOENT arrives: the name must not be cached as missing."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        top = graph.top
        posix = top.first_child
        original = posix.lookup
        reached, release = trio.Event(), trio.Event()

        async def slow(loc, xdata=None):
            try:
                return await original(loc, xdata)
            finally:
                if loc.name == "race":
                    reached.set()
                    await release.wait()
        posix.lookup = slow

        async def lookup_fails():
            with pytest.raises(FopError):
                await top.lookup(at("race"), None)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(lookup_fails)
            await reached.wait()
            await top.mkdir(at("race"), 0o755, 0, req())
            release.set()
        posix.lookup = original
        assert (await top.lookup(at("race"), None)).iatt.is_dir


async def test_positive_entries_make_a_new_directory_complete(brick):
    graph = Graph.from_text(volfile(brick, nl_cache_positive_entry="on"))
    async with graph.running():
        top = graph.top
        d = (await top.mkdir(at("d"), 0o755, 0, req())).iatt.gfid
        seen = Lookups(top)
        for i in range(10):
            await missing(top, at(f"new{i}", d))
        assert seen.n == 0                           # all answered here
        fd = Fd()
        await top.create(at("new0", d), os.O_RDWR | os.O_CREAT, 0o644, 0, fd, req())
        assert (await top.lookup(at("new0", d), None)).iatt.is_reg
        await top.unlink(at("new0", d), 0, None)
        await missing(top, at("new0", d))
        assert seen.n == 1


async def test_the_limit_bounds_the_cache(brick):
    graph = Graph.from_text(volfile(brick, nl_cache_limit="8KB"))
    async with graph.running():
        top = graph.top
        dirs = [(await top.mkdir(at(f"d{i}"), 0o755, 0, req())).iatt.gfid for i in range(20)]
        for d in dirs:
            for j in range(20):
                await missing(top, at(f"missing-name-{j}", d))
                assert top.dump_state()["cost"] <= 8 << 10
        assert 0 < top.dump_state()["directories"] < 20
        # the newest directory's names are still cached
        seen = Lookups(top)
        await missing(top, at("missing-name-19", dirs[-1]))
        assert seen.n == 0


async def test_inode_table_bound_drops_records(brick):
    graph = Graph.from_text(volfile(brick, nl_cache_limit="10MB"))
    async with graph.running():
        top = graph.top
        dirs = [(await top.mkdir(at(f"d{i}"), 0o755, 0, req())).iatt.gfid for i in range(60)]
        top.itable.limit = 20
        for d in dirs:
            await missing(top, at("x", d))
        state = top.dump_state()
        assert state["directories"] <= 21 and state["directories"] == \
            len(list(top.itable.contexts(top)))


async def test_pass_through_and_bad_options(brick):
    graph = Graph.from_text(volfile(brick, pass_through="on"))
    async with graph.running():
        top = graph.top
        seen = Lookups(top)
        await missing(top, at("x"))
        await missing(top, at("x"))
        assert seen.n == 2
        top.reconfigure({"pass-through": "off"})
        await missing(top, at("x"))
        await missing(top, at("x"))
        assert seen.n == 3
        top.reconfigure({"pass-through": "on"})
        assert top.dump_state()["directories"] == 0
    for key, bad in (("nl-cache-timeout", "-5"), ("nl-cache-limit", "huge"),
                     ("nl-cache-positive-entry", "maybe"), ("pass-through", "2")):
        with pytest.raises(VolfileError, match=f"option '{key}'"):
            Graph.from_text(volfile(brick, **{key.replace("-", "_"): bad}))
