"""The FUSE bridge: pyfuse3 requests become fops on a translator graph.

Follows GlusterFS's fuse-bridge (xlators/mount/fuse/src/fuse-bridge.c):

* FUSE node ids map to gfids, with the kernel's lookup count kept for each
  and the entry dropped when `forget` brings it to zero.  The inode number
  the kernel shows (st_ino) is GlusterFS's: the gfid's last 8 bytes
  (gfid_to_ino), so it is the same on every client and across remounts;
  the root's gfid gives 1, FUSE's root node id.  GlusterFS hands the
  kernel its inode_t pointers as node ids and the gfid's bytes as st_ino;
  pyfuse3 makes the two one number, so the gfid's bytes serve as both.  A
  second gfid whose bytes collide with one the kernel still knows (or
  that give 0 or 1) gets a small node id from a counter instead.  The
  graph's inode table (glusterpy/inode.py) gets the same lookup counts, so
  an inode the kernel forgets leaves every translator's context with it.
  `lru-limit` (mount option, 65,536 as GlusterFS's) bounds both: past it
  the bridge asks the kernel to drop its least recently used entries
  (fuse-bridge's lru-limit invalidation), whose forgets then shrink the
  node map, and the table drops its own least recently used inodes.
* Entries are resolved by (parent gfid, name), so the kernel's dentry cache
  and ours never disagree about paths.
* Who calls (uid, gid, supplementary groups, pid, umask) comes from the
  request and rides in `fops.caller`, as fuse-bridge fills frame->root;
  the groups are read from /proc and kept `gid_timeout` seconds per
  (pid, uid, gid), fuse-bridge's gid cache (mount option gid-timeout,
  default 300 as in GlusterFS).
* New entries carry a fresh gfid in xdata "gfid-req", as fuse-bridge does.
* readdir is served with readdirp, so the kernel gets attributes with the
  names (readdirplus), each counted as a lookup.
* FopError(errno) becomes FUSEError(errno) here, at the edge.
* security.capability and security.selinux never leave the client unless
  the `capability` / `selinux` mount options say so, and setting them gives
  EOPNOTSUPP (fuse_check_selinux_cap_xattr).  Getting security.capability
  gives ENODATA as in fuse-bridge: the kernel asks for it before each
  write to a file, so this saves a round trip to the bricks per write(2).
  Getting security.selinux gives EOPNOTSUPP, where fuse-bridge says
  ENODATA: this mount cannot hold a label (setting one is refused), and
  that is what EOPNOTSUPP says - coreutils' `ls -l` asks for every listed
  file's label and stops asking for the rest of a filesystem that answers
  it, so a listing costs no request per file for it.  Likewise POSIX ACLs
  (system.posix_acl_access/default) give EOPNOTSUPP unless the `acl`
  mount option is given, as fuse-bridge does without it: `ls -l` asks for
  the access ACL of every file it lists.
* Caching: `attr_timeout`/`entry_timeout` (GlusterFS's attribute-timeout
  and entry-timeout mount options) are how long the kernel trusts what it
  was told; `direct_io` (direct-io-mode=enable) opens every file with
  FOPEN_DIRECT_IO, so each read and write reaches the graph.  O_DIRECT
  travels down to the brick with the open flags, as in GlusterFS; a file
  opened O_DIRECT also gets FOPEN_DIRECT_IO here, where GlusterFS leaves
  O_DIRECT to the kernel's own direct IO path - both bypass the page cache.
* flush/fsync: close(2) sends FLUSH, fsync(2) FSYNC, both wound down the
  graph and their errors returned to the caller.  GlusterFS defers write
  errors in write-behind and returns them at flush; glusterpy's graphs have
  no write-behind, so write(2) reports its own error at once, and the only
  deferred writes are the kernel's (dirty pages of a shared mmap): the
  kernel keeps their errors and fsync(2)/msync(2) report them.  The FLUSH
  fop's own error (ENOTCONN once a brick is gone) is what close(2) returns.
* A graph switch (`switch_graph`, when the volfile's shape changes) holds
  new requests at the door, lets the ones running finish on the old graph,
  reopens every open file and directory on the new graph by gfid (the
  kernel's handles and node ids stay valid), swaps, and releases the old
  fds - fuse-bridge's fuse_graph_switch and fd migration, done with the
  bridge quiet so no request sees half a switch.

Locks: fcntl record locks reach features/locks on the bricks as the lk
fop, as fuse-bridge sends them, so every client sees them; pyfuse3 (3.5)
has no lock handlers, so glusterpy/fuse/posix_locks.py gives libfuse its
own (read there how, and its limits).  flock(2) locks stay with the kernel
of one mount (FUSE_CAP_FLOCK_LOCKS is not asked for).
"""

from __future__ import annotations

import errno
import logging
import os
import stat
import sys
import time
from collections import OrderedDict
from dataclasses import dataclass

import pyfuse3
import trio

from ..fops import (GFID, ROOT_GFID, SET_ATTR_ATIME, SET_ATTR_GID, SET_ATTR_MODE,
                    SET_ATTR_MTIME, SET_ATTR_UID, Caller, Fd, FopError, Iatt, Loc, caller,
                    dev_from_ia, gfid_to_ino)
from ..keys import ACL_ACCESS_KEY, ACL_DEFAULT_KEY, CAPABILITY_KEY, GFID_REQ, SELINUX_KEY

log = logging.getLogger(__name__)

READDIR_BUDGET = 128 * 1024
#: os.fsencode's codec, for the per-entry path of readdir
_FS_ENCODING, _FS_ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()
#: callers whose groups are kept (fuse-bridge's gid cache is as bounded)
GID_CACHE_SIZE = 4096
#: handlers pyfuse3 lacks, called from the libfuse slots filled in
#: copy_range.py: requests like pyfuse3's (errors translated, held during a
#: graph switch)
LOWLEVEL_HANDLERS = ("copy_file_range", "lseek")
#: handlers that may change what a directory listing shows (names or
#: attributes): entries kept for the kernel's next readdir request are
#: dropped when one of these completes (see FuseBridge.readdir)
CHANGING_HANDLERS = frozenset((
    "write", "setattr", "create", "mknod", "mkdir", "unlink", "rmdir", "rename", "link",
    "symlink", "setxattr", "removexattr", "fallocate", "copy_file_range", "open", "flush",
    "fsync", "release"))


@dataclass(slots=True)
class _Node:
    gfid: GFID
    lookups: int
    #: the entry the kernel last learned it by, to ask it to drop that
    parent: int = 0
    name: bytes = b""
    #: asked the kernel to drop it; waiting for its forget
    invalidating: bool = False


@dataclass(slots=True)
class _DirRest:
    #: the offset the kernel's next readdir of the handle will ask from
    offset: int
    entries: list
    #: time.monotonic() of the readdirp they came from
    fetched: float
    #: FuseBridge._changes when they were fetched
    changes: int


class FuseBridge(pyfuse3.Operations):
    """pyfuse3 handlers over `top`, the graph's top translator.

    `attr_timeout`/`entry_timeout` are how long the kernel may cache
    attributes and names (seconds, GlusterFS's attribute-timeout and
    entry-timeout); `direct_io` bypasses the kernel page cache for files;
    `gid_timeout` is how long a caller's supplementary groups are kept;
    `capability`/`selinux` let those security xattrs through;
    `writeback_cache` lets the kernel keep writes in its page cache and send
    them later in larger pieces (GlusterFS's kernel-writeback-cache mount
    option, off by default: another client then sees a write only once the
    kernel flushes it, at fsync, close or memory pressure).
    """

    enable_writeback_cache = False
    supports_dot_lookup = False

    def __init__(self, top, *, attr_timeout: float = 1.0, entry_timeout: float = 1.0,
                 direct_io: bool = False, read_only: bool = False, gid_timeout: float = 300,
                 capability: bool = False, selinux: bool = False, lru_limit: int | None = None,
                 writeback_cache: bool = False, acl: bool = False):
        super().__init__()
        self.top = top
        # pyfuse3 reads it when the kernel's INIT arrives, after this
        self.enable_writeback_cache = writeback_cache
        self.lru_limit = lru_limit
        if lru_limit is not None:
            top.itable.limit = lru_limit
        self.capability = capability
        self.acl = acl
        self.selinux = selinux
        self.gid_timeout = gid_timeout
        #: (pid, uid, gid) -> (expiry, groups, the Caller made of them or None)
        self._gid_cache: dict[tuple[int, int, int],
                              tuple[float, tuple[int, ...], Caller | None]] = {}
        self.attr_timeout = attr_timeout
        self.entry_timeout = entry_timeout
        self.direct_io = direct_io
        self.read_only = read_only
        #: node id -> what the kernel knows, least recently used first
        self._nodes: OrderedDict[int, _Node] = OrderedDict({pyfuse3.ROOT_INODE: _Node(ROOT_GFID, 1)})
        #: nodes asked to be dropped whose forget has not come yet
        self._invalidating = 0
        self._by_gfid: dict[GFID, int] = {ROOT_GFID: pyfuse3.ROOT_INODE}
        #: the next node id to try for a gfid whose inode number cannot serve
        self._next_node = pyfuse3.ROOT_INODE + 1
        self._handles: dict[int, Fd] = {}
        self._next_handle = 1
        #: directory handle -> entries fetched that the kernel's last
        #: readdir had no room for (see readdir)
        self._dir_rest: dict[int, _DirRest] = {}
        #: how many CHANGING_HANDLERS requests have completed
        self._changes = 0
        #: requests being served now; set while a graph switch waits for them
        self._inflight = 0
        self._drained: "trio.Event | None" = None
        #: set (and awaited by new requests) while a graph switch runs
        self._switching: "trio.Event | None" = None

    # -- graph switch ----------------------------------------------------------------

    async def switch_graph(self, new_top, drain_timeout: float = 60.0) -> int:
        """Serve from `new_top` from now on (see the module docstring);
        returns how many open fds moved.  A fd that cannot be reopened stays
        bound to the old graph and its next calls fail (EBADF), as
        GlusterFS marks an fd it could not migrate bad."""
        gate = self._switching = trio.Event()
        try:
            if self._inflight:
                self._drained = trio.Event()
                with trio.move_on_after(drain_timeout):
                    await self._drained.wait()
            old_top = self.top
            moved: list[tuple[int, Fd, Fd]] = []
            with _As(Caller(pid=os.getpid())):
                for fh, fd in list(self._handles.items()):
                    new = Fd(gfid=fd.gfid, flags=fd.flags & ~(os.O_CREAT | os.O_EXCL |
                                                                os.O_TRUNC), is_dir=fd.is_dir)
                    try:
                        if fd.is_dir:
                            await new_top.opendir(Loc(gfid=fd.gfid), new, None)
                        else:
                            await new_top.open(Loc(gfid=fd.gfid), new.flags, new, None)
                    except FopError as e:
                        log.warning("fd of %s not reopened on the new graph: %s", fd.gfid, e)
                        continue
                    moved.append((fh, fd, new))
                for fh, _, new in moved:
                    self._handles[fh] = new
                if self.lru_limit is not None:
                    new_top.itable.limit = self.lru_limit
                self.top = new_top
                for _, old, _ in moved:
                    try:
                        await (old_top.releasedir if old.is_dir else old_top.release)(old, None)
                    except FopError:
                        pass
            return len(moved)
        finally:
            self._switching = self._drained = None
            gate.set()

    # -- helpers -------------------------------------------------------------------

    def _gfid(self, node: int) -> GFID:
        try:
            entry = self._nodes[node]
        except KeyError:
            raise pyfuse3.FUSEError(errno.ESTALE) from None
        self._nodes.move_to_end(node)
        return entry.gfid

    def _remember(self, iatt: Iatt, parent: int, name: bytes) -> int:
        """The node id for a gfid the kernel is about to learn (lookup + 1)
        as `name` in directory node `parent`."""
        node = self._node_of(iatt.gfid)
        self._learned(node, parent, name)
        return node

    def _learned(self, node: int, parent: int, name: bytes) -> None:
        entry = self._nodes[node]
        entry.lookups += 1
        if parent:
            entry.parent, entry.name = parent, name
        if entry.invalidating:
            entry.invalidating = False
            self._invalidating -= 1
        self._nodes.move_to_end(node)
        self.top.itable.lookup(entry.gfid)
        if self.lru_limit is not None and len(self._nodes) - self._invalidating > self.lru_limit:
            self._shed()

    def _shed(self) -> None:
        """More nodes than lru-limit: ask the kernel to drop the least
        recently used entries, so that its forgets bound this table and the
        graph's (fuse-bridge's lru-limit invalidation).  Their forgets
        arrive later; until then they are counted as going."""
        excess = len(self._nodes) - self._invalidating - self.lru_limit
        victims = []
        for node, entry in self._nodes.items():
            if len(victims) >= excess:
                break
            if node != pyfuse3.ROOT_INODE and not entry.invalidating and entry.name:
                victims.append((node, entry))
        for node, entry in victims:
            entry.invalidating = True
            self._invalidating += 1
            # to the young end: the next shed starts at nodes not yet asked
            self._nodes.move_to_end(node)
            pyfuse3.invalidate_entry_async(entry.parent, entry.name, ignore_enoent=True)

    def _node_of(self, gfid: GFID) -> int:
        """The node id of `gfid`, made if the kernel does not know it yet:
        GlusterFS's inode number of the gfid, unless that is taken or
        reserved (see the module docstring)."""
        node = self._by_gfid.get(gfid)
        if node is not None:
            return node
        node = gfid_to_ino(gfid)
        while node <= pyfuse3.ROOT_INODE or node in self._nodes:
            # random gfids' numbers lie above 2**63 (the UUID variant bits),
            # so small ones are free but for GlusterFS's reserved gfids
            node = self._next_node
            self._next_node += 1
        self._nodes[node] = _Node(gfid, 0)
        self._by_gfid[gfid] = node
        return node

    def _entry(self, iatt: Iatt, parent: int, name: bytes) -> pyfuse3.EntryAttributes:
        return self._attrs(iatt, self._remember(iatt, parent, name))

    def _attrs(self, iatt: Iatt, node: int) -> pyfuse3.EntryAttributes:
        # once per listed entry and per reply with attributes: the times
        # are computed here rather than through Iatt's properties, and
        # generation stays EntryAttributes' 0
        a = pyfuse3.EntryAttributes()
        a.st_ino = node
        a.entry_timeout = self.entry_timeout
        a.attr_timeout = self.attr_timeout
        a.st_mode = iatt.mode
        a.st_nlink = iatt.nlink
        a.st_uid = iatt.uid
        a.st_gid = iatt.gid
        if iatt.rdev:
            a.st_rdev = dev_from_ia(iatt.rdev)
        a.st_size = iatt.size
        a.st_blksize = iatt.blksize or 4096
        a.st_blocks = iatt.blocks
        a.st_atime_ns = iatt.atime * 1_000_000_000 + iatt.atime_nsec
        a.st_mtime_ns = iatt.mtime * 1_000_000_000 + iatt.mtime_nsec
        a.st_ctime_ns = iatt.ctime * 1_000_000_000 + iatt.ctime_nsec
        return a

    def _caller(self, ctx) -> "_As":
        if ctx is None:
            return _As(Caller(pid=os.getpid()))
        return _As(self._who(ctx))

    def _who(self, ctx) -> Caller:
        """The request's caller, kept in the gid cache beside its groups
        (and as long): a frozen Caller costs more to make than many a
        translator's work on the request, and a process makes many."""
        hit = self._gid_cache.get((ctx.pid, ctx.uid, ctx.gid))
        if hit is not None and hit[2] is not None and hit[0] > time.monotonic():
            return hit[2]
        groups = self._groups(ctx)
        who = Caller(uid=ctx.uid, gid=ctx.gid, groups=groups, pid=ctx.pid,
                     lk_owner=ctx.pid.to_bytes(8, "little"))
        if self.gid_timeout > 0:
            key = (ctx.pid, ctx.uid, ctx.gid)
            entry = self._gid_cache.get(key)
            if entry is not None:
                self._gid_cache[key] = (entry[0], groups, who)
        return who

    def _groups(self, ctx) -> tuple[int, ...]:
        """The caller's supplementary groups (from /proc/PID/status, which
        costs more than many a fop), kept gid_timeout seconds per (pid, uid,
        gid) as fuse-bridge's gid cache does; 0 reads them every time."""
        key = (ctx.pid, ctx.uid, ctx.gid)
        now = time.monotonic()
        if self.gid_timeout > 0:
            hit = self._gid_cache.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        try:
            groups = tuple(pyfuse3.get_sup_groups(ctx.pid))
        except (OSError, ValueError):
            groups = ()
        if self.gid_timeout > 0:
            if len(self._gid_cache) >= GID_CACHE_SIZE:
                self._gid_cache.pop(next(iter(self._gid_cache)))  # the oldest entry
            self._gid_cache[key] = (now + self.gid_timeout, groups, None)
        return groups

    def _writable(self) -> None:
        if self.read_only:
            raise pyfuse3.FUSEError(errno.EROFS)

    def _child(self, parent: int, name: bytes) -> Loc:
        return Loc(pargfid=self._gfid(parent), name=os.fsdecode(name))

    # -- namespace -------------------------------------------------------------------

    async def lookup(self, parent_inode, name, ctx=None):
        with self._caller(ctx):
            reply = await self.top.lookup(self._child(parent_inode, name), None)
        return self._entry(reply.iatt, parent_inode, name)

    async def forget(self, inode_list):
        for node, count in inode_list:
            entry = self._nodes.get(node)
            if entry is None or node == pyfuse3.ROOT_INODE:
                continue
            entry.lookups -= count
            # the graph's inode table drops the inode (and what every
            # translator kept about it) once the kernel holds no lookup
            self.top.itable.forget(entry.gfid, count)
            if entry.lookups <= 0:
                del self._nodes[node]
                self._by_gfid.pop(entry.gfid, None)
                if entry.invalidating:
                    self._invalidating -= 1

    async def getattr(self, inode, ctx=None):
        gfid = self._gfid(inode)
        with self._caller(ctx):
            try:
                reply = await self.top.stat(Loc(gfid=gfid), None)
            except FopError as e:
                # pyfuse3's getattr carries no file handle, so fstat(2) of a
                # file unlinked while open arrives here: answer it from an
                # open fd, as fuse_getattr does when the kernel sends one
                fd = self._open_fd_of(gfid) if e.errno in (errno.ENOENT, errno.ESTALE) else None
                if fd is None:
                    raise
                reply = await self.top.fstat(fd, None)
        return self._attrs(reply.iatt, inode)

    def _open_fd_of(self, gfid: GFID) -> Fd | None:
        for fd in self._handles.values():
            if fd.gfid == gfid and not fd.is_dir:
                return fd
        return None

    async def setattr(self, inode, attr, fields, fh, ctx):
        self._writable()
        loc = Loc(gfid=self._gfid(inode))
        fd = self._handles.get(fh) if fh is not None else None
        with self._caller(ctx):
            post = None
            if fields.update_size:
                reply = await (self.top.ftruncate(fd, attr.st_size, None) if fd is not None
                               else self.top.truncate(loc, attr.st_size, None))
                post = reply.postbuf
            valid = 0
            change = Iatt()
            if fields.update_mode:
                valid |= SET_ATTR_MODE
                change.mode = attr.st_mode & 0o7777
            if fields.update_uid:
                valid |= SET_ATTR_UID
                change.uid = attr.st_uid
            if fields.update_gid:
                valid |= SET_ATTR_GID
                change.gid = attr.st_gid
            if fields.update_atime:
                valid |= SET_ATTR_ATIME
                change.atime, change.atime_nsec = divmod(attr.st_atime_ns, 1_000_000_000)
            if fields.update_mtime:
                valid |= SET_ATTR_MTIME
                change.mtime, change.mtime_nsec = divmod(attr.st_mtime_ns, 1_000_000_000)
            if valid:
                reply = await (self.top.fsetattr(fd, change, valid, None) if fd is not None
                               else self.top.setattr(loc, change, valid, None))
                post = reply.postbuf
            if post is None:
                post = (await self.top.stat(loc, None)).iatt
        return self._attrs(post, inode)

    async def readlink(self, inode, ctx):
        with self._caller(ctx):
            reply = await self.top.readlink(Loc(gfid=self._gfid(inode)), 4096, None)
        return os.fsencode(reply.path)

    async def mknod(self, parent_inode, name, mode, rdev, ctx):
        self._writable()
        with self._caller(ctx):
            reply = await self.top.mknod(self._child(parent_inode, name), mode, rdev,
                                         ctx.umask, {GFID_REQ: GFID.random()})
        return self._entry(reply.iatt, parent_inode, name)

    async def mkdir(self, parent_inode, name, mode, ctx):
        self._writable()
        with self._caller(ctx):
            reply = await self.top.mkdir(self._child(parent_inode, name), mode, ctx.umask,
                                         {GFID_REQ: GFID.random()})
        return self._entry(reply.iatt, parent_inode, name)

    async def symlink(self, parent_inode, name, target, ctx):
        self._writable()
        with self._caller(ctx):
            reply = await self.top.symlink(os.fsdecode(target), self._child(parent_inode, name),
                                           ctx.umask, {GFID_REQ: GFID.random()})
        entry = self._entry(reply.iatt, parent_inode, name)
        if stat.S_IFMT(reply.iatt.mode) != stat.S_IFLNK:
            entry = self._made_by_symlink(entry)
        return entry

    @staticmethod
    def _made_by_symlink(entry: pyfuse3.EntryAttributes) -> pyfuse3.EntryAttributes:
        """A graph whose symlink makes something else (storage/bd: an LVM
        snapshot, a regular file).  The kernel fails symlink(2) with EIO
        when the new entry is no symbolic link (fs/fuse/dir.c
        create_new_entry), although the graph made it; so the reply says
        symbolic link with timeouts of zero, which the kernel cannot keep:
        its next look at the name (any stat, open or ls) asks LOOKUP, sees
        the same node as a regular file, drops the symbolic link's inode
        as stale (fuse_stale_inode) and shows the real file - the lie lives
        only until symlink(2) returns."""
        entry.st_mode = stat.S_IFLNK | stat.S_IMODE(entry.st_mode)
        entry.entry_timeout = entry.attr_timeout = 0
        return entry

    async def link(self, inode, new_parent_inode, new_name, ctx):
        self._writable()
        with self._caller(ctx):
            reply = await self.top.link(Loc(gfid=self._gfid(inode)),
                                        self._child(new_parent_inode, new_name), None)
        return self._entry(reply.iatt, new_parent_inode, new_name)

    async def unlink(self, parent_inode, name, ctx):
        self._writable()
        with self._caller(ctx):
            await self.top.unlink(self._child(parent_inode, name), 0, None)

    async def rmdir(self, parent_inode, name, ctx):
        self._writable()
        with self._caller(ctx):
            await self.top.rmdir(self._child(parent_inode, name), 0, None)

    async def rename(self, parent_inode_old, name_old, parent_inode_new, name_new, flags, ctx):
        self._writable()
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)  # GlusterFS has no exchange
        old = self._child(parent_inode_old, name_old)
        new = self._child(parent_inode_new, name_new)
        with self._caller(ctx):
            if flags & pyfuse3.RENAME_NOREPLACE:
                # not atomic across clients: GlusterFS has no noreplace rename
                try:
                    await self.top.lookup(Loc(pargfid=new.pargfid, name=new.name), None)
                except FopError as e:
                    if e.errno != errno.ENOENT:
                        raise
                else:
                    raise pyfuse3.FUSEError(errno.EEXIST)
            await self.top.rename(old, new, None)

    # -- files ---------------------------------------------------------------------

    def _file_info(self, fd: Fd) -> pyfuse3.FileInfo:
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = fd
        info = pyfuse3.FileInfo(fh=handle)
        info.direct_io = self.direct_io or bool(fd.flags & os.O_DIRECT)
        info.keep_cache = False
        return info

    async def open(self, inode, flags, ctx):
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            self._writable()
        gfid = self._gfid(inode)
        fd = Fd(gfid=gfid, flags=flags)
        with self._caller(ctx):
            await self.top.open(Loc(gfid=gfid), flags, fd, None)
        return self._file_info(fd)

    async def create(self, parent_inode, name, mode, flags, ctx):
        self._writable()
        fd = Fd(flags=flags)
        with self._caller(ctx):
            reply = await self.top.create(self._child(parent_inode, name), flags | os.O_CREAT,
                                          mode, ctx.umask, fd, {GFID_REQ: GFID.random()})
        fd.gfid = reply.iatt.gfid
        return self._file_info(fd), self._entry(reply.iatt, parent_inode, name)

    def _fd(self, fh: int) -> Fd:
        try:
            return self._handles[fh]
        except KeyError:
            raise pyfuse3.FUSEError(errno.EBADF) from None

    async def read(self, fh, off, size):
        reply = await self.top.readv(self._fd(fh), size, off, 0, None)
        data = reply.data
        # pyfuse3 replies from any contiguous buffer: no copy of the payload
        if isinstance(data, (bytes, bytearray)) or \
                (isinstance(data, memoryview) and data.contiguous):
            return data
        return bytes(data)

    async def write(self, fh, off, buf):
        self._writable()
        reply = await self.top.writev(self._fd(fh), buf, off, 0, None)
        return reply.count

    async def copy_file_range(self, ctx, fh_in, off_in, fh_out, off_out, length, flags):
        """The kernel's FUSE_COPY_FILE_RANGE (pyfuse3 has no handler:
        copy_range.py gives libfuse one that calls this): the graph's
        copy_file_range with the two handles' Fds, its count.  ENOSYS only
        when the graph lacks the fop - the kernel never asks again after
        it; EOPNOTSUPP/EXDEV make the kernel copy this call by read+write."""
        self._writable()
        fd_in, fd_out = self._fd(fh_in), self._fd(fh_out)
        if fd_in.is_dir or fd_out.is_dir:
            raise pyfuse3.FUSEError(errno.EISDIR)
        with self._caller(ctx):
            reply = await self.top.copy_file_range(fd_in, off_in, fd_out, off_out, length,
                                                   flags, None)
        return reply.count

    async def lseek(self, fh, offset, what):
        """lseek(2)'s SEEK_DATA/SEEK_HOLE (pyfuse3 has no handler either:
        copy_range.py), the graph's seek: where the next data or hole is."""
        return (await self.top.seek(self._fd(fh), offset, what, None)).offset

    async def flush(self, fh):
        await self.top.flush(self._fd(fh), None)

    async def fsync(self, fh, datasync):
        await self.top.fsync(self._fd(fh), int(bool(datasync)), None)

    async def release(self, fh):
        fd = self._handles.pop(fh, None)
        if fd is not None:
            await self.top.release(fd, None)

    # -- directories -----------------------------------------------------------------

    async def opendir(self, inode, ctx):
        gfid = self._gfid(inode)
        fd = Fd(gfid=gfid, flags=os.O_RDONLY, is_dir=True)
        with self._caller(ctx):
            await self.top.opendir(Loc(gfid=gfid), fd, None)
        return self._file_info(fd).fh

    async def readdir(self, fh, start_id, token):
        fd = self._fd(fh)
        offset = start_id
        # The kernel's reply buffer holds a page or so of entries, a
        # readdirp from the graph READDIR_BUDGET: what did not fit waits
        # here for the kernel's next request, which starts where this one
        # stopped (else each request would fetch the rest of the directory
        # again and use a page of it - quadratic in the directory's size).
        rest = self._dir_rest.pop(fh, None)
        # The kernel takes readdirplus attributes as fresh: entries fetched
        # before a change through this mount completed would undo it in its
        # cache, so they go; other clients' changes may show up to
        # attr_timeout late, as the kernel's attribute cache allows.
        if rest is not None and (rest.offset != start_id or rest.changes != self._changes or
                                 time.monotonic() - rest.fetched > self.attr_timeout):
            rest = None
        # At most one batch with entries per kernel request, as fuse-bridge
        # winds one readdirp per request: once a batch is used up the reply
        # goes back short, and the kernel's next request finds the end.  A
        # second readdirp here to fill the page would, at the end of a
        # directory, come back empty and be asked again by that next request
        # (three readdirps per directory instead of two).  An empty reply is
        # the end to the kernel, so a batch that gave it nothing (only . and
        # .., say) does not count.
        replied = False
        while True:
            if replied:
                return
            if rest is not None:
                entries, fetched, changes, rest = rest.entries, rest.fetched, rest.changes, None
            else:
                changes = self._changes
                entries = (await self.top.readdirp(fd, READDIR_BUDGET, offset, None)).entries
                fetched = time.monotonic()
                if not entries:
                    return
            # what is the same for every entry is looked up once per batch
            parent = self._by_gfid.get(fd.gfid, 0)
            by_gfid, attrs, reply = self._by_gfid, self._attrs, pyfuse3.readdir_reply
            nodes, lookup = self._nodes, self.top.itable.lookup
            try:
                for i, entry in enumerate(entries):
                    iatt = entry.iatt
                    name = entry.name
                    if iatt is None or name == "." or name == "..":
                        offset = entry.off
                        continue
                    gfid = iatt.gfid
                    node = by_gfid.get(gfid) or self._node_of(gfid)
                    bname = name.encode(_FS_ENCODING, _FS_ERRORS)  # os.fsencode, inline
                    if not reply(token, bname, attrs(iatt, node), entry.off):
                        self._drop_if_unused(node)
                        self._dir_rest[fh] = _DirRest(offset, entries[i:], fetched, changes)
                        return
                    # readdir_reply counts as a lookup of the name in this
                    # directory: _learned, written out but for the LRU
                    # bound, which is checked once the batch is done
                    known = nodes[node]
                    known.lookups += 1
                    if parent:
                        known.parent, known.name = parent, bname
                    if known.invalidating:
                        known.invalidating = False
                        self._invalidating -= 1
                    nodes.move_to_end(node)
                    lookup(gfid)
                    offset = entry.off
                    replied = True
            finally:
                if self.lru_limit is not None and \
                        len(nodes) - self._invalidating > self.lru_limit:
                    self._shed()

    def dump_state(self) -> dict:
        """What the bridge and the graph's inode table hold (statedumps)."""
        return {"nodes": len(self._nodes), "invalidating": self._invalidating,
                "lru_limit": self.lru_limit, "open_handles": len(self._handles),
                "inode_table": self.top.itable.stats()}

    def _drop_if_unused(self, node: int) -> None:
        entry = self._nodes.get(node)
        if entry is not None and entry.lookups == 0 and node != pyfuse3.ROOT_INODE:
            del self._nodes[node]
            self._by_gfid.pop(entry.gfid, None)

    async def releasedir(self, fh):
        self._dir_rest.pop(fh, None)
        fd = self._handles.pop(fh, None)
        if fd is not None:
            await self.top.releasedir(fd, None)

    async def fsyncdir(self, fh, datasync):
        await self.top.fsyncdir(self._fd(fh), int(bool(datasync)), None)

    # -- the rest ---------------------------------------------------------------------

    async def statfs(self, ctx):
        with self._caller(ctx):
            s = (await self.top.statfs(Loc.root(), None)).statvfs
        out = pyfuse3.StatvfsData()
        out.f_bsize, out.f_frsize = s.bsize, s.frsize or s.bsize
        out.f_blocks, out.f_bfree, out.f_bavail = s.blocks, s.bfree, s.bavail
        out.f_files, out.f_ffree, out.f_favail = s.files, s.ffree, s.favail
        out.f_namemax = s.namemax or 255
        return out

    def _security_xattr_off(self, key: str) -> bool:
        """fuse_check_selinux_cap_xattr: security.capability and
        security.selinux stay on the client unless the `capability` or
        `selinux` mount option asks for them."""
        if key == CAPABILITY_KEY:
            return not (self.capability or self.selinux)
        return key == SELINUX_KEY and not self.selinux

    def _acl_off(self, key: str) -> bool:
        return not self.acl and key in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY)

    async def setxattr(self, inode, name, value, ctx):
        self._writable()
        key = os.fsdecode(name)
        if self._security_xattr_off(key) or self._acl_off(key):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        with self._caller(ctx):
            await self.top.setxattr(Loc(gfid=self._gfid(inode)),
                                    {os.fsdecode(name): bytes(value)}, 0, None)

    async def getxattr(self, inode, name, ctx):
        key = os.fsdecode(name)
        if self._security_xattr_off(key):
            # the kernel asks for security.capability before every write:
            # "none" (fuse-bridge's answer) lets the write go on; a label
            # this mount cannot hold is "not supported" (see the module's
            # docstring), which callers such as `ls -l` remember
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR if key == CAPABILITY_KEY else errno.EOPNOTSUPP)
        if self._acl_off(key):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        with self._caller(ctx):
            try:
                reply = await self.top.getxattr(Loc(gfid=self._gfid(inode)), key, None)
            except FopError as e:
                if e.errno == errno.ENODATA:
                    raise pyfuse3.FUSEError(pyfuse3.ENOATTR) from None
                raise
        value = reply.dict.get(key)
        if value is None:
            raise pyfuse3.FUSEError(pyfuse3.ENOATTR)
        return value.encode() if isinstance(value, str) else bytes(value)

    async def listxattr(self, inode, ctx):
        with self._caller(ctx):
            reply = await self.top.getxattr(Loc(gfid=self._gfid(inode)), None, None)
        return [os.fsencode(k) for k in reply.dict]

    async def removexattr(self, inode, name, ctx):
        self._writable()
        if self._acl_off(os.fsdecode(name)):
            raise pyfuse3.FUSEError(errno.EOPNOTSUPP)
        with self._caller(ctx):
            try:
                await self.top.removexattr(Loc(gfid=self._gfid(inode)), os.fsdecode(name), None)
            except FopError as e:
                if e.errno == errno.ENODATA:
                    raise pyfuse3.FUSEError(pyfuse3.ENOATTR) from None
                raise

    async def access(self, inode, mode, ctx):
        # the kernel checks permissions itself (default_permissions)
        return True


class _As:
    """Sets `fops.caller` for a request's fops."""

    __slots__ = ("identity", "token")

    def __init__(self, identity: Caller):
        self.identity = identity

    def __enter__(self):
        self.token = caller.set(self.identity)

    def __exit__(self, *exc):
        caller.reset(self.token)


def _translate_errors(cls):
    """FopError -> FUSEError at the edge, for every handler (pyfuse3 only
    understands FUSEError; anything else it reports as EIO and logs)."""
    import functools
    import inspect

    def wrap(fn):
        changing = fn.__name__ in CHANGING_HANDLERS

        @functools.wraps(fn)
        async def handler(self, *args, **kwargs):
            while self._switching is not None:  # a graph switch is under way
                await self._switching.wait()
            self._inflight += 1
            try:
                return await fn(self, *args, **kwargs)
            except FopError as e:
                raise pyfuse3.FUSEError(e.errno) from None
            finally:
                self._inflight -= 1
                if changing:
                    self._changes += 1
                if not self._inflight and self._drained is not None:
                    self._drained.set()
        return handler
    for name, fn in list(vars(cls).items()):
        # pyfuse3's handlers only: the bridge's own coroutines (switch_graph)
        # must not count as requests in flight
        if inspect.iscoroutinefunction(fn) and not name.startswith("_") and \
                (hasattr(pyfuse3.Operations, name) or name in LOWLEVEL_HANDLERS):
            setattr(cls, name, wrap(fn))
    return cls


_translate_errors(FuseBridge)
