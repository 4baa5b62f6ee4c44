"""storage/bd: user-space LV IO - open, read, write, sync and close
through the LV's map (its device node with device-mapper, its physical
volumes' extents without), inline or in worker threads (bd-aio).
GlusterFS: bd.c's bd_open, bd_readv, bd_writev, bd_flush, bd_fsync,
bd_release, and bd-aio.c."""

from __future__ import annotations

import errno
import hashlib
import os
import time
import zlib

import trio

from glusterpy.bd import LvmError
from glusterpy.fops import (ChecksumReply, CopyRangeReply, FopError, PrePostReply, ReadReply,
                            SeekReply, WriteReply)
from glusterpy.xlator import Translator

from .common import COPY_CHUNK, Image, fop_errors

_GF_SEEK_DATA, _GF_SEEK_HOLE = 0, 1


class _Open:
    __slots__ = ("image", "flags")

    def __init__(self, image: Image, flags: int):
        self.image = image
        self.flags = flags



class BdIO:
    """Reads and writes of the LVs' bytes."""

    # -- open, read, write ------------------------------------------------------

    @fop_errors
    async def open(self, loc, flags, fd, xdata=None):
        """Opens the metadata file too (fd-based metadata fops use it), as
        bd_open did; O_TRUNC truncates the LV (the shrink rule applies)."""
        reply = await self.first_child.open(loc, flags & ~os.O_TRUNC, fd, xdata)
        gfid = fd.gfid or loc.gfid
        img = self._images.get(gfid) if gfid is not None else None
        if img is None:
            return reply     # not a file of ours (a directory opened as a file)
        await self._open_image(img, fd, flags, xdata)
        return reply

    @fop_errors
    async def readv(self, fd, size, offset, flags, xdata=None):
        """pread through the LV's map; short at the LV's end, empty past it."""
        img = self._image_of_fd(fd)
        if size <= 0 or offset < 0:
            raise FopError(errno.EINVAL)
        self._check_mappable(img)     # an anonymous fd was never opened here
        m = img.map
        data = b"" if m is None or offset >= m.size else \
            await self._io(img, m.pread, size, offset)
        return ReadReply(data, iatt=await self._iatt(img))

    @fop_errors
    async def writev(self, fd, data, offset, flags, xdata=None):
        """pwrite through the LV's map, growing the LV first when the write
        reaches past its end; O_APPEND writes at the LV's end."""
        opened = fd.ctx.get(self)
        img = self._image_of_fd(fd)
        if offset < 0:
            raise FopError(errno.EINVAL)
        self._check_mappable(img)
        open_flags = opened.flags if opened is not None else fd.flags
        length = _length(data)
        if open_flags & os.O_APPEND:
            offset = img.size
        pre = await self._iatt(img)
        if length == 0:
            return WriteReply(pre, pre, count=0)
        if offset + length > img.size:
            await self._grow(img, offset + length, for_write=True)
        m = img.map
        count = await self._io(img, m.pwrite, data, offset)
        await self._note_written(img, offset + count)
        img.mtime_ns = time.time_ns()
        if (flags | open_flags) & (os.O_SYNC | os.O_DSYNC):
            await self._io(img, m.sync)
        return WriteReply(pre, await self._iatt(img), count=count)

    @fop_errors
    async def flush(self, fd, xdata=None):
        """Stores the written mark and mtime (bd_flush set a|mtime)."""
        opened = fd.ctx.get(self)
        if opened is not None:
            await self._store_meta(opened.image)
        return await self.first_child.flush(fd, xdata)

    @fop_errors
    async def fsync(self, fd, datasync, xdata=None):
        img = self._image_of_fd(fd)
        pre = await self._iatt(img)
        if img.map is not None:
            await self._io(img, img.map.sync, bool(datasync))
        await self._store_meta(img)
        await self.first_child.fsync(fd, datasync, xdata)
        return PrePostReply(pre, await self._iatt(img))

    async def release(self, fd, xdata=None):
        """The last close of an unlinked file removes its LV."""
        opened = fd.ctx.pop(self, None)
        reply = await self.first_child.release(fd, xdata)
        if opened is None:
            return reply
        img = opened.image
        img.openfds -= 1
        if img.openfds:
            return reply
        try:
            if img.unlinked:
                self._images.pop(img.gfid, None)
                if img.unlinked_lv:
                    async with img.lock, self._vg_lock:
                        await self._remove_lv(img, img.unlinked_lv)
                        await self._refresh()
            else:
                await self._store_meta(img)
        except (LvmError, OSError, FopError) as e:
            self.log.warning("release of %s: %s", img.name, e)
        return reply

    @fop_errors
    async def seek(self, fd, offset, what, xdata=None):
        """An LV is all data: DATA finds `offset`, HOLE the LV's end."""
        img = self._image_of_fd(fd)
        kind = {_GF_SEEK_DATA: os.SEEK_DATA, _GF_SEEK_HOLE: os.SEEK_HOLE,
                os.SEEK_DATA: os.SEEK_DATA, os.SEEK_HOLE: os.SEEK_HOLE}.get(what)
        if kind is None:
            raise FopError(errno.ENOTSUP, f"seek: unknown what {what}")
        if offset < 0 or offset >= img.size:
            raise FopError(errno.ENXIO)
        return SeekReply(offset if kind == os.SEEK_DATA else img.size)

    @fop_errors
    async def rchecksum(self, fd, offset, length, xdata=None):
        """adler32 seeded with 0 and MD5, as bd_rchecksum and posix."""
        img = self._image_of_fd(fd)
        if length < 0:
            raise FopError(errno.EINVAL)
        m = img.map
        buf = bytes(await self._io(img, m.pread, length, offset)) if m is not None else b""
        return ChecksumReply(zlib.adler32(buf, 0),
                             hashlib.md5(buf, usedforsecurity=False).digest())

    @fop_errors
    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        """A copy between two LVs' maps (one chunk per call; the count says
        how much)."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        src, dst = self._image_of_fd(fd_in), self._image_of_fd(fd_out)
        pre = await self._iatt(dst)
        n = max(0, min(length, src.size - off_in, COPY_CHUNK * 64))
        count = 0
        if n and src.map is not None:
            data = await self._io(src, src.map.pread, n, off_in)
            if off_out + len(data) > dst.size:
                await self._grow(dst, off_out + len(data), for_write=True)
            count = await self._io(dst, dst.map.pwrite, data, off_out)
            await self._note_written(dst, off_out + count)
            dst.mtime_ns = time.time_ns()
        return CopyRangeReply(await self._iatt(src), pre, await self._iatt(dst), count)

    put = Translator.put_with_own_fops  # so the new file is an LV

    # ======================================================================
    # helpers: IO

    async def _open_image(self, img: Image, fd, flags: int, xdata) -> None:
        """An fd the child opened becomes an open of `img` (O_TRUNC cuts
        the LV); on failure the child's fd is released again."""
        try:
            self._check_mappable(img)
            if flags & os.O_TRUNC and img.sized:
                await self._truncate(img, 0, self._forced(xdata))
        except BaseException:
            await self.first_child.release(fd, None)
            raise
        fd.ctx[self] = _Open(img, flags)
        img.openfds += 1

    def _check_mappable(self, img: Image) -> None:
        if img.sized and img.map is None:
            raise FopError(errno.ENOTSUP if "device-mapper" in img.unmappable else errno.EIO,
                           f"{self.name}: {img.unmappable or img.name + ' cannot be reached'}")

    async def _io(self, img: Image, fn, *args, thread: bool = False):
        """Run a read, write or sync inline, or (bd-aio, or `thread`) in a
        worker thread counted in the file's IO in flight, so a shrink or a
        snapshot can wait for what still uses the map it replaced."""
        if not (self.opts.bd_aio or thread):
            return fn(*args)
        seq = img.io_seq
        img.io_seq += 1
        img.io_inflight.add(seq)
        try:
            return await trio.to_thread.run_sync(fn, *args)
        finally:
            img.io_inflight.discard(seq)
            if img.io_idle is not None:
                img.io_idle.set()
                img.io_idle = None

    async def _drain(self, img: Image) -> None:
        """Wait for the IO that started before this call (it may use the
        map just replaced); IO started later uses the new map and is not
        waited for, so a busy writer cannot hold this off."""
        cutoff = img.io_seq
        while img.io_inflight and min(img.io_inflight) < cutoff:
            if img.io_idle is None:
                img.io_idle = trio.Event()
            await img.io_idle.wait()

    async def _zero(self, img: Image, offset: int, length: int) -> None:
        if length <= 0 or offset < 0 or img.map is None:
            return
        await self._io(img, img.map.zero, offset, length, thread=True)


def _length(data) -> int:
    if isinstance(data, (list, tuple)):
        return sum(memoryview(b).nbytes for b in data)
    return memoryview(data).nbytes
