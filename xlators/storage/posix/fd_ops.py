"""Open files and their data (GlusterFS's posix-inode-fd-ops.c and
posix-aio.c): open, readv, writev, flush, fsync, release, fallocate, discard,
zerofill, seek, rchecksum, copy_file_range, and the hand-off of their
syscalls to performance/io-threads or Linux AIO."""

from __future__ import annotations

import ctypes
import errno
import hashlib
import mmap
import os
import stat
import zlib
from time import perf_counter_ns

from glusterpy import iothreads
from glusterpy.aligned import BUFFERS, direct_ready, direct_write_source
from glusterpy.fops import (ChecksumReply, CopyRangeReply, FopError, OpenReply, PrePostReply,
                            ReadReply, Reply, SeekReply, UInt, WriteReply)
from glusterpy.keys import ACTIVE_FD_COUNT, OPEN_FD_COUNT, WRITE_IS_APPEND
from glusterpy.linux_aio import AioContext

from .helpers import O_NOFOLLOW, OpenFile, inline_fop, libc, offloading_fop, quiet
from .mdata import MDATA_A, MDATA_C, MDATA_M


#: GlusterFS's gf_seek_what_t
GF_SEEK_DATA, GF_SEEK_HOLE = 0, 1
_FALLOC_FL_KEEP_SIZE, _FALLOC_FL_PUNCH_HOLE, _FALLOC_FL_ZERO_RANGE = 0x01, 0x02, 0x10
_RWF_NOWAIT = getattr(os, "RWF_NOWAIT", 0x8)
#: with io-threads, try a buffered read inline with RWF_NOWAIT first (a
#: page-cache hit) and hand only misses to a worker; see _read_offloaded
NOWAIT_FIRST = True

_c_fallocate = libc.fallocate64
_c_fallocate.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64)
_c_fallocate.restype = ctypes.c_int


class PosixFdOps:
    """The fops on an open file."""

    # -- open, read, write ----------------------------------------------------

    @inline_fop
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
        osfd = os.open(node.at_name, oflags | O_NOFOLLOW, dir_fd=node.at_fd)
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
            known = self._fd_known(of)
            sync = bool(flags & (os.O_SYNC | os.O_DSYNC))
            aio = self._aio_for(of)
            if aio is not None and offset + _length(_buffers(data)) <= pre.size and \
                    not of.flags & os.O_APPEND:
                count = await self._write_aio(aio, of, data, offset, sync)
            elif aio is not None:
                # ext4 runs an O_DIRECT write that extends the file (block
                # allocation, the journal, i_size) inside io_submit: ~250 us
                # of the event loop per 128 KiB write of a growing file
                # (bench/notes/qemu.md (16)).  A worker does it instead, as
                # GlusterFS's posix does every write - one worker of its own,
                # taking them back to back (`serial`).
                if not all(map(direct_ready, _buffers(data))):
                    self.direct_copies += 1     # _pwrite_all copies it aligned
                count = await self._blocking(of, _pwrite_all, of.osfd, True, data,
                                             offset, sync, serial=True)
            else:
                count = await self._blocking(of, _pwrite_all, of.osfd, of.odirect, data,
                                             offset, sync)
            post = self._fd_iatt(of, touch=MDATA_C | MDATA_M, known=known)
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

    @inline_fop
    def flush(self, fd, xdata=None):
        self._of(fd)
        return Reply()

    @offloading_fop
    async def fsync(self, fd, datasync, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, os.fdatasync if datasync else os.fsync, of.osfd)
        return PrePostReply(pre, self._fd_iatt(of))

    @inline_fop
    def fsyncdir(self, fd, datasync, xdata=None):
        of = self._of(fd)
        os.fsync(of.osfd)
        return Reply()

    @inline_fop
    def release(self, fd, xdata=None):
        of = fd.ctx.pop(self, None)
        if of is not None:
            closer = self._open_files.pop(of.osfd, None)
            if closer is not None:
                closer()
        return Reply()

    releasedir = release

    # -- space management -------------------------------------------------------

    @offloading_fop
    async def fallocate(self, fd, mode, offset, length, xdata=None):
        """`mode` holds fallocate(2) flags (1 = FALLOC_FL_KEEP_SIZE, as
        GlusterFS's keep_size)."""
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _fallocate, of.osfd, mode, offset, length)
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_M | MDATA_A))

    @offloading_fop
    async def discard(self, fd, offset, length, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _fallocate, of.osfd,
                             _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
        return PrePostReply(pre, self._fd_iatt(of))

    @offloading_fop
    async def zerofill(self, fd, offset, length, xdata=None):
        of = self._of(fd)
        pre = self._fd_iatt(of)
        await self._blocking(of, _zerofill, of.osfd, offset, length,
                             bool(of.flags & (os.O_SYNC | os.O_DSYNC)))
        return PrePostReply(pre, self._fd_iatt(of, touch=MDATA_M | MDATA_A))

    @offloading_fop
    async def seek(self, fd, offset, what, xdata=None):
        """what: GlusterFS's GF_SEEK_DATA/GF_SEEK_HOLE (0/1); os.SEEK_DATA and
        os.SEEK_HOLE are accepted too."""
        of = self._of(fd)
        whence = {GF_SEEK_DATA: os.SEEK_DATA, GF_SEEK_HOLE: os.SEEK_HOLE,
                  os.SEEK_DATA: os.SEEK_DATA, os.SEEK_HOLE: os.SEEK_HOLE}.get(what)
        if whence is None:
            raise FopError(errno.ENOTSUP, f"seek: unknown what {what}")
        return SeekReply(await self._blocking(of, os.lseek, of.osfd, offset, whence))

    @offloading_fop
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

    @offloading_fop
    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags,
                              xdata=None):
        """copy_file_range(2) over the source's data extents (`_copy_range`):
        GlusterFS makes one call, whose kernel copy writes a sparse image's
        holes out as zeros unless the filesystem reflinks; here holes stay
        holes on every filesystem, and XFS/btrfs still share the extents.
        The count covers the range up to the end of the source."""
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        if length < 0 or off_in < 0 or off_out < 0:
            raise FopError(errno.EINVAL)
        src, dst = self._of(fd_in), self._of(fd_out)
        pre_dst = self._fd_iatt(dst)
        count = await self._blocking((src, dst), _copy_range, src.osfd, dst.osfd,
                                     length, off_in, off_out)
        post_dst = self._fd_iatt(dst, touch=MDATA_C | MDATA_M)
        return CopyRangeReply(self._fd_iatt(src, touch=self._atime_asked()), pre_dst, post_dst,
                              count)

    # ======================================================================
    # helpers: data, and the hand-off to performance/io-threads

    async def _blocking(self, ofs, fn, *args, serial: bool = False):
        """fn(*args): in a worker of performance/io-threads when it set a
        lane for this fop, else inline (no checkpoint: as if called).
        `serial`: in posix's own one-worker pool instead, always - the
        extending O_DIRECT writes, which on io-threads' pool woke a worker
        each that then fought the event loop for the GIL (~150 us of brick
        CPU per 128 KiB write, against ~30 us for one worker that takes them
        back to back from its queue).

        `ofs` (an OpenFile, a tuple of them, or None for a descriptor the
        fop owns) are pinned while the worker runs: a release meanwhile
        defers closing them (`_closed`), so a worker never reaches a
        descriptor number that was closed, or reused by another open.
        """
        lane = iothreads.lane.get()
        if lane is None:
            return fn(*args)
        pool = lane.pool
        if serial:
            pool = self._serial_pool
            if pool is None:
                pool = self._serial_pool = iothreads.Pool(1, name=f"{self.name}-serial")
        elif pool.runs_inline(fn):       # cheaper than the hop lately (or a probe)
            start = perf_counter_ns()
            try:
                return fn(*args)
            finally:
                pool.observe(fn, perf_counter_ns() - start, inline=True)
        osfds = () if ofs is None else (ofs.osfd,) if isinstance(ofs, OpenFile) \
            else tuple(of.osfd for of in ofs)
        busy = self._busy
        for osfd in osfds:
            busy[osfd] = busy.get(osfd, 0) + 1
        try:
            return await pool.run(lane.prio, fn, *args)
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
                        quiet(os.close, osfd)

    def _aio_for(self, of: "OpenFile") -> AioContext | None:
        """The AIO context for a data syscall on `of`: O_DIRECT descriptors,
        under io-threads (whose lane says this fop may suspend), while
        `linux-aio` is on and the kernel gave a context."""
        if of.odirect and self._aio is not None and self.opts.linux_aio and \
                iothreads.lane.get() is not None:
            return self._aio
        return None

    async def _write_aio(self, aio: AioContext, of: "OpenFile", data, offset: int,
                         sync: bool) -> int:
        """writev's pwrite on an O_DIRECT descriptor through Linux AIO, one
        request: a payload that lies page-aligned (as the brick's receive
        arena places a WRITE's: rpc.record) as it is, else the buffers
        copied once into one page-aligned buffer."""
        views = [memoryview(b).cast("B") for b in _buffers(data)]
        length = sum(len(v) for v in views)
        aligned = direct_write_source(views[0]) if len(views) == 1 else None
        if aligned is None:
            aligned = BUFFERS.take(length)
            pos = 0
            for v in views:
                aligned[pos:pos + len(v)] = v
                pos += len(v)
            self.direct_copies += 1
        else:
            aligned = memoryview(aligned).cast("B")     # `views` keeps its memory alive
        done = 0
        while done < length:
            n = await aio.pwrite(of.osfd, aligned[done:], offset + done)
            if n == 0:
                raise FopError(errno.ENOSPC)
            done += n
        if sync:
            await self._blocking(of, os.fsync, of.osfd)
        return done

    async def _read_offloaded(self, of: "OpenFile", size: int, offset: int):
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
    total = 0
    for buf in _buffers(data):
        view = memoryview(buf).cast("B")
        if odirect and not direct_ready(view):
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


def _buffers(data) -> list | tuple:
    """A WRITE's payload as a sequence of buffers: it comes as one buffer,
    or as a list of them."""
    return data if isinstance(data, (list, tuple)) else (data,)


def _length(buffers) -> int:
    """The bytes of a WRITE's payload (_buffers)."""
    return sum(memoryview(b).nbytes for b in buffers)


def _write_zeros(osfd: int, offset: int, length: int) -> None:
    chunk = mmap.mmap(-1, 1 << 16)     # page-aligned zeros, fine for O_DIRECT
    done = 0
    while done < length:
        n = os.pwrite(osfd, memoryview(chunk)[:min(len(chunk), length - done)], offset + done)
        done += n


def _copy_range(src: int, dst: int, length: int, off_in: int, off_out: int) -> int:
    """Copy [off_in, off_in+length) of `src` (up to its end) to `off_out` of
    `dst`: its data extents with copy_file_range(2) (a reflink on XFS and
    btrfs), its holes as holes - punched where `dst` had data, so the range
    reads as the source's.  Returns the bytes of the range covered; `dst`
    is extended over a hole at its end."""
    end = min(off_in + length, os.fstat(src).st_size)
    if end <= off_in:
        return 0
    dst_size = os.fstat(dst).st_size
    pos = off_in
    while pos < end:
        data = min(_seek(src, pos, os.SEEK_DATA, end), end)
        if data > pos:
            _make_hole(dst, off_out + pos - off_in, data - pos, dst_size)
        if data >= end:
            break
        hole = min(_seek(src, data, os.SEEK_HOLE, end), end)
        while data < hole:
            n = os.copy_file_range(src, dst, hole - data, data, off_out + data - off_in)
            if n == 0:              # the source shrank meanwhile
                return data - off_in
            data += n
        pos = hole
    if os.fstat(dst).st_size < off_out + end - off_in:
        os.ftruncate(dst, off_out + end - off_in)
    return end - off_in


def _seek(fd: int, offset: int, whence: int, end: int) -> int:
    try:
        return os.lseek(fd, offset, whence)
    except OSError as e:
        if e.errno == errno.ENXIO:  # no data (or only the final hole) after offset
            return end
        raise


def _make_hole(fd: int, offset: int, length: int, size: int) -> None:
    """[offset, offset+length) of a file of `size` bytes reads zeros."""
    length = min(length, size - offset)
    if length <= 0:
        return
    try:
        _fallocate(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.ENOSYS):
            raise
        _write_zeros(fd, offset, length)


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
