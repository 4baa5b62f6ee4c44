"""cluster/stripe: the layout of a file - its Geometry (which child holds
which block, at which offset of its piece, how large each piece is) and
how it is stored in and read back from the pieces' xattrs, remembered per
inode (stripe.c's coalesced_offset, uncoalesced_size, stripe_ctx and
stripe-helpers.c's xattr handling)."""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import os
from dataclasses import dataclass
from typing import Any

from glusterpy.fops import GFID, DictReply, Fd, FopError, Iatt, Loc
from glusterpy.options import first_match, parse_int

from .options import DEFAULT_BLOCK_SIZE


# --------------------------------------------------------------------------
# The geometry of one file


@dataclass(frozen=True, slots=True)
class Geometry:
    """How one file is cut: block size, number of pieces, packing."""

    block_size: int
    count: int
    coalesce: bool

    def local_offset(self, offset: int) -> int:
        """Where file offset `offset` lies in its piece (coalesced_offset)."""
        if not self.coalesce:
            return offset
        bs = self.block_size
        return (offset // (bs * self.count)) * bs + offset % bs

    def share(self, index: int, size: int) -> int:
        """The size of piece `index` of a file of `size` bytes: what truncate
        gives it.  Without coalesce every piece is as long as the file (with
        holes), as GlusterFS truncates it."""
        if not self.coalesce:
            return size
        bs = self.block_size
        lines, rest = divmod(size, bs * self.count)
        return lines * bs + min(max(rest - index * bs, 0), bs)

    def implied_size(self, index: int, piece_size: int) -> int:
        """The file size a piece of `piece_size` bytes implies: without
        coalesce its own size; with coalesce the end of its last byte in file
        coordinates, or of its last full block (GlusterFS's uncoalesced_size).
        The file's size is the largest over its pieces."""
        if not self.coalesce or piece_size == 0:
            return piece_size
        bs, n = self.block_size, self.count
        blocks, rest = divmod(piece_size, bs)
        if rest:
            return (blocks * n + index) * bs + rest
        return ((blocks - 1) * n + index + 1) * bs

    def plan(self, offset: int, length: int) -> list["Op"]:
        """The calls that cover file bytes [offset, offset+length): with
        coalesce one per child (its blocks are contiguous there), otherwise
        one per block.  Segments list the file ranges each call carries, in
        file order."""
        bs, n = self.block_size, self.count
        end = offset + length
        ops: list[Op] = []
        by_child: dict[int, Op] = {}
        pos = offset
        while pos < end:
            block = pos // bs
            child = block % n
            stop = min((block + 1) * bs, end)
            op = by_child.get(child) if self.coalesce else None
            if op is None:
                op = Op(child, self.local_offset(pos))
                ops.append(op)
                by_child[child] = op
            op.segments.append((pos, stop - pos))
            op.length += stop - pos
            pos = stop
        return ops

    def ranges(self, offset: int, length: int) -> list["Op"]:
        """Like plan() without segments, for fallocate, discard and zerofill;
        with coalesce computed from the shares, without a walk over blocks."""
        if not self.coalesce:
            return self.plan(offset, length)
        ops = []
        for child in range(self.count):
            lo, hi = self.share(child, offset), self.share(child, offset + length)
            if hi > lo:
                ops.append(Op(child, lo, hi - lo))
        return ops


@dataclass(slots=True)
class Op:
    """One call to one child: `length` bytes at `local` in its piece."""

    child: int
    local: int
    length: int = 0
    segments: list[tuple[int, int]] = dataclasses.field(default_factory=list)


#: the kinds of inode: a striped regular file (its shape is its Geometry),
#: a directory (on every child), a symlink or special file (first child only)
FILE = "file"
DIRECTORY = "directory"
SINGLE = "single"


@dataclass(slots=True)
class FdCtx:
    """What an fd (opened here, or anonymous and met here) needs: the file's
    geometry (None for directories and single-child files), whether writes
    append, and which children hold it."""

    geometry: Geometry | None
    append: bool
    children: tuple[int, ...]


class StripeLayout:
    """Each inode's shape: learnt from its pieces, remembered, asked for."""

    def _new_geometry(self, loc: Loc) -> Geometry:
        """The geometry a new file gets from the options: the first pattern
        matching its path (its name when no path is known)."""
        name = loc.path or loc.name or ""
        return Geometry(first_match(self.opts.block_size, name, DEFAULT_BLOCK_SIZE),
                        len(self.children), self.opts.coalesce)

    def _with_geometry(self, xdata: dict, geometry: Geometry, index: int) -> dict:
        """xdata asking posix to store piece `index`'s geometry xattrs, in
        GlusterFS's format (an integer as decimal text and a NUL)."""
        if not self.opts.use_xattr:
            return xdata
        out = dict(xdata)
        for key, value in ((self.key_size, geometry.block_size),
                           (self.key_count, geometry.count), (self.key_index, index),
                           (self.key_coalesce, int(geometry.coalesce))):
            out[key] = f"{value}\0".encode()
        return out

    def _ask_geometry(self, xdata: dict | None) -> dict:
        """The caller's xdata plus a request for the geometry keys."""
        req = dict(xdata) if xdata else {}
        if self.opts.use_xattr:
            for key in self._keys:
                req.setdefault(key, 0)
        return req

    def _reply_xdata(self, reply_xdata: dict | None, asked: dict | None) -> dict | None:
        """A reply's xdata without the geometry keys this translator asked for."""
        if not reply_xdata:
            return reply_xdata
        out = {k: v for k, v in reply_xdata.items()
               if k not in self._keys or (asked and k in asked)}
        return out or None

    def _learn(self, replies: list, loc: Loc, shape: Any) -> Geometry | None:
        """Remember an inode's shape; a regular file's geometry comes from its
        pieces' xattrs in the replies' xdata."""
        first = replies[0]
        iatt = getattr(first, "iatt", None) or getattr(first, "postbuf", None)
        if shape != FILE:
            if iatt is not None:
                self._remember(iatt.gfid, shape)
            return None
        geometry = self._geometry_from([r.xdata for r in replies],
                                       Loc(path=loc.path, gfid=iatt.gfid, name=loc.name))
        self._remember(iatt.gfid, geometry)
        return geometry

    def _geometry_from(self, xdatas: list, where: Loc) -> Geometry:
        """A file's geometry from its pieces' xattrs (one xdata per child);
        EIO when a piece lacks them or disagrees."""
        if not self.opts.use_xattr:
            return self._configured_geometry(where)
        found = []
        for i, x in enumerate(xdatas):
            child = self.children[i].name
            size, count, index = (_int_xattr(x, k) for k in self._keys[:3])
            coalesce = _int_xattr(x, self.key_coalesce)
            if size is None or count is None or index is None:
                raise FopError(errno.EIO, f"{where}: the piece on {child} carries no stripe "
                                          f"geometry ({self.key_size})")
            if count != len(self.children) or index != i or size <= 0:
                raise FopError(errno.EIO, f"{where}: the piece on {child} says stripe-size "
                                          f"{size}, stripe-count {count}, stripe-index "
                                          f"{index}; this volume stripes over "
                                          f"{len(self.children)} subvolumes and it is "
                                          f"number {i}")
            # a file older than coalesce support has no coalesce key (GlusterFS)
            found.append((size, bool(coalesce)))
        if len(set(found)) != 1:
            raise FopError(errno.EIO, f"{where}: its pieces disagree on the geometry: {found}")
        size, coalesce = found[0]
        return Geometry(size, len(self.children), coalesce)

    def _configured_geometry(self, where: Loc) -> Geometry:
        """use-xattr off: what the options say for this path, or what was
        remembered for the gfid; EINVAL when neither is known."""
        known = self.itable.ctx(self, where.gfid)
        if isinstance(known, Geometry):
            return known
        if not (where.path or where.name):
            raise FopError(errno.EINVAL, f"{where}: use-xattr is off and the file's path "
                                         f"is unknown: its stripe geometry cannot be told")
        return self._new_geometry(where)

    def _remember(self, gfid: GFID | None, shape: Any) -> None:
        if gfid is None:
            return
        self.itable.set_ctx(self, gfid, shape)

    async def _shape_of(self, loc: Loc) -> Any:
        """The inode's shape (Geometry, DIRECTORY or SINGLE), remembered or
        looked up on every child."""
        if loc.gfid is not None:
            shape = self.itable.ctx(self, loc.gfid)
            if shape is not None:
                return shape
        replies = await self._lookup_all(loc)
        iatt = replies[0].iatt
        kind = self._kind_of(iatt)
        return self._learn(replies, loc, kind) if kind == FILE else kind

    async def _shape_for_merge(self, iatt: Iatt) -> Any:
        return await self._shape_of(Loc(gfid=iatt.gfid)) if iatt.is_reg else None

    async def _ctx_of(self, fd: Fd) -> FdCtx:
        """The fd's context; an anonymous fd (never opened here) learns its
        inode's shape from the cache or a lookup by gfid."""
        ctx = fd.ctx.get(self)
        if ctx is not None:
            return ctx
        if fd.gfid is None:
            raise FopError(errno.EBADFD, "an fd without a gfid")
        shape = await self._shape_of(Loc(gfid=fd.gfid))
        if isinstance(shape, Geometry):
            ctx = FdCtx(shape, bool(fd.flags & os.O_APPEND), self._all)
        else:
            ctx = FdCtx(None, False, self._all if shape == DIRECTORY else (0,))
        fd.ctx[self] = ctx
        return ctx

    def _refuse_geometry_keys(self, keys) -> None:
        for key in keys:
            if isinstance(key, str) and fnmatch.fnmatchcase(key, "trusted.*stripe*"):
                raise FopError(errno.EPERM, f"{key} is stripe's own xattr")

    def _hide_geometry(self, name: str | None, reply: DictReply) -> DictReply:
        if name in self._keys:
            raise FopError(errno.ENODATA)
        if any(k in reply.dict for k in self._keys):
            reply.dict = {k: v for k, v in reply.dict.items() if k not in self._keys}
        return reply

    def _pathinfo(self, name: str, results: list, shape: Any) -> DictReply:
        """`(<STRIPE:NAME:[BLOCKSIZE]> <child's> <child's> ...)`."""
        self._raise_first(results if shape != SINGLE else results[:1])
        parts = []
        for r in results if shape != SINGLE else results[:1]:
            value = r.dict.get(name)
            if isinstance(value, (bytes, bytearray)):
                value = bytes(value).rstrip(b"\0").decode(errors="replace")
            if value:
                parts.append(str(value))
        block = shape.block_size if isinstance(shape, Geometry) else 0
        return DictReply({name: f"(<STRIPE:{self.name}:[{block}]> {' '.join(parts)})"},
                         xdata=results[0].xdata)


def _int_xattr(xdata: dict | None, key: str) -> int | None:
    """An integer xattr as GlusterFS stores it (decimal text, NUL-terminated)."""
    if not xdata or key not in xdata:
        return None
    value = xdata[key]
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).split(b"\0", 1)[0].decode("ascii", errors="replace")
    try:
        return parse_int(str(value))
    except ValueError:
        return None
