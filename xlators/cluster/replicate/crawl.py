"""The crawls (afr-self-heald.c's index and full sweeps, glfsheal's listing):
what a brick's heal index lists, healed or reported entry by entry.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Loc, XattropType
from glusterpy.keys import GET_GFID_TYPE, GFID_TO_PATH_KEY

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.heal_common import (INDEX_GFID_KEYS, CrawlStats, Heal, Outcome,
                                                   dir_entries, list_dir)
from xlators.cluster.replicate.heal_inode import heal_gfid, heal_info
from xlators.cluster.replicate.heal_name import heal_name

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate


# ==========================================================================
# Crawling (afr-self-heald.c)


async def pending_entries(afr: "Replicate", child: int, kind: str = "xattrop") -> list[GFID]:
    """The gfids child `child`'s index lists (``kind`` xattrop, dirty or
    entry-changes), read through the fops as the self-heal daemon does:
    getxattr of the index gfid at the root, opendir and readdir of it."""
    h = Heal(afr)
    key = INDEX_GFID_KEYS[kind]
    sub = afr.children[child]
    got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key, None))
    vgfid = GFID(bytes(got.dict[key]))
    out = []
    for name in await list_dir(h, child, vgfid, {GET_GFID_TYPE: 1}):
        try:
            out.append(GFID(name))
        except ValueError:
            continue
    return out


async def heal_index(afr: "Replicate", child: int,
                     stats: CrawlStats | None = None) -> CrawlStats:
    """afr_shd_index_sweep_all for one brick: heal every gfid of its
    xattrop and dirty indices, then every directory of its name index;
    entries for inodes that exist nowhere are purged.  `stats`, when
    given, is counted into as the sweep goes (the self-heal daemon's crawl
    event)."""
    stats = stats if stats is not None else CrawlStats()
    h = Heal(afr)
    for kind in ("xattrop", "dirty", "entry-changes"):
        try:
            gfids = await pending_entries(afr, child, kind)
        except FopError as e:
            if e.errno in (errno.ENOENT, errno.ENODATA):
                continue
            raise
        for gfid in gfids:
            await _heal_indexed(h, child, kind, gfid, stats)
    return stats


async def _heal_indexed(h: Heal, child: int, kind: str, gfid: GFID, stats: CrawlStats):
    """afr_shd_index_heal + afr_shd_selfheal."""
    afr = h.afr
    sub = afr.children[child]
    try:
        await h.one(child, lambda i: sub.lookup(Loc(gfid=gfid), None))
    except FopError as e:
        if e.errno in (errno.ENOENT, errno.ESTALE):
            await _purge_index(h, child, kind, gfid)
            stats.stale_purged += 1
            return
        stats.failed += 1
        return
    try:
        outcome = await heal_gfid(afr, gfid)
    except FopError as e:
        if e.errno == errno.EIO:
            stats.split_brain += 1
            stats.split_brain_gfids.append(gfid)
        elif e.errno in (errno.ENOENT, errno.ESTALE):
            await _purge_index(h, child, kind, gfid)
            stats.stale_purged += 1
        else:
            stats.failed += 1
        return
    if outcome == Outcome.HEALED:
        stats.healed += 1
    elif outcome == Outcome.CLEAN:
        # afr_shd_zero_xattrop: an index link with all-zero changelogs
        # (a brick that died between the link and the xattrop) goes away
        xattr = cl.changelog_dict(afr.pending_keys, None, afr.dirty_key)
        await h.on([i for i in range(h.n) if afr.child_up[i]],
                   lambda i: afr.children[i].xattrop(Loc(gfid=gfid), XattropType.ADD_ARRAY,
                                                     xattr, None))
        stats.skipped += 1
    else:
        stats.skipped += 1


async def _purge_index(h: Heal, child: int, kind: str, gfid: GFID) -> None:
    """afr_shd_entry_purge."""
    sub = h.afr.children[child]
    key = INDEX_GFID_KEYS[kind]
    try:
        got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key,
                                                         None))
        vgfid = GFID(bytes(got.dict[key]))
        loc = Loc(pargfid=vgfid, name=str(gfid))
        if kind == "entry-changes":
            await h.one(child, lambda i: sub.rmdir(loc, 1, None))
        else:
            await h.one(child, lambda i: sub.unlink(loc, 0, None))
    except FopError:
        pass


async def heal_full(afr: "Replicate", child: int | None = None,
                    root: GFID = ROOT_GFID, stats: CrawlStats | None = None) -> CrawlStats:
    """afr_shd_full_sweep: walk the namespace as child `child` (every up
    child when None) lists it, from `root`, healing every name and then
    every inode - a directory before what it contains (`stats` as in
    `heal_index`)."""
    stats = stats if stats is not None else CrawlStats()
    children = [child] if child is not None else \
        [i for i in range(afr.child_count) if afr.child_up[i] and i != afr.arbiter]
    for c in children:
        await _full_sweep(afr, c, root, stats)
    return stats


async def _full_sweep(afr: "Replicate", child: int, root: GFID, stats: CrawlStats) -> None:
    h = Heal(afr)
    sub = afr.children[child]
    await _count(heal_gfid(afr, root), root, stats)
    todo = [root]
    while todo:
        gfid = todo.pop()
        fd = Fd(gfid=gfid, is_dir=True)
        try:
            await h.one(child, lambda i: sub.opendir(Loc(gfid=gfid), fd, None))
        except FopError:
            continue
        try:
            async for e in dir_entries(h, child, fd, plus=True):
                if e.iatt is None or gfid == ROOT_GFID and afr.is_private_dir(e.name):
                    continue
                try:
                    await heal_name(afr, gfid, e.name)
                except FopError as err:
                    if err.errno == errno.EIO:
                        stats.split_brain += 1
                        stats.split_brain_gfids.append(e.iatt.gfid)
                        continue
                await _count(heal_gfid(afr, e.iatt.gfid), e.iatt.gfid, stats)
                if e.iatt.is_dir:
                    todo.append(e.iatt.gfid)
        finally:
            await h.on([child], lambda i: sub.releasedir(fd, None))


async def _count(coro, gfid: GFID, stats: CrawlStats) -> None:
    try:
        outcome = await coro
    except FopError as e:
        if e.errno == errno.EIO:
            stats.split_brain += 1
            stats.split_brain_gfids.append(gfid)
        else:
            stats.failed += 1
        return
    if outcome == Outcome.HEALED:
        stats.healed += 1
    else:
        stats.skipped += 1


async def heal_info_entries(afr: "Replicate", child: int,
                            split_brain_only: bool = False) -> list[tuple[GFID, str, str]]:
    """What ``volume heal NAME info [split-brain]`` prints for one brick
    (glfsheal): every inode its indices list that still needs a heal, as
    (gfid, path, status) - the path from the brick's
    ``glusterfs.gfid2path`` (``<gfid:UUID>`` when unknown), the status
    from `heal_info`; "no-heal" entries are left out."""
    h = Heal(afr)
    sub = afr.children[child]
    seen: dict[GFID, None] = {}
    for kind in ("xattrop", "dirty", "entry-changes"):
        try:
            for gfid in await pending_entries(afr, child, kind):
                seen.setdefault(gfid)
        except FopError:
            continue
    out = []
    for gfid in seen:
        status = await heal_info(afr, gfid)
        if status == "no-heal" or (split_brain_only and not status.startswith("split-brain")):
            continue
        try:
            got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=gfid),
                                                            GFID_TO_PATH_KEY, None))
            path = got.dict.get(GFID_TO_PATH_KEY)
            path = path.decode() if isinstance(path, bytes) else str(path)
        except FopError:
            path = f"<gfid:{gfid}>"
        out.append((gfid, path, status))
    return out
