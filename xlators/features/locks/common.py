"""features/locks: the lock records and what every kind of lock shares.

GlusterFS's locks.h (pl_inode_t, the lock structs) and common.c (the
inode table, waiting, tracing: pl_trace_in / pl_trace_out).
"""

from __future__ import annotations

import errno
import os
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from glusterpy import fops
from glusterpy.fops import GFID, EntrylkCmd, Flock, FopError, Loc, LockCmd, LockType


LLONG_MAX = (1 << 63) - 1

BLOCKED, GRANTED, GONE = "blocked", "granted", "gone"


# --------------------------------------------------------------------------
# Lock records


@dataclass(eq=False, slots=True, kw_only=True)
class Lock:
    """What every lock shares: its owner, its state and a waiter's wake-up."""

    gfid: GFID
    client: Any
    owner: bytes
    pid: int  # the caller's pid (frame->root->pid)
    state: str = GONE
    granted_at: float | None = None
    blocked_at: float | None = None
    #: set when a waiting request is granted (error 0) or failed (error set)
    woken: trio.Event = field(default_factory=trio.Event)
    error: int = 0

    def same_owner(self, other: "Lock") -> bool:
        return self.client is other.client and self.owner == other.owner


@dataclass(eq=False, slots=True, kw_only=True)
class InodeLock(Lock):
    domain: str
    type: int
    start: int
    end: int  # inclusive; LLONG_MAX: to the end of the file
    flock: Flock  # as the client asked (reported in contention upcalls)
    conn_id: str | None = None
    contended_at: float | None = None
    notify_pending: bool = False

    def overlaps(self, other: "InodeLock") -> bool:
        return self.end >= other.start and other.end >= self.start

    def conflicts(self, other: "InodeLock") -> bool:
        return self.overlaps(other) and LockType.WRLCK in (self.type, other.type)


@dataclass(eq=False, slots=True, kw_only=True)
class EntryLock(Lock):
    domain: str
    basename: str | None  # None: the whole directory
    type: int
    conn_id: str | None = None
    contended_at: float | None = None
    notify_pending: bool = False

    def names_conflict(self, other: "EntryLock") -> bool:
        return self.basename is None or other.basename is None or \
            self.basename == other.basename


@dataclass(eq=False, slots=True, kw_only=True)
class PosixLock(Lock):
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

    def overlaps(self, other: "PosixLock") -> bool:
        return self.end >= other.start and other.end >= self.start

    def taken_through(self, fd) -> bool:
        return self.fd is not None and self.fd() is fd

    def to_flock(self, whence: int = os.SEEK_SET) -> Flock:
        length = 0 if self.end == LLONG_MAX else self.end - self.start + 1
        return Flock(type=self.type, whence=whence, start=self.start, len=length,
                     pid=self.flock_pid, owner=self.owner)

    def piece(self, start: int, end: int) -> "PosixLock":
        """A granted copy of this lock over [start, end] (what is left of it
        when another request splits it)."""
        return PosixLock(gfid=self.gfid, client=self.client, owner=self.owner,
                          pid=self.pid, state=GRANTED, granted_at=self.granted_at,
                          type=self.type, start=start, end=end, whence=self.whence,
                          flock_pid=self.flock_pid, fd=self.fd, lk_flags=self.lk_flags,
                          client_uid=self.client_uid)


@dataclass(eq=False, slots=True)
class RemoveWaiter:
    """An unlink/rmdir/rename waiting for other clients' inodelks to go."""

    client: Any
    woken: trio.Event = field(default_factory=trio.Event)
    #: set with `woken`: the removal was counted as running on its behalf
    admitted: bool = False


@dataclass(eq=False)
class Domain:
    name: str
    inodelks: list[InodeLock] = field(default_factory=list)  # granted, newest first
    blocked_inodelks: list[InodeLock] = field(default_factory=list)  # oldest first
    entrylks: list[EntryLock] = field(default_factory=list)
    blocked_entrylks: list[EntryLock] = field(default_factory=list)

    def is_empty(self) -> bool:
        return not (self.inodelks or self.blocked_inodelks or self.entrylks
                    or self.blocked_entrylks)


@dataclass(eq=False)
class LockedInode:
    """GlusterFS's pl_inode_t: every lock on one inode."""

    gfid: GFID
    domains: dict[str, Domain] = field(default_factory=dict)
    posixlks: list[PosixLock] = field(default_factory=list)  # granted, in order
    blocked_posixlks: list[PosixLock] = field(default_factory=list)
    remove_running: int = 0
    removal_pending: bool = False  # GlusterFS's is_locked
    remove_waiters: list[RemoveWaiter] = field(default_factory=list)

    def domain(self, name: str) -> Domain:
        dom = self.domains.get(name)
        if dom is None:
            dom = self.domains[name] = Domain(name)
        return dom

    def is_unused(self) -> bool:
        return not (self.domains or self.posixlks or self.blocked_posixlks
                    or self.remove_running or self.removal_pending or self.remove_waiters)


class LocksCommon:
    """The lock table's upkeep: inodes, waiting, tracing."""

    def _refuse_departed(self, client) -> None:
        """GlusterFS refuses a blocking lock of a client whose last
        connection went (bind count 0: ENOTCONN) and sweeps the rest when
        the client is destroyed; here every new lock of a departed client
        is refused.  protocol/server makes a new client object per session,
        so a client that comes back is not affected."""
        if client is not None and client in self._departed:
            raise FopError(errno.ENOTCONN, "the client has disconnected")

    def _inode(self, gfid) -> LockedInode:
        pinode = self._inodes.get(gfid)
        if pinode is None:
            pinode = self._inodes[gfid] = LockedInode(gfid)
        return pinode

    def _tidy(self, pinode) -> None:
        """End of an operation: tell contended holders, forget empty state."""
        self._send_contention()
        for name, dom in list(pinode.domains.items()):
            if dom.is_empty():
                del pinode.domains[name]
        if pinode.is_unused() and self._inodes.get(pinode.gfid) is pinode:
            del self._inodes[pinode.gfid]

    async def _wait(self, lock: Lock, dequeue: Callable[[], None]) -> None:
        """Wait until `lock` is granted or failed.  A cancelled waiter takes
        its request out of the queue (and lets others move up).  A trio task
        that was woken cannot be cancelled before it runs again, so a granted
        lock is never left to a waiter that raised Cancelled."""
        try:
            await lock.woken.wait()
        except BaseException:
            if lock.state is BLOCKED:
                lock.state = GONE
                dequeue()
                pinode = self._inodes.get(lock.gfid)
                if pinode is not None:
                    self._tidy(pinode)
            raise
        if lock.error:
            raise FopError(lock.error)

    @staticmethod
    def _fail(lock: Lock, err: int) -> None:
        lock.state = GONE
        lock.error = err
        lock.woken.set()

    @staticmethod
    def _without(locks: list, drop: Callable[[Any], bool]) -> list:
        kept = []
        for lock in locks:
            if drop(lock):
                lock.state = GONE
            else:
                kept.append(lock)
        return kept

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


# --------------------------------------------------------------------------
# Module helpers


def s64(value: int) -> int:
    """A 64-bit field as the signed off_t GlusterFS reads (the wire codecs
    hand over the unsigned u_quad)."""
    value &= (1 << 64) - 1
    return value - (1 << 64) if value >= 1 << 63 else value


def s32(value: int) -> int:
    value &= (1 << 32) - 1
    return value - (1 << 32) if value >= 1 << 31 else value


def null_owner(owner: bytes) -> bool:
    """is_lk_owner_null: empty or all zero bytes."""
    return not any(owner)


def client_uid(client: Any) -> str:
    """GlusterFS's client_uid: protocol/server's client objects carry it as
    `client_uid`; a local caller (None) has none."""
    if client is None:
        return ""
    uid = getattr(client, "client_uid", None)
    return str(uid) if uid is not None else repr(client)


def owner_of(lock: Lock) -> fops.Caller:
    return fops.Caller(pid=lock.pid, lk_owner=lock.owner, client=lock.client)


def fd_gfid(fd) -> GFID:
    if fd.gfid is None:
        raise FopError(errno.EBADFD, "the fd names no inode")
    return fd.gfid


def as_text(value) -> str:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace")
    return str(value)


def xdata_str(xdata, key) -> str | None:
    if not xdata or key not in xdata:
        return None
    return as_text(xdata[key])


def lock_type_name(lock_type: int) -> str:
    return {LockType.RDLCK: "READ", LockType.WRLCK: "WRITE",
            LockType.UNLCK: "UNLOCK"}.get(lock_type, "UNKNOWN")


def _cmd_name(cmd: int) -> str:
    return {LockCmd.GETLK: "GETLK", LockCmd.SETLK: "SETLK",
            LockCmd.SETLKW: "SETLKW"}.get(cmd, "UNKNOWN")


def inodelk_text(cmd, flock, domain) -> str:
    return (f"lock=INODELK, cmd={_cmd_name(cmd)}, type={lock_type_name(flock.type)}, "
            f"domain: {domain}, start={flock.start}, len={flock.len}, pid={flock.pid}")


def entrylk_text(cmd, type_, basename, domain) -> str:
    cmd_name = {EntrylkCmd.LOCK: "LOCK", EntrylkCmd.LOCK_NB: "LOCK_NB",
                EntrylkCmd.UNLOCK: "UNLOCK"}.get(cmd, "UNKNOWN")
    return (f"lock=ENTRYLK, cmd={cmd_name}, type={lock_type_name(type_)}, "
            f"basename={basename}, domain: {domain}")


def posixlk_text(cmd, flock, owner) -> str:
    return (f"lock=FCNTL, cmd={_cmd_name(cmd)}, type={lock_type_name(flock.type)}, "
            f"start={flock.start}, len={flock.len}, pid={flock.pid}, lk-owner={owner.hex()}")
