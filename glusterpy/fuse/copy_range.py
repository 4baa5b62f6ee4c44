"""copy_file_range(2) on a FUSE mount, sent down the graph as the
copy_file_range fop.

pyfuse3 (3.5) has no copy_file_range handler, so libfuse answers the
kernel's FUSE_COPY_FILE_RANGE with ENOSYS, the kernel stops asking for the
rest of the mount's life, and every copy (`cp` of coreutils >= 9 asks for
copy_file_range first) falls back to reading and writing each byte
through the mount.  Here the slot of struct fuse_lowlevel_ops (libfuse >=
3.4, fuse_lowlevel.h) is filled as posix_locks.py fills getlk/setlk
(ops_table.py: found in the session's copy of pyfuse3's table, written
between pyfuse3.init and the session loop); the callback copies the request
out of libfuse's frame and starts a task in the mount's nursery; the task
calls the bridge's
copy_file_range (the graph's fop with the two handles' Fds: distribute,
replicate, stripe and the bricks copy server side, so the data never
crosses the mount) and answers with fuse_reply_write or fuse_reply_err.

Errors: the graph's errno goes to the caller as it is, with one rule for
the kernel's sake: fs/fuse/file.c turns ENOSYS into "never ask again"
and falls back to its own read+write copy on EOPNOTSUPP and EXDEV, per
call.  So a copy the graph declines (EOPNOTSUPP, EXDEV: e.g. a brick that
cannot reach the other) falls back for that call only, and ENOSYS reaches
the kernel only when a translator of the graph lacks the fop.  The kernel
itself answers EXDEV between two mounts and EBADF for an fd opened
without the right mode; a handle the bridge does not know is EBADF.

lseek(2)'s SEEK_DATA/SEEK_HOLE likewise (the next slot, lseek, sent down
as the seek fop): without it the kernel answers them itself, as if a file
had no holes, and `cp` of a sparse image reads every zero through the
mount to find its holes again (coreutils copies a file whose st_blocks
say it is sparse by reading its data extents, and only a dense one with
copy_file_range).  With it, `cp` reads the data extents alone and the
holes stay holes.  ENXIO past the last data is the graph's answer, as the
syscall's.

One request copies at most COPY_MAX bytes: the reply's count is 32 bits
wide (struct fuse_write_out), and callers loop on short copies.

If the table is not what this was written against (ops_table's checks,
and the slots already set), nothing is written and the kernel copies by
read+write, as before, with a warning saying why.
"""

from __future__ import annotations

import ctypes
import errno
import os

from ..fops import SeekWhat
from .ops_table import FileInfo, SlotHandlers, guarded, libfuse, reply_when_done

#: struct fuse_lowlevel_ops of libfuse 3: copy_file_range is its 43rd slot
#: (after readdirplus, before lseek)
COPY_FILE_RANGE_SLOT = 42
#: the largest count a reply carries (a u32, kept page-aligned as the
#: kernel's own clamp of the request is)
COPY_MAX = 0xFFFFF000
LSEEK_SLOT = 43
#: the host's whence -> the seek fop's
SEEK_WHAT = {os.SEEK_DATA: SeekWhat.DATA, os.SEEK_HOLE: SeekWhat.HOLE}

COPY_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                           ctypes.POINTER(FileInfo), ctypes.c_uint64, ctypes.c_int64,
                           ctypes.POINTER(FileInfo), ctypes.c_size_t, ctypes.c_int)
LSEEK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_uint64, ctypes.c_int64,
                            ctypes.c_int, ctypes.POINTER(FileInfo))


# without a mount: EOPNOTSUPP makes the kernel copy this one by read+write
# and ask again next time
@COPY_FN
@guarded("copy_file_range", lambda: CopyRange, errno.EOPNOTSUPP)
def _on_copy_file_range(mount, req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, length,
                        flags) -> None:
    ctx = libfuse().fuse_req_ctx(req).contents
    who = _Ctx(ctx.uid, ctx.gid, ctx.pid)
    mount.nursery.start_soon(mount._copy_task, req, who, int(fi_in.contents.fh),
                             int(off_in), int(fi_out.contents.fh), int(off_out),
                             min(int(length), COPY_MAX), int(flags))


# the kernel sends SEEK_DATA/SEEK_HOLE only; EINVAL is lseek's answer otherwise
@LSEEK_FN
@guarded("lseek", lambda: CopyRange, errno.EINVAL)
def _on_lseek(mount, req, ino, off, whence, fi) -> None:
    what = SEEK_WHAT.get(int(whence))
    if what is None:
        libfuse().fuse_reply_err(req, errno.EINVAL)
        return
    mount.nursery.start_soon(mount._lseek_task, req, int(fi.contents.fh), int(off), what)


class _Ctx:
    """The request's caller, shaped as pyfuse3's RequestContext for the bridge."""

    __slots__ = ("uid", "gid", "pid", "umask")

    def __init__(self, uid: int, gid: int, pid: int):
        self.uid, self.gid, self.pid, self.umask = uid, gid, pid, 0


class CopyRange(SlotHandlers):
    """copy_file_range and lseek for the mount (FuseBridge) of this process."""

    WITHOUT = "copy_file_range on this mount copies through it"
    SLOTS = (COPY_FILE_RANGE_SLOT, LSEEK_SLOT)

    def callbacks(self):
        return {COPY_FILE_RANGE_SLOT: _on_copy_file_range, LSEEK_SLOT: _on_lseek}

    async def _copy_task(self, req, who: _Ctx, fh_in, off_in, fh_out, off_out, length,
                         flags) -> None:
        await reply_when_done(
            "copy_file_range", req,
            self.bridge.copy_file_range(who, fh_in, off_in, fh_out, off_out, length, flags),
            lambda count: libfuse().fuse_reply_write(req, count))

    async def _lseek_task(self, req, fh: int, offset: int, what: SeekWhat) -> None:
        await reply_when_done("lseek", req, self.bridge.lseek(fh, offset, what),
                              lambda found: libfuse().fuse_reply_lseek(req, found))
