"""cluster/distribute against a real GlusterFS 10 distribute volume.

* GlusterFS writes (through its FUSE client, renames and hard links
  included): every name sits where our hash puts it, every directory has
  the layout our arithmetic computes, and our distribute reads it all back.
* We write (with renames, hard links and linkto files): GlusterFS 10's own
  DHT serves the bricks and shows the same namespace, then writes to them,
  and we read what it wrote.

The volume is made with `cluster.weighted-rebalance off` so that the layouts
do not depend on the bricks' free space at the moment GlusterFS looked
(weighted layouts are checked against GlusterFS's arithmetic in
test_distribute.py).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
import trio

from glusterpy.fops import ROOT_GFID, Loc
from glusterpy.gfapi import AsyncVolume
from glusterpy.graph import Graph
from xlators.cluster.distribute import layout as dl

from test_distribute import (check_volume, disk_layout, distribute_volfile, is_linkto,
                             listing, make_bricks, read_all, running)

pytestmark = pytest.mark.interop


def create_distribute_volume(gd, name: str, bricks) -> str:
    gd.cli("volume", "create", name, *[f"{gd.host}:{b}" for b in bricks], "force")
    gd.volumes.append(name)
    gd.cli("volume", "set", name, "cluster.weighted-rebalance", "off")
    gd.cli("volume", "start", name)
    return name


def tree(root: Path) -> dict:
    """Names, types, contents and link counts under a directory."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel = os.path.relpath(dirpath, root)
        for name in dirnames + filenames:
            full = os.path.join(dirpath, name)
            st = os.lstat(full)
            key = os.path.normpath(os.path.join(rel, name))
            if stat.S_ISDIR(st.st_mode):
                out[key] = "dir"
            elif stat.S_ISLNK(st.st_mode):
                out[key] = ("link", os.readlink(full))
            else:
                out[key] = (open(full, "rb").read(), st.st_nlink)
    return out


def check_layouts_are_ours(bricks, volname: str, dirs) -> None:
    names = [f"{volname}-client-{i}" for i in range(len(bricks))]
    for rel in dirs:
        layout = dl.Layout([dl.LayoutEntry(i, n, err=-1) for i, n in enumerate(names)])
        dl.new_directory_layout(layout, "/" + rel if rel else "/", dl.NameHasher(),
                                weighted=False)
        ours = {e.index: (e.start, e.stop) for e in layout.entries}
        theirs = {i: tuple(disk_layout(b / rel)[2:]) for i, b in enumerate(bricks)}
        assert theirs == ours, rel


async def test_glusterfs10_writes_we_place_and_read_the_same(glusterd, tmp_path):
    bricks = make_bricks(tmp_path, 3, "gf")
    mnt = tmp_path / "mnt"
    vol = await trio.to_thread.run_sync(create_distribute_volume, glusterd,
                                        f"{glusterd.prefix}dg", bricks)
    await trio.to_thread.run_sync(glusterd.mount, vol, mnt)
    try:
        (mnt / "top" / "sub").mkdir(parents=True)
        for i in range(24):
            (mnt / "top" / f"file{i}").write_bytes(os.urandom(100 + i))
            (mnt / "top" / "sub" / f"s{i}").write_bytes(b"sub%d" % i)
        for i in range(8):
            os.rename(mnt / "top" / f"file{i}", mnt / "top" / "sub" / f"moved{i}")
        for i in range(8, 11):
            os.link(mnt / "top" / f"file{i}", mnt / "top" / f"hard{i}")
        os.symlink("sub/s1", mnt / "top" / "sym")
        written = tree(mnt)
    finally:
        await trio.to_thread.run_sync(glusterd.umount, mnt)
    await trio.to_thread.run_sync(glusterd.stop_volume, vol)

    assert any(is_linkto(b / "top" / "sub" / f"moved{i}") for b in bricks for i in range(8)
               if (b / "top" / "sub" / f"moved{i}").exists())
    check_volume(bricks)                  # names where our hash puts them
    check_layouts_are_ours(bricks, vol, ["", "top", "top/sub"])

    async with running(bricks, name=vol) as top:
        seen = {}

        async def walk(gfid, path):
            for name in await listing(top, gfid, path or "/", size=1000):
                child = f"{path}/{name}"
                ia = (await top.lookup(Loc(path=child, pargfid=gfid, name=name), None)).iatt
                key = child.lstrip("/")
                if ia.is_dir:
                    seen[key] = "dir"
                    await walk(ia.gfid, child)
                elif ia.is_link:
                    seen[key] = ("link", (await top.readlink(Loc(gfid=ia.gfid), 4096,
                                                             None)).path)
                else:
                    seen[key] = (await read_all(top, ia.gfid), ia.nlink)

        await walk(ROOT_GFID, "")
    assert seen == written


async def test_we_write_glusterfs10_serves_and_writes_back(glusterd, tmp_path):
    bricks = make_bricks(tmp_path, 3, "ours")
    mnt = tmp_path / "mnt"
    vol = f"{glusterd.prefix}dw"
    graph = Graph.from_text(distribute_volfile(bricks, name=vol))
    async with AsyncVolume(graph) as v:
        await v.makedirs("/a/b/c")
        for i in range(20):
            async with await v.fopen(f"/a/f{i}", "w") as f:
                await f.write(b"ours %d" % i)
        for i in range(8):
            await v.rename(f"/a/f{i}", f"/a/b/r{i}")
        for i in range(8, 11):
            await v.link(f"/a/f{i}", f"/a/b/c/h{i}")
        await v.symlink("../f12", "/a/b/sym")
        await v.rename("/a/b/c", "/a/c2")
    check_volume(bricks)
    assert any(is_linkto(p) for b in bricks for p in (b / "a" / "b").iterdir())
    expected = tree_through_bricks(bricks)

    await trio.to_thread.run_sync(create_distribute_volume, glusterd, vol, bricks)
    await trio.to_thread.run_sync(glusterd.mount, vol, mnt)
    try:
        assert tree(mnt) == expected
        assert os.stat(mnt / "a" / "c2" / "h9").st_ino == os.stat(mnt / "a" / "f9").st_ino
        # GlusterFS writes in what we made
        (mnt / "a" / "from-gf").write_bytes(b"glusterfs")
        os.rename(mnt / "a" / "f15", mnt / "a" / "b" / "gf-renamed")
        os.unlink(mnt / "a" / "b" / "r0")
        (mnt / "a" / "c2" / "gfdir").mkdir()
        final = tree(mnt)
    finally:
        await trio.to_thread.run_sync(glusterd.umount, mnt)
    await trio.to_thread.run_sync(glusterd.stop_volume, vol)
    check_volume(bricks)

    async with AsyncVolume(Graph.from_text(distribute_volfile(bricks, name=vol))) as v:
        assert await read_back(v, "/") == final


def tree_through_bricks(bricks) -> dict:
    """The namespace the bricks add up to, with link counts of the data."""
    out = {}
    for brick in bricks:
        for dirpath, dirnames, filenames in os.walk(brick):
            if Path(dirpath) == brick and ".glusterfs" in dirnames:
                dirnames.remove(".glusterfs")
            rel = os.path.relpath(dirpath, brick)
            for name in dirnames:
                out[os.path.normpath(os.path.join(rel, name))] = "dir"
            for name in filenames:
                full = os.path.join(dirpath, name)
                if is_linkto(full):
                    continue
                st = os.lstat(full)
                key = os.path.normpath(os.path.join(rel, name))
                if stat.S_ISLNK(st.st_mode):
                    out[key] = ("link", os.readlink(full))
                else:
                    # a brick counts the .glusterfs handle as a link
                    out[key] = (open(full, "rb").read(), st.st_nlink - 1)
    return out


async def read_back(v: AsyncVolume, top: str) -> dict:
    out = {}
    async for dirpath, dirnames, filenames in v.walk(top):
        rel = os.path.relpath(dirpath, top)
        for name in dirnames:
            out[os.path.normpath(os.path.join(rel, name))] = "dir"
        for name in filenames:
            path = os.path.join(dirpath, name)
            key = os.path.normpath(os.path.join(rel, name))
            st = await v.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                out[key] = ("link", await v.readlink(path))
            else:
                async with await v.fopen(path, "rb") as f:
                    out[key] = (await f.read(), st.st_nlink)
    return out
