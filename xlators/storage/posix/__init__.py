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

The package is split by concern as GlusterFS's posix-*.c are, and `Posix`
below composes one mixin from each module: common (options, init and fini,
the janitor: posix-common.c), entry_ops (posix-entry-ops.c), inode_ops,
fd_ops (open files, their data and the io-threads/AIO hand-off) and dir_ops
and xattr_ops (posix-inode-fd-ops.c), mdata (the times: posix-metadata.c),
resolve (locs, gfids and fds to descriptors, the directory cache) and
handles (.glusterfs and gfid2path: posix-handle.c, posix-gfid-path.c);
helpers holds what they share.
"""

from __future__ import annotations

import ctypes
import os
import weakref
from collections import OrderedDict

import trio

from glusterpy import iothreads
from glusterpy.fops import GFID
from glusterpy.linux_aio import AioContext
from glusterpy.options import OptionError
from glusterpy.xlator import Translator

from .common import OPTIONS, PosixCommon
from .dir_ops import DIRENT_COST, GETDENTS_BUF, PosixDirOps
from .entry_ops import PosixEntryOps
from .fd_ops import GF_SEEK_DATA, GF_SEEK_HOLE, NOWAIT_FIRST, PosixFdOps
from .handles import PosixHandles
from .helpers import HIDDEN_DIR, LANDFILL_DIR, UNLINK_DIR, DeferredEviction, MdataCache
from .inode_ops import PosixInodeOps
from .mdata import MDATA_A, MDATA_C, MDATA_M, PosixMdata
from .resolve import PosixResolve
from .xattr_ops import PosixXattrOps

__all__ = ["Posix", "TRANSLATOR", "OPTIONS", "DIRENT_COST", "GF_SEEK_DATA", "GF_SEEK_HOLE",
           "HIDDEN_DIR", "LANDFILL_DIR", "UNLINK_DIR", "MDATA_A", "MDATA_C", "MDATA_M"]


class Posix(PosixCommon, PosixEntryOps, PosixInodeOps, PosixFdOps, PosixDirOps, PosixXattrOps,
            PosixMdata, PosixResolve, PosixHandles, Translator):
    """storage/posix: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (0, 0)
    # every fop body is synchronous (inline_fop), or awaits a worker only
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
        #: (fd, its fstat) that _cached_dir took during the current _parent (_seen_dir)
        self._dir_seen: tuple | None = None
        self._retired: list[int] = []                        # closed before the next fop
        self._opencount: dict[GFID, int] = {}                # fds open per gfid
        self._unlinked: set[GFID] = set()                    # handles in .glusterfs/unlink
        self._hash_dirs: set[bytes] = set()                  # .glusterfs/xx/yy known made
        self._open_files: dict[int, weakref.finalize] = {}  # os fd -> closer
        self._busy: dict[int, int] = {}      # os fd -> syscalls in io-threads' workers
        self._close_later: set[int] = set()  # released while busy: closed when idle
        self._nowait = NOWAIT_FIRST          # buffered reads try RWF_NOWAIT inline
        self._mdata = MdataCache()
        self._dentbuf = ctypes.create_string_buffer(GETDENTS_BUF)
        self._privileged = os.geteuid() == 0
        self._janitor_wake: trio.Event | None = None
        self._janitor_scope: trio.CancelScope | None = None
        self._janitor_done: trio.Event | None = None
        self._aio: AioContext | None = None
        #: a one-worker pool for extending O_DIRECT writes (fd_ops _blocking)
        self._serial_pool: iothreads.Pool | None = None
        #: O_DIRECT AIO writes whose payload was copied into an aligned
        #: buffer (it did not lie page-aligned): a count for tests and benches
        self.direct_copies = 0
        #: closes the descriptors unlink keeps on inodes it frees
        self._evictions = DeferredEviction(self.name)
        #: entries of cold directories read ahead in parallel (dir_ops
        #: _prefetch_cold): a count for tests and benches
        self.prefetched = 0

    put = Translator.put_with_own_fops  # posix_put, through the syncops of this translator


TRANSLATOR = Posix
