"""storage/posix: the leaf translator that serves every fop on a brick directory.

A brick is a plain directory on a local filesystem.  This translator keeps it
in GlusterFS 10's on-disk layout, so that a brick GlusterFS wrote is served
here and a brick written here is served by GlusterFS:

* every entry carries its identity in the `trusted.gfid` xattr (16 raw bytes);
  the brick root is `00000000-0000-0000-0000-000000000001`;
* `.glusterfs/xx/yy/<gfid>` ("the handle", xx and yy the first two bytes of
  the gfid) is a hard link to every non-directory (symlinks included), and a
  symlink `../../pp/qq/<pargfid>/<basename>` for every directory; the root's
  handle is the symlink `../../..`;
* init creates `.glusterfs` (0600), its 256 first-level hash directories
  (0700), `.glusterfs/landfill` and `.glusterfs/unlink`, exactly as
  GlusterFS's posix_init does;
* `trusted.gfid2path.<xxh64>` records each name of a non-directory
  (option `gfid2path`, on by default);
* `trusted.glusterfs.mdata` keeps the times GlusterFS 10 reports (option
  `ctime`, on by default): iatt times come from it when present;
* the brick root carries `trusted.glusterfs.volume-id`.

Resolution works the way GlusterFS's posix-handle.c does, by gfid: a Loc with
a gfid is served through its handle; a Loc with a parent gfid and a name is
served through the parent's handle and then the name; a Loc with only a path
is walked from the root, one component at a time.  Unlike GlusterFS, which
builds absolute paths and lets the kernel follow the handle symlinks, every
lookup here happens relative to directory descriptors (`*at` calls,
`O_NOFOLLOW`, lstat semantics), and a directory handle is followed one
component at a time, checking the gfid at each step.  So no name, symlink
(absolute, relative or looping), `..` or handle can lead outside the brick:
a client's symlink is data and is never followed.  Names with `/` or NUL and
the names `.` and `..` are refused (EINVAL).  `.glusterfs` at the root is
hidden from readdir and any attempt to look it up, create, rename, remove or
replace it fails with EPERM, the errno GlusterFS's lookup, mkdir and rmdir
give.  Open directory descriptors are cached by gfid (a directory descriptor
stays valid across renames; one whose directory was removed has no links and
is dropped); the cache is trimmed only between fops.

Init follows posix_init: the directory must exist and hold xattrs; a
`volume-id` option must match the root's `trusted.glusterfs.volume-id`, so a
brick of another volume is refused (init raises FopError(EEXIST) naming the
volume it belongs to); the root's gfid, when present, must be the root gfid.
trusted.* xattrs need CAP_SYS_ADMIN: like GlusterFS's, bricks run as root.  Departure: when the xattr is absent GlusterFS refuses the
brick (glusterd stamps it at `volume create`); here an *empty* directory is
stamped with the option's volume-id and used, since that is what
`volume create` would have done, while a non-empty directory without it is
still refused - it may be the bare mount point of an unmounted brick.

Other behaviour followed, and the departures:

* New entries take their gfid from xdata `gfid-req`, as GlusterFS; when it is
  absent a random gfid is made (GlusterFS answers EINVAL, or EPERM for mkdir).
  A lookup of an entry without a gfid heals it from `gfid-req` (ENODATA
  without one) and re-creates a missing handle, as posix_gfid_heal does.
* Ownership of new entries: the caller's uid, and its gid unless the parent
  has the setgid bit, whose group then wins (directories also inherit the
  setgid bit) - GlusterFS's lchown after create.  Modes are applied exactly,
  `mode & ~umask`, with chmod after creation, never through the process
  umask (gfapi graphs run inside users' processes; GlusterFS sets umask(0)).
  An unprivileged process cannot give files away: it keeps the kernel's
  ownership instead of failing.
* No permission checks beyond the kernel's: GlusterFS's posix runs as root
  and leaves access control to features/access-control.
* Locks, leases and the lock-migration fops (lk, inodelk, finodelk,
  entrylk, fentrylk, lease) answer ENOSYS as GlusterFS's posix does
  (features/locks serves them); ipc answers EOPNOTSUPP.  GlusterFS's posix
  has no icreate, namelink, getactivelk or setactivelk: they answer ENOTSUP.
* readdir/readdirp: Dirent.off is the kernel's d_off from getdents64(2) - the
  cookie GlusterFS passes through the wire (telldir/seekdir) - so a listing
  can be resumed from any entry, by any fd or anonymous fd on the directory,
  without state kept here.  "." and ".." are listed as the kernel lists
  them; ".." of the brick root describes the root itself (GlusterFS would
  stat the directory above the brick).  The size budget counts each entry as
  sizeof(gf_dirent_t) + name + 1 as GlusterFS does, but always returns at
  least one entry (an empty reply means end of directory).
* Unlinking the last name of a file that is still open moves its handle to
  `.glusterfs/unlink/<gfid>` (as GlusterFS does), so open and anonymous fds
  keep reading it; the last release removes it.  The same holds for a file
  replaced by rename.
* Anonymous fds (an Fd never opened here) are opened on demand through the
  handle with fd.flags (without O_CREAT/O_EXCL/O_TRUNC), falling back to
  `.glusterfs/unlink`, as posix_fd_ctx_get does.  An Fd dropped without
  release is closed when it is garbage-collected.
* FIFOs are opened O_NONBLOCK so that an open never blocks the event loop.
* xattrop/fxattrop implement GlusterFS's ADD_ARRAY, ADD_ARRAY64,
  GET_AND_SET and *_WITH_DEFAULT exactly (an all-zero value returns the
  stored value without writing); OR_ARRAY/AND_ARRAY, which GlusterFS 10
  refuses with EINVAL, combine byte-wise here.
* Internal xattrs: setxattr silently drops trusted.gfid and
  trusted.glusterfs.volume-id, removexattr of them is EPERM, listings hide
  them, gfid2path and (for non-internal callers) mdata; setting pathinfo is
  EACCES and setting gfid2path ENOTSUP - all as GlusterFS.  A named getxattr
  of trusted.gfid or volume-id answers ENODATA (GlusterFS answers an empty
  dict).  Virtual keys served: glusterfs.gfid.string, glusterfs.gfid,
  trusted.glusterfs.pathinfo (and glusterfs.pathinfo),
  trusted.glusterfs.node-uuid (with glusterd-uuid), glusterfs.open-fd-count,
  glusterfs.get_real_filename:NAME and glusterfs.gfidtopath.
* Times (`ctime` on): GlusterFS's client-side features/utime tells posix
  which times a fop changes (the caller's `flags`, MDATA_* bits) and the
  client's clock (`ctime_ns`).  This translator applies utime's own table
  (with its default noatime) whoever calls, and stamps the client's clock
  when the caller carries one - so all bricks of a replica store the same
  times - else the brick's.  Of the flags it honours MDATA_ATIME on readv,
  open, opendir and copy_file_range's source (utime with noatime off);
  a caller without utime gets noatime.  Times set by setattr follow
  posix_update_utime_in_mdata (only an existing mdata xattr is updated);
  *_NOW is the same clock.
  Departure: create on an existing file (no O_EXCL) moves no times, as on a
  local filesystem, while GlusterFS moves the file's and its parent's; an
  open with O_TRUNC moves mtime and ctime.
* setattr honours every `valid` bit: *_NOW uses the brick's clock, SIZE
  truncates (GlusterFS ignores it; clients send truncate), CTIME updates the
  mdata ctime.
* rename onto an existing directory needs no newloc.gfid (GlusterFS answers
  EEXIST unless the caller names the victim's gfid).
* rmdir with xflags moves the directory to `.glusterfs/landfill`, emptied by
  a background janitor, as GlusterFS does for self-heal.
* fsyncdir syncs the directory (GlusterFS returns success without a sync).
* Not implemented: the `reserve` disk-space guard, health checks, batch
  fsync, io_uring, pgfid link counts (update-link-count-parent),
  cloudsync, text-form POSIX ACL keys (glusterfs.posix.acl) and the
  ancestry keys.  Options for them are therefore not declared.

Blocking syscalls run inline in the calling trio task unless
performance/io-threads sits above (glusterpy.iothreads): then the data-path
syscalls - readv's pread, writev's pwrite (and the fsync of an O_SYNC/O_DSYNC
write), fsync/fdatasync, ftruncate/truncate, fallocate/discard/zerofill,
copy_file_range, rchecksum's read and seek - run in the pool's workers,
each through `_blocking`, while the event loop serves other fops.  Only the
syscall moves: everything that reads or changes this translator's Python
state (descriptor caches, open counts, the mdata xattr's read-modify-write)
stays on the event loop, before or after the one await of such a fop, so
the fops without that await still never interleave.  A descriptor a worker
is using is pinned: release (or a garbage-collected Fd) closes it only once
the syscall has returned, so its number cannot be reused under the worker.
A buffered readv (no O_DIRECT) first tries preadv2(RWF_NOWAIT) inline and
goes to a worker only when the data is not in the page cache; and a
syscall whose recent inline time is below io-threads' offload-above-usec
runs inline too, since the hop would cost more (glusterpy.iothreads; the
numbers are in bench/RESULTS.md).
Reads and writes on an O_DIRECT descriptor under io-threads go through Linux
native AIO instead (`linux-aio`, GlusterFS's posix-aio; glusterpy.linux_aio):
io_submit from the event loop, the completion reaped from an eventfd - no
thread, so QEMU's queue of requests reaches the disk together at the cost of
two syscalls each.  GlusterFS's option is off by default and sets O_DIRECT on
the descriptor for aligned requests; here it is on by default and only
descriptors opened O_DIRECT use it.
Like GlusterFS's io-threads, concurrent writes to overlapping ranges of one
file are not ordered here: clients order them (write-behind), as they must
with GlusterFS.
"""

from __future__ import annotations

import ctypes
import errno
import fnmatch
import functools
import hashlib
import mmap
import os
import socket
import stat
import struct
import time
import uuid
import weakref
import zlib
from collections import OrderedDict
from time import perf_counter_ns
from typing import Any

import trio

from glusterpy import fops
from glusterpy import iothreads
from glusterpy.aligned import BUFFERS
from glusterpy.fops import (GFID, NULL_GFID, ROOT_GFID, ChecksumReply, CopyRangeReply,
                            CreateReply, Dirent, DictReply, DirReply, EntryReply, FopError,
                            Iatt, LookupReply, OpenReply, ParentReply, PrePostReply,
                            ReadlinkReply, ReadReply, RenameReply, Reply, SeekReply,
                            StatfsReply, StatReply, Statvfs, UInt, WriteReply, XattropType)
from glusterpy.keys import (ACL_ACCESS_KEY, ACL_DEFAULT_KEY, ACTIVE_FD_COUNT, CONTENT_KEY,
                            DHT_LINKTO_KEY, DURABLE_OP, ENTRYLK_COUNT, GET_LINK_COUNT, GET_SIZE,
                            GFID2PATH_PREFIX, GFID2PATH_VIRT_KEY, GFID_KEY, GFID_REQ,
                            GFID_STRING_KEY, GFID_TO_PATH_KEY, GFID_VIRT_KEY, GFIDLESS_LOOKUP,
                            IATT_KEY, INODELK_COUNT, INODELK_DOM_COUNT, INTERNAL_CTX_KEY,
                            INTERNAL_FOP, IOSTATS_DUMP_KEY, LIST_XATTR, MDATA_KEY, NODE_UUID_KEY,
                            OPEN_FD_COUNT, PARENT_ENTRYLK, PATHINFO_KEY, POSIXLK_COUNT,
                            POSTSTAT_KEY, PRESTAT_KEY, READDIR_SKIP_DIRS, REAL_FILENAME_PREFIX,
                            REQUEST_LINK_COUNT, RESPONSE_LINK_COUNT, SELINUX_KEY,
                            SET_CTIME_MDATA, SKIP_NON_LINKTO_UNLINK, SKIP_OPEN_FD_UNLINK,
                            UNLINKED_LOOKUP, USER_PATHINFO_KEY, VOLUME_ID_KEY, WRITE_IS_APPEND,
                            XATTR_NAMESPACES)
from glusterpy.linux_aio import AioContext
from glusterpy.options import Option, OptionError, OptionType
from glusterpy.xlator import Translator

# --------------------------------------------------------------------------
# Options (GlusterFS's names; only those this translator implements)

OPTIONS = (
    Option("directory", OptionType.PATH, None,
           "The brick directory this translator serves.", reconfigurable=False),
    Option("volume-id", OptionType.STR, None,
           "The volume's UUID; a brick whose trusted.glusterfs.volume-id differs is "
           "refused, an empty directory without one is stamped with it.",
           reconfigurable=False),
    Option("o-direct", OptionType.BOOL, "off",
           "Open every file with O_DIRECT (applies to later opens)."),
    Option("linux-aio", OptionType.BOOL, "on",
           "Reads and writes on O_DIRECT descriptors go to the disk through Linux "
           "native AIO (io_submit) while performance/io-threads is above, instead of "
           "a worker thread (GlusterFS's default: off).",
           set_keys=("storage.linux-aio",)),
    Option("brick-uid", OptionType.INT, "-1",
           "Owner uid given to the brick root; -1 leaves it.", min=-1,
           set_keys=("storage.owner-uid",)),
    Option("brick-gid", OptionType.INT, "-1",
           "Owner gid given to the brick root; -1 leaves it.", min=-1,
           set_keys=("storage.owner-gid",)),
    Option("export-statfs-size", OptionType.BOOL, "on",
           "Report the brick filesystem's sizes in statfs (off: zeros)."),
    Option("shared-brick-count", OptionType.INT, "1",
           "Number of bricks sharing the same filesystem; statfs divides the sizes "
           "by it.", min=1),
    Option("fips-mode-rchecksum", OptionType.BOOL, "off",
           "rchecksum's strong checksum is SHA256 (on) or MD5 (off).",
           set_keys=("storage.fips-mode-rchecksum",)),
    Option("ctime", OptionType.BOOL, "on",
           "Keep the times in the trusted.glusterfs.mdata xattr and report them, "
           "as GlusterFS 10 does.", set_keys=("features.ctime",)),
    Option("gfid2path", OptionType.BOOL, "on",
           "Record each name of a file in a trusted.gfid2path.<hash> xattr.",
           set_keys=("storage.gfid2path",)),
    Option("gfid2path-separator", OptionType.STR, ":",
           "Separator between the paths of glusterfs.gfidtopath.",
           set_keys=("storage.gfid2path-separator",)),
    Option("max-hardlinks", OptionType.INT, "100",
           "Most hard links one inode may have (0: no limit).", min=0,
           set_keys=("storage.max-hardlinks",)),
    Option("janitor-sleep-duration", OptionType.INT, "10",
           "Seconds between purges of .glusterfs/landfill.", min=1),
    Option("hostname", OptionType.STR, None,
           "Host name reported in the pathinfo xattr (default: this host)."),
    Option("glusterd-uuid", OptionType.STR, None,
           "The node's UUID, reported as trusted.glusterfs.node-uuid.", reconfigurable=False),
    Option("node-uuid-pathinfo", OptionType.BOOL, "off",
           "Report the node UUID instead of the host name in pathinfo.",
           set_keys=("storage.node-uuid-pathinfo",)),
)

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

HIDDEN_DIR = ".glusterfs"
LANDFILL_DIR = "landfill"
UNLINK_DIR = "unlink"

#: xdata keys that are requests to posix, never xattrs (posix_ignore_xattrs)
IGNORED_KEYS = frozenset({
    GFID_REQ, INTERNAL_FOP, ENTRYLK_COUNT, INODELK_COUNT, POSIXLK_COUNT, PARENT_ENTRYLK,
    GFIDLESS_LOOKUP, INODELK_DOM_COUNT})
#: never shown by the "list-xattr" request (list_xattr_ignore_xattrs, marker)
LIST_HIDDEN = frozenset({GFID_KEY, VOLUME_ID_KEY, SELINUX_KEY})
MARKER_PATTERNS = ("trusted.glusterfs.quota.*", "trusted.glusterfs.*.xtime")
GEOREP_PATTERNS = ("*.glusterfs.*.stime", "*.glusterfs.*.xtime", "*.glusterfs.lockinfo",
                   "*.glusterfs.*.entry_stime", "*.glusterfs.volume-mark.*")

#: sizeof(gf_dirent_t) on x86_64: what GlusterFS charges per readdir entry
DIRENT_COST = 208
#: GlusterFS's gf_seek_what_t
GF_SEEK_DATA, GF_SEEK_HOLE = 0, 1
#: mdata flags (GlusterFS's MDATA_CTIME/MTIME/ATIME, stack.h)
MDATA_C, MDATA_M, MDATA_A = 1, 2, 4
NS = 1_000_000_000

# posix_mdata_disk_t: version, flags, then ctime, mtime, atime as
# (sec, nsec), all big-endian, packed
_MDATA = struct.Struct(">BQqQqQqQ")
_DIRENT64 = struct.Struct("=QqHB")  # linux_dirent64 header; d_name follows
_DT_DIR, _DT_UNKNOWN = 4, 0
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE, _FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
_O_NOFOLLOW = os.O_NOFOLLOW | os.O_CLOEXEC   # on every open: links are data
_ANON_STRIP = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY
_MAX_DIR_DEPTH = 4096
_DIR_CACHE_MAX = 1024
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0x8)
#: with io-threads, try a buffered read inline with RWF_NOWAIT first (a
#: page-cache hit) and hand only misses to a worker; see _read_offloaded
_NOWAIT_FIRST = True
_GETDENTS_BUF = 64 * 1024

_libc = ctypes.CDLL(None, use_errno=True)
_c_fallocate = _libc.fallocate64
_c_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_c_fallocate.restype = ctypes.c_int
_c_getdents64 = _libc.getdents64
_c_getdents64.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_c_getdents64.restype = ctypes.c_ssize_t


def _inline_fop(fn):
    """Make a fop from a synchronous implementation.

    The body runs inline in the calling trio task with no await in its
    middle, so fops never interleave; OSError becomes FopError with the same
    errno; and the cache of directory descriptors is trimmed between fops,
    never while one may still be using a descriptor it took from the cache.
    """
    @functools.wraps(fn)
    async def fop(self, *args, **kwargs):
        if self._retired or len(self._dirs) > _DIR_CACHE_MAX:
            self._trim_dir_cache()
        try:
            return fn(self, *args, **kwargs)
        except OSError as e:
            raise FopError(e.errno if e.errno else errno.EIO) from None
    return fop


def _offloading_fop(fn):
    """`_inline_fop` for a fop whose body is a coroutine: the same trim of
    the descriptor cache before it and the same OSError -> FopError.  The
    body awaits at most one thing, `self._blocking(...)` (a worker of
    performance/io-threads, or inline without it); it uses no cached
    directory descriptor after that await."""
    @functools.wraps(fn)
    async def fop(self, *args, **kwargs):
        if self._retired or len(self._dirs) > _DIR_CACHE_MAX:
            self._trim_dir_cache()
        try:
            return await fn(self, *args, **kwargs)
        except OSError as e:
            raise FopError(e.errno if e.errno else errno.EIO) from None
    return fop


class Posix(Translator):
    """storage/posix: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (0, 0)
    # every fop body is synchronous (_inline_fop), or awaits a worker only
    # when performance/io-threads set a lane - and that translator suspends
    FOPS_NEVER_SUSPEND = True

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        if self.opts.directory is None:
            raise OptionError("directory", "option 'directory' is required "
                                           "(the brick directory to serve)")
        self.volume_id: GFID | None = None
        if self.opts.volume_id is not None:
            try:
                self.volume_id = GFID(self.opts.volume_id.strip())
            except ValueError:
                raise OptionError("volume-id", f"option 'volume-id': "
                                               f"{self.opts.volume_id!r} is not a UUID") from None
        self.glusterd_uuid: GFID | None = None
        if self.opts.glusterd_uuid is not None:
            try:
                self.glusterd_uuid = GFID(self.opts.glusterd_uuid.strip())
            except ValueError:
                raise OptionError("glusterd-uuid", f"option 'glusterd-uuid': "
                                  f"{self.opts.glusterd_uuid!r} is not a UUID") from None
        self.base = os.path.abspath(self.opts.directory)
        self._root = -1            # brick root, held open (GlusterFS's mount_lock)
        self._hdir = -1            # .glusterfs
        self._hdir_id: tuple[int, int] = (0, 0)
        self._dirs: OrderedDict[GFID, int] = OrderedDict()   # gfid -> directory fd
        self._retired: list[int] = []                        # closed before the next fop
        self._opencount: dict[GFID, int] = {}                # fds open per gfid
        self._unlinked: set[GFID] = set()                    # handles in .glusterfs/unlink
        self._hash_dirs: set[bytes] = set()                  # .glusterfs/xx/yy known made
        self._open_files: dict[int, weakref.finalize] = {}  # os fd -> closer
        self._busy: dict[int, int] = {}      # os fd -> syscalls in io-threads' workers
        self._close_later: set[int] = set()  # released while busy: closed when idle
        self._nowait = _NOWAIT_FIRST         # buffered reads try RWF_NOWAIT inline
        self._mdata = _MdataCache()
        self._dentbuf = ctypes.create_string_buffer(_GETDENTS_BUF)
        self._privileged = os.geteuid() == 0
        self._janitor_wake: trio.Event | None = None
        self._janitor_scope: trio.CancelScope | None = None
        self._janitor_done: trio.Event | None = None
        self._aio: AioContext | None = None

    # -- life cycle ------------------------------------------------------

    async def init(self) -> None:
        """posix_init: check the brick, then build and open .glusterfs."""
        base = self.base
        try:
            st = os.stat(base)
        except OSError as e:
            raise FopError(e.errno, f"{self.name}: brick directory {base}: "
                                    f"{os.strerror(e.errno)}") from None
        if not stat.S_ISDIR(st.st_mode):
            raise FopError(errno.ENOTDIR, f"{self.name}: {base} is not a directory")
        self._root = os.open(base, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            self._check_brick_identity()
            self._open_hidden_dir()
            self._purge_unlink_dir()
            self._purge_landfill()
            self._set_brick_owner()
        except BaseException:
            self._close_all()
            raise
        self._janitor_wake = trio.Event()
        self._janitor_done = trio.Event()
        self._janitor_scope = trio.CancelScope()
        self._trio_token = trio.lowlevel.current_trio_token()
        self.spawn(self._janitor)
        self._start_aio()

    async def fini(self) -> None:
        if self._janitor_scope is not None:
            self._janitor_scope.cancel()
            if self._janitor_done is not None:
                await self._janitor_done.wait()
        if self._aio is not None:
            self._aio.close()
            self._aio = None
        self._close_all()

    def options_changed(self, old) -> None:
        if (self.opts.brick_uid, self.opts.brick_gid) != (old.brick_uid, old.brick_gid):
            self._set_brick_owner()
        if self.opts.linux_aio and not old.linux_aio:
            self._start_aio()

    def _start_aio(self) -> None:
        if self.opts.linux_aio and self._aio is None:
            self._aio = AioContext.open()
            if self._aio is not None:
                self.spawn(self._aio.run)

    def dump_state(self) -> dict:
        return {"directory": self.base, "volume-id": str(self.volume_id or ""),
                "open-fds": sum(self._opencount.values()),
                "cached-directories": len(self._dirs),
                "unlinked-open": sorted(str(g) for g in self._unlinked)}

    # -- entry fops -------------------------------------------------------

    @_inline_fop
    def lookup(self, loc, xdata=None):
        """By name (parent gfid + name, or path) or by gfid; fills the reply
        xdata with the xattrs (names or globs) and virtual keys xdata asks for,
        as posix_xattr_fill does.  An entry without a gfid is healed from
        gfid-req; `.glusterfs` at the root is EPERM."""
        xdata = xdata or {}
        postparent = None
        if loc.name is None and (loc.gfid is not None or loc.path == "/"):
            # nameless lookup: by gfid (posix_lookup's MAKE_INODE_HANDLE)
            gfid = loc.gfid if loc.gfid is not None else ROOT_GFID
            try:
                node = self._node(gfid)
            except FileNotFoundError:
                if xdata.get(UNLINKED_LOOKUP):
                    st = os.stat(f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir,
                                 follow_symlinks=False)
                    ia = Iatt.from_stat(st, gfid)
                    ia.nlink = 0
                    return LookupReply(ia)
                raise
        else:
            pfd, pgfid, name = self._parent(loc)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            self._not_hidden_dir(st)
            node = _Node.entry(pfd, name, st, self._read_gfid(pfd, name))
            if node.gfid is None:
                req = _gfid_req(xdata)
                if req is None:
                    if not xdata.get(GFIDLESS_LOOKUP):
                        raise FopError(errno.ENODATA, f"{name}: entry has no gfid")
                else:
                    self._set_gfid(node, req, pgfid, name)
            elif loc.gfid is None:
                # a fresh lookup heals a missing handle, as posix_gfid_heal does
                self._heal_handle(node, pgfid, name)
            postparent = self._dir_iatt(pfd, pgfid)
        ia = self._iatt(node)
        reply_x = self._fill_xattrs(node.target, xdata, ia, node) if xdata else None
        return LookupReply(ia, postparent, xdata=reply_x or None)

    @_inline_fop
    def mknod(self, loc, mode, rdev, umask, xdata=None):
        """Any file type mode names (regular, fifo, socket, devices).  With
        glusterfs-internal-fop and a gfid-req that already exists, the new
        name links that inode, as distribute needs for linkto files."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        gfid = self._new_gfid(xdata)
        pre = self._dir_iatt(pfd, pgfid)
        uid, gid, _ = self._owner(pre)
        if xdata.get(INTERNAL_FOP) and self._link_existing_gfid(gfid, pfd, name):
            # distribute's linkto file for a hard-linked file: another name for
            # the inode that already has this gfid (posix_create_link_if_gfid_exists)
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
            node = _Node.entry(pfd, name, st, gfid)
            if self.opts.gfid2path:
                self._set_gfid2path(node.target, pgfid, name)
        else:
            ftype = stat.S_IFMT(mode) or stat.S_IFREG
            perm = mode & ~umask & 0o7777
            os.mknod(name, ftype | (perm & 0o777), rdev, dir_fd=pfd)
            try:
                node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata)
            except BaseException:
                _quiet(os.unlink, name, dir_fd=pfd)
                raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M)

    @_inline_fop
    def mkdir(self, loc, mode, umask, xdata=None):
        """A setgid parent gives its group and the setgid bit."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        gfid = self._new_gfid(xdata)
        pre = self._dir_iatt(pfd, pgfid)
        uid, gid, sgid = self._owner(pre)
        perm = mode & ~umask & 0o7777
        if sgid:
            perm |= stat.S_ISGID
        os.mkdir(name, 0o700, dir_fd=pfd)
        try:
            node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata)
        except BaseException:
            _quiet(os.rmdir, name, dir_fd=pfd)
            raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M)

    @_inline_fop
    def symlink(self, linkname, loc, umask, xdata=None):
        """The target is stored verbatim and never followed here."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        if not linkname or "\0" in linkname:
            raise FopError(errno.EINVAL if linkname else errno.ENOENT)
        gfid = self._new_gfid(xdata)
        pre = self._dir_iatt(pfd, pgfid)
        uid, gid, _ = self._owner(pre)
        # the target is stored verbatim: absolute targets are data, never followed
        os.symlink(linkname, name, dir_fd=pfd)
        try:
            node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, None, xdata)
        except BaseException:
            _quiet(os.unlink, name, dir_fd=pfd)
            raise
        return self._entry_reply(node, pfd, pgfid, pre, MDATA_A | MDATA_C | MDATA_M)

    @_inline_fop
    def unlink(self, loc, xflags, xdata=None):
        """The last name takes the handle with it, or parks it in
        .glusterfs/unlink while the file is open.  Honours distribute's
        dont-unlink-for-open-fd and unlink-only-if-dht-linkto-file (EBUSY)."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            raise FopError(errno.EISDIR)
        gfid = self._read_gfid(pfd, name)
        target = _entry_path(pfd, name)
        if gfid is not None and xdata.get(SKIP_OPEN_FD_UNLINK) and self._opencount.get(gfid):
            raise FopError(errno.EBUSY)
        if xdata.get(SKIP_NON_LINKTO_UNLINK) and not (
                _is_linkto_mode(st.st_mode) and _xget(target, DHT_LINKTO_KEY)):
            raise FopError(errno.EBUSY)
        pre = self._dir_iatt(pfd, pgfid)
        nlink = st.st_nlink - 1 if gfid is not None else st.st_nlink
        reply_x: dict = {}
        if xdata.get(GET_LINK_COUNT):
            reply_x[GET_LINK_COUNT] = UInt(nlink)
        if gfid is not None and nlink > 1 and self.opts.gfid2path:
            _quiet(os.removexattr, target, _gfid2path_key(pgfid, name), follow_symlinks=False)
        if gfid is not None and nlink == 1:
            self._drop_handle(gfid)    # the last name goes: so does the handle
        os.unlink(name, dir_fd=pfd)
        if gfid is not None and nlink > 1:
            self._mdata_touch(_handle_path(self._hdir, gfid), MDATA_C)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M)
        if xdata.get(REQUEST_LINK_COUNT):
            reply_x[RESPONSE_LINK_COUNT] = UInt(nlink)
        return ParentReply(pre, post, xdata=reply_x or None)

    @_inline_fop
    def rmdir(self, loc, xflags, xdata=None):
        """Non-zero xflags move the whole tree to landfill (self-heal)."""
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        gfid = self._read_gfid(pfd, name)
        pre = self._dir_iatt(pfd, pgfid)
        if xflags:
            # self-heal's "remove this tree": move it aside, the janitor purges it
            if not stat.S_ISDIR(st.st_mode):
                raise FopError(errno.ENOTDIR)
            dest = str(gfid) if gfid is not None else str(uuid.uuid4())
            os.rename(name, f"{LANDFILL_DIR}/{dest}", src_dir_fd=pfd, dst_dir_fd=self._hdir)
            self._wake_janitor()
        else:
            try:
                os.rmdir(name, dir_fd=pfd)
            except OSError as e:
                raise FopError(errno.ENOTEMPTY if e.errno == errno.EEXIST else e.errno) from None
        if gfid is not None:
            self._forget_dir(gfid)
            if self._dir_handle_points_to(gfid, pgfid, name):
                _quiet(os.unlink, _hrel(gfid), dir_fd=self._hdir)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M)
        return ParentReply(pre, post)

    @_inline_fop
    def rename(self, oldloc, newloc, xdata=None):
        """Moves a directory's handle to its new parent and name; a replaced
        file loses its handle with its last name."""
        xdata = xdata or {}
        opfd, opgfid, oname = self._parent(oldloc)
        npfd, npgfid, nname = self._parent(newloc)
        ost = os.stat(oname, dir_fd=opfd, follow_symlinks=False)
        ogfid = self._read_gfid(opfd, oname)
        try:
            vst = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
            vgfid = self._read_gfid(npfd, nname)
        except FileNotFoundError:
            vst = vgfid = None
        if vst is not None and stat.S_ISDIR(vst.st_mode) and newloc.gfid is not None \
                and vgfid is not None and newloc.gfid != vgfid:
            raise FopError(errno.EEXIST, "the directory at the target is not the one named")
        preold = self._dir_iatt(opfd, opgfid)
        prenew = self._dir_iatt(npfd, npgfid)
        reply_x: dict = {}
        vnlink = 0
        if vst is not None:
            vnlink = vst.st_nlink - (1 if vgfid is not None and not stat.S_ISDIR(vst.st_mode)
                                     else 0)
            if xdata.get(GET_LINK_COUNT):
                reply_x[GET_LINK_COUNT] = UInt(vnlink)
        os.rename(oname, nname, src_dir_fd=opfd, dst_dir_fd=npfd)
        same_inode = vst is not None and (vst.st_ino, vst.st_dev) == (ost.st_ino, ost.st_dev)
        if not same_inode:
            if vst is not None and vgfid is not None:
                if stat.S_ISDIR(vst.st_mode):
                    self._forget_dir(vgfid)
                    _quiet(os.unlink, _hrel(vgfid), dir_fd=self._hdir)
                elif vnlink == 1:
                    self._drop_handle(vgfid)
            if ogfid is not None:
                if stat.S_ISDIR(ost.st_mode):
                    self._make_dir_handle(ogfid, npgfid, nname, replace=True)
                elif self.opts.gfid2path:
                    hpath = _handle_path(self._hdir, ogfid)
                    _quiet(os.removexattr, hpath, _gfid2path_key(opgfid, oname),
                           follow_symlinks=False)
                    self._set_gfid2path(hpath, npgfid, nname)
        nst = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
        node = _Node.entry(npfd, nname, nst, ogfid)
        self._mdata_touch(node.target, MDATA_C)
        ia = self._iatt(node)
        postold = self._dir_iatt(opfd, opgfid, touch=MDATA_C | MDATA_M)
        postnew = self._dir_iatt(npfd, npgfid, touch=MDATA_C | MDATA_M)
        if vst is not None and xdata.get(REQUEST_LINK_COUNT):
            reply_x[RESPONSE_LINK_COUNT] = UInt(vnlink)
        return RenameReply(ia, preold, postold, prenew, postnew, xdata=reply_x or None)

    @_inline_fop
    def link(self, oldloc, newloc, xdata=None):
        node = self._inode(oldloc)
        npfd, npgfid, nname = self._parent(newloc)
        # the kernel's order: the new name's parent, the new name, then the inode
        if _exists(npfd, nname):
            raise FopError(errno.EEXIST)
        if node.is_dir:
            raise FopError(errno.EPERM)
        limit = self.opts.max_hardlinks
        if limit and self._iatt_nlink(node) >= limit:
            raise FopError(errno.EMLINK)
        pre = self._dir_iatt(npfd, npgfid)
        os.link(node.at_name, nname, src_dir_fd=node.at_fd, dst_dir_fd=npfd,
                follow_symlinks=False)
        st = os.stat(nname, dir_fd=npfd, follow_symlinks=False)
        new = _Node.entry(npfd, nname, st, node.gfid)
        if node.gfid is not None and self.opts.gfid2path:
            self._set_gfid2path(new.target, npgfid, nname)
        self._mdata_touch(new.target, MDATA_C)
        ia = self._iatt(new)
        post = self._dir_iatt(npfd, npgfid, touch=MDATA_C | MDATA_M)
        return EntryReply(ia, pre, post)

    @_inline_fop
    def create(self, loc, flags, mode, umask, fd, xdata=None):
        """flags 0 means O_CREAT|O_RDWR|O_EXCL, as GlusterFS; without O_EXCL
        an existing file is opened.  The fd learns the gfid."""
        xdata = xdata or {}
        pfd, pgfid, name = self._parent(loc)
        pre = self._dir_iatt(pfd, pgfid)
        uid, gid, _ = self._owner(pre)
        oflags = (os.O_CREAT | os.O_RDWR | os.O_EXCL) if not flags else (flags | os.O_CREAT)
        if self.opts.o_direct:
            oflags |= os.O_DIRECT
        perm = mode & ~umask & 0o7777
        try:
            st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        except FileNotFoundError:
            st = None
        if st is None:
            gfid = self._new_gfid(xdata)
            osfd = os.open(name, oflags | _O_NOFOLLOW, perm & 0o777, dir_fd=pfd)
            try:
                node = self._finish_new_entry(pfd, pgfid, name, gfid, uid, gid, perm, xdata,
                                              osfd=osfd)
            except BaseException:
                os.close(osfd)
                _quiet(os.unlink, name, dir_fd=pfd)
                raise
        else:
            # O_CREAT without O_EXCL on an existing file opens it (never a symlink)
            osfd = os.open(name, oflags | _O_NOFOLLOW, perm & 0o777, dir_fd=pfd)
            try:
                st = os.fstat(osfd)
                gfid = self._read_gfid(pfd, name)
                node = _Node.entry(pfd, name, st, gfid)
                if gfid is None:
                    req = self._new_gfid(xdata)
                    self._set_gfid(node, req, pgfid, name)
            except BaseException:
                os.close(osfd)
                raise
        of = self._adopt(fd, osfd, flags | (oflags & os.O_DIRECT), node.gfid, is_dir=False)
        if fd.gfid is None:
            fd.gfid = node.gfid
        # Departure: GlusterFS moves the times of an existing file and its
        # parent too; here, as on a local filesystem, only a new file (or
        # O_TRUNC) does.
        if st is None:
            touch, parent_touch = MDATA_A | MDATA_C | MDATA_M, MDATA_C | MDATA_M
        else:
            touch, parent_touch = (MDATA_C | MDATA_M if oflags & os.O_TRUNC else 0), 0
        ia = self._fd_iatt(of, touch=touch)
        post = self._dir_iatt(pfd, pgfid, touch=parent_touch)
        return CreateReply(fd, ia, pre, post)

    # -- inode fops ---------------------------------------------------------

    @_inline_fop
    def stat(self, loc, xdata=None):
        node = self._inode(loc)
        ia = self._iatt(node)
        reply_x = self._fill_xattrs(node.target, xdata, ia, node) if xdata else None
        return StatReply(ia, xdata=reply_x or None)

    @_inline_fop
    def fstat(self, fd, xdata=None):
        of = self._of(fd)
        ia = self._fd_iatt(of)
        reply_x = self._fill_xattrs(of.osfd, xdata, ia, None) if xdata else None
        return StatReply(ia, xdata=reply_x or None)

    @_inline_fop
    def access(self, loc, mask, xdata=None):
        node = self._inode(loc)
        if not os.access(node.at_name, mask & 0o7, dir_fd=node.at_fd, follow_symlinks=False):
            raise FopError(errno.EACCES)
        return Reply()

    @_inline_fop
    def readlink(self, loc, size, xdata=None):
        node = self._inode(loc)
        target = os.readlink(os.fsencode(node.at_name), dir_fd=node.at_fd)
        if size and size > 0:      # readlink(2) truncates to the buffer it is given
            target = target[:size]
        return ReadlinkReply(os.fsdecode(target), self._iatt(node))

    @_offloading_fop
    async def truncate(self, loc, offset, xdata=None):
        node = self._inode(loc)
        pre = self._iatt(node)
        if iothreads.lane.get() is None:
            self._truncate_node(node, offset)
            node.restat()
            self._mdata_touch(node.target, MDATA_C | MDATA_M)
            return PrePostReply(pre, self._iatt(node))
        # through a worker: after the await only the descriptor opened here
        # is used (the cached directory descriptors may be gone by then)
        tfd = self._open_to_truncate(node)
        try:
            await self._blocking(None, os.ftruncate, tfd, offset)
            self._mdata_touch(tfd, MDATA_C | MDATA_M)
            post = Iatt.from_stat(os.fstat(tfd), node.gfid or NULL_GFID)
            if post.nlink and node.gfid is not None:
                post.nlink -= 1     # the handle is not a name
            if self.opts.ctime:
                _apply_mdata(post, _xget_quiet(tfd, MDATA_KEY))
        finally:
            os.close(tfd)
        return PrePostReply(pre, post)

    @_offloading_fop
    async def ftruncate(self, fd, offset, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, os.ftruncate, of.osfd, offset)
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_C | MDATA_M))

    @_inline_fop
    def setattr(self, loc, stbuf, valid, xdata=None):
        node = self._inode(loc)
        pre = self._iatt(node)
        self._apply_setattr(node, None, stbuf, valid, pre)
        node.restat()
        post = self._iatt(node)
        reply_x = self._fill_xattrs(node.target, xdata, post, node) if xdata else None
        return PrePostReply(pre, post, xdata=reply_x or None)

    @_inline_fop
    def fsetattr(self, fd, stbuf, valid, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        self._apply_setattr(None, of, stbuf, valid, pre)
        post = self._fd_iatt(of)
        reply_x = self._fill_xattrs(of.osfd, xdata, post, None) if xdata else None
        return PrePostReply(pre, post, xdata=reply_x or None)

    @_inline_fop
    def statfs(self, loc, xdata=None):
        node = self._inode(loc)
        if node.is_dir:
            sv = os.fstatvfs(node.at_fd)
        else:
            pfd = os.open(node.at_name, os.O_PATH | _O_NOFOLLOW, dir_fd=node.at_fd)
            try:
                sv = os.fstatvfs(pfd)
            finally:
                os.close(pfd)
        shared = max(1, self.opts.shared_brick_count)
        blocks, bfree, bavail = sv.f_blocks // shared, sv.f_bfree // shared, \
            sv.f_bavail // shared
        files, ffree, favail = sv.f_files // shared, sv.f_ffree // shared, sv.f_favail // shared
        if not self.opts.export_statfs_size:
            blocks = bfree = bavail = files = ffree = favail = 0
        return StatfsReply(Statvfs(bsize=sv.f_bsize, frsize=sv.f_frsize, blocks=blocks,
                                   bfree=bfree, bavail=bavail, files=files, ffree=ffree,
                                   favail=favail, fsid=sv.f_fsid, flag=sv.f_flag,
                                   namemax=sv.f_namemax))

    # -- open, read, write ----------------------------------------------------

    @_inline_fop
    def open(self, loc, flags, fd, xdata=None):
        node = self._inode(loc)
        mode = node.st.st_mode
        if stat.S_ISLNK(mode):
            raise FopError(errno.ELOOP)
        if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            raise FopError(errno.EINVAL, "open of a block/char file on a brick")
        oflags = flags & ~(os.O_CREAT | os.O_EXCL)
        if stat.S_ISFIFO(mode):
            oflags |= os.O_NONBLOCK
        elif self.opts.o_direct and stat.S_ISREG(mode):
            oflags |= os.O_DIRECT
        osfd = os.open(node.at_name, oflags | _O_NOFOLLOW, dir_fd=node.at_fd)
        of = self._adopt(fd, osfd, flags | (oflags & os.O_DIRECT), node.gfid,
                         is_dir=node.is_dir)
        if fd.gfid is None:
            fd.gfid = node.gfid
        touch = self._atime_asked()
        if oflags & os.O_TRUNC and stat.S_ISREG(mode):
            # the kernel moved mtime and ctime; so do the times GlusterFS reports
            touch |= MDATA_C | MDATA_M
        self._mdata_touch(of.osfd, touch)
        return OpenReply(fd)

    @_inline_fop
    def opendir(self, loc, fd, xdata=None):
        node = self._inode(loc)
        if not node.is_dir:
            raise FopError(errno.ENOTDIR)
        osfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.at_fd)
        self._adopt(fd, osfd, os.O_RDONLY, node.gfid, is_dir=True)
        if fd.gfid is None:
            fd.gfid = node.gfid
        self._mdata_touch(osfd, self._atime_asked())
        return OpenReply(fd)

    async def readv(self, fd, size, offset, flags, xdata=None):
        """readv(fd, size, offset, flags) -> ReadReply: pread on the fd's
        descriptor (into a page-aligned buffer under O_DIRECT)."""
        try:
            of = fd.ctx.get(self) or self._anon(fd)
            if size <= 0 or offset < 0:
                raise FopError(errno.EINVAL)
            lane = iothreads.lane.get()
            if lane is not None:
                data = await self._read_offloaded(of, size, offset)
            elif of.odirect:
                buf = BUFFERS.take(_direct_length(size))
                n = os.preadv(of.osfd, [buf], offset)
                data = buf[:min(n, size)]
            else:
                data = os.pread(of.osfd, size, offset)
            return ReadReply(data, iatt=self._fd_iatt(of, touch=self._atime_asked()))
        except OSError as e:
            raise FopError(e.errno) from None

    async def writev(self, fd, data, offset, flags, xdata=None):
        """writev(fd, data, offset, flags) -> WriteReply: pwrite of any buffer
        (or a list of buffers) on the fd's descriptor; Linux appends on an
        O_APPEND descriptor whatever the offset."""
        try:
            of = fd.ctx.get(self) or self._anon(fd)
            if offset < 0:
                raise FopError(errno.EINVAL)
            pre = self._fd_iatt(of)
            sync = bool(flags & (os.O_SYNC | os.O_DSYNC))
            aio = self._aio_for(of)
            if aio is not None:
                count = await self._write_aio(aio, of, data, offset, sync)
            else:
                count = await self._blocking(of, _pwrite_all, of.osfd, of.odirect, data,
                                             offset, sync)
            post = self._fd_iatt(of, touch=MDATA_C | MDATA_M)
            reply_x = None
            if xdata:
                reply_x = {}
                if OPEN_FD_COUNT in xdata:
                    reply_x[OPEN_FD_COUNT] = UInt(self._opencount.get(of.gfid, 0))
                if ACTIVE_FD_COUNT in xdata:
                    reply_x[ACTIVE_FD_COUNT] = UInt(self._opencount.get(of.gfid, 0))
                if WRITE_IS_APPEND in xdata:
                    reply_x[WRITE_IS_APPEND] = UInt(int(
                        pre.size == offset or bool(of.flags & os.O_APPEND)))
            return WriteReply(pre, post, count=count, xdata=reply_x or None)
        except OSError as e:
            raise FopError(e.errno) from None

    @_inline_fop
    def flush(self, fd, xdata=None):
        self._of(fd)
        return Reply()

    @_offloading_fop
    async def fsync(self, fd, datasync, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, os.fdatasync if datasync else os.fsync, of.osfd)
        return PrePostReply(pre, self._fd_iatt(of))

    @_inline_fop
    def fsyncdir(self, fd, datasync, xdata=None):
        of = self._of(fd)
        os.fsync(of.osfd)
        return Reply()

    @_inline_fop
    def release(self, fd, xdata=None):
        of = fd.ctx.pop(self, None)
        if of is not None:
            closer = self._open_files.pop(of.osfd, None)
            if closer is not None:
                closer()
        return Reply()

    releasedir = release

    @_inline_fop
    def readdir(self, fd, size, offset, xdata=None):
        """Entries from the d_off cookie `offset` (0 = start) within `size`
        bytes as GlusterFS counts them; Dirent.off resumes after the entry."""
        of = self._of(fd, want_dir=True)
        return DirReply(self._list(of, size, offset, False, xdata))

    @_inline_fop
    def readdirp(self, fd, size, offset, xdata=None):
        """readdir with each entry's iatt (and the xattrs xdata asks for)."""
        of = self._of(fd, want_dir=True)
        return DirReply(self._list(of, size, offset, True, xdata))

    # -- xattrs ------------------------------------------------------------------

    @_inline_fop
    def setxattr(self, loc, xattrs, flags, xdata=None):
        node = self._inode(loc)
        return self._do_setxattr(node.target, node, xattrs, flags, xdata)

    @_inline_fop
    def fsetxattr(self, fd, xattrs, flags, xdata=None):
        of = self._of(fd)
        return self._do_setxattr(of.osfd, None, xattrs, flags, xdata, of=of)

    @_inline_fop
    def getxattr(self, loc, name, xdata=None):
        """One key (stored or virtual), or with name None or "" every stored
        key but the brick's own."""
        node = self._inode(loc)
        return self._do_getxattr(node.target, node, name, xdata, loc=loc)

    @_inline_fop
    def fgetxattr(self, fd, name, xdata=None):
        of = self._of(fd)
        return self._do_getxattr(of.osfd, None, name, xdata, of=of)

    @_inline_fop
    def removexattr(self, loc, name, xdata=None):
        """name "" with xdata removes every key of xdata (bulk removal)."""
        node = self._inode(loc)
        return self._do_removexattr(node.target, node, name, xdata)

    @_inline_fop
    def fremovexattr(self, fd, name, xdata=None):
        of = self._of(fd)
        return self._do_removexattr(of.osfd, None, name, xdata, of=of)

    @_inline_fop
    def xattrop(self, loc, optype, xattrs, xdata=None):
        """Combine each value with the stored one (XattropType) and answer the
        results - replicate's changelog counters."""
        node = self._inode(loc)
        result = self._do_xattrop(node.target, optype, xattrs)
        reply_x = None
        if xdata:
            node.restat()
            reply_x = self._fill_xattrs(node.target, xdata, self._iatt(node), node) or None
        return DictReply(result, xdata=reply_x)

    @_inline_fop
    def fxattrop(self, fd, optype, xattrs, xdata=None):
        of = self._of(fd)
        result = self._do_xattrop(of.osfd, optype, xattrs)
        reply_x = None
        if xdata:
            reply_x = self._fill_xattrs(of.osfd, xdata, self._fd_iatt(of), None) or None
        return DictReply(result, xdata=reply_x)

    # -- space management -------------------------------------------------------

    @_offloading_fop
    async def fallocate(self, fd, mode, offset, length, xdata=None):
        """`mode` holds fallocate(2) flags (1 = FALLOC_FL_KEEP_SIZE, as
        GlusterFS's keep_size)."""
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _fallocate, of.osfd, mode, offset, length)
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_M | MDATA_A))

    @_offloading_fop
    async def discard(self, fd, offset, length, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _fallocate, of.osfd,
                             _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
        return PrePostReply(pre, self._fd_iatt(of))

    @_offloading_fop
    async def zerofill(self, fd, offset, length, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _zerofill, of.osfd, offset, length,
                             bool(of.flags & (os.O_SYNC | os.O_DSYNC)))
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_M | MDATA_A))

    @_offloading_fop
    async def seek(self, fd, offset, what, xdata=None):
        """what: GlusterFS's GF_SEEK_DATA/GF_SEEK_HOLE (0/1); os.SEEK_DATA and
        os.SEEK_HOLE are accepted too."""
        of = self._of(fd)
        whence = {GF_SEEK_DATA: os.SEEK_DATA, GF_SEEK_HOLE: os.SEEK_HOLE,
                  os.SEEK_DATA: os.SEEK_DATA, os.SEEK_HOLE: os.SEEK_HOLE}.get(what)
        if whence is None:
            raise FopError(errno.ENOTSUP, f"seek: unknown what {what}")
        return SeekReply(await self._blocking(of, os.lseek, of.osfd, offset, whence))

    @_offloading_fop
    async def rchecksum(self, fd, offset, length, xdata=None):
        """adler32 (seeded with 0) and MD5, or SHA256 with fips-mode-rchecksum."""
        of = self._of(fd)
        if length < 0:
            raise FopError(errno.EINVAL)
        zeroes = bool(xdata and "check-zero-filled" in xdata)
        fips = self.opts.fips_mode_rchecksum
        weak, strong, all_zero = await self._blocking(of, _checksums, of.osfd, offset, length,
                                                      fips, zeroes)
        reply_x: dict = {}
        if zeroes:
            reply_x["buf-has-zeroes"] = UInt(int(all_zero))
        if fips:
            reply_x["fips-mode-rchecksum"] = 1
        return ChecksumReply(weak, strong, xdata=reply_x or None)

    @_offloading_fop
    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        """One copy_file_range(2) call, as GlusterFS; the count may be short."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        src, dst = self._of(fd_in), self._of(fd_out)
        pre_dst = self._fd_iatt(dst)
        # one call, as GlusterFS: the count says how much was copied
        count = await self._blocking((src, dst), os.copy_file_range, src.osfd, dst.osfd,
                                     length, off_in, off_out)
        post_dst = self._fd_iatt(dst, touch=MDATA_C | MDATA_M)
        return CopyRangeReply(self._fd_iatt(src, touch=self._atime_asked()), pre_dst, post_dst,
                              count)

    put = Translator.put_with_own_fops  # posix_put, through the syncops of this translator

    # -- fops GlusterFS's posix leaves to other translators -----------------
    # posix_lk, posix_inodelk, ... answer ENOSYS: "features/locks is not loaded"

    @_inline_fop
    def lk(self, fd, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "byte-range locks are served by features/locks")

    @_inline_fop
    def inodelk(self, volume, loc, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "inode locks are served by features/locks")

    @_inline_fop
    def finodelk(self, volume, fd, cmd, flock, xdata=None):
        raise FopError(errno.ENOSYS, "inode locks are served by features/locks")

    @_inline_fop
    def entrylk(self, volume, loc, basename, cmd, type, xdata=None):
        raise FopError(errno.ENOSYS, "entry locks are served by features/locks")

    @_inline_fop
    def fentrylk(self, volume, fd, basename, cmd, type, xdata=None):
        raise FopError(errno.ENOSYS, "entry locks are served by features/locks")

    @_inline_fop
    def lease(self, loc, lease, xdata=None):
        raise FopError(errno.ENOSYS, "leases are served by features/leases")

    @_inline_fop
    def ipc(self, op, xdata=None):
        raise FopError(errno.EOPNOTSUPP, f"ipc op {op} is not handled by storage/posix")

    # GlusterFS's storage/posix has no icreate, namelink, getactivelk or
    # setactivelk (features/locks serves the last two)

    @_inline_fop
    def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by storage/posix")

    @_inline_fop
    def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by storage/posix")

    @_inline_fop
    def getactivelk(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is served by features/locks")

    @_inline_fop
    def setactivelk(self, loc, locks, xdata=None):
        raise FopError(errno.ENOTSUP, "lock migration is served by features/locks")

    # ======================================================================
    # helpers: brick set-up

    def _check_brick_identity(self) -> None:
        """posix_init's xattr checks: xattrs work, volume-id, root gfid."""
        root = self._root
        try:
            vol = _xget(root, VOLUME_ID_KEY)
        except OSError as e:
            if e.errno in (errno.ENOTSUP, errno.ENOSYS):
                raise FopError(e.errno, f"{self.name}: {self.base} does not support "
                                        f"extended attributes") from None
            raise
        if self.volume_id is not None:
            if vol is None:
                with os.scandir(f"/proc/self/fd/{root}") as it:
                    empty = next(it, None) is None
                if not empty:
                    raise FopError(errno.ENODATA,
                                   f"{self.name}: {self.base} has no {VOLUME_ID_KEY} and is "
                                   f"not empty: refusing a directory that is not this "
                                   f"volume's brick")
                os.setxattr(root, VOLUME_ID_KEY, self.volume_id, os.XATTR_CREATE)
            elif len(vol) != 16:
                raise FopError(errno.EINVAL, f"{self.name}: {self.base}: malformed "
                                             f"{VOLUME_ID_KEY}")
            elif vol != self.volume_id:
                raise FopError(errno.EEXIST,
                               f"{self.name}: {self.base} is already part of volume "
                               f"{GFID(vol)}, not {self.volume_id}")
        gfid = _xget(root, GFID_KEY)
        if gfid is None:
            try:
                os.setxattr(root, GFID_KEY, ROOT_GFID, os.XATTR_CREATE)
            except PermissionError:
                raise FopError(errno.EPERM, f"{self.name}: setting {GFID_KEY} on {self.base} "
                                            f"needs CAP_SYS_ADMIN: bricks run as root, as "
                                            f"GlusterFS's do") from None
        elif gfid != ROOT_GFID:
            raise FopError(errno.EINVAL, f"{self.name}: {self.base} has gfid "
                                         f"{_fmt_gfid(gfid)}, not the root's")

    def _open_hidden_dir(self) -> None:
        """.glusterfs, its 256 hash directories, the root handle, landfill and
        unlink - what posix_init and posix_handle_init make."""
        self._hdir = _open_or_make_dir(self._root, HIDDEN_DIR, 0o600)
        hst = os.fstat(self._hdir)
        self._hdir_id = (hst.st_ino, hst.st_dev)
        for i in range(256):
            try:
                os.mkdir(f"{i:02x}", 0o700, dir_fd=self._hdir)
                os.chmod(f"{i:02x}", 0o700, dir_fd=self._hdir)
            except FileExistsError:
                pass
        rel = _hrel(ROOT_GFID)
        try:
            st = os.stat(rel, dir_fd=self._hdir)      # follows ../../..
        except FileNotFoundError:
            self._mkdir_hash(ROOT_GFID)
            os.symlink("../../..", rel, dir_fd=self._hdir)
        else:
            rst = os.fstat(self._root)
            if (st.st_ino, st.st_dev) != (rst.st_ino, rst.st_dev):
                raise FopError(errno.EINVAL, f"{self.name}: {self.base}/{HIDDEN_DIR}/{rel} "
                                             f"is not the brick root")
        for name, mode in ((LANDFILL_DIR, 0o755), (UNLINK_DIR, 0o600)):
            try:
                os.mkdir(name, mode, dir_fd=self._hdir)
                os.chmod(name, mode, dir_fd=self._hdir)
            except FileExistsError:
                st = os.stat(name, dir_fd=self._hdir, follow_symlinks=False)
                if not stat.S_ISDIR(st.st_mode):
                    raise FopError(errno.ENOTDIR, f"{self.name}: {self.base}/{HIDDEN_DIR}/"
                                                  f"{name} is not a directory") from None

    def _purge_unlink_dir(self) -> None:
        """Files left in .glusterfs/unlink by a previous run have no open fd
        any more (posix_create_unlink_dir empties it at start)."""
        for entry in os.scandir(f"/proc/self/fd/{self._hdir}/{UNLINK_DIR}"):
            _remove_tree(entry.path)

    def _purge_landfill(self) -> None:
        """The janitor's walk: remove what rmdir moved to landfill, dropping
        the handles of its files and directories (janitor_walker)."""
        landfill = f"/proc/self/fd/{self._hdir}/{LANDFILL_DIR}"
        for top in os.scandir(landfill):
            if not top.is_dir(follow_symlinks=False):
                _quiet(os.unlink, top.path)
                continue
            for dirpath, dirnames, filenames in os.walk(top.path, topdown=False):
                for name in filenames + [d for d in dirnames
                                         if os.path.islink(os.path.join(dirpath, d))]:
                    path = os.path.join(dirpath, name)
                    try:
                        st = os.lstat(path)
                        gfid = _xget(path, GFID_KEY)
                        os.unlink(path)
                    except OSError:
                        continue
                    if gfid is not None and len(gfid) == 16 and st.st_nlink == 2:
                        _quiet(os.unlink, _hrel(GFID(gfid)), dir_fd=self._hdir)
                for name in dirnames:
                    path = os.path.join(dirpath, name)
                    if os.path.islink(path):
                        continue
                    gfid = _quiet(_xget, path, GFID_KEY)
                    if _quiet(os.rmdir, path) is not False and gfid and len(gfid) == 16:
                        self._drop_stale_dir_handle(GFID(gfid))
            gfid = _quiet(_xget, top.path, GFID_KEY)
            if _quiet(os.rmdir, top.path) is not False and gfid and len(gfid) == 16:
                self._drop_stale_dir_handle(GFID(gfid))

    def _drop_stale_dir_handle(self, gfid: GFID) -> None:
        """del_stale_dir_handle: a directory handle whose target is gone or has
        another gfid is removed."""
        try:
            self._resolve_dir_uncached(gfid)
        except (OSError, FopError):
            _quiet(os.unlink, _hrel(gfid), dir_fd=self._hdir)

    def _wake_janitor(self) -> None:
        """Thread-safe: fops may run in a gfapi caller's thread
        (FOPS_NEVER_SUSPEND), where trio.Event.set() is not allowed."""
        if self._janitor_wake is not None:
            try:
                self._trio_token.run_sync_soon(lambda: self._janitor_wake.set())
            except trio.RunFinishedError:
                pass

    async def _janitor(self) -> None:
        """Purge landfill every janitor-sleep-duration seconds, or at once when
        rmdir moved something there."""
        try:
            with self._janitor_scope:
                while True:
                    with trio.move_on_after(self.opts.janitor_sleep_duration):
                        await self._janitor_wake.wait()
                    self._janitor_wake = trio.Event()
                    try:
                        await trio.to_thread.run_sync(self._purge_landfill)
                    except (OSError, FopError) as e:
                        self.log.warning("landfill purge failed: %s", e)
        finally:
            self._janitor_done.set()

    def _set_brick_owner(self) -> None:
        uid, gid = self.opts.brick_uid, self.opts.brick_gid
        if uid == -1 and gid == -1:
            return
        st = os.fstat(self._root)
        if (uid == -1 or st.st_uid == uid) and (gid == -1 or st.st_gid == gid):
            return
        os.fchown(self._root, uid, gid)

    def _close_all(self) -> None:
        for closer in list(self._open_files.values()):
            closer()
        self._open_files.clear()
        for osfd in self._close_later - set(self._busy):
            _quiet(os.close, osfd)
        self._close_later.intersection_update(self._busy)
        for fd in list(self._dirs.values()) + self._retired:
            _quiet(os.close, fd)
        self._dirs.clear()
        self._retired.clear()
        for fd in (self._hdir, self._root):
            if fd >= 0:
                _quiet(os.close, fd)
        self._hdir = self._root = -1

    # ======================================================================
    # helpers: resolution

    def _node(self, gfid: GFID) -> "_Node":
        """The inode a gfid names, through its handle."""
        if gfid == ROOT_GFID:
            return _Node.directory(self._root, os.fstat(self._root), ROOT_GFID)
        if gfid == NULL_GFID:
            raise FopError(errno.EINVAL, "null gfid")
        rel = _hrel(gfid)
        st = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) and st.st_nlink == 1:
            dfd = self._dir_fd(gfid)
            return _Node.directory(dfd, os.fstat(dfd), gfid)
        return _Node(gfid, st, self._hdir, rel)

    def _dir_fd(self, gfid: GFID) -> int:
        """An open descriptor of the directory a gfid names (cached).

        The handle symlink `../../pp/qq/<pargfid>/<name>` is followed one
        step at a time: the parent's descriptor, then `name` opened in it with
        O_NOFOLLOW, then its gfid checked - the kernel never follows a link.
        """
        if gfid == ROOT_GFID:
            return self._root
        fd = self._cached_dir(gfid)
        if fd is not None:
            return fd
        chain: list[tuple[GFID, str]] = []
        g = gfid
        while True:
            pg, name = self._read_dir_handle(g)
            chain.append((g, name))
            if pg == ROOT_GFID:
                base = self._root
                break
            cached = self._cached_dir(pg)
            if cached is not None:
                base = cached
                break
            if len(chain) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP, "directory handles nest too deep")
            g = pg
        for g, name in reversed(chain):
            base = self._open_child_dir(base, name, g)
            self._dirs[g] = base
        return base

    def _cached_dir(self, gfid: GFID) -> int | None:
        fd = self._dirs.get(gfid)
        if fd is None:
            return None
        if os.fstat(fd).st_nlink:     # a removed directory has no links
            self._dirs.move_to_end(gfid)
            return fd
        self._retired.append(self._dirs.pop(gfid))
        return None

    def _forget_dir(self, gfid: GFID) -> None:
        fd = self._dirs.pop(gfid, None)
        if fd is not None:
            self._retired.append(fd)

    def _trim_dir_cache(self) -> None:
        """Close what the cache dropped and its least recently used entries.
        Only between fops: a fop may still hold descriptors it got from the
        cache, so fops retire descriptors instead of closing them."""
        while len(self._dirs) > _DIR_CACHE_MAX:
            self._retired.append(self._dirs.popitem(last=False)[1])
        retired, self._retired = self._retired, []
        for fd in retired:
            _quiet(os.close, fd)

    def _read_dir_handle(self, gfid: GFID) -> tuple[GFID, str]:
        """(parent gfid, name) from a directory's handle symlink."""
        rel = _hrel(gfid)
        st = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        if not (stat.S_ISLNK(st.st_mode) and st.st_nlink == 1):
            raise FopError(errno.ENOTDIR, f"{gfid} is not a directory")
        return _parse_dir_handle(os.readlink(rel, dir_fd=self._hdir), gfid)

    def _open_child_dir(self, base: int, name: str, gfid: GFID) -> int:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW, dir_fd=base)
        try:
            st = os.fstat(fd)
            if (st.st_ino, st.st_dev) == self._hdir_id:
                raise FopError(errno.ENOENT)
            if _xget(fd, GFID_KEY) != gfid:
                raise FopError(errno.ESTALE, f"stale handle for directory {gfid}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _resolve_dir_uncached(self, gfid: GFID) -> None:
        """Check that a directory handle still leads to a directory with this
        gfid, without touching the cache (safe in the janitor's thread)."""
        names = []
        g = gfid
        while g != ROOT_GFID:
            g, name = self._read_dir_handle(g)
            names.append(name)
            if len(names) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP)
        fd = os.dup(self._root)
        try:
            for name in reversed(names):
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nfd
            if _xget(fd, GFID_KEY) != gfid:
                raise FopError(errno.ESTALE)
        finally:
            os.close(fd)

    def _dir_path(self, gfid: GFID) -> str:
        """The path of a directory from the brick root, through its handles."""
        names = []
        g = gfid
        while g != ROOT_GFID:
            g, name = self._read_dir_handle(g)
            names.append(name)
            if len(names) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP)
        return "/" + "/".join(reversed(names))

    def _parent(self, loc) -> tuple[int, GFID, str]:
        """(parent directory fd, parent gfid, checked name) of an entry loc."""
        if loc.pargfid is not None and loc.name is not None:
            name = loc.name
            _check_name(name)
            pgfid = loc.pargfid
            pfd = self._dir_fd(pgfid)
        elif loc.path is not None and loc.path.strip("/"):
            parts = _path_parts(loc.path)
            name = parts[-1]
            pfd, pgfid = self._walk(parts[:-1])
        else:
            raise FopError(errno.EINVAL, f"{loc}: no parent and name to act on")
        if name == HIDDEN_DIR and pgfid == ROOT_GFID:
            raise FopError(errno.EPERM, f"{HIDDEN_DIR} is private to the brick")
        return pfd, pgfid, name

    def _walk(self, parts: list[str]) -> tuple[int, GFID]:
        """Walk directory names from the root without following symlinks."""
        fd, gfid = self._root, ROOT_GFID
        for name in parts:
            if name == HIDDEN_DIR and gfid == ROOT_GFID:
                raise FopError(errno.EPERM, f"{HIDDEN_DIR} is private to the brick")
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW, dir_fd=fd)
            raw = _xget(nfd, GFID_KEY)
            if raw is None or len(raw) != 16:
                os.close(nfd)
                raise FopError(errno.ENODATA, f"{name}: directory has no gfid")
            gfid = GFID(raw)
            fd = self._cache_dir(gfid, nfd)
        return fd, gfid

    def _inode(self, loc) -> "_Node":
        """The inode a loc names: by gfid, else by parent and name, else by path."""
        if loc.gfid is not None:
            return self._node(loc.gfid)
        if loc.name is None and loc.pargfid is None and loc.path in (None, "", "/"):
            if loc.path == "/":
                return self._node(ROOT_GFID)
            raise FopError(errno.EINVAL, "a loc needs a gfid, a parent and a name, or a path")
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        self._not_hidden_dir(st)
        gfid = self._read_gfid(pfd, name)
        if stat.S_ISDIR(st.st_mode):
            if gfid is None:
                raise FopError(errno.ENODATA, f"{name}: directory has no gfid")
            return _Node.directory(self._child_dir_fd(pfd, name, st, gfid), st, gfid)
        return _Node.entry(pfd, name, st, gfid)

    def _child_dir_fd(self, pfd: int, name: str, st, gfid: GFID) -> int:
        """The cached descriptor of directory `name` in pfd, opened from the
        parent (not through the handle, which may be missing)."""
        fd = self._cached_dir(gfid)
        if fd is not None:
            cst = os.fstat(fd)
            if (cst.st_ino, cst.st_dev) == (st.st_ino, st.st_dev):
                return fd
        return self._cache_dir(gfid, self._open_child_dir(pfd, name, gfid))

    def _cache_dir(self, gfid: GFID, fd: int) -> int:
        """Keep a freshly opened directory descriptor, unless the cache holds
        one for the same directory already (then that one is used)."""
        cached = self._dirs.get(gfid)
        if cached is not None:
            cst, st = os.fstat(cached), os.fstat(fd)
            if (cst.st_ino, cst.st_dev) == (st.st_ino, st.st_dev):
                os.close(fd)
                self._dirs.move_to_end(gfid)
                return cached
            # two directories with one gfid (self-heal of a rename does this
            # for a while): the one just reached by name wins
            self._retired.append(self._dirs.pop(gfid))
        self._dirs[gfid] = fd
        return fd

    def _not_hidden_dir(self, st) -> None:
        # GlusterFS's posix_pstat: the handle directory itself does not exist
        if (st.st_ino, st.st_dev) == self._hdir_id:
            raise FopError(errno.ENOENT)

    def _read_gfid(self, dirfd: int, name: str) -> GFID | None:
        raw = _xget(_entry_path(dirfd, name), GFID_KEY)
        return GFID(raw) if raw is not None and len(raw) == 16 else None

    def _of(self, fd, want_dir: bool = False) -> "_OpenFile":
        of = fd.ctx.get(self)
        if of is None:
            of = self._anon(fd)
        if want_dir and not of.is_dir:
            raise FopError(errno.ENOTDIR)
        return of

    def _anon(self, fd) -> "_OpenFile":
        """Open an anonymous fd on demand through its gfid's handle."""
        if fd.gfid is None:
            raise FopError(errno.EBADF, "fd was never opened and names no gfid")
        gfid = GFID(fd.gfid)
        try:
            node = self._node(gfid)
        except FileNotFoundError:
            # unlinked while open elsewhere: GlusterFS looks in .glusterfs/unlink
            st = os.stat(f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir, follow_symlinks=False)
            node = _Node(gfid, st, self._hdir, f"{UNLINK_DIR}/{gfid}")
        mode = node.st.st_mode
        if node.is_dir:
            osfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.at_fd)
            return self._adopt(fd, osfd, os.O_RDONLY, gfid, is_dir=True)
        if stat.S_ISLNK(mode):
            raise FopError(errno.ELOOP)
        if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            raise FopError(errno.EINVAL)
        flags = fd.flags & ~_ANON_STRIP
        if stat.S_ISFIFO(mode):
            flags |= os.O_NONBLOCK
        osfd = os.open(node.at_name, flags | _O_NOFOLLOW, dir_fd=node.at_fd)
        return self._adopt(fd, osfd, flags, gfid, is_dir=False)

    def _adopt(self, fd, osfd: int, flags: int, gfid: GFID | None, is_dir: bool) -> "_OpenFile":
        """Keep an OS descriptor in fd.ctx[self]; it is closed by release or
        when the Fd is garbage-collected."""
        old = fd.ctx.get(self)
        if old is not None:
            closer = self._open_files.pop(old.osfd, None)
            if closer is not None:
                closer()
        of = _OpenFile(osfd, flags, is_dir, gfid)
        fd.ctx[self] = of
        if gfid is not None:
            self._opencount[gfid] = self._opencount.get(gfid, 0) + 1
        self._open_files[osfd] = weakref.finalize(fd, self._closed, osfd, gfid)
        return of

    def _closed(self, osfd: int, gfid: GFID | None) -> None:
        self._open_files.pop(osfd, None)
        if osfd in self._busy:
            self._close_later.add(osfd)   # a worker uses it: see _blocking
        else:
            _quiet(os.close, osfd)
        if gfid is None:
            return
        left = self._opencount.get(gfid, 0) - 1
        if left > 0:
            self._opencount[gfid] = left
            return
        self._opencount.pop(gfid, None)
        if gfid in self._unlinked:
            self._unlinked.discard(gfid)
            if self._hdir >= 0:
                _quiet(os.unlink, f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir)

    # ======================================================================
    # helpers: new entries, gfids and handles

    def _new_gfid(self, xdata: dict) -> GFID:
        req = _gfid_req(xdata)
        return req if req is not None else GFID.random()

    def _owner(self, parent: Iatt) -> tuple[int, int, bool]:
        """uid and gid of a new entry, and whether the parent is setgid."""
        who = fops.caller.get()
        sgid = bool(parent.mode & stat.S_ISGID)
        return who.uid, (parent.gid if sgid else who.gid), sgid

    def _finish_new_entry(self, pfd, pgfid, name, gfid, uid, gid, perm, xdata,
                          osfd: int | None = None) -> "_Node":
        """What GlusterFS does after creating an entry: owner, exact mode,
        ACLs and xattrs from xdata, gfid2path, the gfid and its handle."""
        st = os.fstat(osfd) if osfd is not None else \
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
        if (st.st_uid, st.st_gid) != (uid, gid):
            try:
                if osfd is not None:
                    os.fchown(osfd, uid, gid)
                else:
                    os.chown(name, uid, gid, dir_fd=pfd, follow_symlinks=False)
            except PermissionError:
                if self._privileged:
                    raise
        if perm is not None:
            # after chown, which may clear set-id bits
            if osfd is not None:
                os.fchmod(osfd, perm)
            else:
                os.chmod(name, perm, dir_fd=pfd, follow_symlinks=False)
        st = os.fstat(osfd) if osfd is not None else \
            os.stat(name, dir_fd=pfd, follow_symlinks=False)
        node = _Node.entry(pfd, name, st, None)
        target = node.target
        for key in (ACL_ACCESS_KEY, ACL_DEFAULT_KEY):
            if key in xdata:
                try:
                    _xset(target, key, _xattr_bytes(xdata[key]), 0)
                except OSError as e:
                    self.log.warning("%s: setting %s failed: %s", name, key, e)
        if not stat.S_ISDIR(st.st_mode) and self.opts.gfid2path:
            self._set_gfid2path(target, pgfid, name)
        for key, value in xdata.items():
            if key in IGNORED_KEYS or key in (GFID_KEY, ACL_ACCESS_KEY, ACL_DEFAULT_KEY) \
                    or not key.startswith(XATTR_NAMESPACES):
                continue
            try:
                self._set_one_xattr(target, node, key, value, os.XATTR_CREATE)
            except (OSError, FopError) as e:
                self.log.debug("%s: xattr %s from xdata not set: %s", name, key, e)
        self._set_gfid(node, gfid, pgfid, name)
        return node

    def _set_gfid(self, node: "_Node", gfid: GFID, pgfid: GFID, name: str) -> None:
        """posix_gfid_set: store the gfid (if none yet) and make the handle."""
        if gfid in (NULL_GFID, ROOT_GFID):
            raise FopError(errno.EINVAL, f"gfid-req {gfid} cannot name a new entry")
        current = _xget(node.target, GFID_KEY)
        if current is not None and len(current) == 16:
            gfid = GFID(current)
        else:
            _xset(node.target, GFID_KEY, gfid, os.XATTR_CREATE)
        node.gfid = gfid
        if node.is_dir:
            self._make_dir_handle(gfid, pgfid, name, replace=True)
        else:
            try:
                self._make_file_handle(gfid, node)
            except BaseException:
                _quiet(os.removexattr, node.target, GFID_KEY, follow_symlinks=False)
                raise

    def _heal_handle(self, node: "_Node", pgfid: GFID, name: str) -> None:
        """Re-create a missing handle for an entry that has a gfid."""
        rel = _hrel(node.gfid)
        try:
            os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
            return
        except FileNotFoundError:
            pass
        try:
            if node.is_dir:
                self._make_dir_handle(node.gfid, pgfid, name, replace=False)
            else:
                self._make_file_handle(node.gfid, node)
        except (OSError, FopError) as e:
            self.log.warning("%s: could not heal the handle of %s: %s", name, node.gfid, e)

    def _make_file_handle(self, gfid: GFID, node: "_Node") -> None:
        """posix_handle_hard: .glusterfs/xx/yy/<gfid> is another hard link."""
        rel = _hrel(gfid)
        try:
            hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        except FileNotFoundError:
            hst = None
        if hst is not None:
            if (hst.st_ino, hst.st_dev) == (node.st.st_ino, node.st.st_dev):
                return
            if hst.st_nlink > 1 or stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1:
                raise FopError(errno.EEXIST, f"gfid {gfid} already names another inode")
            os.unlink(rel, dir_fd=self._hdir)     # an orphaned handle: no names left
        self._mkdir_hash(gfid)
        os.link(node.at_name, rel, src_dir_fd=node.at_fd, dst_dir_fd=self._hdir,
                follow_symlinks=False)

    def _make_dir_handle(self, gfid: GFID, pgfid: GFID, name: str, replace: bool) -> None:
        """posix_handle_soft: the symlink ../../pp/qq/<pargfid>/<name>,
        swapped in atomically when it replaces an older one."""
        rel = _hrel(gfid)
        target = f"../../{pgfid[0]:02x}/{pgfid[1]:02x}/{pgfid}/{name}"
        try:
            hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        except FileNotFoundError:
            hst = None
        if hst is not None:
            if not (stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1):
                raise FopError(errno.EEXIST, f"gfid {gfid} already names a non-directory")
            if not replace or os.readlink(rel, dir_fd=self._hdir) == target:
                return
            tmp = f"{rel}.{os.getpid()}.tmp"
            _quiet(os.unlink, tmp, dir_fd=self._hdir)
            os.symlink(target, tmp, dir_fd=self._hdir)
            os.rename(tmp, rel, src_dir_fd=self._hdir, dst_dir_fd=self._hdir)
            return
        self._mkdir_hash(gfid)
        os.symlink(target, rel, dir_fd=self._hdir)

    def _dir_handle_points_to(self, gfid: GFID, pgfid: GFID, name: str) -> bool:
        """posix_symlinks_match: is this directory's handle for pgfid/name?"""
        try:
            return _parse_dir_handle(os.readlink(_hrel(gfid), dir_fd=self._hdir), gfid) == \
                (pgfid, name)
        except (OSError, FopError):
            return False

    def _mkdir_hash(self, gfid: GFID) -> None:
        """Make .glusterfs/xx/yy once; only this translator adds or removes
        them, so a set of the ones made saves two mkdir calls per new entry."""
        prefix = gfid[:2]
        if prefix in self._hash_dirs:
            return
        for rel in (f"{gfid[0]:02x}", f"{gfid[0]:02x}/{gfid[1]:02x}"):
            try:
                os.mkdir(rel, 0o700, dir_fd=self._hdir)
                os.chmod(rel, 0o700, dir_fd=self._hdir)
            except FileExistsError:
                pass
        self._hash_dirs.add(prefix)

    def _drop_handle(self, gfid: GFID) -> None:
        """The last name of a file goes: its handle goes too, unless the file
        is still open - then it waits in .glusterfs/unlink for the last release."""
        rel = _hrel(gfid)
        if self._opencount.get(gfid):
            try:
                os.rename(rel, f"{UNLINK_DIR}/{gfid}", src_dir_fd=self._hdir,
                          dst_dir_fd=self._hdir)
                self._unlinked.add(gfid)
                return
            except FileNotFoundError:
                return
        _quiet(os.unlink, rel, dir_fd=self._hdir)

    def _link_existing_gfid(self, gfid: GFID, pfd: int, name: str) -> bool:
        rel = _hrel(gfid)
        try:
            hst = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        except FileNotFoundError:
            return False
        if stat.S_ISLNK(hst.st_mode) and hst.st_nlink == 1:
            return False
        os.link(rel, name, src_dir_fd=self._hdir, dst_dir_fd=pfd, follow_symlinks=False)
        return True

    def _set_gfid2path(self, target, pgfid: GFID, name: str) -> None:
        value = f"{pgfid}/{name}"
        try:
            _xset(target, _gfid2path_key(pgfid, name), os.fsencode(value), os.XATTR_CREATE)
        except FileExistsError:
            pass
        except OSError as e:
            self.log.warning("setting gfid2path for %s failed: %s", value, e)

    def _entry_reply(self, node, pfd, pgfid, pre, touch) -> EntryReply:
        node.restat()
        self._mdata_touch(node.target, touch)
        ia = self._iatt(node)
        post = self._dir_iatt(pfd, pgfid, touch=MDATA_C | MDATA_M)
        return EntryReply(ia, pre, post)

    # ======================================================================
    # helpers: attributes

    def _iatt(self, node: "_Node") -> Iatt:
        ia = Iatt.from_stat(node.st, node.gfid or NULL_GFID)
        if not node.is_dir and ia.nlink and node.gfid is not None:
            ia.nlink -= 1     # the handle is not a name
        if self.opts.ctime:
            _apply_mdata(ia, _xget_quiet(node.target, MDATA_KEY))
        return ia

    def _iatt_nlink(self, node: "_Node") -> int:
        n = node.st.st_nlink
        return n - 1 if not node.is_dir and node.gfid is not None and n else n

    def _fd_iatt(self, of: "_OpenFile", touch: int = 0) -> Iatt:
        st = os.fstat(of.osfd)
        ia = Iatt.from_stat(st, of.gfid or NULL_GFID)
        if not of.is_dir and ia.nlink:
            ia.nlink -= 1
        if self.opts.ctime:
            if touch:
                self._mdata_touch(of.osfd, touch, ia)
            else:
                _apply_mdata(ia, self._mdata.get(of.osfd, st))
        return ia

    def _dir_iatt(self, dfd: int, gfid: GFID, touch: int = 0) -> Iatt:
        ia = Iatt.from_stat(os.fstat(dfd), gfid)
        if self.opts.ctime:
            if touch:
                self._mdata_touch(dfd, touch, ia)
            else:
                _apply_mdata(ia, _xget_quiet(dfd, MDATA_KEY))
        return ia

    def _mdata_touch(self, target, flags: int, ia: Iatt | None = None) -> None:
        """posix_set_mdata_xattr: move the flagged times to now (never back);
        a missing xattr is created with every time set to now.  "Now" is the
        client's clock when it sent one (`_clock`)."""
        if not self.opts.ctime or not flags:
            return
        now = self._clock()
        cur = _mdata_decode(_xget_quiet(target, MDATA_KEY))
        if cur is None:
            c = m = a = now
        else:
            c, m, a = cur
            if flags & MDATA_C and now > c:
                c = now
            if flags & MDATA_M and now > m:
                m = now
            if flags & MDATA_A and now > a:
                a = now
        try:
            _xset(target, MDATA_KEY, _mdata_encode(c, m, a), 0)
        except OSError as e:
            self.log.warning("storing %s failed: %s", MDATA_KEY, e)
            return
        if ia is not None:
            _set_iatt_times(ia, c, m, a)

    @staticmethod
    def _clock() -> int:
        """The time this fop stamps, GlusterFS's frame->root->ctime: the
        client's clock when its features/utime sent one (the caller's
        ctime_ns), so that every brick of a replica stores the same times;
        otherwise the brick's."""
        stamped = fops.caller.get().ctime_ns
        return stamped if stamped is not None else time.time_ns()

    @staticmethod
    def _atime_asked() -> int:
        """MDATA_A when the client's features/utime asks reads, opens and
        opendirs to move atime (its noatime is off), as posix_set_ctime
        honours the frame's flags; else 0."""
        return fops.caller.get().flags & MDATA_A

    def _apply_setattr(self, node, of, stbuf: Iatt, valid: int, pre: Iatt) -> None:
        """setattr/fsetattr: owner, mode, size, times; then the mdata times."""
        is_link = node is not None and stat.S_ISLNK(node.st.st_mode)
        if valid & (fops.SET_ATTR_UID | fops.SET_ATTR_GID):
            uid = stbuf.uid if valid & fops.SET_ATTR_UID else -1
            gid = stbuf.gid if valid & fops.SET_ATTR_GID else -1
            if of is not None:
                os.fchown(of.osfd, uid, gid)
            else:
                os.chown(node.at_name, uid, gid, dir_fd=node.at_fd, follow_symlinks=False)
        if valid & fops.SET_ATTR_MODE and not is_link:
            # Linux has no symlink modes; GlusterFS also treats this as success
            perm = stbuf.mode & 0o7777
            if of is not None:
                os.fchmod(of.osfd, perm)
            else:
                os.chmod(node.at_name, perm, dir_fd=node.at_fd, follow_symlinks=False)
        target = of.osfd if of is not None else node.target
        if valid & fops.SET_ATTR_SIZE:
            # before the times, which a size change would otherwise overwrite
            if of is not None:
                os.ftruncate(of.osfd, stbuf.size)
            else:
                self._truncate_node(node, stbuf.size)
            self._mdata_touch(target, MDATA_C | MDATA_M)
        times = fops.SET_ATTR_ATIME | fops.SET_ATTR_MTIME | fops.SET_ATTR_ATIME_NOW | \
            fops.SET_ATTR_MTIME_NOW
        now = self._clock()
        if valid & times:
            st = os.fstat(of.osfd) if of is not None else \
                os.stat(node.at_name, dir_fd=node.at_fd, follow_symlinks=False)
            atime, mtime = st.st_atime_ns, st.st_mtime_ns
            set_a = set_m = None
            if valid & fops.SET_ATTR_ATIME_NOW:
                atime = set_a = now
            elif valid & fops.SET_ATTR_ATIME:
                atime = set_a = stbuf.atime_ns
            if valid & fops.SET_ATTR_MTIME_NOW:
                mtime = set_m = now
            elif valid & fops.SET_ATTR_MTIME:
                mtime = set_m = stbuf.mtime_ns
            if of is not None:
                os.utime(of.osfd, ns=(atime, mtime))
            else:
                os.utime(node.at_name, ns=(atime, mtime), dir_fd=node.at_fd,
                         follow_symlinks=False)
            if self.opts.ctime:
                # posix_update_utime_in_mdata: only an existing xattr is updated
                cur = _mdata_decode(_xget_quiet(target, MDATA_KEY))
                if cur is not None:
                    c, m, a = cur
                    _xset(target, MDATA_KEY, _mdata_encode(
                        max(c, now), m if set_m is None else set_m,
                        a if set_a is None else set_a), 0)
        if valid & fops.SET_ATTR_CTIME and self.opts.ctime:
            cur = _mdata_decode(_xget_quiet(target, MDATA_KEY))
            if cur is not None and stbuf.ctime_ns > cur[0]:
                _xset(target, MDATA_KEY, _mdata_encode(stbuf.ctime_ns, cur[1], cur[2]), 0)
        if not valid:
            # GlusterFS's lchown(-1, -1): a setattr that changes nothing but ctime
            if of is not None:
                os.fchown(of.osfd, -1, -1)
            else:
                os.chown(node.at_name, -1, -1, dir_fd=node.at_fd, follow_symlinks=False)
        # features/utime flags ctime for owner and mode changes and for an
        # empty setattr; a size change also moves mtime, as truncate does
        if not valid or valid & (fops.SET_ATTR_UID | fops.SET_ATTR_GID | fops.SET_ATTR_MODE):
            self._mdata_touch(target, MDATA_C)

    def _open_to_truncate(self, node: "_Node") -> int:
        mode = node.st.st_mode
        if stat.S_ISDIR(mode):
            raise FopError(errno.EISDIR)
        if not stat.S_ISREG(mode):
            raise FopError(errno.EINVAL)
        return os.open(node.at_name, os.O_WRONLY | _O_NOFOLLOW, dir_fd=node.at_fd)

    def _truncate_node(self, node: "_Node", offset: int) -> None:
        tfd = self._open_to_truncate(node)
        try:
            os.ftruncate(tfd, offset)
        finally:
            os.close(tfd)

    # ======================================================================
    # helpers: data, and the hand-off to performance/io-threads

    async def _blocking(self, ofs, fn, *args):
        """fn(*args): in a worker of performance/io-threads when it set a
        lane for this fop, else inline (no checkpoint: as if called).

        `ofs` (an _OpenFile, a tuple of them, or None for a descriptor the
        fop owns) are pinned while the worker runs: a release meanwhile
        defers closing them (`_closed`), so a worker never reaches a
        descriptor number that was closed, or reused by another open.
        """
        lane = iothreads.lane.get()
        if lane is None:
            return fn(*args)
        pool = lane.pool
        if pool.runs_inline(fn):       # cheaper than the hop lately (or a probe)
            start = perf_counter_ns()
            try:
                return fn(*args)
            finally:
                pool.observe(fn, perf_counter_ns() - start, inline=True)
        osfds = () if ofs is None else (ofs.osfd,) if isinstance(ofs, _OpenFile) \
            else tuple(of.osfd for of in ofs)
        busy = self._busy
        for osfd in osfds:
            busy[osfd] = busy.get(osfd, 0) + 1
        try:
            return await lane.run(fn, *args)
        finally:
            for osfd in osfds:
                left = busy[osfd] - 1
                if left:
                    busy[osfd] = left
                    continue
                del busy[osfd]
                if osfd in self._close_later:
                    # released meanwhile: closed before the next fop starts
                    # (this one still uses it until it returns), or now if
                    # the translator has already stopped
                    self._close_later.discard(osfd)
                    if self._root >= 0:
                        self._retired.append(osfd)
                    else:
                        _quiet(os.close, osfd)

    def _aio_for(self, of: "_OpenFile") -> AioContext | None:
        """The AIO context for a data syscall on `of`: O_DIRECT descriptors,
        under io-threads (whose lane says this fop may suspend), while
        `linux-aio` is on and the kernel gave a context."""
        if of.odirect and self._aio is not None and self.opts.linux_aio and \
                iothreads.lane.get() is not None:
            return self._aio
        return None

    async def _write_aio(self, aio: AioContext, of: "_OpenFile", data, offset: int,
                         sync: bool) -> int:
        """writev's pwrite on an O_DIRECT descriptor through Linux AIO: the
        buffers copied once into one page-aligned buffer, one request."""
        views = [memoryview(b).cast("B") for b in
                 (data if isinstance(data, (list, tuple)) else (data,))]
        length = sum(len(v) for v in views)
        aligned = BUFFERS.take(length)
        pos = 0
        for v in views:
            aligned[pos:pos + len(v)] = v
            pos += len(v)
        done = 0
        while done < length:
            n = await aio.pwrite(of.osfd, aligned[done:], offset + done)
            if n == 0:
                raise FopError(errno.ENOSPC)
            done += n
        if sync:
            await self._blocking(of, os.fsync, of.osfd)
        return done

    async def _read_offloaded(self, of: "_OpenFile", size: int, offset: int):
        """readv's pread with io-threads.  O_DIRECT reads through Linux AIO
        (`linux-aio`) or `_blocking`, into a page-aligned buffer; a buffered
        read first tries preadv2(RWF_NOWAIT) inline - a page-cache hit costs
        less than the hop - and hands only what was not cached to
        `_blocking`."""
        if of.odirect:
            buf = BUFFERS.take(_direct_length(size))
            aio = self._aio_for(of)
            if aio is not None:
                n = await aio.pread(of.osfd, buf, offset)
            else:
                n = await self._blocking(of, os.preadv, of.osfd, [buf], offset)
            return buf[:min(n, size)]
        buf = bytearray(size)
        n = -1
        if self._nowait:
            try:
                n = os.preadv(of.osfd, [buf], offset, _RWF_NOWAIT)
            except BlockingIOError:
                n = -1
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                self._nowait = False    # this kernel or filesystem has no RWF_NOWAIT
                n = -1
        if n < 0:
            n = await self._blocking(of, os.preadv, of.osfd, [buf], offset)
        elif 0 < n < size:
            # partly cached: the rest from the disk (0 more at end of file)
            n += await self._blocking(of, os.preadv, of.osfd, [memoryview(buf)[n:]],
                                      offset + n)
        return memoryview(buf)[:n] if n < size else buf

    def _list(self, of: "_OpenFile", size: int, offset: int, plus: bool,
              xdata: dict | None) -> list[Dirent]:
        """Entries from `offset` (a d_off cookie, 0 = start) within the budget."""
        fd = of.osfd
        os.lseek(fd, offset, os.SEEK_SET)
        at_root = of.gfid == ROOT_GFID
        skip_dirs = bool(xdata and xdata.get(READDIR_SKIP_DIRS))
        entries: list[Dirent] = []
        filled = 0
        buf = self._dentbuf
        full = False
        while not full:
            n = _c_getdents64(fd, buf, _GETDENTS_BUF)
            if n < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            if n == 0:
                break
            raw = ctypes.string_at(buf, n)
            pos = 0
            while pos < n:
                ino, off, reclen, dtype = _DIRENT64.unpack_from(raw, pos)
                bname = raw[pos + _DIRENT64.size:pos + reclen].split(b"\0", 1)[0]
                pos += reclen
                if at_root and bname == b".glusterfs":
                    continue
                if dtype == _DT_UNKNOWN or (skip_dirs and dtype == _DT_DIR):
                    try:
                        dtype = _dtype(os.stat(bname, dir_fd=fd, follow_symlinks=False).st_mode)
                    except OSError:
                        pass
                    if skip_dirs and dtype == _DT_DIR:
                        continue
                cost = DIRENT_COST + len(bname) + 1
                if entries and filled + cost > size:
                    full = True
                    break
                filled += cost
                entries.append(Dirent(os.fsdecode(bname), ino, off, dtype))
        if plus:
            keep = []
            for ent in entries:
                if self._fill_dirent(of, ent, at_root, xdata):
                    keep.append(ent)
            entries = keep
        return entries

    def _fill_dirent(self, of: "_OpenFile", ent: Dirent, at_root: bool,
                     xdata: dict | None) -> bool:
        fd = of.osfd
        name = ent.name
        try:
            if name == "." or (name == ".." and at_root):
                st, gfid, target = os.fstat(fd), of.gfid, fd
                node = _Node.directory(fd, st, gfid)
            else:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                gfid = self._read_gfid(fd, name)
                node = _Node.entry(fd, name, st, gfid)
                target = node.target
            ia = self._iatt(node)
        except OSError:
            return False     # gone since getdents: skip it, as GlusterFS does
        ent.iatt = ia
        if ia.ino:
            ent.ino = ia.ino
        if xdata:
            ent.xdata = self._fill_xattrs(target, xdata, ia, node) or None
        return True

    # ======================================================================
    # helpers: xattrs

    def _fill_xattrs(self, target, req: dict | None, ia: Iatt, node) -> dict:
        """posix_xattr_fill: answer the keys a lookup (stat, readdirp, ...)
        asked for in xdata - xattr names or glob patterns, and a few virtual
        keys distribute and replicate depend on."""
        out: dict[str, Any] = {}
        if not req:
            return out
        names: list[str] | None = None
        list_all = False
        for key, value in req.items():
            if key in IGNORED_KEYS:
                continue
            if key == CONTENT_KEY:
                if ia.is_reg and node is not None and _as_int(value) >= ia.size:
                    cfd = os.open(node.at_name, os.O_RDONLY | _O_NOFOLLOW,
                                  dir_fd=node.at_fd)
                    try:
                        out[key] = os.pread(cfd, ia.size, 0)
                    finally:
                        os.close(cfd)
            elif key in (OPEN_FD_COUNT, ACTIVE_FD_COUNT):
                if ia.gfid != NULL_GFID:
                    out[key] = UInt(self._opencount.get(ia.gfid, 0))
            elif key == REQUEST_LINK_COUNT:
                out[key] = value
            elif key == GET_SIZE:
                if ia.is_reg:
                    out[key] = UInt(ia.size)
            elif key == LIST_XATTR:
                list_all = True
            else:
                if names is None:
                    names = _xlist(target)
                if key in names:
                    _put_xattr(out, target, key)
                elif any(c in key for c in "*?["):
                    for name in names:
                        if fnmatch.fnmatchcase(name, key):
                            _put_xattr(out, target, name)
        if list_all:
            if names is None:
                names = _xlist(target)
            for name in names:
                if name in out or name in LIST_HIDDEN or name.startswith(GFID2PATH_PREFIX) \
                        or _matches(name, MARKER_PATTERNS) or _matches(name, GEOREP_PATTERNS):
                    continue
                _put_xattr(out, target, name)
        return out

    def _do_setxattr(self, target, node, xattrs: dict, flags: int, xdata,
                     of: "_OpenFile | None" = None) -> Reply:
        if not isinstance(xattrs, dict):
            raise FopError(errno.EINVAL)
        if SET_CTIME_MDATA in xattrs:
            return self._set_legacy_mdata(target, node, of, xattrs[SET_CTIME_MDATA])
        pre = self._target_iatt(target, node, of)
        for key, value in xattrs.items():
            if key in (GFID_KEY, VOLUME_ID_KEY, IOSTATS_DUMP_KEY):
                continue     # GlusterFS drops these silently
            self._set_one_xattr(target, node, key, value, flags)
        if of is not None and xdata and DURABLE_OP in xdata:
            os.fsync(of.osfd)
        self._mdata_touch(target, MDATA_C)
        post = self._target_iatt(target, node, of)
        return Reply(xdata={IATT_KEY: post, PRESTAT_KEY: pre, POSTSTAT_KEY: post})

    def _set_legacy_mdata(self, target, node, of, times) -> Reply:
        """posix_set_mdata_xattr_legacy_files: the client's features/utime
        found no stored times on lookup (a file made before the ctime feature)
        and sends its own - store them, or keep the later of each time when
        another client stored some meanwhile.  `times` is the dict's MDATA
        value (rpc.MdataIatt: atime/mtime/ctime with *_nsec)."""
        try:
            incoming = tuple(getattr(times, f) * NS + getattr(times, f + "_nsec")
                             for f in ("ctime", "mtime", "atime"))
        except (AttributeError, TypeError):
            raise FopError(errno.EINVAL, f"{SET_CTIME_MDATA} needs an mdata value") from None
        cur = _mdata_decode(_xget_quiet(target, MDATA_KEY))
        if cur is not None:
            incoming = tuple(max(a, b) for a, b in zip(incoming, cur))
        _xset(target, MDATA_KEY, _mdata_encode(*incoming), 0)
        return Reply()

    def _set_one_xattr(self, target, node, key: str, value, flags: int) -> None:
        """posix_handle_pair: one key of a setxattr (or of a new entry's xdata)."""
        if not isinstance(key, str) or not key or "\0" in key:
            raise FopError(errno.EINVAL)
        if key in (PATHINFO_KEY, USER_PATHINFO_KEY):
            raise FopError(errno.EACCES)
        if key.startswith(GFID2PATH_PREFIX):
            raise FopError(errno.ENOTSUP)
        if key.startswith((INTERNAL_CTX_KEY, "force-replace")):
            return
        if key == MDATA_KEY:
            # from rebalance or self-heal: keep the later of each time
            incoming = _mdata_decode(_xattr_bytes(value))
            if incoming is None:
                raise FopError(errno.EINVAL, "malformed mdata")
            cur = _mdata_decode(_xget_quiet(target, MDATA_KEY))
            if cur is not None:
                incoming = tuple(max(a, b) for a, b in zip(incoming, cur))
            _xset(target, MDATA_KEY, _mdata_encode(*incoming), 0)
            return
        _xset(target, key, _xattr_bytes(value), flags)

    def _do_getxattr(self, target, node, name, xdata, loc=None,
                     of: "_OpenFile | None" = None) -> DictReply:
        who = fops.caller.get()
        internal = who.pid < 0
        gfid = node.gfid if node is not None else (of.gfid if of is not None else None)
        result: dict[str, Any] = {}
        if name:
            if _matches(name, GEOREP_PATTERNS) or name.startswith(GFID2PATH_PREFIX) or \
                    (name == MDATA_KEY and not internal) or name in (GFID_KEY, VOLUME_ID_KEY):
                raise FopError(errno.ENODATA)
            virtual = self._virtual_xattr(target, node, of, gfid, name, loc)
            if virtual is not None:
                result[name] = virtual
            else:
                value = _xget(target, name)
                if value is None:
                    raise FopError(errno.ENODATA)
                result[name] = value
        else:
            for key in _xlist(target):
                if key in (GFID_KEY, VOLUME_ID_KEY) or key.startswith(GFID2PATH_PREFIX) or \
                        _matches(key, GEOREP_PATTERNS) or (key == MDATA_KEY and not internal):
                    continue
                _put_xattr(result, target, key)
        reply_x = None
        if xdata:
            ia = self._target_iatt(target, node, of)
            reply_x = self._fill_xattrs(target, xdata, ia, node) or None
        return DictReply(result, xdata=reply_x)

    def _virtual_xattr(self, target, node, of, gfid, name: str, loc):
        if name == GFID_STRING_KEY:
            return str(gfid or NULL_GFID)
        if name == GFID_VIRT_KEY:
            return bytes(gfid or NULL_GFID)
        if name == OPEN_FD_COUNT:
            return UInt(1 if gfid is not None and self._opencount.get(gfid) else 0)
        if name in (PATHINFO_KEY, USER_PATHINFO_KEY):
            host = str(self.glusterd_uuid) if self.opts.node_uuid_pathinfo and \
                self.glusterd_uuid else (self.opts.hostname or socket.gethostname())
            return f"<POSIX({self.base}):{host}:{self._real_path(node, of, gfid, loc)}>"
        if name == NODE_UUID_KEY and self.glusterd_uuid is not None:
            return str(self.glusterd_uuid)
        if name.startswith(REAL_FILENAME_PREFIX):
            want = name[len(REAL_FILENAME_PREFIX):]
            dfd = node.at_fd if node is not None and node.is_dir else \
                (of.osfd if of is not None and of.is_dir else None)
            if dfd is None:
                raise FopError(errno.ENOTDIR)
            with os.scandir(f"/proc/self/fd/{dfd}") as it:
                for entry in it:
                    if entry.name.lower() == want.lower() and not (
                            entry.name == HIDDEN_DIR and gfid == ROOT_GFID):
                        return entry.name
            raise FopError(errno.ENODATA)
        if name == GFID_TO_PATH_KEY:
            # posix_getxattr's GFID_TO_PATH_KEY: inode_path, which GlusterFS
            # answers "<gfid:UUID>" for an inode it has no name of
            try:
                return self._gfid_to_paths(target, node, of, gfid).split(
                    self.opts.gfid2path_separator)[0]
            except (FopError, OSError):
                return f"<gfid:{gfid or NULL_GFID}>"
        if name == GFID2PATH_VIRT_KEY:
            if not self.opts.gfid2path:
                raise FopError(errno.ENODATA)
            return self._gfid_to_paths(target, node, of, gfid)
        return None

    def _real_path(self, node, of, gfid, loc) -> str:
        is_dir = (node is not None and node.is_dir) or (of is not None and of.is_dir)
        if loc is not None and loc.path and loc.path.startswith("/") and \
                ".." not in loc.path.split("/"):
            return self.base + loc.path.rstrip("/") if loc.path != "/" else self.base
        if gfid is not None and is_dir:
            path = self._dir_path(gfid)
            return self.base + (path if path != "/" else "")
        return f"{self.base}/{HIDDEN_DIR}/{_hrel(gfid or NULL_GFID)}"

    def _gfid_to_paths(self, target, node, of, gfid) -> str:
        """glusterfs.gfidtopath: every path of the inode, from its handles
        (directories) or its gfid2path xattrs (files)."""
        is_dir = (node is not None and node.is_dir) or (of is not None and of.is_dir)
        if is_dir:
            return self._dir_path(gfid)
        paths = []
        for key in _xlist(target):
            if not key.startswith(GFID2PATH_PREFIX):
                continue
            value = os.fsdecode(_xget(target, key) or b"")
            pgfid, _, bname = value.partition("/")
            try:
                parent = self._dir_path(GFID(pgfid))
            except (ValueError, OSError, FopError):
                continue
            paths.append((parent.rstrip("/") or "") + "/" + bname)
        if not paths:
            raise FopError(errno.ENODATA)
        return self.opts.gfid2path_separator.join(paths)

    def _do_removexattr(self, target, node, name, xdata, of: "_OpenFile | None" = None) -> Reply:
        if name and name.startswith(GFID2PATH_PREFIX):
            raise FopError(errno.ENODATA)
        if name in (GFID_KEY, VOLUME_ID_KEY):
            raise FopError(errno.EPERM, f"{name} belongs to the brick")
        pre = self._target_iatt(target, node, of)
        if not name and xdata:
            # bulk removal: every key of xdata, missing ones are fine
            if GFID_KEY in xdata or VOLUME_ID_KEY in xdata:
                raise FopError(errno.EPERM)
            for key in xdata:
                try:
                    _xremove(target, key)
                except OSError as e:
                    if e.errno != errno.ENODATA:
                        raise
        else:
            if not name:
                raise FopError(errno.EINVAL)
            _xremove(target, name)
        self._mdata_touch(target, MDATA_C)
        post = self._target_iatt(target, node, of)
        return Reply(xdata={IATT_KEY: post, PRESTAT_KEY: pre, POSTSTAT_KEY: post})

    def _target_iatt(self, target, node, of) -> Iatt:
        if of is not None:
            return self._fd_iatt(of)
        node.restat()
        return self._iatt(node)

    def _do_xattrop(self, target, optype: int, xattrs: dict) -> dict:
        """posix's _posix_handle_xattr_keyvalue_pair for each key."""
        try:
            optype = XattropType(optype)
        except ValueError:
            raise FopError(errno.EINVAL, f"unknown xattrop type {optype}") from None
        with_default = optype in (XattropType.ADD_ARRAY_WITH_DEFAULT,
                                  XattropType.ADD_ARRAY64_WITH_DEFAULT)
        result: dict[str, bytes] = {}
        for key, value in (xattrs or {}).items():
            value = _xattr_bytes(value)
            count = len(value) // 2 if with_default else len(value)
            stored = _xget(target, key)
            if stored is not None and len(stored) > count:
                raise FopError(errno.ERANGE, f"{key}: stored value is longer than the operand")
            old = stored + bytes(count - len(stored)) if stored is not None else bytes(count)
            if optype != XattropType.GET_AND_SET and not any(value):
                # nothing to add: answer the stored value (zeros if none), write nothing
                result[key] = old
                continue
            if optype == XattropType.GET_AND_SET:
                _xset(target, key, value, 0)
                if stored is not None:
                    result[key] = old
                continue
            new = _combine(optype, old, value, count)
            _xset(target, key, new, 0)
            result[key] = new
        return result


TRANSLATOR = Posix


# --------------------------------------------------------------------------
# Small pieces


class _Node:
    """A resolved inode: its stat, gfid, and where *at calls reach it
    (at_fd, at_name) - a directory is reached as "." of its own descriptor."""

    __slots__ = ("gfid", "st", "at_fd", "at_name", "is_dir")

    def __init__(self, gfid: GFID | None, st: os.stat_result, at_fd: int, at_name: str):
        self.gfid = gfid
        self.st = st
        self.at_fd = at_fd
        self.at_name = at_name
        self.is_dir = stat.S_ISDIR(st.st_mode)

    @classmethod
    def directory(cls, dfd: int, st, gfid: GFID | None) -> "_Node":
        return cls(gfid, st, dfd, ".")

    @classmethod
    def entry(cls, pfd: int, name: str, st, gfid: GFID | None) -> "_Node":
        return cls(gfid, st, pfd, name)

    @property
    def target(self):
        """What xattr calls take: the descriptor of a directory, or a
        /proc/self/fd path used without following its last component."""
        if self.at_name == ".":
            return self.at_fd
        return _entry_path(self.at_fd, self.at_name)

    def restat(self) -> None:
        self.st = os.stat(self.at_name, dir_fd=self.at_fd, follow_symlinks=False) \
            if self.at_name != "." else os.fstat(self.at_fd)
        self.is_dir = stat.S_ISDIR(self.st.st_mode)


class _OpenFile:
    """What storage/posix keeps in fd.ctx: the OS descriptor and its flags."""

    __slots__ = ("osfd", "flags", "is_dir", "gfid", "odirect")

    def __init__(self, osfd: int, flags: int, is_dir: bool, gfid: GFID | None):
        self.osfd = osfd
        self.flags = flags
        self.is_dir = is_dir
        self.gfid = gfid
        self.odirect = bool(flags & os.O_DIRECT)


def _hrel(gfid: bytes) -> str:
    """A handle's path relative to .glusterfs: xx/yy/<gfid>."""
    return f"{gfid[0]:02x}/{gfid[1]:02x}/{uuid.UUID(bytes=bytes(gfid))}"


def _handle_path(hdir: int, gfid: bytes) -> str:
    return f"/proc/self/fd/{hdir}/{_hrel(gfid)}"


def _entry_path(dirfd: int, name: str) -> str:
    # the kernel follows the magic /proc link to the directory we hold, then
    # looks `name` up in it; callers never follow the last component
    return f"/proc/self/fd/{dirfd}/{name}"


def _parse_dir_handle(link: str, gfid: GFID) -> tuple[GFID, str]:
    """`../../pp/qq/<pargfid>/<name>` -> (pargfid, name), checked as
    posix_is_malformed_link does."""
    if link == "../../..":
        if gfid == ROOT_GFID:
            return ROOT_GFID, "/"
        raise FopError(errno.ESTALE, f"malformed handle for {gfid}")
    if len(link) < 50 or not link.startswith("../../") or link[11] != "/" or link[48] != "/":
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}")
    try:
        pgfid = GFID(link[12:48])
    except ValueError:
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}") from None
    name = link[49:]
    if link[6:8] != f"{pgfid[0]:02x}" or link[9:11] != f"{pgfid[1]:02x}" or \
            not name or "/" in name or name in (".", ".."):
        raise FopError(errno.ESTALE, f"malformed handle {link!r} for {gfid}")
    return pgfid, name


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise FopError(errno.EINVAL, f"invalid name {name!r}")
    fops.check_name(name)
    if name in (".", ".."):
        raise FopError(errno.EINVAL, f"invalid name {name!r}")


def _path_parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    for p in parts:
        _check_name(p)
    return parts


def _gfid_req(xdata: dict | None) -> GFID | None:
    value = (xdata or {}).get(GFID_REQ)
    if value is None:
        return None
    try:
        gfid = GFID(bytes(value) if isinstance(value, (bytearray, memoryview)) else value)
    except (ValueError, TypeError):
        raise FopError(errno.EINVAL, f"gfid-req {value!r} is not a gfid") from None
    if gfid == NULL_GFID:
        raise FopError(errno.EINVAL, "gfid-req is null")
    return gfid


def _gfid2path_key(pgfid: GFID, name: str) -> str:
    return GFID2PATH_PREFIX + f"{_xxh64(os.fsencode(f'{pgfid}/{name}')):016x}"


def _fmt_gfid(raw: bytes) -> str:
    return str(GFID(raw)) if len(raw) == 16 else raw.hex()


def _xattr_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise FopError(errno.EINVAL, f"xattr values are bytes or str, not {type(value).__name__}")


def _as_int(value) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return -1


def _xget(target, key: str) -> bytes | None:
    """getxattr without following a link; None when the xattr is absent."""
    try:
        if isinstance(target, int):
            return os.getxattr(target, key)
        return os.getxattr(target, key, follow_symlinks=False)
    except OSError as e:
        if e.errno == errno.ENODATA:
            return None
        raise


def _xget_quiet(target, key: str) -> bytes | None:
    try:
        return _xget(target, key)
    except OSError:
        return None


def _xset(target, key: str, value: bytes, flags: int) -> None:
    try:
        if isinstance(target, int):
            os.setxattr(target, key, value, flags)
        else:
            os.setxattr(target, key, value, flags, follow_symlinks=False)
    finally:
        if key == MDATA_KEY:
            _MdataCache.stored()


def _xremove(target, key: str) -> None:
    try:
        if isinstance(target, int):
            os.removexattr(target, key)
        else:
            os.removexattr(target, key, follow_symlinks=False)
    finally:
        if key == MDATA_KEY:
            _MdataCache.stored()


class _MdataCache:
    """The mdata xattr of the files reads were answered for, so that a read
    costs one fstat and no fgetxattr (GlusterFS keeps the same in posix's
    inode context).  An entry is good while the inode's ctime is the one
    seen when it was read - a change by anyone, inside this process or not,
    moves ctime - and while nothing stored mdata through this process since:
    our own stores can land in the clock tick of the ctime seen (the kernel's
    coarse clock), which ctime cannot show, so every store through `_xset`
    or `_xremove` retires every entry once it is done (a store in an
    io-threads worker that overlaps a read cannot leave the read's entry
    behind).  A read-mostly workload (a VM's image) hits; a store costs a
    generation bump."""

    #: entries kept; beyond it the table starts over
    LIMIT = 4096
    #: bumped by every store of mdata in this process (all bricks)
    generation = 0

    __slots__ = ("_entries", "_generation")

    def __init__(self) -> None:
        self._entries: dict[tuple[int, int], tuple[int, bytes | None]] = {}
        self._generation = 0

    @classmethod
    def stored(cls) -> None:
        cls.generation += 1

    def get(self, osfd: int, st: os.stat_result) -> bytes | None:
        """The mdata of the file open as `osfd`, whose fstat is `st`."""
        entries = self._entries
        if self._generation != _MdataCache.generation:
            entries.clear()
            self._generation = _MdataCache.generation
        key = (st.st_dev, st.st_ino)
        hit = entries.get(key)
        if hit is not None and hit[0] == st.st_ctime_ns:
            return hit[1]
        raw = _xget_quiet(osfd, MDATA_KEY)
        if len(entries) >= self.LIMIT:
            entries.clear()
        entries[key] = (st.st_ctime_ns, raw)
        return raw


def _xlist(target) -> list[str]:
    if isinstance(target, int):
        return os.listxattr(target)
    return os.listxattr(target, follow_symlinks=False)


def _put_xattr(out: dict, target, key: str) -> None:
    value = _xget_quiet(target, key)
    if value is not None:
        out[key] = value


def _matches(name: str, patterns) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _combine(optype: XattropType, old: bytes, value: bytes, count: int) -> bytes:
    """The arithmetic of xattrop: big-endian 32- or 64-bit sums that wrap,
    with-default variants, and byte-wise OR/AND."""
    if optype == XattropType.OR_ARRAY:
        return bytes(a | b for a, b in zip(old, value))
    if optype == XattropType.AND_ARRAY:
        return bytes(a & b for a, b in zip(old, value))
    width = 8 if optype in (XattropType.ADD_ARRAY64,
                            XattropType.ADD_ARRAY64_WITH_DEFAULT) else 4
    mask = (1 << (8 * width)) - 1
    with_default = optype in (XattropType.ADD_ARRAY_WITH_DEFAULT,
                              XattropType.ADD_ARRAY64_WITH_DEFAULT)
    out = bytearray(old)
    for i in range(0, count - count % width, width):
        dest = int.from_bytes(old[i:i + width], "big")
        add = int.from_bytes(value[i:i + width], "big")
        if with_default and dest == 0:
            dest = int.from_bytes(value[count + i:count + i + width], "big")
        out[i:i + width] = ((dest + add) & mask).to_bytes(width, "big")
    return bytes(out)


def _mdata_decode(raw: bytes | None) -> tuple[int, int, int] | None:
    """(ctime, mtime, atime) in ns from posix_mdata_disk_t, or None."""
    if raw is None or len(raw) < _MDATA.size:
        return None
    _, _, cs, cn, ms, mn, as_, an = _MDATA.unpack_from(raw)
    return cs * NS + cn, ms * NS + mn, as_ * NS + an


def _mdata_encode(c: int, m: int, a: int) -> bytes:
    return _MDATA.pack(1, 0, *divmod(c, NS), *divmod(m, NS), *divmod(a, NS))


def _apply_mdata(ia: Iatt, raw: bytes | None) -> None:
    times = _mdata_decode(raw)
    if times is not None:
        _set_iatt_times(ia, *times)


def _set_iatt_times(ia: Iatt, c: int, m: int, a: int) -> None:
    ia.ctime, ia.ctime_nsec = divmod(c, NS)
    ia.mtime, ia.mtime_nsec = divmod(m, NS)
    ia.atime, ia.atime_nsec = divmod(a, NS)


def _exists(dirfd: int, name: str) -> bool:
    try:
        os.stat(name, dir_fd=dirfd, follow_symlinks=False)
        return True
    except FileNotFoundError:
        return False


def _is_linkto_mode(mode: int) -> bool:
    # DHT's linkto files: a regular file whose only permission bit is sticky
    return stat.S_ISREG(mode) and (mode & 0o7777) == stat.S_ISVTX


def _dtype(mode: int) -> int:
    return {stat.S_IFREG: 8, stat.S_IFDIR: 4, stat.S_IFLNK: 10, stat.S_IFCHR: 2,
            stat.S_IFBLK: 6, stat.S_IFIFO: 1, stat.S_IFSOCK: 12}.get(stat.S_IFMT(mode), 0)


def _page_round(n: int) -> int:
    page = mmap.PAGESIZE
    return max(page, (n + page - 1) // page * page)


def _fallocate(fd: int, mode: int, offset: int, length: int) -> None:
    if _c_fallocate(fd, mode, offset, length) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


# The blocking parts of the data fops: plain functions of descriptors and
# buffers, touching no translator state, so they may run in a worker of
# performance/io-threads (Posix._blocking) as well as inline.

def _direct_length(size: int) -> int:
    """What an O_DIRECT read of `size` bytes asks the disk for: the size
    itself when it is a multiple of 512 (the smallest logical block),
    else whole pages - the excess is cut from the reply."""
    return size if size % 512 == 0 else _page_round(size)


def _pwrite_all(osfd: int, odirect: bool, data, offset: int, sync: bool = False) -> int:
    """pwrite every buffer of `data` (one, or a list) from `offset`; under
    O_DIRECT through a page-aligned copy; then fsync when `sync`."""
    bufs = data if isinstance(data, (list, tuple)) else (data,)
    total = 0
    for buf in bufs:
        view = memoryview(buf).cast("B")
        if odirect:
            aligned = mmap.mmap(-1, _page_round(len(view)))
            aligned[:len(view)] = view
            view = memoryview(aligned)[:len(view)]
        done = 0
        while done < len(view):
            n = os.pwrite(osfd, view[done:] if done else view, offset + total + done)
            if n == 0:
                raise FopError(errno.ENOSPC)
            done += n
        total += done
    if sync:
        os.fsync(osfd)
    return total


def _write_zeros(osfd: int, offset: int, length: int) -> None:
    chunk = mmap.mmap(-1, 1 << 16)     # page-aligned zeros, fine for O_DIRECT
    done = 0
    while done < length:
        n = os.pwrite(osfd, memoryview(chunk)[:min(len(chunk), length - done)], offset + done)
        done += n


def _zerofill(osfd: int, offset: int, length: int, sync: bool) -> None:
    """FALLOC_FL_ZERO_RANGE, or written zeros where the filesystem has none."""
    try:
        _fallocate(osfd, _FALLOC_FL_ZERO_RANGE, offset, length)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        _write_zeros(osfd, offset, length)
    if sync:
        os.fsync(osfd)


def _checksums(osfd: int, offset: int, length: int, fips: bool,
               zeroes: bool) -> tuple[int, bytes, bool]:
    """rchecksum's read and sums: (adler32 seeded with 0 - GlusterFS's weak
    checksum, not zlib's 1 -, MD5 or SHA256, whether all bytes are zero)."""
    buf = os.pread(osfd, length, offset)
    weak = zlib.adler32(buf, 0)
    strong = hashlib.sha256(buf).digest() if fips else \
        hashlib.md5(buf, usedforsecurity=False).digest()
    return weak, strong, zeroes and not any(buf)


def _open_or_make_dir(parent: int, name: str, mode: int) -> int:
    try:
        os.mkdir(name, mode, dir_fd=parent)
        os.chmod(name, mode, dir_fd=parent)
    except FileExistsError:
        pass
    try:
        return os.open(name, os.O_RDONLY | os.O_DIRECTORY | _O_NOFOLLOW, dir_fd=parent)
    except OSError as e:
        raise FopError(e.errno, f"{name}: {os.strerror(e.errno)} (must be a directory)") from None


def _remove_tree(path: str) -> None:
    if os.path.isdir(path) and not os.path.islink(path):
        for dirpath, dirnames, filenames in os.walk(path, topdown=False):
            for name in filenames:
                _quiet(os.unlink, os.path.join(dirpath, name))
            for name in dirnames:
                p = os.path.join(dirpath, name)
                _quiet(os.unlink if os.path.islink(p) else os.rmdir, p)
        _quiet(os.rmdir, path)
    else:
        _quiet(os.unlink, path)


def _quiet(fn, *args, **kwargs):
    """Call fn, ignoring OSError (cleanup paths); False when it failed."""
    try:
        return fn(*args, **kwargs)
    except (OSError, FopError):
        return False


_P1, _P2, _P3 = 0x9E3779B185EBCA87, 0xC2B2AE3D27D4EB4F, 0x165667B19E3779F9
_P4, _P5, _M64 = 0x85EBCA77C2B2AE63, 0x27D4EB2F165667C5, (1 << 64) - 1


def _xxh64(data: bytes, seed: int = 0) -> int:
    """XXH64, the hash GlusterFS names gfid2path keys with (seed 0)."""
    def rotl(x, r):
        return ((x << r) | (x >> (64 - r))) & _M64

    def rnd(acc, lane):
        return (rotl((acc + lane * _P2) & _M64, 31) * _P1) & _M64

    n, i = len(data), 0
    if n >= 32:
        v = [(seed + _P1 + _P2) & _M64, (seed + _P2) & _M64, seed, (seed - _P1) & _M64]
        while i + 32 <= n:
            for k in range(4):
                v[k] = rnd(v[k], int.from_bytes(data[i:i + 8], "little"))
                i += 8
        h = (rotl(v[0], 1) + rotl(v[1], 7) + rotl(v[2], 12) + rotl(v[3], 18)) & _M64
        for k in range(4):
            h = ((h ^ rnd(0, v[k])) * _P1 + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while i + 8 <= n:
        h ^= rnd(0, int.from_bytes(data[i:i + 8], "little"))
        h = (rotl(h, 27) * _P1 + _P4) & _M64
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _M64
        h = (rotl(h, 23) * _P2 + _P3) & _M64
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _M64
        h = (rotl(h, 11) * _P1) & _M64
        i += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    return h ^ (h >> 32)
