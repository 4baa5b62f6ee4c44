"""performance/md-cache and features/upcall: what md-cache answers from
its cache, that a change made through it is seen at once, that another
client's change is seen after md-cache-timeout - or at once when the
brick's upcall sends a cache invalidation - and that it stays bounded."""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
import time

import pytest
import trio

from glusterpy.fops import (GFID, ROOT_GFID, SET_ATTR_MODE, Fd, FopError, Iatt, Loc)
from glusterpy.graph import Graph
from glusterpy.options import OptionError
from glusterpy.volfile import VolfileError
from xlators.performance import md_cache

from test_fuse import Mount, errname

pytestmark = pytest.mark.filterwarnings("ignore::trio.TrioDeprecationWarning")


def volfile(brick, delay_fops: str = "", **options) -> str:
    """posix -> [debug/delay-gen] -> md-cache."""
    opts = "".join(f"    option {k.replace('_', '-')} {v}\n" for k, v in options.items())
    below = "mdc-posix"
    text = f"volume mdc-posix\n    type storage/posix\n    option directory {brick}\nend-volume\n"
    if delay_fops:
        text += (f"volume mdc-delay\n    type debug/delay-gen\n"
                 f"    option delay-percentage 100%\n    option delay-duration 20000\n"
                 f"    option enable {delay_fops}\n    subvolumes mdc-posix\nend-volume\n")
        below = "mdc-delay"
    return text + (f"volume mdc\n    type performance/md-cache\n{opts}"
                   f"    subvolumes {below}\nend-volume\n")


def child(name: str, parent: GFID = ROOT_GFID) -> Loc:
    return Loc(path=f"/{name}", pargfid=parent, name=name)


async def new_file(top, name, data=b"", parent: GFID = ROOT_GFID):
    fd = Fd(flags=os.O_RDWR)
    reply = await top.create(child(name, parent), os.O_RDWR | os.O_CREAT, 0o644, 0, fd,
                             {"gfid-req": GFID.random()})
    fd.gfid = reply.iatt.gfid
    if data:
        await top.writev(fd, data, 0, 0, None)
    return fd


async def size_of(top, gfid) -> int:
    return (await top.stat(Loc(gfid=gfid), None)).iatt.size


async def test_stat_is_served_from_the_cache_until_the_timeout(brick):
    mine = Graph.from_text(volfile(brick, md_cache_timeout=1))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        fd = await new_file(mine.top, "f", b"12345")
        assert await size_of(mine.top, fd.gfid) == 5
        hits = mine.top.stats["stat_hit"]
        ofd = Fd(gfid=fd.gfid, flags=os.O_RDWR)
        await other.top.open(Loc(gfid=fd.gfid), os.O_RDWR, ofd, None)
        await other.top.writev(ofd, b"x" * 100, 0, 0, None)
        # the other client's write is not seen within md-cache-timeout...
        assert await size_of(mine.top, fd.gfid) == 5
        assert (await mine.top.fstat(fd, None)).iatt.size == 5
        assert mine.top.stats["stat_hit"] == hits + 2
        await trio.sleep(1.1)
        # ...and is seen after it
        assert await size_of(mine.top, fd.gfid) == 100


async def test_timeout_zero_caches_nothing(brick):
    mine = Graph.from_text(volfile(brick, md_cache_timeout=0))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        fd = await new_file(mine.top, "f", b"12345")
        await size_of(mine.top, fd.gfid)
        await other.top.truncate(Loc(gfid=fd.gfid), 1, None)
        assert await size_of(mine.top, fd.gfid) == 1
        assert mine.top.stats["stat_hit"] == 0


async def test_own_changes_are_seen_at_once(brick):
    graph = Graph.from_text(volfile(brick, md_cache_timeout=600))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"abc")
        gfid = fd.gfid
        assert await size_of(top, gfid) == 3
        await top.writev(fd, b"defg", 3, 0, None)
        assert await size_of(top, gfid) == 7
        await top.ftruncate(fd, 2, None)
        assert (await top.fstat(fd, None)).iatt.size == 2
        await top.truncate(Loc(gfid=gfid), 9, None)
        assert await size_of(top, gfid) == 9
        await top.setattr(Loc(gfid=gfid), Iatt(mode=0o600), SET_ATTR_MODE, None)
        assert stat.S_IMODE((await top.stat(Loc(gfid=gfid), None)).iatt.mode) == 0o600
        # O_TRUNC on open empties the file: no stale size afterwards
        tfd = Fd(gfid=gfid, flags=os.O_WRONLY | os.O_TRUNC)
        await top.open(Loc(gfid=gfid), os.O_WRONLY | os.O_TRUNC, tfd, None)
        assert await size_of(top, gfid) == 0
        # links: the inode's nlink, by the names a FUSE client uses (no gfid)
        await top.link(Loc(gfid=gfid), child("g"), None)
        assert (await top.stat(Loc(gfid=gfid), None)).iatt.nlink == 2
        await top.unlink(child("g"), 0, None)
        assert (await top.stat(Loc(gfid=gfid), None)).iatt.nlink == 1
        # rename over an existing name drops the replaced inode's link
        other = await new_file(top, "h", b"h")
        await top.link(Loc(gfid=other.gfid), child("h2"), None)
        assert (await top.stat(Loc(gfid=other.gfid), None)).iatt.nlink == 2
        await top.rename(child("f"), child("h"), None)
        assert (await top.stat(Loc(gfid=other.gfid), None)).iatt.nlink == 1
        assert (await top.lookup(child("h"), None)).iatt.gfid == gfid
        with pytest.raises(FopError) as e:
            await top.lookup(child("f"), None)
        assert e.value.errno == errno.ENOENT
        # entry fops change the parent: mkdir raises the root's nlink
        links = (await top.stat(Loc.root(), None)).iatt.nlink
        made = await top.mkdir(child("d"), 0o755, 0, {"gfid-req": GFID.random()})
        assert (await top.stat(Loc.root(), None)).iatt.nlink == links + 1
        await top.rmdir(child("d"), 0, None)
        assert (await top.stat(Loc.root(), None)).iatt.nlink == links
        with pytest.raises(FopError):
            await top.stat(Loc(gfid=made.iatt.gfid), None)


async def test_named_lookups_are_served_once_resolved(brick):
    graph = Graph.from_text(volfile(brick, md_cache_timeout=600))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"abc")
        first = await top.lookup(child("f"), None)
        hits = top.stats["stat_hit"]
        again = await top.lookup(child("f"), None)
        assert top.stats["stat_hit"] == hits + 1
        assert again.iatt == first.iatt and again.iatt.gfid == fd.gfid
        await top.unlink(child("f"), 0, None)
        with pytest.raises(FopError) as e:
            await top.lookup(child("f"), None)
        assert e.value.errno == errno.ENOENT


async def test_xattrs_and_their_absence_are_cached(brick):
    mine = Graph.from_text(volfile(brick, md_cache_timeout=600,
                                   xattr_cache_list="user.cached,user.glob.*"))
    other = Graph.from_text(volfile(brick))
    async with mine.running(), other.running():
        top = mine.top
        fd = await new_file(top, "f")
        loc = Loc(gfid=fd.gfid)
        await other.top.setxattr(loc, {"user.glob.a": b"1"}, 0, None)
        await top.lookup(loc, None)          # loads the cached names
        hits = top.stats["xattr_hit"]
        with pytest.raises(FopError) as e:   # security.capability: a default key
            await top.getxattr(loc, "security.capability", None)
        assert e.value.errno == errno.ENODATA
        with pytest.raises(FopError) as e:
            await top.fgetxattr(fd, "user.cached", None)
        assert e.value.errno == errno.ENODATA
        assert (await top.getxattr(loc, "user.glob.a", None)).dict == {"user.glob.a": b"1"}
        assert top.stats["xattr_hit"] == hits + 3
        # another client's xattr is not seen before the timeout (it was cached absent)
        await other.top.setxattr(loc, {"user.cached": b"theirs"}, 0, None)
        with pytest.raises(FopError):
            await top.getxattr(loc, "user.cached", None)
        # our own change is seen at once; keys not cached always wind
        await top.setxattr(loc, {"user.cached": b"mine"}, 0, None)
        assert (await top.getxattr(loc, "user.cached", None)).dict == {"user.cached": b"mine"}
        await top.setxattr(loc, {"user.other": b"o"}, 0, None)
        assert (await top.getxattr(loc, "user.other", None)).dict == {"user.other": b"o"}
        await top.removexattr(loc, "user.cached", None)
        await top.stat(loc, None)
        with pytest.raises(FopError) as e:
            await top.getxattr(loc, "user.cached", None)
        assert e.value.errno == errno.ENODATA


async def test_a_stat_racing_a_write_never_leaves_the_old_size(brick, monkeypatch):
    """A stat that posix answers before a write but whose reply reaches
    md-cache after the write's (posix's stat reply is held back here) must
    not reinstall the old size."""
    graph = Graph.from_text(volfile(brick, md_cache_timeout=600))
    async with graph.running():
        top = graph.top
        posix = top.first_child
        real_stat = posix.stat

        async def late_stat(loc, xdata=None):
            reply = await real_stat(loc, xdata)
            await trio.sleep(0.05)
            return reply
        monkeypatch.setattr(posix, "stat", late_stat)
        fd = await new_file(top, "f")
        for n in range(1, 4):
            top._invalidate(fd.gfid, xattrs=False)  # make the stat wind
            async with trio.open_nursery() as nursery:
                nursery.start_soon(top.stat, Loc(gfid=fd.gfid), None)
                await trio.sleep(0.01)
                await top.writev(fd, b"z" * 10, 10 * (n - 1), 0, None)
            assert (await top.fstat(fd, None)).iatt.size == 10 * n


async def test_memory_is_bounded_by_the_inode_table(brick, monkeypatch):
    monkeypatch.setattr(md_cache, "DENTRY_LIMIT", 50)
    graph = Graph.from_text(volfile(brick, md_cache_timeout=600))
    async with graph.running():
        top = graph.top
        top.itable.limit = 40
        for i in range(200):
            fd = await new_file(top, f"f{i}")
            await top.release(fd, None)
            await top.lookup(child(f"f{i}"), None)
        dfd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), dfd, None)
        entries = (await top.readdirp(dfd, 1 << 20, 0, None)).entries
        assert len(entries) >= 200
        state = top.dump_state()
        assert state["inodes"] <= 40 and len(top.itable) <= 40
        assert state["dentries"] <= 50


async def test_pass_through_statfs_and_readdir(brick):
    graph = Graph.from_text(volfile(brick, md_cache_timeout=600, md_cache_statfs="on"))
    async with graph.running():
        top = graph.top
        fd = await new_file(top, "f", b"1")
        first = await top.statfs(Loc.root(), None)
        assert await top.statfs(Loc.root(), None) == first
        dfd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), dfd, None)
        names = {e.name: e for e in (await top.readdir(dfd, 1 << 16, 0, None)).entries}
        assert "f" in names and names["f"].iatt is None  # readdir, though readdirp below
        top.reconfigure({"pass-through": "on"})
        assert top.dump_state()["inodes"] == 0
        hits = top.stats["stat_hit"]
        await size_of(top, fd.gfid)
        await size_of(top, fd.gfid)
        assert top.stats["stat_hit"] == hits


async def test_bad_options_are_refused(brick):
    with pytest.raises(VolfileError, match="md-cache-timeout.*above the maximum 600"):
        Graph.from_text(volfile(brick, md_cache_timeout=601))
    with pytest.raises(VolfileError, match="md-cache-timeout"):
        Graph.from_text(volfile(brick, md_cache_timeout="soon"))
    with pytest.raises(VolfileError, match="cache-invalidation"):
        Graph.from_text(volfile(brick, cache_invalidation="maybe"))
    with pytest.raises(VolfileError, match="cache-invalidation-timeout"):
        Graph.from_text(brick_volfile(brick, 0, **{"cache-invalidation-timeout": "-1"}))
    graph = Graph.from_text(volfile(brick, md_cache_timeout=5))
    async with graph.running():
        with pytest.raises(OptionError, match="md-cache-timeout"):
            graph.top.reconfigure({"md-cache-timeout": "-1"})
        assert graph.top.opts.md_cache_timeout == 5  # a refused change changes nothing
        graph.top.reconfigure({"md-cache-timeout": "600", "cache-selinux": "on"})
        assert graph.top.opts.md_cache_timeout == 600
        assert "security.selinux" in graph.top.dump_state()["xattr-patterns"]


async def test_xattr_key_verdicts_follow_the_options_and_stay_bounded(brick):
    """md-cache keeps whether an xattr key is one it caches (the fnmatch
    per key of every lookup reply, done once); a reconfigure that adds a
    pattern changes the verdict of a key already judged, and the kept
    verdicts stay under their bound."""
    graph = Graph.from_text(volfile(brick))
    async with graph.running():
        mdc = graph.top
        assert not mdc._cacheable_key("security.selinux")
        assert mdc._cacheable_key("security.capability") and not mdc._cacheable_key(None)
        mdc.reconfigure({"cache-selinux": "on"})
        assert mdc._cacheable_key("security.selinux")
        for i in range(3 * md_cache.VERDICTS):
            assert not mdc._cacheable_key(f"user.k{i}")
        assert len(mdc._verdicts) <= md_cache.VERDICTS
        assert mdc._cacheable_key("security.selinux")


async def test_stat_prefetch_is_md_cache(brick):
    text = volfile(brick).replace("performance/md-cache", "performance/stat-prefetch")
    graph = Graph.from_text(text)
    async with graph.running():
        assert type(graph.top) is md_cache.MdCache


# -- two clients over protocol/server + protocol/client, upcall on the brick ----------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def brick_volfile(directory, port: int, **upcall) -> str:
    opts = "".join(f"    option {k} {v}\n" for k, v in upcall.items())
    return (f"volume b-posix\n    type storage/posix\n    option directory {directory}\n"
            f"end-volume\n"
            f"volume b-upcall\n    type features/upcall\n{opts}    subvolumes b-posix\n"
            f"end-volume\n"
            f"volume b-server\n    type protocol/server\n"
            f"    option transport.socket.listen-port {port}\n"
            f"    option transport.socket.bind-address 127.0.0.1\n"
            f'    option auth.addr.b-upcall.allow "*"\n    subvolumes b-upcall\nend-volume\n')


def client_volfile(port: int, **mdc) -> str:
    opts = "".join(f"    option {k} {v}\n" for k, v in mdc.items())
    return ("volume c-client\n    type protocol/client\n    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume b-upcall\n"
            "end-volume\n"
            f"volume c-mdc\n    type performance/md-cache\n{opts}    subvolumes c-client\n"
            "end-volume\n")


async def eventually(check, seconds: float = 5.0) -> bool:
    deadline = trio.current_time() + seconds
    while trio.current_time() < deadline:
        if await check():
            return True
        await trio.sleep(0.02)
    return False


@pytest.mark.parametrize("invalidation", ["on", "off"])
async def test_upcall_invalidates_the_other_clients_cache(tmp_path, invalidation):
    port = free_port()
    brick = Graph.from_text(brick_volfile(tmp_path, port, **{"cache-invalidation": invalidation}))
    mdc = {"md-cache-timeout": "600", "cache-invalidation": invalidation}
    a_graph, b_graph = (Graph.from_text(client_volfile(port, **mdc)) for _ in "ab")
    async with brick.running(), a_graph.running(), b_graph.running():
        assert await a_graph.wait_child_up(10) and await b_graph.wait_child_up(10)
        a, b = a_graph.top, b_graph.top
        fd = await new_file(a, "f", b"12345")
        d = await a.mkdir(child("d"), 0o755, 0, {"gfid-req": GFID.random()})
        await new_file(a, "gone", b"", parent=d.iatt.gfid)
        assert await size_of(a, fd.gfid) == 5
        await a.lookup(child("gone", d.iatt.gfid), None)
        assert (await b.lookup(child("f"), None)).iatt.gfid == fd.gfid
        bfd = Fd(gfid=fd.gfid, flags=os.O_RDWR)
        await b.open(Loc(gfid=fd.gfid), os.O_RDWR, bfd, None)
        await b.writev(bfd, b"y" * 50, 0, 0, None)
        await b.unlink(child("gone", d.iatt.gfid), 0, None)

        async def a_sees_the_write():
            return await size_of(a, fd.gfid) == 50

        async def a_sees_the_unlink():
            try:
                await a.lookup(child("gone", d.iatt.gfid), None)
            except FopError as e:
                return e.errno == errno.ENOENT
            return False

        if invalidation == "on":
            # long before md-cache-timeout (600 s): the brick told A
            assert await eventually(a_sees_the_write)
            assert await eventually(a_sees_the_unlink)
            assert a.stats["upcalls"] >= 2
            assert brick.by_name["b-upcall"].sent >= 2
            # the writer is not told of its own change: its cached size stays
            hits = b.stats["stat_hit"]
            assert await size_of(b, fd.gfid) == 50 and b.stats["stat_hit"] == hits + 1
        else:
            assert not await eventually(a_sees_the_write, 0.5)
            assert not await eventually(a_sees_the_unlink, 0.2)
            assert brick.by_name["b-upcall"].sent == 0


# -- a FUSE mount with md-cache in its volfile ---------------------------------------------

FUSE_VOLFILE = """
volume m-posix
    type storage/posix
    option directory {brick}
end-volume

volume m-md-cache
    type performance/md-cache
    option md-cache-timeout 600
    option xattr-cache-list user.cached
    subvolumes m-posix
end-volume
"""


@pytest.mark.skipif(not os.path.exists("/dev/fuse"), reason="needs /dev/fuse")
def test_fuse_mount_through_md_cache(tmp_path):
    m = Mount(tmp_path, volfile=FUSE_VOLFILE)
    assert m.ok(), m.result.stderr + (m.log.read_text() if m.log.exists() else "")
    try:
        p = m.mnt / "f"
        p.write_bytes(b"abc")
        assert p.stat().st_size == 3
        with open(p, "ab") as f:
            f.write(b"defg")
        assert p.stat().st_size == 7
        os.link(p, m.mnt / "g")
        assert p.stat().st_nlink == 2
        os.unlink(m.mnt / "g")
        assert p.stat().st_nlink == 1
        os.chmod(p, 0o640)
        assert stat.S_IMODE(p.stat().st_mode) == 0o640
        assert errname(os.getxattr, p, "user.cached") == "ENODATA"
        os.setxattr(p, "user.cached", b"v")
        assert os.getxattr(p, "user.cached") == b"v"
        os.truncate(p, 1)
        assert p.stat().st_size == 1 and p.read_bytes() == b"a"
        (m.mnt / "d").mkdir()
        os.rename(p, m.mnt / "d" / "f")
        assert (m.mnt / "d" / "f").read_bytes() == b"a" and not p.exists()
        # a change made beside the mount (on the brick) stays hidden for
        # md-cache-timeout: the stat really came from md-cache
        (m.brick / "d" / "f").write_bytes(b"12345678")
        time.sleep(1.2)  # past the kernel's own attribute timeout (1 s)
        assert (m.mnt / "d" / "f").stat().st_size == 1
    finally:
        m.unmount()


STATS_BELOW_DISTRIBUTE = """
volume u-posix
    type storage/posix
    option directory {brick}
end-volume

volume u-stats
    type debug/io-stats
    option count-fop-hits on
    subvolumes u-posix
end-volume

volume u-dht
    type cluster/distribute
    subvolumes u-stats
end-volume

volume u-mdc
    type performance/md-cache
    option md-cache-timeout 600
    subvolumes u-dht
end-volume
"""


@contextlib.asynccontextmanager
async def listed_abc(brick):
    """A graph with io-stats below distribute that has listed /a, /b and /c
    (md-cache knows their gfids), another client of the same brick, and a
    count of the LOOKUPs that reach the brick."""
    graph = Graph.from_text(STATS_BELOW_DISTRIBUTE.format(brick=brick))
    other = Graph.from_text(volfile(brick))
    async with graph.running(), other.running():
        top, stats = graph.top, graph.by_name["u-stats"]
        for name in ("a", "b", "c"):
            await new_file(top, name)
        fd = Fd(gfid=ROOT_GFID, is_dir=True)
        await top.opendir(Loc.root(), fd, None)
        listed = (await top.readdirp(fd, 65536, 0, None)).entries
        assert {"a", "b", "c"} <= {e.name for e in listed}

        def lookups() -> int:
            return stats.stats()["fops"].get("LOOKUP", {}).get("hits", 0)
        yield top, other.top, lookups
        await top.releasedir(fd, None)


async def test_an_unlink_of_a_listed_name_sends_no_lookup(brick):
    """fuse-bridge resolves an unlink's name before the fop: md-cache hands
    the gfid it learned from the listing down, so distribute does not look
    the name up on the brick first (rm -rf: one request per file, not two);
    a gfid made stale by another client does not stop the unlink."""
    async with listed_abc(brick) as (top, other, lookups):
        before = lookups()
        await top.unlink(child("a"), 0, None)
        assert lookups() == before
        assert not (brick / "a").exists()
        # another client replaces "b": the gfid md-cache knows is gone
        await other.unlink(child("b"), 0, None)
        await new_file(other, "b", b"new")
        await top.unlink(child("b"), 0, None)
        assert not (brick / "b").exists() and (brick / "c").exists()
        with pytest.raises(FopError) as e:
            await top.unlink(child("b"), 0, None)
        assert e.value.errno == errno.ENOENT


async def test_a_rename_of_a_listed_name_sends_no_lookup_of_it(brick):
    """The rename's source goes down with the gfid md-cache learned from the
    listing (as fuse-bridge resolves it), so distribute does not look it up
    on the brick; a source another client replaced is still renamed."""
    async with listed_abc(brick) as (top, other, lookups):
        before = lookups()
        await top.rename(child("a"), child("c"), None)
        # the one LOOKUP left is distribute's of the target name (dht_rename
        # needs its cached subvolume); none of the source
        assert lookups() - before == 1
        assert not (brick / "a").exists() and (brick / "c").exists()
        # another client replaces "b": the gfid md-cache knows is gone
        await other.unlink(child("b"), 0, None)
        await new_file(other, "b", b"new")
        await top.rename(child("b"), child("d"), None)
        assert not (brick / "b").exists() and (brick / "d").read_bytes() == b"new"
        with pytest.raises(FopError) as e:
            await top.rename(child("b"), child("e"), None)
        assert e.value.errno == errno.ENOENT


def test_iatt_copy_keeps_every_field():
    """Iatt.copy (the caches' and distribute's cheap copy) names the fields
    one by one: a field added to Iatt and not to copy() fails here."""
    import dataclasses
    values = {f.name: (GFID.random() if f.name == "gfid" else i + 1)
              for i, f in enumerate(dataclasses.fields(Iatt))}
    original = Iatt(**values)
    copied = original.copy()
    assert copied == original and copied is not original
    copied.size = 0
    assert original.size == values["size"]
