"""copy_file_range(2) on a FUSE mount, sent down the graph as the
copy_file_range fop.

pyfuse3 (3.5) has no copy_file_range handler, so libfuse answers the
kernel's FUSE_COPY_FILE_RANGE with ENOSYS, the kernel stops asking for the
rest of the mount's life, and every copy (`cp` of coreutils >= 9 asks for
copy_file_range first) falls back to reading and writing each byte
through the mount.  Here the slot of struct fuse_lowlevel_ops (libfuse >=
3.4, fuse_lowlevel.h) is filled the way posix_locks.py fills getlk/setlk:
`install()` between pyfuse3.init and pyfuse3.main writes a ctypes callback
into the session's copy of pyfuse3's table (found once per mount by
posix_locks' `find_session_ops`); the callback copies the request out of libfuse's frame and
starts a task in the mount's nursery; the task calls the bridge's
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

If the table is not what this was written against (posix_locks' checks,
and the slot already set), nothing is written and the kernel copies by
read+write, as before, with a warning saying why.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os

import pyfuse3
import trio

from ..fops import SeekWhat
from .posix_locks import FileInfo, _libfuse, find_session_ops

log = logging.getLogger(__name__)

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

_active: "CopyRange | None" = None
_reply_set = False


def _lib():
    global _reply_set
    lib = _libfuse()
    if not _reply_set:
        lib.fuse_reply_write.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        lib.fuse_reply_lseek.argtypes = [ctypes.c_void_p, ctypes.c_int64]
        _reply_set = True
    return lib


@COPY_FN
def _on_copy_file_range(req, ino_in, off_in, fi_in, ino_out, off_out, fi_out, length,
                        flags) -> None:
    # never lets an exception into libfuse's C frames
    try:
        mount = _active
        if mount is None or mount.nursery is None:
            _lib().fuse_reply_err(req, errno.EOPNOTSUPP)  # falls back, asks again later
            return
        ctx = _lib().fuse_req_ctx(req).contents
        who = _Ctx(ctx.uid, ctx.gid, ctx.pid)
        mount.nursery.start_soon(mount._copy_task, req, who, int(fi_in.contents.fh),
                                 int(off_in), int(fi_out.contents.fh), int(off_out),
                                 min(int(length), COPY_MAX), int(flags))
    except BaseException:
        log.exception("copy_file_range")
        _lib().fuse_reply_err(req, errno.EIO)


@LSEEK_FN
def _on_lseek(req, ino, off, whence, fi) -> None:
    try:
        mount = _active
        what = SEEK_WHAT.get(int(whence))
        if mount is None or mount.nursery is None or what is None:
            # the kernel sends SEEK_DATA/SEEK_HOLE only; EINVAL is lseek's
            _lib().fuse_reply_err(req, errno.EINVAL)
            return
        mount.nursery.start_soon(mount._lseek_task, req, int(fi.contents.fh), int(off), what)
    except BaseException:
        log.exception("lseek")
        _lib().fuse_reply_err(req, errno.EIO)


class _Ctx:
    """The request's caller, shaped as pyfuse3's RequestContext for the bridge."""

    __slots__ = ("uid", "gid", "pid", "umask")

    def __init__(self, uid: int, gid: int, pid: int):
        self.uid, self.gid, self.pid, self.umask = uid, gid, pid, 0


class CopyRange:
    """copy_file_range for the mount (FuseBridge) of this process:
    `install()` after pyfuse3.init, `nursery` set before pyfuse3.main,
    `uninstall()` after pyfuse3.close."""

    def __init__(self, bridge):
        self.bridge = bridge
        self.nursery: trio.Nursery | None = None
        self.installed = False

    def install(self, found=None) -> bool:
        """Between pyfuse3.init and pyfuse3.main: True if the kernel's
        copy_file_range requests will come here.  `found`:
        find_session_ops()'s answer, shared with posix_locks."""
        global _active
        ops, why = find_session_ops() if found is None else found
        if ops is None:
            log.warning("copy_file_range on this mount copies through it: %s", why)
            return False
        if ops[COPY_FILE_RANGE_SLOT] or ops[LSEEK_SLOT]:
            log.warning("copy_file_range on this mount copies through it: pyfuse3's "
                        "operations table has a copy_file_range or lseek this was not "
                        "written for")
            return False
        _lib()
        ops[COPY_FILE_RANGE_SLOT] = ctypes.cast(_on_copy_file_range, ctypes.c_void_p).value
        ops[LSEEK_SLOT] = ctypes.cast(_on_lseek, ctypes.c_void_p).value
        _active = self
        self.installed = True
        return True

    def uninstall(self) -> None:
        global _active
        if _active is self:
            _active = None
        self.nursery = None

    async def _copy_task(self, req, who: _Ctx, fh_in, off_in, fh_out, off_out, length,
                         flags) -> None:
        try:
            count = await self.bridge.copy_file_range(who, fh_in, off_in, fh_out, off_out,
                                                      length, flags)
        except pyfuse3.FUSEError as e:
            _lib().fuse_reply_err(req, e.errno)
            return
        except Exception:
            log.exception("copy_file_range")
            _lib().fuse_reply_err(req, errno.EIO)
            return
        _lib().fuse_reply_write(req, count)

    async def _lseek_task(self, req, fh: int, offset: int, what: SeekWhat) -> None:
        try:
            found = await self.bridge.lseek(fh, offset, what)
        except pyfuse3.FUSEError as e:
            _lib().fuse_reply_err(req, e.errno)
            return
        except Exception:
            log.exception("lseek")
            _lib().fuse_reply_err(req, errno.EIO)
            return
        _lib().fuse_reply_lseek(req, found)
