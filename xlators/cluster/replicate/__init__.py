"""cluster/replicate: every file on every child, kept consistent the way AFR does.

Follows GlusterFS 10's AFR (xlators/cluster/afr/src: afr-transaction.c,
afr-inode-write.c, afr-dir-write.c, afr-read-txn.c, afr-common.c,
afr-lk-common.c, afr-self-heal-*.c, afr.c) closely enough that GlusterFS's
own AFR and this one read and heal each other's bricks.  The children are
usually protocol/client translators of the bricks of one replica set; the
bricks run features/locks (and features/index for the heal index).

Writes and namespace operations are *transactions* (afr-transaction.c):

1. lock - inodelk (data: the written range, the whole file with
   ``full-lock`` or eager locking or an arbiter; metadata: the special
   range start=LLONG_MAX-1 len=0, which features/locks turns into the
   domain ``<name>:metadata``) or entrylk on (parent, name) - in the domain
   named after this translator, first non-blocking on every child at once,
   and on any failure one child after another with blocking locks;
2. pre-op - xattrop ADD_ARRAY on every locked child: ``trusted.afr.dirty``
   +1 in the transaction's slot (data 0, metadata 1, entry 2) together
   with an all-zero ``trusted.afr.<vol>-client-<N>`` for every child (the
   reply shows the current changelog, which the arbiter rule and the
   write-subvolume rule read).  Metadata and entry transactions skip the
   pre-op when every child is locked (``optimistic-change-log``).  With
   ``granular-entry-heal`` an entry pre-op carries
   ``glusterfs.xattrop-entry-create: <name>`` for features/index;
3. the operation, on every locked child in parallel (an arbiter gets a
   one-byte write);
4. post-op - xattrop: dirty -1 and +1 in the pending key of every child on
   which the operation failed or that was not locked, so the children that
   did it accuse those that did not; nothing at all when everything
   succeeded and no pre-op was made;
5. unlock.

Data and metadata transactions use *eager locking* (``eager-lock``): the
lock, taken on the whole file with the inode as owner, is shared by
transactions that do not overlap; a later transaction inherits the dirty
mark of an earlier one instead of making its own pre-op; and after a write
(or fsync, fxattrop) the post-op and unlock wait ``post-op-delay-secs`` so
that the next write of a sequential writer finds the lock and the pre-op
already in place - one lock and two xattrops per burst, not per write.
flush, release, fsync with ``last-fsync``, a CHILD_UP/DOWN (event
generation change), a failure and a contention upcall from the bricks end
the delay.  The post-op after unstable writes is preceded by an fsync on
the children (``ensure-durability``).

Reads (afr-read-txn.c) go to one child chosen among the *readable* ones:
a child is readable for data (file content, directory entries) or metadata
unless some child's changelog accuses it, a regular file smaller than the
largest unaccused copy is not readable either, and an arbiter never is.
Readability is computed from lookup and from an *inode refresh* (a lookup
of the gfid on every child, made on the first read and again after any
child went down or came up).  The child is chosen by ``read-subvolume`` /
``read-subvolume-index``, else the local brick (``choose-local``, found from
the bricks' pathinfo), else ``read-hash-mode`` (0 first readable, 1 gfid
hash, 2 gfid+pid hash, 3 least outstanding reads, 4 least ping latency, 5
both).  A read that fails is retried once after a refresh, then on the
other readable children.  A file with no readable child - split-brain -
fails reads and writes with EIO.

Children's state (afr_notify): parents hear CHILD_UP once some child is up
and every child has reported (or after 10 s), CHILD_DOWN when every child
is down, SOME_DESCENDENT_UP/DOWN for the changes in between.  Every change
of a child's state bumps the event generation, which makes cached
readability stale.

Quorum (``quorum-type``/``quorum-count``, GlusterFS's auto default for
more than two children): a transaction, an open or a read when fewer than
the quorum of children are up - or a write that succeeded on fewer - fails
with ENOTCONN (afr_quorum_errno) instead of creating a split-brain.

Self-heal (afr_heal.py): a lookup or refresh that finds an accused child
heals the inode in the background when ``data-self-heal``,
``metadata-self-heal`` or ``entry-self-heal`` is on (GlusterFS's defaults
are off: its self-heal daemon heals); a lookup of a name that exists on
some children only, or without a gfid, heals the name (name heal is not
optional, as in GlusterFS).  The building blocks the self-heal daemon and
``volume heal`` use are methods of this class: `heal_gfid`, `heal_name`,
`pending_entries`, `heal_index`, `heal_full`, `heal_info`,
`split_brain_status`, `resolve_split_brain`.  The same are reachable as
GlusterFS's virtual xattrs (``glusterfs.heal-info``,
``replica.split-brain-status``, ``glusterfs.heal-sbrain`` with xdata
``heal-op`` and ``child-name``) through getxattr.  With
``iam-self-heal-daemon`` (the glustershd process), afr_shd.py's healers
crawl the local bricks' indices every ``heal-timeout`` seconds and whenever
a child comes up (afr-self-heald.c); ``node-uuid`` says which bricks are
local.

Departures from GlusterFS:

* A transaction returns to its caller after its post-op and unlock, not
  between the operation and the post-op (GlusterFS unwinds as soon as the
  operation succeeded everywhere); with eager locking the post-op of a
  write is delayed anyway, so sequential writers see no difference.
* A lookup that finds an accused child starts the background heal at once
  (GlusterFS marks the inode for a refresh and heals on the next read or
  metadata transaction).
* The eager lock's owner is a random 8-byte value per inode, not the
  address of the inode; transactions get random owners.  The inode table
  is a bounded cache keyed by gfid (no forget from the parents).
* Not implemented (their options are not declared): halo replication,
  thin-arbiter, consistent-metadata, consistent-io, lock healing after a
  reconnect, mandatory-lock modes, the "open" value of data-self-heal, the
  anonymous-inode directory for renamed directories
  (``use-anonymous-inode``, accepted and without effect - deleted
  directories go to the brick's landfill as before GlusterFS 8),
  put and copy_file_range (ENOTSUP: GlusterFS would wind them to one
  child), icreate, namelink, lease and the lock-migration fops (ENOTSUP).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import stat as _stat
from collections import OrderedDict, deque
from typing import Any, Awaitable, Callable, Sequence

import trio

from glusterpy import fops
from glusterpy.fops import (GFID, ROOT_GFID, Caller, CreateReply, DictReply, EntrylkCmd,
                            EntrylkType, EntryReply, Fd, Flock, FopError, Iatt, Loc, LockCmd,
                            LockType, LookupReply, OpenReply, ParentReply, RenameReply, Reply,
                            UInt, WriteReply, XattropType)
from glusterpy.keys import (ACTIVE_FD_COUNT, AFR_DIRTY, AFR_XATTR_PREFIX, ENTRY_IN_KEY,
                            ENTRY_OUT_KEY, ENTRYLK_COUNT, GFID_REQ, HEAL_INFO_KEY,
                            HEAL_SBRAIN_KEY, INDEX_COUNT_KEY, INODELK_COUNT, INODELK_DOM_COUNT,
                            INTERNAL_FOP, LINK_COUNT, LIST_XATTR, NODE_UUID_KEY, PARENT_ENTRYLK,
                            PATHINFO_KEY, SBRAIN_CHOICE_KEY, SBRAIN_STATUS_KEY,
                            USER_PATHINFO_KEY, WRITE_IS_APPEND)
from glusterpy.options import Option, OptionError, OptionType as T
from glusterpy.xlator import DOWNWARD_EVENTS, Event, Translator

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate import heal_common as afr_heal
from xlators.cluster.replicate import shd as afr_shd
from xlators.cluster.replicate.changelog import (DATA, DATA_TXN, ENTRY_TXN, METADATA,
                                           METADATA_TXN, QUORUM_AUTO, RENAME_TXN, SLOT_OF)

# --------------------------------------------------------------------------
# Options (afr.c; volume-set keys from glusterd-volume-set.c)

_BOOL_WORDS = ("1", "on", "yes", "true", "enable", "0", "off", "no", "false", "disable")


def _opt(key, typ, default, description, set_key=None, **kw) -> Option:
    return Option(key, typ, default, description,
                  set_keys=(set_key,) if set_key else (), **kw)


OPTIONS = (
    _opt("read-subvolume", T.XLATOR, None,
         "inode-read fops happen only on one of the bricks in replicate. Afr will prefer "
         "the one specified using this option if it is not stale. Option value must be one "
         "of the xlator names of the children.", "cluster.read-subvolume"),
    _opt("read-subvolume-index", T.INT, "-1",
         "inode-read fops happen only on one of the bricks in replicate. AFR will prefer "
         "the one specified using this option if it is not stale. allowed options include "
         "-1 till replica-count - 1", "cluster.read-subvolume-index", min=-1),
    _opt("read-hash-mode", T.INT, "1",
         "inode-read fops happen only on one of the bricks in replicate. AFR will prefer "
         "the one computed using the method specified using this option.\n"
         "0 = first readable child of AFR, starting from 1st child.\n"
         "1 = hash by GFID of file (all clients use same subvolume).\n"
         "2 = hash by GFID of file and client PID.\n"
         "3 = brick having the least outstanding read requests.\n"
         "4 = brick having the least network ping latency.\n"
         "5 = Hybrid mode between 3 and 4, ie least value among network-latency "
         "multiplied by outstanding-read-requests.", "cluster.read-hash-mode", min=0, max=5),
    _opt("choose-local", T.BOOL, "true",
         "Choose a local subvolume (i.e. Brick) to read from if read-subvolume is not "
         "explicitly set.", "cluster.choose-local"),
    _opt("background-self-heal-count", T.INT, "8",
         "This specifies the number of per client self-heal jobs that can perform "
         "parallel heals in the background.", "cluster.background-self-heal-count",
         min=0, max=256),
    _opt("heal-wait-queue-length", T.INT, "128",
         "This specifies the number of heals that can be queued for the parallel "
         "background self heal jobs.", "cluster.heal-wait-queue-length", min=0, max=10000),
    _opt("data-self-heal", T.ENUM, "off",
         "Using this option we can enable/disable data self-heal on the file.",
         "cluster.data-self-heal", choices=_BOOL_WORDS),
    _opt("data-self-heal-algorithm", T.ENUM, None,
         "Select between \"full\", \"diff\". The \"full\" algorithm copies the entire file "
         "from source to sink. The \"diff\" algorithm copies to sink only those blocks "
         "whose checksums don't match with those of source. If no option is configured "
         "the option is chosen dynamically: \"full\" when the sinks are empty, \"diff\" "
         "otherwise.", "cluster.data-self-heal-algorithm", choices=("diff", "full")),
    _opt("data-self-heal-window-size", T.INT, "8",
         "Maximum number of 128KB blocks per file for which self-heal process would be "
         "applied simultaneously.", "cluster.self-heal-window-size", min=1, max=1024),
    _opt("metadata-self-heal", T.BOOL, "off",
         "Using this option we can enable/disable metadata i.e. Permissions, ownerships, "
         "xattrs self-heal on the file/directory.", "cluster.metadata-self-heal"),
    _opt("entry-self-heal", T.BOOL, "off",
         "Using this option we can enable/disable entry self-heal on the directory.",
         "cluster.entry-self-heal"),
    _opt("data-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect", "cluster.data-change-log"),
    _opt("metadata-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.metadata-change-log"),
    _opt("entry-change-log", T.BOOL, "on", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.entry-change-log"),
    _opt("optimistic-change-log", T.BOOL, "on",
         "Entry/Metadata fops will not perform pre fop changelog operations in afr "
         "transaction if this option is enabled.", "cluster.optimistic-change-log"),
    _opt("eager-lock", T.BOOL, "on",
         "Enable/Disable eager lock for replica volume: a data or metadata transaction "
         "takes a lock on the whole file that later transactions on the same inode share "
         "until it is released.", "cluster.eager-lock"),
    _opt("post-op-delay-secs", T.INT, "1",
         "Time interval induced artificially before post-operation phase of the "
         "transaction to enhance overlap of adjacent write operations.",
         "cluster.post-op-delay-secs", min=0, max=(1 << 31) - 1),
    _opt("ensure-durability", T.BOOL, "on",
         "Afr performs fsyncs for transactions if this option is on to make sure the "
         "changelogs/data is written to the disk.", "cluster.ensure-durability"),
    _opt("quorum-type", T.ENUM, "none",
         "If value is \"fixed\" only allow writes if quorum-count bricks are present.  If "
         "value is \"auto\" only allow writes if more than half of bricks, or exactly half "
         "including the first, are present.", "cluster.quorum-type",
         choices=("none", "auto", "fixed")),
    _opt("quorum-count", T.INT, None,
         "If quorum-type is \"fixed\" only allow writes if this many bricks are present.  "
         "Other quorum types will OVERWRITE this value.", "cluster.quorum-count",
         min=1, max=(1 << 31) - 1),
    _opt("afr-dirty-xattr", T.STR, AFR_DIRTY, "The xattr marking an operation in "
         "flight on a brick."),
    _opt("afr-pending-xattr", T.STR, None,
         "Comma separated list of xattrs that are used to capture information on pending "
         "heals."),
    _opt("metadata-splitbrain-forced-heal", T.BOOL, "off",
         "Heal a metadata split-brain by picking one brick arbitrarily."),
    _opt("favorite-child-policy", T.ENUM, "none",
         "This option can be used to automatically resolve split-brains using various "
         "policies without user intervention. \"size\" picks the file with the biggest "
         "size as the source. \"ctime\" and \"mtime\" pick the file with the latest ctime "
         "and mtime respectively as the source. \"majority\" picks a file with identical "
         "mtime and size in more than half the number of bricks in the replica.",
         "cluster.favorite-child-policy", choices=cl.FAVORITE_CHILD_POLICIES),
    _opt("arbiter-count", T.INT, None, "subset of child_count. Has to be 0 or 1.",
         min=0, max=1, reconfigurable=False),
    _opt("granular-entry-heal", T.BOOL, "no",
         "If this option is enabled, self-heal will resort to granular way of recording "
         "changelogs and doing entry self-heal.", "cluster.granular-entry-heal"),
    _opt("full-lock", T.BOOL, "yes",
         "If this option is disabled, then the IOs will take range locks same as versions "
         "till 3.13.1.", "cluster.full-lock"),
    _opt("self-heal-daemon", T.BOOL, "on",
         "This option applies to only self-heal-daemon. Index directory crawl and "
         "automatic healing of files will not be performed if this option is turned off.",
         "cluster.self-heal-daemon"),
    _opt("iam-self-heal-daemon", T.BOOL, "off",
         "This option differentiates if the replicate translator is running as part of "
         "self-heal-daemon or not.", reconfigurable=False),
    _opt("heal-timeout", T.INT, "600",
         "time interval for checking the need to self-heal in self-heal-daemon",
         "cluster.heal-timeout", min=5, max=(1 << 31) - 1),
    _opt("node-uuid", T.STR, None,
         "Local glusterd uuid string, used in starting self-heal-daemon so that it can "
         "crawl only on local index directories."),
    _opt("volume-id", T.STR, None, "The volume's id (names the anonymous-inode "
         "directory).", reconfigurable=False),
    _opt("use-anonymous-inode", T.BOOL, "no",
         "Setting this option heals directory renames efficiently (accepted; glusterpy "
         "heals renamed directories by re-creating them).", "cluster.use-anonymous-inode"),
    _opt("use-compound-fops", T.BOOL, "no", "This option exists only for backward "
         "compatibility and configuring it doesn't have any effect",
         "cluster.use-compound-fops"),
)

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

LLONG_MAX = (1 << 63) - 1
METADATA_LOCK_START = LLONG_MAX - 1
ARBITER_BRICK_INDEX = 2
NOTIFY_TIMEOUT = 10.0
GF_CLIENT_PID_SELF_HEALD = -6
GF_CLIENT_PID_GLFS_HEAL = -7
REPLICATE_TRASH_DIR = ".landfill"
ANON_DIR_PREFIX = ".glusterfs-anonymous-inode"
#: fops whose post-op may be delayed (afr_is_delayed_changelog_post_op_needed)
DELAY_OPS = frozenset({"writev", "fxattrop", "fsync"})
_MAX_INODES = 65536
#: unlock and post-op cleanups get this long even when the caller is gone
_CLEANUP_TIMEOUT = 60.0


class _as:
    """Run a block as `who` (the fops.caller context variable)."""

    def __init__(self, who: Caller):
        self.who = who

    def __enter__(self):
        self.token = fops.caller.set(self.who)
        return self

    def __exit__(self, *exc):
        fops.caller.reset(self.token)


def _ok(reply) -> bool:
    return reply is not None and not isinstance(reply, BaseException)


def _err(reply) -> int | None:
    return reply.errno if isinstance(reply, FopError) else None


# --------------------------------------------------------------------------
# Per-inode, per-fd and per-transaction state


class _EagerLock:
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
        self.owners: list[_Txn] = []     # transactions doing their operation
        self.post_op: list[_Txn] = []    # done with the operation, not yet unlocked
        self.release = False
        self.delayed: _Txn | None = None  # whose post-op waits post-op-delay-secs
        self.changed = trio.Event()
        self.num_inodelks = 0

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    @property
    def busy(self) -> bool:
        return bool(self.acquired or self.acquiring or self.owners or self.post_op)


class _InodeCtx:
    """afr_inode_ctx_t, keyed by gfid."""

    __slots__ = ("gfid", "mode", "data", "metadata", "generation", "need_refresh", "locks",
                 "on_disk", "inherited", "pre_op_done", "open_fd_count",
                 "unstable_write", "write_subvol", "spb_choice", "refreshing")

    def __init__(self, gfid: GFID, n: int) -> None:
        self.gfid = gfid
        self.mode = 0
        self.data: list[bool] | None = None
        self.metadata: list[bool] | None = None
        self.generation = -1
        self.need_refresh = False
        self.locks = {DATA: _EagerLock(), METADATA: _EagerLock()}
        self.on_disk = [0, 0, 0]
        self.inherited = [0, 0, 0]
        self.pre_op_done = [[False] * n for _ in range(3)]
        self.open_fd_count = 0
        self.unstable_write = False
        self.write_subvol: list[bool] | None = None
        self.spb_choice = -1
        self.refreshing: trio.Event | None = None

    @property
    def busy(self) -> bool:
        return any(lock.busy for lock in self.locks.values()) or self.refreshing is not None


@dataclasses.dataclass(eq=False)
class _FdCtx:
    """afr_fd_ctx_t: where the fd is open, and readdir's sticky child."""

    opened_on: list[bool]
    flags: int
    is_dir: bool = False
    readdir_subvol: int = -1


@dataclasses.dataclass(eq=False)
class _Lockee:
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
class _Txn:
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
    lockees: list[_Lockee] = dataclasses.field(default_factory=list)
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
    eager: _EagerLock | None = None
    ctx: _InodeCtx | None = None
    disable_delay: bool = False
    stable_write: bool = True
    #: the transaction whose delayed post-op this one took over
    takeover: "_Txn | None" = None
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

    def overlaps(self, other: "_Txn") -> bool:
        """afr_locals_overlap: length 0 means to the end of the file."""
        end1 = self.start + self.length - 1 if self.length else (1 << 64)
        end2 = other.start + other.length - 1 if other.length else (1 << 64)
        return end1 >= other.start and end2 >= self.start


class Replicate(Translator):
    """cluster/replicate: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, None)

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: set by PARENT_DOWN: children going away now is a planned shutdown,
        #: logged quietly rather than as an outage
        self._stopping = False
        n = len(self.children)
        self.child_count = n
        if self.opts.arbiter_count and n != 3:
            raise OptionError("arbiter-count", "option 'arbiter-count': an arbiter needs "
                                               "exactly three subvolumes")
        self.arbiter = ARBITER_BRICK_INDEX if self.opts.arbiter_count else None
        pending = self.opts.afr_pending_xattr
        if pending:
            names = [p for p in pending.split(",") if p]
            if len(names) != n:
                raise OptionError("afr-pending-xattr", f"option 'afr-pending-xattr': "
                                  f"{len(names)} names for {n} subvolumes")
            self.pending_keys = [f"{AFR_XATTR_PREFIX}.{p}" for p in names]
        else:
            self.pending_keys = [f"{AFR_XATTR_PREFIX}.{c.name}" for c in self.children]
        self.dirty_key = self.opts.afr_dirty_xattr
        self.domain = self.name
        self.sh_domain = f"{self.name}:self-heal"
        self._index = {id(c): i for i, c in enumerate(self.children)}
        self.child_up: list[bool] = [False] * n
        self._last_event: list[Event | None] = [None] * n
        self.event_generation = 0
        self.latency = [-1] * n
        self.pending_reads = [0] * n
        self.local = [False] * n
        self.read_child = -1
        self._did_discovery = False
        self._inodes: OrderedDict[GFID, _InodeCtx] = OrderedDict()
        self._notify_timer: trio.CancelScope | None = None
        self._heals_running = 0
        self._heal_queue: deque = deque()
        self._heal_queued: set[GFID] = set()
        self._parent_down_done: trio.Event | None = None
        #: the self-heal daemon's healers (afr_shd.py), with iam-self-heal-daemon
        self.shd: afr_shd.SelfHealDaemon | None = None
        self._apply_options()

    def _apply_options(self) -> None:
        opts = self.opts
        self.read_child = -1
        if opts.read_subvolume:
            names = [c.name for c in self.children]
            if opts.read_subvolume not in names:
                raise OptionError("read-subvolume", f"option 'read-subvolume': "
                                  f"{opts.read_subvolume} is not a subvolume")
            self.read_child = names.index(opts.read_subvolume)
        if opts.read_subvolume_index >= 0:
            if opts.read_subvolume_index >= self.child_count:
                raise OptionError("read-subvolume-index", f"option 'read-subvolume-index': "
                                  f"{opts.read_subvolume_index} is not a subvolume-index")
            self.read_child = opts.read_subvolume_index
        # fix_quorum_options: auto by default above two children
        qtype = opts.quorum_type
        if "quorum-type" not in opts.given and self.child_count > 2:
            qtype = "auto"
        if qtype == "none":
            self.quorum_count = 0
        elif qtype == "auto":
            self.quorum_count = QUORUM_AUTO
        else:
            self.quorum_count = opts.quorum_count or 0
        if opts.quorum_count and qtype != "fixed":
            self.log.warning("quorum-type %s overriding quorum-count %u", qtype,
                             opts.quorum_count)
        self.data_self_heal = opts.data_self_heal in ("1", "on", "yes", "true", "enable")

    def options_changed(self, old) -> None:
        self._apply_options()
        if self.shd is not None:
            self.shd.reconfigured(old)

    @property
    def selfheal_enabled(self) -> bool:
        """afr_selfheal_enabled."""
        return self.data_self_heal or self.opts.metadata_self_heal or \
            self.opts.entry_self_heal

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        self._notify_sent = False
        if self.opts.iam_self_heal_daemon:
            self.shd = afr_shd.SelfHealDaemon(self)
            self.shd.start()

    async def fini(self) -> None:
        """Finish the delayed post-ops before the children go (GlusterFS
        gets the same from flush/release of every fd at unmount)."""
        if self.shd is not None:
            self.shd.stop()
        with trio.move_on_after(_CLEANUP_TIMEOUT) as scope:
            scope.shield = True
            await self._flush_all_delayed()
            for child in self.children:
                child.notify(Event.PARENT_DOWN, self, None)

    def dump_state(self) -> dict:
        return {"child_up": list(self.child_up), "event_generation": self.event_generation,
                "quorum_count": self.quorum_count, "read_child": self.read_child,
                "pending_keys": list(self.pending_keys), "inodes": len(self._inodes),
                "heals_running": self._heals_running, "heals_queued": len(self._heal_queue)}

    # ======================================================================
    # Events (afr_notify)

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.PARENT_DOWN:
            # held back until fini() has finished the delayed post-ops, so the
            # children are still connected for them
            self._stopping = True
            return
        if event in DOWNWARD_EVENTS:
            if event == Event.PARENT_UP and self.nursery is not None:
                self.spawn(self._notify_timer_task)
            for child in self.children:
                child.notify(event, self, data)
            return
        idx = self._index.get(id(source))
        if idx is None:
            self.notify_parents(event, data)
            return
        had_quorum = bool(self.quorum_count) and cl.has_quorum(self.child_up, self.quorum_count)
        if event == Event.CHILD_PING:
            self.latency[idx] = int(data) if isinstance(data, int) else self.latency[idx]
            return
        if event == Event.UPCALL:
            self._handle_upcall(data)
        had_heard_from_all = all(e is not None for e in self._last_event)
        propagate = False
        came_up = event == Event.CHILD_UP  # afr_notify's call_psh
        if event == Event.CHILD_UP:
            if not self.child_up[idx]:
                self.event_generation += 1
            self.child_up[idx] = True
            up = sum(self.child_up)
            if up == 1:
                self.log.info("Subvolume '%s' came back up; going online.", source.name)
            else:
                event = Event.SOME_DESCENDENT_UP
            self._last_event[idx] = event
            self._did_discovery = False
        elif event == Event.CHILD_DOWN:
            if self.child_up[idx]:
                self.event_generation += 1
            self.child_up[idx] = False
            if not any(self.child_up):
                self.log.log(logging.INFO if self._stopping else logging.ERROR,
                             "All subvolumes are down. Going offline until at least "
                             "one of them comes back up.")
            else:
                event = Event.SOME_DESCENDENT_DOWN
            self._last_event[idx] = event
        elif event in (Event.CHILD_CONNECTING, Event.SOME_DESCENDENT_DOWN):
            self._last_event[idx] = event
        else:
            propagate = True
        have_heard_from_all = all(e is not None for e in self._last_event)
        if not had_heard_from_all and have_heard_from_all:
            if self._notify_timer is not None:
                self._notify_timer.cancel()
            event = Event.CHILD_DOWN
            for e in self._last_event:
                if e == Event.CHILD_UP:
                    event = Event.CHILD_UP
                    break
                if e == Event.CHILD_CONNECTING:
                    event = Event.CHILD_CONNECTING
        if self.quorum_count:
            has = cl.has_quorum(self.child_up, self.quorum_count)
            if has and not had_quorum:
                self.log.info("Client-quorum is met")
            elif had_quorum and not has:
                self.log.log(logging.INFO if self._stopping else logging.WARNING,
                             "Client-quorum is not met")
        if have_heard_from_all:
            propagate = True
        if propagate:
            self.notify_parents(event, data)
        if self.shd is not None and have_heard_from_all and (not had_heard_from_all or came_up):
            # afr_selfheal_childup: every up child's index healer crawls
            self.shd.child_up()

    async def _notify_timer_task(self) -> None:
        """__afr_launch_notify_timer: after 10 s, children not heard from
        count as down and the parents are told what there is."""
        with trio.CancelScope() as scope:
            self._notify_timer = scope
            await trio.sleep(NOTIFY_TIMEOUT)
            self._notify_timer = None
            if all(e is not None for e in self._last_event):
                return
            for i, e in enumerate(self._last_event):
                if e is None:
                    self._last_event[i] = Event.SOME_DESCENDENT_DOWN
                    self.child_up[i] = False
            self.notify_parents(Event.CHILD_UP if any(self.child_up) else Event.CHILD_DOWN)
        self._notify_timer = None

    def _handle_upcall(self, upcall: Any) -> None:
        """afr_handle_inodelk_contention: another client waits for our eager
        lock - end its delay so the lock goes."""
        message = getattr(upcall, "message", None)
        if getattr(message, "domain", None) != self.domain:
            return
        ctx = self._inodes.get(getattr(upcall, "gfid", None))
        if ctx is None:
            return
        for lock in ctx.locks.values():
            lock.release = True
            if lock.delayed is not None and self.nursery is not None:
                self.spawn(self._fire_delayed, lock)

    # ======================================================================
    # Entry fops: lookup

    async def lookup(self, loc, xdata=None):
        """afr_lookup / afr_discover: every up child, then pick the gfid,
        the read child and its attributes; heal the name when children
        disagree about it."""
        up = self._up_or_enotconn()
        if loc.name is None:
            return await self._discover(loc, xdata, up)
        if loc.pargfid == ROOT_GFID and self._is_private_dir(loc.name):
            raise FopError(errno.EPERM, f"{loc.name} is private to replicate")
        req = dict(xdata or {})
        gfid_req = req.pop(GFID_REQ, None)
        self._lookup_xattr_req(req)
        replies = await self._fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].lookup(loc, req))
        if self._name_heal_needed(loc, replies):
            try:
                await afr_heal.heal_name(self, loc.pargfid, loc.name,
                                         GFID(gfid_req) if gfid_req else None)
            except FopError as e:
                if e.errno == errno.EIO:
                    raise
                self.log.debug("name heal of %s/%s: %s", loc.pargfid, loc.name, e)
            replies = await self._fan([i for i in range(self.child_count) if self.child_up[i]],
                                      lambda i: self.children[i].lookup(loc, req))
        return await self._lookup_done(loc, replies)

    async def _discover(self, loc, xdata, up):
        req = dict(xdata or {})
        req.pop(GFID_REQ, None)
        self._lookup_xattr_req(req)
        replies = await self._fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].lookup(loc, req))
        good = [i for i, r in enumerate(replies) if _ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if (loc.gfid == ROOT_GFID or loc.path == "/") and self.opts.choose_local and \
                not self._did_discovery:
            self._did_discovery = True
            self.spawn(self._local_discovery)
        iatts = [r.iatt if _ok(r) else None for r in replies]
        read = -1
        if cl.has_quorum([_ok(r) for r in replies], self.quorum_count) or not self.quorum_count:
            ctx = self._interpret(iatts, [r.xdata if _ok(r) else None for r in replies],
                                  start_heal=True)
            read = self._read_subvol_decide(ctx, iatts[good[0]])
        if read < 0:
            read = self._attempt_read_subvol([_ok(r) for r in replies], replies)
        if read == self.arbiter:
            raise FopError(errno.ENOTCONN, "the arbiter cannot serve reads")
        r = replies[read]
        return LookupReply(r.iatt, r.postparent, xdata=r.xdata)

    async def _lookup_done(self, loc, replies):
        """afr_lookup_done."""
        locked_entry = any(_ok(r) and r.xdata and r.xdata.get(PARENT_ENTRYLK) for r in replies)
        pctx = self._inodes.get(loc.pargfid) if loc.pargfid is not None else None
        par_readable = pctx.data if pctx is not None and pctx.data is not None else \
            [True] * self.child_count
        success = [_ok(r) for r in replies]
        in_flight_create = locked_entry and any(_err(r) == errno.ENOENT for r in replies)
        read = -1
        for i, r in enumerate(replies):
            if _ok(r) and (read == -1 or not par_readable[read]):
                read = i
        if in_flight_create and not cl.has_quorum(success, self.quorum_count or QUORUM_AUTO):
            raise FopError(errno.ENOENT)
        if read == -1:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        read_gfid = replies[read].iatt.gfid
        can_interpret = True
        for i, r in enumerate(replies):
            if not _ok(r) or r.iatt.gfid == read_gfid:
                continue
            can_interpret = False
            if locked_entry:
                continue
            if par_readable[read] and not par_readable[i]:
                continue
            raise FopError(errno.EIO, f"gfid mismatch for {loc}: {read_gfid} on "
                                      f"{self.children[read].name}, {r.iatt.gfid} on "
                                      f"{self.children[i].name}")
        iatts = [r.iatt if _ok(r) else None for r in replies]
        chosen = -1
        if can_interpret and (not self.quorum_count or cl.has_quorum(success,
                                                                      self.quorum_count)):
            ctx = self._interpret(iatts, [r.xdata if _ok(r) else None for r in replies],
                                  start_heal=True)
            chosen = self._read_subvol_decide(ctx, replies[read].iatt)
        if chosen < 0:
            chosen = self._attempt_read_subvol(success, replies)
        if chosen == self.arbiter:
            raise FopError(errno.ENOTCONN, "the arbiter cannot serve reads")
        r = replies[chosen]
        par = self._parent_read_subvol(pctx, replies)
        return LookupReply(r.iatt, replies[par].postparent if _ok(replies[par]) else
                           r.postparent, xdata=r.xdata)

    def _attempt_read_subvol(self, success, replies) -> int:
        """afr_attempt_readsubvol_set: any answering child when no quorum is
        enforced (attributes of a split-brain file are still served), else
        only with a quorum of answers."""
        first = next((i for i, ok in enumerate(success) if ok), -1)
        if first < 0:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if self.quorum_count and fops.caller.get().pid != GF_CLIENT_PID_GLFS_HEAL and \
                not cl.has_quorum(success, self.quorum_count):
            raise FopError(errno.ENOTCONN, "no read subvolume with quorum")
        return first

    def _parent_read_subvol(self, pctx, replies) -> int:
        """afr_get_parent_read_subvol: postparent from the parent's read child."""
        par = self._select_read(pctx.data, pctx.gfid, pctx.mode) if \
            pctx is not None and pctx.data is not None else -1
        best = -1
        for i, r in enumerate(replies):
            if not _ok(r):
                continue
            if best == -1 or i == par:
                best = i
        return max(best, 0)

    def _name_heal_needed(self, loc, replies) -> bool:
        """afr_lookup_entry_heal: a missing gfid, children that disagree on
        the name's existence or on its gfid call for a name heal."""
        if not all(self.child_up) or loc.pargfid is None:
            return False
        first = None
        gfid = None
        mismatch = False
        errors = []
        for r in replies:
            if r is None:
                continue
            if _err(r) == errno.ENODATA:
                return True
            if _err(r) not in (None, errno.ENOTCONN, errno.ENOENT, errno.ESTALE):
                errors.append(_err(r))
            if first is None:
                first = r
            elif _ok(first) != _ok(r):
                mismatch = True
            if _ok(r):
                if gfid is None:
                    gfid = r.iatt.gfid
                elif r.iatt.gfid != gfid:
                    return True
        if not mismatch:
            return False
        if not self.quorum_count:
            return True
        success = [_ok(r) for r in replies]
        if not cl.has_quorum(success, self.quorum_count) or errors:
            return True
        pctx = self._inodes.get(loc.pargfid)
        par = pctx.data if pctx is not None and pctx.data else [True] * self.child_count
        return any(par[i] and isinstance(r, FopError) and r.errno != errno.ENOTCONN
                   for i, r in enumerate(replies))

    def _lookup_xattr_req(self, req: dict) -> None:
        """afr_lookup_xattr_req_prepare."""
        self._xattr_req(req)
        req.setdefault(INODELK_COUNT, UInt(0))
        req.setdefault(ENTRYLK_COUNT, UInt(0))
        req.setdefault(PARENT_ENTRYLK, UInt(0))
        req.setdefault(LINK_COUNT, INDEX_COUNT_KEY)

    def _xattr_req(self, req: dict) -> dict:
        """afr_xattr_req_prepare: the changelogs and every xattr."""
        for key in self.pending_keys:
            req[key] = UInt(cl.CHANGELOG_SIZE)
        req[self.dirty_key] = UInt(cl.CHANGELOG_SIZE)
        req[LIST_XATTR] = 1
        return req

    def _is_private_dir(self, name: str) -> bool:
        """afr_is_private_directory (for names under the root)."""
        if name == REPLICATE_TRASH_DIR:
            return True
        pid = fops.caller.get().pid
        if pid == -1:  # geo-replication creates them on the secondary
            return False
        if pid in (GF_CLIENT_PID_SELF_HEALD, GF_CLIENT_PID_GLFS_HEAL):
            return name == self.anon_inode_name
        return name.startswith(ANON_DIR_PREFIX)

    @property
    def anon_inode_name(self) -> str:
        return f"{ANON_DIR_PREFIX}-{self.opts.volume_id}" if self.opts.volume_id else \
            ANON_DIR_PREFIX

    async def _local_discovery(self) -> None:
        """afr_attempt_local_discovery: a child whose pathinfo names this
        host is preferred for reads (the arbiter never)."""
        import socket
        host = socket.gethostname()
        for i, child in enumerate(self.children):
            if not self.child_up[i]:
                continue
            try:
                with _as(Caller(pid=GF_CLIENT_PID_SELF_HEALD, lk_owner=os.urandom(8))):
                    reply = await child.getxattr(Loc(gfid=ROOT_GFID, path="/"), PATHINFO_KEY,
                                                 None)
            except FopError:
                continue
            info = reply.dict.get(PATHINFO_KEY)
            if isinstance(info, bytes):
                info = info.rstrip(b"\0").decode(errors="replace")
            if isinstance(info, str) and cl.pathinfo_host(info) == host:
                self.local[i] = True
                if i != self.arbiter and self.read_child < 0 and \
                        self.opts.read_subvolume is None and \
                        self.opts.read_subvolume_index < 0:
                    self.log.info("selecting local read_child %s", child.name)
                    self._local_read_child = i

    # ======================================================================
    # Readability and the read child

    def _ctx(self, gfid: GFID) -> _InodeCtx:
        ctx = self._inodes.get(gfid)
        if ctx is None:
            ctx = self._inodes[gfid] = _InodeCtx(gfid, self.child_count)
            if len(self._inodes) > _MAX_INODES:
                self._evict()
        else:
            self._inodes.move_to_end(gfid)
        return ctx

    def _evict(self) -> None:
        for gfid in list(self._inodes)[: len(self._inodes) - _MAX_INODES // 2]:
            if not self._inodes[gfid].busy:
                del self._inodes[gfid]

    def _interpret(self, iatts: Sequence[Iatt | None], xdatas: Sequence[dict | None],
                   start_heal: bool = False) -> _InodeCtx | None:
        """afr_replies_interpret: record the readable children of the inode
        the replies describe; start a background heal when asked and a
        child that is up is accused."""
        first = next((ia for ia in iatts if ia is not None), None)
        if first is None:
            return None
        under_txn = any(xd and xd.get(INODELK_COUNT) for xd in xdatas if xd)
        r = cl.readables(iatts, xdatas, self.pending_keys, self.arbiter,
                         accuse_small_files=not under_txn)
        ctx = self._ctx(first.gfid)
        ctx.mode = first.mode
        ctx.data, ctx.metadata = r.data, r.metadata
        ctx.generation = self.event_generation
        if r.accused:
            ctx.need_refresh = True
            if self.selfheal_enabled and start_heal and any(
                    self.child_up[i] and not (r.data[i] and r.metadata[i])
                    for i in range(self.child_count) if i != self.arbiter):
                self._queue_heal(first.gfid)
        return ctx

    def _read_subvol_decide(self, ctx: _InodeCtx | None, iatt: Iatt) -> int:
        """afr_read_subvol_decide: a child readable for data and metadata."""
        if ctx is None or ctx.data is None:
            return -1
        both = [d and m for d, m in zip(ctx.data, ctx.metadata)]
        if not any(both):
            return -1
        return self._select_read(both, iatt.gfid, iatt.mode)

    def _select_read(self, readable: Sequence[bool], gfid: GFID, mode: int) -> int:
        """afr_read_subvol_select_by_policy."""
        if self.read_child >= 0 and readable[self.read_child]:
            return self.read_child
        local = getattr(self, "_local_read_child", -1)
        if self.opts.choose_local and local >= 0 and readable[local]:
            return local
        child = self._hash_child(readable, gfid, mode)
        if child >= 0 and readable[child]:
            return child
        return next((i for i, r in enumerate(readable) if r), -1)

    def _hash_child(self, readable: Sequence[bool], gfid: GFID, mode: int) -> int:
        """afr_hash_child for the six read-hash-modes."""
        mode_ = self.opts.read_hash_mode
        n = self.child_count
        candidates = [i for i in range(n) if readable[i] and i != self.arbiter]
        if mode_ == 1:
            return cl.super_fast_hash(bytes(gfid)) % n
        if mode_ == 2:
            raw = bytearray(bytes(gfid))
            if not _stat.S_ISDIR(mode):
                pid = os.getpid().to_bytes(4, "little")
                for k in range(4):
                    raw[k] ^= pid[k]
            return cl.super_fast_hash(bytes(raw)) % n
        if mode_ == 3:
            return min(candidates, key=lambda i: self.pending_reads[i], default=-1)
        if mode_ == 4:
            known = [i for i in candidates if self.latency[i] >= 0]
            return min(known, key=lambda i: self.latency[i], default=-1)
        if mode_ == 5:
            known = [i for i in candidates if self.latency[i] >= 0]
            return min(known, key=lambda i: (self.pending_reads[i] + 1) * self.latency[i],
                       default=-1)
        return -1

    async def _refresh(self, gfid: GFID, fd: Fd | None = None, loc: Loc | None = None,
                       start_heal: bool = True) -> _InodeCtx:
        """afr_inode_refresh: look the inode up on every child (fstat where
        `fd` is open) with the changelogs and recompute its readability."""
        ctx = self._ctx(gfid)
        if ctx.refreshing is not None:
            await ctx.refreshing.wait()
            if ctx.generation == self.event_generation and ctx.data is not None:
                return ctx
        ctx.refreshing = done = trio.Event()
        try:
            up = list(self.child_up)
            req = self._xattr_req({})
            req[LINK_COUNT] = INDEX_COUNT_KEY
            req[INODELK_DOM_COUNT] = self.domain
            fdctx = fd.ctx.get(self) if fd is not None else None
            if fd is not None and fdctx is not None:
                await self._fix_open(fd)
                targets = [i for i in range(self.child_count) if up[i] and fdctx.opened_on[i]]
                if not targets:
                    raise FopError(errno.EBADFD if any(up) else errno.ENOTCONN)
                replies = await self._fan(targets, lambda i: self.children[i].fstat(fd, req))
            else:
                targets = [i for i in range(self.child_count) if up[i]]
                if not targets:
                    raise FopError(errno.ENOTCONN)
                where = Loc(gfid=gfid, path=loc.path if loc is not None else None)
                replies = await self._fan(targets, lambda i: self.children[i].lookup(where, req))
            success = [_ok(r) for r in replies]
            if not any(success):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            if self.quorum_count and not cl.has_quorum(success, self.quorum_count):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            self._interpret([r.iatt if _ok(r) else None for r in replies],
                            [r.xdata if _ok(r) else None for r in replies],
                            start_heal=start_heal)
            ctx.need_refresh = False
            return ctx
        finally:
            ctx.refreshing = None
            done.set()

    def _readable_for(self, ctx: _InodeCtx, type_: str, op: str = "") -> list[bool]:
        """afr_inode_get_readable: EIO for a split-brain file (no child
        readable for data or for metadata), for a directory only when its
        metadata is split and metadata is wanted."""
        data = ctx.data or [False] * self.child_count
        metadata = ctx.metadata or [False] * self.child_count
        if _stat.S_ISDIR(ctx.mode):
            if (type_ == METADATA_TXN or op in ("stat", "fstat")) and not any(metadata):
                raise self._split_brain(ctx)
        elif not any(data) or not any(metadata):
            raise self._split_brain(ctx)
        if type_ == METADATA_TXN:
            return list(metadata)
        return list(data) if any(data) else list(self.child_up)

    def _split_brain(self, ctx: _InodeCtx) -> FopError:
        self.log.error("Failing operation on gfid %s: split-brain observed.", ctx.gfid)
        return FopError(errno.EIO, f"{ctx.gfid} is in split-brain")

    async def _read_txn(self, gfid: GFID, readfn: Callable[[int], Awaitable], *,
                        type_: str = DATA_TXN, op: str = "", fd: Fd | None = None,
                        loc: Loc | None = None):
        """afr_read_txn: read from the chosen child; refresh once and try
        the other readable children when it fails."""
        if self.quorum_count and not cl.has_quorum(self.child_up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        ctx = self._ctx(gfid)
        attempted = [not u for u in self.child_up]
        refreshed = False
        if ctx.data is None or ctx.need_refresh or ctx.generation != self.event_generation:
            ctx = await self._refresh(gfid, fd, loc)
            refreshed = True
        try:
            readable = self._readable_for(ctx, type_, op)
        except FopError as e:
            # afr_split_brain_read_subvol_get: replica.split-brain-choice
            # lets a split-brain file be read from the chosen copy
            choice = ctx.spb_choice
            if e.errno == errno.EIO and choice >= 0 and self.child_up[choice]:
                return await readfn(choice)
            raise
        readable = [r and self.child_up[i] and i != self.arbiter for i, r in enumerate(readable)]
        sub = self._select_read(readable, gfid, ctx.mode)
        if sub < 0 and not refreshed:
            ctx = await self._refresh(gfid, fd, loc)
            refreshed = True
            readable = [r and self.child_up[i] and i != self.arbiter
                        for i, r in enumerate(self._readable_for(ctx, type_, op))]
            sub = self._select_read(readable, gfid, ctx.mode)
        if sub < 0:
            raise FopError(errno.EIO if any(self.child_up) else errno.ENOTCONN,
                           f"no readable subvolume for {gfid}")
        last_error: FopError | None = None
        while sub >= 0:
            attempted[sub] = True
            self.pending_reads[sub] += 1
            try:
                return await readfn(sub)
            except FopError as e:
                last_error = e
            finally:
                self.pending_reads[sub] -= 1
            if not refreshed:
                refreshed = True
                try:
                    ctx = await self._refresh(gfid, fd, loc)
                    readable = [r and self.child_up[i] and i != self.arbiter
                                for i, r in enumerate(self._readable_for(ctx, type_, op))]
                except FopError:
                    pass
                sub = self._select_read(readable, gfid, ctx.mode)
                if sub >= 0 and not attempted[sub]:
                    continue
            sub = next((i for i in range(self.child_count)
                        if readable[i] and not attempted[i]), -1)
        raise last_error

    # ======================================================================
    # Opening and closing

    async def open(self, loc, flags, fd, xdata=None):
        """afr_open: on every up child, O_TRUNC done afterwards as a
        replicated ftruncate."""
        up = self._up_or_enotconn(quorum=True)
        ctx = fd.ctx[self] = _FdCtx([False] * self.child_count, flags)
        replies = await self._fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].open(loc, flags & ~os.O_TRUNC,
                                                                  fd, xdata))
        for i, r in enumerate(replies):
            ctx.opened_on[i] = _ok(r)
        self._replies_quorum(replies)
        if not any(ctx.opened_on):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        if flags & os.O_TRUNC:
            await self.ftruncate(fd, 0, None)
        good = next(r for r in replies if _ok(r))
        return OpenReply(fd, xdata=good.xdata)

    async def opendir(self, loc, fd, xdata=None):
        up = self._up_or_enotconn(quorum=True)
        ctx = fd.ctx[self] = _FdCtx([False] * self.child_count, 0, is_dir=True)
        replies = await self._fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].opendir(loc, fd, None))
        for i, r in enumerate(replies):
            ctx.opened_on[i] = _ok(r)
        self._replies_quorum(replies)
        if not any(ctx.opened_on):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        return OpenReply(fd)

    async def release(self, fd, xdata=None):
        await self._wake_fd_delayed(fd)
        return await self._release_all("release", fd)

    async def releasedir(self, fd, xdata=None):
        return await self._release_all("releasedir", fd)

    async def _release_all(self, name: str, fd: Fd):
        ctx = fd.ctx.pop(self, None)
        targets = [i for i in range(self.child_count)
                   if ctx is None or ctx.opened_on[i]]
        await self._fan(targets, lambda i: getattr(self.children[i], name)(fd, None))
        return Reply()

    async def flush(self, fd, xdata=None):
        """afr_flush: the fd's delayed post-op first, then every up child."""
        await self._wake_fd_delayed(fd)
        targets = self._fd_targets(fd)
        replies = await self._fan(targets, lambda i: self.children[i].flush(fd, xdata))
        good = [r for r in replies if _ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return Reply(xdata=good[0].xdata)

    async def fsyncdir(self, fd, datasync, xdata=None):
        replies = await self._fan(self._fd_targets(fd),
                                  lambda i: self.children[i].fsyncdir(fd, datasync, xdata))
        good = [r for r in replies if _ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return Reply(xdata=good[0].xdata)

    async def statfs(self, loc, xdata=None):
        """afr_statfs: the child with the least space available answers."""
        up = self._up_or_enotconn(quorum=True)
        replies = await self._fan([i for i in range(self.child_count) if up[i]],
                                  lambda i: self.children[i].statfs(loc, xdata))
        good = [r for r in replies if _ok(r)]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENOTCONN)
        return min(good, key=lambda r: r.statvfs.bavail)

    def _fd_ctx(self, fd: Fd) -> _FdCtx:
        ctx = fd.ctx.get(self)
        if ctx is None:
            # an fd opened below us or anonymous: treat it as open everywhere
            ctx = fd.ctx[self] = _FdCtx([True] * self.child_count, fd.flags, fd.is_dir)
        return ctx

    def _fd_targets(self, fd: Fd) -> list[int]:
        ctx = self._fd_ctx(fd)
        return [i for i in range(self.child_count) if self.child_up[i] and ctx.opened_on[i]]

    async def _fix_open(self, fd: Fd) -> None:
        """afr_fix_open: open the fd on children that came up after it was
        opened (or whose open failed), as GlusterFS does before using it."""
        ctx = self._fd_ctx(fd)
        if fd.gfid is None:
            return
        need = [i for i in range(self.child_count) if self.child_up[i] and not ctx.opened_on[i]]
        if not need:
            return
        loc = Loc(gfid=fd.gfid)
        if ctx.is_dir:
            replies = await self._fan(need, lambda i: self.children[i].opendir(loc, fd, None))
        else:
            flags = ctx.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC)
            replies = await self._fan(need, lambda i: self.children[i].open(loc, flags, fd,
                                                                            None))
        for i in need:
            ctx.opened_on[i] = _ok(replies[i])

    # ======================================================================
    # Inode read fops

    async def stat(self, loc, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].stat(loc, xdata),
                                    op="stat", loc=loc)

    async def fstat(self, fd, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(fd.gfid, lambda i: self.children[i].fstat(fd, xdata),
                                    op="fstat", fd=fd)

    async def access(self, loc, mask, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].access(loc, mask, xdata),
                                    type_=METADATA_TXN, loc=loc)

    async def readlink(self, loc, size, xdata=None):
        gfid = await self._gfid_of(loc)
        return await self._read_txn(gfid, lambda i: self.children[i].readlink(loc, size, xdata),
                                    loc=loc)

    async def readv(self, fd, size, offset, flags, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].readv(fd, size, offset, flags, xdata), fd=fd)

    async def seek(self, fd, offset, what, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].seek(fd, offset, what, xdata), fd=fd)

    async def rchecksum(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        return await self._read_txn(
            fd.gfid, lambda i: self.children[i].rchecksum(fd, offset, length, xdata), fd=fd)

    async def getxattr(self, loc, name, xdata=None):
        """afr_getxattr: the heal keys, pathinfo and node-uuid of every
        child, or a read transaction on the metadata."""
        special = await self._special_getxattr(loc, name, xdata)
        if special is not None:
            return special
        gfid = await self._gfid_of(loc)
        reply = await self._read_txn(
            gfid, lambda i: self.children[i].getxattr(loc, name, xdata),
            type_=METADATA_TXN, loc=loc)
        return self._filter_xattrs(reply, name)

    async def fgetxattr(self, fd, name, xdata=None):
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY, NODE_UUID_KEY):
            return await self._aggregate_xattr(name, lambda i: self.children[i].fgetxattr(
                fd, name, xdata), self._fd_targets(fd))
        await self._fix_open(fd)
        reply = await self._read_txn(
            fd.gfid, lambda i: self.children[i].fgetxattr(fd, name, xdata),
            type_=METADATA_TXN, fd=fd)
        return self._filter_xattrs(reply, name)

    def _filter_xattrs(self, reply, name):
        """afr_filter_xattrs: the changelogs stay inside replicate unless
        named."""
        if name:
            return reply
        kept = {k: v for k, v in reply.dict.items()
                if not k.startswith(AFR_XATTR_PREFIX + ".")}
        return DictReply(kept, xdata=reply.xdata)

    async def _special_getxattr(self, loc, name, xdata):
        if not name:
            return None
        if name == HEAL_INFO_KEY:
            gfid = await self._gfid_of(loc)
            return DictReply({"heal-info": await self.heal_info(gfid)})
        if name == SBRAIN_STATUS_KEY:
            gfid = await self._gfid_of(loc)
            return DictReply({name: await self.split_brain_status(gfid)})
        if name == HEAL_SBRAIN_KEY:
            gfid = await self._gfid_of(loc)
            return await self._heal_sbrain_xattr(gfid, xdata or {})
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY, NODE_UUID_KEY):
            up = self._up_or_enotconn()
            return await self._aggregate_xattr(
                name, lambda i: self.children[i].getxattr(loc, name, xdata),
                [i for i in range(self.child_count) if up[i]])
        return None

    async def _aggregate_xattr(self, name, call, targets):
        """afr_getxattr_pathinfo_cbk: ``(<REPLICATE:name> <child 1> <child 2>)``;
        node-uuid answers the first child's."""
        replies = await self._fan(targets, call)
        good = [(i, r) for i, r in enumerate(replies) if _ok(r) and name in r.dict]
        if not good:
            raise FopError(self._final_errno(replies) or errno.ENODATA)
        if name == NODE_UUID_KEY:
            return DictReply({name: good[0][1].dict[name]})
        parts = []
        for _, r in good:
            v = r.dict[name]
            parts.append(v.rstrip(b"\0").decode() if isinstance(v, bytes) else str(v))
        return DictReply({name: f"(<REPLICATE:{self.name}> {' '.join(parts)})"})

    async def readdir(self, fd, size, offset, xdata=None):
        return await self._readdir("readdir", fd, size, offset, xdata)

    async def readdirp(self, fd, size, offset, xdata=None):
        return await self._readdir("readdirp", fd, size, offset, xdata)

    async def _readdir(self, name, fd, size, offset, xdata):
        """afr_do_readdir: a listing that starts at offset 0 may pick and
        fail over to any readable child; continuing it sticks to that child."""
        ctx = self._fd_ctx(fd)

        async def wind(i):
            ctx.readdir_subvol = i
            reply = await getattr(self.children[i], name)(fd, size, offset, xdata)
            if fd.gfid == ROOT_GFID:
                reply.entries = [e for e in reply.entries if not self._is_private_dir(e.name)]
            return reply

        if offset == 0 or ctx.readdir_subvol < 0:
            await self._fix_open(fd)
            return await self._read_txn(fd.gfid, wind, fd=fd)
        sub = ctx.readdir_subvol
        if not self.child_up[sub]:
            raise FopError(errno.ENOTCONN, f"{self.children[sub].name} went away during "
                                           f"the listing")
        return await wind(sub)

    # ======================================================================
    # The transaction engine (afr-transaction.c, afr-lk-common.c)

    def _new_txn(self, type_: str, op: str, **kw) -> _Txn:
        return _Txn(type=type_, op=op, n=self.child_count, caller=fops.caller.get(),
                    up=list(self.child_up), generation=self.event_generation, **kw)

    async def _transaction(self, txn: _Txn, wind: Callable[[int], Awaitable],
                           finalize: Callable[[_Txn], Awaitable]):
        """afr_transaction: quorum, lock, pre-op, the fop on every locked
        child, `finalize` (which computes the fop's answer from the replies
        or raises its error), post-op, unlock."""
        if self.quorum_count and not cl.has_quorum(txn.up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        if not any(txn.up):
            raise FopError(errno.ENOTCONN, "no subvolume is up")
        if txn.type == METADATA_TXN and txn.ctx is not None:
            ctx = txn.ctx
            if ctx.data is None or ctx.need_refresh or ctx.generation != self.event_generation:
                await self._refresh(txn.gfid, txn.fd, txn.loc)
            self._readable_for(ctx, METADATA_TXN)
        eager = bool(self.opts.eager_lock) and txn.type in (DATA_TXN, METADATA_TXN) and \
            txn.ctx is not None
        if eager:
            await self._eager_begin(txn)
        else:
            txn.owner = os.urandom(8)
            await self._lock(txn)
            try:
                await self._pre_op(txn)
            except BaseException:
                await self._cleanup(self._unlock(txn))
                raise
        result: Any = None
        error: BaseException | None = None
        try:
            await self._perform_fop(txn, wind)
            try:
                result = await finalize(txn)
            except FopError as e:
                error = e
        except BaseException as e:
            # cancelled in the middle: what did not answer counts as failed
            for i in range(self.child_count):
                if txn.pre_op[i] and txn.replies[i] is None:
                    txn.failed[i] = True
            error = e
        txn.op_ok = error is None
        if error is not None and isinstance(error, FopError):
            txn.op_errno = error.errno
        if eager:
            await self._cleanup(self._eager_end(txn))
        else:
            async def done():
                await self._post_op(txn, final=True)
                await self._unlock(txn)
            await self._cleanup(done())
        if not txn.op_ok:
            if error is not None:
                raise error
            raise FopError(txn.op_errno or errno.EIO)
        return result

    async def _cleanup(self, coro) -> None:
        """Unlock and post-op happen even when the caller is cancelled
        (bounded, so a dead brick cannot hang the caller forever)."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + _CLEANUP_TIMEOUT):
            await coro

    # -- locking --------------------------------------------------------------

    def _owner_caller(self, txn: _Txn) -> Caller:
        return dataclasses.replace(txn.caller, lk_owner=txn.owner)

    def _lock_call(self, lockee: _Lockee, i: int, cmd, txn: _Txn, unlock=False):
        child = self.children[i]
        if lockee.kind == "entry":
            c = EntrylkCmd.UNLOCK if unlock else cmd
            return child.entrylk(self.domain, lockee.loc, lockee.basename, c,
                                 EntrylkType.WRLCK, None)
        flock = Flock(type=LockType.UNLCK if unlock else LockType.WRLCK,
                      start=lockee.start, len=lockee.length)
        c = LockCmd.SETLK if unlock else cmd
        fdctx = lockee.fd.ctx.get(self) if lockee.fd is not None else None
        if lockee.fd is not None and (fdctx is None or fdctx.opened_on[i]):
            return child.finodelk(self.domain, lockee.fd, c, flock, None)
        return child.inodelk(self.domain, lockee.loc or Loc(gfid=lockee.fd.gfid), c, flock,
                             None)

    async def _lock(self, txn: _Txn) -> None:
        """afr_lock_nonblocking, then afr_blocking_lock: every lockee on every
        up child at once without waiting; on any failure, release and take
        them one child after another, waiting.  At least one child must
        hold every lockee."""
        n = self.child_count
        lockees = txn.lockees
        held = [[False] * n for _ in lockees]
        txn.held = held
        caller = self._owner_caller(txn)
        pairs = [(k, i) for k in range(len(lockees)) for i in range(n) if txn.up[i]]
        nb_cmd = {"entry": EntrylkCmd.LOCK_NB, "inode": LockCmd.SETLK}
        results = await self._gather(
            [lambda k=k, i=i: self._lock_call(lockees[k], i, nb_cmd[lockees[k].kind], txn)
             for k, i in pairs], caller)
        failed = False
        for (k, i), r in zip(pairs, results):
            if _ok(r):
                held[k][i] = True
            else:
                failed = True
                txn.lock_errno = r.errno
                if r.errno == errno.ENOSYS:
                    self.log.error("subvolume does not support locking. please load "
                                   "features/locks xlator on server")
        if any(_err(r) == errno.ENOSYS for r in results):
            await self._unlock(txn)
            raise FopError(errno.ENOSYS, "subvolume does not support locking")
        if failed:
            await self._unlock(txn)
            block_cmd = {"entry": EntrylkCmd.LOCK, "inode": LockCmd.SETLKW}
            tok = fops.caller.set(caller)
            try:
                for k, lockee in enumerate(lockees):
                    for i in range(n):
                        if not txn.up[i]:
                            continue
                        try:
                            await self._lock_call(lockee, i, block_cmd[lockee.kind], txn)
                            held[k][i] = True
                        except FopError as e:
                            txn.lock_errno = e.errno
            finally:
                fops.caller.reset(tok)
        for i in range(n):
            txn.locked[i] = all(held[k][i] for k in range(len(lockees)))
        if not any(txn.locked):
            await self._unlock(txn)
            self.log.warning("Unable to lock %s on any subvolume while attempting %s",
                             txn.gfid or txn.loc, txn.op)
            raise FopError(txn.lock_errno or errno.ENOTCONN, "could not lock any subvolume")

    async def _unlock(self, txn: _Txn, held=None) -> None:
        held = held if held is not None else getattr(txn, "held", None)
        if not held:
            return
        calls = []
        for k, lockee in enumerate(txn.lockees):
            for i in range(self.child_count):
                if held[k][i]:
                    calls.append(lambda k=k, i=i, lk=lockee: self._lock_call(lk, i, None, txn,
                                                                             unlock=True))
                    held[k][i] = False
        await self._gather(calls, self._owner_caller(txn))

    # -- eager locking ----------------------------------------------------------

    async def _eager_begin(self, txn: _Txn) -> None:
        """afr_transaction_start + __afr_eager_lock_handle."""
        lock = txn.eager = txn.ctx.locks[txn.slot]
        txn.owner = lock.owner
        while True:
            if lock.acquired and lock.generation != self.event_generation:
                lock.release = True
                if lock.delayed is not None and not lock.owners:
                    await self._cleanup(self._fire_delayed(lock))
                    continue
            if lock.release:
                await lock.changed.wait()
                continue
            if lock.delayed is not None:
                prev, lock.delayed = lock.delayed, None
                prev.delay_scope.cancel()
                txn.takeover = prev
                break
            if lock.owners or lock.acquiring:
                if not lock.acquired or any(txn.overlaps(o) for o in lock.owners):
                    await lock.changed.wait()
                    continue
                break
            if lock.acquired:
                break
            # nothing held: this transaction takes the lock for everyone
            lock.acquiring = True
            lock.owners.append(txn)
            try:
                await self._lock(txn)
            except BaseException:
                lock.acquiring = False
                lock.owners.remove(txn)
                lock.wake()
                raise
            lock.locked = list(txn.locked)
            lock.held = txn.held
            lock.generation = txn.generation
            try:
                await self._pre_op(txn)
            except BaseException:
                # afr_handle_lock_acquire_failure: the lock goes, waiters retry
                lock.acquiring = False
                lock.owners.remove(txn)
                await self._cleanup(self._unlock(txn))
                lock.locked = None
                lock.wake()
                raise
            lock.acquiring = False
            lock.acquired = True
            lock.wake()
            return
        # sharing a lock that is held
        txn.locked = list(lock.locked)
        txn.held = lock.held
        lock.owners.append(txn)
        try:
            await self._pre_op(txn)
        except BaseException:
            lock.owners.remove(txn)
            lock.post_op.append(txn)
            lock.release = True
            await self._cleanup(self._eager_unlock(txn))
            raise
        finally:
            if txn.takeover is not None:
                prev, txn.takeover = txn.takeover, None
                await self._cleanup(self._eager_finish(prev, final=False))

    async def _eager_end(self, txn: _Txn) -> None:
        """afr_changelog_post_op with an eager lock: delay the post-op of a
        write when nobody else uses the lock, otherwise do it now."""
        lock = txn.eager
        lock.owners.remove(txn)
        lock.post_op.append(txn)
        delay = self.opts.post_op_delay_secs
        delayed = False
        if not txn.nothing_failed() or not txn.op_ok:
            lock.release = True
        elif self._conflicting_ops_waiting(txn, lock):
            lock.release = True
        elif lock.owners or lock.release:
            pass
        elif delay and not txn.disable_delay and txn.op in DELAY_OPS:
            delayed = True
        if not delayed and not lock.owners:
            lock.release = True
        lock.wake()
        if delayed:
            lock.delayed = txn
            txn.delay_scope = trio.CancelScope(deadline=trio.current_time() + delay)
            self.spawn(self._delay_timer, txn, name=f"{self.name}:delayed-post-op")
            return
        await self._eager_finish(txn, final=lock.release)

    def _conflicting_ops_waiting(self, txn: _Txn, lock: _EagerLock) -> bool:
        """afr_are_conflicting_ops_waiting: another client's lock or open fd."""
        if txn.type == METADATA_TXN:
            return txn.ctx.open_fd_count > 1
        return lock.num_inodelks > 1

    async def _delay_timer(self, txn: _Txn) -> None:
        lock = txn.eager
        with txn.delay_scope:
            await trio.sleep_forever()
        if lock.delayed is not txn:
            return      # taken over by the next write, or finished by a flush
        lock.delayed = None
        if not lock.owners:
            lock.release = True
        await self._cleanup(self._eager_finish(txn, final=lock.release))

    async def _fire_delayed(self, lock: _EagerLock) -> None:
        """End a delayed post-op now (flush, release, contention, a child's
        state change, shutdown)."""
        txn = lock.delayed
        if txn is None:
            return
        lock.delayed = None
        txn.delay_scope.cancel()
        lock.release = True
        await self._eager_finish(txn, final=True)

    async def _wake_fd_delayed(self, fd: Fd) -> None:
        """afr_delayed_changelog_wake_resume for flush and release."""
        ctx = self._inodes.get(fd.gfid) if fd.gfid is not None else None
        if ctx is None:
            return
        for lock in ctx.locks.values():
            if lock.delayed is not None and lock.delayed.fd is fd:
                await self._cleanup(self._fire_delayed(lock))

    async def _flush_all_delayed(self) -> None:
        for ctx in list(self._inodes.values()):
            for lock in ctx.locks.values():
                if lock.delayed is not None:
                    await self._fire_delayed(lock)

    async def _eager_finish(self, txn: _Txn, final: bool) -> None:
        await self._post_op(txn, final=final)
        await self._eager_unlock(txn)

    async def _eager_unlock(self, txn: _Txn) -> None:
        """afr_unlock with an eager lock: the last user releases it."""
        lock = txn.eager
        if txn in lock.post_op:
            lock.post_op.remove(txn)
        if not lock.owners and not lock.post_op and lock.locked is not None:
            lock.release = True
            try:
                await self._unlock(txn, lock.held)
            finally:
                lock.acquired = False
                lock.release = False
                lock.locked = None
                lock.held = None
                txn.ctx.write_subvol = None
                lock.wake()
        txn.done.set()

    # -- changelog ------------------------------------------------------------

    async def _pre_op(self, txn: _Txn) -> None:
        """afr_changelog_pre_op."""
        n = self.child_count
        for i in range(n):
            txn.pre_op[i] = txn.locked[i]
            txn.failed[i] = not txn.locked[i]
        txn.optimistic = bool(self.opts.optimistic_change_log) and all(txn.locked)
        if self._pre_op_inherit(txn):
            return
        if not any(txn.locked):
            raise FopError(errno.ENOTCONN, "nothing locked")
        if self.quorum_count and not cl.has_quorum(txn.locked, self.quorum_count):
            raise FopError(txn.lock_errno or errno.ENOTCONN, "quorum is not met")
        if txn.type != DATA_TXN and txn.optimistic:
            return          # optimistic changelog: no pre-op when all are locked
        dirty = cl.one_slot(txn.slot, 1)
        xattr = cl.changelog_dict(self.pending_keys, None, self.dirty_key, dirty)
        txn.dirtied = True
        await self._changelog_do(txn, xattr, ENTRY_IN_KEY)
        if not any(txn.pre_op[i] and not txn.failed[i] for i in range(n)):
            raise FopError(txn.op_errno or errno.ENOTCONN, "pre-op failed everywhere")

    def _pre_op_inherit(self, txn: _Txn) -> bool:
        """afr_changelog_pre_op_inherit: a data transaction under a held
        eager lock rides on the dirty mark already on disk."""
        if txn.type != DATA_TXN or txn.eager is None:
            return False
        ctx, slot = txn.ctx, txn.slot
        if not ctx.on_disk[slot] or txn.pre_op != ctx.pre_op_done[slot]:
            return False
        ctx.inherited[slot] += 1
        txn.inherited = True
        txn.dirtied = True
        return True

    def _pre_op_update(self, txn: _Txn) -> None:
        """afr_changelog_pre_op_update: account a hard pre-op for inheriting."""
        if txn.type not in (DATA_TXN, METADATA_TXN) or txn.inherited or not txn.dirtied \
                or not txn.nothing_failed() or txn.ctx is None:
            return
        ctx, slot = txn.ctx, txn.slot
        done = [not f for f in txn.failed]
        if not ctx.on_disk[slot]:
            ctx.pre_op_done[slot] = done
        elif ctx.pre_op_done[slot] != done:
            txn.no_uninherit = True
            return
        ctx.on_disk[slot] += 1

    def _pre_op_uninherit(self, txn: _Txn) -> bool:
        """afr_changelog_pre_op_uninherit (idempotent): True when another
        transaction still holds the dirty mark, so no undirty is due."""
        if txn.type != DATA_TXN or txn.ctx is None:
            return not txn.dirtied
        if txn.no_uninherit:
            return False
        if txn.uninherit_value is not None:
            return txn.uninherit_value
        ctx, slot = txn.ctx, txn.slot
        if txn.pre_op != ctx.pre_op_done[slot]:
            value = not txn.dirtied
        else:
            if ctx.inherited[slot]:
                value = True
                ctx.inherited[slot] -= 1
            elif ctx.on_disk[slot]:
                value = False
                ctx.on_disk[slot] -= 1
            else:
                value = False
            if not ctx.inherited[slot] and not ctx.on_disk[slot]:
                ctx.pre_op_done[slot] = [False] * self.child_count
        txn.uninherit_value = value
        return value

    async def _changelog_do(self, txn: _Txn, xattr: dict, entry_key: str | None,
                            xdatas: list | None = None) -> None:
        """afr_changelog_do: xattrop ADD_ARRAY on every child that did the
        pre-op and has not failed - on the inode (fd) for data and
        metadata, on the parent(s) for entry transactions."""
        targets = [i for i in range(self.child_count) if txn.pre_op[i] and not txn.failed[i]]
        if not targets:
            return
        calls, owners = [], []
        for i in targets:
            if txn.type in (DATA_TXN, METADATA_TXN):
                child = self.children[i]
                if txn.fd is not None:
                    calls.append(lambda c=child: c.fxattrop(txn.fd, XattropType.ADD_ARRAY,
                                                            xattr, None))
                else:
                    loc = Loc(gfid=txn.gfid, path=txn.loc.path if txn.loc else None)
                    calls.append(lambda c=child, l=loc: c.xattrop(l, XattropType.ADD_ARRAY,
                                                                  xattr, None))
                owners.append(i)
            else:
                for k, (ploc, name) in enumerate(txn.parents):
                    xd = None
                    if entry_key is not None and self.opts.granular_entry_heal and name:
                        xd = {entry_key: name}
                    if xdatas is not None:
                        xd = xdatas[k]
                    child = self.children[i]
                    calls.append(lambda c=child, l=ploc, x=xd: c.xattrop(
                        l, XattropType.ADD_ARRAY, xattr, x))
                    owners.append(i)
        results = await self._gather(calls, self._owner_caller(txn))
        for i, r in zip(owners, results):
            if _ok(r):
                if txn.changelog_xdata[i] is None:
                    txn.changelog_xdata[i] = r.dict
            else:
                txn.op_errno = r.errno
                txn.failed[i] = True

    async def _post_op(self, txn: _Txn, final: bool) -> None:
        """afr_changelog_post_op_safe + afr_changelog_post_op_do."""
        n = self.child_count
        if final and txn.fd is not None and txn.type == DATA_TXN and txn.ctx is not None \
                and not (self._pre_op_uninherit(txn) and txn.nothing_failed()) \
                and txn.ctx.unstable_write and self.opts.ensure_durability:
            txn.ctx.unstable_write = False
            await self._changelog_fsync(txn)
        self._handle_quorum(txn)
        nothing_failed = txn.nothing_failed()
        need_undirty = not self._pre_op_uninherit(txn)
        if not txn.op_ok and not nothing_failed:
            if self._need_dirty_marking(txn):
                await self._changelog_do(txn, {self.dirty_key: cl.encode(
                    cl.one_slot(txn.slot, 1))}, None)
            return
        if nothing_failed and not need_undirty:
            return
        rows = [cl.one_slot(txn.slot, 1) if txn.failed[i] else (0, 0, 0) for i in range(n)]
        dirty = cl.one_slot(txn.slot, -1) if need_undirty else (0, 0, 0)
        xattr = cl.changelog_dict(self.pending_keys, rows, self.dirty_key, dirty)
        xdatas = None
        if txn.type in (ENTRY_TXN, RENAME_TXN) and self.opts.granular_entry_heal:
            if nothing_failed:
                key = ENTRY_OUT_KEY if not any(txn.failed) and txn.op_ok else None
            else:
                key = ENTRY_IN_KEY
            xdatas = [{key: name} if key and name else None for _, name in txn.parents]
        await self._changelog_do(txn, xattr, None, xdatas)
        if not cl.has_quorum([not f for f in txn.failed], self.quorum_count):
            txn.op_ok = False
            txn.op_errno = txn.op_errno or errno.ENOTCONN

    async def _changelog_fsync(self, txn: _Txn) -> None:
        """afr_changelog_fsync: unstable writes reach the disk before the
        post-op that says they did."""
        targets = [i for i in range(self.child_count) if txn.pre_op[i] and not txn.failed[i]]
        xdata = {"batch-fsync": 1, INTERNAL_FOP: "yes"}
        results = await self._fan(targets, lambda i: self.children[i].fsync(txn.fd, 1, xdata),
                                  self._owner_caller(txn))
        for i in targets:
            if not _ok(results[i]):
                self.log.warning("fsync(%s) failed on subvolume %s. Transaction was %s",
                                 txn.gfid, self.children[i].name, txn.op)
                txn.failed[i] = True

    def _handle_quorum(self, txn: _Txn) -> None:
        """afr_handle_quorum: a fop that succeeded on fewer than a quorum of
        children fails, and accuses nobody, rather than make a split-brain."""
        if not self.quorum_count or not txn.op_ok:
            return
        success = [txn.pre_op[i] and not txn.failed[i] for i in range(self.child_count)]
        if cl.has_quorum(success, self.quorum_count):
            return
        if not self._need_dirty_marking(txn):
            for i in range(self.child_count):
                if txn.pre_op[i]:
                    txn.failed[i] = True
        txn.op_ok = False
        errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
        txn.op_errno = cl.final_errno(errors) or errno.ENOTCONN
        self.log.warning("%s: Failing %s as quorum is not met", txn.gfid or txn.loc, txn.op)

    def _need_dirty_marking(self, txn: _Txn) -> bool:
        """afr_need_dirty_marking: an optimistic entry transaction that lost
        quorum marks the parent dirty instead of accusing anyone."""
        if not self.quorum_count or not txn.optimistic:
            return False
        if txn.type in (DATA_TXN, METADATA_TXN):
            return False
        if all(txn.failed):
            return False
        success = [txn.pre_op[i] and not txn.failed[i] for i in range(self.child_count)]
        return not cl.has_quorum(success, self.quorum_count)

    # -- the fop itself --------------------------------------------------------

    async def _perform_fop(self, txn: _Txn, wind: Callable[[int], Awaitable]) -> None:
        """afr_transaction_perform_fop + afr_transaction_fop (+ the arbiter's
        afr_txn_arbitrate_fop)."""
        n = self.child_count
        if txn.type == DATA_TXN:
            # afr_write_subvol_set: the copies no pre-op reply accuses; a
            # write that reaches none of them fails (EIO) - it would only
            # update stale copies
            if txn.inherited and txn.ctx is not None and txn.ctx.write_subvol is not None:
                txn.write_subvol = txn.ctx.write_subvol
            else:
                accused = cl.accused(txn.changelog_xdata, self.pending_keys, DATA)
                txn.write_subvol = [not accused[i] and i != self.arbiter for i in range(n)]
                if txn.eager is not None and txn.ctx.write_subvol is None:
                    txn.ctx.write_subvol = txn.write_subvol
        self._pre_op_update(txn)
        targets = [i for i in range(n) if txn.pre_op[i] and not txn.failed[i]]
        if not targets or not cl.has_quorum([not f for f in txn.failed], self.quorum_count):
            raise FopError(txn.op_errno or errno.ENOTCONN, "no subvolume to operate on")
        if txn.write_subvol is not None and \
                not any(w and not txn.failed[i] for i, w in enumerate(txn.write_subvol)):
            raise FopError(errno.EIO, "no good copy of the file is up")
        if self.arbiter is not None:
            srcs = self._pre_op_sources(txn)
            if sum(srcs) < 2 and srcs[self.arbiter]:
                for i in range(n):
                    txn.failed[i] = True
                raise FopError(errno.ENOTCONN, "the arbiter is the only source")
        results = await self._fan(targets, wind)
        for i in targets:
            r = results[i]
            txn.replies[i] = r
            if not _ok(r) and not (txn.type in (ENTRY_TXN, RENAME_TXN)
                                   and r.errno == errno.ENOTEMPTY):
                txn.failed[i] = True
        # afr_handle_symmetric_errors: the same error everywhere is no failure
        errs = [r for r in txn.replies if r is not None]
        if errs and all(isinstance(r, FopError) for r in errs):
            codes = {r.errno for r in errs}
            if len(codes) == 1 and errno.ENOTCONN not in codes:
                for i in range(n):
                    txn.failed[i] = not txn.locked[i]

    def _pre_op_sources(self, txn: _Txn) -> list[bool]:
        """afr_compute_pre_op_sources: locked, pre-op done, accused by no one."""
        n = self.child_count
        sources = [not txn.failed[i] for i in range(n)]
        for xd in txn.changelog_xdata:
            if not xd:
                continue
            for j in range(n):
                if cl.pending_of(xd, self.pending_keys[j], txn.slot):
                    sources[j] = False
        return sources

    # -- helpers ------------------------------------------------------------

    async def _gather(self, calls: Sequence[Callable[[], Awaitable]],
                      caller: Caller | None = None) -> list:
        """Run every call concurrently; a FopError is its call's result."""
        results: list = [None] * len(calls)

        async def one(k):
            if caller is not None:
                fops.caller.set(caller)
            try:
                results[k] = await calls[k]()
            except FopError as e:
                results[k] = e
        if len(calls) == 1:
            tok = fops.caller.set(caller) if caller is not None else None
            try:
                results[0] = await calls[0]()
            except FopError as e:
                results[0] = e
            finally:
                if tok is not None:
                    fops.caller.reset(tok)
            return results
        async with trio.open_nursery() as nursery:
            for k in range(len(calls)):
                nursery.start_soon(one, k)
        return results

    async def _fan(self, targets: Sequence[int], fn: Callable[[int], Awaitable],
                   caller: Caller | None = None) -> list:
        """`fn(i)` on each child in `targets` concurrently; the result list
        has a reply or FopError per target and None elsewhere."""
        results = await self._gather([lambda i=i: fn(i) for i in targets], caller)
        out: list = [None] * self.child_count
        for i, r in zip(targets, results):
            out[i] = r
        return out

    def _up_or_enotconn(self, quorum: bool = False) -> list[bool]:
        up = list(self.child_up)
        if not any(up):
            raise FopError(errno.ENOTCONN, "no subvolume is up")
        if quorum and self.quorum_count and not cl.has_quorum(up, self.quorum_count):
            raise FopError(errno.ENOTCONN, "quorum is not met")
        return up

    def _replies_quorum(self, replies) -> None:
        """afr_handle_replies_quorum."""
        if self.quorum_count and not cl.has_quorum([_ok(r) for r in replies],
                                                   self.quorum_count):
            raise FopError(self._final_errno(replies) or errno.ENOTCONN,
                           "quorum is not met")

    @staticmethod
    def _final_errno(replies) -> int:
        return cl.final_errno([r.errno for r in replies if isinstance(r, FopError)])

    async def _gfid_of(self, loc: Loc) -> GFID:
        if loc.gfid is not None:
            return loc.gfid
        return (await self.lookup(loc, None)).iatt.gfid

    # ======================================================================
    # Inode write fops (afr-inode-write.c)

    def _inode_txn(self, type_: str, op: str, *, fd: Fd | None = None,
                   loc: Loc | None = None, gfid: GFID | None = None,
                   start: int = 0, length: int = 0) -> _Txn:
        gfid = gfid if gfid is not None else (fd.gfid if fd is not None else loc.gfid)
        txn = self._new_txn(type_, op, gfid=gfid, fd=fd, loc=loc, start=start, length=length)
        txn.ctx = self._ctx(gfid)
        if type_ == METADATA_TXN:
            lstart, llen = METADATA_LOCK_START, 0
        elif self.arbiter is not None or self.opts.eager_lock or self.opts.full_lock:
            lstart, llen = 0, 0      # the whole file: no network split can interleave
        else:
            lstart, llen = start, length
        txn.lockees = [_Lockee("inode", loc=Loc(gfid=gfid), fd=fd, start=lstart, length=llen)]
        return txn

    async def _inode_write_finalize(self, txn: _Txn):
        """__afr_inode_write_finalize: the reply with the largest op_ret,
        the read child's on a tie."""
        ctx = txn.ctx
        readable = (ctx.metadata if txn.type == METADATA_TXN else ctx.data) \
            if ctx is not None and ctx.data is not None else None
        read = self._select_read(readable, txn.gfid, ctx.mode) if readable else -1
        best = None
        for i, r in enumerate(txn.replies):
            if not _ok(r):
                continue
            count = getattr(r, "count", 0)
            if best is None or count > getattr(best, "count", 0) or \
                    (count == getattr(best, "count", 0) and i == read):
                best = r
            xd = r.xdata or {}
            if isinstance(xd.get(INODELK_COUNT), int) and txn.eager is not None:
                txn.eager.num_inodelks = max(txn.eager.num_inodelks if txn.op != "writev"
                                             else 0, xd[INODELK_COUNT])
        if best is None:
            errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
            raise FopError(cl.final_errno(errors) or txn.op_errno or errno.ENOTCONN)
        return best

    async def _inode_write(self, txn: _Txn, wind):
        return await self._transaction(txn, wind, self._inode_write_finalize)

    async def writev(self, fd, data, offset, flags, xdata=None):
        """afr_writev: a data transaction; the arbiter gets one byte."""
        await self._fix_open(fd)
        length = sum(len(b) for b in data) if isinstance(data, (list, tuple)) else len(data)
        ctx_fd = self._fd_ctx(fd)
        append = bool(ctx_fd.flags & os.O_APPEND)
        txn = self._inode_txn(DATA_TXN, "writev", fd=fd, start=0 if append else offset,
                              length=0 if append else length)
        txn.stable_write = bool((ctx_fd.flags | flags) & (os.O_SYNC | os.O_DSYNC))
        req = dict(xdata or {})
        req[ACTIVE_FD_COUNT] = UInt(4)
        req[INODELK_DOM_COUNT] = self.domain
        req[WRITE_IS_APPEND] = UInt(4)

        def wind(i):
            if i == self.arbiter:
                return self.children[i].writev(fd, b"\xff", offset, flags, req)
            return self.children[i].writev(fd, data, offset, flags, req)

        async def finalize(t: _Txn):
            for i, r in enumerate(t.replies):
                if _ok(r) and i == self.arbiter and r.count == 1:
                    t.replies[i] = dataclasses.replace(r, count=length)
            append_write = all(_ok(r) and (r.xdata or {}).get(WRITE_IS_APPEND)
                               for r in t.replies if r is not None)
            if not t.stable_write and not append_write:
                t.ctx.unstable_write = True
            for r in t.replies:
                if _ok(r) and isinstance((r.xdata or {}).get(ACTIVE_FD_COUNT), int):
                    t.ctx.open_fd_count = max(t.ctx.open_fd_count, r.xdata[ACTIVE_FD_COUNT])
            if t.eager is not None:
                counts = [(r.xdata or {}).get(INODELK_COUNT) for r in t.replies if _ok(r)]
                counts = [c for c in counts if isinstance(c, int)]
                if counts:
                    t.eager.num_inodelks = max(counts)
            best = await self._inode_write_finalize(t)
            # afr_writev_handle_short_writes: a shorter write is a failure
            for i, r in enumerate(t.replies):
                if _ok(r) and r.count < best.count:
                    t.failed[i] = True
            return WriteReply(best.prebuf, best.postbuf, count=best.count, xdata=best.xdata)

        return await self._transaction(txn, wind, finalize)

    async def truncate(self, loc, offset, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(DATA_TXN, "truncate", loc=loc, gfid=gfid, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].truncate(loc, offset, xdata))

    async def ftruncate(self, fd, offset, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "ftruncate", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].ftruncate(fd, offset, xdata))

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "fallocate", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].fallocate(fd, mode, offset, length, xdata))

    async def discard(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "discard", fd=fd, start=offset)
        return await self._inode_write(
            txn, lambda i: self.children[i].discard(fd, offset, length, xdata))

    async def zerofill(self, fd, offset, length, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "zerofill", fd=fd, start=offset, length=length)
        return await self._inode_write(
            txn, lambda i: self.children[i].zerofill(fd, offset, length, xdata))

    async def fsync(self, fd, datasync, xdata=None):
        """afr_fsync: a data transaction (so a delayed post-op can ride on
        it); ``last-fsync`` ends the delay."""
        await self._fix_open(fd)
        txn = self._inode_txn(DATA_TXN, "fsync", fd=fd)
        req = dict(xdata or {})
        if req.get("last-fsync"):
            txn.disable_delay = True
        req[INODELK_DOM_COUNT] = self.domain
        if txn.ctx is not None:
            txn.ctx.unstable_write = False
        return await self._inode_write(
            txn, lambda i: self.children[i].fsync(fd, datasync, req))

    async def setattr(self, loc, stbuf, valid, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "setattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].setattr(loc, stbuf, valid, xdata))

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fsetattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fsetattr(fd, stbuf, valid, xdata))

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        gfid = await self._gfid_of(loc)
        if SBRAIN_CHOICE_KEY in (xattrs or {}):
            return self._set_split_brain_choice(gfid, xattrs[SBRAIN_CHOICE_KEY])
        txn = self._inode_txn(METADATA_TXN, "setxattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].setxattr(loc, xattrs, flags, xdata))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fsetxattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fsetxattr(fd, xattrs, flags, xdata))

    async def removexattr(self, loc, name, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "removexattr", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].removexattr(loc, name, xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fremovexattr", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fremovexattr(fd, name, xdata))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        gfid = await self._gfid_of(loc)
        txn = self._inode_txn(METADATA_TXN, "xattrop", loc=loc, gfid=gfid)
        return await self._inode_write(
            txn, lambda i: self.children[i].xattrop(loc, optype, xattrs, xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        await self._fix_open(fd)
        txn = self._inode_txn(METADATA_TXN, "fxattrop", fd=fd)
        return await self._inode_write(
            txn, lambda i: self.children[i].fxattrop(fd, optype, xattrs, xdata))

    def _set_split_brain_choice(self, gfid: GFID, value) -> Reply:
        """``replica.split-brain-choice``: read a split-brain file from one
        child (or "none") until it is resolved."""
        text = value.rstrip(b"\0").decode() if isinstance(value, bytes) else str(value)
        ctx = self._ctx(gfid)
        if text == "none":
            ctx.spb_choice = -1
            return Reply()
        names = [c.name for c in self.children]
        if text not in names:
            raise FopError(errno.EINVAL, f"{text} is not a subvolume of {self.name}")
        ctx.spb_choice = names.index(text)
        return Reply()

    # ======================================================================
    # Namespace fops (afr-dir-write.c)

    def _entry_txn(self, op: str, parents: list[tuple[Loc, str]], *,
                   loc: Loc | None = None, extra: Sequence[_Lockee] = (),
                   type_: str = ENTRY_TXN) -> _Txn:
        for ploc, _ in parents:
            if ploc.gfid is None:
                raise FopError(errno.EINVAL, f"{op} needs the parent's gfid")
        txn = self._new_txn(type_, op, gfid=parents[0][0].gfid, loc=loc)
        txn.parents = parents
        lockees = [_Lockee("entry", loc=p, basename=name) for p, name in parents]
        lockees.extend(extra)
        lockees.sort(key=_Lockee.sort_key)
        txn.lockees = lockees
        return txn

    @staticmethod
    def _parent_of(loc: Loc) -> Loc:
        path = os.path.dirname(loc.path) if loc.path else None
        return Loc(gfid=loc.pargfid, path=path or None)

    async def _dir_write_finalize(self, txn: _Txn, new_mode: int | None = None):
        """__afr_dir_write_finalize (+ afr_mark_entry_pending_changelog for
        create, mknod and mkdir: a new entry that some children missed gets
        its sources' accusation right away, so it is healed whole)."""
        good = [(i, r) for i, r in enumerate(txn.replies) if _ok(r)]
        if not good:
            errors = [r.errno for r in txn.replies if isinstance(r, FopError)]
            raise FopError(cl.final_errno(errors) or txn.op_errno or errno.ENOTCONN)
        first_i, first = good[0]
        iatt = getattr(first, "iatt", None)
        chosen = first
        if iatt is not None and txn.op not in ("rename", "link"):
            iatts = [getattr(r, "iatt", None) if _ok(r) else None for r in txn.replies]
            ctx = self._interpret(iatts, [r.xdata if _ok(r) else None for r in txn.replies])
            if ctx is not None:
                read = self._read_subvol_decide(ctx, iatt)
                if read >= 0 and _ok(txn.replies[read]):
                    chosen = txn.replies[read]
        if any(isinstance(r, FopError) for r in txn.replies):
            for ploc, _ in txn.parents:
                pctx = self._inodes.get(ploc.gfid)
                if pctx is not None:
                    pctx.need_refresh = True
        pctx = self._inodes.get(txn.parents[0][0].gfid)
        par = self._select_read(pctx.data, pctx.gfid, pctx.mode) \
            if pctx is not None and pctx.data else -1
        parent_reply = txn.replies[par] if par >= 0 and _ok(txn.replies[par]) else first
        if txn.op in ("create", "mknod", "mkdir") and iatt is not None:
            await self._mark_new_entry(txn, chosen.iatt)
        return chosen, parent_reply

    async def _mark_new_entry(self, txn: _Txn, iatt: Iatt) -> None:
        """afr_mark_new_entry_changelog."""
        n = self.child_count
        done = [txn.pre_op[i] and not txn.failed[i] for i in range(n)]
        if all(done):
            return
        if not cl.has_quorum([_ok(r) for r in txn.replies], self.quorum_count):
            return
        pending = [not d for d in done]
        rows = cl.new_entry_rows(pending, iatt.mode, bool(self.opts.granular_entry_heal))
        xattr = cl.changelog_dict(self.pending_keys, rows)
        loc = Loc(gfid=iatt.gfid)
        await self._fan([i for i in range(n) if done[i]],
                        lambda i: self.children[i].xattrop(loc, XattropType.ADD_ARRAY, xattr,
                                                           None),
                        Caller(pid=txn.caller.pid, uid=txn.caller.uid, gid=txn.caller.gid,
                               lk_owner=os.urandom(4)))

    @staticmethod
    def _with_gfid_req(xdata) -> dict:
        req = dict(xdata or {})
        if GFID_REQ not in req:
            req[GFID_REQ] = GFID.random()   # every child must make the same gfid
        return req

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        parent = self._parent_of(loc)
        txn = self._entry_txn("create", [(parent, loc.name)], loc=loc)
        req = self._with_gfid_req(xdata)
        fdctx = fd.ctx[self] = _FdCtx([False] * self.child_count, flags)

        async def finalize(t):
            for i, r in enumerate(t.replies):
                fdctx.opened_on[i] = _ok(r)
            chosen, par = await self._dir_write_finalize(t)
            return CreateReply(fd, chosen.iatt, par.preparent, par.postparent,
                               xdata=chosen.xdata)

        reply = await self._transaction(
            txn, lambda i: self.children[i].create(loc, flags, mode, umask, fd, req), finalize)
        if fd.gfid is None:
            fd.gfid = reply.iatt.gfid
        return reply

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        return await self._new_entry("mknod", loc, xdata, lambda i, req: self.children[i].mknod(
            loc, mode, rdev, umask, req))

    async def mkdir(self, loc, mode, umask, xdata=None):
        return await self._new_entry("mkdir", loc, xdata, lambda i, req: self.children[i].mkdir(
            loc, mode, umask, req))

    async def symlink(self, linkname, loc, umask, xdata=None):
        return await self._new_entry("symlink", loc, xdata,
                                     lambda i, req: self.children[i].symlink(
                                         linkname, loc, umask, req))

    async def _new_entry(self, op, loc, xdata, call):
        txn = self._entry_txn(op, [(self._parent_of(loc), loc.name)], loc=loc)
        req = self._with_gfid_req(xdata)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return EntryReply(chosen.iatt, par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(txn, lambda i: call(i, req), finalize)

    async def link(self, oldloc, newloc, xdata=None):
        txn = self._entry_txn("link", [(self._parent_of(newloc), newloc.name)], loc=newloc)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return EntryReply(chosen.iatt, par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].link(oldloc, newloc, xdata), finalize)

    async def unlink(self, loc, xflags, xdata=None):
        txn = self._entry_txn("unlink", [(self._parent_of(loc), loc.name)], loc=loc)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return ParentReply(par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].unlink(loc, xflags, xdata), finalize)

    async def rmdir(self, loc, xflags, xdata=None):
        """afr_rmdir: also locks the directory itself, so nothing is created
        in it meanwhile."""
        gfid = loc.gfid if loc.gfid is not None else await self._gfid_of(loc)
        txn = self._entry_txn("rmdir", [(self._parent_of(loc), loc.name)], loc=loc,
                              extra=[_Lockee("entry", loc=Loc(gfid=gfid, path=loc.path))])

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            return ParentReply(par.preparent, par.postparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].rmdir(loc, xflags, xdata), finalize)

    async def rename(self, oldloc, newloc, xdata=None):
        """afr_rename: an entry transaction on both parents (and on the
        directory being replaced, if any)."""
        extra = []
        if newloc.gfid is not None:
            vctx = self._inodes.get(newloc.gfid)
            if vctx is not None and _stat.S_ISDIR(vctx.mode):
                extra.append(_Lockee("entry", loc=Loc(gfid=newloc.gfid, path=newloc.path)))
        txn = self._entry_txn("rename", [(self._parent_of(oldloc), oldloc.name),
                                         (self._parent_of(newloc), newloc.name)],
                              loc=oldloc, extra=extra, type_=RENAME_TXN)

        async def finalize(t):
            chosen, par = await self._dir_write_finalize(t)
            pctx2 = self._inodes.get(newloc.pargfid)
            par2_i = self._select_read(pctx2.data, pctx2.gfid, pctx2.mode) \
                if pctx2 is not None and pctx2.data else -1
            par2 = t.replies[par2_i] if par2_i >= 0 and _ok(t.replies[par2_i]) else par
            return RenameReply(chosen.iatt, par.preoldparent, par.postoldparent,
                               par2.prenewparent, par2.postnewparent, xdata=chosen.xdata)

        return await self._transaction(
            txn, lambda i: self.children[i].rename(oldloc, newloc, xdata), finalize)

    # ======================================================================
    # Locks for the layers above (afr-common.c afr_inodelk, afr_entrylk, afr_lk)

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        unlock = dataclasses.replace(flock, type=LockType.UNLCK)
        return await self._app_lock(
            cmd, flock.type == LockType.UNLCK, LockCmd.SETLK, LockCmd.SETLKW,
            lambda i, c, undo: self.children[i].inodelk(
                volume, loc, LockCmd.SETLK if undo else c, unlock if undo else flock, xdata))

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        unlock = dataclasses.replace(flock, type=LockType.UNLCK)
        return await self._app_lock(
            cmd, flock.type == LockType.UNLCK, LockCmd.SETLK, LockCmd.SETLKW,
            lambda i, c, undo: self.children[i].finodelk(
                volume, fd, LockCmd.SETLK if undo else c, unlock if undo else flock, xdata))

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        return await self._app_lock(
            cmd, cmd == EntrylkCmd.UNLOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.LOCK,
            lambda i, c, undo: self.children[i].entrylk(
                volume, loc, basename, EntrylkCmd.UNLOCK if undo else c, type, xdata))

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        return await self._app_lock(
            cmd, cmd == EntrylkCmd.UNLOCK, EntrylkCmd.LOCK_NB, EntrylkCmd.LOCK,
            lambda i, c, undo: self.children[i].fentrylk(
                volume, fd, basename, EntrylkCmd.UNLOCK if undo else c, type, xdata))

    async def _app_lock(self, cmd, is_unlock, nb_cmd, block_cmd, call):
        """afr_fop_handle_lock: an unlock goes everywhere; a lock is tried on
        every up child at once without waiting, and, when that fails and
        the caller may wait, taken again one child after another in child
        order (so two clients cannot deadlock).  A child that went away
        does not count; any other refusal undoes the granted locks."""
        up = self._up_or_enotconn(quorum=not is_unlock)
        targets = [i for i in range(self.child_count) if up[i]]
        if is_unlock:
            replies = await self._fan(targets, lambda i: call(i, cmd, False))
            if not any(_ok(r) for r in replies):
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            return Reply()
        replies = await self._fan(targets, lambda i: call(i, nb_cmd, False))
        locked = [_ok(r) for r in replies]
        if all(locked[i] or _err(replies[i]) == errno.ENOTCONN for i in targets) \
                and any(locked):
            return Reply()
        await self._fan([i for i in targets if locked[i]], lambda i: call(i, cmd, True))
        errors = [r.errno for r in replies if isinstance(r, FopError)]
        if cmd != block_cmd:
            raise FopError(errno.EAGAIN if errno.EAGAIN in errors else
                           cl.final_errno(errors) or errno.ENOTCONN)
        done: list[int] = []
        for i in targets:
            try:
                await call(i, block_cmd, False)
                done.append(i)
            except FopError as e:
                if e.errno == errno.ENOTCONN:
                    continue
                await self._fan(done, lambda j: call(j, cmd, True))
                raise
        if not done or (self.quorum_count and not cl.has_quorum(
                [i in done for i in range(self.child_count)], self.quorum_count)):
            await self._fan(done, lambda j: call(j, cmd, True))
            raise FopError(errno.ENOTCONN)
        return Reply()

    async def lk(self, fd, cmd, flock, xdata=None):
        """afr_lk: POSIX locks on every child one after another (so two
        clients cannot each win on a different child); GETLK asks the first
        up child; a failure undoes what was granted."""
        targets = self._fd_targets(fd)
        if not targets:
            raise FopError(errno.ENOTCONN)
        if cmd in (LockCmd.GETLK, LockCmd.GETLK_FD):
            return await self.children[targets[0]].lk(fd, cmd, flock, xdata)
        if flock.type == LockType.UNLCK:
            replies = await self._fan(targets, lambda i: self.children[i].lk(fd, cmd, flock,
                                                                             xdata))
            good = [r for r in replies if _ok(r)]
            if not good:
                raise FopError(self._final_errno(replies) or errno.ENOTCONN)
            return good[0]
        granted: list[int] = []
        reply = None
        try:
            for i in targets:
                reply = await self.children[i].lk(fd, cmd, flock, xdata)
                granted.append(i)
        except FopError:
            undo = dataclasses.replace(flock, type=LockType.UNLCK)
            await self._fan(granted, lambda i: self.children[i].lk(fd, LockCmd.SETLK, undo,
                                                                   None))
            raise
        return reply

    # ======================================================================
    # Fops replicate does not serve (GlusterFS winds them to one child, which
    # would leave the others behind)

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        raise FopError(errno.ENOTSUP, "put is not replicated")

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        raise FopError(errno.ENOTSUP, "copy_file_range is not replicated")

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by replicate")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by replicate")

    async def lease(self, loc, lease, xdata=None):
        raise FopError(errno.ENOTSUP, "leases are not served by replicate")

    async def getactivelk(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is not served by replicate")

    async def setactivelk(self, loc, locks, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is not served by replicate")

    async def ipc(self, op, xdata=None):
        raise FopError(errno.ENOTSUP, f"ipc op {op} is not handled by replicate")

    # ======================================================================
    # Self-heal: the building blocks for the self-heal daemon and the CLI
    # (implemented in afr_heal.py)

    async def heal_gfid(self, gfid: GFID, *, data: bool = True, metadata: bool = True,
                        entry: bool = True) -> "afr_heal.Outcome":
        """Heal one inode (afr_selfheal): HEALED, NO_HEAL_NEEDED or CLEAN;
        FopError(EIO) for a split-brain, ENOTCONN when a child is missing."""
        with _as(Caller(pid=GF_CLIENT_PID_SELF_HEALD, lk_owner=os.urandom(8))):
            return await afr_heal.heal_gfid(self, gfid, data=data, metadata=metadata,
                                            entry=entry)

    async def heal_name(self, pargfid: GFID, name: str) -> None:
        """Make one name agree on every child (afr_selfheal_name)."""
        with _as(Caller(pid=GF_CLIENT_PID_SELF_HEALD, lk_owner=os.urandom(8))):
            await afr_heal.heal_name(self, pargfid, name)

    async def pending_entries(self, child: int, kind: str = "xattrop") -> list[GFID]:
        """What child `child`'s heal index lists (kind: xattrop, dirty,
        entry-changes)."""
        return await afr_heal.pending_entries(self, child, kind)

    async def heal_index(self, child: int) -> "afr_heal.CrawlStats":
        """One index crawl of child `child` (what the self-heal daemon does
        every heal-timeout seconds and on ``volume heal``)."""
        return await afr_heal.heal_index(self, child)

    async def heal_full(self, child: int | None = None) -> "afr_heal.CrawlStats":
        """A full crawl (``volume heal NAME full``)."""
        return await afr_heal.heal_full(self, child)

    async def heal_info(self, gfid: GFID) -> str:
        """GlusterFS's heal-info status of one inode: "heal", "no-heal",
        "split-brain", "possibly-healing" (with "-pending")."""
        return await afr_heal.heal_info(self, gfid)

    async def heal_info_entries(self, child: int, split_brain_only: bool = False
                                ) -> list[tuple[GFID, str, str]]:
        """``volume heal NAME info [split-brain]`` for one brick: (gfid,
        path, status) of every indexed inode that still needs a heal."""
        return await afr_heal.heal_info_entries(self, child, split_brain_only)

    async def split_brain_status(self, gfid: GFID) -> str:
        """``replica.split-brain-status`` text."""
        return await afr_heal.split_brain_status(self, gfid)

    async def resolve_split_brain(self, gfid: GFID, policy: str,
                                  source_brick: str | None = None) -> str:
        """Resolve a split-brain by "bigger-file", "latest-mtime" or
        "source-brick" (the child's name); returns "" or GlusterFS's
        failure message."""
        return await afr_heal.resolve_split_brain(self, gfid, policy, source_brick)

    async def _heal_sbrain_xattr(self, gfid: GFID, xdata: dict) -> DictReply:
        """getxattr ``glusterfs.heal-sbrain`` with xdata heal-op (10 bigger
        file, 11 source brick + child-name, 14 latest mtime), as glfsheal."""
        op = xdata.get("heal-op")
        policy = {afr_heal.HEAL_OP_BIGGER_FILE: "bigger-file",
                  afr_heal.HEAL_OP_SOURCE_BRICK: "source-brick",
                  afr_heal.HEAL_OP_LATEST_MTIME: "latest-mtime"}.get(op)
        if policy is None:
            raise FopError(errno.EINVAL, f"unknown heal-op {op!r}")
        child = xdata.get("child-name")
        if isinstance(child, bytes):
            child = child.rstrip(b"\0").decode()
        msg = await self.resolve_split_brain(gfid, policy, child)
        return DictReply({"sh-fail-msg": msg} if msg else {})

    def _queue_heal(self, gfid: GFID) -> None:
        """afr_throttled_selfheal: a background heal, at most
        background-self-heal-count at once and heal-wait-queue-length
        waiting; more are dropped (the self-heal daemon will find them)."""
        if self.nursery is None or gfid in self._heal_queued:
            return
        limit = self.opts.background_self_heal_count
        if limit <= 0:
            return
        if len(self._heal_queue) + self._heals_running >= \
                limit + self.opts.heal_wait_queue_length:
            self.log.debug("Max number of heals are pending, background self-heal rejected.")
            return
        self._heal_queue.append(gfid)
        self._heal_queued.add(gfid)
        if self._heals_running < limit:
            self._heals_running += 1
            self.spawn(self._background_healer, name=f"{self.name}:self-heal")

    async def _background_healer(self) -> None:
        try:
            while self._heal_queue:
                gfid = self._heal_queue.popleft()
                self._heal_queued.discard(gfid)
                try:
                    with _as(Caller(pid=GF_CLIENT_PID_SELF_HEALD, lk_owner=os.urandom(8))):
                        await afr_heal.heal_gfid(self, gfid, data=self.data_self_heal,
                                                 metadata=self.opts.metadata_self_heal,
                                                 entry=self.opts.entry_self_heal)
                except FopError as e:
                    self.log.debug("background heal of %s: %s", gfid, e)
                ctx = self._inodes.get(gfid)
                if ctx is not None:
                    ctx.need_refresh = True
        finally:
            self._heals_running -= 1


TRANSLATOR = Replicate
