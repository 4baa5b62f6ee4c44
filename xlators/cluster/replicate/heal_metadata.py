"""Metadata self-heal (afr-self-heal-metadata.c): ownership, permissions and
xattrs from the source to the sinks.
"""

from __future__ import annotations

import errno
import stat as _stat

from glusterpy.fops import GFID, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_UID, FopError, Iatt, Loc

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import METADATA
from xlators.cluster.replicate.heal_common import (METADATA_LOCK_START, SFILE_NOT_IN_SPLIT_BRAIN,
                                                   Heal, MetadataHold, Outcome, both,
                                                   healable_xattrs, ignorable)
from xlators.cluster.replicate.state import is_ok


# -- metadata (afr-self-heal-metadata.c) -------------------------------------


async def heal_metadata(h: Heal, gfid: GFID, hold: MetadataHold | None = None) -> Outcome:
    """afr_selfheal_metadata (`hold`: what the data heal beside it hands
    over - its whole-file lock, under which this heal runs without a lock
    of its own, and its look at the copies; heal_common.MetadataHold)."""
    try:
        return await _heal_metadata(h, gfid, hold)
    finally:
        if hold is not None:
            hold.done.set()


async def _heal_metadata(h: Heal, gfid: GFID, hold: MetadataHold | None) -> Outcome:
    afr = h.afr
    n = h.n
    undid = [False] * n
    covered = hold is not None and hold.covered
    lock = hold.lock if covered else \
        await h.inodelk(afr.domain, gfid, METADATA_LOCK_START, 0, tie_breaker=True)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        replies = hold.replies if covered else await h.discover(gfid)
        d = h.direction(replies, METADATA, lock)
        healed = [d.sinks[i] and lock[i] for i in range(n)]
        source = next((i for i in range(n) if d.sources[i] and d.witness[i]), -1)
        if source >= 0:
            for i in range(n):
                if i != source and d.sources[i]:
                    d.sources[i] = False
                    healed[i] = True
        source, replies = await _metadata_finalize_source(h, gfid, replies, d, healed, lock,
                                                          undid)
        if not any(healed):
            return Outcome.NO_HEAL_NEEDED
        await _metadata_do(h, gfid, source, healed, replies)
        if covered:
            # the times and the post-op go with the data heal's own, after
            # this heal ended (MetadataHold)
            hold.post_op = h.undo_xattrs(replies, METADATA, d.sinks, healed, lock, undid)[0]
            hold.times = (source, list(healed))
        else:
            # the times (whose failure GlusterFS ignores too) and the
            # post-op need nothing of each other: one round trip
            await both(lambda: h.restore_time(gfid, replies[source].iatt, list(healed)),
                       lambda: h.undo_pending(gfid, replies, METADATA, d.sinks, healed, lock,
                                              undid))
    finally:
        if not covered:
            await h.uninodelk(afr.domain, gfid, METADATA_LOCK_START, 0, lock)
    afr.log.info("Completed metadata selfheal on %s. sources=%s sinks=%s", gfid,
                 [i for i in range(n) if d.sources[i]], [i for i in range(n) if healed[i]])
    return Outcome.HEALED


async def _metadata_finalize_source(h: Heal, gfid, replies, d, healed, locked_on, undid):
    """__afr_selfheal_metadata_finalize_source."""
    afr = h.afr
    n = h.n
    sources = d.sources
    source = -1
    if healed == list(locked_on) or not any(sources):
        source = h.split_brain_source(replies, sources, d.sinks, healed, locked_on, METADATA)
        if source >= 0:
            await h.reset_sink_xattrs(gfid, replies, source, healed, locked_on, METADATA,
                                      undid)
        else:
            source = _dirtime_split_brain_source(h, replies, locked_on)
            if source >= 0:
                sources[source] = True
                healed[source] = False
            elif afr.opts.metadata_splitbrain_forced_heal:
                source = next(i for i in range(n) if locked_on[i] and healed[i])
                sources[source] = True
                healed[source] = False
            else:
                raise FopError(errno.EIO, h.fail_msg or f"{gfid} is in metadata split-brain")
    elif h.heal_op is not None:
        h.fail_msg = SFILE_NOT_IN_SPLIT_BRAIN
        raise FopError(errno.EIO, SFILE_NOT_IN_SPLIT_BRAIN)
    if source < 0 or not sources[source]:
        source = h.choose_source(sources, METADATA)
    src = replies[source]
    src_key = _meta_key(src.iatt)
    all_sources = sum(sources) == n
    for i in range(n):
        if not sources[i] or i == source or not is_ok(replies[i]):
            continue
        if _meta_key(replies[i].iatt) != src_key or \
                healable_xattrs(replies[i].xdata) != healable_xattrs(src.xdata):
            sources[i] = False
            healed[i] = True
    if all_sources and any(healed):
        # __afr_selfheal_metadata_mark_pending_xattrs: a mismatch no
        # changelog recorded gets recorded before it is healed
        rows = [cl.one_slot(METADATA, 1) if not sources[i] else (0, 0, 0) for i in range(n)]
        xattr = cl.changelog_dict(afr.pending_keys, rows)
        for i in range(n):
            if sources[i]:
                await h.post_op(i, gfid, xattr)
        replies = await h.discover(gfid)
    for i in range(n):
        healed[i] = not sources[i] and bool(locked_on[i])
    return source, replies


def _meta_key(ia: Iatt):
    return (ia.type, ia.uid, ia.gid, _stat.S_IMODE(ia.mode))


def _dirtime_split_brain_source(h: Heal, replies, locked_on) -> int:
    """afr_dirtime_splitbrain_source: a directory whose copies differ only
    in times heals from the newest."""
    source, best = -1, -1
    for i, r in enumerate(replies):
        if locked_on[i] and is_ok(r) and r.iatt.mtime_ns > best:
            source, best = i, r.iatt.mtime_ns
    if source < 0 or not replies[source].iatt.is_dir:
        return -1
    src = replies[source]
    for i, r in enumerate(replies):
        if i == source or not is_ok(r):
            continue
        if r.iatt.gfid != src.iatt.gfid or _meta_key(r.iatt) != _meta_key(src.iatt) or \
                healable_xattrs(r.xdata) != healable_xattrs(src.xdata):
            return -1
    return source


async def _metadata_do(h: Heal, gfid, source, healed, replies) -> None:
    """__afr_selfheal_metadata_do.  The source's xattrs are read while the
    sinks get the owner and mode and are asked for theirs (GlusterFS does
    these one after the other; none needs another's answer), so a sink's
    owner and mode may be set before a failed read of the source's xattrs
    raises EIO - the sink then stays pending, as after any failed heal."""
    afr = h.afr
    loc = Loc(gfid=gfid)
    src = replies[source].iatt
    sinks = [i for i in range(h.n) if healed[i]]

    async def source_xattrs() -> dict:
        try:
            got = await h.one(source, lambda i: afr.children[i].getxattr(loc, None, None))
        except FopError:
            raise FopError(errno.EIO, "cannot read the source's xattrs") from None
        return {k: v for k, v in got.dict.items() if not ignorable(k)}

    async def sink_state():
        return await both(
            lambda: h.on(sinks, lambda j: afr.children[j].setattr(
                loc, src, SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_MODE, None)),
            lambda: h.on(sinks, lambda j: afr.children[j].getxattr(loc, None, None)))
    xattrs, (owned, old) = await both(source_xattrs, sink_state)
    stale: dict[int, dict] = {}
    for i in sinks:
        if not is_ok(owned[i]) or not is_ok(old[i]):
            healed[i] = False
        if is_ok(old[i]):
            stale[i] = {k: v for k, v in old[i].dict.items() if not ignorable(k)}
    removing = [i for i in sinks if stale.get(i)]
    removed = await h.on(removing, lambda j: afr.children[j].removexattr(loc, "", stale[j]))
    for i in removing:
        if not is_ok(removed[i]):
            healed[i] = False
    setting = sinks if xattrs else []
    if setting:
        done = await h.on(setting, lambda j: afr.children[j].setxattr(loc, xattrs, 0, None))
        for i in setting:
            if not is_ok(done[i]):
                healed[i] = False
