"""Entry self-heal (afr-self-heal-entry.c): a directory's names made the same
on every child, and the helpers that delete and re-create one name.

Departure, for speed: GlusterFS heals a directory's names one at a time,
each under its own taking of the directory's entry lock (afr_selfheal_
entry_dirent: lock, look up the directory's changelogs, look the name up,
heal it, unlock - five round trips to every brick for each name).  Here up
to `ENTRY_BATCH` names share one taking of that lock and one look at the
directory's changelogs, and are looked up and healed side by side.  It is
as safe: the lock is GlusterFS's (the whole directory in the replicate
domain, which every entry operation of a client takes on its name), so no
client changes the directory while the batch is healed, and nothing the
heal does changes the directory's changelogs, so the direction read once
holds for every name of the batch.  Names that may share an inode (a gfid
met twice in a batch, or a source file with several links) are healed one
after the other.  A client's entry operation on the directory waits for at
most one batch instead of one name.
"""

from __future__ import annotations

import collections
import errno
import stat as _stat

import trio

from glusterpy.fops import GFID, ROOT_GFID, Fd, FopError, Iatt, Loc, dev_from_ia
from glusterpy.keys import GFID_REQ, INTERNAL_FOP

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA, ENTRY, METADATA
from xlators.cluster.replicate.heal_common import (INDEX_GFID_KEYS, Heal, Outcome, dir_entries,
                                                   list_dir)
from xlators.cluster.replicate.state import is_ok

#: names healed under one taking of the directory's entry lock (the module
#: docstring)
ENTRY_BATCH = 64

# -- entries (afr-self-heal-entry.c) ----------------------------------------


async def heal_entry(h: Heal, gfid: GFID) -> Outcome:
    """afr_selfheal_entry."""
    afr = h.afr
    n = h.n
    fd = Fd(gfid=gfid, is_dir=True)
    loc = Loc(gfid=gfid)
    opened = await h.on(h.up(), lambda i: afr.children[i].opendir(loc, fd, None))
    open_on = [is_ok(r) for r in opened]
    if not any(open_on):
        raise FopError(errno.EIO, f"cannot open directory {gfid}")
    try:
        sh_lock = await h.entrylk(afr.sh_domain, gfid, None, tie_breaker=True)
        try:
            if sum(sh_lock) < n:
                raise FopError(errno.ENOTCONN, "Skipping entry self-heal: not every "
                                               "subvolume could be locked")
            return await _heal_entry_locked(h, gfid, fd, open_on)
        finally:
            await h.unentrylk(afr.sh_domain, gfid, None, sh_lock)
    finally:
        await h.on([i for i in range(n) if open_on[i]],
                   lambda i: afr.children[i].releasedir(fd, None))


async def _entry_prepare(h: Heal, gfid, locked_on):
    """__afr_selfheal_entry_prepare: (replies, direction, source, healed);
    source -1 means a conservative merge."""
    n = h.n
    replies = await h.discover(gfid)
    d = h.direction(replies, ENTRY, locked_on)
    healed = [d.sinks[i] and locked_on[i] for i in range(n)]
    sources = d.sources
    if healed == list(locked_on) or not any(sources) or any(d.witness):
        for i in range(n):
            sources[i] = False
            healed[i] = bool(locked_on[i])
        return replies, d, -1, healed
    source = h.choose_source(sources, ENTRY)
    if source >= 0 and not any(healed):
        # the source accuses no one: merge everything
        for i in range(n):
            if locked_on[i]:
                sources[i] = False
                healed[i] = True
        return replies, d, -1, healed
    return replies, d, source, healed


async def _heal_entry_locked(h: Heal, gfid, fd, open_on) -> Outcome:
    """__afr_selfheal_entry."""
    afr = h.afr
    n = h.n
    lock = await h.entrylk(afr.domain, gfid, None)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        replies, d, source, healed = await _entry_prepare(h, gfid, lock)
        if not any(healed):
            return Outcome.NO_HEAL_NEEDED
        full = _need_full_heal(h, replies, source, healed)
    finally:
        await h.unentrylk(afr.domain, gfid, None, lock)
    mismatch = False
    for i in range(n):
        if healed[i] and open_on[i]:
            mismatch |= await _entry_crawl(h, gfid, fd, i, full, is_source=False)
    if source >= 0 and open_on[source]:
        mismatch |= await _entry_crawl(h, gfid, fd, source, full, is_source=True)
    if mismatch:
        # gfid or type mismatch: the changelog stays, the entry is reported
        raise FopError(errno.EIO, f"gfid or type mismatch under {gfid}")
    lock = await h.entrylk(afr.domain, gfid, None)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "could not lock every subvolume for the post-op")
        if source >= 0:
            await h.restore_time(gfid, replies[source].iatt, healed)
        await h.undo_pending(gfid, replies, ENTRY, d.sinks, healed, lock, full_crawl=full)
    finally:
        await h.unentrylk(afr.domain, gfid, None, lock)
    afr.log.info("Completed %s entry selfheal on %s. sources=%s sinks=%s",
                 "full" if full else "granular", gfid,
                 [i for i in range(n) if d.sources[i]], [i for i in range(n) if healed[i]])
    return Outcome.HEALED


def _need_full_heal(h: Heal, replies, source, healed) -> bool:
    """afr_need_full_heal: without granular entry heal always; with it when
    a full-heal marker (the data slot of a directory) is set."""
    afr = h.afr
    if not afr.opts.granular_entry_heal:
        return True

    def marked(r):
        return is_ok(r) and any(cl.pending_of(r.xdata, k, DATA) for k in afr.pending_keys)
    if source >= 0 and marked(replies[source]):
        return True
    return any(healed[i] and marked(replies[i]) for i in range(h.n))


async def _entry_crawl(h: Heal, gfid, fd, child: int, full: bool, is_source: bool) -> bool:
    """afr_selfheal_entry_do_subvol / afr_selfheal_entry_granular: visit
    the names child `child` lists (or its name index records); True when a
    gfid or type mismatch was left alone."""
    afr = h.afr
    names: list[str] | None = None
    index_dir = None
    if not full:
        index_dir = await _name_index_dir(h, child, gfid)
        if index_dir is not None:
            names = await list_dir(h, child, index_dir[1])
        elif is_source:
            names = None        # no name index on the source: list the directory
        else:
            return False
    if names is None:
        names = [e.name async for e in dir_entries(h, child, fd)]
    if gfid == ROOT_GFID:
        names = [name for name in names if not afr.is_private_dir(name)]
    mismatch = False
    for first in range(0, len(names), ENTRY_BATCH):
        batch = names[first:first + ENTRY_BATCH]
        outcomes = await _heal_dirents(h, gfid, batch)
        for name, outcome in zip(batch, outcomes):
            if isinstance(outcome, FopError):
                if outcome.errno == errno.EIO:
                    mismatch = True
                    continue
                raise outcome
            if index_dir is not None:
                try:
                    await h.one(child, lambda i: afr.children[i].unlink(
                        Loc(pargfid=index_dir[1], name=name), 0, None))
                except FopError:
                    pass
    return mismatch


async def _name_index_dir(h: Heal, child: int, gfid: GFID):
    """afr_shd_entry_changes_index_inode: the gfid under which the brick's
    index serves entry-changes/<gfid>, or None."""
    key = INDEX_GFID_KEYS["entry-changes"]
    sub = h.afr.children[child]
    try:
        got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key,
                                                         None))
        vgfid = GFID(bytes(got.dict[key]))
        reply = await h.one(child, lambda i: sub.lookup(Loc(pargfid=vgfid, name=str(gfid)),
                                                        None))
    except (FopError, KeyError, ValueError):
        return None
    return vgfid, reply.iatt.gfid


async def _heal_dirents(h: Heal, pgfid: GFID, names: list[str]) -> list:
    """afr_selfheal_entry_dirent for a batch of names under one taking of
    the domain's entry lock on the directory: the names are looked up at
    once and healed side by side; each name's outcome (None, or the
    FopError it met) in the order of `names`.  A lock or prepare failure
    is raised.  See the module docstring for why this is safe."""
    afr = h.afr
    n = h.n
    lock = await h.entrylk(afr.domain, pgfid, None)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        _par, d, source, healed = await _entry_prepare(h, pgfid, lock)
        targets = [i for i in range(n) if lock[i]]
        looked = [None] * len(names)

        async def look(k: int) -> None:
            looked[k] = await h.lookup_name(pgfid, names[k], targets)
        await _each(range(len(names)), look)
        # names that may share an inode (hard links, a rename a sink missed:
        # a gfid met under two names on any copy, or a source with several
        # links) are healed one after the other, re-creations first: a
        # sink's stale name unlinked first could take the gfid's last link
        # and its new name would be made anew, empty
        held = [_gfids(r) for r in looked]
        gfids = collections.Counter(g for names_gfids in held for g in names_gfids)
        alone, linked = [], []
        for k, replies in enumerate(looked):
            shared = any(gfids[g] > 1 for g in held[k]) or \
                (_source_gfid(replies, source) is not None and _has_links(replies, source))
            (linked if shared else alone).append(k)
        linked.sort(key=lambda k: source >= 0 and not is_ok(looked[k][source]))
        outcomes: list = [None] * len(names)

        async def heal(k: int) -> None:
            try:
                if source < 0:
                    await _merge_dirent(h, pgfid, names[k], looked[k], healed, lock)
                else:
                    await _heal_one_dirent(h, pgfid, names[k], looked[k], source,
                                           list(d.sources), healed)
            except FopError as e:
                outcomes[k] = e
        await _each(alone, heal)
        for k in linked:
            await heal(k)
        return outcomes
    finally:
        await h.unentrylk(afr.domain, pgfid, None, lock)


def _source_gfid(replies, source: int):
    """The gfid the name has where it is trusted (the source; for a merge,
    the first copy that has it), or None."""
    picks = [replies[source]] if source >= 0 else replies
    for r in picks:
        if is_ok(r) and not r.iatt.gfid.is_null:
            return r.iatt.gfid
    return None


def _gfids(replies) -> set:
    """Every gfid the name has on the copies that answered."""
    return {r.iatt.gfid for r in replies if is_ok(r) and not r.iatt.gfid.is_null}


def _has_links(replies, source: int) -> bool:
    return any(is_ok(r) and not r.iatt.is_dir and r.iatt.nlink > 1
               for r in (replies if source < 0 else [replies[source]]))


async def _each(items, fn) -> None:
    """fn(item) for every item side by side; each catches its own
    FopErrors, so anything that comes out is a bug or a cancellation."""
    items = list(items)
    if len(items) == 1:
        await fn(items[0])
        return
    async with trio.open_nursery() as nursery:
        for item in items:
            nursery.start_soon(fn, item)


async def _heal_one_dirent(h: Heal, pgfid, name, replies, source, sources, healed) -> None:
    """__afr_selfheal_heal_dirent: the source says what the name is."""
    src = replies[source]
    if src is None:
        raise FopError(errno.EIO)
    if isinstance(src, FopError) and src.errno != errno.ENOENT:
        raise src
    if is_ok(src):
        replies = await heal_gfid_of_name(h, pgfid, name, replies, source, sources,
                                           src.iatt.gfid)
    for i in range(h.n):
        if not healed[i]:
            continue
        if isinstance(src, FopError):
            await delete_entry(h, pgfid, name, i, replies)
        elif is_ok(replies[i]) and replies[i].iatt.gfid == src.iatt.gfid:
            continue
        else:
            await recreate_entry(h, i, source, sources, pgfid, name, replies)


async def _merge_dirent(h: Heal, pgfid, name, replies, healed, locked_on) -> None:
    """__afr_selfheal_merge_dirent: no clear source - create the name where
    it is missing, report (EIO) a gfid or type mismatch."""
    n = h.n
    source = next((i for i in range(n) if is_ok(replies[i])), -1)
    if source < 0:
        return
    sources = [is_ok(replies[i]) for i in range(n)]
    replies = await heal_gfid_of_name(h, pgfid, name, replies, source, sources,
                                       replies[source].iatt.gfid)
    _detect_mismatch(h, pgfid, name, replies, source)
    for i in range(n):
        if i == source or not healed[i]:
            continue
        r = replies[i]
        if isinstance(r, FopError) and r.errno == errno.ENOENT:
            await recreate_entry(h, i, source, sources, pgfid, name, replies)


def _detect_mismatch(h: Heal, pgfid, name, replies, src_idx) -> None:
    """afr_selfheal_detect_gfid_and_type_mismatch (with
    afr_gfid_split_brain_source left to resolve_split_brain): report."""
    afr = h.afr
    src = replies[src_idx]
    for i, r in enumerate(replies):
        if i == src_idx or not is_ok(r):
            continue
        if r.iatt.gfid != src.iatt.gfid and r.iatt.type == src.iatt.type:
            afr.log.error("Gfid mismatch detected for <gfid:%s>/%s>, %s on %s and %s on %s.",
                          pgfid, name, r.iatt.gfid, afr.children[i].name, src.iatt.gfid,
                          afr.children[src_idx].name)
            raise FopError(errno.EIO, f"gfid mismatch for <gfid:{pgfid}>/{name}")
        if r.iatt.type != src.iatt.type:
            afr.log.error("Type mismatch detected for <gfid:%s>/%s>, %o on %s and %o on %s. "
                          "Skipping conservative merge on the file.", pgfid, name,
                          r.iatt.type, afr.children[i].name, src.iatt.type,
                          afr.children[src_idx].name)
            raise FopError(errno.EIO, f"type mismatch for <gfid:{pgfid}>/{name}")


async def heal_gfid_of_name(h: Heal, pgfid, name, replies, source, sources, gfid):
    """afr_lookup_and_heal_gfid: a copy of the name without a gfid gets it."""
    afr = h.afr
    ia_type = replies[source].iatt.type if is_ok(replies[source]) else None
    wind_on = [i for i, r in enumerate(replies)
               if is_ok(r) and r.iatt.gfid.is_null and (ia_type is None or r.iatt.type == ia_type)]
    if not wind_on:
        return replies
    req = {GFID_REQ: gfid}
    got = await h.on(wind_on, lambda i: afr.children[i].lookup(
        Loc(pargfid=pgfid, name=name), req))
    replies = list(replies)
    for i in wind_on:
        replies[i] = got[i]
    return replies


async def delete_entry(h: Heal, pgfid, name, child, replies) -> None:
    """afr_selfheal_entry_delete: a directory goes to the brick's landfill
    (rmdir with xflags), anything else is unlinked."""
    afr = h.afr
    r = replies[child]
    if not is_ok(r):
        return
    loc = Loc(pargfid=pgfid, name=name, gfid=r.iatt.gfid)
    afr.log.info("expunging %s <gfid:%s>/%s (%s) on %s",
                 "dir" if r.iatt.is_dir else "file", pgfid, name, r.iatt.gfid,
                 afr.children[child].name)
    if r.iatt.is_dir:
        await h.one(child, lambda i: afr.children[i].rmdir(loc, 1, None))
    else:
        await h.one(child, lambda i: afr.children[i].unlink(loc, 0, None))


async def recreate_entry(h: Heal, dst, source, sources, pgfid, name, replies) -> None:
    """afr_selfheal_recreate_entry: the source's entry, same gfid, on `dst`
    (what was there under that name removed first); a new inode is marked
    pending on the sources so its data and metadata are healed after."""
    afr = h.afr
    src = replies[source].iatt
    if src.gfid.is_null:
        raise FopError(errno.EINVAL, f"the source has no gfid for {name}")
    await delete_entry(h, pgfid, name, dst, replies)
    loc = Loc(pargfid=pgfid, name=name)
    srcloc = Loc(gfid=src.gfid)
    xdata = {GFID_REQ: src.gfid}
    newentry = False
    if not _new_entry_marked(h, replies, sources, source, dst, src):
        try:
            await h.one(dst, lambda i: afr.children[i].lookup(srcloc, None))
        except FopError as e:
            if e.errno not in (errno.ENOENT, errno.ESTALE):
                raise
            newentry = True
            rows = cl.new_entry_rows([i == dst for i in range(h.n)], src.mode,
                                     bool(afr.opts.granular_entry_heal))
            xattr = cl.changelog_dict(afr.pending_keys, rows)
            for i in range(h.n):
                if sources[i] and is_ok(replies[i]) and replies[i].iatt.gfid == src.gfid:
                    await h.post_op(i, src.gfid, xattr)
    else:
        newentry = True
    mode = _stat.S_IMODE(src.mode) | _stat.S_IFMT(src.mode)
    child = afr.children[dst]
    if src.is_dir:
        await h.one(dst, lambda i: child.mkdir(loc, mode, 0, xdata))
    elif src.is_link:
        if newentry:
            target = await h.one(source, lambda i: afr.children[i].readlink(srcloc, 4096, None))
            await h.one(dst, lambda i: child.symlink(target.path, loc, 0, xdata))
        else:
            await h.one(dst, lambda i: child.link(srcloc, loc, None))
    else:
        xdata[INTERNAL_FOP] = 1
        await h.one(dst, lambda i: child.mknod(loc, mode, dev_from_ia(src.rdev), 0,
                                               xdata))


def _new_entry_marked(h: Heal, replies, sources, source, dst, src: Iatt) -> bool:
    """afr_new_entry_mark_status: the sources already accuse `dst` for the
    inode's metadata (and data for a file) - no new marking needed."""
    if src.is_dir:
        return False
    slot = DATA if src.is_reg else None
    for i in range(h.n):
        if not sources[i]:
            continue
        r = replies[i]
        if not is_ok(r) or r.iatt.gfid != src.gfid:
            return False
        if not cl.pending_of(r.xdata, h.afr.pending_keys[dst], METADATA):
            return False
        if slot is not None and not cl.pending_of(r.xdata, h.afr.pending_keys[dst], slot):
            return False
    return True
