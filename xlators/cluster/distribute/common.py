"""cluster/distribute's core: its options, GlusterFS's names and numbers,
the contexts it keeps (dht_inode_ctx_t, fd ctx), events, winding to the
subvolumes and the inode contexts of names and gfids (dht-common.c,
dht-helper.c, dht-shared.c).  The translator composed of this and the
other modules is the package's `Distribute`."""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import stat
import time
from contextlib import contextmanager
from typing import Any, Awaitable, Callable

import trio

from glusterpy import fops
from glusterpy.fops import (GFID, ROOT_GFID, FopError, Iatt, Loc, PrePostReply,
                            SET_ATTR_ATIME, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_MTIME,
                            SET_ATTR_UID)
from glusterpy.keys import (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, DHT_XATTR_NAME, GFID_REQ,
                            OPEN_FD_COUNT, QUOTA_LIMIT_KEY, QUOTA_LIMIT_OBJECTS_KEY, SELINUX_KEY)
from glusterpy.options import Option, OptionError, OptionType
from glusterpy.xlator import DOWNWARD_EVENTS, Event, Translator

from . import layout as dl
from .layout import Layout, NameHasher

def rebalance_thread_count(text: str | None, cores: int | None = None) -> int:
    """gf_rebalance_thread_count: cluster.rebal-throttle as the number of
    files a node migrates at once - lazy 1, normal 2, aggressive
    max(cores - 4, 4), or a number from 1 to the node's cores.  ValueError,
    worded as GlusterFS words it, for anything else."""
    cores = cores or os.cpu_count() or 1
    word = "normal" if text is None else text.strip().lower()
    named = {"lazy": 1, "normal": 2, "aggressive": max(cores - 4, 4)}
    if word in named:
        return named[word]
    try:
        count = int(word)
    except ValueError:
        raise ValueError("number of rebalance threads should be {lazy|normal|aggressive} "
                         f"or a number in range from 1 to {cores}, not {text}") from None
    if not 0 < count <= cores:
        raise ValueError(f"number of rebalance threads should be in range from 1 to {cores}, "
                         f"not {count}")
    return count


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
    Option("rebal-throttle", OptionType.STR, "normal",
           " Sets the maximum number of parallel file migrations allowed on a node during "
           "the rebalance operation: lazy migrates one file at a time, normal two, "
           "aggressive max(processing units - 4, 4), or a number from 1 to the node's "
           "processing units.  Read by the rebalance process (glusterpy/rebalance), live.",
           set_check=rebalance_thread_count,
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
#: seconds between statfs refreshes of the bricks' free space (GlusterFS
#: refreshes at most once a second)
DU_REFRESH = 1.0
#: setattr bits a directory heal copies (GlusterFS sends 0xffffffff; its
#: posix ignores the size bit, ours would truncate)
HEAL_ATTR_VALID = SET_ATTR_MODE | SET_ATTR_UID | SET_ATTR_GID | SET_ATTR_ATIME | SET_ATTR_MTIME

MISSING = (errno.ENOENT, errno.ESTALE)


@dataclasses.dataclass(slots=True)
class DirCtx:
    """What distribute keeps about a directory (dht_inode_ctx_t)."""

    layout: Layout
    mds: int | None = None
    search_unhashed: int = 0   # entries seen on a brick they do not hash to


@dataclasses.dataclass(slots=True)
class FileCtx:
    """A non-directory: the subvolume holding its data."""

    cached: int


@dataclasses.dataclass(slots=True)
class FileFd:
    """fd.ctx[distribute] of a file: where its data is, and every subvolume
    the fd was opened on (a migration opens it on the new brick too)."""

    cached: int
    opened: set[int]
    migration_target: int | None = None


@dataclasses.dataclass(slots=True)
class DirFd:
    """fd.ctx[distribute] of a directory: the subvolumes it is open on."""

    opened: set[int]


@dataclasses.dataclass(slots=True)
class DiskUsage:
    """dht_du_t: one brick's free space as the last statfs showed it."""

    avail_percent: float = 0.0
    avail_space: int = 0
    avail_inodes: float = 100.0
    chunks: int = 0
    total_blocks: int = 0
    avail_blocks: int = 0
    frsize: int = 0


class DhtCommon(Translator):
    """What every concern of the translator shares: its state, events and
    the helpers that wind to the subvolumes and keep inode contexts."""

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
        self._du = [DiskUsage() for _ in self.children]
        self._du_time = 0.0
        # what it knows of each inode (DirCtx or FileCtx) is its slot in the
        # graph's inode table, bounded and dropped with the inode there
        self.vol_commit_hash = 0
        #: files this translator is migrating (migrate.Migration by gfid)
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
                "directories": sum(isinstance(c, DirCtx) for _, c in self.itable.contexts(self)),
                "files": sum(isinstance(c, FileCtx) for _, c in self.itable.contexts(self))}

    async def ipc(self, op, xdata=None):
        """dht_ipc: to every subvolume; success if one served it."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, lambda i: self._wind(i, "ipc", op, xdata))
        for r in results.values():
            if not isinstance(r, FopError):
                return r
        raise next(iter(results.values()), FopError(errno.ENOTCONN))

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

    async def _dir_each(self, ctx: DirCtx, call) -> list:
        """`call` on every brick that is up, as dht_attr and dht_getxattr
        do: the answers of those that succeeded; the first error when none
        did (ENOTCONN when none is up)."""
        ups = [i for i in range(self.count) if self._up[i]]
        results = await self._each(ups, call)
        replies = [results[i] for i in ups if not isinstance(results[i], FopError)]
        if not replies:
            raise next((results[i] for i in ups), FopError(errno.ENOTCONN))
        return replies

    async def _dir_mds_then_all(self, loc, ctx: DirCtx, call) -> list:
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

    def _dir_first(self, ctx: DirCtx) -> int:
        """The subvolume GlusterFS uses for a directory's single-brick fops:
        the first of its layout sorted by start, if up, else the first up."""
        for e in sorted(ctx.layout.entries, key=dl.start_key):
            if self._up[e.index] and not e.err:
                return e.index
        for i in range(self.count):
            if self._up[i]:
                return i
        raise FopError(errno.ENOTCONN, "no subvolume is up")

    # ======================================================================
    # helpers: names, inodes and their contexts

    async def _entry(self, loc) -> tuple[Loc, DirCtx]:
        """The loc with parent gfid and name filled in, and the parent's
        layout (looked up when not known)."""
        if loc.pargfid is not None and loc.name is not None:
            fops.check_name(loc.name)
            ppath = parent_path(loc.path)
            ctx = await self._dir_ctx(loc.pargfid, ppath)
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
        if self.itable.peek_ctx(self, ROOT_GFID) is None:
            await self.lookup(Loc.root(), None)
        for name in [c for c in path.split("/") if c]:
            walked += "/" + name
            reply = await self.lookup(Loc(path=walked, pargfid=gfid, name=name), None)
            if not reply.iatt.is_dir:
                raise FopError(errno.ENOTDIR)
            gfid = reply.iatt.gfid
        return gfid

    async def _dir_ctx(self, gfid: GFID, path: str | None) -> DirCtx:
        ctx = self.itable.ctx(self, gfid)
        if isinstance(ctx, DirCtx):
            return ctx
        if gfid == ROOT_GFID:
            await self.lookup(Loc.root(), None)
        else:
            await self._discover(Loc(gfid=gfid, path=path), None)
        ctx = self.itable.ctx(self, gfid)
        if not isinstance(ctx, DirCtx):
            raise FopError(errno.ENOTDIR, f"{path or gfid} is not a directory")
        return ctx

    async def _inode(self, loc) -> tuple[Loc, DirCtx | FileCtx]:
        """The loc with its gfid, and what distribute knows of the inode."""
        if loc.gfid is None:
            if is_root(loc):
                loc = root_loc(loc)
            else:
                reply = await self.lookup(loc, None)
                loc = dataclasses.replace(loc, gfid=reply.iatt.gfid)
        ctx = self.itable.ctx(self, loc.gfid)
        if ctx is None:
            if loc.gfid == ROOT_GFID:
                await self.lookup(root_loc(loc), None)
            else:
                await self._discover(loc, None)
            ctx = self.itable.ctx(self, loc.gfid)
            if ctx is None:
                raise FopError(errno.ESTALE)
        return loc, ctx

    async def _existing(self, eloc: Loc, parent: DirCtx) -> tuple[Loc, DirCtx | FileCtx]:
        """An entry that must exist: its gfid (looked up by name when the loc
        has none) and context."""
        if eloc.gfid is None:
            reply = await self._lookup_named(eloc, parent, None)
            eloc = dataclasses.replace(eloc, gfid=reply.iatt.gfid)
        return await self._inode(eloc)

    def _remember_dir(self, gfid: GFID, layout: Layout, mds: int | None) -> DirCtx:
        old = self.itable.ctx(self, gfid)
        ctx = DirCtx(layout, mds if mds is not None else
                      (old.mds if isinstance(old, DirCtx) else None))
        if isinstance(old, DirCtx):
            ctx.search_unhashed = old.search_unhashed
        self._store(gfid, ctx)
        return ctx

    def _remember_file(self, gfid: GFID, cached: int) -> None:
        known = self.itable.peek_ctx(self, gfid)
        if type(known) is FileCtx and known.cached == cached:
            return  # a listing shows every file again: no new context each time
        self._store(gfid, FileCtx(cached))

    def _store(self, gfid: GFID, ctx) -> None:
        """Keep an inode's context in the graph's inode table (its LRU bound
        forgets the least recently used, never the root's)."""
        self.itable.set_ctx(self, GFID(gfid), ctx)

    def _forget(self, gfid: GFID | None) -> None:
        self.itable.del_ctx(self, gfid)

    def _file_subvol(self, gfid: GFID | None) -> int | None:
        ctx = self.itable.ctx(self, gfid) if gfid is not None else None
        return ctx.cached if isinstance(ctx, FileCtx) else None

    def _hashed(self, parent: DirCtx, name: str) -> int | None:
        # the hash is pure Python (~6 us a short name, twice per unlink):
        # skipped when one range holds every value it could give
        whole = parent.layout.whole()
        if whole is not None:
            return whole
        return parent.layout.search(self.hasher.hash(name))

    def _hashed_for_new(self, parent: DirCtx, eloc: Loc) -> int:
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


# --------------------------------------------------------------------------
# module helpers


@contextmanager
def as_root():
    """FRAME_SU_DO: run internal fops (linkto files, heals) as root, keeping
    the caller's pid and lock owner."""
    who = fops.caller.get()
    token = fops.caller.set(dataclasses.replace(who, uid=0, gid=0, groups=()))
    try:
        yield
    finally:
        fops.caller.reset(token)


def is_root(loc: Loc) -> bool:
    if loc.name is not None or loc.pargfid is not None:
        return False
    if loc.gfid is not None:
        return loc.gfid == ROOT_GFID
    return loc.path is not None and not loc.path.strip("/")


def root_loc(loc: Loc) -> Loc:
    return Loc(path="/", gfid=ROOT_GFID)


def parent_path(path: str | None) -> str | None:
    if not path or not path.startswith("/"):
        return None
    head = path.rstrip("/").rpartition("/")[0]
    return head or "/"


def with_gfid_req(xdata: dict | None) -> dict:
    """A new entry's xdata with a gfid-req (one is made when absent: the
    data file and its linkto file, or every brick's directory, share it)."""
    xd = dict(xdata or {})
    if xd.get(GFID_REQ) is None:
        xd[GFID_REQ] = GFID.random()
    else:
        xd[GFID_REQ] = GFID(xd[GFID_REQ])
    return xd


def open_fds(xdata: dict | None) -> int:
    try:
        return int((xdata or {}).get(OPEN_FD_COUNT, 0))
    except (TypeError, ValueError):
        return 0


def fixed_dir(iatt: Iatt | None) -> Iatt | None:
    """dht_set_fixed_dir_stat."""
    if iatt is None:
        return None
    out = iatt.copy()  # every entry fop's parents pass here: not dataclasses.replace
    out.size, out.blocks = DIR_STAT_SIZE, DIR_STAT_BLOCKS
    return out


def strip_phase1(iatt: Iatt | None) -> Iatt | None:
    if iatt is None or not dl.is_migration_phase1(iatt.mode):
        return iatt
    out = iatt.copy()
    out.mode = dl.strip_phase1_flags(iatt.mode)
    return out


def merge_dir_iatts(iatts: list[Iatt]) -> Iatt:
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


def prepost(reply):
    if isinstance(reply, PrePostReply):
        reply.prebuf = strip_phase1(reply.prebuf)
        reply.postbuf = strip_phase1(reply.postbuf)
    return reply


def post_iatt(reply) -> Iatt | None:
    """The attributes a reply shows after the fop."""
    if isinstance(reply, PrePostReply):
        return reply.postbuf
    return getattr(reply, "iatt", None)
