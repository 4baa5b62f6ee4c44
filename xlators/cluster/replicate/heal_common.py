"""Self-heal for cluster/replicate: data, metadata, entries and names.

Follows GlusterFS's afr-self-heal-common.c, -data.c, -metadata.c, -entry.c,
-name.c and the index crawl of afr-self-heald.c.  Every heal works on one
inode through the replicate translator's children, as GlusterFS's heal
frames do, under the identity of the self-heal daemon (pid -6) with a lock
owner of its own:

* **data** (regular files): a tie-breaker inodelk in ``<name>:self-heal``,
  the whole file in ``<name>``; the changelogs say which copies are sources
  and which are sinks (`afr_changelog.find_direction`); the sinks are
  truncated to the source's size and the content copied in blocks of
  ``data-self-heal-window-size`` x 128 KiB (1 block of 128 KiB for sparse
  files), each block locked on its own range, skipping blocks whose
  checksums already match with the "diff" algorithm; then the sinks are
  fsynced (``ensure-durability``), given the source's times, and every
  changelog is reset (the *undo-pending* xattrop);
* **metadata**: ownership and permission bits by setattr, xattrs by
  removing the sink's and setting the source's (changelogs and the few
  keys AFR never heals excepted), under the metadata lock;
* **entries** (directories): names present on sources and missing on a
  sink are created there with the same gfid (and the new inode is marked
  pending so its data and metadata follow), names missing on the sources
  are removed from the sinks; with granular entry heal only the names the
  bricks' index recorded in ``entry-changes/<gfid>`` are visited, else the
  whole directory is listed; with no clear source the heal is a
  *conservative merge* - every name is kept;
* **names** (afr_selfheal_name, run by lookup): a name whose existence or
  gfid differs among the children is created, removed or given its gfid.

Split-brain is never resolved by silently picking a side: a file whose
copies accuse each other with no source fails with EIO, gfid and type
mismatches of a name are reported (EIO) and left alone.  It is resolved
only when asked: by a *policy* through `resolve_split_brain` (the
``volume heal … split-brain bigger-file|latest-mtime|source-brick`` verbs,
GlusterFS's heal-op 10/14/11) or automatically by
``cluster.favorite-child-policy``; a file empty everywhere, or whose
metadata is the same everywhere, is not a split-brain.

The crawl building blocks for the self-heal daemon and the CLI:
`pending_entries` reads a brick's index through the fops features/index
serves; `heal_index` heals what one brick's index lists and purges stale
entries; `heal_full` walks the whole namespace; `heal_info` classifies one
inode as GlusterFS's heal info does.

Departures: ``trusted.glusterfs.mdata`` is neither compared nor copied by
metadata heal (glusterpy's bricks stamp times with their own clocks, so
the xattr differs between healthy copies; the times are restored by
setattr instead); a granular entry heal whose source has no name index
falls back to listing the directory; the anonymous-inode directory is not
used (a removed directory goes to the brick's landfill).
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import os
import stat as _stat
from typing import TYPE_CHECKING, Any, Callable, Sequence

from glusterpy.fops import (GFID, ROOT_GFID, Caller, EntrylkCmd, EntrylkType, Fd, Flock,
                            FopError, Iatt, Loc, LockCmd, dev_from_ia, LockType, SET_ATTR_ATIME,
                            SET_ATTR_CTIME, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_MTIME,
                            SET_ATTR_UID, UInt, XattropType)
from glusterpy.keys import (AFR_XATTR_PREFIX, GET_GFID_TYPE, GFID_REQ, GFID_TO_PATH_KEY,
                            GFIDLESS_LOOKUP, INODELK_DOM_PREFIX, INTERNAL_FOP, MDATA_KEY,
                            MULTI_DOM_LK_CNT_REQUESTS, PURGE_INDEX_KEY, QUOTA_SIZE_KEY,
                            SELINUX_KEY, XATTR_NAMESPACES, XATTROP_DIRTY_GFID,
                            XATTROP_ENTRY_CHANGES_GFID, XATTROP_INDEX_GFID)

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA, ENTRY, METADATA

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate

#: GF_CLIENT_PID_SELF_HEALD
SHD_PID = -6
#: gf_xl_afr_op_t values of the split-brain verbs (protocol-common.h)
HEAL_OP_BIGGER_FILE, HEAL_OP_SOURCE_BRICK, HEAL_OP_LATEST_MTIME = 10, 11, 14
POLICY_HEAL_OPS = {"bigger-file": HEAL_OP_BIGGER_FILE, "source-brick": HEAL_OP_SOURCE_BRICK,
                   "latest-mtime": HEAL_OP_LATEST_MTIME}
METADATA_LOCK_START = (1 << 63) - 2
INDEX_GFID_KEYS = {"xattrop": XATTROP_INDEX_GFID, "dirty": XATTROP_DIRTY_GFID,
                   "entry-changes": XATTROP_ENTRY_CHANGES_GFID}
#: xattrs metadata heal neither compares nor copies (afr_ignore_xattrs + mdata)
IGNORED_XATTRS = frozenset({SELINUX_KEY, QUOTA_SIZE_KEY, MDATA_KEY})
SBRAIN_HEAL_NO_GO_MSG = ("Failed to obtain replies from all bricks of the replica (are "
                         "they up?). Cannot resolve split-brain.")
SFILE_NOT_IN_SPLIT_BRAIN = "File not in split-brain"
SFILE_NOT_UNDER_DATA = "The file is not under data or metadata split-brain"
_BLOCK = 128 * 1024
_DIR_CHUNK = 131072


class Outcome(enum.IntEnum):
    """What afr_selfheal returns when it does not fail."""

    HEALED = 0
    #: changelogs are non-zero only because of operations in flight
    NO_HEAL_NEEDED = 1
    #: changelogs are all zero: nothing to heal
    CLEAN = 2


@dataclasses.dataclass
class CrawlStats:
    """The counters of one index or full crawl (crawl_event_t)."""

    healed: int = 0
    split_brain: int = 0
    failed: int = 0
    skipped: int = 0
    stale_purged: int = 0
    split_brain_gfids: list[GFID] = dataclasses.field(default_factory=list)


def ignorable(key: str) -> bool:
    """afr_is_xattr_ignorable (plus mdata, see the module docstring)."""
    return key.startswith(AFR_XATTR_PREFIX + ".") or key in IGNORED_XATTRS


def healable_xattrs(d: dict | None) -> dict:
    """The on-disk xattrs AFR keeps identical (afr_xattr_match_needed)."""
    return {k: v for k, v in (d or {}).items()
            if k.startswith(XATTR_NAMESPACES) and not ignorable(k)}


def _ok(r) -> bool:
    return r is not None and not isinstance(r, BaseException)


class _Heal:
    """One heal frame: the translator, the lock owner and, for a split-brain
    resolution, the requested heal-op."""

    def __init__(self, afr: "Replicate", heal_op: int | None = None,
                 source_name: str | None = None):
        self.afr = afr
        self.n = afr.child_count
        self.caller = Caller(pid=SHD_PID, lk_owner=os.urandom(8))
        self.heal_op = heal_op
        self.source_name = source_name
        self.fail_msg: str | None = None
        #: set when the favourite-child policy picked the source
        self.fav_child = False

    # -- calling the children ------------------------------------------------

    async def on(self, targets: Sequence[int], fn: Callable[[int], Any]) -> list:
        return await self.afr._fan(list(targets), fn, self.caller)

    async def one(self, i: int, fn: Callable[[int], Any]):
        r = (await self.on([i], fn))[i]
        if isinstance(r, FopError):
            raise r
        return r

    def up(self) -> list[int]:
        return [i for i in range(self.n) if self.afr.child_up[i]]

    def discover_req(self) -> dict:
        """afr_selfheal_unlocked_discover_on's request."""
        req = self.afr._xattr_req({})
        req[MULTI_DOM_LK_CNT_REQUESTS] = UInt(1)
        req[f"{INODELK_DOM_PREFIX}:{self.afr.domain}"] = UInt(1)
        req[f"{INODELK_DOM_PREFIX}:{self.afr.sh_domain}"] = UInt(1)
        return req

    async def discover(self, gfid: GFID, targets=None) -> list:
        req = self.discover_req()
        loc = Loc(gfid=gfid)
        return await self.on(self.up() if targets is None else targets,
                             lambda i: self.afr.children[i].lookup(loc, req))

    async def lookup_name(self, pargfid: GFID, name: str, targets) -> list:
        """afr_selfheal_unlocked_lookup_on with gfidless-lookup."""
        req = self.afr._xattr_req({})
        req[GFIDLESS_LOOKUP] = 1
        loc = Loc(pargfid=pargfid, name=name)
        return await self.on(targets, lambda i: self.afr.children[i].lookup(loc, req))

    # -- locks (afr_selfheal_*inodelk / *entrylk) -----------------------------

    def _inodelk(self, i, dom, gfid, start, length, cmd, type_):
        return self.afr.children[i].inodelk(dom, Loc(gfid=gfid), cmd,
                                            Flock(type=type_, start=start, len=length), None)

    def _entrylk(self, i, dom, gfid, name, cmd):
        return self.afr.children[i].entrylk(dom, Loc(gfid=gfid), name, cmd,
                                            EntrylkType.WRLCK, None)

    async def _lock(self, try_fn, wait_fn, unlock_fn, tie_breaker: bool) -> list[bool]:
        up = self.up()
        replies = await self.on(up, try_fn)
        locked = [_ok(r) for r in replies]
        eagain = sum(1 for r in replies if isinstance(r, FopError) and r.errno == errno.EAGAIN)
        if eagain and (not tie_breaker or sum(locked) > self.n // 2):
            await self.on([i for i in range(self.n) if locked[i]], unlock_fn)
            locked = [False] * self.n
            for i in up:
                try:
                    await self.one(i, wait_fn)
                    locked[i] = True
                except FopError:
                    pass
        return locked

    async def inodelk(self, dom, gfid, start=0, length=0, tie_breaker=False) -> list[bool]:
        return await self._lock(
            lambda i: self._inodelk(i, dom, gfid, start, length, LockCmd.SETLK, LockType.WRLCK),
            lambda i: self._inodelk(i, dom, gfid, start, length, LockCmd.SETLKW,
                                    LockType.WRLCK),
            lambda i: self._inodelk(i, dom, gfid, start, length, LockCmd.SETLK, LockType.UNLCK),
            tie_breaker)

    async def uninodelk(self, dom, gfid, start, length, locked) -> None:
        await self.on([i for i in range(self.n) if locked[i]],
                      lambda i: self._inodelk(i, dom, gfid, start, length, LockCmd.SETLK,
                                              LockType.UNLCK))

    async def entrylk(self, dom, gfid, name=None, tie_breaker=False) -> list[bool]:
        return await self._lock(
            lambda i: self._entrylk(i, dom, gfid, name, EntrylkCmd.LOCK_NB),
            lambda i: self._entrylk(i, dom, gfid, name, EntrylkCmd.LOCK),
            lambda i: self._entrylk(i, dom, gfid, name, EntrylkCmd.UNLOCK),
            tie_breaker)

    async def unentrylk(self, dom, gfid, name, locked) -> None:
        await self.on([i for i in range(self.n) if locked[i]],
                      lambda i: self._entrylk(i, dom, gfid, name, EntrylkCmd.UNLOCK))

    # -- changelogs -------------------------------------------------------------

    async def post_op(self, i: int, gfid: GFID, xattr: dict, xdata=None) -> None:
        """afr_selfheal_post_op."""
        await self.one(i, lambda j: self.afr.children[j].xattrop(
            Loc(gfid=gfid), XattropType.ADD_ARRAY, xattr, xdata))

    def direction(self, replies, slot, locked_on) -> cl.Direction:
        xdatas = [r.xdata if _ok(r) else None for r in replies]
        return cl.find_direction(xdatas, [_ok(r) for r in replies], self.afr.pending_keys,
                                 self.afr.dirty_key, slot, locked_on, self.afr.quorum_count)

    async def undo_pending(self, gfid, replies, slot, sinks, healed, locked_on,
                           undid=None, full_crawl=False) -> None:
        """afr_selfheal_undo_pending."""
        xdatas = [r.xdata if _ok(r) else None for r in replies]
        out = cl.undo_pending(xdatas, self.afr.pending_keys, self.afr.dirty_key, slot,
                              sinks, healed, locked_on, full_crawl)
        xdata = {PURGE_INDEX_KEY: 1} if slot == ENTRY and self.afr.opts.granular_entry_heal \
            else None
        for i, item in enumerate(out):
            if item is None or (undid and undid[i]):
                continue
            rows, dirty = item
            xattr = cl.changelog_dict(self.afr.pending_keys, rows, self.afr.dirty_key, dirty,
                                      dirty_last=True)
            try:
                await self.post_op(i, gfid, xattr, xdata)
            except FopError as e:
                self.afr.log.warning("undo-pending on %s for %s: %s",
                                     self.afr.children[i].name, gfid, e)

    async def restore_time(self, gfid, source_iatt: Iatt, healed) -> None:
        """afr_selfheal_restore_time."""
        valid = SET_ATTR_ATIME | SET_ATTR_MTIME | SET_ATTR_CTIME
        await self.on([i for i in range(self.n) if healed[i]],
                      lambda i: self.afr.children[i].setattr(Loc(gfid=gfid), source_iatt,
                                                             valid, None))

    # -- choosing the source --------------------------------------------------

    def choose_source(self, sources: Sequence[bool], slot: int) -> int:
        """afr_choose_source_by_policy: a local source first (never the
        arbiter for data), then the first."""
        for i in range(self.n):
            if self.afr.local[i] and sources[i] and not (slot == DATA and
                                                         i == self.afr.arbiter):
                return i
        return next((i for i in range(self.n) if sources[i]), -1)

    def split_brain_source(self, replies, sources, sinks, healed, locked_on, slot) -> int:
        """afr_mark_split_brain_source_sinks: an empty (or metadata-equal)
        file is no split-brain; otherwise only a requested heal-op or the
        favourite-child policy names a source."""
        iatts = [r.iatt if _ok(r) else None for r in replies]
        source = self._if_file_empty(replies, sources, sinks, healed, locked_on, slot)
        if source >= 0:
            return source
        if self.heal_op is not None:
            return self._by_heal_op(replies, iatts, sources, sinks, healed, locked_on, slot)
        policy = self.afr.opts.favorite_child_policy
        if policy != "none":
            fav = cl.favorite_child(policy, iatts)
            if fav >= 0:
                self.afr.log.warning("Source %s selected as authentic to resolve conflicting "
                                     "data in file (gfid:%s) by %s",
                                     self.afr.children[fav].name, iatts[fav].gfid,
                                     policy.upper())
                sources[fav] = True
                sinks[fav] = False
                healed[fav] = False
                self.fav_child = True
            return fav
        return -1

    def _if_file_empty(self, replies, sources, sinks, healed, locked_on, slot) -> int:
        """afr_mark_source_sinks_if_file_empty."""
        if not all(locked_on) or not all(_ok(r) for r in replies):
            return -1
        iatts = [r.iatt for r in replies]
        if slot == DATA:
            if any(ia.size for ia in iatts):
                return -1
        else:
            first = iatts[0]
            for ia in iatts[1:]:
                if (ia.type, ia.uid, ia.gid, _stat.S_IMODE(ia.mode)) != \
                        (first.type, first.uid, first.gid, _stat.S_IMODE(first.mode)):
                    return -1
            base = healable_xattrs(replies[0].xdata)
            if any(healable_xattrs(r.xdata) != base for r in replies[1:]):
                return -1
        for i in range(self.n):
            sources[i] = i == 0
            sinks[i] = healed[i] = i != 0
        return 0

    def _by_heal_op(self, replies, iatts, sources, sinks, healed, locked_on, slot) -> int:
        """afr_mark_split_brain_source_sinks_by_heal_op."""
        for i in range(self.n):
            if locked_on[i] and (sources[i] or not sinks[i] or not healed[i]):
                return -1
        if not all(_ok(r) for r in replies):
            self.fail_msg = SBRAIN_HEAL_NO_GO_MSG
            return -1
        for i in range(self.n):
            sources[i] = bool(locked_on[i])
        if self.heal_op in (HEAL_OP_BIGGER_FILE, HEAL_OP_LATEST_MTIME):
            if slot == METADATA:
                self.fail_msg = "Use source-brick option to heal metadata split-brain"
                sources[:] = [False] * self.n
                return -1
            if self.heal_op == HEAL_OP_BIGGER_FILE:
                cl.largest_file(sources, iatts)
                msg = "No bigger file"
            else:
                cl.latest_mtime(sources, iatts)
                msg = "No difference in mtime"
            if sum(sources) != 1:
                self.fail_msg = msg
                sources[:] = [False] * self.n
                return -1
        else:
            names = [c.name for c in self.afr.children]
            if self.source_name not in names:
                self.fail_msg = "Invalid brick name"
                sources[:] = [False] * self.n
                return -1
            src = names.index(self.source_name)
            if not locked_on[src]:
                self.fail_msg = "Brick is not up"
                sources[:] = [False] * self.n
                return -1
            sources[:] = [i == src for i in range(self.n)]
        source = sources.index(True)
        sinks[source] = healed[source] = False
        return source

    async def reset_sink_xattrs(self, gfid, replies, source, healed, locked_on, slot,
                                undid) -> None:
        """_afr_fav_child_reset_sink_xattrs: a sink chosen against by the
        favourite-child policy stops accusing the source."""
        if not self.fav_child:
            return
        xdatas = [r.xdata if _ok(r) else None for r in replies]
        dirty, matrix = cl.extract(xdatas, self.afr.pending_keys, self.afr.dirty_key, slot)
        for i in range(self.n):
            if i == source or not healed[i] or not locked_on[i]:
                continue
            rows = [(0, 0, 0)] * self.n
            rows[source] = cl.one_slot(slot, -matrix[i][source])
            xattr = cl.changelog_dict(self.afr.pending_keys, rows, self.afr.dirty_key,
                                      cl.one_slot(slot, -dirty[i]), dirty_last=True)
            await self.post_op(i, gfid, xattr)
            undid[i] = True


# ==========================================================================
# Healing one inode (afr_selfheal, afr_selfheal_do)


async def heal_gfid(afr: "Replicate", gfid: GFID, *, data: bool = True, metadata: bool = True,
                    entry: bool = True, heal_op: int | None = None,
                    source_name: str | None = None) -> Outcome:
    """afr_selfheal: inspect without locks, then heal what is due.

    Returns HEALED, NO_HEAL_NEEDED (pending counters only from operations
    in flight) or CLEAN (nothing pending); raises FopError(EIO) for a
    split-brain or a type mismatch, ENOTCONN when not every child could be
    locked, ENOENT/ESTALE when the inode is gone everywhere."""
    h = _Heal(afr, heal_op, source_name)
    replies = await h.discover(gfid)
    dsh, msh, esh, first = _unlocked_inspect(h, replies)
    if not (dsh or msh or esh):
        return Outcome.CLEAN
    rets = []
    if dsh and data and _stat.S_ISREG(first.mode):
        rets.append(await _guard(heal_data(h, gfid)))
    if msh and metadata:
        rets.append(await _guard(heal_metadata(h, gfid)))
    if esh and entry and _stat.S_ISDIR(first.mode):
        rets.append(await _guard(heal_entry(h, gfid)))
    errors = [r for r in rets if isinstance(r, FopError)]
    if any(e.errno == errno.EIO for e in errors):
        raise next(e for e in errors if e.errno == errno.EIO)
    if errors:
        raise errors[0]
    if rets and all(r == Outcome.NO_HEAL_NEEDED for r in rets):
        return Outcome.NO_HEAL_NEEDED
    return Outcome.HEALED if rets else Outcome.NO_HEAL_NEEDED


async def _guard(coro):
    try:
        return await coro
    except FopError as e:
        return e


def _unlocked_inspect(h: _Heal, replies):
    """afr_selfheal_unlocked_inspect: which kinds of heal the changelogs or
    differing attributes call for; EIO on a type mismatch."""
    afr = h.afr
    dsh = msh = esh = False
    first = None
    valid = 0
    for i, r in enumerate(replies):
        if not _ok(r):
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


# -- data (afr-self-heal-data.c) ---------------------------------------------


async def heal_data(h: _Heal, gfid: GFID) -> Outcome:
    """afr_selfheal_data."""
    afr = h.afr
    fd = Fd(gfid=gfid, flags=os.O_RDWR)
    loc = Loc(gfid=gfid)
    opened = await h.on(h.up(), lambda i: afr.children[i].open(loc, os.O_RDWR, fd, None))
    open_on = [_ok(r) for r in opened]
    if not any(open_on):
        raise next((r for r in opened if isinstance(r, FopError)),
                   FopError(errno.ENOTCONN))
    try:
        locked_on = await h.inodelk(afr.sh_domain, gfid, tie_breaker=True)
        try:
            if sum(locked_on) < h.n:
                raise FopError(errno.ENOTCONN, "Skipping self-heal: not every subvolume "
                                               "could be locked")
            return await _heal_data_locked(h, gfid, fd)
        finally:
            await h.uninodelk(afr.sh_domain, gfid, 0, 0, locked_on)
    finally:
        await h.on([i for i in range(h.n) if open_on[i]],
                   lambda i: afr.children[i].release(fd, None))


def _has_holes(ia: Iatt) -> bool:
    return ia.blocks * 512 < ia.size


async def _heal_data_locked(h: _Heal, gfid: GFID, fd: Fd) -> Outcome:
    """__afr_selfheal_data."""
    afr = h.afr
    n = h.n
    undid = [False] * n
    data_lock = await h.inodelk(afr.domain, gfid)
    arbiter_only = empty = False
    try:
        if sum(data_lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        replies = await h.discover(gfid)
        d = h.direction(replies, DATA, data_lock)
        sources, sinks = d.sources, d.sinks
        healed = [sinks[i] and data_lock[i] for i in range(n)]
        source = await _data_finalize_source(h, gfid, replies, d, healed, data_lock, undid)
        if not any(healed):
            return Outcome.NO_HEAL_NEEDED
        iatts = [r.iatt if _ok(r) else None for r in replies]
        if source == afr.arbiter:
            empty = all(ia is not None and ia.size == 0 for ia in iatts)
            if not empty:
                return Outcome.NO_HEAL_NEEDED
        else:
            size = iatts[source].size
            trunc = await h.on([i for i in range(n) if healed[i]],
                               lambda i: afr.children[i].ftruncate(fd, size, None))
            for i in range(n):
                if healed[i] and not _ok(trunc[i]):
                    healed[i] = False
            if afr.arbiter is not None and sum(healed) == 1 and healed[afr.arbiter]:
                arbiter_only = True
    finally:
        await h.uninodelk(afr.domain, gfid, 0, 0, data_lock)
    if not empty and not arbiter_only:
        await _copy_data(h, gfid, fd, source, healed, iatts)
    await h.restore_time(gfid, iatts[source], healed)
    if not empty and not arbiter_only:
        data_lock = await h.inodelk(afr.domain, gfid)
        if sum(data_lock) < n:
            await h.uninodelk(afr.domain, gfid, 0, 0, data_lock)
            raise FopError(errno.ENOTCONN, "could not lock every subvolume for the post-op")
    try:
        await h.undo_pending(gfid, replies, DATA, sinks, healed, data_lock, undid)
    finally:
        await h.uninodelk(afr.domain, gfid, 0, 0, data_lock)
    afr.log.info("Completed data selfheal on %s. sources=%s sinks=%s", gfid,
                 [i for i in range(n) if sources[i]], [i for i in range(n) if healed[i]])
    return Outcome.HEALED


async def _data_finalize_source(h: _Heal, gfid, replies, d: cl.Direction, healed,
                                locked_on, undid) -> int:
    """__afr_selfheal_data_finalize_source; EIO for an unresolved
    split-brain."""
    afr = h.afr
    n = h.n
    sources, sinks = d.sources, d.sinks
    iatts = [r.iatt if _ok(r) else None for r in replies]
    if healed == list(locked_on) or not any(sources):
        source = h.split_brain_source(replies, sources, sinks, healed, locked_on, DATA)
        if source < 0:
            afr.log.error("Unable to self-heal contents of %s (possible split-brain). "
                          "Please delete the file from all but the preferred subvolume.",
                          gfid)
            raise FopError(errno.EIO, h.fail_msg or f"{gfid} is in data split-brain")
        await h.reset_sink_xattrs(gfid, replies, source, healed, locked_on, DATA, undid)
    else:
        if h.heal_op is not None:
            h.fail_msg = SFILE_NOT_IN_SPLIT_BRAIN
            raise FopError(errno.EIO, SFILE_NOT_IN_SPLIT_BRAIN)
        if cl.size_mismatch(sources, iatts, afr.arbiter) or \
                any(sources[i] and d.witness[i] for i in range(n)):
            cl.largest_file(sources, iatts)
            cl.biggest_witness(sources, d.witness)
            cl.newest_ctime(sources, iatts)
            if afr.arbiter is not None:
                h._if_file_empty(replies, sources, sinks, healed, locked_on, DATA)
    for i in range(n):
        healed[i] = not sources[i] and bool(locked_on[i])
    return h.choose_source(sources, DATA)


async def _copy_data(h: _Heal, gfid, fd, source, healed, iatts) -> None:
    """afr_selfheal_data_do: block by block, each under its own range lock."""
    afr = h.afr
    arbiter_sink = False
    if afr.arbiter is not None and healed[afr.arbiter]:
        arbiter_sink = True
        healed[afr.arbiter] = False
    try:
        src = iatts[source]
        block = _BLOCK * afr.opts.data_self_heal_window_size
        if _has_holes(src):
            block = _BLOCK
        algo = afr.opts.data_self_heal_algorithm
        if algo is None:
            algo = "diff" if any(iatts[i].size for i in range(h.n)
                                 if healed[i] or i == source) else "full"
        off = 0
        while off < src.size:
            if not any(healed):
                raise FopError(errno.ENOTCONN, "every sink failed")
            await _heal_block(h, gfid, fd, source, healed, off, block, algo, iatts)
            off += block
        if afr.opts.ensure_durability:
            res = await h.on([i for i in range(h.n) if healed[i]],
                             lambda i: afr.children[i].fsync(fd, 0, None))
            for i in range(h.n):
                if healed[i] and not _ok(res[i]):
                    healed[i] = False
    finally:
        if arbiter_sink:
            healed[afr.arbiter] = True


async def _heal_block(h: _Heal, gfid, fd, source, healed, off, size, algo, iatts) -> None:
    """afr_selfheal_data_block."""
    afr = h.afr
    lock = await h.inodelk(afr.domain, gfid, off, size)
    try:
        if not lock[source] or not any(healed[i] and lock[i] for i in range(h.n)):
            raise FopError(errno.ENOTCONN, "source or sinks not locked")
        if algo == "diff" and await _block_matches(h, fd, source, healed, off, size,
                                                   iatts[source]):
            return
        data = bytes((await h.one(source, lambda i: afr.children[i].readv(
            fd, size, off, 0, None))).data)
        if not data:
            return
        zero = not any(data)
        src = iatts[source]
        for i in range(h.n):
            if not healed[i]:
                continue
            last = off <= src.size <= off + size
            if _has_holes(src) and off >= iatts[i].size and not last and zero:
                continue        # beyond the sink's size already covered by ftruncate
            try:
                w = await h.one(i, lambda j: afr.children[j].writev(fd, data, off, 0, None))
                if w.count != len(data):
                    healed[i] = False
            except FopError:
                healed[i] = False
    finally:
        await h.uninodelk(afr.domain, gfid, off, size, lock)


async def _block_matches(h: _Heal, fd, source, healed, off, size, src: Iatt) -> bool:
    """__afr_can_skip_data_block_heal: equal checksums everywhere."""
    afr = h.afr
    targets = [i for i in range(h.n) if i == source or healed[i]]
    sums = await h.on(targets, lambda i: afr.children[i].rchecksum(
        fd, off, size, {"check-zero-filled": 1}))
    if not _ok(sums[source]):
        return False
    for i in targets:
        if i != source and _ok(sums[i]) and sums[i].strong != sums[source].strong:
            return False
    if _has_holes(src):
        return True
    return not (sums[source].xdata or {}).get("buf-has-zeroes")


# -- metadata (afr-self-heal-metadata.c) -------------------------------------


async def heal_metadata(h: _Heal, gfid: GFID) -> Outcome:
    """afr_selfheal_metadata."""
    afr = h.afr
    n = h.n
    undid = [False] * n
    lock = await h.inodelk(afr.domain, gfid, METADATA_LOCK_START, 0, tie_breaker=True)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        replies = await h.discover(gfid)
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
        await h.restore_time(gfid, replies[source].iatt, healed)
        await h.undo_pending(gfid, replies, METADATA, d.sinks, healed, lock, undid)
    finally:
        await h.uninodelk(afr.domain, gfid, METADATA_LOCK_START, 0, lock)
    afr.log.info("Completed metadata selfheal on %s. sources=%s sinks=%s", gfid,
                 [i for i in range(n) if d.sources[i]], [i for i in range(n) if healed[i]])
    return Outcome.HEALED


async def _metadata_finalize_source(h: _Heal, gfid, replies, d, healed, locked_on, undid):
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
        if not sources[i] or i == source or not _ok(replies[i]):
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


def _dirtime_split_brain_source(h: _Heal, replies, locked_on) -> int:
    """afr_dirtime_splitbrain_source: a directory whose copies differ only
    in times heals from the newest."""
    source, best = -1, -1
    for i, r in enumerate(replies):
        if locked_on[i] and _ok(r) and r.iatt.mtime_ns > best:
            source, best = i, r.iatt.mtime_ns
    if source < 0 or not replies[source].iatt.is_dir:
        return -1
    src = replies[source]
    for i, r in enumerate(replies):
        if i == source or not _ok(r):
            continue
        if r.iatt.gfid != src.iatt.gfid or _meta_key(r.iatt) != _meta_key(src.iatt) or \
                healable_xattrs(r.xdata) != healable_xattrs(src.xdata):
            return -1
    return source


async def _metadata_do(h: _Heal, gfid, source, healed, replies) -> None:
    """__afr_selfheal_metadata_do."""
    afr = h.afr
    loc = Loc(gfid=gfid)
    try:
        got = await h.one(source, lambda i: afr.children[i].getxattr(loc, None, None))
    except FopError:
        raise FopError(errno.EIO, "cannot read the source's xattrs") from None
    xattrs = {k: v for k, v in got.dict.items() if not ignorable(k)}
    src = replies[source].iatt
    for i in range(h.n):
        if not healed[i]:
            continue
        try:
            await h.one(i, lambda j: afr.children[j].setattr(
                loc, src, SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_MODE, None))
        except FopError:
            healed[i] = False
        try:
            old = await h.one(i, lambda j: afr.children[j].getxattr(loc, None, None))
            stale = {k: v for k, v in old.dict.items() if not ignorable(k)}
            if stale:
                await h.one(i, lambda j: afr.children[j].removexattr(loc, "", stale))
        except FopError:
            healed[i] = False
        if xattrs:
            try:
                await h.one(i, lambda j: afr.children[j].setxattr(loc, xattrs, 0, None))
            except FopError:
                healed[i] = False


# -- entries (afr-self-heal-entry.c) ----------------------------------------


async def heal_entry(h: _Heal, gfid: GFID) -> Outcome:
    """afr_selfheal_entry."""
    afr = h.afr
    n = h.n
    fd = Fd(gfid=gfid, is_dir=True)
    loc = Loc(gfid=gfid)
    opened = await h.on(h.up(), lambda i: afr.children[i].opendir(loc, fd, None))
    open_on = [_ok(r) for r in opened]
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


async def _entry_prepare(h: _Heal, gfid, locked_on):
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


async def _heal_entry_locked(h: _Heal, gfid, fd, open_on) -> Outcome:
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


def _need_full_heal(h: _Heal, replies, source, healed) -> bool:
    """afr_need_full_heal: without granular entry heal always; with it when
    a full-heal marker (the data slot of a directory) is set."""
    afr = h.afr
    if not afr.opts.granular_entry_heal:
        return True

    def marked(r):
        return _ok(r) and any(cl.pending_of(r.xdata, k, DATA) for k in afr.pending_keys)
    if source >= 0 and marked(replies[source]):
        return True
    return any(healed[i] and marked(replies[i]) for i in range(h.n))


async def _entry_crawl(h: _Heal, gfid, fd, child: int, full: bool, is_source: bool) -> bool:
    """afr_selfheal_entry_do_subvol / afr_selfheal_entry_granular: visit
    the names child `child` lists (or its name index records); True when a
    gfid or type mismatch was left alone."""
    afr = h.afr
    names: list[str] | None = None
    index_dir = None
    if not full:
        index_dir = await _name_index_dir(h, child, gfid)
        if index_dir is not None:
            names = await _list_dir(h, child, index_dir[1])
        elif is_source:
            names = None        # no name index on the source: list the directory
        else:
            return False
    if names is None:
        names = [e.name async for e in _dir_entries(h, child, fd)]
    mismatch = False
    for name in names:
        if gfid == ROOT_GFID and afr._is_private_dir(name):
            continue
        try:
            await _heal_dirent(h, gfid, name)
        except FopError as e:
            if e.errno == errno.EIO:
                mismatch = True
                continue
            raise
        if index_dir is not None:
            try:
                await h.one(child, lambda i: afr.children[i].unlink(
                    Loc(pargfid=index_dir[1], name=name), 0, None))
            except FopError:
                pass
    return mismatch


async def _name_index_dir(h: _Heal, child: int, gfid: GFID):
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


async def _list_dir(h: _Heal, child: int, dir_gfid: GFID, xdata=None) -> list[str]:
    sub = h.afr.children[child]
    fd = Fd(gfid=dir_gfid, is_dir=True)
    await h.one(child, lambda i: sub.opendir(Loc(gfid=dir_gfid), fd, None))
    try:
        return [e.name async for e in _dir_entries(h, child, fd, xdata=xdata)]
    finally:
        await h.on([child], lambda i: sub.releasedir(fd, None))


async def _dir_entries(h: _Heal, child: int, fd: Fd, *, plus: bool = False, xdata=None):
    """The entries of a directory open on one child, but . and .., read
    in chunks with readdir (readdirp when `plus`)."""
    sub = h.afr.children[child]
    offset = 0
    while True:
        got = await h.one(child, lambda i: (sub.readdirp if plus else sub.readdir)(
            fd, _DIR_CHUNK, offset, xdata))
        if not got.entries:
            return
        for e in got.entries:
            offset = e.off
            if e.name not in (".", ".."):
                yield e


async def _heal_dirent(h: _Heal, pgfid: GFID, name: str) -> None:
    """afr_selfheal_entry_dirent: one name under the domain's entry lock."""
    afr = h.afr
    n = h.n
    lock = await h.entrylk(afr.domain, pgfid, None)
    try:
        if sum(lock) < n:
            raise FopError(errno.ENOTCONN, "not every subvolume could be locked")
        _par, d, source, healed = await _entry_prepare(h, pgfid, lock)
        sources = d.sources
        replies = await h.lookup_name(pgfid, name, [i for i in range(n) if lock[i]])
        if source < 0:
            await _merge_dirent(h, pgfid, name, replies, healed, lock)
        else:
            await _heal_one_dirent(h, pgfid, name, replies, source, sources, healed)
    finally:
        await h.unentrylk(afr.domain, pgfid, None, lock)


async def _heal_one_dirent(h: _Heal, pgfid, name, replies, source, sources, healed) -> None:
    """__afr_selfheal_heal_dirent: the source says what the name is."""
    src = replies[source]
    if src is None:
        raise FopError(errno.EIO)
    if isinstance(src, FopError) and src.errno != errno.ENOENT:
        raise src
    if _ok(src):
        replies = await _heal_gfid_of_name(h, pgfid, name, replies, source, sources,
                                           src.iatt.gfid)
    for i in range(h.n):
        if not healed[i]:
            continue
        if isinstance(src, FopError):
            await _delete_entry(h, pgfid, name, i, replies)
        elif _ok(replies[i]) and replies[i].iatt.gfid == src.iatt.gfid:
            continue
        else:
            await _recreate_entry(h, i, source, sources, pgfid, name, replies)


async def _merge_dirent(h: _Heal, pgfid, name, replies, healed, locked_on) -> None:
    """__afr_selfheal_merge_dirent: no clear source - create the name where
    it is missing, report (EIO) a gfid or type mismatch."""
    n = h.n
    source = next((i for i in range(n) if _ok(replies[i])), -1)
    if source < 0:
        return
    sources = [_ok(replies[i]) for i in range(n)]
    replies = await _heal_gfid_of_name(h, pgfid, name, replies, source, sources,
                                       replies[source].iatt.gfid)
    _detect_mismatch(h, pgfid, name, replies, source)
    for i in range(n):
        if i == source or not healed[i]:
            continue
        r = replies[i]
        if isinstance(r, FopError) and r.errno == errno.ENOENT:
            await _recreate_entry(h, i, source, sources, pgfid, name, replies)


def _detect_mismatch(h: _Heal, pgfid, name, replies, src_idx) -> None:
    """afr_selfheal_detect_gfid_and_type_mismatch (with
    afr_gfid_split_brain_source left to resolve_split_brain): report."""
    afr = h.afr
    src = replies[src_idx]
    for i, r in enumerate(replies):
        if i == src_idx or not _ok(r):
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


async def _heal_gfid_of_name(h: _Heal, pgfid, name, replies, source, sources, gfid):
    """afr_lookup_and_heal_gfid: a copy of the name without a gfid gets it."""
    afr = h.afr
    ia_type = replies[source].iatt.type if _ok(replies[source]) else None
    wind_on = [i for i, r in enumerate(replies)
               if _ok(r) and r.iatt.gfid.is_null and (ia_type is None or r.iatt.type == ia_type)]
    if not wind_on:
        return replies
    req = {GFID_REQ: gfid}
    got = await h.on(wind_on, lambda i: afr.children[i].lookup(
        Loc(pargfid=pgfid, name=name), req))
    replies = list(replies)
    for i in wind_on:
        replies[i] = got[i]
    return replies


async def _delete_entry(h: _Heal, pgfid, name, child, replies) -> None:
    """afr_selfheal_entry_delete: a directory goes to the brick's landfill
    (rmdir with xflags), anything else is unlinked."""
    afr = h.afr
    r = replies[child]
    if not _ok(r):
        return
    loc = Loc(pargfid=pgfid, name=name, gfid=r.iatt.gfid)
    afr.log.info("expunging %s <gfid:%s>/%s (%s) on %s",
                 "dir" if r.iatt.is_dir else "file", pgfid, name, r.iatt.gfid,
                 afr.children[child].name)
    if r.iatt.is_dir:
        await h.one(child, lambda i: afr.children[i].rmdir(loc, 1, None))
    else:
        await h.one(child, lambda i: afr.children[i].unlink(loc, 0, None))


async def _recreate_entry(h: _Heal, dst, source, sources, pgfid, name, replies) -> None:
    """afr_selfheal_recreate_entry: the source's entry, same gfid, on `dst`
    (what was there under that name removed first); a new inode is marked
    pending on the sources so its data and metadata are healed after."""
    afr = h.afr
    src = replies[source].iatt
    if src.gfid.is_null:
        raise FopError(errno.EINVAL, f"the source has no gfid for {name}")
    await _delete_entry(h, pgfid, name, dst, replies)
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
                if sources[i] and _ok(replies[i]) and replies[i].iatt.gfid == src.gfid:
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


def _new_entry_marked(h: _Heal, replies, sources, source, dst, src: Iatt) -> bool:
    """afr_new_entry_mark_status: the sources already accuse `dst` for the
    inode's metadata (and data for a file) - no new marking needed."""
    if src.is_dir:
        return False
    slot = DATA if src.is_reg else None
    for i in range(h.n):
        if not sources[i]:
            continue
        r = replies[i]
        if not _ok(r) or r.iatt.gfid != src.gfid:
            return False
        if not cl.pending_of(r.xdata, h.afr.pending_keys[dst], METADATA):
            return False
        if slot is not None and not cl.pending_of(r.xdata, h.afr.pending_keys[dst], slot):
            return False
    return True


# -- names (afr-self-heal-name.c) -------------------------------------------


async def heal_name(afr: "Replicate", pgfid: GFID, name: str,
                    gfid_req: GFID | None = None) -> None:
    """afr_selfheal_name: make one name agree on every child - created where
    the parent's sources have it, removed where they do not, given its
    gfid where it has none.  EIO for a type or gfid mismatch it cannot
    resolve; ENOTCONN when not every child could be locked."""
    h = _Heal(afr)
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
        if _ok(r) != _ok(first):
            return True
        if _ok(r) and _ok(first) and r.iatt.gfid != first.iatt.gfid:
            return True
        if _ok(r) and r.iatt.gfid.is_null:
            return True
    return False


async def _name_do(h: _Heal, pgfid, name, replies, source, sources, locked_on,
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
            await _guard(_delete_entry(h, pgfid, name, i, replies))
        return
    # type and gfid mismatches among the copies that count are reported
    counted = [i for i in range(n) if _ok(replies[i]) and (source < 0 or sources[i])
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
    replies = await _heal_gfid_of_name(h, pgfid, name, replies, source, sources, gfid)
    if gfid_idx < 0:
        gfid_idx = next((i for i in range(n) if _ok(replies[i])
                         and not replies[i].iatt.gfid.is_null), -1)
        if gfid_idx < 0:
            return
    # __afr_selfheal_name_impunge: create it where it is missing or different
    target = replies[gfid_idx].iatt.gfid
    have = [_ok(r) and r.iatt.gfid == target for r in replies]
    for i in range(n):
        if not have[i] and locked_on[i]:
            await _recreate_entry(h, i, gfid_idx, have, pgfid, name, replies)


# ==========================================================================
# Inspection: heal info and split-brain status


async def heal_info(afr: "Replicate", gfid: GFID) -> str:
    """afr_get_heal_info: "split-brain", "possibly-healing", "heal" (each
    with "-pending" when changelogs are set) or "no-heal"."""
    h = _Heal(afr)
    pflag = 0
    try:
        replies = await h.discover(gfid)
        dsh, msh, esh, first = _unlocked_inspect(h, replies)
    except FopError as e:
        if e.errno == errno.EIO:
            return "split-brain"
        return "heal"
    valid = [_ok(r) for r in replies]
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


def _update_heal_status(h: _Heal, replies, first: Iatt, pflag, dsh, msh, esh) -> int:
    """afr_update_heal_status: 1 = nothing to heal (only in-flight I/O)."""
    afr = h.afr
    io_count = sh_count = 0
    for r in replies:
        if not _ok(r):
            continue
        xd = r.xdata or {}
        io_count = io_count or int(xd.get(f"{INODELK_DOM_PREFIX}:{afr.domain}") or 0)
        sh_count = sh_count or int(xd.get(f"{INODELK_DOM_PREFIX}:{afr.sh_domain}") or 0)
    if not pflag & cl.PFLAG_PENDING:
        xdatas = [r.xdata if _ok(r) else None for r in replies]
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
    h = _Heal(afr)
    replies = await h.discover(gfid)
    if not all(_ok(r) for r in replies):
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
    h = _Heal(afr, op, source_brick)
    try:
        replies = await h.discover(gfid)
        dsh, msh, esh, first = _unlocked_inspect(h, replies)
    except FopError as e:
        return str(e.message)
    if not (dsh or msh or esh):
        return SFILE_NOT_IN_SPLIT_BRAIN
    rets = []
    if dsh and _stat.S_ISREG(first.mode):
        rets.append(await _guard(heal_data(h, gfid)))
    if msh:
        rets.append(await _guard(heal_metadata(h, gfid)))
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


# ==========================================================================
# Crawling (afr-self-heald.c)


async def pending_entries(afr: "Replicate", child: int, kind: str = "xattrop") -> list[GFID]:
    """The gfids child `child`'s index lists (``kind`` xattrop, dirty or
    entry-changes), read through the fops as the self-heal daemon does:
    getxattr of the index gfid at the root, opendir and readdir of it."""
    h = _Heal(afr)
    key = INDEX_GFID_KEYS[kind]
    sub = afr.children[child]
    got = await h.one(child, lambda i: sub.getxattr(Loc(gfid=ROOT_GFID, path="/"), key, None))
    vgfid = GFID(bytes(got.dict[key]))
    out = []
    for name in await _list_dir(h, child, vgfid, {GET_GFID_TYPE: 1}):
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
    h = _Heal(afr)
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


async def _heal_indexed(h: _Heal, child: int, kind: str, gfid: GFID, stats: CrawlStats):
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


async def _purge_index(h: _Heal, child: int, kind: str, gfid: GFID) -> None:
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
    h = _Heal(afr)
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
            async for e in _dir_entries(h, child, fd, plus=True):
                if e.iatt is None or gfid == ROOT_GFID and afr._is_private_dir(e.name):
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
    h = _Heal(afr)
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
