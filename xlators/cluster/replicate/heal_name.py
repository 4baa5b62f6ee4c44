"""Name self-heal (afr-self-heal-name.c): one name made the same on every
child, as lookup asks.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from glusterpy.fops import GFID, FopError

from xlators.cluster.replicate.changelog import ENTRY
from xlators.cluster.replicate.heal_common import Heal, guard
from xlators.cluster.replicate.heal_entry import delete_entry, heal_gfid_of_name, recreate_entry
from xlators.cluster.replicate.state import is_ok

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate


# -- names (afr-self-heal-name.c) -------------------------------------------


async def heal_name(afr: "Replicate", pgfid: GFID, name: str,
                    gfid_req: GFID | None = None) -> None:
    """afr_selfheal_name: make one name agree on every child - created where
    the parent's sources have it, removed where they do not, given its
    gfid where it has none.  EIO for a type or gfid mismatch it cannot
    resolve; ENOTCONN when not every child could be locked."""
    h = Heal(afr)
    n = h.n
    replies = await h.lookup_name(pgfid, name, h.up())
    if not _name_needs_heal(replies):
        return
    lock = await h.entrylk(afr.domain, pgfid, name)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        par = await h.discover(pgfid)
        d = h.direction(par, ENTRY, lock)
        healed = [d.sinks[i] and lock[i] for i in range(n)]
        sources = d.sources
        if healed == list(lock) or not any(sources) or any(d.witness):
            sources = [False] * n
            source = -1
        else:
            source = next((i for i in range(n) if sources[i]), -1)
        replies = await h.lookup_name(pgfid, name, [i for i in range(n) if lock[i]])
        await _name_do(h, pgfid, name, replies, source, sources, lock, gfid_req)
    finally:
        await h.unentrylk(afr.domain, pgfid, name, lock)


def _name_needs_heal(replies) -> bool:
    """afr_selfheal_name_need_heal_check."""
    first = None
    for r in replies:
        if r is None:
            continue
        if isinstance(r, FopError) and r.errno == errno.ENODATA:
            return True
        if first is None:
            first = r
            continue
        if is_ok(r) != is_ok(first):
            return True
        if is_ok(r) and is_ok(first) and r.iatt.gfid != first.iatt.gfid:
            return True
        if is_ok(r) and r.iatt.gfid.is_null:
            return True
    return False


async def _name_do(h: Heal, pgfid, name, replies, source, sources, locked_on,
                   gfid_req) -> None:
    """__afr_selfheal_name_do."""
    afr = h.afr
    n = h.n
    if not _name_needs_heal(replies):
        return
    source_is_empty = source >= 0 and all(
        isinstance(replies[i], FopError) and replies[i].errno == errno.ENOENT
        for i in range(n) if sources[i])
    if source_is_empty:
        for i in range(n):
            await guard(delete_entry(h, pgfid, name, i, replies))
        return
    # type and gfid mismatches among the copies that count are reported
    counted = [i for i in range(n) if is_ok(replies[i]) and (source < 0 or sources[i])
               and not replies[i].iatt.gfid.is_null]
    for a in counted:
        for b in counted:
            ra, rb = replies[a], replies[b]
            if ra.iatt.type != rb.iatt.type:
                afr.log.error("Type mismatch for <gfid:%s>/%s: %o on %s and %o on %s", pgfid,
                              name, ra.iatt.type, afr.children[a].name, rb.iatt.type,
                              afr.children[b].name)
                raise FopError(errno.EIO, f"type mismatch for <gfid:{pgfid}>/{name}")
            if ra.iatt.gfid != rb.iatt.gfid:
                afr.log.error("Gfid mismatch detected for <gfid:%s>/%s>, %s on %s and %s on "
                              "%s.", pgfid, name, ra.iatt.gfid, afr.children[a].name,
                              rb.iatt.gfid, afr.children[b].name)
                raise FopError(errno.EIO, f"gfid mismatch for <gfid:{pgfid}>/{name}")
    gfid_idx = counted[0] if counted else -1
    if gfid_idx < 0:
        if gfid_req is None or gfid_req.is_null:
            return
        if not all(afr.child_up) or not all(locked_on):
            raise FopError(errno.EIO, "all bricks must be up to assign a gfid")
        gfid = gfid_req
    else:
        gfid = replies[gfid_idx].iatt.gfid
        if source < 0:
            source = gfid_idx
    replies = await heal_gfid_of_name(h, pgfid, name, replies, source, sources, gfid)
    if gfid_idx < 0:
        gfid_idx = next((i for i in range(n) if is_ok(replies[i])
                         and not replies[i].iatt.gfid.is_null), -1)
        if gfid_idx < 0:
            return
    # __afr_selfheal_name_impunge: create it where it is missing or different
    target = replies[gfid_idx].iatt.gfid
    have = [is_ok(r) and r.iatt.gfid == target for r in replies]
    for i in range(n):
        if not have[i] and locked_on[i]:
            await recreate_entry(h, i, gfid_idx, have, pgfid, name, replies)
