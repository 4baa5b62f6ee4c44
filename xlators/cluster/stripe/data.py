"""cluster/stripe: open, read, write and space fops - a request cut by the
file's geometry into calls to the children holding the blocks, run in
parallel and put back together in file order (stripe.c's stripe_readv,
stripe_writev, stripe_fallocate, stripe_discard, stripe_zerofill)."""

from __future__ import annotations

import errno
import functools
import os

import trio

from glusterpy.fops import (CopyRangeReply, Fd, FopError, Iatt, OpenReply, PrePostReply,
                            ReadReply, SeekReply, SeekWhat, WriteReply)
from glusterpy.xlator import Translator

from .layout import SINGLE, FdCtx, Geometry, Op
from .options import MB

#: fallocate(2) modes that move data between offsets: they cannot be split by block
_FALLOC_FL_COLLAPSE_RANGE, _FALLOC_FL_INSERT_RANGE = 0x08, 0x20
#: copy_file_range moves data through readv/writev in pieces of this size
_COPY_CHUNK = 4 * MB


class StripeData:
    """A file's bytes, block by block over the children."""

    # -- open, read, write ----------------------------------------------------

    async def open(self, loc, flags, fd, xdata=None):
        """Every piece of a regular file (and every child of a directory);
        a single-child inode on the first child."""
        self._check_up()
        shape = await self._shape_of(loc)
        if shape == SINGLE:
            reply = await self.first_child.open(loc, flags, fd, xdata)
            fd.ctx[self] = FdCtx(None, False, (0,))
            return reply
        down_flags = flags & ~os.O_APPEND
        results = await self._fan([functools.partial(c.open, loc, down_flags, fd, xdata)
                                   for c in self.children])
        if isinstance(results[0], FopError):
            await self._release_opened(results, fd)
            raise results[0]
        await self._opened_everywhere(results[1:], fd, loc)
        geometry = shape if isinstance(shape, Geometry) else None
        fd.ctx[self] = FdCtx(geometry, bool(flags & os.O_APPEND and geometry), self._all)
        return OpenReply(fd, xdata=results[0].xdata)

    async def readv(self, fd, size, offset, flags, xdata=None):
        """One call per block (per child with coalesce), in parallel; the
        pieces reassembled in file order, holes as zeros, short only at end
        of file."""
        self._check_up()
        ctx = await self._ctx_of(fd)
        geometry = ctx.geometry
        if geometry is None:
            return await self.first_child.readv(fd, size, offset, flags, xdata)
        if size <= 0 or offset < 0:
            raise FopError(errno.EINVAL)
        ops = geometry.plan(offset, size)
        results = await self._run_ops(ops, lambda op: functools.partial(
            self.children[op.child].readv, fd, op.length, op.local, flags, xdata))
        self._raise_first_piece(results, ops, f"readv {fd}")
        pieces: list[Iatt | None] = [None] * geometry.count
        full = True
        for op, reply in zip(ops, results):
            pieces[op.child] = reply.iatt
            if len(reply.data) < op.length:
                full = False
        if full:
            if len(ops) == 1:
                data = results[0].data        # the common case: no copy
            else:
                data = b"".join(_segments_in_order(ops, results))
        else:
            # a hole or the end of file: the true size says which
            missing = [i for i, ia in enumerate(pieces) if ia is None]
            if missing:
                found = await self._fan([functools.partial(self.children[i].fstat, fd, None)
                                         for i in missing])
                self._raise_first_piece(found, [Op(i, 0) for i in missing], f"readv {fd}")
                for i, reply in zip(missing, found):
                    pieces[i] = reply.iatt
            end = min(offset + size, self._merge(pieces, geometry).size)
            data = b"".join(_segments_in_order(ops, results, pad=True))[:max(end - offset, 0)]
        iatt = self._merge(pieces, geometry) if None not in pieces else None
        return ReadReply(data, iatt)

    async def writev(self, fd, data, offset, flags, xdata=None):
        """One call per block (per child with coalesce), in parallel.  The
        count is the bytes written in order up to the first failure (whose
        error is raised only if nothing was written), as GlusterFS counts
        it.  On an O_APPEND fd the data goes to the true end of file."""
        self._check_up()
        ctx = await self._ctx_of(fd)
        if ctx.geometry is None:
            return await self.first_child.writev(fd, data, offset, flags, xdata)
        if offset < 0:
            raise FopError(errno.EINVAL)
        view = _as_view(data)
        if not ctx.append:
            return await self._write(fd, ctx.geometry, view, offset, flags, xdata)
        lock = self._append_locks.setdefault(fd.gfid, trio.Lock())
        try:
            async with lock:
                size = (await self.fstat(fd, None)).iatt.size
                return await self._write(fd, ctx.geometry, view, size, flags, xdata)
        finally:
            if not lock.locked() and lock.statistics().tasks_waiting == 0:
                self._append_locks.pop(fd.gfid, None)

    async def flush(self, fd, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([functools.partial(self.children[i].flush, fd, xdata)
                                   for i in ctx.children])
        return self._settle_fd(results, ctx, f"flush {fd}")[0]

    async def fsync(self, fd, datasync, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([functools.partial(self.children[i].fsync, fd, datasync, xdata)
                                   for i in ctx.children])
        return self._prepost(self._settle_fd(results, ctx, f"fsync {fd}"), ctx.geometry)

    async def release(self, fd, xdata=None):
        """Every child that opened it, even one that is down (its state
        goes); the first error, if any, after all were asked."""
        ctx = fd.ctx.pop(self, None)
        children = ctx.children if ctx is not None else self._all
        results = await self._fan([functools.partial(self.children[i].release, fd, xdata)
                                   for i in children])
        self._raise_first(results)
        return results[0]

    async def releasedir(self, fd, xdata=None):
        ctx = fd.ctx.pop(self, None)
        children = ctx.children if ctx is not None else self._all
        results = await self._fan([functools.partial(self.children[i].releasedir, fd, xdata)
                                   for i in children])
        self._raise_first(results)
        return results[0]
    # -- space management ---------------------------------------------------------

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        """Each child its blocks of the range; modes that shift data
        (collapse, insert) cannot be cut by block: ENOTSUP."""
        if mode & (_FALLOC_FL_COLLAPSE_RANGE | _FALLOC_FL_INSERT_RANGE):
            raise FopError(errno.ENOTSUP, "fallocate: collapse and insert ranges move "
                                          "data across blocks of a striped file")
        return await self._space_fop("fallocate", fd, offset, length, xdata, (mode,))

    async def discard(self, fd, offset, length, xdata=None):
        return await self._space_fop("discard", fd, offset, length, xdata, ())

    async def zerofill(self, fd, offset, length, xdata=None):
        return await self._space_fop("zerofill", fd, offset, length, xdata, ())

    # -- fops built from this translator's own ----------------------------------

    put = Translator.put_with_own_fops  # so the new file is striped

    async def copy_file_range(self, fd_in, off_in, fd_out, off_out, length, flags, xdata=None):
        """Block by block on the children when the two files are cut alike
        and the offsets are a whole stripe apart: every block of the source
        then has its destination on the same child, and each child copies
        its own piece (one call per child with coalesce, per block
        without).  Otherwise readv/writev through this translator."""
        self._check_up()
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        if length < 0 or off_in < 0 or off_out < 0:
            raise FopError(errno.EINVAL)
        g_in = (await self._ctx_of(fd_in)).geometry
        g_out = (await self._ctx_of(fd_out)).geometry
        if g_in is None and g_out is None:
            return await self.first_child.copy_file_range(fd_in, off_in, fd_out, off_out,
                                                          length, flags, xdata)
        if g_in is not None and g_in == g_out and \
                (off_in - off_out) % (g_in.block_size * g_in.count) == 0:
            return await self._copy_by_block(g_in, fd_in, off_in, fd_out, off_out, length,
                                             xdata)
        return await self._copy_through(fd_in, off_in, fd_out, off_out, length)

    async def _copy_by_block(self, geometry: Geometry, fd_in: Fd, off_in: int, fd_out: Fd,
                             off_out: int, length: int, xdata) -> CopyRangeReply:
        pre = (await self.fstat(fd_out, None)).iatt
        n = max(0, min(length, (await self.fstat(fd_in, None)).iatt.size - off_in))
        # the same child on both sides, its piece offset moved by `shift`
        shift = geometry.local_offset(off_in) - geometry.local_offset(off_out) \
            if geometry.coalesce else off_in - off_out

        def call_of(op):
            async def copy():
                done = 0
                while done < op.length:   # a piece's copy may come back short
                    r = await self.children[op.child].copy_file_range(
                        fd_in, op.local + done, fd_out, op.local - shift + done,
                        op.length - done, 0, xdata)
                    if not r.count:       # the piece ends: the rest is a hole
                        await self.children[op.child].discard(
                            fd_out, op.local - shift + done, op.length - done, xdata)
                        break
                    done += r.count
                return done
            return copy
        results = await self._run_ops(geometry.plan(off_in, n), call_of)
        self._raise_first(results)
        post = (await self.fstat(fd_out, None)).iatt
        if n and post.size < off_out + n:   # a hole at the end of the range
            post = (await self.ftruncate(fd_out, off_out + n, None)).postbuf
        src = (await self.fstat(fd_in, None)).iatt
        return CopyRangeReply(src, pre, post, n)

    async def _copy_through(self, fd_in: Fd, off_in: int, fd_out: Fd, off_out: int,
                            length: int) -> CopyRangeReply:
        """readv and writev through this translator, in pieces."""
        pre_dst = (await self.fstat(fd_out, None)).iatt
        copied = 0
        while copied < length:
            chunk = await self.readv(fd_in, min(_COPY_CHUNK, length - copied),
                                     off_in + copied, 0, None)
            if not len(chunk.data):
                break
            written = await self.writev(fd_out, chunk.data, off_out + copied, 0, None)
            copied += written.count
            if written.count < len(chunk.data):
                break
        post_dst = (await self.fstat(fd_out, None)).iatt
        src = (await self.fstat(fd_in, None)).iatt
        return CopyRangeReply(src, pre_dst, post_dst, copied)

    async def seek(self, fd, offset, what, xdata=None):
        """SEEK_DATA/SEEK_HOLE from the pieces: each child is asked from
        its first block at or after `offset`, its answer mapped back to
        file offsets, the nearest wins.  Without coalesce a piece's holes
        include the other children's blocks, so a hole is looked for block
        by block."""
        self._check_up()
        ctx = await self._ctx_of(fd)
        geometry = ctx.geometry
        if geometry is None:
            return await self.first_child.seek(fd, offset, what, xdata)
        size = (await self.fstat(fd, None)).iatt.size
        if offset < 0 or offset >= size:
            raise FopError(errno.ENXIO)
        bs, n = geometry.block_size, geometry.count
        if what == SeekWhat.HOLE and not geometry.coalesce:
            pos = offset
            while pos < size:
                end = (pos // bs + 1) * bs
                at = await self._piece_seek(fd, (pos // bs) % n, pos, what, xdata)
                if at is None or at < end:
                    return SeekReply(min(pos if at is None else at, size))
                pos = end
            return SeekReply(size)
        found = []
        for child in range(n):
            block = offset // bs
            block += (child - block) % n
            start = offset if block == offset // bs else block * bs
            if start >= size:
                continue
            local = geometry.local_offset(start)
            at = await self._piece_seek(fd, child, local, what, xdata)
            if at is None:              # ENXIO: past the end of this piece
                if what == SeekWhat.HOLE:
                    found.append(start)
                continue
            if geometry.coalesce:       # back to file coordinates
                k, within = divmod(at, bs)
                at = (k * n + child) * bs + within
            found.append(at)
        if not found:
            if what == SeekWhat.DATA:
                raise FopError(errno.ENXIO)
            return SeekReply(size)
        best = min(found)
        if what == SeekWhat.DATA and best >= size:
            raise FopError(errno.ENXIO)
        return SeekReply(min(best, size))

    async def _piece_seek(self, fd: Fd, child: int, local: int, what, xdata) -> int | None:
        try:
            return (await self.children[child].seek(fd, local, what, xdata)).offset
        except FopError as e:
            if e.errno == errno.ENXIO:
                return None
            raise

    # -- fops a striped file cannot serve ------------------------------------------

    async def rchecksum(self, fd, offset, length, xdata=None):
        raise FopError(errno.ENOTSUP, "rchecksum of a striped file: no piece holds the "
                                      "range, and the checksums do not combine")

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by cluster/stripe")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by cluster/stripe")

    # ======================================================================
    # helpers: data

    async def _write(self, fd: Fd, geometry: Geometry, view: memoryview, offset: int,
                     flags: int, xdata) -> WriteReply:
        """Write `view` at file offset `offset`; fstat the pieces not written
        (alongside the writes) so that the reply's sizes are exact."""
        ops = geometry.plan(offset, len(view))
        touched = {op.child for op in ops}
        others = [i for i in self._all if i not in touched]

        def call_of(op):
            if len(op.segments) == 1:
                start = op.segments[0][0] - offset
                payload = view[start:start + op.length]
            else:
                payload = b"".join(view[s - offset:s - offset + n] for s, n in op.segments)
            return functools.partial(self.children[op.child].writev, fd, payload, op.local,
                                     flags, xdata)
        results: list = []
        stats: list = []

        async def writes():
            results.extend(await self._run_ops(ops, call_of))

        async def fstats():
            stats.extend(await self._fan([functools.partial(self.children[i].fstat, fd, None)
                                          for i in others]))
        if not others:
            await writes()
        elif not ops:
            await fstats()
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(writes)
                nursery.start_soon(fstats)
        self._raise_first_piece(stats, [Op(i, 0) for i in others], f"writev {fd}")
        count, error = _count_in_order(ops, results)
        if count == 0 and error is not None:
            raise self._piece_error(error[1], error[0], f"writev {fd}")
        pre: list[Iatt | None] = [None] * geometry.count
        post: list[Iatt | None] = [None] * geometry.count
        for op, r in zip(ops, results):
            if isinstance(r, FopError):
                continue
            if pre[op.child] is None:
                pre[op.child] = r.prebuf
            post[op.child] = r.postbuf
        for i, r in zip(others, stats):
            pre[i] = post[i] = r.iatt
        return WriteReply(self._merge(pre, geometry), self._merge(post, geometry), count=count)

    async def _space_fop(self, name: str, fd: Fd, offset: int, length: int, xdata,
                         extra: tuple) -> PrePostReply:
        """fallocate, discard, zerofill: each child its part of the range,
        the untouched pieces fstat'ed for the exact sizes."""
        self._check_up()
        ctx = await self._ctx_of(fd)
        geometry = ctx.geometry
        if geometry is None:
            return await getattr(self.first_child, name)(fd, *extra, offset, length, xdata)
        if offset < 0 or length <= 0:
            raise FopError(errno.EINVAL)
        ops = geometry.ranges(offset, length)
        touched = {op.child for op in ops}
        results = await self._run_ops(ops, lambda op: functools.partial(
            getattr(self.children[op.child], name), fd, *extra, op.local, op.length, xdata))
        self._raise_first_piece(results, ops, f"{name} {fd}")
        others = [i for i in self._all if i not in touched]
        stats = await self._fan([functools.partial(self.children[i].fstat, fd, None)
                                 for i in others])
        self._raise_first_piece(stats, [Op(i, 0) for i in others], f"{name} {fd}")
        pre: list[Iatt | None] = [None] * geometry.count
        post: list[Iatt | None] = [None] * geometry.count
        for op, r in zip(ops, results):
            if pre[op.child] is None:
                pre[op.child] = r.prebuf
            post[op.child] = r.postbuf
        for i, r in zip(others, stats):
            pre[i] = post[i] = r.iatt
        return PrePostReply(self._merge(pre, geometry), self._merge(post, geometry))


def _as_view(data) -> memoryview:
    if isinstance(data, (list, tuple)):
        data = b"".join(data)
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _segments_in_order(ops: list[Op], results: list, pad: bool = False):
    """The data of each segment in file order; with `pad` a short segment is
    completed with zeros (a hole, or past the end, cut by the caller)."""
    parts = []
    for op, reply in zip(ops, results):
        data = memoryview(reply.data)
        pos = 0
        for file_offset, n in op.segments:
            piece = data[pos:pos + n]
            pos += n
            parts.append((file_offset, piece, n))
    parts.sort(key=lambda p: p[0])
    for _, piece, n in parts:
        yield piece
        if pad and len(piece) < n:
            yield bytes(n - len(piece))


def _count_in_order(ops: list[Op], results: list) -> tuple[int, tuple | None]:
    """Bytes written from the start of the request up to the first segment
    not fully written; and the first failure (child, error) in file order."""
    segments = []
    for op, r in zip(ops, results):
        pos = 0
        for file_offset, n in op.segments:
            written = 0 if isinstance(r, FopError) else max(0, min(r.count - pos, n))
            segments.append((file_offset, n, written, op.child, r))
            pos += n
    segments.sort(key=lambda s: s[0])
    count = 0
    for _, n, written, child, r in segments:
        count += written
        if written < n:
            return count, ((child, r) if isinstance(r, FopError) else None)
    return count, None
