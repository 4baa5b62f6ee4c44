"""distribute's readdirp entry path: the one-loop filter of a whole reply
(`_show_entries`) shows what the per-entry `_show_entry` shows - linkto
files hidden, migration marks stripped, directories with GlusterFS's fixed
size, every file's subvolume remembered - over a real storage/posix brick."""

from __future__ import annotations

import copy
import os

from glusterpy.fops import ROOT_GFID, Fd, Loc, UInt
from xlators.cluster.distribute.common import FileCtx
from xlators.cluster.distribute.directory import DhtDirectory

from test_distribute import (LINKTO_KEY, create_file, listing, make_bricks, mkdir,
                              running)


def _entry_view(entries):
    return [(e.name, e.off, e.type, e.iatt, e.xdata) for e in entries]


async def test_one_loop_shows_what_show_entry_shows(tmp_path):
    bricks = make_bricks(tmp_path, 1)
    async with running(bricks) as top:
        d = await mkdir(top, ROOT_GFID, "/d")
        await mkdir(top, d, "/d/sub")
        plain = await create_file(top, d, "/d/plain", b"data")
        await create_file(top, d, "/d/xattrs", b"x")
        await top.setxattr(Loc(path="/d/xattrs", pargfid=d, name="xattrs"),
                           {"user.kept": b"1"}, 0, None)
        linkto = await create_file(top, d, "/d/linkto")
        migrating = await create_file(top, d, "/d/migrating", b"half")
        # what rebalance leaves on a brick, made behind the graph's back
        os.chmod(bricks[0] / "d" / "linkto", 0o1000)
        os.setxattr(bricks[0] / "d" / "linkto", LINKTO_KEY, b"dv-client-0\0")
        os.chmod(bricks[0] / "d" / "migrating", 0o3644)
        for gfid in (plain, linkto, migrating):
            top.itable.del_ctx(top, gfid)

        # the reference: the brick's reply through the per-entry filter
        fd = Fd(gfid=d, is_dir=True)
        await top.opendir(Loc(path="/d", gfid=d), fd, None)
        req = {LINKTO_KEY: UInt(256), "user.kept": UInt(0)}
        raw = (await top.children[0].readdirp(fd, 1 << 20, 0, req)).entries
        ctx = await top._dir_ctx(d, None)
        expected = [e for e in copy.deepcopy(raw)
                    if DhtDirectory._show_entry(top, e, 0, ctx, True, 0, {"user.kept": UInt(0)})]
        got = (await top.readdirp(fd, 1 << 20, 0, {"user.kept": UInt(0)})).entries
        await top.releasedir(fd, None)
        assert _entry_view(got) == _entry_view(expected)

        by_name = {e.name: e for e in got}
        assert "linkto" not in by_name and "linkto" in {e.name for e in raw}
        assert by_name["migrating"].iatt.mode == 0o100644
        assert by_name["sub"].iatt.size == 4096 and by_name["sub"].iatt.blocks == 8
        assert by_name["xattrs"].xdata == {"user.kept": b"1"}
        assert LINKTO_KEY not in (by_name["plain"].xdata or {})
        # the brick's own iatts are not changed under other holders
        raw_migrating = next(e for e in raw if e.name == "migrating")
        assert raw_migrating.iatt.mode == 0o103644
        for gfid in (plain, migrating):
            known = top.itable.peek_ctx(top, gfid)
            assert type(known) is FileCtx and known.cached == 0
        assert top.itable.peek_ctx(top, linkto) is None
        assert sorted(await listing(top, d, "/d")) == \
            ["migrating", "plain", "sub", "xattrs"]
