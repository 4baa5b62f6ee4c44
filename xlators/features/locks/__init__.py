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

The package, by concern (GlusterFS's file in brackets):
common.py (locks.h, common.c) the lock records, the inode table, waiting
and tracing; inodelk.py (inodelk.c) and entrylk.py (entrylk.c) those fops
with their revocation; posixlk.py (posix.c, common.c) lk, flush, release
and lock migration; removal.py (common.c's pl_inode_remove_*) unlink,
rmdir and rename over inodelks; clear.py (clear.c) clear-locks, lock
interrupts and a departed client; counts.py (posix.c's xdata requests) the
lock counts and the fops that only wind; contention.py the upcalls;
statedump.py dump_state.  Each holds a mixin; `Locks` below composes them.
"""

from __future__ import annotations

import errno
import random
import weakref

from glusterpy.fops import GFID, FopError
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator

from .clear import CLRLK_ALL, CLRLK_BLOCKED, CLRLK_GRANTED, CLRLK_TYPES, ClearLocks
from .common import LLONG_MAX, EntryLock, InodeLock, LockedInode, LocksCommon
from .contention import LockContention, LockNotifyContention
from .counts import LockCounts
from .entrylk import EntrylkFops
from .inodelk import InodelkFops
from .posixlk import PosixLkFops
from .removal import InodeRemoval
from .statedump import LockStateDump

__all__ = ["Locks", "TRANSLATOR", "LockContention", "LLONG_MAX", "CLRLK_TYPES",
           "CLRLK_BLOCKED", "CLRLK_GRANTED", "CLRLK_ALL"]


class Locks(InodelkFops, EntrylkFops, PosixLkFops, InodeRemoval, ClearLocks, LockCounts,
            LockNotifyContention, LockStateDump, LocksCommon, Translator):
    """features/locks; see the package docstring."""

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
        self._inodes: dict[GFID, LockedInode] = {}
        #: granted locks whose holders are to be told of contention
        self._contended: list[InodeLock | EntryLock] = []
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


TRANSLATOR = Locks
