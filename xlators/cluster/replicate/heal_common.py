"""Self-heal for cluster/replicate: data, metadata, entries and names.

Follows GlusterFS's afr-self-heal-common.c, -data.c, -metadata.c, -entry.c,
-name.c and the index crawl of afr-self-heald.c.  Every heal works on one
inode through the replicate translator's children, as GlusterFS's heal
frames do, under the identity of the self-heal daemon (pid -6) with a lock
owner of its own:

* **data** (regular files): a tie-breaker inodelk in ``<name>:self-heal``,
  the whole file in ``<name>``; the changelogs say which copies are sources
  and which are sinks (`changelog.find_direction`); the sinks are
  truncated to the source's size and the content copied in blocks of
  ``data-self-heal-window-size`` x 128 KiB (1 block of 128 KiB for sparse
  files), each block locked on its own range, skipping blocks whose
  checksums already match with the "diff" algorithm; then the sinks are
  fsynced (``ensure-durability``), given the source's times, and every
  changelog is reset (the *undo-pending* xattrop).  A file that fits one
  window is copied under the whole-file lock, held to the post-op
  (heal_data.py says why);
* **metadata**: ownership and permission bits by setattr, xattrs by
  removing the sink's and setting the source's (changelogs and the few
  keys AFR never heals excepted), under the metadata lock - beside the
  data heal once that holds the whole-file lock (heal_inode.py);
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

This module is what every heal shares (afr-self-heal-common.c): the heal
frame `Heal` (locks, changelogs, choosing the source), the outcomes and
crawl counters, and reading a directory on one child.  The heals
themselves are in heal_data.py, heal_metadata.py, heal_entry.py,
heal_name.py and heal_inode.py, the crawls in crawl.py.
"""

from __future__ import annotations

import dataclasses
import enum
import errno
import os
import stat as _stat
from typing import TYPE_CHECKING, Any, Callable, Sequence

import trio

from glusterpy.fops import (GFID, SET_ATTR_ATIME, SET_ATTR_CTIME, SET_ATTR_MTIME, Caller,
                            EntrylkCmd, EntrylkType, Fd, Flock, FopError, Iatt, Loc, LockCmd,
                            LockType, UInt, XattropType)
from glusterpy.keys import (AFR_XATTR_PREFIX, GFIDLESS_LOOKUP, INODELK_DOM_PREFIX, MDATA_KEY,
                            MULTI_DOM_LK_CNT_REQUESTS, PURGE_INDEX_KEY, QUOTA_SIZE_KEY,
                            SELINUX_KEY, XATTROP_DIRTY_GFID, XATTROP_ENTRY_CHANGES_GFID,
                            XATTROP_INDEX_GFID, XATTR_NAMESPACES)

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate.changelog import DATA, ENTRY, METADATA
from xlators.cluster.replicate.state import is_ok
from glusterpy.fops import ClientPid
from glusterpy.xlator import both  # noqa: F401 - the heals take it from here

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate


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
    #: a full sweep's directories: listed, all of whose entries were
    #: healed, and left to do by the interrupted sweep it resumed
    dirs_listed: int = 0
    dirs_done: int = 0
    resumed_dirs: int = 0
    #: the parallel heals (crawl.HealQueue): the most jobs at once, the
    #: most entries waiting, how often the crawl waited for a place
    peak_jobs: int = 0
    peak_waiting: int = 0
    crawl_waits: int = 0

    def note_queue(self, queue) -> None:
        self.peak_jobs = max(self.peak_jobs, queue.peak_jobs)
        self.peak_waiting = max(self.peak_waiting, queue.peak_waiting)
        self.crawl_waits += queue.crawl_waits


def ignorable(key: str) -> bool:
    """afr_is_xattr_ignorable (plus mdata, see the module docstring)."""
    return key.startswith(AFR_XATTR_PREFIX + ".") or key in IGNORED_XATTRS


def healable_xattrs(d: dict | None) -> dict:
    """The on-disk xattrs AFR keeps identical (afr_xattr_match_needed)."""
    return {k: v for k, v in (d or {}).items()
            if k.startswith(XATTR_NAMESPACES) and not ignorable(k)}


class MetadataHold:
    """What the data heal running beside the metadata heal
    (heal_inode.heal_gfid) hands it once it holds the whole file's data
    lock on every child and has looked at the copies under it.

    The metadata heal then takes no lock of its own: GlusterFS's metadata
    lock is a range of the same domain (METADATA_LOCK_START onwards) that
    the whole file's data lock covers, so whoever would wait for the one -
    a client's metadata transaction, another daemon's heal - waits for the
    other.  The data heal keeps its lock until the metadata heal is `done`
    (`wait_done`), and the look it made under the lock serves both heals:
    a metadata lock, its unlock and a lookup a child less.  `covered` is
    False when nothing was handed (the metadata heal then locks and looks
    for itself); `lock` is the data lock's list of children then held."""

    __slots__ = ("covered", "lock", "replies", "done", "post_op", "times")

    def __init__(self) -> None:
        self.covered = False
        self.lock: list[bool] | None = None
        self.replies: list | None = None
        self.done = trio.Event()
        #: the metadata heal's ending, left to the data heal to send with
        #: its own (one xattrop a child, one setattr of the times a sink):
        #: its post-op (child -> xattrop dict) and its times (the source's
        #: index, the healed children)
        self.post_op: dict[int, dict] | None = None
        self.times: tuple[int, list[bool]] | None = None

    def take_post_op(self) -> dict[int, dict]:
        post, self.post_op = self.post_op, None
        return post or {}

    def take_times(self, source: int | None = None) -> list[bool] | None:
        """The children whose times the metadata heal left to set from
        `source` (any source when None; then the pair's source is in
        `times` before the call), and forgets them."""
        if self.times is None or (source is not None and self.times[0] != source):
            return None
        healed, self.times = self.times[1], None
        return healed

    async def send_left(self, h: "Heal", gfid: GFID) -> None:
        """What the metadata heal left and the data heal did not send with
        its own: sent now (after the metadata heal ended)."""
        if not self.covered:
            return
        await self.done.wait()
        post = self.take_post_op()
        times = self.times
        healed = self.take_times()
        source = None if times is None else times[0]
        replies = self.replies or []

        async def set_times():
            if healed is not None and source is not None and is_ok(replies[source]):
                await h.restore_time(gfid, replies[source].iatt, healed)
        await both(lambda: h.send_undo(gfid, post, None), set_times)

    def hand(self, lock: list[bool], replies: list) -> None:
        self.covered, self.lock, self.replies = True, list(lock), replies

    async def wait_done(self) -> None:
        """Until the metadata heal under the handed lock ended."""
        if self.covered:
            await self.done.wait()


class Heal:
    """One heal frame: the translator, the lock owner and, for a split-brain
    resolution, the requested heal-op."""

    def __init__(self, afr: "Replicate", heal_op: int | None = None,
                 source_name: str | None = None):
        self.afr = afr
        self.n = afr.child_count
        self.caller = Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8))
        self.heal_op = heal_op
        self.source_name = source_name
        self.fail_msg: str | None = None
        #: set when the favourite-child policy picked the source
        self.fav_child = False

    # -- calling the children ------------------------------------------------

    async def on(self, targets: Sequence[int], fn: Callable[[int], Any]) -> list:
        return await self.afr.fan(list(targets), fn, self.caller)

    async def one(self, i: int, fn: Callable[[int], Any]):
        r = (await self.on([i], fn))[i]
        if isinstance(r, FopError):
            raise r
        return r

    def up(self) -> list[int]:
        return [i for i in range(self.n) if self.afr.child_up[i]]

    def discover_req(self) -> dict:
        """afr_selfheal_unlocked_discover_on's request."""
        req = self.afr.xattr_req({})
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
        req = self.afr.xattr_req({})
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
        locked = [is_ok(r) for r in replies]
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
        xdatas = [r.xdata if is_ok(r) else None for r in replies]
        return cl.find_direction(xdatas, [is_ok(r) for r in replies], self.afr.pending_keys,
                                 self.afr.dirty_key, slot, locked_on, self.afr.quorum_count)

    async def undo_pending(self, gfid, replies, slot, sinks, healed, locked_on,
                           undid=None, full_crawl=False, more: dict | None = None) -> None:
        """afr_selfheal_undo_pending (`more`: another heal's post-op, child
        -> dict, added to this one's - MetadataHold)."""
        xattrs, xdata = self.undo_xattrs(replies, slot, sinks, healed, locked_on, undid,
                                         full_crawl)
        for i, extra in (more or {}).items():
            xattrs[i] = cl.add_dicts(xattrs[i], extra, self.afr.dirty_key) if i in xattrs \
                else extra
        await self.send_undo(gfid, xattrs, xdata)

    def undo_xattrs(self, replies, slot, sinks, healed, locked_on, undid=None,
                    full_crawl=False) -> tuple[dict[int, dict], dict | None]:
        """undo_pending's xattrop dict of each child, and its xdata."""
        xdatas = [r.xdata if is_ok(r) else None for r in replies]
        out = cl.undo_pending(xdatas, self.afr.pending_keys, self.afr.dirty_key, slot,
                              sinks, healed, locked_on, full_crawl)
        xdata = {PURGE_INDEX_KEY: 1} if slot == ENTRY and self.afr.opts.granular_entry_heal \
            else None
        xattrs = {}
        for i, item in enumerate(out):
            if item is None or (undid and undid[i]):
                continue
            rows, dirty = item
            xattrs[i] = cl.changelog_dict(self.afr.pending_keys, rows, self.afr.dirty_key,
                                          dirty, dirty_last=True)
        return xattrs, xdata

    async def send_undo(self, gfid, xattrs: dict[int, dict], xdata: dict | None) -> None:
        """undo_pending's xattrops."""
        # GlusterFS sends them one brick after the other; each is an
        # addition to one brick's own counters, needing no other's answer,
        # so they go out together: one round trip instead of one a brick
        done = await self.on(list(xattrs), lambda i: self.afr.children[i].xattrop(
            Loc(gfid=gfid), XattropType.ADD_ARRAY, xattrs[i], xdata))
        for i in xattrs:
            if isinstance(done[i], FopError):
                self.afr.log.warning("undo-pending on %s for %s: %s",
                                     self.afr.children[i].name, gfid, done[i])

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
        iatts = [r.iatt if is_ok(r) else None for r in replies]
        source = self.if_file_empty(replies, sources, sinks, healed, locked_on, slot)
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

    def if_file_empty(self, replies, sources, sinks, healed, locked_on, slot) -> int:
        """afr_mark_source_sinks_if_file_empty."""
        if not all(locked_on) or not all(is_ok(r) for r in replies):
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
        if not all(is_ok(r) for r in replies):
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
        xdatas = [r.xdata if is_ok(r) else None for r in replies]
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


async def guard(coro):
    try:
        return await coro
    except FopError as e:
        return e


async def list_dir(h: Heal, child: int, dir_gfid: GFID, xdata=None) -> list[str]:
    sub = h.afr.children[child]
    fd = Fd(gfid=dir_gfid, is_dir=True)
    await h.one(child, lambda i: sub.opendir(Loc(gfid=dir_gfid), fd, None))
    try:
        return [e.name async for e in dir_entries(h, child, fd, xdata=xdata)]
    finally:
        await h.on([child], lambda i: sub.releasedir(fd, None))


async def dir_entries(h: Heal, child: int, fd: Fd, *, plus: bool = False, xdata=None):
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

