"""Healing one inode (afr-self-heal-common.c's afr_selfheal and its unlocked
inspection) and what is asked about one inode: heal info, split-brain
status and resolution (afr-common.c's afr_get_heal_info,
afr_get_split_brain_status, afr_heal_splitbrain_file).
"""

from __future__ import annotations

import errno
import stat as _stat
from typing import TYPE_CHECKING

import trio

from glusterpy.fops import GFID, FopError, Iatt
from glusterpy.keys import INODELK_DOM_PREFIX

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA, ENTRY, METADATA
from xlators.cluster.replicate.heal_common import (HEAL_OP_SOURCE_BRICK, POLICY_HEAL_OPS,
                                                   SBRAIN_HEAL_NO_GO_MSG, SFILE_NOT_IN_SPLIT_BRAIN,
                                                   SFILE_NOT_UNDER_DATA, Heal, MetadataHold,
                                                   Outcome, both, guard)
from xlators.cluster.replicate.heal_data import heal_data
from xlators.cluster.replicate.heal_entry import heal_entry
from xlators.cluster.replicate.heal_metadata import heal_metadata
from xlators.cluster.replicate.state import is_ok

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate


# ==========================================================================
# Healing one inode (afr_selfheal, afr_selfheal_do)


async def heal_gfid(afr: "Replicate", gfid: GFID, *, data: bool = True, metadata: bool = True,
                    entry: bool = True, heal_op: int | None = None,
                    source_name: str | None = None, replies: list | None = None) -> Outcome:
    """afr_selfheal: inspect without locks, then heal what is due
    (`replies`: the caller's `Heal.discover` of the gfid, not asked again).

    Returns HEALED, NO_HEAL_NEEDED (pending counters only from operations
    in flight) or CLEAN (nothing pending); raises FopError(EIO) for a
    split-brain or a type mismatch, ENOTCONN when not every child could be
    locked, ENOENT/ESTALE when the inode is gone everywhere."""
    h = Heal(afr, heal_op, source_name)
    if replies is None:
        replies = await h.discover(gfid)
    dsh, msh, esh, first = _unlocked_inspect(h, replies)
    if not (dsh or msh or esh):
        return Outcome.CLEAN
    rets = []
    heal_d = dsh and data and _stat.S_ISREG(first.mode)
    heal_m = msh and metadata
    if heal_d and heal_m and heal_op is None:
        # GlusterFS heals the data, then the metadata, each under its own
        # lock of the afr domain.  Here the metadata heal starts as soon
        # as the data heal holds the whole file's data lock on every child
        # and has looked at the copies under it, and runs under that lock
        # with that look (heal_common.MetadataHold): the metadata lock's
        # range (METADATA_LOCK_START onwards) lies inside the data lock's,
        # so no other owner - a client, another self-heal daemon - can
        # take it meanwhile, and the data heal lets its lock go only once
        # the metadata heal ended.  Neither heal reads what the other
        # writes (contents and data counters; owner, mode, xattrs and
        # metadata counters; each sets the source's times after its own
        # changes), so the file ends as after the two in a row, in about
        # the round trips of the longer, without the metadata lock, its
        # unlock and its lookup on each child.  When the data heal ends
        # without that lock, the metadata heal runs after it, locking for
        # itself.  A split-brain resolution (heal_op) keeps GlusterFS's
        # order.
        data_locked = trio.Event()
        hold = MetadataHold()

        async def metadata_heal():
            await data_locked.wait()
            return await guard(heal_metadata(h, gfid, hold))
        rets += await both(lambda: guard(heal_data(h, gfid, on_locked=data_locked.set,
                                                   hold=hold, unlocked=replies)),
                           metadata_heal)
    else:
        if heal_d:
            rets.append(await guard(heal_data(h, gfid, unlocked=replies)))
        if heal_m:
            rets.append(await guard(heal_metadata(h, gfid)))
    if esh and entry and _stat.S_ISDIR(first.mode):
        rets.append(await guard(heal_entry(h, gfid)))
    errors = [r for r in rets if isinstance(r, FopError)]
    if any(e.errno == errno.EIO for e in errors):
        raise next(e for e in errors if e.errno == errno.EIO)
    if errors:
        raise errors[0]
    if rets and all(r == Outcome.NO_HEAL_NEEDED for r in rets):
        return Outcome.NO_HEAL_NEEDED
    return Outcome.HEALED if rets else Outcome.NO_HEAL_NEEDED


def _unlocked_inspect(h: Heal, replies):
    """afr_selfheal_unlocked_inspect: which kinds of heal the changelogs or
    differing attributes call for; EIO on a type mismatch."""
    afr = h.afr
    dsh = msh = esh = False
    first = None
    valid = 0
    for i, r in enumerate(replies):
        if not is_ok(r):
            continue
        ia, xd = r.iatt, r.xdata
        if not ia.is_dir and cl.is_pending_set(xd, afr.pending_keys, afr.dirty_key, DATA):
            dsh = True
        if cl.is_pending_set(xd, afr.pending_keys, afr.dirty_key, METADATA):
            msh = True
        if cl.is_pending_set(xd, afr.pending_keys, afr.dirty_key, ENTRY):
            esh = True
        valid += 1
        if first is None:
            first = ia
            continue
        if ia.type != first.type:
            afr.log.error("TYPE mismatch %o vs %o on %s for gfid:%s", first.type, ia.type,
                          afr.children[i].name, ia.gfid)
            raise FopError(errno.EIO, f"type mismatch for {ia.gfid}")
        if (ia.uid, ia.gid, _stat.S_IMODE(ia.mode)) != \
                (first.uid, first.gid, _stat.S_IMODE(first.mode)):
            msh = True
        if ia.is_reg and ia.size != first.size:
            dsh = True
    if valid < 2 and first is None:
        stale = [r for r in replies if isinstance(r, FopError)
                 and r.errno in (errno.ENOENT, errno.ESTALE)]
        if stale and len(stale) == sum(1 for r in replies if r is not None):
            raise FopError(stale[0].errno)
        raise FopError(errno.ENOTCONN, "fewer than two copies answered")
    return dsh, msh, esh, first


# ==========================================================================
# Inspection: heal info and split-brain status


async def heal_info(afr: "Replicate", gfid: GFID) -> str:
    """afr_get_heal_info: "split-brain", "possibly-healing", "heal" (each
    with "-pending" when changelogs are set) or "no-heal"."""
    h = Heal(afr)
    pflag = 0
    try:
        replies = await h.discover(gfid)
        dsh, msh, esh, first = _unlocked_inspect(h, replies)
    except FopError as e:
        if e.errno == errno.EIO:
            return "split-brain"
        return "heal"
    valid = [is_ok(r) for r in replies]
    ret = 0
    try:
        for kind, slot in ((msh, METADATA), (dsh, DATA), (esh, ENTRY)):
            if not kind:
                continue
            d = h.direction(replies, slot, valid)
            pflag |= d.pflag
            if d.split_brain:
                ret = -errno.EIO
                break
    except FopError as e:
        ret = -e.errno
    if ret == 0:
        ret = _update_heal_status(h, replies, first, pflag, dsh, msh, esh)
        if ret == 1:
            dsh = msh = esh = False
    suffix = "-pending" if pflag & cl.PFLAG_PENDING else ""
    if ret == -errno.EIO:
        return "split-brain" + suffix
    if ret == -errno.EAGAIN:
        return "possibly-healing" + suffix
    if ret >= 0:
        return "heal" + suffix if (dsh or msh or esh) else "no-heal"
    return "heal" + suffix if (dsh or msh or esh) else "no-heal"


def _update_heal_status(h: Heal, replies, first: Iatt, pflag, dsh, msh, esh) -> int:
    """afr_update_heal_status: 1 = nothing to heal (only in-flight I/O)."""
    afr = h.afr
    io_count = sh_count = 0
    for r in replies:
        if not is_ok(r):
            continue
        xd = r.xdata or {}
        io_count = io_count or int(xd.get(f"{INODELK_DOM_PREFIX}:{afr.domain}") or 0)
        sh_count = sh_count or int(xd.get(f"{INODELK_DOM_PREFIX}:{afr.sh_domain}") or 0)
    if not pflag & cl.PFLAG_PENDING:
        xdatas = [r.xdata if is_ok(r) else None for r in replies]
        slots = [METADATA]
        if first is not None and first.is_dir:
            slots.append(ENTRY)
        elif first is not None and first.is_reg:
            slots.append(DATA)
        non_unary = any(d > 1 for s in slots
                        for d in cl.extract(xdatas, afr.pending_keys, afr.dirty_key, s)[0])
        return 0 if non_unary or not io_count else 1
    return -errno.EAGAIN if sh_count else 0


async def split_brain_status(afr: "Replicate", gfid: GFID) -> str:
    """afr_get_split_brain_status, in GlusterFS's words."""
    h = Heal(afr)
    replies = await h.discover(gfid)
    if not all(is_ok(r) for r in replies):
        return SBRAIN_HEAL_NO_GO_MSG
    up = [True] * h.n
    d_spb = not any(h.direction(replies, DATA, up).sources)
    m_spb = not any(h.direction(replies, METADATA, up).sources)
    if d_spb or m_spb:
        choices = ",".join(c.name for c in afr.children)
        return (f"data-split-brain:{'yes' if d_spb else 'no'}    "
                f"metadata-split-brain:{'yes' if m_spb else 'no'}    Choices:{choices}")
    return SFILE_NOT_UNDER_DATA


async def resolve_split_brain(afr: "Replicate", gfid: GFID, policy: str,
                              source_brick: str | None = None) -> str:
    """afr_heal_splitbrain_file: heal a split-brain file with the source a
    policy names - "bigger-file", "latest-mtime" or "source-brick" (the
    child's translator name in `source_brick`).  Returns the empty string
    on success or GlusterFS's sh-fail-msg ("File not in split-brain", "No
    bigger file", ...)."""
    op = POLICY_HEAL_OPS.get(policy)
    if op is None:
        raise FopError(errno.EINVAL, f"unknown split-brain policy {policy!r}")
    if op == HEAL_OP_SOURCE_BRICK and not source_brick:
        raise FopError(errno.EINVAL, "source-brick needs the brick (child) name")
    h = Heal(afr, op, source_brick)
    try:
        replies = await h.discover(gfid)
        dsh, msh, esh, first = _unlocked_inspect(h, replies)
    except FopError as e:
        return str(e.message)
    if not (dsh or msh or esh):
        return SFILE_NOT_IN_SPLIT_BRAIN
    rets = []
    if dsh and _stat.S_ISREG(first.mode):
        rets.append(await guard(heal_data(h, gfid)))
    if msh:
        rets.append(await guard(heal_metadata(h, gfid)))
    if h.fail_msg:
        return h.fail_msg
    errors = [r for r in rets if isinstance(r, FopError)]
    if errors and all(e.errno == errno.EIO for e in errors) and \
            any(r == Outcome.HEALED for r in rets):
        return ""
    if errors:
        return errors[0].message
    if rets and all(r == Outcome.NO_HEAL_NEEDED for r in rets):
        return SFILE_NOT_IN_SPLIT_BRAIN
    return ""
