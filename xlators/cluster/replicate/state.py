"""cluster/replicate's names and numbers and what it keeps: the per-inode,
per-fd and per-transaction state (afr.h's afr_inode_ctx_t, afr_fd_ctx_t,
afr_lock_t, afr_local_t) and the small helpers every part uses.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import trio

from glusterpy import fops
from glusterpy.fops import GFID, Caller, Fd, FopError, Loc

from xlators.cluster.replicate.changelog import DATA, METADATA, SLOT_OF


# --------------------------------------------------------------------------
# GlusterFS's names and numbers

LLONG_MAX = (1 << 63) - 1
METADATA_LOCK_START = LLONG_MAX - 1
ARBITER_BRICK_INDEX = 2
NOTIFY_TIMEOUT = 10.0
REPLICATE_TRASH_DIR = ".landfill"
ANON_DIR_PREFIX = ".glusterfs-anonymous-inode"
#: fops whose post-op may be delayed (afr_is_delayed_changelog_post_op_needed)
DELAY_OPS = frozenset({"writev", "fxattrop", "fsync"})
#: unlock and post-op cleanups get this long even when the caller is gone
CLEANUP_TIMEOUT = 60.0
#: transaction tails (unlocks, a released fd's delayed post-op) running
#: behind their callers at once; past this a caller waits for its own, so a
#: client that outruns its bricks holds no more than this many in memory
BEHIND_MAX = 64


class as_caller:
    """Run a block as `who` (the fops.caller context variable)."""

    def __init__(self, who: Caller):
        self.who = who

    def __enter__(self):
        self.token = fops.caller.set(self.who)
        return self

    def __exit__(self, *exc):
        fops.caller.reset(self.token)


def is_ok(reply) -> bool:
    return reply is not None and not isinstance(reply, BaseException)


def errno_of(reply) -> int | None:
    return reply.errno if isinstance(reply, FopError) else None


# --------------------------------------------------------------------------
# Per-inode, per-fd and per-transaction state


class EagerLock:
    """afr_lock_t: the shared lock of one inode and transaction type."""

    __slots__ = ("acquired", "acquiring", "owner", "locked", "held", "generation", "owners",
                 "post_op", "release", "delayed", "changed", "num_inodelks")

    def __init__(self) -> None:
        self.acquired = False
        self.acquiring = False
        #: the lock owner of the eager lock (GlusterFS uses the inode pointer)
        self.owner = os.urandom(8)
        self.locked: list[bool] | None = None
        #: per lockee, per child: where the lock is held
        self.held: list[list[bool]] | None = None
        self.generation = -1
        self.owners: list[Txn] = []     # transactions doing their operation
        self.post_op: list[Txn] = []    # done with the operation, not yet unlocked
        self.release = False
        self.delayed: Txn | None = None  # whose post-op waits post-op-delay-secs
        self.changed = trio.Event()
        self.num_inodelks = 0

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @property
    def busy(self) -> bool:
        return bool(self.acquired or self.acquiring or self.owners or self.post_op)


class InodeCtx:
    """afr_inode_ctx_t, keyed by gfid."""

    __slots__ = ("gfid", "mode", "data", "metadata", "generation", "need_refresh", "locks",
                 "on_disk", "inherited", "pre_op_done", "open_fd_count",
                 "unstable_write", "write_subvol", "spb_choice", "refreshing", "failing")

    def __init__(self, gfid: GFID, n: int) -> None:
        self.gfid = gfid
        self.mode = 0
        self.data: list[bool] | None = None
        self.metadata: list[bool] | None = None
        self.generation = -1
        self.need_refresh = False
        self.locks = {DATA: EagerLock(), METADATA: EagerLock()}
        self.on_disk = [0, 0, 0]
        self.inherited = [0, 0, 0]
        self.pre_op_done = [[False] * n for _ in range(3)]
        self.open_fd_count = 0
        self.unstable_write = False
        self.write_subvol: list[bool] | None = None
        self.spb_choice = -1
        self.refreshing: trio.Event | None = None
        #: per transaction type, per child: how many transactions saw the
        #: child fail and have not finished their post-op (which writes the
        #: accusation); such a child is no read source whatever a refresh
        #: reads from the changelogs meanwhile
        self.failing = {DATA: [0] * n, METADATA: [0] * n}

    @property
    def busy(self) -> bool:
        return any(lock.busy for lock in self.locks.values()) or self.refreshing is not None


@dataclasses.dataclass(eq=False)
class FdCtx:
    """afr_fd_ctx_t: where the fd is open, and readdir's sticky child."""

    opened_on: list[bool]
    flags: int
    is_dir: bool = False
    readdir_subvol: int = -1
    #: unlocks on this fd gone on behind a flush (transaction._eager_finish):
    #: the fd's release waits for them, or the brick would get an unlock
    #: naming an fd it has already closed
    unlocking: list = dataclasses.field(default_factory=list)


@dataclasses.dataclass(eq=False)
class Lockee:
    """One thing a transaction locks (afr_lockee_t)."""

    kind: str                     # "inode" or "entry"
    loc: Loc | None = None
    fd: Fd | None = None
    basename: str | None = None
    start: int = 0
    length: int = 0

    def sort_key(self):
        gfid = self.loc.gfid if self.loc is not None and self.loc.gfid is not None else \
            (self.fd.gfid if self.fd is not None else GFID(bytes(16)))
        # afr_entry_lockee_cmp: by gfid, and a whole-directory lock first
        return (bytes(gfid), self.basename is not None, self.basename or "")


@dataclasses.dataclass(eq=False)
class Txn:
    """afr_local_t's transaction part."""

    type: str
    op: str
    n: int
    caller: Caller
    up: list[bool]
    generation: int
    gfid: GFID | None = None
    fd: Fd | None = None
    loc: Loc | None = None
    start: int = 0
    length: int = 0
    lockees: list[Lockee] = dataclasses.field(default_factory=list)
    #: entry transactions: (parent loc, name) whose changelog records the change
    parents: list[tuple[Loc, str]] = dataclasses.field(default_factory=list)
    owner: bytes = b""
    locked: list[bool] = dataclasses.field(default_factory=list)
    pre_op: list[bool] = dataclasses.field(default_factory=list)
    failed: list[bool] = dataclasses.field(default_factory=list)
    replies: list[Any] = dataclasses.field(default_factory=list)
    changelog_xdata: list[Any] = dataclasses.field(default_factory=list)
    lock_errno: int = 0
    op_errno: int = 0
    op_ok: bool = True
    held: list[list[bool]] | None = None
    write_subvol: list[bool] | None = None
    delay_scope: trio.CancelScope | None = None
    dirtied: bool = False
    inherited: bool = False
    no_uninherit: bool = False
    uninherit_value: bool | None = None
    optimistic: bool = False
    eager: EagerLock | None = None
    ctx: InodeCtx | None = None
    disable_delay: bool = False
    stable_write: bool = True
    #: the transaction whose delayed post-op this one took over
    takeover: "Txn | None" = None
    #: the children this transaction counted in its inode's `failing`
    failing: list[int] = dataclasses.field(default_factory=list)
    done: trio.Event = dataclasses.field(default_factory=trio.Event)

    def __post_init__(self) -> None:
        self.locked = [False] * self.n
        self.pre_op = [False] * self.n
        self.failed = [False] * self.n
        self.replies = [None] * self.n
        self.changelog_xdata = [None] * self.n

    @property
    def slot(self) -> int:
        return SLOT_OF[self.type]

    def nothing_failed(self) -> bool:
        """afr_txn_nothing_failed."""
        return not any(p and f for p, f in zip(self.pre_op, self.failed))

    def overlaps(self, other: "Txn") -> bool:
        """afr_locals_overlap: length 0 means to the end of the file."""
        end1 = self.start + self.length - 1 if self.length else (1 << 64)
        end2 = other.start + other.length - 1 if other.length else (1 << 64)
        return end1 >= other.start and end2 >= self.start
