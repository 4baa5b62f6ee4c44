"""cluster/distribute: one namespace over many bricks, as GlusterFS's DHT.

Each directory exists on every subvolume and carries, on each, one range of
the 32-bit hash space in `trusted.glusterfs.dht` (GlusterFS's 16-byte
format: commit hash, hash type, start, stop).  A file lives on the
subvolume whose range holds the hash of its name (GlusterFS's
Davies-Meyer hash after the rsync-name munging: xlators/cluster/dht_layout.py),
so GlusterFS 10 and glusterpy put the same name on the same brick and can
serve each other's bricks.  A file whose data is elsewhere - renamed to a
name that hashes to another brick, placed away by `min-free-disk`, a hard
link - has a *linkto file* on its hashed brick: an empty regular file of
mode 01000 whose `trusted.glusterfs.dht.linkto` names the subvolume with
the data.  Every name of a file exists on the data's brick.

Following GlusterFS (xlators/cluster/dht/src):

* lookup goes to the hashed subvolume; a directory is then looked up
  everywhere, its layout merged and healed (dht-selfheal.c: a directory
  missing on a brick is created there; holes and overlaps get a fresh
  layout, commit hash 1; the mds xattr `trusted.glusterfs.dht.mds` marks
  the hashed subvolume; owner and mode are made equal); a linkto file is
  followed; a miss is looked up everywhere unless `lookup-optimize` says
  the directory's layout is committed (its commit hash equals the
  volume's), and what that finds is repaired: a linkto file created on the
  hashed brick, stale linkto files removed.  A gfid without a name is
  looked up on every brick (dht_do_discover).
* create, mknod and symlink go to the hashed subvolume; with `min-free-disk`
  or `min-free-inodes` exceeded there, create and mknod put the data on the
  subvolume with most room and a linkto file on the hashed one.
* mkdir: the hashed subvolume first (with the mds xattr), then the others,
  then the layout (dht_selfheal_new_directory, weighted by brick size with
  `weighted-rebalance`).  rmdir: every brick must be empty but for stale
  linkto files, which are removed; then the non-hashed bricks, then the
  hashed one; a partial failure recreates the directory.
* rename of files follows dht-rename.c (linkto on the new hashed brick, a
  hard link on the data brick, rename, then the old names removed); of
  directories: on the new name's hashed brick first, then the others, undone
  everywhere if one fails.  link: a linkto file on the new name's hashed
  brick, then the link on the data brick.  unlink removes the name on the
  data brick and the linkto file on the hashed one.
* readdir(p) reads the bricks one after the other; each entry's d_off carries
  the brick's index (gf_itransform), so a listing resumes where it was.
  Linkto files are never shown; a directory is shown by the brick its name
  hashes to (the first one up when that one is down; the first one up with
  `readdir-optimize`).  readdir is served by the bricks' readdirp, as
  GlusterFS does with its default `use-readdirp`; off, plain readdir shows
  each name from its hashed brick.
* Directory attributes are the merge GlusterFS makes (size 4096, blocks 8,
  latest times); setattr, setxattr and removexattr of a directory go to the
  mds subvolume first, then to all; getxattr of user xattrs to the mds
  subvolume, of others to all, merged; the layout and mds xattrs are hidden.
  pathinfo answers `(<DISTRIBUTE:name> ...)`, `trusted.distribute.linkinfo`
  the pathinfo of a file's linkto.  statfs sums the bricks.
* Events as dht_notify: nothing goes up until every child has spoken; then
  CHILD_UP if one is up, and afterwards every event passes (a child going
  down while others are up is SOME_DESCENDENT_DOWN).  A fop that needs a
  subvolume that is down fails with ENOTCONN.
* The building blocks of rebalance: `set_volume_commit_hash(h)` (the
  commithash xattr on the brick roots, first step of a rebalance),
  `fix_layout(loc)` (dht_fix_layout_of_directory: new ranges, swapped to
  keep as many files in place as possible; with `new_commit_hash` it
  settles a directory whose files are in place), `migrate_file(loc)` (moves
  a file to its hashed brick as dht-rebalance.c does, xlators/cluster/
  dht_migrate.py).  They are also reached the way GlusterFS's rebalance
  process reaches them: setxattr of `distribute.fix.layout` (with
  `new-commit-hash`), of the commithash key on the root, and of
  `trusted.distribute.migrate-data`.

Departures:

* No entry or inode locks are taken (GlusterFS's dht_protect_namespace and
  layout-heal inodelks): fops of this graph are ordered by trio, bricks of
  glusterpy need not load features/locks, and racing creations of a linkto
  file are resolved by checking what EEXIST found.  Concurrent namespace
  changes from several clients are therefore not serialised.
* The inode context (directory layouts, files' data subvolumes) lives in
  this translator, keyed by gfid and bounded; a gfid it does not know is
  discovered by a nameless lookup on every brick.  A directory's layout is
  refreshed by every lookup of it; without the pre-op check below, a
  create under a layout another client has just changed can land on the
  old hashed brick (a later lookup-everywhere or rebalance finds it).
* mkdir without a gfid-req makes one (GlusterFS answers EPERM), since every
  brick must get the same gfid.  GlusterFS's parent-layout pre-op check in
  mkdir/create (GF_PREOP_PARENT_KEY) is not sent: storage/posix here does not
  serve it.
* fix_layout of a directory whose commit hash is the volume's writes commit
  hash 1 instead (so misses keep looking everywhere until it is settled);
  GlusterFS's rebalance avoids the same hazard by changing the volume's
  commit hash first.
* The d_off transform counts distribute's children instead of the graph's
  leaves (the same for distribute over clients; also right over replicate).
* icreate and namelink (gfid-only creation, no name to hash) answer
  ENOTSUP; GlusterFS would wind them to the first child.  rchecksum, seek
  and copy_file_range go to the file's data subvolume (copy_file_range
  between two bricks is EXDEV) instead of the first child.
* Regex options are Python regexes over bytes, not POSIX ERE (they agree on
  the default and the usual patterns).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Any, Awaitable, Callable

import trio

from glusterpy import fops
from glusterpy.fops import (GFID, ROOT_GFID, CreateReply, DictReply, DirReply, EntryReply,
                            Fd, FopError, Iatt, Loc, LookupReply, OpenReply, ParentReply,
                            PrePostReply, RenameReply, Reply, StatfsReply, StatReply, Statvfs,
                            UInt, SET_ATTR_ATIME, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_MTIME,
                            SET_ATTR_UID)
from glusterpy.keys import (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, DHT_XATTR_NAME, GFID_REQ,
                            INTERNAL_FOP, LINKINFO_KEY, OPEN_FD_COUNT, PATHINFO_KEYS,
                            PROTECT_WRITES_KEY, QUOTA_LIMIT_KEY, QUOTA_LIMIT_OBJECTS_KEY,
                            READDIR_SKIP_DIRS, SELINUX_KEY, SKIP_NON_LINKTO_UNLINK,
                            SKIP_OPEN_FD_UNLINK)
from glusterpy.options import Option, OptionError, OptionType, PercentOrSize
from glusterpy.xlator import DOWNWARD_EVENTS, Event, Translator

from . import dht_layout as dl
from . import dht_migrate
from .dht_layout import Layout, NameHasher

# --------------------------------------------------------------------------
# Options (GlusterFS's names; only those this translator implements)

OPTIONS = (
    Option("lookup-unhashed", OptionType.ENUM, "on",
           "This option if set to ON, does a lookup through all the sub-volumes, in case "
           "a lookup didn't return any result from the hash subvolume. If set to OFF, it "
           "does not do a lookup on the remaining subvolumes.",
           choices=("auto", "yes", "no", "enable", "disable", "1", "0", "on", "off"),
           set_keys=("cluster.lookup-unhashed",)),
    Option("lookup-optimize", OptionType.BOOL, "on",
           "This option if set to ON enables the optimization of -ve lookups, by not "
           "doing a lookup on non-hashed subvolumes for files, in case the hashed "
           "subvolume does not return any result. This option disregards the "
           "lookup-unhashed setting, when enabled.",
           set_keys=("cluster.lookup-optimize",)),
    Option("min-free-disk", OptionType.PERCENT_OR_SIZE, "10%",
           "Percentage/Size of disk space, after which the process starts balancing out "
           "the cluster, and logs will appear in log files",
           set_keys=("cluster.min-free-disk",)),
    Option("min-free-inodes", OptionType.PERCENT, "5%",
           "after system has only N% of inodes, warnings starts to appear in log files",
           min=0, max=100, set_keys=("cluster.min-free-inodes",)),
    Option("unhashed-sticky-bit", OptionType.BOOL, "off",
           "Show the sticky bit on a file reached through a linkto file (with one link).",
           set_keys=("cluster.unhashed-sticky-bit",)),
    Option("use-readdirp", OptionType.BOOL, "on",
           "This option if set to ON, forces the use of readdirp, and hence also displays "
           "the stats of the files.", set_keys=("cluster.use-readdirp",)),
    Option("readdir-optimize", OptionType.BOOL, "off",
           "This option if set to ON enables the optimization that allows DHT to requests "
           "non-first subvolumes to filter out directory entries.",
           set_keys=("cluster.readdir-optimize",)),
    Option("directory-layout-spread", OptionType.INT, None,
           "Specifies the directory layout spread. Takes number of subvolumes as default "
           "value.", min=1, set_keys=("cluster.subvols-per-directory",)),
    Option("decommissioned-bricks", OptionType.LIST, "",
           "Subvolumes being removed: new layouts give them no range.",
           set_keys=()),
    Option("rsync-hash-regex", OptionType.STR, None,
           "Regular expression for stripping temporary-file suffix and prefix used by "
           "rsync, to prevent relocation when the file is renamed.",
           set_keys=("cluster.rsync-hash-regex",)),
    Option("extra-hash-regex", OptionType.STR, None,
           "Regular expression for stripping temporary-file suffix and prefix used by an "
           "application, to prevent relocation when the file is renamed.",
           set_keys=("cluster.extra-hash-regex",)),
    Option("xattr-name", OptionType.STR, DHT_XATTR_NAME,
           "Base for extended attributes used by this translator instance, to avoid "
           "conflicts with others above or below it.", reconfigurable=False),
    Option("weighted-rebalance", OptionType.BOOL, "on",
           "When enabled, files will be allocated to bricks with a probability "
           "proportional to their size.  Otherwise, all bricks will have the same "
           "probability (legacy behavior).", set_keys=("cluster.weighted-rebalance",)),
    Option("randomize-hash-range-by-gfid", OptionType.BOOL, "off",
           "Use gfid of directory to determine the subvolume from which hash ranges are "
           "allocated starting with 0. Note that we still use a directory/file's name to "
           "determine the subvolume to which it hashes",
           set_keys=("cluster.randomize-hash-range-by-gfid",)),
    Option("lock-migration", OptionType.BOOL, "off",
           " If enabled this feature will migrate the posix locks associated with a file "
           "during rebalance", set_keys=("cluster.lock-migration",)),
    Option("force-migration", OptionType.BOOL, "off",
           "If disabled, rebalance will not migrate files that are being written to by an "
           "application", set_keys=("cluster.force-migration",)),
    Option("ensure-durability", OptionType.BOOL, "on",
           "If disabled, rebalance will not fsync files after migration. Please note that "
           "this can lead to bad data if the data couldn't be synced by the brick machine's "
           "kernel, because of hardware failure etc.",
           set_keys=("cluster.ensure-durability",)),
    Option("rebal-throttle", OptionType.ENUM, "normal",
           " Sets the maximum number of parallel file migrations allowed on a node during "
           "the rebalance operation: lazy migrates one file at a time, normal two, "
           "aggressive max(processing units - 4, 4).  Read by the rebalance process "
           "(glusterpy/rebalance), live.", choices=("lazy", "normal", "aggressive"),
           set_keys=("cluster.rebal-throttle",)),
    Option("commit-hash", OptionType.INT, None,
           "The volume's commit hash (set by rebalance); by default it is read from the "
           "brick roots' trusted.glusterfs.dht.commithash.", min=0, max=0xFFFFFFFF),
)

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

FIX_LAYOUT_KEYS = ("distribute.fix.layout", "trusted.distribute.fix.layout")
NEW_COMMIT_HASH_KEY = "new-commit-hash"
MIGRATE_KEYS = ("distribute.migrate-data", "trusted.distribute.migrate-data")
ACL_KEYS = (ACL_ACCESS_KEY, ACL_DEFAULT_KEY)
#: xattrs a directory's mds subvolume is the authority for (xattrs_to_heal)
HEALED_XATTR_PREFIXES = ("user.", ACL_ACCESS_KEY, ACL_DEFAULT_KEY, QUOTA_LIMIT_KEY,
                         QUOTA_LIMIT_OBJECTS_KEY, SELINUX_KEY)
DIR_STAT_SIZE, DIR_STAT_BLOCKS = 4096, 8        # DHT_DIR_STAT_SIZE/BLOCKS
LINKTO_MODE = stat.S_IFREG | stat.S_ISVTX       # DHT_LINKFILE_MODE
#: inode contexts kept (GlusterFS's inode table is bounded by lru-limit)
CTX_LIMIT = 1 << 16
#: seconds between statfs refreshes of the bricks' free space (GlusterFS
#: refreshes at most once a second)
DU_REFRESH = 1.0
#: setattr bits a directory heal copies (GlusterFS sends 0xffffffff; its
#: posix ignores the size bit, ours would truncate)
HEAL_ATTR_VALID = SET_ATTR_MODE | SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_ATIME | SET_ATTR_MTIME

_MISSING = (errno.ENOENT, errno.ESTALE)


@dataclasses.dataclass(slots=True)
class _DirCtx:
    """What distribute keeps about a directory (dht_inode_ctx_t)."""

    layout: Layout
    mds: int | None = None
    search_unhashed: int = 0   # entries seen on a brick they do not hash to


@dataclasses.dataclass(slots=True)
class _FileCtx:
    """A non-directory: the subvolume holding its data."""

    cached: int


@dataclasses.dataclass(slots=True)
class _FileFd:
    """fd.ctx[distribute] of a file: where its data is, and every subvolume
    the fd was opened on (a migration opens it on the new brick too)."""

    cached: int
    opened: set[int]
    migration_target: int | None = None


@dataclasses.dataclass(slots=True)
class _DirFd:
    """fd.ctx[distribute] of a directory: the subvolumes it is open on."""

    opened: set[int]


@dataclasses.dataclass(slots=True)
class _DiskUsage:
    """dht_du_t: one brick's free space as the last statfs showed it."""

    avail_percent: float = 0.0
    avail_space: int = 0
    avail_inodes: float = 100.0
    chunks: int = 0
    total_blocks: int = 0
    avail_blocks: int = 0
    frsize: int = 0


class Distribute(Translator):
    """cluster/distribute: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, None)
    FOPS_NEVER_SUSPEND = False   # fans out in nurseries

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.count = len(self.children)
        self.names = [c.name for c in self.children]
        self._index = {id(c): i for i, c in enumerate(self.children)}
        self.layout_key = self.opts.xattr_name
        self.linkto_key = self.layout_key + ".linkto"
        self.mds_key = self.layout_key + ".mds"
        self.commithash_key = self.layout_key + ".commithash"
        self._up = [False] * self.count
        self._last_event: list[Event | None] = [None] * self.count
        self._up_since = [0.0] * self.count
        self._du = [_DiskUsage() for _ in self.children]
        self._du_time = 0.0
        self._ctx: OrderedDict[GFID, _DirCtx | _FileCtx] = OrderedDict()
        self.vol_commit_hash = 0
        #: files this translator is migrating (dht_migrate.Migration by gfid)
        self.migrations: dict[GFID, Any] = {}
        self._configure()

    def _configure(self) -> None:
        opts = self.opts
        try:
            self.hasher = NameHasher(
                opts.rsync_hash_regex if opts.rsync_hash_regex is not None
                else dl.RSYNC_HASH_REGEX, opts.extra_hash_regex)
        except re.error as e:
            raise OptionError("rsync-hash-regex", f"invalid hash regex: {e}") from None
        unknown = [n for n in opts.decommissioned_bricks if n not in self.names]
        if unknown:
            raise OptionError("decommissioned-bricks",
                              f"option 'decommissioned-bricks': {', '.join(unknown)} "
                              f"is not a subvolume of {self.name}")
        self.decommissioned = {self.names.index(n) for n in opts.decommissioned_bricks}
        if opts.commit_hash is not None:
            self.vol_commit_hash = opts.commit_hash

    def options_changed(self, old) -> None:
        self._configure()

    # ======================================================================
    # events

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        """dht_notify: hold events back until every child has reported, then
        tell the parents CHILD_UP if one child is up (CONNECTING or
        CHILD_DOWN otherwise); afterwards pass everything on."""
        if event in DOWNWARD_EVENTS:
            super().notify(event, source, data)
            return
        index = self._index.get(id(source))
        had_heard_from_all = all(self._last_event)
        propagate = False
        if event == Event.CHILD_UP and index is not None:
            self._up[index] = True
            self._last_event[index] = event
            self._up_since[index] = time.monotonic()
            self._du_time = 0.0       # a brick came back: refresh the free space
        elif event == Event.CHILD_DOWN and index is not None:
            self._up[index] = False
            self._last_event[index] = event
            self._up_since[index] = 0.0
            if any(e != Event.CHILD_DOWN for e in self._last_event):
                event = Event.SOME_DESCENDENT_DOWN
        elif event == Event.CHILD_CONNECTING and index is not None:
            self._last_event[index] = event
        else:
            propagate = True
        have_heard_from_all = all(self._last_event)
        if have_heard_from_all:
            propagate = True
        if not had_heard_from_all and have_heard_from_all:
            if any(e == Event.CHILD_UP for e in self._last_event):
                event = Event.CHILD_UP
            elif any(e == Event.CHILD_CONNECTING for e in self._last_event):
                event = Event.CHILD_CONNECTING
            else:
                event = Event.CHILD_DOWN
        if propagate:
            self.notify_parents(event, data)

    def dump_state(self) -> dict:
        return {"subvolumes": {n: self._up[i] for i, n in enumerate(self.names)},
                "commit-hash": self.vol_commit_hash,
                "directories": sum(isinstance(c, _DirCtx) for c in self._ctx.values()),
                "files": sum(isinstance(c, _FileCtx) for c in self._ctx.values())}

    # ======================================================================
    # entry fops

    async def lookup(self, loc, xdata=None):
        """dht_lookup: a named lookup on the hashed subvolume (then the
        directory everywhere, a linkto's target, or everywhere on a miss); a
        nameless one on every subvolume."""
        if _is_root(loc):
            return await self._lookup_dir(_root_loc(loc), xdata, hashed=None)
        if loc.name is None and loc.pargfid is None:
            if loc.gfid is not None:
                return await self._discover(loc, xdata)
            if not (loc.path or "").strip("/"):
                raise FopError(errno.EINVAL, "a loc needs a gfid, a parent and a name, or a path")
        eloc, parent = await self._entry(loc)
        return await self._lookup_named(eloc, parent, xdata)

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        """dht_mknod: on the hashed subvolume, or - when it is short of space -
        on the roomiest one with a linkto file on the hashed one."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = _with_gfid_req(xdata)
        target = await self._placement(hashed, parent)
        if target != hashed:
            await self._create_linkto(hashed, target, eloc, xd[GFID_REQ])
            try:
                reply = await self._wind(target, "mknod", eloc, mode, rdev, umask, xd)
            except FopError:
                await self._drop_linkto(hashed, eloc)
                raise
        else:
            reply = await self._wind(hashed, "mknod", eloc, mode, rdev, umask, xd)
        self._remember_file(reply.iatt.gfid, target)
        return _entry_reply(reply)

    async def mkdir(self, loc, mode, umask, xdata=None):
        """dht_mkdir: the hashed subvolume first, marked as the directory's
        mds, then every other, then the new layout on all of them."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = _with_gfid_req(xdata)
        gfid = xd[GFID_REQ]
        await self._refresh_du()
        first = await self._wind(hashed, "mkdir", eloc, mode, umask,
                                 {**xd, self.mds_key: bytes(4)})
        gfid = first.iatt.gfid
        layout = Layout([], commit_hash=self.vol_commit_hash if self.opts.lookup_optimize
                        else dl.LAYOUT_HASH_INVALID, spread=self._spread())
        layout.merge(hashed, self.names[hashed], errno.ENOSPC if self._filled(hashed) else 0,
                     None)
        others = [i for i in range(self.count) if i != hashed]
        results = await self._each(others, lambda i: self._wind(
            i, "mkdir", eloc, mode, umask, {**xd, GFID_REQ: gfid}))
        iatts = [first.iatt]
        for i in others:
            r = results[i]
            if isinstance(r, FopError):
                if r.errno == errno.EEXIST:
                    layout.merge(i, self.names[i], 0, None)   # a racing heal made it
                else:
                    self.log.warning("%s: mkdir on %s failed: %s", eloc, self.names[i], r)
                    layout.merge(i, self.names[i], r.errno, None)
                continue
            layout.merge(i, self.names[i], errno.ENOSPC if self._filled(i) else 0, None)
            iatts.append(r.iatt)
        self._new_layout(layout, eloc, gfid)
        dloc = dataclasses.replace(eloc, gfid=gfid)
        await self._write_layout(dloc, layout, [e.index for e in layout.entries
                                                if e.err in (-1, errno.ENOSPC)], idle_commit=0)
        self._remember_dir(gfid, layout, mds=hashed)
        return EntryReply(_merge_dir_iatts(iatts), _fixed_dir(first.preparent),
                          _fixed_dir(first.postparent))

    async def unlink(self, loc, xflags, xdata=None):
        """dht_unlink: the name on the data subvolume, then the linkto file
        on the hashed one."""
        eloc, parent = await self._entry(loc)
        eloc, ctx = await self._existing(eloc, parent)
        if isinstance(ctx, _DirCtx):
            raise FopError(errno.EISDIR)
        reply = await self._on_file(eloc, ctx, lambda i: self._wind(
            i, "unlink", eloc, xflags, xdata))
        hashed = self._hashed(parent, eloc.name)
        cached = self._file_subvol(eloc.gfid)
        if hashed is not None and hashed != cached:
            try:
                with _as_root():
                    await self._wind(hashed, "unlink", eloc, xflags, xdata)
            except FopError as e:
                if e.errno not in (*_MISSING, errno.ENOTCONN):
                    raise
        return ParentReply(_fixed_dir(reply.preparent), _fixed_dir(reply.postparent),
                           xdata=reply.xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        """dht_rmdir: every brick must hold nothing but stale linkto files
        (removed here); the directory goes from the non-hashed bricks, then
        from the hashed one."""
        eloc, parent = await self._entry(loc)
        eloc, ctx = await self._existing(eloc, parent)
        if not isinstance(ctx, _DirCtx):
            raise FopError(errno.ENOTDIR)
        for i in range(self.count):
            self._require_up(i)
        await self._check_empty(eloc)
        hashed = self._hashed(parent, eloc.name)
        first = [i for i in range(self.count) if i != hashed]
        results = await self._each(first, lambda i: self._wind(i, "rmdir", eloc, xflags, xdata))
        failed = {i: r for i, r in results.items()
                  if isinstance(r, FopError) and r.errno not in _MISSING}
        done = [i for i, r in results.items() if not isinstance(r, FopError)]
        if failed:
            if done:
                await self._restore_dir(eloc, ctx)
            raise next(iter(failed.values()))
        replies = [r for r in results.values() if not isinstance(r, FopError)]
        if hashed is not None:
            try:
                replies.append(await self._wind(hashed, "rmdir", eloc, xflags, xdata))
            except FopError as e:
                if e.errno not in _MISSING or not replies:
                    if replies:
                        await self._restore_dir(eloc, ctx)
                    raise
        if not replies:
            raise FopError(errno.ENOENT)
        self._forget(eloc.gfid)
        reply = replies[-1]
        return ParentReply(_fixed_dir(reply.preparent), _fixed_dir(reply.postparent))

    async def symlink(self, linkname, loc, umask, xdata=None):
        """dht_symlink: on the hashed subvolume."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        reply = await self._wind(hashed, "symlink", linkname, eloc, umask, xdata)
        self._remember_file(reply.iatt.gfid, hashed)
        return _entry_reply(reply)

    async def rename(self, oldloc, newloc, xdata=None):
        """dht_rename: a directory on every brick (new hashed brick first,
        undone on failure), a file by dht-rename.c's steps."""
        src, sparent = await self._entry(oldloc)
        src, sctx = await self._existing(src, sparent)
        dst, dparent = await self._entry(newloc)
        dst_ctx = None
        try:
            dst, dst_ctx = await self._existing(dst, dparent)
        except FopError as e:
            if e.errno not in _MISSING:
                raise
            dst = dataclasses.replace(dst, gfid=None)
        if dst_ctx is not None and dst.gfid == src.gfid:
            # the same inode under both names: POSIX says do nothing
            reply = await self.lookup(src, None)
            return RenameReply(reply.iatt, reply.postparent, reply.postparent,
                               reply.postparent, reply.postparent)
        if isinstance(dst_ctx, _DirCtx) and src.path and dst.path and \
                src.path.startswith(dst.path.rstrip("/") + "/"):
            # the kernel's order: a target that holds the source is ENOTEMPTY
            raise FopError(errno.ENOTEMPTY)
        if isinstance(sctx, _DirCtx):
            # a file in the way, or a target inside the source: the bricks
            # answer as the kernel does (ENOTDIR, EINVAL)
            return await self._rename_dir(src, sctx, dst, dparent, dst_ctx, xdata)
        if isinstance(dst_ctx, _DirCtx):
            raise FopError(errno.EISDIR)
        return await self._rename_file(src, sparent, sctx, dst, dparent, dst_ctx, xdata)

    async def link(self, oldloc, newloc, xdata=None):
        """dht_link: a linkto file on the new name's hashed brick, then the
        hard link on the data brick."""
        src, ctx = await self._inode(oldloc)
        dst, parent = await self._entry(newloc)
        if isinstance(ctx, _DirCtx):
            try:
                await self._lookup_named(dst, parent, None)
            except FopError as e:
                if e.errno not in _MISSING:
                    raise
            else:
                raise FopError(errno.EEXIST)
            raise FopError(errno.EPERM)
        hashed = self._hashed_for_new(parent, dst)

        async def do_link(cached: int):
            if hashed != cached:
                await self._create_linkto(hashed, cached, dst, src.gfid, accept_existing=False)
                try:
                    return await self._wind(cached, "link", src, dst, xdata)
                except FopError:
                    await self._drop_linkto(hashed, dst)
                    raise
            return await self._wind(cached, "link", src, dst, xdata)

        reply = await self._on_file(src, ctx, do_link)
        return _entry_reply(reply)

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        """dht_create: as mknod, then the fd is the data subvolume's."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        xd = _with_gfid_req(xdata)
        target = await self._placement(hashed, parent)
        if target != hashed:
            await self._create_linkto(hashed, target, eloc, xd[GFID_REQ])
            try:
                reply = await self._wind(target, "create", eloc, flags, mode, umask, fd, xd)
            except FopError:
                await self._drop_linkto(hashed, eloc)
                raise
        else:
            reply = await self._wind(hashed, "create", eloc, flags, mode, umask, fd, xd)
            if dl.is_linkto_mode(reply.iatt.mode) and not flags & os.O_EXCL:
                # an existing name whose data is elsewhere: open that instead
                await self._wind(hashed, "release", fd, None)
                return await self._open_existing(eloc, parent, flags, fd)
        fd.ctx[self] = _FileFd(target, {target})
        if fd.gfid is None:
            fd.gfid = reply.iatt.gfid
        self._remember_file(reply.iatt.gfid, target)
        return CreateReply(reply.fd, _strip_phase1(reply.iatt), _fixed_dir(reply.preparent),
                           _fixed_dir(reply.postparent), xdata=reply.xdata)

    async def put(self, loc, mode, umask, flags, data, offset, xattrs, xdata=None):
        """put (create, write, set xattrs, close) on the hashed subvolume."""
        eloc, parent = await self._entry(loc)
        hashed = self._hashed_for_new(parent, eloc)
        reply = await self._wind(hashed, "put", eloc, mode, umask, flags, data, offset, xattrs,
                                 _with_gfid_req(xdata))
        self._remember_file(reply.iatt.gfid, hashed)
        return _entry_reply(reply)

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate: distribute places entries by name")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink: distribute places entries by name")

    # ======================================================================
    # inode fops: a file's data subvolume, or every brick of a directory

    async def stat(self, loc, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            replies = await self._dir_each(ctx, lambda i: self._wind(i, "stat", loc, xdata))
            return StatReply(_merge_dir_iatts([r.iatt for r in replies]),
                             xdata=replies[0].xdata)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "stat", loc, xdata))
        return StatReply(_strip_phase1(reply.iatt), xdata=reply.xdata)

    async def fstat(self, fd, xdata=None):
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_all(fd, lambda i: self._wind(i, "fstat", fd, xdata))
            return StatReply(_merge_dir_iatts([r.iatt for r in replies]),
                             xdata=replies[0].xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fstat", fd, xdata))
        return StatReply(_strip_phase1(reply.iatt), xdata=reply.xdata)

    async def access(self, loc, mask, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "access", loc, mask, xdata))

    async def readlink(self, loc, size, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            raise FopError(errno.EINVAL)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "readlink", loc, size,
                                                                    xdata))

    async def truncate(self, loc, offset, xdata=None):
        """On the data subvolume; during a migration also on the new brick."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            raise FopError(errno.EISDIR)
        mig = self.migrations.get(loc.gfid)
        if mig is not None:
            async with mig.lock:
                if not mig.done:
                    reply = await self._wind(mig.src, "truncate", loc, offset, xdata)
                    await self._wind(mig.dst, "truncate", Loc(gfid=loc.gfid), offset, xdata)
                    return _prepost(reply)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "truncate", loc, offset,
                                                                     xdata))
        if reply.postbuf is not None and dl.is_migration_phase1(reply.postbuf.mode):
            target = await self._migration_target_of(ctx.cached, Loc(gfid=loc.gfid))
            if target is not None:
                await self._protect(target, Loc(gfid=loc.gfid), None)
                await self._wind(target, "truncate", Loc(gfid=loc.gfid), offset, xdata)
        return _prepost(reply)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        """A directory: the mds subvolume first, then the others (dht_setattr)."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "setattr", loc, stbuf, valid, xdata))
            return PrePostReply(_merge_dir_iatts([r.prebuf for r in replies]),
                                _merge_dir_iatts([r.postbuf for r in replies]),
                                xdata=replies[0].xdata)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "setattr", loc, stbuf,
                                                                     valid, xdata))
        await self._keep_migration_mark(reply, valid, lambda i, ia: self._wind(
            i, "setattr", Loc(gfid=loc.gfid), ia, SET_ATTR_MODE, None), ctx.cached)
        return _prepost(reply)

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fsetattr", fd, stbuf, valid, xdata))
            return PrePostReply(_merge_dir_iatts([r.prebuf for r in replies]),
                                _merge_dir_iatts([r.postbuf for r in replies]),
                                xdata=replies[0].xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fsetattr", fd, stbuf, valid,
                                                             xdata))
        await self._keep_migration_mark(reply, valid, lambda i, ia: self._wind(
            i, "fsetattr", fd, ia, SET_ATTR_MODE, None), await self._fd_subvol(fd))
        return _prepost(reply)

    async def _keep_migration_mark(self, reply, valid: int, set_mode, i: int) -> None:
        """A chmod of a file being migrated must not wipe the migration's
        mark (S_ISGID|S_ISVTX): other clients go by it."""
        pre, post = reply.prebuf, reply.postbuf
        if valid & SET_ATTR_MODE and pre is not None and post is not None and \
                dl.is_migration_phase1(pre.mode) and not dl.is_migration_phase1(post.mode):
            mark = stat.S_IMODE(post.mode) | stat.S_ISGID | stat.S_ISVTX
            await set_mode(i, Iatt(mode=mark))

    async def statfs(self, loc, xdata=None):
        """dht_statfs: the bricks' sums, in the largest block size any uses."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "statfs", Loc.root(), xdata))
        total: Statvfs | None = None
        first_error = None
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                first_error = first_error or r
                continue
            total = _add_statvfs(total, r.statvfs)
        if total is None:
            raise first_error or FopError(errno.ENOTCONN)
        return StatfsReply(total)

    # -- xattrs -------------------------------------------------------------------

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """A directory: the mds subvolume, then the others.  The keys of
        GlusterFS's rebalance process run fix-layout or a migration."""
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        loc, ctx = await self._inode(loc)
        if any(k in FIX_LAYOUT_KEYS for k in xattrs):
            if not isinstance(ctx, _DirCtx):
                raise FopError(errno.ENOTSUP)
            new_hash = xattrs.get(NEW_COMMIT_HASH_KEY)
            await self.fix_layout(loc, None if new_hash is None else _as_uint(new_hash))
            return Reply()
        if self.commithash_key in xattrs and loc.gfid == ROOT_GFID:
            await self.set_volume_commit_hash(_as_uint(xattrs[self.commithash_key]))
            return Reply()
        if any(k in MIGRATE_KEYS for k in xattrs):
            if isinstance(ctx, _DirCtx):
                raise FopError(errno.EISDIR)
            await self.migrate_file(loc)
            return Reply()
        self._refuse_internal_keys(xattrs)
        if isinstance(ctx, _DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "setxattr", loc, xattrs, flags, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "setxattr", loc, xattrs,
                                                                    flags, xdata))

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if self._fd_is_dir(fd) and any(k in FIX_LAYOUT_KEYS or k == self.commithash_key
                                       for k in xattrs):
            return await self.setxattr(Loc(gfid=fd.gfid), xattrs, flags, xdata)
        self._refuse_internal_keys(xattrs)
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fsetxattr", fd, xattrs, flags, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fsetxattr", fd, xattrs, flags,
                                                            xdata))

    async def getxattr(self, loc, name, xdata=None):
        """dht_getxattr: see the module docstring."""
        loc, ctx = await self._inode(loc)
        self._check_readable_key(name)
        if name in PATHINFO_KEYS:
            return await self._pathinfo(loc, ctx, name, xdata)
        if name == LINKINFO_KEY:
            return await self._linkinfo(loc, ctx, xdata)
        if isinstance(ctx, _DirCtx):
            if name and name.startswith(HEALED_XATTR_PREFIXES):
                mds = ctx.mds if ctx.mds is not None and self._up[ctx.mds] \
                    else self._dir_first(ctx)
                reply = await self._wind(mds, "getxattr", loc, name, xdata)
                return DictReply(self._visible(reply.dict), xdata=reply.xdata)
            replies = await self._dir_each(
                ctx, lambda i: self._wind(i, "getxattr", loc, name, xdata))
            merged: dict = {}
            for r in replies:
                for k, v in self._visible(r.dict).items():
                    merged.setdefault(k, v)
            if name and name not in merged:
                raise FopError(errno.ENODATA)
            return DictReply(merged, xdata=replies[0].xdata if replies else None)
        reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                     xdata))
        return DictReply(self._visible(reply.dict), xdata=reply.xdata)

    async def fgetxattr(self, fd, name, xdata=None):
        self._check_readable_key(name)
        if self._fd_is_dir(fd):
            if name in PATHINFO_KEYS:
                return await self.getxattr(Loc(gfid=fd.gfid), name, xdata)
            if name and name.startswith(HEALED_XATTR_PREFIXES):
                i = await self._dir_fd_lead(fd, mds=True)
                reply = await self._wind(i, "fgetxattr", fd, name, xdata)
                return DictReply(self._visible(reply.dict), xdata=reply.xdata)
            replies = await self._dir_fd_all(fd, lambda i: self._wind(i, "fgetxattr", fd, name,
                                                                      xdata))
            merged: dict = {}
            for r in replies:
                for k, v in self._visible(r.dict).items():
                    merged.setdefault(k, v)
            if name and name not in merged:
                raise FopError(errno.ENODATA)
            return DictReply(merged, xdata=replies[0].xdata)
        if name in PATHINFO_KEYS or name == LINKINFO_KEY:
            return await self.getxattr(Loc(gfid=fd.gfid), name, xdata)
        reply = await self._fd_call(fd, lambda i: self._wind(i, "fgetxattr", fd, name, xdata))
        return DictReply(self._visible(reply.dict), xdata=reply.xdata)

    async def removexattr(self, loc, name, xdata=None):
        loc, ctx = await self._inode(loc)
        if name in (self.layout_key, self.mds_key, self.linkto_key, self.commithash_key):
            raise FopError(errno.EPERM, f"{name} belongs to distribute")
        if isinstance(ctx, _DirCtx):
            replies = await self._dir_mds_then_all(
                loc, ctx, lambda i: self._wind(i, "removexattr", loc, name, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "removexattr", loc, name,
                                                                    xdata))

    async def fremovexattr(self, fd, name, xdata=None):
        if name in (self.layout_key, self.mds_key, self.linkto_key, self.commithash_key):
            raise FopError(errno.EPERM, f"{name} belongs to distribute")
        if self._fd_is_dir(fd):
            replies = await self._dir_fd_mds_then_all(
                fd, lambda i: self._wind(i, "fremovexattr", fd, name, xdata))
            return Reply(xdata=replies[0].xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fremovexattr", fd, name, xdata))

    async def xattrop(self, loc, optype, xattrs, xdata=None):
        """A file's data subvolume; a directory's first subvolume (dht_xattrop)."""
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "xattrop", loc, optype,
                                                                     xattrs, xdata))

    async def fxattrop(self, fd, optype, xattrs, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "fxattrop", fd, optype, xattrs,
                                    xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fxattrop", fd, optype, xattrs,
                                                            xdata))

    # -- locks and leases: a file's data subvolume, a directory's first -------

    async def inodelk(self, volume, loc, cmd, flock, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "inodelk", volume, loc,
                                                                     cmd, flock, xdata))

    async def finodelk(self, volume, fd, cmd, flock, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "finodelk", volume, fd, cmd,
                                    flock, xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "finodelk", volume, fd, cmd,
                                                            flock, xdata))

    async def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(
            i, "entrylk", volume, loc, basename, cmd, type, xdata))

    async def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        if self._fd_is_dir(fd):
            return await self._wind(await self._dir_fd_lead(fd), "fentrylk", volume, fd,
                                    basename, cmd, type, xdata)
        return await self._fd_call(fd, lambda i: self._wind(i, "fentrylk", volume, fd, basename,
                                                            cmd, type, xdata))

    async def lk(self, fd, cmd, flock, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "lk", fd, cmd, flock, xdata))

    async def lease(self, loc, lease, xdata=None):
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            raise FopError(errno.EINVAL, "leases are taken on files")
        return await self._on_file(loc, ctx, lambda i: self._wind(i, "lease", loc, lease, xdata))

    async def getactivelk(self, loc, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "getactivelk", loc,
                                                                     xdata))

    async def setactivelk(self, loc, locks, xdata=None):
        loc, ctx = await self._inode(loc)
        return await self._on_inode(loc, ctx, lambda i: self._wind(i, "setactivelk", loc, locks,
                                                                     xdata))

    # ======================================================================
    # open files

    async def open(self, loc, flags, fd, xdata=None):
        """dht_open: on the data subvolume; the fd remembers which."""
        loc, ctx = await self._inode(loc)
        if isinstance(ctx, _DirCtx):
            return await self.opendir(loc, fd, xdata)

        async def do_open(i: int):
            reply = await self._wind(i, "open", loc, flags, fd, xdata)
            fd.ctx[self] = _FileFd(i, {i})
            return reply

        reply = await self._on_file(loc, ctx, do_open)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        return OpenReply(reply.fd, xdata=reply.xdata)

    async def readv(self, fd, size, offset, flags, xdata=None):
        reply = await self._fd_call(fd, lambda i: self._wind(i, "readv", fd, size, offset, flags,
                                                             xdata))
        if reply.iatt is not None:
            reply.iatt = _strip_phase1(reply.iatt)
        return reply

    async def writev(self, fd, data, offset, flags, xdata=None):
        return await self._fd_data(fd, "writev", data, offset, flags, xdata)

    async def flush(self, fd, xdata=None):
        if self._fd_is_dir(fd):
            return Reply()
        return await self._fd_call(fd, lambda i: self._wind(i, "flush", fd, xdata))

    async def fsync(self, fd, datasync, xdata=None):
        return _prepost(await self._fd_call(fd, lambda i: self._wind(i, "fsync", fd, datasync,
                                                                     xdata)))

    async def ftruncate(self, fd, offset, xdata=None):
        return await self._fd_data(fd, "ftruncate", offset, xdata)

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        return await self._fd_data(fd, "fallocate", mode, offset, length, xdata)

    async def discard(self, fd, offset, length, xdata=None):
        return await self._fd_data(fd, "discard", offset, length, xdata)

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._fd_data(fd, "zerofill", offset, length, xdata)

    async def seek(self, fd, offset, what, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "seek", fd, offset, what, xdata))

    async def rchecksum(self, fd, offset, length, xdata=None):
        return await self._fd_call(fd, lambda i: self._wind(i, "rchecksum", fd, offset, length,
                                                            xdata))

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        """Both files on one brick: there; otherwise EXDEV, as between two
        filesystems, so callers fall back to read and write."""
        src = await self._fd_subvol(fd_in)
        dst = await self._fd_subvol(fd_out)
        if src != dst:
            raise FopError(errno.EXDEV, "the two files are on different bricks")
        return await self._wind(src, "copy_file_range", fd_in, off_in, fd_out, off_out, length,
                                flags, xdata)

    async def release(self, fd, xdata=None):
        where = fd.ctx.pop(self, None)
        if isinstance(where, _DirFd):
            return await self._release_dir(fd, where, xdata)
        if where is None:
            return Reply()
        for i in sorted(where.opened):
            if self._up[i]:
                try:
                    await self.children[i].release(fd, xdata)
                except FopError as e:
                    self.log.debug("release on %s: %s", self.names[i], e)
        return Reply()

    # -- directories ---------------------------------------------------------------

    async def opendir(self, loc, fd, xdata=None):
        """dht_opendir: on every subvolume that is up."""
        loc, ctx = await self._inode(loc)
        if not isinstance(ctx, _DirCtx):
            raise FopError(errno.ENOTDIR)
        req = dict(xdata or {})
        req[self.linkto_key] = UInt(256)
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "opendir", loc, fd, req))
        opened = {i for i in ups if not isinstance(results[i], FopError)}
        if not opened:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            raise errors[0] if errors else FopError(errno.ENOTCONN)
        fd.ctx[self] = _DirFd(opened)
        if fd.gfid is None:
            fd.gfid = loc.gfid
        fd.is_dir = True
        return OpenReply(fd)

    async def readdir(self, fd, size, offset, xdata=None):
        if self.opts.use_readdirp:
            reply = await self._readdir(fd, size, offset, xdata, plus=True)
            for entry in reply.entries:
                entry.iatt = None
                entry.xdata = None
            return reply
        return await self._readdir(fd, size, offset, xdata, plus=False)

    async def readdirp(self, fd, size, offset, xdata=None):
        return await self._readdir(fd, size, offset, xdata, plus=True)

    async def fsyncdir(self, fd, datasync, xdata=None):
        where = self._dir_fd(fd)
        opened = [i for i in range(self.count)
                  if self._up[i] and await self._ensure_open(fd, where, i)]
        results = await self._each(opened, lambda i: self._wind(i, "fsyncdir", fd, datasync,
                                                               xdata))
        for r in results.values():
            if isinstance(r, FopError):
                raise r
        return Reply()

    async def releasedir(self, fd, xdata=None):
        where = fd.ctx.pop(self, None)
        if isinstance(where, _DirFd):
            return await self._release_dir(fd, where, xdata)
        return Reply()

    async def ipc(self, op, xdata=None):
        """dht_ipc: to every subvolume; success if one served it."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "ipc", op, xdata))
        for r in results.values():
            if not isinstance(r, FopError):
                return r
        raise next(iter(results.values()), FopError(errno.ENOTCONN))

    # ======================================================================
    # building blocks of rebalance

    async def set_volume_commit_hash(self, value: int) -> None:
        """What rebalance does first (gf_defrag_start_crawl): a new volume
        commit hash in every brick root's trusted.glusterfs.dht.commithash,
        used from now on.  Directories whose layouts carry the old one are
        then looked up everywhere on a miss until `fix_layout(loc, value)`
        settles them, so files not yet moved are still found."""
        raw = int(value & 0xFFFFFFFF).to_bytes(4, "big")
        root = Loc.root()
        with _as_root():
            results = await self._each(range(self.count), lambda i: self._wind(
                i, "setxattr", root, {self.commithash_key: raw}, 0, {INTERNAL_FOP: "yes"}))
        for r in results.values():
            if isinstance(r, FopError):
                raise r
        self.vol_commit_hash = value & 0xFFFFFFFF

    async def fix_layout(self, loc, new_commit_hash: int | None = None,
                         subvolumes=None) -> Layout:
        """Give a directory the layout a fix-layout gives it
        (dht_fix_layout_of_directory) and write it to every brick: ranges
        for every brick that is not decommissioned, swapped to keep as much
        of the old assignment as possible; the directory keeps its commit
        hash - unless that is the volume's, which would let lookup-optimize
        trust the new ranges before a file moved: then it becomes 1 (a
        departure; GlusterFS's rebalance changes the volume's commit hash
        first, see set_volume_commit_hash).  Missing directories are
        created first.  ENOTCONN when a brick is down (GlusterFS then
        leaves the layout alone).

        With `new_commit_hash` (GlusterFS's "new-commit-hash", sent by
        rebalance once a directory's files are where its layout wants them)
        only the layout's commit hash changes (dht_update_commit_hash_for_layout),
        on the bricks of `subvolumes` (indexes; all when None) - a rebalance
        process settles its node's bricks only, and the merged layout is
        trusted once every node has settled its own."""
        loc, ctx = await self._inode(loc)
        if not isinstance(ctx, _DirCtx):
            raise FopError(errno.ENOTDIR)
        await self._lookup_dir(loc, None, hashed=None)      # heals missing directories
        ctx = self._ctx.get(loc.gfid)
        if not isinstance(ctx, _DirCtx):
            raise FopError(errno.ENOENT)
        for i in range(self.count):
            self._require_up(i)
        if new_commit_hash is not None:
            value = new_commit_hash & 0xFFFFFFFF
            which = list(range(self.count)) if subvolumes is None else sorted(set(subvolumes))
            new = ctx.layout.copy()
            for e in new.entries:
                if e.index in which:
                    e.commit_hash = value
            # as Layout.merge: one commit hash for all, or none to trust
            new.commit_hash = value if all(e.commit_hash == value for e in new.entries) \
                else dl.LAYOUT_HASH_INVALID
            await self._write_layout(loc, new, which, idle_commit=value, must=True)
            self._remember_dir(loc.gfid, new, ctx.mds)
            return new
        await self._refresh_du()
        old = ctx.layout.copy()
        if old.commit_hash == self.vol_commit_hash:
            # lookup-optimize would trust the new ranges before a file moved:
            # keep misses looking everywhere until the directory is settled
            old.commit_hash = dl.LAYOUT_HASH_INVALID
        new = dl.fix_layout(old, self._path(loc), self.hasher, chunks=self._chunks(),
                            weighted=self.opts.weighted_rebalance,
                            gfid_text=self._gfid_text(loc.gfid),
                            decommissioned=self.decommissioned)
        if new is None:
            raise FopError(errno.ENOTCONN, "a brick is down: layout left alone")
        if new is old:
            return old
        if _ranges(new) == _ranges(ctx.layout) and not any(e.err for e in ctx.layout.entries):
            # already fixed (by another node's rebalance, or earlier in this
            # one): rewriting it would undo commit hashes settled since
            return ctx.layout
        await self._write_layout(loc, new, list(range(self.count)),
                                 idle_commit=new.commit_hash, must=True)
        self._remember_dir(loc.gfid, new, ctx.mds)
        return new

    async def file_placement(self, loc) -> tuple[int | None, int | None, Iatt]:
        """Where a file is and where it belongs, as the rebalance crawler
        asks before migrating (dht_subvol_get_hashed/_cached after a
        lookup): (hashed subvolume index, data subvolume index, iatt)."""
        eloc, parent = await self._entry(loc)
        reply = await self._lookup_named(dataclasses.replace(eloc, gfid=None), parent, None)
        return self._hashed(parent, eloc.name), self._file_subvol(reply.iatt.gfid), reply.iatt

    async def migrate_file(self, loc) -> bool:
        """Move a file's data to its hashed subvolume as dht-rebalance.c's
        dht_migrate_file does, phase by phase (xlators/cluster/dht_migrate.py):
        True when it moved, False when it was already there or has several
        hard links (a plain GlusterFS rebalance leaves those).  Writes
        through this translator go on meanwhile; a write from another client
        to the new copy makes the migration give up (EBUSY), as GlusterFS
        without force-migration; fds open on the old copy follow the file.
        A directory is EISDIR."""
        return await dht_migrate.migrate_file(self, loc)

    # ======================================================================
    # helpers: winding

    def _require_up(self, i: int) -> None:
        if not self._up[i]:
            raise FopError(errno.ENOTCONN, f"subvolume {self.names[i]} is down")

    async def _wind(self, i: int, fop: str, *args):
        self._require_up(i)
        return await getattr(self.children[i], fop)(*args)

    async def _each(self, indexes, call: Callable[[int], Awaitable]) -> dict[int, Any]:
        """Run `call(i)` for every index at once; a FopError is the result."""
        results: dict[int, Any] = {}

        async def one(i):
            try:
                results[i] = await call(i)
            except FopError as e:
                results[i] = e

        indexes = list(indexes)
        if len(indexes) == 1:
            await one(indexes[0])
        elif indexes:
            async with trio.open_nursery() as nursery:
                for i in indexes:
                    nursery.start_soon(one, i)
        return results

    async def _dir_each(self, ctx: _DirCtx, call) -> list:
        """`call` on every brick that is up, as dht_attr and dht_getxattr
        do: the answers of those that succeeded; the first error when none
        did (ENOTCONN when none is up)."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, call)
        replies = [results[i] for i in ups if not isinstance(results[i], FopError)]
        if not replies:
            raise next((results[i] for i in ups), FopError(errno.ENOTCONN))
        return replies

    async def _dir_mds_then_all(self, loc, ctx: _DirCtx, call) -> list:
        """A change to a directory: its mds subvolume first (which must be
        up, else ENOTCONN), then every other brick that is up."""
        mds = ctx.mds if ctx.mds is not None else self._dir_first(ctx)
        if loc.gfid == ROOT_GFID:
            mds = self._dir_first(ctx)
        first = await call(mds)
        others = [i for i in range(self.count) if i != mds and self._up[i]]
        results = await self._each(others, call)
        replies = [first]
        for i in others:
            r = results[i]
            if isinstance(r, FopError):
                # as dht_setxattr_non_mds_cbk: the mds answer stands, the
                # other bricks catch up when the directory is healed
                self.log.info("%s: not applied on %s: %s", loc, self.names[i], r)
                continue
            replies.append(r)
        return replies

    def _first_up(self) -> int | None:
        """dht_first_up_subvol: the subvolume up the longest."""
        ups = [i for i in range(self.count) if self._up[i]]
        return min(ups, key=lambda i: (self._up_since[i], i)) if ups else None

    def _dir_first(self, ctx: _DirCtx) -> int:
        """The subvolume GlusterFS uses for a directory's single-brick fops:
        the first of its layout sorted by start, if up, else the first up."""
        for e in sorted(ctx.layout.entries, key=dl._start_key):
            if self._up[e.index] and not e.err:
                return e.index
        for i in range(self.count):
            if self._up[i]:
                return i
        raise FopError(errno.ENOTCONN, "no subvolume is up")

    # ======================================================================
    # helpers: names, inodes and their contexts

    async def _entry(self, loc) -> tuple[Loc, _DirCtx]:
        """The loc with parent gfid and name filled in, and the parent's
        layout (looked up when not known)."""
        if loc.pargfid is not None and loc.name is not None:
            fops.check_name(loc.name)
            parent_path = _parent_path(loc.path)
            ctx = await self._dir_ctx(loc.pargfid, parent_path)
            return loc, ctx
        path = (loc.path or "").rstrip("/")
        if not path.strip("/"):
            raise FopError(errno.EINVAL, f"{loc}: no parent and name")
        head, _, name = path.rpartition("/")
        fops.check_name(name)
        pgfid = await self._walk(head or "/")
        ctx = await self._dir_ctx(pgfid, head or "/")
        return dataclasses.replace(loc, pargfid=pgfid, name=name), ctx

    async def _walk(self, path: str) -> GFID:
        """The gfid of a directory path, looked up one name at a time."""
        gfid = ROOT_GFID
        walked = ""
        if ROOT_GFID not in self._ctx:
            await self.lookup(Loc.root(), None)
        for name in [c for c in path.split("/") if c]:
            walked += "/" + name
            reply = await self.lookup(Loc(path=walked, pargfid=gfid, name=name), None)
            if not reply.iatt.is_dir:
                raise FopError(errno.ENOTDIR)
            gfid = reply.iatt.gfid
        return gfid

    async def _dir_ctx(self, gfid: GFID, path: str | None) -> _DirCtx:
        ctx = self._ctx.get(gfid)
        if isinstance(ctx, _DirCtx):
            self._ctx.move_to_end(gfid)
            return ctx
        if gfid == ROOT_GFID:
            await self.lookup(Loc.root(), None)
        else:
            await self._discover(Loc(gfid=gfid, path=path), None)
        ctx = self._ctx.get(gfid)
        if not isinstance(ctx, _DirCtx):
            raise FopError(errno.ENOTDIR, f"{path or gfid} is not a directory")
        return ctx

    async def _inode(self, loc) -> tuple[Loc, _DirCtx | _FileCtx]:
        """The loc with its gfid, and what distribute knows of the inode."""
        if loc.gfid is None:
            if _is_root(loc):
                loc = _root_loc(loc)
            else:
                reply = await self.lookup(loc, None)
                loc = dataclasses.replace(loc, gfid=reply.iatt.gfid)
        ctx = self._ctx.get(loc.gfid)
        if ctx is None:
            if loc.gfid == ROOT_GFID:
                await self.lookup(_root_loc(loc), None)
            else:
                await self._discover(loc, None)
            ctx = self._ctx.get(loc.gfid)
            if ctx is None:
                raise FopError(errno.ESTALE)
        else:
            self._ctx.move_to_end(loc.gfid)
        return loc, ctx

    async def _existing(self, eloc: Loc, parent: _DirCtx) -> tuple[Loc, _DirCtx | _FileCtx]:
        """An entry that must exist: its gfid (looked up by name when the loc
        has none) and context."""
        if eloc.gfid is None:
            reply = await self._lookup_named(eloc, parent, None)
            eloc = dataclasses.replace(eloc, gfid=reply.iatt.gfid)
        return await self._inode(eloc)

    def _remember_dir(self, gfid: GFID, layout: Layout, mds: int | None) -> _DirCtx:
        old = self._ctx.get(gfid)
        ctx = _DirCtx(layout, mds if mds is not None else
                      (old.mds if isinstance(old, _DirCtx) else None))
        if isinstance(old, _DirCtx):
            ctx.search_unhashed = old.search_unhashed
        self._store(gfid, ctx)
        return ctx

    def _remember_file(self, gfid: GFID, cached: int) -> None:
        self._store(gfid, _FileCtx(cached))

    def _store(self, gfid: GFID, ctx) -> None:
        """Keep an inode's context, forgetting the least recently used ones
        beyond CTX_LIMIT (never the root's)."""
        gfid = GFID(gfid)
        self._ctx[gfid] = ctx
        self._ctx.move_to_end(gfid)
        while len(self._ctx) > CTX_LIMIT:
            oldest = next(iter(self._ctx))
            if oldest == ROOT_GFID:
                self._ctx.move_to_end(oldest)
                continue
            del self._ctx[oldest]

    def _forget(self, gfid: GFID | None) -> None:
        if gfid is not None:
            self._ctx.pop(gfid, None)

    def _file_subvol(self, gfid: GFID | None) -> int | None:
        ctx = self._ctx.get(gfid) if gfid is not None else None
        return ctx.cached if isinstance(ctx, _FileCtx) else None

    def _hashed(self, parent: _DirCtx, name: str) -> int | None:
        return parent.layout.search(self.hasher.hash(name))

    def _hashed_for_new(self, parent: _DirCtx, eloc: Loc) -> int:
        """The subvolume a new name goes to: EIO when the layout has no
        range for it (dht_create's "no subvolume in layout"), ENOTCONN when
        it is down."""
        hashed = self._hashed(parent, eloc.name)
        if hashed is None:
            raise FopError(errno.EIO, f"{eloc}: no subvolume in the layout for this name")
        self._require_up(hashed)
        return hashed

    def _path(self, loc: Loc) -> str:
        """GlusterFS's loc->path: the path, or <gfid:...>/name without one."""
        return loc.path if loc.path else str(loc)

    def _gfid_text(self, gfid: GFID | None) -> str | None:
        if self.opts.randomize_hash_range_by_gfid and gfid is not None:
            return str(GFID(gfid))
        return None

    def _spread(self) -> int:
        spread = self.opts.directory_layout_spread
        return spread if spread and spread < self.count else 0

    # ======================================================================
    # helpers: lookup

    def _lookup_req(self, xdata: dict | None, root: bool = False) -> dict:
        """What every lookup asks the bricks for (dht_set_file_xattr_req,
        dht_set_dir_xattr_req); the caller's gfid-req is kept aside."""
        req = {k: v for k, v in (xdata or {}).items() if k != GFID_REQ}
        req[self.layout_key] = UInt(16)
        req[self.mds_key] = UInt(4)
        req[self.linkto_key] = UInt(256)
        req[OPEN_FD_COUNT] = UInt(4)
        if root:
            req[self.commithash_key] = UInt(4)
        return req

    def _visible_xdata(self, reply_xdata: dict | None, asked: dict | None) -> dict | None:
        """Reply xdata without the keys distribute asked for itself."""
        if not reply_xdata:
            return reply_xdata
        asked = asked or {}
        own = (self.layout_key, self.mds_key, self.linkto_key, OPEN_FD_COUNT,
               self.commithash_key)
        out = {k: v for k, v in reply_xdata.items() if k not in own or k in asked}
        return out or None

    def _is_linkto(self, iatt: Iatt, xdata: dict | None) -> bool:
        """check_is_linkfile: mode 01000 and the linkto xattr."""
        return dl.is_linkto_mode(iatt.mode) and bool(xdata) and self.linkto_key in xdata

    def _linkto_subvol(self, xdata: dict | None) -> int | None:
        target = dl.linkto_target(xdata.get(self.linkto_key) if xdata else None)
        if target is None or target not in self.names:
            return None
        return self.names.index(target)

    def _should_lookup_everywhere(self, parent: _DirCtx) -> bool:
        """dht_should_lookup_everywhere."""
        if self.opts.lookup_optimize:
            return parent.layout.commit_hash != self.vol_commit_hash
        mode = self.opts.lookup_unhashed
        if mode == "auto":
            return parent.search_unhashed > 0
        return mode in ("on", "yes", "enable", "1")

    async def _lookup_named(self, loc: Loc, parent: _DirCtx, xdata) -> LookupReply:
        """dht_do_fresh_lookup and its callbacks."""
        hashed = self._hashed(parent, loc.name)
        req = self._lookup_req(xdata)
        gfid_req = (xdata or {}).get(GFID_REQ)
        if hashed is None:
            # no range holds the name: a directory, if anything (dht_lookup_dir)
            return await self._lookup_dir(loc, xdata, hashed=None, gfid=gfid_req)
        try:
            reply = await self._wind(hashed, "lookup", loc, req)
        except FopError as e:
            if e.errno in _MISSING:
                if self.count == 1 or not self._should_lookup_everywhere(parent):
                    raise FopError(errno.ENOENT) from None
                return await self._lookup_everywhere(loc, parent, hashed, xdata)
            if e.errno in (errno.ENOTCONN, errno.ENODATA):
                return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=gfid_req)
            raise
        if reply.iatt.is_dir:
            return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=reply.iatt.gfid)
        if not self._is_linkto(reply.iatt, reply.xdata):
            self._remember_file(reply.iatt.gfid, hashed)
            return self._file_reply(reply, xdata)
        target = self._linkto_subvol(reply.xdata)
        if target is None:
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        try:
            data = await self._wind(target, "lookup", loc, req)
        except FopError as e:
            if e.errno == errno.ENOTCONN:
                raise
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        if data.iatt.is_dir or self._is_linkto(data.iatt, data.xdata) or \
                data.iatt.gfid != reply.iatt.gfid:
            return await self._lookup_everywhere(loc, parent, hashed, xdata)
        if data.iatt.nlink == 1 and self.opts.unhashed_sticky_bit:
            data.iatt.mode |= stat.S_ISVTX
        self._remember_file(data.iatt.gfid, target)
        return self._file_reply(data, xdata)

    def _file_reply(self, reply: LookupReply, xdata) -> LookupReply:
        return LookupReply(_strip_phase1(reply.iatt), _fixed_dir(reply.postparent),
                           xdata=self._visible_xdata(reply.xdata, xdata))

    async def _lookup_everywhere(self, loc: Loc, parent: _DirCtx | None, hashed: int | None,
                                 xdata) -> LookupReply:
        """dht_lookup_everywhere(_done): ask every brick; a directory goes to
        the directory lookup; the data file found gets a linkto file on the
        hashed brick; stale linkto files are removed."""
        req = self._lookup_req(xdata)
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "lookup", loc, req))
        files, dirs, linktos = [], [], []
        gfid_missing = False
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                gfid_missing |= r.errno == errno.ENODATA
                continue
            if self._is_linkto(r.iatt, r.xdata):
                linktos.append((i, r))
            elif r.iatt.is_dir:
                dirs.append((i, r))
            else:
                files.append((i, r))
        if files and dirs:
            self.log.error("%s exists as a file on one subvolume and as a directory on "
                           "another; fix it by hand", loc)
            raise FopError(errno.EIO)
        if dirs or (gfid_missing and not files):
            gfid = dirs[0][1].iatt.gfid if dirs else (xdata or {}).get(GFID_REQ)
            if not dirs and gfid is None:
                raise FopError(errno.ENODATA)
            return await self._lookup_dir(loc, xdata, hashed=hashed, gfid=gfid, everywhere=False)
        cached, data = (files[0] if files else (None, None))
        if len(files) > 1:
            self.log.warning("%s: data files on several subvolumes (%s); using %s", loc,
                             ", ".join(self.names[i] for i, _ in files), self.names[cached])
        # linkto files on bricks other than the hashed one are stale
        for i, r in linktos:
            if i == hashed:
                continue
            if _open_fds(r.xdata):
                continue
            await self._unlink_stale_linkto(i, loc)
        on_hashed = next((r for i, r in linktos if i == hashed), None)
        if data is None:
            if on_hashed is not None and not _open_fds(on_hashed.xdata):
                await self._unlink_stale_linkto(hashed, loc)
            raise FopError(errno.ENOENT)
        self._remember_file(data.iatt.gfid, cached)
        if hashed is not None and hashed != cached and self._up[hashed]:
            points_to = self._linkto_subvol(on_hashed.xdata) if on_hashed is not None else None
            if on_hashed is not None and points_to == cached:
                if on_hashed.iatt.gfid != data.iatt.gfid:
                    raise FopError(errno.ESTALE)
            else:
                if on_hashed is not None:
                    if _open_fds(on_hashed.xdata):
                        return self._file_reply(data, xdata)
                    await self._unlink_stale_linkto(hashed, loc)
                try:
                    await self._create_linkto(hashed, cached, loc, data.iatt.gfid,
                                              data_iatt=data.iatt)
                except FopError as e:
                    self.log.info("%s: linkto file on %s not created: %s", loc,
                                  self.names[hashed], e)
        return self._file_reply(data, xdata)

    async def _discover(self, loc: Loc, xdata) -> LookupReply:
        """dht_do_discover: a gfid without a name, looked up everywhere."""
        req = self._lookup_req(xdata)
        ups = [i for i in range(self.count) if self._up[i]]
        nameless = Loc(path=loc.path, gfid=loc.gfid)
        results = await self._each(ups, lambda i: self._wind(i, "lookup", nameless, req))
        found = [(i, r) for i, r in results.items() if not isinstance(r, FopError)]
        if not found:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            missing = [e for e in errors if e.errno in _MISSING]
            raise (missing[0] if missing else errors[0]) if errors else FopError(errno.ENOTCONN)
        found.sort()
        if any(r.iatt.is_dir for _, r in found):
            layout = Layout([], spread=self._spread())
            iatts = []
            mds = None
            for i in range(self.count):
                r = results.get(i)
                if r is None:
                    layout.merge(i, self.names[i], errno.ENOTCONN, None)
                elif isinstance(r, FopError):
                    layout.merge(i, self.names[i], r.errno, None)
                else:
                    self._merge_layout(layout, i, r)
                    iatts.append(r.iatt)
                    if r.xdata and self.mds_key in r.xdata:
                        mds = i
            self._remember_dir(loc.gfid, layout, mds)
            first = found[0][1]
            return LookupReply(_merge_dir_iatts(iatts), None,
                               xdata=self._visible_xdata(first.xdata, xdata))
        data = [(i, r) for i, r in found if not self._is_linkto(r.iatt, r.xdata)]
        if not data:
            raise FopError(errno.ENOENT, f"{loc}: only linkto files were found")
        i, r = data[0]
        self._remember_file(r.iatt.gfid, i)
        return LookupReply(_strip_phase1(r.iatt), None,
                           xdata=self._visible_xdata(r.xdata, xdata))

    def _merge_layout(self, layout: Layout, i: int, reply) -> None:
        raw = reply.xdata.get(self.layout_key) if reply.xdata else None
        try:
            layout.merge(i, self.names[i], 0, bytes(raw) if raw is not None else None)
        except ValueError as e:
            self.log.warning("subvolume %s: bad layout xattr: %s", self.names[i], e)
            layout.merge(i, self.names[i], errno.EINVAL, None)

    async def _lookup_dir(self, loc: Loc, xdata, hashed: int | None, gfid=None,
                          everywhere: bool = True) -> LookupReply:
        """dht_lookup_directory + dht_lookup_dir_cbk: the directory on every
        brick, its layout merged and, when it needs it, healed."""
        root = loc.gfid == ROOT_GFID or _is_root(loc)
        req = self._lookup_req(xdata, root=root)
        if gfid is None:
            gfid = loc.gfid
        if gfid is not None:
            req[GFID_REQ] = GFID(gfid)     # heals a brick's missing gfid
        results = await self._each(range(self.count),
                                   lambda i: self._wind(i, "lookup", loc, req))
        layout = Layout([], spread=self._spread())
        found: dict[int, LookupReply] = {}
        need_everywhere = False
        for i in range(self.count):
            r = results[i]
            if isinstance(r, FopError):
                layout.merge(i, self.names[i], r.errno, None)
                need_everywhere |= r.errno == errno.ENODATA
                continue
            if not r.iatt.is_dir:
                layout.merge(i, self.names[i], 0, None)
                need_everywhere = True
                continue
            self._merge_layout(layout, i, r)
            found[i] = r
        if need_everywhere and everywhere and not root and loc.name is not None:
            parent = self._ctx.get(loc.pargfid)
            return await self._lookup_everywhere(
                loc, parent if isinstance(parent, _DirCtx) else None, hashed, xdata)
        if not found:
            errors = [r for r in results.values() if isinstance(r, FopError)]
            missing = [e for e in errors if e.errno in _MISSING]
            if missing and len(missing) == len(errors):
                raise FopError(errno.ENOENT)
            raise next((e for e in errors if e.errno not in _MISSING), FopError(errno.ENOENT))
        order = sorted(found)
        dir_gfid = found[order[0]].iatt.gfid
        for i in order[1:]:
            if found[i].iatt.gfid != dir_gfid:
                self.log.warning("%s: gfid differs on %s (%s, not %s)", loc, self.names[i],
                                 found[i].iatt.gfid, dir_gfid)
        if root and self.opts.commit_hash is None:
            for i in order:
                raw = (found[i].xdata or {}).get(self.commithash_key)
                if raw is not None and len(bytes(raw)) >= 4:
                    self.vol_commit_hash = int.from_bytes(bytes(raw)[:4], "big")
                    break
        mds = next((i for i in order if found[i].xdata and self.mds_key in found[i].xdata),
                   None)
        iatts = [found[i].iatt for i in order]
        source = self._attr_source(found, order, mds, root)
        need_attrheal = any(_owner_perm(ia) != _owner_perm(iatts[0]) for ia in iatts[1:])
        need_mds = not root and mds is None and self.count > 1
        loc = dataclasses.replace(loc, gfid=dir_gfid)
        if need_attrheal or need_mds or dl.needs_heal(layout):
            layout = await self._selfheal_dir(loc, layout, found[source].iatt, found,
                                              need_attrheal, hashed if need_mds else None)
            if need_mds and hashed is not None and self._up[hashed]:
                mds = hashed
        self._remember_dir(dir_gfid, layout, mds)
        stbuf = _merge_dir_iatts(iatts)
        postparents = [found[i].postparent for i in order if found[i].postparent is not None]
        extra: dict = {}
        for i in ([mds] if mds is not None else []) + order:
            for k, v in (found[i].xdata or {}).items():
                extra.setdefault(k, v)
        return LookupReply(stbuf, _fixed_dir(_merge_dir_iatts(postparents))
                           if postparents else None,
                           xdata=self._visible_xdata(extra, xdata))

    def _attr_source(self, found, order, mds, root) -> int:
        """Whose owner and mode a heal spreads: for the root the brick with
        a layout and the latest ctime, otherwise the mds subvolume."""
        if root:
            with_layout = [i for i in order if (found[i].xdata or {}).get(self.layout_key)]
            pool = with_layout or order
            return max(pool, key=lambda i: (found[i].iatt.ctime, found[i].iatt.ctime_nsec,
                                            -i))
        return mds if mds is not None else order[0]

    # ======================================================================
    # helpers: directory self-heal

    async def _selfheal_dir(self, loc: Loc, layout: Layout, stbuf: Iatt,
                            found: dict[int, LookupReply], need_attrheal: bool,
                            mark_mds: int | None) -> Layout:
        """dht_selfheal_directory: create the directory where it is missing,
        give the layout new ranges if it has holes or overlaps, make owner
        and mode equal, mark the mds subvolume.  Nothing is fixed while a
        brick is down or answered an unexpected error."""
        a = dl.anomalies(layout)
        if a.down or a.misc:
            self.log.warning("%s: not healed: %d subvolume(s) down, %d with errors", loc,
                             a.down, a.misc)
            return layout
        fix_ranges = bool(a.holes or a.overlaps)
        missing = [e for e in layout.entries if e.err in _MISSING]
        if fix_ranges:
            layout.commit_hash = dl.LAYOUT_HASH_INVALID
            await self._refresh_du()
            self._new_layout(layout, loc, loc.gfid)
        created: list[int] = []
        if missing:
            xattrs = await self._healable_xattrs(loc, found)
            mode = stat.S_IMODE(stbuf.mode)
            mkdir_x = {**xattrs, GFID_REQ: loc.gfid}
            with _as_root():
                results = await self._each([e.index for e in missing], lambda i: self._wind(
                    i, "mkdir", loc, mode, 0, mkdir_x))
            for e in missing:
                r = results[e.index]
                if isinstance(r, FopError) and r.errno != errno.EEXIST:
                    self.log.warning("%s: could not create it on %s: %s", loc,
                                     self.names[e.index], r)
                    e.err = r.errno
                else:
                    e.err = -1
                    created.append(e.index)
        if created or need_attrheal:
            targets = created if not need_attrheal else \
                [e.index for e in layout.entries if e.err in (0, -1)]
            with _as_root():
                results = await self._each(targets, lambda i: self._wind(
                    i, "setattr", loc, stbuf, HEAL_ATTR_VALID, None))
            for i, r in results.items():
                if isinstance(r, FopError):
                    self.log.warning("%s: attributes not healed on %s: %s", loc,
                                     self.names[i], r)
        write = [e.index for e in layout.entries if e.err == -1]
        if write:
            await self._write_layout(loc, layout, write, idle_commit=0)
        if mark_mds is not None and self._up[mark_mds]:
            try:
                with _as_root():
                    await self._wind(mark_mds, "setxattr", loc, {self.mds_key: bytes(4)}, 0,
                                     {INTERNAL_FOP: "yes"})
            except FopError as e:
                self.log.warning("%s: mds xattr not set on %s: %s", loc,
                                 self.names[mark_mds], e)
        return layout

    async def _healable_xattrs(self, loc: Loc, found: dict[int, LookupReply]) -> dict:
        """The user xattrs (and ACLs) a re-created directory gets, from the
        mds subvolume or the first brick that has the directory."""
        order = sorted(found, key=lambda i: (not (found[i].xdata or {}).get(self.mds_key), i))
        for i in order:
            try:
                reply = await self._wind(i, "getxattr", loc, None, None)
            except FopError:
                continue
            return {k: v for k, v in reply.dict.items() if k.startswith(HEALED_XATTR_PREFIXES)}
        return {}

    def _new_layout(self, layout: Layout, loc: Loc, gfid) -> Layout:
        return dl.new_directory_layout(layout, self._path(loc), self.hasher,
                                       chunks=self._chunks(),
                                       weighted=self.opts.weighted_rebalance,
                                       gfid_text=self._gfid_text(gfid),
                                       decommissioned=self.decommissioned)

    async def _write_layout(self, loc: Loc, layout: Layout, indexes: list[int],
                            idle_commit: int, must: bool = False) -> None:
        """Write each listed brick's part of the layout (0-0 for a brick
        without a range); a brick that refuses keeps err set.  With `must`,
        the first failure is raised."""
        indexes = [i for i in indexes if self._up[i]]
        with _as_root():
            results = await self._each(indexes, lambda i: self._wind(
                i, "setxattr", loc, {self.layout_key: layout.disk(i, idle_commit)}, 0,
                {INTERNAL_FOP: "yes"}))
        for i in indexes:
            e = layout.entry(i)
            r = results[i]
            if isinstance(r, FopError):
                self.log.warning("%s: layout not written on %s: %s", loc, self.names[i], r)
                if e is not None:
                    e.err = r.errno
                if must:
                    raise r
            elif e is not None:
                e.err = 0

    async def _restore_dir(self, loc: Loc, ctx: _DirCtx) -> None:
        """dht_selfheal_restore after a partial rmdir: a lookup re-creates the
        directory where it went."""
        try:
            await self._lookup_dir(loc, None, hashed=None, gfid=loc.gfid)
        except FopError as e:
            self.log.warning("%s: not restored after a failed rmdir: %s", loc, e)

    async def _check_empty(self, loc: Loc) -> None:
        """dht_rmdir_is_subvol_empty on every brick: ENOTEMPTY for anything
        but stale linkto files, which are removed."""
        req = {self.linkto_key: UInt(256)}
        for i in range(self.count):
            fd = Fd(gfid=loc.gfid, is_dir=True)
            try:
                await self._wind(i, "opendir", loc, fd, req)
            except FopError as e:
                if e.errno in _MISSING:
                    continue
                raise
            try:
                offset = 0
                while True:
                    entries = (await self._wind(i, "readdirp", fd, 64 * 1024, offset,
                                                req)).entries
                    if not entries:
                        break
                    for ent in entries:
                        if ent.name in (".", ".."):
                            continue
                        if ent.iatt is None or not self._is_linkto(ent.iatt, ent.xdata):
                            raise FopError(errno.ENOTEMPTY)
                        await self._check_linkto_in_rmdir(i, loc, ent)
                    offset = entries[-1].off
            finally:
                try:
                    await self.children[i].releasedir(fd, None)
                except FopError:
                    pass

    async def _check_linkto_in_rmdir(self, i: int, dloc: Loc, ent) -> None:
        """A linkto file in a directory being removed: ENOTEMPTY when its
        data exists, else it is stale and goes."""
        eloc = Loc(path=_join(dloc.path, ent.name), pargfid=dloc.gfid, name=ent.name)
        target = self._linkto_subvol(ent.xdata)
        if target is not None and target != i:
            try:
                data = await self._wind(target, "lookup", eloc, {self.linkto_key: UInt(256)})
            except FopError as e:
                if e.errno not in _MISSING:
                    raise FopError(errno.ENOTEMPTY) from None
            else:
                if not self._is_linkto(data.iatt, data.xdata) and \
                        data.iatt.gfid == ent.iatt.gfid:
                    raise FopError(errno.ENOTEMPTY)
        await self._unlink_stale_linkto(i, eloc)

    # ======================================================================
    # helpers: linkto files

    async def _create_linkto(self, where: int, target: int, loc: Loc, gfid,
                             data_iatt: Iatt | None = None, accept_existing: bool = True) -> None:
        """dht_linkfile_create: a linkto file for `loc` on `where` naming
        `target`, with the file's gfid, made as root; then owner as the data
        file's (dht_linkfile_attr_heal).  With `accept_existing`, an existing
        linkto file for the same gfid and target is fine, a stale one is
        replaced; without, EEXIST stands."""
        xd = {GFID_REQ: GFID(gfid), INTERNAL_FOP: "yes",
              self.linkto_key: dl.linkto_value(self.names[target])}
        try:
            with _as_root():
                reply = await self._wind(where, "mknod", loc, LINKTO_MODE, 0, 0, xd)
        except FopError as e:
            if e.errno != errno.EEXIST or not accept_existing:
                raise
            existing = await self._wind(where, "lookup", dataclasses.replace(loc, gfid=None),
                                        {self.linkto_key: UInt(256), OPEN_FD_COUNT: UInt(4)})
            if not self._is_linkto(existing.iatt, existing.xdata):
                raise
            if existing.iatt.gfid == gfid and self._linkto_subvol(existing.xdata) == target:
                return
            if _open_fds(existing.xdata):
                raise
            await self._unlink_stale_linkto(where, loc)
            with _as_root():
                reply = await self._wind(where, "mknod", loc, LINKTO_MODE, 0, 0, xd)
        owner = data_iatt if data_iatt is not None else self._owner_hint()
        if owner is not None and (reply.iatt.uid, reply.iatt.gid) != (owner.uid, owner.gid):
            try:
                with _as_root():
                    await self._wind(where, "setattr", Loc(gfid=reply.iatt.gfid),
                                     Iatt(uid=owner.uid, gid=owner.gid),
                                     SET_ATTR_UID | SET_ATTR_GID, None)
            except FopError as e:
                self.log.debug("%s: linkto owner not set on %s: %s", loc, self.names[where], e)

    def _owner_hint(self) -> Iatt | None:
        """A new file is owned by its caller: so is its linkto file."""
        who = fops.caller.get()
        return Iatt(uid=who.uid, gid=who.gid)

    async def _drop_linkto(self, where: int, loc: Loc) -> None:
        try:
            await self._unlink_stale_linkto(where, loc)
        except FopError as e:
            self.log.warning("%s: linkto file on %s left behind: %s", loc, self.names[where], e)

    async def _unlink_stale_linkto(self, where: int, loc: Loc) -> None:
        """Remove a linkto file - never a data file that took its place
        (unlink-only-if-dht-linkto-file), nor one a migration holds open."""
        with _as_root():
            try:
                await self._wind(where, "unlink", dataclasses.replace(loc, gfid=None), 0,
                                 {SKIP_NON_LINKTO_UNLINK: UInt(1), SKIP_OPEN_FD_UNLINK: UInt(1)})
            except FopError as e:
                if e.errno not in (*_MISSING, errno.EBUSY):
                    raise

    # ======================================================================
    # helpers: files

    async def _on_inode(self, loc: Loc, ctx, call: Callable[[int], Awaitable]):
        """A single-brick fop: a directory's first subvolume, a file's data."""
        if isinstance(ctx, _DirCtx):
            return await call(self._dir_first(ctx))
        return await self._on_file(loc, ctx, call)

    async def _on_file(self, loc: Loc, ctx: _FileCtx, call: Callable[[int], Awaitable]):
        """`call` on the file's data subvolume; if that brick no longer has
        it (ENOENT/ESTALE: migrated, or the context was stale), rediscover
        the gfid and try once more where it is now."""
        try:
            return await call(ctx.cached)
        except FopError as e:
            if e.errno not in _MISSING or loc.gfid is None or self.count == 1:
                raise
            first = e
        try:
            await self._discover(Loc(gfid=loc.gfid, path=loc.path), None)
        except FopError:
            raise first from None
        now = self._ctx.get(loc.gfid)
        if not isinstance(now, _FileCtx) or now.cached == ctx.cached:
            raise first
        return await call(now.cached)

    async def _fd_subvol(self, fd: Fd) -> int:
        where = fd.ctx.get(self)
        if isinstance(where, _FileFd):
            return where.cached
        if isinstance(where, _DirFd) or fd.gfid is None:
            raise FopError(errno.EBADF)
        ctx = self._ctx.get(GFID(fd.gfid))
        if ctx is None:
            await self._discover(Loc(gfid=GFID(fd.gfid)), None)
            ctx = self._ctx.get(GFID(fd.gfid))
        if isinstance(ctx, _DirCtx):
            raise FopError(errno.EISDIR)
        if not isinstance(ctx, _FileCtx):
            raise FopError(errno.ESTALE)
        return ctx.cached

    async def _fd_call(self, fd: Fd, call: Callable[[int], Awaitable]):
        """An fd fop on the fd's subvolume; an anonymous fd (never opened
        here) goes where its gfid's data is.  A file migrated away from
        under the fd - the fop fails with ENOENT/ESTALE/EBADF, or its reply
        shows the old copy turned into a linkto file (migration phase 2,
        dht_rebalance_complete_check) - is reopened on its new brick and
        the fop is sent there."""
        i = await self._fd_subvol(fd)
        try:
            reply = await call(i)
        except FopError as e:
            if e.errno not in (*_MISSING, errno.EBADF) or fd.gfid is None or self.count == 1:
                raise
            moved = await self._follow_migration(fd, i)
            if moved is None:
                raise
            return await call(moved)
        post = _post_iatt(reply)
        if post is not None and dl.is_linkto_mode(post.mode) and self.count > 1:
            moved = await self._follow_migration(fd, i)
            if moved is not None:
                return await call(moved)
        return reply

    async def _follow_migration(self, fd: Fd, old: int) -> int | None:
        """The fd's file is no longer on `old`: find it, open the fd there."""
        if fd.gfid is None:
            return None
        gfid = GFID(fd.gfid)
        try:
            await self._discover(Loc(gfid=gfid), None)
        except FopError:
            return None
        ctx = self._ctx.get(gfid)
        if not isinstance(ctx, _FileCtx) or ctx.cached == old:
            return None
        await self._fd_open_on(fd, ctx.cached)
        where = fd.ctx.get(self)
        if isinstance(where, _FileFd):
            where.cached = ctx.cached
        return ctx.cached

    async def _fd_open_on(self, fd: Fd, i: int) -> None:
        """Open an fd this translator opened elsewhere on subvolume i too
        (an anonymous fd needs nothing: the bricks open those on demand)."""
        where = fd.ctx.get(self)
        if not isinstance(where, _FileFd) or i in where.opened:
            return
        flags = fd.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_APPEND)
        await self._wind(i, "open", Loc(gfid=GFID(fd.gfid)), flags, fd, None)
        where.opened.add(i)

    async def _fd_data(self, fd: Fd, fop: str, *args):
        """A fop that changes a file's data (writev, ftruncate, fallocate,
        discard, zerofill), as dht-inode-write.c: during a migration's copy
        (phase 1) it is applied to the old copy and then to the new one,
        marked with trusted.glusterfs.protect.writes first so that the
        migrating process notices and gives up instead of overwriting it
        (GlusterFS's GF_PROTECT_FROM_EXTERNAL_WRITES); a migration by this
        translator instead holds the writes back while it copies a block."""
        gfid = GFID(fd.gfid) if fd.gfid is not None else None
        mig = self.migrations.get(gfid) if gfid is not None else None
        if mig is not None:
            async with mig.lock:
                if not mig.done:
                    i = await self._fd_subvol(fd)
                    reply = await self._wind(i, fop, fd, *args)
                    if i == mig.src:
                        await self._fd_open_on(fd, mig.dst)
                        await self._wind(mig.dst, fop, fd, *_mirror_args(fd, fop, args, reply))
                    return _prepost(reply)
        reply = await self._fd_call(fd, lambda i: self._wind(i, fop, fd, *args))
        post = _post_iatt(reply)
        if post is not None and dl.is_migration_phase1(post.mode) and self.count > 1:
            i = await self._fd_subvol(fd)
            target = await self._fd_migration_target(fd, i)
            if target is not None and target != i:
                await self._fd_open_on(fd, target)
                await self._protect(target, None, fd)
                await self._wind(target, fop, fd, *_mirror_args(fd, fop, args, reply))
        return _prepost(reply)

    async def _fd_migration_target(self, fd: Fd, i: int) -> int | None:
        """dht_rebalance_in_progress_check: the subvolume a file is being
        migrated to, from the linkto xattr of the copy being migrated."""
        where = fd.ctx.get(self)
        if isinstance(where, _FileFd) and where.migration_target is not None:
            return where.migration_target
        try:
            reply = await self._wind(i, "fgetxattr", fd, self.linkto_key, None)
        except FopError:
            return None
        target = self._linkto_subvol(reply.dict)
        if isinstance(where, _FileFd):
            where.migration_target = target
        return target

    async def _migration_target_of(self, i: int, loc: Loc) -> int | None:
        try:
            reply = await self._wind(i, "getxattr", loc, self.linkto_key, None)
        except FopError:
            return None
        return self._linkto_subvol(reply.dict)

    async def _protect(self, i: int, loc: Loc | None, fd: Fd | None) -> None:
        """Mark the new copy as written by a client (before writing it)."""
        value = {PROTECT_WRITES_KEY: b"1\0"}
        try:
            with _as_root():
                if fd is not None:
                    await self._wind(i, "fsetxattr", fd, value, 0, None)
                else:
                    await self._wind(i, "setxattr", loc, value, 0, None)
        except FopError as e:
            self.log.warning("could not mark a migrating file as written: %s", e)

    async def _open_existing(self, loc: Loc, parent: _DirCtx, flags: int, fd: Fd):
        """create without O_EXCL found the name's linkto file: open the data."""
        reply = await self._lookup_named(loc, parent, None)
        if reply.iatt.is_dir:
            raise FopError(errno.EISDIR)
        loc = dataclasses.replace(loc, gfid=reply.iatt.gfid)
        await self.open(loc, flags & ~(os.O_CREAT | os.O_EXCL), fd, None)
        fd.gfid = reply.iatt.gfid
        return CreateReply(fd, reply.iatt, reply.postparent, reply.postparent)

    # -- placement: min-free-disk ----------------------------------------------------

    async def _placement(self, hashed: int, parent: _DirCtx) -> int:
        """dht_free_disk_available_subvol: the hashed subvolume unless it is
        filled, else the one with most free space and inodes."""
        await self._refresh_du()
        if not self._filled(hashed):
            return hashed
        best = self._with_free_space(parent) or self._max_space(parent)
        if best is None:
            self.log.warning("no subvolume has enough free space and/or inodes to create")
            return hashed
        return best

    def _usable(self, i: int, parent: _DirCtx) -> bool:
        """dht_subvol_has_err: up, in the layout without error, not leaving."""
        if not self._up[i] or i in self.decommissioned:
            return False
        e = parent.layout.entry(i)
        return e is None or e.err == 0

    def _with_free_space(self, parent: _DirCtx) -> int | None:
        """dht_subvol_with_free_space_inodes (file size 0)."""
        limit = self.opts.min_free_disk
        best, best_value, best_inodes = None, 0.0, 0.0
        for i, du in enumerate(self._du):
            if not self._usable(i, parent):
                continue
            if limit.percent is not None:
                value, enough = du.avail_percent, du.avail_percent > limit.percent
            else:
                value, enough = du.avail_space, du.avail_space > limit.size
            if enough and du.avail_inodes > self.opts.min_free_inodes:
                if du.avail_inodes > best_inodes or value > best_value:
                    best, best_value, best_inodes = i, value, du.avail_inodes
        if best is None:
            return None
        du = self._du[best]
        if limit.percent is not None:
            post = du.avail_blocks * 100 / du.total_blocks if du.total_blocks else 0
            return best if post >= limit.percent else None
        return best if best_value >= limit.size else None

    def _max_space(self, parent: _DirCtx) -> int | None:
        """dht_subvol_maxspace_nonzeroinode."""
        limit = self.opts.min_free_disk
        best, best_value = None, 0.0
        for i, du in enumerate(self._du):
            if not self._usable(i, parent):
                continue
            value = du.avail_percent if limit.percent is not None else du.avail_space
            if value > best_value and du.avail_inodes > 0:
                best, best_value = i, value
        return best

    def _filled(self, i: int) -> bool:
        """dht_is_subvol_filled."""
        du = self._du[i]
        if not du.total_blocks:
            return False      # never measured
        limit: PercentOrSize = self.opts.min_free_disk
        if limit.percent is not None:
            space = du.avail_percent < limit.percent
        else:
            space = du.avail_space < limit.size
        return space or du.avail_inodes < self.opts.min_free_inodes

    async def _refresh_du(self) -> None:
        """dht_get_du_info: statfs of every brick, at most once a second."""
        now = time.monotonic()
        if now - self._du_time < DU_REFRESH:
            return
        self._du_time = now
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "statfs", Loc.root(), None))
        for i in ups:
            r = results[i]
            if isinstance(r, FopError):
                self.log.warning("failed to get disk info from %s: %s", self.names[i], r)
                continue
            self._du[i] = _disk_usage(r.statvfs)

    def _chunks(self) -> dict[int, int]:
        return {i: du.chunks for i, du in enumerate(self._du) if du.chunks}

    # ======================================================================
    # helpers: rename

    async def _rename_file(self, src: Loc, sparent: _DirCtx, sctx: _FileCtx, dst: Loc,
                           dparent: _DirCtx, dst_ctx: _FileCtx | None, xdata) -> RenameReply:
        """dht_rename_create_links, dht_do_rename, dht_rename_cbk and
        dht_rename_unlink, for src_hashed SH, src_cached SC, dst_hashed DH,
        dst_cached DC."""
        sh = self._hashed(sparent, src.name)
        sc = sctx.cached
        dh = self._hashed(dparent, dst.name)
        if sh is None or dh is None:
            raise FopError(errno.EINVAL, "no hashed subvolume in the layout")
        dc = dst_ctx.cached if dst_ctx is not None else None
        self._require_up(sc)
        self._require_up(dh)
        linked = added_link = False
        if sc == dc:
            if dh != dc:
                with _as_root():
                    try:
                        await self._wind(dh, "unlink", dst, 0, {INTERNAL_FOP: "yes"})
                    except FopError as e:
                        if e.errno not in _MISSING:
                            raise
        elif sc != dh:
            if dh != sh:
                # a linkto for the *old* name on the new hashed brick: the
                # rename there then turns it into the new name's linkto
                await self._create_linkto(dh, sc, src, src.gfid)
                linked = True
            try:
                await self._link_replacing_linkto(sc, src, dst)
                added_link = True
            except FopError:
                if linked:
                    await self._drop_linkto(dh, src)
                raise
        where = sc if sc == dc else dh
        try:
            reply = await self._wind(where, "rename", src, dst, xdata)
        except FopError:
            if linked and dh != sh and dh != sc:
                await self._drop_linkto(dh, src)
            if added_link and sc != dh:
                with _as_root():
                    try:
                        await self._wind(sc, "unlink", dst, 0, {INTERNAL_FOP: "yes"})
                    except FopError as e:
                        self.log.warning("%s: link left after a failed rename: %s", dst, e)
            raise
        if sc == dc and dh != dc:
            try:
                await self._create_linkto(dh, sc, dst, src.gfid)
            except FopError as e:
                self.log.info("%s: linkto file on %s not created: %s", dst, self.names[dh], e)
        cleanups = []
        if sc != dh and sc != dc:
            cleanups.append((sc, src))      # the old name of the data file
        if sh != where and sh != sc:
            cleanups.append((sh, src))      # the old name's linkto file
        if dc is not None and dc != dh and dc != sc:
            cleanups.append((dc, dst))      # the replaced file's data
        for i, loc in cleanups:
            try:
                with _as_root():
                    await self._wind(i, "unlink", dataclasses.replace(loc, gfid=None), 0,
                                     {INTERNAL_FOP: "yes"})
            except FopError as e:
                if e.errno not in _MISSING:
                    self.log.warning("%s: rename left %s on %s: %s", src, loc,
                                     self.names[i], e)
        iatt = reply.iatt
        if where != sc:
            # the rename moved a linkto file: the file is described by its data
            try:
                iatt = (await self._wind(sc, "stat", Loc(gfid=src.gfid), None)).iatt
            except FopError as e:
                self.log.debug("%s: stat after rename: %s", dst, e)
        self._remember_file(src.gfid, sc)
        return RenameReply(_strip_phase1(iatt), _fixed_dir(reply.preoldparent),
                           _fixed_dir(reply.postoldparent), _fixed_dir(reply.prenewparent),
                           _fixed_dir(reply.postnewparent), xdata=reply.xdata)

    async def _link_replacing_linkto(self, i: int, src: Loc, dst: Loc):
        """link src to dst on brick i; a stale linkto file in the way is
        removed first (GlusterFS's force-replace)."""
        try:
            with _as_root():
                return await self._wind(i, "link", src, dataclasses.replace(dst, gfid=None),
                                        {INTERNAL_FOP: "yes"})
        except FopError as e:
            if e.errno != errno.EEXIST:
                raise
        existing = await self._wind(i, "lookup", dataclasses.replace(dst, gfid=None),
                                    {self.linkto_key: UInt(256)})
        if not self._is_linkto(existing.iatt, existing.xdata):
            raise FopError(errno.EEXIST)
        await self._unlink_stale_linkto(i, dst)
        with _as_root():
            return await self._wind(i, "link", src, dataclasses.replace(dst, gfid=None),
                                    {INTERNAL_FOP: "yes"})

    async def _rename_dir(self, src: Loc, sctx: _DirCtx, dst: Loc, dparent: _DirCtx,
                          dst_ctx: _DirCtx | None, xdata) -> RenameReply:
        """dht_rename_dir: every brick must be up; an existing target must be
        empty everywhere; the new name's hashed brick first, then the
        others; a failure anywhere is undone where it succeeded."""
        for i in range(self.count):
            self._require_up(i)
        if isinstance(dst_ctx, _DirCtx):
            try:
                await self._check_target_empty(dst)
            except FopError as e:
                # the kernel's order: a target inside the source is EINVAL first
                if e.errno == errno.ENOTEMPTY and src.path and dst.path and \
                        dst.path.startswith(src.path.rstrip("/") + "/"):
                    raise FopError(errno.EINVAL) from None
                raise
        dh = self._hashed(dparent, dst.name)
        if dh is None:
            raise FopError(errno.EIO, f"{dst}: no subvolume in the layout for this name")
        dst_plain = dataclasses.replace(dst, gfid=dst.gfid if dst_ctx is not None else None)
        first = await self._wind(dh, "rename", src, dst_plain, xdata)
        others = [i for i in range(self.count) if i != dh]
        results = await self._each(others, lambda i: self._wind(i, "rename", src, dst_plain,
                                                               xdata))
        failed = {i: r for i, r in results.items() if isinstance(r, FopError)}
        if failed:
            done = [dh] + [i for i in others if i not in failed]
            back_src = dataclasses.replace(dst, gfid=src.gfid)
            back_dst = dataclasses.replace(src, gfid=None)
            for i in done:
                try:
                    await self._wind(i, "rename", back_src, back_dst, None)
                except FopError as e:
                    self.log.error("%s: rename not undone on %s: %s", src, self.names[i], e)
            raise next(iter(failed.values()))
        if isinstance(dst_ctx, _DirCtx):
            self._forget(dst.gfid)
        replies = [first] + [results[i] for i in others]
        return RenameReply(_merge_dir_iatts([r.iatt for r in replies]),
                           _fixed_dir(first.preoldparent), _fixed_dir(first.postoldparent),
                           _fixed_dir(first.prenewparent), _fixed_dir(first.postnewparent))

    async def _check_target_empty(self, dst: Loc) -> None:
        """dht_rename_readdir_cbk: a directory being replaced must be empty
        on every brick (linkto files count)."""
        for i in range(self.count):
            fd = Fd(gfid=dst.gfid, is_dir=True)
            try:
                await self._wind(i, "opendir", dst, fd, None)
            except FopError as e:
                if e.errno in _MISSING:
                    continue
                raise
            try:
                entries = (await self._wind(i, "readdir", fd, 4096, 0, None)).entries
                if any(e.name not in (".", "..") for e in entries):
                    raise FopError(errno.ENOTEMPTY)
            finally:
                try:
                    await self.children[i].releasedir(fd, None)
                except FopError:
                    pass

    # ======================================================================
    # helpers: readdir

    def _fd_is_dir(self, fd: Fd) -> bool:
        return isinstance(fd.ctx.get(self), _DirFd) or \
            (fd.is_dir and not isinstance(fd.ctx.get(self), _FileFd))

    def _dir_fd(self, fd: Fd) -> _DirFd:
        """A directory fd's context; an fd never opened here (anonymous) is
        opened on each brick when first used."""
        where = fd.ctx.get(self)
        if isinstance(where, _DirFd):
            return where
        if isinstance(where, _FileFd):
            raise FopError(errno.ENOTDIR)
        where = fd.ctx[self] = _DirFd(set())
        return where

    async def _ensure_open(self, fd: Fd, where: _DirFd, i: int) -> bool:
        if i in where.opened:
            return True
        try:
            await self._wind(i, "opendir", Loc(gfid=GFID(fd.gfid)), fd,
                             {self.linkto_key: UInt(256)})
        except FopError:
            return False
        where.opened.add(i)
        return True

    async def _readdir(self, fd: Fd, size: int, offset: int, xdata, plus: bool) -> DirReply:
        """dht_do_readdir and its callbacks: one brick after another, from
        the brick and offset the d_off names."""
        where = self._dir_fd(fd)
        if fd.gfid is None:
            raise FopError(errno.EBADF)
        ctx = await self._dir_ctx(GFID(fd.gfid), None)
        first_up = self._first_up()
        index, child_offset = dl.deitransform(offset, self.count) if offset else (0, 0)
        if index >= self.count:
            raise FopError(errno.EINVAL, f"readdir offset {offset:#x} names no subvolume")
        req = dict(xdata or {})
        if plus:
            req[self.linkto_key] = UInt(256)
        while index < self.count:
            if not self._up[index] or not await self._ensure_open(fd, where, index):
                index, child_offset = index + 1, 0
                continue
            child_req = req
            if self.opts.readdir_optimize and index != first_up:
                child_req = {**req, READDIR_SKIP_DIRS: UInt(1)}
            try:
                reply = await self._wind(index, "readdirp" if plus else "readdir", fd, size,
                                         child_offset, child_req)
            except FopError as e:
                self.log.debug("readdir on %s failed: %s", self.names[index], e)
                index, child_offset = index + 1, 0
                continue
            entries = reply.entries
            if not entries:
                index, child_offset = index + 1, 0
                continue
            kept = [e for e in entries
                    if self._show_entry(e, index, ctx, plus, first_up, xdata)]
            for e in kept:
                e.off = dl.itransform(e.off, index, self.count)
            if kept:
                return DirReply(kept)
            child_offset = entries[-1].off
        return DirReply([])

    def _show_entry(self, entry, index: int, ctx: _DirCtx, plus: bool, first_up,
                    xdata) -> bool:
        """dht_readdirp_cbk / dht_readdir_cbk: which brick shows an entry."""
        if not plus:
            if self.count == 1:
                return True
            if entry.type == 4 and self.opts.readdir_optimize:       # DT_DIR
                return index == first_up
            hashed = self._hashed(ctx, entry.name)
            return hashed is None or hashed == index
        iatt = entry.iatt
        if iatt is not None and self._is_linkto(iatt, entry.xdata):
            return False
        if iatt is not None and self.count > 1 and iatt.is_dir:
            if self.opts.readdir_optimize:
                if index != first_up:
                    return False
            else:
                hashed = self._hashed(ctx, entry.name)
                if hashed != index and ((hashed is not None and self._up[hashed])
                                        or index != first_up):
                    return False
        if self.opts.lookup_unhashed == "auto":
            hashed = self._hashed(ctx, entry.name)
            if hashed is None or hashed != index:
                ctx.search_unhashed += 1
        if iatt is not None:
            if iatt.is_dir:
                entry.iatt = dataclasses.replace(iatt, size=DIR_STAT_SIZE,
                                                 blocks=DIR_STAT_BLOCKS)
            else:
                entry.iatt = _strip_phase1(iatt)
                if iatt.gfid is not None and not iatt.gfid.is_null and \
                        entry.name not in (".", ".."):
                    self._remember_file(iatt.gfid, index)
        entry.xdata = self._visible_xdata(entry.xdata, xdata)
        return True

    async def _dir_fd_open(self, fd: Fd) -> list[int]:
        """The bricks a directory fd is open on (opened where it was not yet,
        as for an anonymous fd), up ones only; ENOTCONN when none."""
        where = self._dir_fd(fd)
        for i in range(self.count):
            if self._up[i] and i not in where.opened:
                await self._ensure_open(fd, where, i)
        opened = sorted(i for i in where.opened if self._up[i])
        if not opened:
            raise FopError(errno.ENOTCONN, "the directory is open on no brick that is up")
        return opened

    async def _dir_fd_lead(self, fd: Fd, mds: bool = False) -> int:
        """The brick a single-brick fop on a directory fd goes to: its mds
        (with `mds`) or its first subvolume, as for the directory's loc;
        the fd's first brick when the directory is gone from the context
        (removed while open)."""
        opened = await self._dir_fd_open(fd)
        ctx = self._ctx.get(GFID(fd.gfid)) if fd.gfid is not None else None
        if isinstance(ctx, _DirCtx):
            if mds and ctx.mds in opened:
                return ctx.mds
            lead = self._dir_first(ctx)
            if lead in opened:
                return lead
        return opened[0]

    async def _dir_fd_all(self, fd: Fd, call) -> list:
        """`call` on every brick the directory fd is open on: the answers of
        those that succeeded; the first error when none did."""
        opened = await self._dir_fd_open(fd)
        results = await self._each(opened, call)
        replies = [results[i] for i in opened if not isinstance(results[i], FopError)]
        if not replies:
            raise results[opened[0]]
        return replies

    async def _dir_fd_mds_then_all(self, fd: Fd, call) -> list:
        """A change through a directory fd: the mds brick first, then the rest."""
        lead = await self._dir_fd_lead(fd, mds=True)
        first = await call(lead)
        others = [i for i in await self._dir_fd_open(fd) if i != lead]
        results = await self._each(others, call)
        replies = [first]
        for i in others:
            r = results[i]
            if isinstance(r, FopError):
                self.log.info("directory fd: not applied on %s: %s", self.names[i], r)
                continue
            replies.append(r)
        return replies

    async def _release_dir(self, fd: Fd, where: _DirFd, xdata) -> Reply:
        for i in sorted(where.opened):
            if not self._up[i]:
                continue
            try:
                await self.children[i].releasedir(fd, xdata)
            except FopError as e:
                self.log.debug("releasedir on %s: %s", self.names[i], e)
        return Reply()

    # ======================================================================
    # helpers: xattrs

    def _check_readable_key(self, name) -> None:
        if name == self.mds_key:
            raise FopError(errno.ENOTSUP, f"{name} is distribute's own")
        if name in (self.layout_key, self.commithash_key):
            raise FopError(errno.ENODATA)

    def _refuse_internal_keys(self, xattrs: dict) -> None:
        for key in xattrs:
            if key in (self.layout_key, self.mds_key, self.commithash_key, self.linkto_key):
                raise FopError(errno.EPERM, f"{key} belongs to distribute")

    def _visible(self, xattrs: dict) -> dict:
        """dht_getxattr_cbk: the layout, mds and commit-hash keys are not
        shown; nor quota and pgfid keys to clients (pid >= 0)."""
        hidden = (self.layout_key, self.mds_key, self.commithash_key)
        internal = fops.caller.get().pid < 0
        return {k: v for k, v in xattrs.items()
                if k not in hidden and (internal or not k.startswith(
                    ("trusted.glusterfs.quota", "trusted.pgfid")))}

    async def _pathinfo(self, loc: Loc, ctx, name: str, xdata) -> DictReply:
        """dht_vgetxattr: `(<DISTRIBUTE:name> brick-pathinfo ...)`; a directory
        lists every brick's and its layout."""
        if isinstance(ctx, _DirCtx):
            replies = await self._dir_each(ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                     xdata))
            values = " ".join(_text(r.dict.get(name)) for r in replies) + " "
            layout = " ".join(f"({self.names[e.index]} {e.start} {e.stop})"
                              for e in sorted(ctx.layout.entries, key=dl._start_key))
            text = f"((<DISTRIBUTE:{self.name}> {values}) ({self.name}-layout {layout}))"
        else:
            reply = await self._on_file(loc, ctx, lambda i: self._wind(i, "getxattr", loc, name,
                                                                         xdata))
            text = f"(<DISTRIBUTE:{self.name}> {_text(reply.dict.get(name))} )"
        return DictReply({name: text})

    async def _linkinfo(self, loc: Loc, ctx, xdata) -> DictReply:
        """trusted.distribute.linkinfo: the pathinfo of the linkto file on
        the hashed brick; ENODATA when the data is on the hashed brick."""
        if isinstance(ctx, _DirCtx) or loc.pargfid is None or loc.name is None:
            raise FopError(errno.ENODATA)
        parent = await self._dir_ctx(loc.pargfid, _parent_path(loc.path))
        hashed = self._hashed(parent, loc.name)
        if hashed is None or hashed == ctx.cached:
            raise FopError(errno.ENODATA)
        reply = await self._wind(hashed, "getxattr", dataclasses.replace(loc, gfid=None),
                                 PATHINFO_KEYS[0], xdata)
        return DictReply({LINKINFO_KEY: reply.dict.get(PATHINFO_KEYS[0])})


TRANSLATOR = Distribute


# --------------------------------------------------------------------------
# module helpers


@contextmanager
def _as_root():
    """FRAME_SU_DO: run internal fops (linkto files, heals) as root, keeping
    the caller's pid and lock owner."""
    who = fops.caller.get()
    token = fops.caller.set(dataclasses.replace(who, uid=0, gid=0, groups=()))
    try:
        yield
    finally:
        fops.caller.reset(token)


def _is_root(loc: Loc) -> bool:
    if loc.name is not None or loc.pargfid is not None:
        return False
    if loc.gfid is not None:
        return loc.gfid == ROOT_GFID
    return loc.path is not None and not loc.path.strip("/")


def _root_loc(loc: Loc) -> Loc:
    return Loc(path="/", gfid=ROOT_GFID)


def _parent_path(path: str | None) -> str | None:
    if not path or not path.startswith("/"):
        return None
    head = path.rstrip("/").rpartition("/")[0]
    return head or "/"


def _join(path: str | None, name: str) -> str | None:
    if path is None:
        return None
    return path.rstrip("/") + "/" + name


def _with_gfid_req(xdata: dict | None) -> dict:
    """A new entry's xdata with a gfid-req (one is made when absent: the
    data file and its linkto file, or every brick's directory, share it)."""
    xd = dict(xdata or {})
    if xd.get(GFID_REQ) is None:
        xd[GFID_REQ] = GFID.random()
    else:
        xd[GFID_REQ] = GFID(xd[GFID_REQ])
    return xd


def _open_fds(xdata: dict | None) -> int:
    try:
        return int((xdata or {}).get(OPEN_FD_COUNT, 0))
    except (TypeError, ValueError):
        return 0


def _owner_perm(iatt: Iatt) -> tuple[int, int, int]:
    return iatt.uid, iatt.gid, stat.S_IMODE(iatt.mode)


def _fixed_dir(iatt: Iatt | None) -> Iatt | None:
    """dht_set_fixed_dir_stat."""
    if iatt is None:
        return None
    return dataclasses.replace(iatt, size=DIR_STAT_SIZE, blocks=DIR_STAT_BLOCKS)


def _strip_phase1(iatt: Iatt | None) -> Iatt | None:
    if iatt is None or not dl.is_migration_phase1(iatt.mode):
        return iatt
    return dataclasses.replace(iatt, mode=dl.strip_phase1_flags(iatt.mode))


def _merge_dir_iatts(iatts: list[Iatt]) -> Iatt:
    """dht_iatt_merge over the bricks' answers for one directory."""
    out = Iatt()
    for ia in iatts:
        if ia is None:
            continue
        out.dev, out.gfid, out.ino, out.mode = ia.dev, ia.gfid, ia.ino, ia.mode
        out.nlink, out.rdev, out.blksize, out.flags = ia.nlink, ia.rdev, ia.blksize, ia.flags
        out.uid, out.gid = max(out.uid, ia.uid), max(out.gid, ia.gid)
        for name in ("atime", "mtime", "ctime"):
            if (getattr(ia, name), getattr(ia, name + "_nsec")) > \
                    (getattr(out, name), getattr(out, name + "_nsec")):
                setattr(out, name, getattr(ia, name))
                setattr(out, name + "_nsec", getattr(ia, name + "_nsec"))
    out.size, out.blocks = DIR_STAT_SIZE, DIR_STAT_BLOCKS
    return out


def _entry_reply(reply: EntryReply) -> EntryReply:
    return EntryReply(_strip_phase1(reply.iatt), _fixed_dir(reply.preparent),
                      _fixed_dir(reply.postparent), xdata=reply.xdata)


def _prepost(reply):
    if isinstance(reply, PrePostReply):
        reply.prebuf = _strip_phase1(reply.prebuf)
        reply.postbuf = _strip_phase1(reply.postbuf)
    return reply


def _ranges(layout: Layout) -> list[tuple[int, int, int]]:
    return sorted((e.index, e.start, e.stop) for e in layout.entries)


def _as_uint(value) -> int:
    """An xattr value holding a number: 4 big-endian bytes, or its text."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 4:
            return int.from_bytes(raw, "big")
        value = raw.rstrip(b"\0").decode()
    try:
        return int(value)
    except (TypeError, ValueError):
        raise FopError(errno.EINVAL, f"{value!r} is not a number") from None


def _post_iatt(reply) -> Iatt | None:
    """The attributes a reply shows after the fop."""
    if isinstance(reply, PrePostReply):
        return reply.postbuf
    return getattr(reply, "iatt", None)


def _mirror_args(fd: Fd, fop: str, args: tuple, reply) -> tuple:
    """A data fop's arguments for the migration's new copy: a write through
    an O_APPEND fd landed at the old copy's end, so the new copy (opened
    without O_APPEND) gets it at that offset."""
    if fop == "writev" and fd.flags & os.O_APPEND:
        data, offset, flags, xdata = args
        post = reply.postbuf
        if post is not None and reply.count and post.size >= reply.count:
            offset = post.size - reply.count
        return data, offset, flags, xdata
    return args


def _disk_usage(sv: Statvfs) -> _DiskUsage:
    """dht_du_info_cbk."""
    du = _DiskUsage()
    if sv.blocks:
        du.avail_percent = float(sv.bavail * 100 // sv.blocks)
        du.avail_space = sv.bavail * sv.frsize
        du.chunks = dl.chunks_from_statfs(sv.blocks, sv.bsize)
    du.avail_inodes = float(sv.ffree * 100 // sv.files) if sv.files else 100.0
    du.total_blocks, du.avail_blocks, du.frsize = sv.blocks, sv.bavail, sv.frsize
    return du


def _add_statvfs(total: Statvfs | None, sv: Statvfs) -> Statvfs:
    """dht_statfs_cbk: sum, converting both to the larger block sizes."""
    sv = dataclasses.replace(sv)
    if total is None:
        return sv
    bsize, frsize = max(total.bsize, sv.bsize), max(total.frsize, sv.frsize)
    for part in (total, sv):
        part.bsize = bsize
        if part.frsize != frsize and frsize:
            factor = part.frsize / frsize
            part.frsize = frsize
            part.blocks = int(factor * part.blocks)
            part.bfree = int(factor * part.bfree)
            part.bavail = int(factor * part.bavail)
    total.blocks += sv.blocks
    total.bfree += sv.bfree
    total.bavail += sv.bavail
    total.files += sv.files
    total.ffree += sv.ffree
    total.favail += sv.favail
    total.fsid, total.flag, total.namemax = sv.fsid, sv.flag, sv.namemax
    return total


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).rstrip(b"\0").decode("utf-8", "replace")
    return str(value)
