"""features/locks: inode, entry and POSIX record locks on a brick.

Follows GlusterFS's features/locks (xlators/features/locks: posix.c,
inodelk.c, entrylk.c, common.c, clear.c).  It sits right above the storage
translator of a brick and serves the lock fops that storage/posix answers
with ENOSYS.  Every lock belongs to an *owner*: the pair (`caller.client`,
`caller.lk_owner`) - the connection the fop came from and the lock owner the
client chose.  A null lk_owner (empty or all zero bytes) is refused with
EINVAL, as pl_is_lk_owner_valid does for every client of op-version 7 and
later.

inodelk / finodelk
    Byte-range read/write locks per inode and per *domain* (the `volume`
    argument; cluster/replicate uses its own name and "<name>:self-heal").
    Domains never interact.  Locks are kept as requested - GlusterFS merges
    and splits nothing here: an owner's locks never conflict with each other,
    unlock removes the one lock with exactly the same range (EINVAL when
    there is none), and GETLK answers ENOTSUP.  SETLK answers EAGAIN on a
    conflict, SETLKW waits; waiters are granted in the order they came.  A
    lock that could be granted still waits when it conflicts with an earlier
    waiter, unless its owner already holds or waits for a lock in that domain
    (GlusterFS's starvation rule, which lets nested locks through).  The
    range start=LLONG_MAX-1, len=0 is taken in the domain "<volume>:metadata"
    as _pl_convert_volume_for_special_range does.

entrylk / fentrylk
    Locks on names in a directory, per domain; basename None (or "") locks
    the whole directory and conflicts with every name.  As in GlusterFS the
    type (read/write) plays no part in conflicts - two locks on one name
    conflict unless they have the same owner - and only unlock matches it.
    LOCK waits, LOCK_NB answers EAGAIN, UNLOCK of a lock not held is EINVAL.

lk
    POSIX record locks with fcntl semantics.  GETLK reports the first
    conflicting lock (its type, range, pid and owner) or UNLCK; SETLK answers
    EAGAIN on a conflict; SETLKW waits, and first releases the caller's own
    locks in the range as pl_send_prelock_unlock does (so two readers
    upgrading at once do not deadlock; there is no deadlock detection, as in
    GlusterFS).  A lock request replaces the owner's locks in its range -
    splitting them - and merges with the owner's overlapping locks of the
    same type.  Ranges that merely touch stay separate locks, as in
    GlusterFS (Linux would coalesce them; byte-wise the result is the same).
    A negative l_len locks the bytes before l_start.  An unlock's reply
    carries type RDLCK while the fd still has locks (NLM's "last unlock"
    check), UNLCK otherwise.  flush by an owner drops that owner's locks on
    the inode; flush with an empty lk_owner (what protocol/server sends for a
    departed client) and release drop every lock taken through that fd and
    fail its waiters with EAGAIN.  Reservation locks (RESLK_*) and GETLK_FD
    answer ENOTSUP: no GlusterFS 10 client sends them (they served the lock
    healing of GlusterFS 3.x).

Disconnects
    `client_disconnected(client)` drops every inodelk and entrylk of the
    client, fails its waiters with EAGAIN and grants what now can be granted
    (pl_client_disconnect_cbk).  It also drops the POSIX locks taken through
    the client's fds and fails its POSIX waiters - GlusterFS gets the same
    result from the flush/release protocol/server sends for each fd of the
    client; doing it here leaves nothing behind when the server has no fd
    table entry left.  POSIX locks installed by setactivelk (no fd) stay, as
    in GlusterFS.  A lock request of a departed client that was still in
    flight is refused with ENOTCONN (GlusterFS refuses a blocking one when
    the client's bind count is 0 and sweeps the rest at client_destroy).

Removal of locked inodes (pl_inode_remove_prepare and friends)
    unlink, rmdir and a rename over an existing name wait while *another*
    client (pid >= 0) holds an inodelk on the victim, sending it a contention
    upcall; while a removal waits or runs, new inodelks of user clients wait
    (unless their client already holds one on the inode).  When the victim's
    gfid is not in the loc it is looked up, but only when some inodelk is
    held on the brick at all.  Departure: waiting removals are also woken
    when locks go because a client disconnected or locks were cleared
    (GlusterFS wakes them only on unlock).

Counts in xdata (pl_has_xdata_requests / pl_set_xdata_response)
    A request key in the xdata of lookup, stat, fstat, readdirp, opendir,
    flush, create, readv, writev, [f]setxattr, [f]removexattr, [f]xattrop,
    [f]setattr, rename, unlink, mkdir, mknod, rmdir, symlink, link, fsync,
    readdir, fsyncdir, statfs, rchecksum, fallocate, readlink, access and
    seek is taken out before winding and answered in the reply's xdata:
    "glusterfs.inodelk-count" (granted + waiting inodelks in all domains, or
    in the one domain named by "glusterfs.inodelk-dom-count"),
    "glusterfs.entrylk-count", "glusterfs.posixlk-count",
    "glusterfs.parent-entrylk" (1 when the parent holds an entrylk on exactly
    this name) and, with "glusterfs.multi-dom-lk-cnt-req", one count per
    "glusterfs.inodelk-dom-prefix:<domain>" key.  The inode counted is the
    one GlusterFS counts: lookup's inode, the fd's inode, and for the other
    loc fops the loc's *parent* (both parents, keeping the larger count, for
    link and rename); a loc without a parent gfid gets no count.  readdirp
    fills each entry's xdata for the entry.

Contention upcalls (notify-contention)
    When a lock request conflicts with a granted inodelk or entrylk, its
    holder is told - at most once per `notify-contention-delay` seconds per
    lock - by `notify(Event.UPCALL, LockContention(...))` travelling up to
    protocol/server, which sends the wrapped callback message to that
    client (see `LockContention`).

Clearing locks (clear.c)
    getxattr/fgetxattr of "glusterfs.clrlk.t{inode|entry|posix}.k{blocked|
    granted|all}[.<range or basename>]" (what `gluster volume clear-locks`
    sends) clears those locks and answers a summary; fgetxattr of
    "glusterfs.intrlk.tposix.kblocked" fails the caller's own waiting POSIX
    locks with EINTR (an interrupted F_SETLKW).  Waiters cleared otherwise
    get EAGAIN.

Lock migration
    getactivelk lists the granted POSIX locks (flock, client uid, lock mode
    flags); setactivelk installs such a list on an inode without POSIX locks
    (EINVAL otherwise, or for an empty list; GlusterFS answers -1 with errno
    0).  The owning client is the caller, as in GlusterFS.  The meta-lock
    (setxattr of "glusterfs.lock-migration-meta-lock") that rebalance takes
    around a migration is not implemented: the key winds to storage/posix.

Not implemented, so their options are not declared: mandatory locking
(`mandatory-locking`, `enforce-mandatory-lock`: readv/writev/truncate
checked against POSIX locks, lock preemption) and the `lockinfo` xattr that
moves locks to a new fd on a client graph switch.  The "glusterfs.lk.lkmode"
xdata flag of lk is kept and reported (getactivelk) but enforces nothing.

Departures besides those above: a POSIX waiter is granted as soon as no
conflicting lock remains (GlusterFS also waits for non-conflicting overlapping
locks to go); revocation and contention timers use trio's monotonic clock;
a loc without a gfid is resolved by a lookup through the child (GlusterFS's
protocol/server resolves it first).

Blocking waits are trio waits inside the fop: the fop returns when the lock
is granted.  A waiting fop that is cancelled leaves no lock and no queue
entry behind; a fop that returned holds its lock.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import os
import random
import weakref
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import trio

from glusterpy import fops
from glusterpy.fops import (GFID, ActiveLock, DictReply, EntrylkCmd, Flock, FopError, LkReply,
                            Loc, LockCmd, LockListReply, LockType, Reply)
from glusterpy.options import Option, OptionType
from glusterpy.rpc.callback import (GF_CBK_ENTRYLK_CONTENTION, GF_CBK_INODELK_CONTENTION,
                                    EntrylkContention, InodelkContention)
from glusterpy.keys import (CLRLK_CMD, CONNECTION_ID, ENTRYLK_COUNT, INODELK_COUNT,
                            INODELK_DOM_COUNT, INODELK_DOM_PREFIX, INTRLK_CMD, LOCK_MODE,
                            MULTI_DOM_LK_CNT_REQUESTS, PARENT_ENTRYLK, PATHINFO_KEY,
                            POSIXLK_COUNT)
from glusterpy.xlator import Event, Translator

LLONG_MAX = (1 << 63) - 1

_COUNT_KEYS = (INODELK_COUNT, ENTRYLK_COUNT, POSIXLK_COUNT, PARENT_ENTRYLK,
               INODELK_DOM_COUNT, MULTI_DOM_LK_CNT_REQUESTS)

# clear.c's lock types and kinds (kinds are bit sets: all = blocked|granted)
CLRLK_TYPES = ("inode", "entry", "posix")
CLRLK_BLOCKED, CLRLK_GRANTED, CLRLK_ALL = 1, 2, 3
_CLRLK_KINDS = {"blocked": CLRLK_BLOCKED, "granted": CLRLK_GRANTED, "all": CLRLK_ALL}

_BLOCKED, _GRANTED, _GONE = "blocked", "granted", "gone"


@dataclass(frozen=True, slots=True)
class LockContention:
    """The payload of the `Event.UPCALL` this translator sends up when a lock
    request conflicts with a granted inodelk or entrylk (GlusterFS's
    gf_upcall with GF_UPCALL_INODELK_CONTENTION / ENTRYLK_CONTENTION).

    protocol/server forwards it: it finds the connection whose client object
    is `client` (the holder's `fops.caller.client`) and sends `message` as
    callback procedure `procnum` of GLUSTER_CBK_PROGRAM.  `client` None means
    the holder is local to the brick (no connection): nothing to send, as
    GlusterFS ignores an upcall with a NULL client_uid.
    """

    client: Any
    procnum: int  # GF_CBK_INODELK_CONTENTION or GF_CBK_ENTRYLK_CONTENTION
    message: InodelkContention | EntrylkContention


# --------------------------------------------------------------------------
# Lock records


@dataclass(eq=False, slots=True, kw_only=True)
class _Lock:
    """What every lock shares: its owner, its state and a waiter's wake-up."""

    gfid: GFID
    client: Any
    owner: bytes
    pid: int  # the caller's pid (frame->root->pid)
    state: str = _GONE
    granted_at: float | None = None
    blocked_at: float | None = None
    #: set when a waiting request is granted (error 0) or failed (error set)
    woken: trio.Event = field(default_factory=trio.Event)
    error: int = 0

    def same_owner(self, other: "_Lock") -> bool:
        return self.client is other.client and self.owner == other.owner


@dataclass(eq=False, slots=True, kw_only=True)
class _InodeLock(_Lock):
    domain: str
    type: int
    start: int
    end: int  # inclusive; LLONG_MAX: to the end of the file
    flock: Flock  # as the client asked (reported in contention upcalls)
    conn_id: str | None = None
    contended_at: float | None = None
    notify_pending: bool = False

    def overlaps(self, other: "_InodeLock") -> bool:
        return self.end >= other.start and other.end >= self.start

    def conflicts(self, other: "_InodeLock") -> bool:
        return self.overlaps(other) and LockType.WRLCK in (self.type, other.type)


@dataclass(eq=False, slots=True, kw_only=True)
class _EntryLock(_Lock):
    domain: str
    basename: str | None  # None: the whole directory
    type: int
    conn_id: str | None = None
    contended_at: float | None = None
    notify_pending: bool = False

    def names_conflict(self, other: "_EntryLock") -> bool:
        return self.basename is None or other.basename is None or \
            self.basename == other.basename


@dataclass(eq=False, slots=True, kw_only=True)
class _PosixLock(_Lock):
    type: int
    start: int
    end: int
    whence: int = os.SEEK_SET
    flock_pid: int = 0  # l_pid as the client gave it; GETLK reports it
    fd: weakref.ref | None = None  # None for locks installed by setactivelk
    lk_flags: int = 0
    client_uid: str = ""
    blocking: bool = False
    #: the lock as granted to a waiter, for its reply
    reply: Flock | None = None

    def overlaps(self, other: "_PosixLock") -> bool:
        return self.end >= other.start and other.end >= self.start

    def taken_through(self, fd) -> bool:
        return self.fd is not None and self.fd() is fd

    def to_flock(self, whence: int = os.SEEK_SET) -> Flock:
        length = 0 if self.end == LLONG_MAX else self.end - self.start + 1
        return Flock(type=self.type, whence=whence, start=self.start, len=length,
                     pid=self.flock_pid, owner=self.owner)

    def piece(self, start: int, end: int) -> "_PosixLock":
        """A granted copy of this lock over [start, end] (what is left of it
        when another request splits it)."""
        return _PosixLock(gfid=self.gfid, client=self.client, owner=self.owner,
                          pid=self.pid, state=_GRANTED, granted_at=self.granted_at,
                          type=self.type, start=start, end=end, whence=self.whence,
                          flock_pid=self.flock_pid, fd=self.fd, lk_flags=self.lk_flags,
                          client_uid=self.client_uid)


@dataclass(eq=False, slots=True)
class _RemoveWaiter:
    """An unlink/rmdir/rename waiting for other clients' inodelks to go."""

    client: Any
    woken: trio.Event = field(default_factory=trio.Event)
    #: set with `woken`: the removal was counted as running on its behalf
    admitted: bool = False


@dataclass(eq=False)
class _Domain:
    name: str
    inodelks: list[_InodeLock] = field(default_factory=list)  # granted, newest first
    blocked_inodelks: list[_InodeLock] = field(default_factory=list)  # oldest first
    entrylks: list[_EntryLock] = field(default_factory=list)
    blocked_entrylks: list[_EntryLock] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.inodelks or self.blocked_inodelks or self.entrylks
                    or self.blocked_entrylks)


@dataclass(eq=False)
class _LockedInode:
    """GlusterFS's pl_inode_t: every lock on one inode."""

    gfid: GFID
    domains: dict[str, _Domain] = field(default_factory=dict)
    posixlks: list[_PosixLock] = field(default_factory=list)  # granted, in order
    blocked_posixlks: list[_PosixLock] = field(default_factory=list)
    remove_running: int = 0
    removal_pending: bool = False  # GlusterFS's is_locked
    remove_waiters: list[_RemoveWaiter] = field(default_factory=list)

    def domain(self, name: str) -> _Domain:
        dom = self.domains.get(name)
        if dom is None:
            dom = self.domains[name] = _Domain(name)
        return dom

    def is_unused(self) -> bool:
        return not (self.domains or self.posixlks or self.blocked_posixlks
                    or self.remove_running or self.removal_pending or self.remove_waiters)


@dataclass(slots=True)
class _CountRequest:
    """The lock counts a fop's xdata asked for."""

    inodelk: bool = False
    entrylk: bool = False
    posixlk: bool = False
    parent_entrylk: bool = False
    inodelk_domain: str | None = None
    domain_keys: tuple[str, ...] = ()


class Locks(Translator):
    """features/locks; see the module docstring."""

    OPTIONS = (
        Option("trace", OptionType.BOOL, "off",
               "Trace the different lock requests to logs.", set_keys=("locks.trace",)),
        Option("monkey-unlocking", OptionType.BOOL, "false",
               "Ignore a random number of unlock requests (one in a hundred, while "
               "revocation-secs is set).  Useful for testing/creating robust lock "
               "recovery mechanisms.", set_keys=("features.locks-monkey-unlocking",)),
        Option("revocation-secs", OptionType.INT, "0",
               "Maximum time a lock can be taken out, before being revoked (0: never).",
               min=0, max=(1 << 31) - 1, set_keys=("features.locks-revocation-secs",)),
        Option("revocation-clear-all", OptionType.BOOL, "false",
               "If set to true, will revoke BOTH granted and blocked (pending) lock "
               "requests if a revocation threshold is hit.",
               set_keys=("features.locks-revocation-clear-all",)),
        Option("revocation-max-blocked", OptionType.INT, "0",
               "A number of blocked lock requests after which a lock will be revoked to "
               "allow the others to proceed.  Can be used in conjunction w/ "
               "revocation-clear-all.", min=0, max=(1 << 31) - 1,
               set_keys=("features.locks-revocation-max-blocked",)),
        Option("notify-contention", OptionType.BOOL, "yes",
               "When this option is enabled and a lock request conflicts with a currently "
               "granted lock, an upcall notification will be sent to the current owner of "
               "the lock to request it to be released as soon as possible.",
               set_keys=("features.locks-notify-contention",)),
        Option("notify-contention-delay", OptionType.INT, "5",
               "This value determines the minimum amount of time (in seconds) between "
               "upcall contention notifications on the same inode. If multiple lock "
               "requests are received during this period, only one upcall will be sent.",
               min=0, max=60, set_keys=("features.locks-notify-contention-delay",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._inodes: dict[GFID, _LockedInode] = {}
        #: granted locks whose holders are to be told of contention
        self._contended: list[_InodeLock | _EntryLock] = []
        self._monkey = random.Random()
        #: clients reported gone; a lock request of theirs still in flight
        #: is refused, or it would hold a lock nobody releases
        self._departed: weakref.WeakSet = weakref.WeakSet()

    async def init(self) -> None:
        # posix.c init(): the translator must sit over a storage translator
        leaf = self
        while leaf.children:
            leaf = leaf.children[0]
        if not leaf.type_name.startswith("storage/"):
            raise FopError(errno.EINVAL, f"{self.name}: 'locks' translator is not loaded "
                                         f"over a storage translator")

    # ======================================================================
    # inodelk / finodelk

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._common_inodelk(volume, gfid, cmd, flock, xdata, loc)

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        return await self._common_inodelk(volume, _fd_gfid(fd), cmd, flock, xdata, fd)

    async def _common_inodelk(self, volume, gfid, cmd, flock, xdata, lockee) -> Reply:
        who = fops.caller.get()
        start, length = _s64(flock.start), _s64(flock.len)
        if start < 0 or length < 0 or start + length > LLONG_MAX + 1:
            raise FopError(errno.EINVAL, "invalid inodelk range")
        if start == LLONG_MAX - 1 and length == 0 and not volume.endswith(":metadata"):
            volume += ":metadata"
        text = _inodelk_text(cmd, flock, volume) if self.opts.trace else ""
        self._trace("REQUEST", who, lockee, text)
        if _null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "inodelk needs a lock owner")
        if cmd not in (LockCmd.SETLK, LockCmd.SETLKW):
            raise self._traced_error(errno.ENOTSUP, who, lockee, text,
                                     "inodelk supports only SETLK and SETLKW")
        if flock.type not in (LockType.RDLCK, LockType.WRLCK, LockType.UNLCK):
            raise FopError(errno.EINVAL, f"invalid lock type {flock.type}")
        if flock.type != LockType.UNLCK:
            self._refuse_departed(who.client)

        lock = _InodeLock(
            gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid, domain=volume,
            type=flock.type, start=start, end=LLONG_MAX if length == 0 else start + length - 1,
            flock=Flock(flock.type, flock.whence, start, length, _s32(flock.pid), flock.owner),
            conn_id=_xdata_str(xdata, CONNECTION_ID))
        pinode = self._inode(gfid)
        dom = pinode.domain(volume)
        try:
            if lock.type == LockType.UNLCK:
                self._inodelk_unlock(pinode, dom, lock, who, lockee)
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if self.opts.revocation_secs:
                self._inodelk_prune_stale(pinode, dom, lock)
            can_block = cmd == LockCmd.SETLKW
            if self._lock_inodelk(pinode, dom, lock, can_block):
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if not can_block:
                self._trace("TRYAGAIN", who, lockee, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, lockee, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: self._cancel_inodelk(pinode, dom, lock))
        return Reply()

    def _inodelk_unlock(self, pinode, dom, request, who, lockee) -> None:
        """Remove the owner's lock with exactly this range (inodelk.c
        __inode_unlock_lock), then wake whatever it held back."""
        if self.opts.revocation_secs and self.opts.monkey_unlocking \
                and self._monkey.randrange(100) == 0:
            self.log.warning("MONKEY LOCKING (forcing stuck lock)!")
            return
        held = next((lk for lk in dom.inodelks if lk.start == request.start
                     and lk.end == request.end and lk.same_owner(request)), None)
        if held is None:
            self.log.debug("matching lock not found for unlock %d-%d by %s on %s",
                           request.start, request.end, request.owner.hex(), pinode.gfid)
            raise FopError(errno.EINVAL, "no such inodelk")
        dom.inodelks.remove(held)
        held.state = _GONE
        self._wake_removals(pinode)
        self._grant_blocked_inodelks(pinode, dom)

    def _lock_inodelk(self, pinode, dom, lock, can_block) -> bool:
        """Grant `lock` or (when it may wait) queue it: __lock_inodelk."""
        held_back = self._removal_blocks(pinode, lock)
        conflict = None if held_back else self._inodelk_conflict(dom, lock)
        if not held_back and conflict is None:
            # a grantable lock still waits behind an earlier conflicting
            # waiter, unless its owner has a lock here (nested locks)
            starving = any(lk.conflicts(lock) for lk in dom.blocked_inodelks)
            if not starving or self._inodelk_owner_present(dom, lock):
                lock.state = _GRANTED
                lock.granted_at = trio.current_time()
                dom.inodelks.insert(0, lock)
                return True
        if can_block:
            lock.state = _BLOCKED
            if lock.blocked_at is None:
                lock.blocked_at = trio.current_time()
            dom.blocked_inodelks.append(lock)
        return False

    def _inodelk_conflict(self, dom, lock) -> _InodeLock | None:
        """The first granted lock of another owner that conflicts with
        `lock`; every such holder is considered for a contention upcall."""
        first = None
        for held in dom.inodelks:
            if held.conflicts(lock) and not held.same_owner(lock):
                if first is None:
                    first = held
                    if not self.opts.notify_contention:
                        break
                self._note_contention(held)
        return first

    @staticmethod
    def _inodelk_owner_present(dom, lock) -> bool:
        return any(lk.same_owner(lock) for lk in dom.inodelks) or \
            any(lk.same_owner(lock) for lk in dom.blocked_inodelks)

    def _grant_blocked_inodelks(self, pinode, dom) -> None:
        """Try every waiter again, oldest first (__grant_blocked_inode_locks)."""
        waiting, dom.blocked_inodelks = dom.blocked_inodelks, []
        for lock in waiting:
            if self._lock_inodelk(pinode, dom, lock, can_block=True):
                if self.opts.trace:
                    self._trace("GRANTED", _owner_of(lock), pinode.gfid,
                                _inodelk_text(LockCmd.SETLKW, lock.flock, lock.domain))
                lock.woken.set()

    def _cancel_inodelk(self, pinode, dom, lock) -> None:
        dom.blocked_inodelks.remove(lock)
        self._grant_blocked_inodelks(pinode, dom)

    def _inodelk_prune_stale(self, pinode, dom, request) -> None:
        """revocation-secs / revocation-max-blocked (__inodelk_prune_stale)."""
        now = trio.current_time()
        reason = age = None
        for held in dom.inodelks:
            if held.conflicts(request) and now - held.granted_at > self.opts.revocation_secs:
                reason, age = "age", now - held.granted_at
                break
        max_blocked = self.opts.revocation_max_blocked
        if reason is None and max_blocked and len(dom.blocked_inodelks) >= max_blocked:
            reason = "max blocked"
        if reason is None:
            return
        kind = CLRLK_ALL if self.opts.revocation_clear_all else CLRLK_GRANTED
        blocked, granted = self._clear_inodelks(pinode, dom, kind, None)
        self.log.warning("Lock revocation [reason: %s; gfid: %s; domain: %s; age: %s sec] - "
                         "Inode lock revoked:  %d granted & %d blocked locks cleared",
                         reason, pinode.gfid, dom.name, int(age or 0), granted, blocked)

    # ======================================================================
    # entrylk / fentrylk

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._common_entrylk(volume, gfid, basename, cmd, type, xdata, loc)

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        return await self._common_entrylk(volume, _fd_gfid(fd), basename, cmd, type, xdata, fd)

    async def _common_entrylk(self, volume, gfid, basename, cmd, type_, xdata, lockee) -> Reply:
        who = fops.caller.get()
        text = _entrylk_text(cmd, type_, basename, volume) if self.opts.trace else ""
        self._trace("REQUEST", who, lockee, text)
        if cmd not in (EntrylkCmd.LOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.UNLOCK):
            raise FopError(errno.EINVAL, f"unknown entrylk command {cmd}")
        if _null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "entrylk needs a lock owner")
        if cmd != EntrylkCmd.UNLOCK:
            self._refuse_departed(who.client)
        lock = _EntryLock(gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid,
                          domain=volume, basename=basename or None, type=type_,
                          conn_id=_xdata_str(xdata, CONNECTION_ID))
        pinode = self._inode(gfid)
        dom = pinode.domain(volume)
        try:
            if cmd == EntrylkCmd.UNLOCK:
                if self.opts.revocation_secs and self.opts.monkey_unlocking \
                        and self._monkey.randrange(100) == 0:
                    self.log.warning("MONKEY LOCKING (forcing stuck lock)!")
                    return Reply()
                held = next((lk for lk in dom.entrylks if lk.basename == lock.basename
                             and lk.same_owner(lock) and lk.type == lock.type), None)
                if held is not None:
                    dom.entrylks.remove(held)
                    held.state = _GONE
                # GlusterFS tries the waiters even when the unlock failed
                self._grant_blocked_entrylks(dom)
                if held is None:
                    self.log.error("unlock on %s attempted but no matching lock found",
                                   lock.basename)
                    raise self._traced_error(errno.EINVAL, who, lockee, text, "no such entrylk")
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if self.opts.revocation_secs:
                self._entrylk_prune_stale(pinode, dom, lock)
            nonblock = cmd == EntrylkCmd.LOCK_NB
            if self._lock_entrylk(dom, lock, can_block=not nonblock):
                self._trace("GRANTED", who, lockee, text)
                return Reply()
            if nonblock:
                self._trace("TRYAGAIN", who, lockee, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, lockee, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: self._cancel_entrylk(dom, lock))
        return Reply()

    def _lock_entrylk(self, dom, lock, can_block) -> bool:
        """Grant `lock` or (when it may wait) queue it: __lock_entrylk."""
        conflict = None
        for held in dom.entrylks:
            if held.names_conflict(lock) and not held.same_owner(lock):
                if conflict is None:
                    conflict = held
                    if not self.opts.notify_contention:
                        break
                self._note_contention(held)
        if conflict is None:
            starving = any(lk.names_conflict(lock) for lk in dom.blocked_entrylks)
            owner_present = any(lk.same_owner(lock) for lk in dom.entrylks) or \
                any(lk.same_owner(lock) for lk in dom.blocked_entrylks)
            if not starving or owner_present:
                lock.state = _GRANTED
                lock.granted_at = trio.current_time()
                dom.entrylks.insert(0, lock)
                return True
        if can_block:
            lock.state = _BLOCKED
            if lock.blocked_at is None:
                lock.blocked_at = trio.current_time()
            dom.blocked_entrylks.append(lock)
        return False

    def _grant_blocked_entrylks(self, dom) -> None:
        waiting, dom.blocked_entrylks = dom.blocked_entrylks, []
        for lock in waiting:
            if self._lock_entrylk(dom, lock, can_block=True):
                if self.opts.trace:
                    self._trace("GRANTED", _owner_of(lock), lock.gfid, _entrylk_text(
                        EntrylkCmd.LOCK, lock.type, lock.basename, lock.domain))
                lock.woken.set()

    def _cancel_entrylk(self, dom, lock) -> None:
        dom.blocked_entrylks.remove(lock)
        self._grant_blocked_entrylks(dom)

    def _entrylk_prune_stale(self, pinode, dom, request) -> None:
        """revocation for entry locks (__entrylk_prune_stale): the age test
        looks only at names, not owners."""
        now = trio.current_time()
        reason = age = None
        for held in dom.entrylks:
            if held.names_conflict(request) and now - held.granted_at > self.opts.revocation_secs:
                reason, age = "age", now - held.granted_at
                break
        max_blocked = self.opts.revocation_max_blocked
        if reason is None and max_blocked and len(dom.blocked_entrylks) >= max_blocked:
            reason = "max blocked"
        if reason is None:
            return
        kind = CLRLK_ALL if self.opts.revocation_clear_all else CLRLK_GRANTED
        blocked, granted = self._clear_entrylks(dom, kind, None)
        self.log.warning("Lock revocation [reason: %s; gfid: %s; domain: %s; age: %s sec] - "
                         "Entry lock revoked:  %d granted & %d blocked locks cleared",
                         reason, pinode.gfid, dom.name, int(age or 0), granted, blocked)

    # ======================================================================
    # lk: POSIX record locks

    async def lk(self, fd, cmd, flock, xdata=None):
        who = fops.caller.get()
        gfid = _fd_gfid(fd)
        start, length = _s64(flock.start), _s64(flock.len)
        if start < 0 or start + length < 0:
            raise FopError(errno.EINVAL, "invalid lock range")
        if length < 0:  # fcntl(2): the bytes [start+len, start-1]
            start, length = start + length, -length
        if start + length > LLONG_MAX + 1:
            raise FopError(errno.EINVAL, "lock range beyond the largest offset")
        if flock.type not in (LockType.RDLCK, LockType.WRLCK, LockType.UNLCK):
            raise FopError(errno.EINVAL, f"invalid lock type {flock.type}")
        if _null_owner(who.lk_owner):
            raise FopError(errno.EINVAL, "lk needs a lock owner")
        request = Flock(flock.type, flock.whence, start, length, _s32(flock.pid), flock.owner)
        lock = _PosixLock(
            gfid=gfid, client=who.client, owner=who.lk_owner, pid=who.pid, type=flock.type,
            start=start, end=LLONG_MAX if length == 0 else start + length - 1,
            whence=flock.whence, flock_pid=request.pid, fd=weakref.ref(fd),
            lk_flags=_lock_mode(xdata), client_uid=_client_uid(who.client),
            blocking=cmd == LockCmd.SETLKW)
        text = _posixlk_text(cmd, request, who.lk_owner) if self.opts.trace else ""
        self._trace("REQUEST", who, fd, text)

        if cmd == LockCmd.GETLK:
            pinode = self._inodes.get(gfid)
            conflict = None if pinode is None else self._posix_conflict(pinode, lock)
            if conflict is not None:
                answer = conflict.to_flock(flock.whence)
            else:
                answer = Flock(LockType.UNLCK, flock.whence, start, length, request.pid,
                               who.lk_owner)
            self._trace("GRANTED", who, fd, text)
            return LkReply(answer)
        if cmd not in (LockCmd.SETLK, LockCmd.SETLKW):
            raise self._traced_error(errno.ENOTSUP, who, fd, text,
                                     "reservation locks and GETLK_FD are not supported")
        if request.type != LockType.UNLCK:
            self._refuse_departed(who.client)

        pinode = self._inode(gfid)
        try:
            granted = self._posix_setlk(pinode, lock, can_block=lock.blocking)
            if granted:
                if request.type == LockType.UNLCK:
                    # NLM's "last unlock on this fd" test (pl_locks_by_fd)
                    still = any(lk.taken_through(fd) for lk in
                                pinode.posixlks + pinode.blocked_posixlks)
                    request.type = LockType.RDLCK if still else LockType.UNLCK
                self._trace("GRANTED", who, fd, text)
                return LkReply(request)
            if lock.state is not _BLOCKED:
                self._trace("TRYAGAIN", who, fd, text)
                raise FopError(errno.EAGAIN)
            self._trace("BLOCKED", who, fd, text)
        finally:
            self._tidy(pinode)
        await self._wait(lock, lambda: pinode.blocked_posixlks.remove(lock))
        return LkReply(lock.reply)

    def _posix_setlk(self, pinode, lock, can_block) -> bool:
        """pl_setlk: apply `lock` (or unlock) if nothing conflicts, else queue
        it when it may wait; then let the waiters try again.  True if applied."""
        if can_block and not self._posix_grantable(pinode, lock):
            # pl_send_prelock_unlock: give up the owner's own locks in the
            # range first, so that two owners upgrading do not deadlock
            unlock = lock.piece(lock.start, lock.end)
            unlock.type = LockType.UNLCK
            self._posix_insert_and_merge(pinode, unlock)
            self._grant_blocked_posixlks(pinode)
        applied = self._posix_grantable(pinode, lock)
        if applied:
            self._posix_insert_and_merge(pinode, lock)
        elif can_block:
            lock.state = _BLOCKED
            lock.blocked_at = trio.current_time()
            pinode.blocked_posixlks.append(lock)
        self._grant_blocked_posixlks(pinode)
        return applied

    @staticmethod
    def _posix_conflict(pinode, lock) -> _PosixLock | None:
        """The first granted lock of another owner that `lock` conflicts with."""
        for held in pinode.posixlks:
            if held.overlaps(lock) and not held.same_owner(lock) and \
                    LockType.WRLCK in (held.type, lock.type):
                return held
        return None

    def _posix_grantable(self, pinode, lock) -> bool:
        return lock.type == LockType.UNLCK or self._posix_conflict(pinode, lock) is None

    @staticmethod
    def _posix_insert_and_merge(pinode, lock) -> None:
        """Apply a granted request (or an unlock) to its owner's locks.

        The owner's locks overlapping the request give up the requested
        range (keeping what lies outside it); those of the same type and
        mode instead merge with the request into one lock.  The owner's
        locks never overlap one another, which is what makes this enough
        (__insert_and_merge reaches the same result by recursion).
        """
        start, end = lock.start, lock.end
        leftovers = []
        for held in [lk for lk in pinode.posixlks if lk.same_owner(lock) and lk.overlaps(lock)]:
            pinode.posixlks.remove(held)
            held.state = _GONE
            if lock.type != LockType.UNLCK and held.type == lock.type \
                    and held.lk_flags == lock.lk_flags:
                start, end = min(start, held.start), max(end, held.end)
                continue
            if held.start < lock.start:
                leftovers.append(held.piece(held.start, lock.start - 1))
            if held.end > lock.end:
                leftovers.append(held.piece(lock.end + 1, held.end))
        if lock.type != LockType.UNLCK:
            lock.start, lock.end = start, end
            lock.state = _GRANTED
            lock.granted_at = trio.current_time()
            leftovers.append(lock)
        pinode.posixlks.extend(sorted(leftovers, key=lambda lk: lk.start))

    def _grant_blocked_posixlks(self, pinode) -> None:
        """Grant every waiter that no longer conflicts, oldest first."""
        waiting, pinode.blocked_posixlks = pinode.blocked_posixlks, []
        for lock in waiting:
            if self._posix_grantable(pinode, lock):
                lock.reply = lock.to_flock()
                self._posix_insert_and_merge(pinode, lock)
                if self.opts.trace:
                    self._trace("GRANTED", _owner_of(lock), pinode.gfid,
                                _posixlk_text(LockCmd.SETLKW, lock.reply, lock.owner))
                lock.woken.set()
            else:
                pinode.blocked_posixlks.append(lock)

    def _drop_fd_locks(self, pinode, fd) -> None:
        """delete_locks_of_fd: every lock taken through `fd` goes; its
        waiters fail with EAGAIN."""
        pinode.posixlks = self._without(pinode.posixlks, lambda lk: lk.taken_through(fd))
        for lock in [lk for lk in pinode.blocked_posixlks if lk.taken_through(fd)]:
            pinode.blocked_posixlks.remove(lock)
            self._fail(lock, errno.EAGAIN)
        self._grant_blocked_posixlks(pinode)

    async def flush(self, fd, xdata=None):
        who = fops.caller.get()
        pinode = self._inodes.get(fd.gfid) if fd.gfid is not None else None
        if pinode is not None and (pinode.posixlks or pinode.blocked_posixlks):
            self._trace("FLUSH", who, fd, None)
            if not who.lk_owner:
                # protocol/server flushes a departed client's fds with an
                # empty lk_owner: every lock of the fd goes
                self._drop_fd_locks(pinode, fd)
            else:
                probe = _Lock(gfid=pinode.gfid, client=who.client, owner=who.lk_owner, pid=0)
                pinode.posixlks = self._without(pinode.posixlks, probe.same_owner)
                self._grant_blocked_posixlks(pinode)
            self._tidy(pinode)
        return await self._wind_counting("flush", (fd,), xdata, _fd_target(fd))

    async def release(self, fd, xdata=None):
        pinode = self._inodes.get(fd.gfid) if fd.gfid is not None else None
        if pinode is not None:
            if self.opts.trace:
                self.log.info("[RELEASE] Lockee = {%r}", fd)
            self._drop_fd_locks(pinode, fd)
            self._tidy(pinode)
        return await self.first_child.release(fd, xdata)

    # ======================================================================
    # getactivelk / setactivelk (lock migration)

    async def getactivelk(self, loc, xdata=None):
        pinode = self._inodes.get(await self._gfid_of(loc))
        locks = [] if pinode is None else [
            ActiveLock(lk.to_flock(), lk.client_uid, lk.lk_flags) for lk in pinode.posixlks]
        return LockListReply(locks)

    async def setactivelk(self, loc, locks, xdata=None):
        """pl_write_active_locks: install migrated locks on an inode that has
        none.  Their client is the caller (rebalance), their uid the one
        migrated; they are tied to no fd."""
        who = fops.caller.get()
        gfid = await self._gfid_of(loc)
        pinode = self._inode(gfid)
        try:
            if pinode.posixlks or pinode.blocked_posixlks:
                raise FopError(errno.EINVAL, "the inode already has POSIX locks")
            if not locks:
                raise FopError(errno.EINVAL, "empty lock list")
            now = trio.current_time()
            for active in locks:
                start, length = _s64(active.flock.start), _s64(active.flock.len)
                pinode.posixlks.append(_PosixLock(
                    gfid=gfid, client=who.client, owner=active.flock.owner,
                    pid=_s32(active.flock.pid), state=_GRANTED, granted_at=now,
                    type=active.flock.type, start=start,
                    end=LLONG_MAX if length == 0 else start + length - 1,
                    flock_pid=_s32(active.flock.pid), lk_flags=active.lk_flags,
                    client_uid=active.client_uid))
        finally:
            self._tidy(pinode)
        return Reply()

    # ======================================================================
    # Removal of inodes that other clients hold inodelks on

    async def unlink(self, loc, xflags, xdata=None):
        return await self._remove("unlink", loc, (loc, xflags), xdata, _parent_target(loc))

    async def rmdir(self, loc, xflags, xdata=None):
        return await self._remove("rmdir", loc, (loc, xflags), xdata, _parent_target(loc))

    async def rename(self, oldloc, newloc, xdata=None):
        targets = _parent_target(oldloc)
        if newloc.gfid is not None:
            targets += _parent_target(newloc)
        return await self._remove("rename", newloc, (oldloc, newloc), xdata, targets)

    async def _remove(self, fop_name, victim: Loc, args, xdata, targets):
        """PL_INODE_REMOVE: wait while other clients hold inodelks on the
        victim, hold new inodelks back while the removal runs."""
        pinode = await self._removal_prepare(victim)
        try:
            return await self._wind_counting(fop_name, args, xdata, targets)
        finally:
            if pinode is not None:
                pinode.remove_running -= 1
                self._settle_removal(pinode)
                self._tidy(pinode)

    async def _removal_prepare(self, victim: Loc) -> _LockedInode | None:
        gfid = victim.gfid
        if gfid is None:
            if not any(dom.inodelks for pinode in self._inodes.values()
                       for dom in pinode.domains.values()):
                return None
            try:
                gfid = (await self.first_child.lookup(victim, None)).iatt.gfid
            except FopError:
                return None  # nothing there: the child answers the removal
        client = fops.caller.get().client
        while True:
            pinode = self._inode(gfid)
            if not self._has_other_owners(pinode, client, notify=True):
                pinode.removal_pending = True
                pinode.remove_running += 1
                self._send_contention()
                return pinode
            waiter = _RemoveWaiter(client)
            pinode.remove_waiters.append(waiter)
            pinode.removal_pending = True
            self._send_contention()
            try:
                await waiter.woken.wait()
            except BaseException:
                if waiter.admitted:  # trio cancels no woken task; keep the count right anyway
                    pinode.remove_running -= 1
                else:
                    pinode.remove_waiters.remove(waiter)
                self._settle_removal(pinode)
                self._tidy(pinode)
                raise
            return pinode  # admitted by _wake_removals

    def _has_other_owners(self, pinode, client, notify: bool) -> bool:
        """pl_inode_has_owners: a user lock (pid >= 0) of another client."""
        found = False
        for dom in pinode.domains.values():
            for held in dom.inodelks:
                if held.client is client or held.pid < 0:
                    continue
                if not notify:
                    return True
                found = True
                self._note_contention(held)
        return found

    def _removal_blocks(self, pinode, lock) -> bool:
        """pl_inode_remove_inodelk: must this inodelk wait for a removal?"""
        if lock.pid < 0 or not pinode.removal_pending:
            return False
        if pinode.remove_running > 0:
            return True
        return not any(held.client is lock.client for dom in pinode.domains.values()
                       for held in dom.inodelks)

    def _wake_removals(self, pinode) -> None:
        """pl_inode_remove_unlocked + pl_inode_remove_wake: removals whose
        obstacles are gone run.  GlusterFS resumes them at once, so they
        count as running before any held-back inodelk is tried again; here
        they are admitted (counted) now and their tasks wind when they run."""
        if not pinode.removal_pending:
            return
        for waiter in list(pinode.remove_waiters):
            if not self._has_other_owners(pinode, waiter.client, notify=False):
                pinode.remove_waiters.remove(waiter)
                pinode.remove_running += 1
                waiter.admitted = True
                waiter.woken.set()

    def _settle_removal(self, pinode) -> None:
        """pl_inode_remove_cbk: with no removal running or waiting, inodelks
        held back may be granted."""
        if pinode.remove_running == 0 and not pinode.remove_waiters and pinode.removal_pending:
            pinode.removal_pending = False
            for dom in list(pinode.domains.values()):
                self._grant_blocked_inodelks(pinode, dom)

    # ======================================================================
    # Clearing locks: getxattr/fgetxattr glusterfs.clrlk.* and intrlk

    async def getxattr(self, loc, name, xdata=None):
        if name and name.startswith(CLRLK_CMD):
            gfid = await self._gfid_of(loc)
            summary = await self._clear_locks(name, gfid, Loc(gfid=gfid), None)
            return DictReply({name: summary})
        return await self.first_child.getxattr(loc, name, xdata)

    async def fgetxattr(self, fd, name, xdata=None):
        if name and (name.startswith(CLRLK_CMD) or name.startswith(INTRLK_CMD)):
            gfid = _fd_gfid(fd)
            interrupt = None
            if name.startswith(INTRLK_CMD):
                who = fops.caller.get()
                if who.client is None or who.pid < 0:
                    raise FopError(errno.EINVAL, "lock interrupts come from clients")
                interrupt = (_client_uid(who.client), who.pid)
            summary = await self._clear_locks(name, gfid, Loc(gfid=gfid), interrupt)
            return DictReply({name: summary})
        return await self.first_child.fgetxattr(fd, name, xdata)

    async def _clear_locks(self, name, gfid, loc, interrupt) -> str:
        """pl_getxattr_clrlk: clear the locks `name` describes; the summary
        names the brick as GlusterFS's format_brickname makes it."""
        type_name, kind, opts = _parse_clrlk(name)
        pinode = self._inodes.get(gfid)
        blocked = granted = 0
        if pinode is not None:
            try:
                if type_name == "posix":
                    blocked, granted = self._clear_posixlks(pinode, kind, opts, interrupt)
                else:
                    for dom in list(pinode.domains.values()):
                        if type_name == "inode":
                            b, g = self._clear_inodelks(pinode, dom, kind, opts)
                        else:
                            b, g = self._clear_entrylks(dom, kind, opts)
                        blocked, granted = blocked + b, granted + g
                    self._wake_removals(pinode)
            finally:
                self._tidy(pinode)
        if not blocked and not granted:
            return "No locks cleared."
        brick = self.name
        try:
            pathinfo = (await self.first_child.getxattr(loc, PATHINFO_KEY, None)).dict
            brick = _format_brickname(str(pathinfo[PATHINFO_KEY])) or brick
        except (FopError, KeyError):
            self.log.warning("Couldn't get brickname")
        return f"{brick}: {type_name} blocked locks={blocked} granted locks={granted}"

    def _clear_inodelks(self, pinode, dom, kind, opts) -> tuple[int, int]:
        """clrlk_clear_inodelk; `opts` is "whence,start-len" or None."""
        match = _range_matcher(opts)
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in dom.blocked_inodelks if match(lk.flock)]:
                dom.blocked_inodelks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(dom.inodelks)
            dom.inodelks = self._without(dom.inodelks, lambda lk: match(lk.flock))
            granted = before - len(dom.inodelks)
        self._grant_blocked_inodelks(pinode, dom)
        return blocked, granted

    def _clear_entrylks(self, dom, kind, opts) -> tuple[int, int]:
        """clrlk_clear_entrylk; `opts` is a basename or None (every lock)."""
        def match(lock):
            return opts is None or lock.basename == opts
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in dom.blocked_entrylks if match(lk)]:
                dom.blocked_entrylks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(dom.entrylks)
            dom.entrylks = self._without(dom.entrylks, match)
            granted = before - len(dom.entrylks)
            self._grant_blocked_entrylks(dom)
        return blocked, granted

    def _clear_posixlks(self, pinode, kind, opts, interrupt) -> tuple[int, int]:
        """clrlk_clear_posixlk; an interrupt clears only the caller's own
        waiters (same client uid and pid), failing them with EINTR."""
        range_match = _range_matcher(opts)

        def match(lock):
            if not range_match(Flock(whence=lock.whence, start=lock.start,
                                     len=lock.to_flock().len)):
                return False
            return interrupt is None or (lock.client_uid, lock.pid) == interrupt
        blocked = granted = 0
        if kind & CLRLK_BLOCKED:
            for lock in [lk for lk in pinode.blocked_posixlks if match(lk)]:
                pinode.blocked_posixlks.remove(lock)
                self._fail(lock, errno.EINTR)
                blocked += 1
        if kind & CLRLK_GRANTED:
            before = len(pinode.posixlks)
            pinode.posixlks = self._without(pinode.posixlks, match)
            granted = before - len(pinode.posixlks)
        self._grant_blocked_posixlks(pinode)
        return blocked, granted

    # ======================================================================
    # A departed client

    async def client_disconnected(self, client: Any) -> None:
        """Drop everything `client` holds and fail everything it waits for
        (pl_client_disconnect_cbk, plus the POSIX locks of its fds)."""
        if client is not None:
            with contextlib.suppress(TypeError):  # an object a WeakSet cannot hold
                self._departed.add(client)
        released = 0
        for pinode in list(self._inodes.values()):
            for dom in list(pinode.domains.values()):
                for queue in (dom.blocked_inodelks, dom.blocked_entrylks):
                    for lock in [lk for lk in queue if lk.client is client]:
                        queue.remove(lock)
                        self._fail(lock, errno.EAGAIN)
                        released += 1
                before = len(dom.inodelks) + len(dom.entrylks)
                dom.inodelks = self._without(dom.inodelks, lambda lk: lk.client is client)
                dom.entrylks = self._without(dom.entrylks, lambda lk: lk.client is client)
                released += before - len(dom.inodelks) - len(dom.entrylks)
                self._grant_blocked_inodelks(pinode, dom)
                self._grant_blocked_entrylks(dom)
            for lock in [lk for lk in pinode.blocked_posixlks if lk.client is client]:
                pinode.blocked_posixlks.remove(lock)
                self._fail(lock, errno.EAGAIN)
                released += 1
            before = len(pinode.posixlks)
            pinode.posixlks = self._without(
                pinode.posixlks, lambda lk: lk.client is client and lk.fd is not None)
            released += before - len(pinode.posixlks)
            self._grant_blocked_posixlks(pinode)
            self._wake_removals(pinode)
            self._tidy(pinode)
        if released:
            self.log.warning("released %d locks of disconnected client %r", released, client)

    # ======================================================================
    # Lock counts in xdata: the fops that only wind

    async def lookup(self, loc, xdata=None):
        def targets(reply):
            gfid = loc.gfid if loc.gfid is not None else reply.iatt.gfid
            return [(loc.pargfid, gfid, loc.name)]
        return await self._wind_counting("lookup", (loc,), xdata, targets)

    async def readdirp(self, fd, size, offset, xdata=None):
        request, wind_xdata = self._count_requests(xdata)
        reply = await self.first_child.readdirp(fd, size, offset, wind_xdata)
        if request is not None:
            for entry in reply.entries:
                entry.xdata = dict(entry.xdata or {})
                self._fill_counts(request, entry.xdata, fd.gfid,
                                  entry.iatt.gfid if entry.iatt is not None else None,
                                  entry.name, keep_max=False)
            self._reply_counts(request, reply, _fd_target(fd)(reply))
        return reply

    async def stat(self, loc, xdata=None):
        return await self._wind_counting("stat", (loc,), xdata, _parent_target(loc))

    async def fstat(self, fd, xdata=None):
        return await self._wind_counting("fstat", (fd,), xdata, _fd_target(fd))

    async def opendir(self, loc, fd, xdata=None):
        return await self._wind_counting("opendir", (loc, fd), xdata, _fd_target(fd, loc))

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        return await self._wind_counting("create", (loc, flags, mode, umask, fd), xdata,
                                         _fd_target(fd))

    async def readv(self, fd, size, offset, flags, xdata=None):
        return await self._wind_counting("readv", (fd, size, offset, flags), xdata,
                                         _fd_target(fd))

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._wind_counting("writev", (fd, data, offset, flags), xdata,
                                         _fd_target(fd))

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        return await self._wind_counting("setxattr", (loc, xattrs, flags), xdata,
                                         _parent_target(loc))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        return await self._wind_counting("fsetxattr", (fd, xattrs, flags), xdata,
                                         _fd_target(fd))

    async def removexattr(self, loc, name, xdata=None):
        return await self._wind_counting("removexattr", (loc, name), xdata,
                                         _parent_target(loc))

    async def fremovexattr(self, fd, name, xdata=None):
        return await self._wind_counting("fremovexattr", (fd, name), xdata, _fd_target(fd))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        return await self._wind_counting("xattrop", (loc, optype, xattrs), xdata,
                                         _parent_target(loc))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        return await self._wind_counting("fxattrop", (fd, optype, xattrs), xdata,
                                         _fd_target(fd))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        return await self._wind_counting("setattr", (loc, stbuf, valid), xdata,
                                         _parent_target(loc))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        return await self._wind_counting("fsetattr", (fd, stbuf, valid), xdata, _fd_target(fd))

    async def mkdir(self, loc, mode, umask, xdata=None):
        return await self._wind_counting("mkdir", (loc, mode, umask), xdata, _parent_target(loc))

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._wind_counting("mknod", (loc, mode, rdev, umask), xdata,
                                         _parent_target(loc))

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._wind_counting("symlink", (linkname, loc, umask), xdata,
                                         _parent_target(loc))

    async def link(self, oldloc, newloc, xdata=None):
        return await self._wind_counting("link", (oldloc, newloc), xdata,
                                         _parent_target(oldloc) + _parent_target(newloc))

    async def fsync(self, fd, datasync, xdata=None):
        return await self._wind_counting("fsync", (fd, datasync), xdata, _fd_target(fd))

    async def readdir(self, fd, size, offset, xdata=None):
        return await self._wind_counting("readdir", (fd, size, offset), xdata, _fd_target(fd))

    async def fsyncdir(self, fd, datasync, xdata=None):
        return await self._wind_counting("fsyncdir", (fd, datasync), xdata, _fd_target(fd))

    async def statfs(self, loc, xdata=None):
        return await self._wind_counting("statfs", (loc,), xdata, _parent_target(loc))

    async def rchecksum(self, fd, offset, length, xdata=None):
        return await self._wind_counting("rchecksum", (fd, offset, length), xdata,
                                         _fd_target(fd))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._wind_counting("fallocate", (fd, mode, offset, length), xdata,
                                         _fd_target(fd))

    async def readlink(self, loc, size, xdata=None):
        return await self._wind_counting("readlink", (loc, size), xdata, _parent_target(loc))

    async def access(self, loc, mask, xdata=None):
        return await self._wind_counting("access", (loc, mask), xdata, _parent_target(loc))

    async def seek(self, fd, offset, what, xdata=None):
        return await self._wind_counting("seek", (fd, offset, what), xdata, _fd_target(fd))

    # ======================================================================
    # Helpers: counts

    async def _wind_counting(self, fop_name, args, xdata, targets):
        """Wind a fop with the count requests taken out of its xdata and
        answer them in the reply (PL_LOCAL_GET_REQUESTS / PL_STACK_UNWIND).
        `targets` is a list of (parent gfid, inode gfid, name), or a
        function of the reply giving one."""
        request, wind_xdata = self._count_requests(xdata)
        reply = await getattr(self.first_child, fop_name)(*args, wind_xdata)
        if request is not None:
            self._reply_counts(request, reply, targets(reply) if callable(targets) else targets)
        return reply

    def _reply_counts(self, request, reply, targets) -> None:
        out = dict(reply.xdata or {})
        for i, (parent, inode, name) in enumerate(targets):
            self._fill_counts(request, out, parent, inode, name, keep_max=i > 0)
        reply.xdata = out

    @staticmethod
    def _count_requests(xdata) -> tuple[_CountRequest | None, dict | None]:
        """pl_has_xdata_requests + pl_get_xdata_requests: the counts asked
        for, and the xdata to wind without the request keys."""
        if not xdata or not any(key in xdata for key in _COUNT_KEYS):
            return None, xdata
        wind = dict(xdata)
        request = _CountRequest(
            inodelk=wind.pop(INODELK_COUNT, _ABSENT) is not _ABSENT,
            entrylk=wind.pop(ENTRYLK_COUNT, _ABSENT) is not _ABSENT,
            posixlk=wind.pop(POSIXLK_COUNT, _ABSENT) is not _ABSENT,
            parent_entrylk=wind.pop(PARENT_ENTRYLK, _ABSENT) is not _ABSENT)
        if wind.pop(MULTI_DOM_LK_CNT_REQUESTS, _ABSENT) is not _ABSENT:
            request.domain_keys = tuple(key for key in xdata
                                        if fnmatch.fnmatchcase(key, INODELK_DOM_PREFIX + "*"))
            for key in request.domain_keys:
                del wind[key]
        domain = wind.pop(INODELK_DOM_COUNT, None)
        if domain is not None:
            request.inodelk_domain = _text(domain)
        return request, wind

    def _fill_counts(self, request, out, parent, inode, name, keep_max) -> None:
        """pl_set_xdata_response; with keep_max a count already in `out`
        that is larger stays."""
        def put(key, count):
            if not keep_max or not isinstance(out.get(key), int) or out[key] < count:
                out[key] = count
        if request.parent_entrylk and parent is not None and name:
            put(PARENT_ENTRYLK, self._entrylk_on_name(parent, name))
        if inode is None:
            return
        pinode = self._inodes.get(inode)
        if request.entrylk:
            put(ENTRYLK_COUNT, 0 if pinode is None else sum(
                len(d.entrylks) + len(d.blocked_entrylks) for d in pinode.domains.values()))
        if request.inodelk_domain is not None:
            put(INODELK_COUNT, _inodelk_count(pinode, request.inodelk_domain))
        if request.inodelk:
            put(INODELK_COUNT, _inodelk_count(pinode, None))
        if request.posixlk:
            put(POSIXLK_COUNT, 0 if pinode is None else
                len(pinode.posixlks) + len(pinode.blocked_posixlks))
        for key in request.domain_keys:
            _, sep, domain = key.partition(":")
            if sep and domain:
                put(key, _inodelk_count(pinode, domain))

    def _entrylk_on_name(self, parent, name) -> int:
        """check_entrylk_on_basename: 1 when a granted entrylk of the parent
        names exactly `name` (a whole-directory lock does not count)."""
        pinode = self._inodes.get(parent)
        if pinode is None:
            return 0
        return int(any(lk.basename == name for dom in pinode.domains.values()
                       for lk in dom.entrylks))

    # ======================================================================
    # Helpers: state, waiting, contention, tracing

    def _refuse_departed(self, client) -> None:
        """GlusterFS refuses a blocking lock of a client whose last
        connection went (bind count 0: ENOTCONN) and sweeps the rest when
        the client is destroyed; here every new lock of a departed client
        is refused.  protocol/server makes a new client object per session,
        so a client that comes back is not affected."""
        if client is not None and client in self._departed:
            raise FopError(errno.ENOTCONN, "the client has disconnected")

    def _inode(self, gfid) -> _LockedInode:
        pinode = self._inodes.get(gfid)
        if pinode is None:
            pinode = self._inodes[gfid] = _LockedInode(gfid)
        return pinode

    def _tidy(self, pinode) -> None:
        """End of an operation: tell contended holders, forget empty state."""
        self._send_contention()
        for name, dom in list(pinode.domains.items()):
            if dom.is_empty():
                del pinode.domains[name]
        if pinode.is_unused() and self._inodes.get(pinode.gfid) is pinode:
            del self._inodes[pinode.gfid]

    async def _wait(self, lock: _Lock, dequeue: Callable[[], None]) -> None:
        """Wait until `lock` is granted or failed.  A cancelled waiter takes
        its request out of the queue (and lets others move up).  A trio task
        that was woken cannot be cancelled before it runs again, so a granted
        lock is never left to a waiter that raised Cancelled."""
        try:
            await lock.woken.wait()
        except BaseException:
            if lock.state is _BLOCKED:
                lock.state = _GONE
                dequeue()
                pinode = self._inodes.get(lock.gfid)
                if pinode is not None:
                    self._tidy(pinode)
            raise
        if lock.error:
            raise FopError(lock.error)

    @staticmethod
    def _fail(lock: _Lock, err: int) -> None:
        lock.state = _GONE
        lock.error = err
        lock.woken.set()

    @staticmethod
    def _without(locks: list, drop: Callable[[Any], bool]) -> list:
        kept = []
        for lock in locks:
            if drop(lock):
                lock.state = _GONE
            else:
                kept.append(lock)
        return kept

    def _note_contention(self, held) -> None:
        """inodelk/entrylk_contention_notify_check: the holder is told at
        most once per notify-contention-delay seconds."""
        if not self.opts.notify_contention or held.notify_pending:
            return
        now = trio.current_time()
        if held.contended_at is not None and \
                now - held.contended_at < self.opts.notify_contention_delay:
            return
        held.contended_at = now
        held.notify_pending = True
        self._contended.append(held)

    def _send_contention(self) -> None:
        """Send the upcalls noted during an operation, for the locks still
        granted (a lock released meanwhile is not reported and may be
        reported again at once)."""
        while self._contended:
            held = self._contended.pop(0)
            held.notify_pending = False
            if held.state is not _GRANTED:
                held.contended_at = None
                continue
            if isinstance(held, _InodeLock):
                upcall = LockContention(held.client, GF_CBK_INODELK_CONTENTION, InodelkContention(
                    gfid=held.gfid, flock=replace(held.flock), pid=held.pid & 0xFFFFFFFF,
                    domain=held.domain))
            else:
                upcall = LockContention(held.client, GF_CBK_ENTRYLK_CONTENTION, EntrylkContention(
                    gfid=held.gfid, type=held.type, pid=held.pid & 0xFFFFFFFF,
                    name=held.basename or "", domain=held.domain))
            try:
                self.notify_parents(Event.UPCALL, upcall)
            except Exception:
                self.log.exception("lock contention notification failed")

    async def _gfid_of(self, loc: Loc) -> GFID:
        if loc.gfid is not None:
            return loc.gfid
        return (await self.first_child.lookup(loc, None)).iatt.gfid

    def _trace(self, verdict, who, lockee, lock_text) -> None:
        """The `trace` option: pl_trace_in / pl_trace_out / pl_trace_block."""
        if not self.opts.trace:
            return
        locker = f"Pid={who.pid}, lk-owner={who.lk_owner.hex()}, Client={who.client!r}"
        if lock_text is None:
            self.log.info("[%s] Locker = {%s} Lockee = {%s}", verdict, locker, lockee)
        else:
            self.log.info("[%s] Locker = {%s} Lockee = {%s} Lock = {%s}",
                          verdict, locker, lockee, lock_text)

    def _traced_error(self, err, who, lockee, text, message) -> FopError:
        """The error to raise, traced as pl_trace_out reports a failure."""
        self._trace(os.strerror(err), who, lockee, text)
        return FopError(err, message)

    def dump_state(self) -> dict:
        """Every lock by inode, as GlusterFS's statedump lists them."""
        state = {}
        for gfid, pinode in self._inodes.items():
            state[str(gfid)] = {
                "domains": {name: {
                    "inodelk": [_describe(lk) for lk in dom.inodelks],
                    "inodelk-blocked": [_describe(lk) for lk in dom.blocked_inodelks],
                    "entrylk": [_describe(lk) for lk in dom.entrylks],
                    "entrylk-blocked": [_describe(lk) for lk in dom.blocked_entrylks],
                } for name, dom in pinode.domains.items()},
                "posixlk": [_describe(lk) for lk in pinode.posixlks],
                "posixlk-blocked": [_describe(lk) for lk in pinode.blocked_posixlks],
                "removals-running": pinode.remove_running,
                "removals-waiting": len(pinode.remove_waiters),
            }
        return state


TRANSLATOR = Locks

_ABSENT = object()


# --------------------------------------------------------------------------
# Module helpers


def _s64(value: int) -> int:
    """A 64-bit field as the signed off_t GlusterFS reads (the wire codecs
    hand over the unsigned u_quad)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def _s32(value: int) -> int:
    value &= (1 << 32) - 1
    return value - (1 << 32) if value >= 1 << 31 else value


def _null_owner(owner: bytes) -> bool:
    """is_lk_owner_null: empty or all zero bytes."""
    return not any(owner)


def _client_uid(client: Any) -> str:
    """GlusterFS's client_uid: protocol/server's client objects carry it as
    `client_uid`; a local caller (None) has none."""
    if client is None:
        return ""
    uid = getattr(client, "client_uid", None)
    return str(uid) if uid is not None else repr(client)


def _lock_mode(xdata) -> int:
    """lk's "glusterfs.lk.lkmode" (GF_LK_ADVISORY 0 / GF_LK_MANDATORY 1);
    a value that is not a number counts as absent, as dict_get_uint32 fails."""
    try:
        return int((xdata or {}).get(LOCK_MODE, 0))
    except (TypeError, ValueError):
        return 0


def _owner_of(lock: _Lock) -> fops.Caller:
    return fops.Caller(pid=lock.pid, lk_owner=lock.owner, client=lock.client)


def _fd_gfid(fd) -> GFID:
    if fd.gfid is None:
        raise FopError(errno.EBADFD, "the fd names no inode")
    return fd.gfid


def _text(value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace")
    return str(value)


def _xdata_str(xdata, key) -> str | None:
    if not xdata or key not in xdata:
        return None
    return _text(xdata[key])


def _fd_target(fd, loc: Loc | None = None):
    """The counts of an fd fop describe the fd's inode (known after opendir
    or create even when the caller's fd had no gfid yet)."""
    def targets(reply):
        gfid = fd.gfid
        if gfid is None and loc is not None:
            gfid = loc.gfid
        if gfid is None and getattr(reply, "iatt", None) is not None:
            gfid = reply.iatt.gfid
        return [(None, gfid, None)]
    return targets


def _parent_target(loc: Loc) -> list:
    """pl_get_xdata_rsp_args: for loc fops other than lookup GlusterFS counts
    the locks of the loc's parent."""
    return [(None, loc.pargfid, None)] if loc.pargfid is not None else []


def _inodelk_count(pinode: _LockedInode | None, domain: str | None) -> int:
    """__get_inodelk_count: granted and waiting, in one domain or all."""
    if pinode is None:
        return 0
    doms = pinode.domains.values() if domain is None else \
        [pinode.domains[domain]] if domain in pinode.domains else []
    return sum(len(d.inodelks) + len(d.blocked_inodelks) for d in doms)


def _parse_clrlk(name: str) -> tuple[str, int, str | None]:
    """clrlk_parse_args: "<prefix>.t<type>.k<kind>[.<opts>]"; the options
    end at the first "/".  Anything else is EINVAL."""
    for prefix in (CLRLK_CMD + ".", INTRLK_CMD + "."):
        if name.startswith(prefix):
            rest = name[len(prefix):].split(None, 1)[0] if name[len(prefix):].strip() else ""
            break
    else:
        raise FopError(errno.EINVAL, f"malformed clear-locks request {name!r}")
    parts = rest.split(".", 2)
    if len(parts) < 2 or not parts[0].startswith("t") or not parts[1].startswith("k") \
            or parts[0][1:] not in CLRLK_TYPES or parts[1][1:] not in _CLRLK_KINDS:
        raise FopError(errno.EINVAL, f"malformed clear-locks request {name!r}")
    opts = parts[2].split("/", 1)[0] if len(parts) == 3 else None
    return parts[0][1:], _CLRLK_KINDS[parts[1][1:]], opts or None


def _range_matcher(opts: str | None) -> Callable[[Flock], bool]:
    """clrlk_get_lock_range: "whence,start-len" selects the locks asked for
    with exactly that range; no range selects all."""
    if opts is None:
        return lambda flock: True
    try:
        whence_text, span = opts.split(",", 1)
        start_text, len_text = span.split("-", 1)
        whence, start, length = int(whence_text), int(start_text), int(len_text)
    except ValueError:
        raise FopError(errno.EINVAL, f"bad lock range {opts!r}") from None
    return lambda flock: (flock.whence, flock.start, flock.len) == (whence, start, length)


def _format_brickname(pathinfo: str) -> str | None:
    """format_brickname: "<POSIX(/b):host:/b/f>" -> "host:/b/f>" (up to the
    first ".", as GlusterFS cuts it)."""
    parts = pathinfo.split(":", 2)
    if len(parts) < 3 or not parts[1]:
        return None
    return f"{parts[1]}:{parts[2].split('.', 1)[0]}"


def _type_name(lock_type: int) -> str:
    return {LockType.RDLCK: "READ", LockType.WRLCK: "WRITE",
            LockType.UNLCK: "UNLOCK"}.get(lock_type, "UNKNOWN")


def _cmd_name(cmd: int) -> str:
    return {LockCmd.GETLK: "GETLK", LockCmd.SETLK: "SETLK",
            LockCmd.SETLKW: "SETLKW"}.get(cmd, "UNKNOWN")


def _inodelk_text(cmd, flock, domain) -> str:
    return (f"lock=INODELK, cmd={_cmd_name(cmd)}, type={_type_name(flock.type)}, "
            f"domain: {domain}, start={flock.start}, len={flock.len}, pid={flock.pid}")


def _entrylk_text(cmd, type_, basename, domain) -> str:
    cmd_name = {EntrylkCmd.LOCK: "LOCK", EntrylkCmd.LOCK_NB: "LOCK_NB",
                EntrylkCmd.UNLOCK: "UNLOCK"}.get(cmd, "UNKNOWN")
    return (f"lock=ENTRYLK, cmd={cmd_name}, type={_type_name(type_)}, "
            f"basename={basename}, domain: {domain}")


def _posixlk_text(cmd, flock, owner) -> str:
    return (f"lock=FCNTL, cmd={_cmd_name(cmd)}, type={_type_name(flock.type)}, "
            f"start={flock.start}, len={flock.len}, pid={flock.pid}, lk-owner={owner.hex()}")


def _describe(lock: _Lock) -> dict:
    """One statedump line."""
    out = {"owner": lock.owner.hex(), "client": repr(lock.client), "pid": lock.pid,
           "granted-at": lock.granted_at, "blocked-at": lock.blocked_at}
    if isinstance(lock, _EntryLock):
        out.update(type=_type_name(lock.type), basename=lock.basename,
                   connection_id=lock.conn_id)
    else:
        length = 0 if lock.end == LLONG_MAX else lock.end - lock.start + 1
        out.update(type=_type_name(lock.type), start=lock.start, len=length)
        if isinstance(lock, _InodeLock):
            out["connection_id"] = lock.conn_id
    return out
