"""gfapi: AsyncFile, an open file with its own offset - read, write,
pread, readinto, lseek, the f* calls, POSIX locks, dup and close (the fd
calls of libgfapi's glfs-fops.c) - and Python's open() modes.
"""

from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING

from .. import fops
from ..fops import Fd, FopError, Iatt, SET_ATTR_MODE
from .common import (GraphHandle, LiveGraph, oserror, owner_change, pinned, stat_result,
                     times_change)
from .xattrs import check_xattr_flags, xattr_bytes, xattr_names, xattr_value

if TYPE_CHECKING:
    from .aio import AsyncVolume


READ_ALL_CHUNK = 1 << 20
#: the most one copy_file_range call asks for (its wire size is a u32)
MAX_COPY = 1 << 30
# lseek whence values beyond SEEK_SET/CUR/END
SEEK_DATA, SEEK_HOLE = 3, 4


class AsyncFile(GraphHandle):
    """An open file (or a directory opened read-only) with its own offset."""

    def __init__(self, vol: AsyncVolume, fd: Fd, path: str, flags: int, iatt: Iatt | None,
                 refs: list[int] | None = None):
        self.vol = vol
        self.fd = fd
        self.path = path
        self.flags = flags
        self.offset = 0
        self.closed = False
        self._refs = refs if refs is not None else [1]  # shared with dup()s
        #: the graph `fd` is open on (the one the opening call ran on)
        self.live: LiveGraph = pinned.get() or vol._live

    async def __aenter__(self) -> "AsyncFile":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _readable(self) -> None:
        self._check()
        if self.fd.is_dir:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), self.path)
        if self.flags & os.O_ACCMODE == os.O_WRONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.path)

    def _writable(self) -> None:
        self._check()
        if self.fd.is_dir or self.flags & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.path)

    async def _call(self, fop: str, *args):
        if self.moving is not None:     # a graph switch is moving it
            await self.moving.wait()
        with self.vol._as_caller(self.live):
            try:
                return await getattr(self.live.graph.top, fop)(self.fd, *args)
            except FopError as e:
                raise oserror(e, self.path) from None

    async def pread(self, size: int, offset: int) -> bytes:
        self._readable()
        if size < 0 or offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        if size == 0:  # POSIX reads nothing; GlusterFS's posix would say EINVAL
            return b""
        reply = await self._call("readv", size, offset, 0, None)
        return reply.data if isinstance(reply.data, bytes) else bytes(reply.data)

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes from the offset; everything to EOF if size < 0."""
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = await self.read(READ_ALL_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        data = await self.pread(size, self.offset)
        self.offset += len(data)
        return data

    async def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        data = await self.pread(len(view), self.offset)
        view[: len(data)] = data
        self.offset += len(data)
        return len(data)

    async def pwrite(self, data, offset: int) -> int:
        self._writable()
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        reply = await self._call("writev", data, offset, 0, None)
        return reply.count

    async def write(self, data, flags: int = 0) -> int:
        self._writable()
        reply = await self._call("writev", data, self.offset, flags, None)
        if self.flags & os.O_APPEND and reply.postbuf is not None:
            self.offset = reply.postbuf.size
        else:
            self.offset += reply.count
        return reply.count

    async def lseek(self, pos: int, how: int = os.SEEK_SET) -> int:
        self._check()
        if how == os.SEEK_SET:
            new = pos
        elif how == os.SEEK_CUR:
            new = self.offset + pos
        elif how == os.SEEK_END:
            new = (await self.fstat()).st_size + pos
        elif how in (SEEK_DATA, SEEK_HOLE):
            what = fops.SeekWhat.DATA if how == SEEK_DATA else fops.SeekWhat.HOLE
            new = (await self._call("seek", pos, what, None)).offset
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        if new < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        self.offset = new
        return new

    def tell(self) -> int:
        return self.offset

    async def fstat(self) -> os.stat_result:
        self._check()
        return stat_result((await self._call("fstat", None)).iatt)

    async def fgetsize(self) -> int:
        return (await self.fstat()).st_size

    async def fchmod(self, mode: int) -> None:
        self._check()
        await self._call("fsetattr", Iatt(mode=mode & 0o7777), SET_ATTR_MODE, None)

    async def fchown(self, uid: int, gid: int) -> None:
        self._check()
        await self._call("fsetattr", *owner_change(uid, gid), None)

    async def futime(self, times=None, *, ns=None) -> None:
        self._check()
        await self._call("fsetattr", *times_change(times, ns), None)

    async def ftruncate(self, length: int) -> None:
        self._check()
        if self.fd.is_dir or self.flags & os.O_ACCMODE == os.O_RDONLY or length < 0:
            # ftruncate(2) on a descriptor not open for writing is EINVAL
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        await self._call("ftruncate", length, None)

    async def fsync(self) -> None:
        self._check()
        await self._call("fsyncdir" if self.fd.is_dir else "fsync", 0, None)

    async def fdatasync(self) -> None:
        self._check()
        await self._call("fsyncdir" if self.fd.is_dir else "fsync", 1, None)

    async def fallocate(self, mode: int, offset: int, length: int) -> None:
        self._writable()
        await self._call("fallocate", mode, offset, length, None)

    async def discard(self, offset: int, length: int) -> None:
        self._writable()
        await self._call("discard", offset, length, None)

    async def zerofill(self, offset: int, length: int) -> None:
        self._writable()
        await self._call("zerofill", offset, length, None)

    async def copy_file_range(self, dst: "AsyncFile", length: int, off_in: int | None = None,
                              off_out: int | None = None, flags: int = 0) -> int:
        """glfs_copy_file_range: up to `length` bytes of this file into
        `dst`, copied by the bricks where the volume's translators can (on
        one brick, each replica on its own, stripe piece by piece; reflinks
        on XFS).  An offset left None is that file's own and advances by
        the count, as copy_file_range(2)'s NULL offsets.  Returns the
        count: 0 at the end of the source, and at most MAX_COPY per call
        (the wire's size field is 32 bits), so callers loop as with the
        syscall."""
        self._readable()
        dst._writable()
        if dst.live is not self.live:
            raise OSError(errno.EXDEV, os.strerror(errno.EXDEV), dst.path)
        start_in = self.offset if off_in is None else off_in
        start_out = dst.offset if off_out is None else off_out
        if length < 0 or start_in < 0 or start_out < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        if length == 0:
            return 0
        reply = await self._call("copy_file_range", start_in, dst.fd, start_out,
                                 min(length, MAX_COPY), flags, None)
        if off_in is None:
            self.offset += reply.count
        if off_out is None:
            dst.offset += reply.count
        return reply.count

    async def fgetxattr(self, key: str, size: int = 0) -> bytes:
        self._check()
        return xattr_value((await self._call("fgetxattr", key, None)).dict, key, size,
                            self.path)

    async def flistxattr(self, size: int = 0) -> list[str]:
        self._check()
        return xattr_names((await self._call("fgetxattr", None, None)).dict, size, self.path)

    async def fsetxattr(self, key: str, value: bytes, flags: int = 0) -> None:
        self._check()
        check_xattr_flags(flags)
        await self._call("fsetxattr", {key: xattr_bytes(value)}, flags, None)

    async def fremovexattr(self, key: str) -> None:
        self._check()
        await self._call("fremovexattr", key, None)

    async def rchecksum(self, offset: int, length: int) -> tuple[int, bytes]:
        """The brick's checksums of `length` bytes at `offset` - (adler32,
        MD5) as GlusterFS's posix computes them - without the data crossing
        the wire (the rchecksum fop; geo-replication compares blocks with
        it).  Ours: libgfapi has no call for it."""
        self._check()
        if offset < 0 or length < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        reply = await self._call("rchecksum", offset, length, None)
        return reply.weak, bytes(reply.strong)

    async def lock(self, cmd: int, flock: fops.Flock) -> fops.Flock:
        """A POSIX record lock (fcntl F_GETLK/F_SETLK/F_SETLKW as LockCmd)."""
        self._check()
        flock.owner = flock.owner or self.fd.lk_owner or id(self).to_bytes(8, "little")
        return (await self._call("lk", cmd, flock, None)).flock

    def dup(self) -> "AsyncFile":
        """A second handle on the same open file, with its own offset."""
        self._check()
        self._refs[0] += 1
        twin = AsyncFile(self.vol, self.fd, self.path, self.flags, None, self._refs)
        twin.offset = self.offset
        return self.vol._track(twin)

    async def close(self) -> None:
        """Flush (as close(2) does on GlusterFS) and release the last handle."""
        if self.closed:
            return
        if self.moving is not None:     # a graph switch is moving it
            await self.moving.wait()
        self.closed = True
        self.vol._open.discard(self)
        self._refs[0] -= 1
        top = self.live.graph.top
        with self.vol._as_caller(self.live):
            try:
                if not self.fd.is_dir:
                    await top.flush(self.fd, None)
            except FopError as e:
                raise oserror(e, self.path) from None
            finally:
                if self._refs[0] == 0:
                    try:
                        await (top.releasedir if self.fd.is_dir else top.release)(self.fd, None)
                    except FopError:
                        pass

    @property
    def fileno(self) -> Fd:
        return self.fd

    @property
    def name(self) -> str:
        return self.path

    @property
    def mode(self) -> int:
        return self.flags


_MODE_FLAGS = {
    "r": os.O_RDONLY, "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL, "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


def mode_to_flags(mode: str) -> int:
    """Python's open() mode string -> os.O_* flags; ValueError if invalid."""
    if not isinstance(mode, str):
        raise TypeError("mode must be a string")
    plain = mode.replace("b", "").replace("t", "")
    if mode.count("b") > 1 or ("b" in mode and "t" in mode):
        raise ValueError(f"invalid mode: {mode!r}")
    key = plain[0] + ("+" if "+" in plain else "") if plain else ""
    if key not in _MODE_FLAGS or len(plain) != len(key) or plain.count("+") > 1:
        raise ValueError(f"invalid mode: {mode!r}")
    return _MODE_FLAGS[key]
