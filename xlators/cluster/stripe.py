"""cluster/stripe: each regular file cut into blocks, dealt round-robin over the children.

Follows GlusterFS's cluster/stripe (removed upstream in release 6; read here
from its release-5 sources).  Block N of a file (`block-size` bytes, chosen
per file by the first matching pattern of the option) lives on child
N % count, the "piece" of the file on that child:

* without `coalesce` at its own file offset, so a piece is a sparse file
  with holes where the other children's blocks would be;
* with `coalesce` (GlusterFS's default) packed: block N at offset
  (N // count) * block-size of its piece, so pieces have no holes.

Every piece carries the file's geometry in GlusterFS's xattrs,
`trusted.<this translator's name>.stripe-size`, `.stripe-count`,
`.stripe-index` and `.stripe-coalesce`, valued as GlusterFS's dict stores
integers (decimal text and a NUL).  A file made with another geometry (the
option changed since) keeps its own.

Where fops go, as in stripe.c: regular files and directories exist on every
child; symlinks and special files only on the first child, which holds the
namespace.  lookup, stat, fstat, setattr, fsetattr, truncate, ftruncate,
open, opendir, flush, fsync, fsyncdir, release and statfs reach every child
that holds the target at once; mkdir, create, mknod of a regular file, link,
rename, rmdir, setxattr and removexattr run on the first child and then on
the others; unlink runs on the others and then on the first child (a
failure leaves the name, so it can be retried); readv, writev, fallocate,
discard and zerofill go to the children holding the blocks concerned, in
parallel; readdirp lists the first child and looks each regular file up on
the others.  getxattr, readdir, readlink, access, the lock fops, xattrop
and the rest go to the first child.

Sizes and times: the true size is the largest size any piece implies (a
piece of S bytes without coalesce implies S; with coalesce, the end of its
last byte in file coordinates - GlusterFS's uncoalesced_size); truncate
gives each piece its share.  Blocks are summed over the pieces.

Departures from GlusterFS, each because stripe must be exact:

* A child that is down (CHILD_DOWN) makes every fop fail with ENOTCONN
  until it is back; CHILD_UP goes up only when every child is up.
  GlusterFS served what the remaining children had, with sizes computed
  from the pieces it could see.
* Every reply's attributes merge all pieces: the latest of each time
  (stripe_iatt_merge's rule, which GlusterFS applied only in readdirp), so
  mtime moves with a write to any piece; readv and writev replies carry the
  exact size (pieces a write did not touch are fstat'ed alongside).
* A read returns zeros for holes and stops exactly at end of file; holes
  inside a read were a TODO in GlusterFS.
* O_APPEND is honoured: writes on such an fd land at the true end of file,
  one at a time per file.  GlusterFS dropped the flag.
* With coalesce, one read, write, fallocate, discard or zerofill goes to
  each child per request (its blocks are contiguous there); GlusterFS sent
  one per block.
* Extended attribute changes on files and directories reach every child, so
  each piece carries its file's xattrs; GlusterFS changed only the first
  child's.  Reads still come from the first child.  Setting or removing a
  `trusted.*stripe*` key is EPERM (as GlusterFS); reading a geometry key
  answers ENODATA.
* rmdir runs on the first child first: it holds every name of the
  directory, so ENOTEMPTY leaves the others untouched.
* lk goes to the first child only, which arbitrates every lock of the file;
  GlusterFS asked every child at once, and two clients could each win one
  child and wait on the other.
* A new entry that fails on a later child is removed again from the
  children that made it.  A regular file missing a piece is EIO; missing
  entries are not re-created (GlusterFS's lookup self-heal).
* `block-size` patterns apply in order, the first match wins (GlusterFS's
  parser kept only the last entry of the list); sizes must be at least
  16KB, multiples of 512 and at most 1GB (GlusterFS set no maximum).
* seek, rchecksum, icreate and namelink answer ENOTSUP (GlusterFS: seek
  ENOTSUP, rchecksum checksummed the first piece only); fallocate's
  COLLAPSE_RANGE and INSERT_RANGE answer ENOTSUP; put and copy_file_range
  are served through this translator's own fops.
* `use-xattr off` stores no geometry: it comes from the options and the
  path, and a file reached by gfid alone whose geometry is not known here
  answers EINVAL rather than a guess.
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import functools
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Sequence

import trio

from glusterpy.fops import (GFID, SET_ATTR_SIZE, CopyRangeReply, CreateReply, DictReply,
                            DirReply, EntryReply, Fd, FopError, Iatt, LookupReply, Loc,
                            OpenReply, ParentReply, PrePostReply, ReadReply, RenameReply,
                            StatfsReply, StatReply, Statvfs, WriteReply)
from glusterpy.fopgen import Family, install
from glusterpy.keys import GFID_REQ, PATHINFO_KEYS
from glusterpy.options import Option, OptionError, OptionType, first_match, parse_int
from glusterpy.xlator import Event, Translator

# --------------------------------------------------------------------------
# Options

KB, MB, GB = 1 << 10, 1 << 20, 1 << 30
MIN_BLOCK_SIZE = 16 * KB      # GlusterFS's STRIPE_MIN_BLOCK_SIZE
MAX_BLOCK_SIZE = 1 * GB       # ours: GlusterFS set none
DEFAULT_BLOCK_SIZE = 128 * KB
MAX_CHILDREN = 256            # GlusterFS's limit


@dataclass(frozen=True)
class BlockSizeOption(Option):
    """`block-size`: a size, or PATTERN:SIZE pairs (`*.img:1MB,*:256KB`),
    each size checked as GlusterFS's set_stripe_block_size checks it."""

    def parse(self, text: str) -> Any:
        pairs = super().parse(text)
        if not pairs:
            raise OptionError(self.key, f"option '{self.key}': no block size given")
        for pattern, size in pairs:
            what = f"option '{self.key}': block size {size}" + \
                (f" for '{pattern}'" if pattern != "*" or len(pairs) > 1 else "")
            if not pattern:
                raise OptionError(self.key, f"option '{self.key}': {text!r} has an "
                                            f"empty pattern before ':'")
            if size == 0:
                raise OptionError(self.key, f"{what} is zero: every block would be empty")
            if size < MIN_BLOCK_SIZE:
                raise OptionError(self.key, f"{what} is below the minimum "
                                            f"{MIN_BLOCK_SIZE} (16KB)")
            if size % 512:
                raise OptionError(self.key, f"{what} is not a multiple of 512 bytes")
            if size > MAX_BLOCK_SIZE:
                raise OptionError(self.key, f"{what} is above the maximum "
                                            f"{MAX_BLOCK_SIZE} (1GB)")
        return pairs


OPTIONS = (
    BlockSizeOption(
        "block-size", OptionType.SIZE_LIST, "128KB",
        "Size of the stripe unit that would be read from or written to the striped "
        "servers; PATTERN:SIZE pairs (e.g. *.img:1MB,*:256KB) choose it per file, the "
        "first matching pattern winning.",
        min=MIN_BLOCK_SIZE, max=MAX_BLOCK_SIZE, set_keys=("cluster.stripe-block-size",)),
    Option("use-xattr", OptionType.BOOL, "true",
           "Record each file's stripe geometry in xattrs on its pieces (off: derive it "
           "from the options and the path).", reconfigurable=False),
    Option("coalesce", OptionType.BOOL, "true",
           "Enable/Disable coalesce mode to flatten striped files as stored on the server "
           "(i.e., eliminate holes caused by the traditional format).",
           set_keys=("cluster.stripe-coalesce",)),
)

#: fallocate(2) modes that move data between offsets: they cannot be split by block
_FALLOC_FL_COLLAPSE_RANGE, _FALLOC_FL_INSERT_RANGE = 0x08, 0x20
#: how many per-entry lookups one readdirp keeps in flight
_READDIRP_LOOKUPS = 64
#: how many files' geometries stay remembered (a miss only costs a lookup)
_GEOMETRY_CACHE = 16384
#: copy_file_range moves data through readv/writev in pieces of this size
_COPY_CHUNK = 4 * MB


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

    def plan(self, offset: int, length: int) -> list["_Op"]:
        """The calls that cover file bytes [offset, offset+length): with
        coalesce one per child (its blocks are contiguous there), otherwise
        one per block.  Segments list the file ranges each call carries, in
        file order."""
        bs, n = self.block_size, self.count
        end = offset + length
        ops: list[_Op] = []
        by_child: dict[int, _Op] = {}
        pos = offset
        while pos < end:
            block = pos // bs
            child = block % n
            stop = min((block + 1) * bs, end)
            op = by_child.get(child) if self.coalesce else None
            if op is None:
                op = _Op(child, self.local_offset(pos))
                ops.append(op)
                by_child[child] = op
            op.segments.append((pos, stop - pos))
            op.length += stop - pos
            pos = stop
        return ops

    def ranges(self, offset: int, length: int) -> list["_Op"]:
        """Like plan() without segments, for fallocate, discard and zerofill;
        with coalesce computed from the shares, without a walk over blocks."""
        if not self.coalesce:
            return self.plan(offset, length)
        ops = []
        for child in range(self.count):
            lo, hi = self.share(child, offset), self.share(child, offset + length)
            if hi > lo:
                ops.append(_Op(child, lo, hi - lo))
        return ops


@dataclass(slots=True)
class _Op:
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
class _FdCtx:
    """What an fd (opened here, or anonymous and met here) needs: the file's
    geometry (None for directories and single-child files), whether writes
    append, and which children hold it."""

    geometry: Geometry | None
    append: bool
    children: tuple[int, ...]


# --------------------------------------------------------------------------
# The translator


class Stripe(Translator):
    """cluster/stripe: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (2, MAX_CHILDREN)

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._index = {child: i for i, child in enumerate(self.children)}
        self._all = tuple(range(len(self.children)))
        #: the last CHILD_UP/CHILD_DOWN of each child (None: not heard yet)
        self._child_state: list[Event | None] = [None] * len(self.children)
        #: what this translator last told its parents
        self._reported: Event | None = None
        prefix = f"trusted.{name}."
        self.key_size = prefix + "stripe-size"
        self.key_count = prefix + "stripe-count"
        self.key_index = prefix + "stripe-index"
        self.key_coalesce = prefix + "stripe-coalesce"
        self._keys = (self.key_size, self.key_count, self.key_index, self.key_coalesce)
        #: gfid -> Geometry | DIRECTORY | SINGLE; an inode's shape never changes
        self._shapes: OrderedDict[GFID, Any] = OrderedDict()
        #: one lock per file with appends in flight (O_APPEND)
        self._append_locks: dict[GFID, trio.Lock] = {}

    # -- events ------------------------------------------------------------

    def notify(self, event, source, data=None):
        """Track each child's CHILD_UP/CHILD_DOWN; report CHILD_UP when every
        child is up, CHILD_DOWN once all have been heard from and one is not.
        CHILD_CONNECTING is ignored, as GlusterFS's stripe ignores it."""
        index = self._index.get(source)
        if index is None or event not in (Event.CHILD_UP, Event.CHILD_DOWN,
                                          Event.CHILD_CONNECTING):
            return super().notify(event, source, data)
        if event == Event.CHILD_CONNECTING:
            return
        self._child_state[index] = event
        if all(s == Event.CHILD_UP for s in self._child_state):
            if self._reported != Event.CHILD_UP:
                self._reported = Event.CHILD_UP
                self.log.info("all %d subvolumes up", len(self.children))
                self.notify_parents(Event.CHILD_UP, data)
        elif None not in self._child_state and self._reported != Event.CHILD_DOWN:
            self._reported = Event.CHILD_DOWN
            down = [c.name for c, s in zip(self.children, self._child_state)
                    if s != Event.CHILD_UP]
            self.log.warning("subvolume(s) down: %s; files cannot be served",
                             ", ".join(down))
            self.notify_parents(Event.CHILD_DOWN, data)

    # -- entry fops -----------------------------------------------------------

    async def lookup(self, loc, xdata=None):
        """Every child, asking for the geometry xattrs; a regular file's reply
        merges all pieces."""
        self._check_up()
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.lookup, loc, req)
                                   for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        geometry = self._learn(replies, loc, shape)
        first = replies[0]
        return LookupReply(self._merge([r.iatt if r else None for r in replies], geometry),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=self._reply_xdata(first.xdata, xdata))

    async def mknod(self, loc, mode, rdev, umask, xdata=None):
        """A regular file gets a piece on every child, with its geometry;
        other types live on the first child only."""
        self._check_up()
        if stat.S_IFMT(mode) not in (0, stat.S_IFREG):
            return await self.first_child.mknod(loc, mode, rdev, umask, xdata)
        geometry = self._new_geometry(loc)
        xdata, _ = self._with_gfid_req(xdata)
        first = await self.first_child.mknod(loc, mode, rdev, umask,
                                             self._with_geometry(xdata, geometry, 0))
        rest = await self._fan([
            functools.partial(c.mknod, loc, mode, rdev, umask,
                              self._with_geometry(self._gfid_req(xdata, first.iatt.gfid),
                                                  geometry, i))
            for i, c in enumerate(self.children) if i])
        replies = await self._new_entry_made(first, rest, loc, first.iatt.gfid)
        self._remember(first.iatt.gfid, geometry)
        return self._entry_reply(replies, geometry)

    async def mkdir(self, loc, mode, umask, xdata=None):
        """The first child, then the others with the same gfid."""
        self._check_up()
        xdata, _ = self._with_gfid_req(xdata)
        first = await self.first_child.mkdir(loc, mode, umask, xdata)
        xdata = self._gfid_req(xdata, first.iatt.gfid)
        rest = await self._fan([functools.partial(c.mkdir, loc, mode, umask, xdata)
                                for c in self.children[1:]])
        replies = await self._new_entry_made(first, rest, loc, first.iatt.gfid, rmdir=True)
        self._remember(first.iatt.gfid, DIRECTORY)
        return self._entry_reply(replies, None)

    async def unlink(self, loc, xflags, xdata=None):
        """The other children first (a name they lack is fine: symlinks and
        special files live on the first child only), then the first child,
        as GlusterFS orders it: a failure leaves the name to retry with."""
        self._check_up()
        rest = await self._fan([functools.partial(c.unlink, loc, xflags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest)
        return await self.first_child.unlink(loc, xflags, xdata)

    async def rmdir(self, loc, xflags, xdata=None):
        """The first child first: it holds every name of the directory, so
        its ENOTEMPTY leaves the other children as they were."""
        self._check_up()
        first = await self.first_child.rmdir(loc, xflags, xdata)
        rest = await self._fan([functools.partial(c.rmdir, loc, xflags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"rmdir {loc}")
        if loc.gfid is not None:
            self._shapes.pop(loc.gfid, None)
        replies = [first] + [r if not isinstance(r, FopError) else None for r in rest]
        return ParentReply(self._merge([r.preparent if r else None for r in replies], None),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=first.xdata)

    async def rename(self, oldloc, newloc, xdata=None):
        """The first child, then the others.  A name only the first child
        holds may replace a regular file: the victim's pieces are unlinked
        from the others."""
        self._check_up()
        first = await self.first_child.rename(oldloc, newloc, xdata)
        rest = await self._fan([functools.partial(c.rename, oldloc, newloc, xdata)
                                for c in self.children[1:]])
        moved = first.iatt
        if moved.is_reg or moved.is_dir:
            replies = [first] + self._settle_rest(
                rest, moved.is_reg, f"rename {oldloc} -> {newloc}")
        else:
            replies = [first] + [None] * len(rest)
            leftovers = await self._fan([functools.partial(c.unlink, newloc, 0, None)
                                         for c in self.children[1:]])
            self._raise_unless_missing(leftovers, f"rename {oldloc} -> {newloc}")
        shape = await self._shape_for_merge(moved)
        geometry = shape if isinstance(shape, Geometry) else None
        parents = [(r.preoldparent, r.postoldparent, r.prenewparent, r.postnewparent)
                   if r else (None,) * 4 for r in replies]
        return RenameReply(
            self._merge([r.iatt if r else None for r in replies], geometry),
            *(self._merge([p[k] for p in parents], None) for k in range(4)),
            xdata=first.xdata)

    async def link(self, oldloc, newloc, xdata=None):
        """The first child, then (for a regular file) the others; a link
        that fails on one of them is removed again from the rest."""
        self._check_up()
        first = await self.first_child.link(oldloc, newloc, xdata)
        if not first.iatt.is_reg:
            return first
        rest = await self._fan([functools.partial(c.link, oldloc, newloc, xdata)
                                for c in self.children[1:]])
        replies = await self._new_entry_made(first, rest, newloc, first.iatt.gfid)
        shape = await self._shape_for_merge(first.iatt)
        return self._entry_reply(replies, shape if isinstance(shape, Geometry) else None)

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        """The first child decides (O_EXCL, an existing file); a new file then
        gets its pieces on the other children, an existing one is opened
        there.  O_APPEND is kept here and never sent down: each piece must be
        written at its own offsets."""
        self._check_up()
        if not flags:
            flags = os.O_CREAT | os.O_RDWR | os.O_EXCL   # GlusterFS's meaning of 0
        flags |= os.O_CREAT
        down_flags = flags & ~os.O_APPEND
        geometry = self._new_geometry(loc)
        xdata, gfid_req = self._with_gfid_req(xdata)
        first = await self.first_child.create(loc, down_flags, mode, umask, fd,
                                              self._with_geometry(xdata, geometry, 0))
        gfid = first.iatt.gfid
        if not first.iatt.is_reg:          # an existing fifo or device
            fd.ctx[self] = _FdCtx(None, False, (0,))
            return first
        entry = Loc(path=loc.path, gfid=gfid, pargfid=loc.pargfid, name=loc.name)
        if gfid == gfid_req:
            # a new file: every piece is new too (O_EXCL: a stale piece is an error)
            rest = await self._fan([
                functools.partial(c.create, loc, down_flags | os.O_EXCL, mode, umask, fd,
                                  self._with_geometry(self._gfid_req(xdata, gfid), geometry, i))
                for i, c in enumerate(self.children) if i])
            replies = await self._new_entry_made(first, rest, entry, gfid, fd=fd)
            iatts = [r.iatt for r in replies]
        else:
            # it existed: open its pieces, then read their geometry and sizes
            rest = await self._fan([
                functools.partial(c.open, entry, down_flags & ~(os.O_CREAT | os.O_EXCL), fd,
                                  None)
                for c in self.children[1:]])
            await self._opened_everywhere(rest, fd, entry)
            found = await self._lookup_all(entry)
            geometry = self._learn(found, entry, self._kind_of(found[0].iatt))
            replies = [first] + [None] * (len(self.children) - 1)
            iatts = [r.iatt for r in found]
        self._remember(gfid, geometry)
        fd.ctx[self] = _FdCtx(geometry, bool(flags & os.O_APPEND), self._all)
        return CreateReply(fd, self._merge(iatts, geometry),
                           self._merge([r.preparent if r else None for r in replies], None),
                           self._merge([r.postparent if r else None for r in replies], None),
                           xdata=first.xdata)

    # -- inode fops ---------------------------------------------------------

    async def stat(self, loc, xdata=None):
        self._check_up()
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.stat, loc, req) for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        geometry = self._learn(replies, loc, shape)
        return StatReply(self._merge([r.iatt if r else None for r in replies], geometry),
                         xdata=self._reply_xdata(replies[0].xdata, xdata))

    async def fstat(self, fd, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([functools.partial(self.children[i].fstat, fd, xdata)
                                   for i in ctx.children])
        replies = self._settle_fd(results, ctx, f"fstat {fd}")
        return StatReply(self._merge([r.iatt if r else None for r in replies], ctx.geometry),
                         xdata=replies[0].xdata)

    async def truncate(self, loc, offset, xdata=None):
        """Each piece to its share of the new size."""
        self._check_up()
        if offset < 0:
            raise FopError(errno.EINVAL)
        shape = await self._shape_of(loc)
        if not isinstance(shape, Geometry):
            return await self.first_child.truncate(loc, offset, xdata)
        results = await self._fan([
            functools.partial(c.truncate, loc, shape.share(i, offset), xdata)
            for i, c in enumerate(self.children)])
        return self._prepost(self._settle_file(results, f"truncate {loc}"), shape)

    async def ftruncate(self, fd, offset, xdata=None):
        self._check_up()
        if offset < 0:
            raise FopError(errno.EINVAL)
        ctx = await self._ctx_of(fd)
        geometry = ctx.geometry
        if geometry is None:
            return await self.first_child.ftruncate(fd, offset, xdata)
        results = await self._fan([
            functools.partial(c.ftruncate, fd, geometry.share(i, offset), xdata)
            for i, c in enumerate(self.children)])
        return self._prepost(self._settle_file(results, f"ftruncate {fd}"), geometry)

    async def setattr(self, loc, stbuf, valid, xdata=None):
        """Every child that holds the inode.  A size change is a truncate
        (each piece has its own share), then the other attributes."""
        self._check_up()
        if valid & SET_ATTR_SIZE:
            cut = await self.truncate(loc, stbuf.size, None)
            valid &= ~SET_ATTR_SIZE
            if not valid:
                return cut
            reply = await self.setattr(loc, stbuf, valid, xdata)
            return PrePostReply(cut.prebuf, reply.postbuf, xdata=reply.xdata)
        req = self._ask_geometry(xdata)
        results = await self._fan([functools.partial(c.setattr, loc, stbuf, valid, req)
                                   for c in self.children])
        replies, shape = self._settle_by_iatt(results, lambda r: r.postbuf, loc)
        geometry = self._learn(replies, loc, shape)
        reply = self._prepost(replies, geometry)
        reply.xdata = self._reply_xdata(replies[0].xdata, xdata)
        return reply

    async def fsetattr(self, fd, stbuf, valid, xdata=None):
        self._check_up()
        if valid & SET_ATTR_SIZE:
            cut = await self.ftruncate(fd, stbuf.size, None)
            valid &= ~SET_ATTR_SIZE
            if not valid:
                return cut
            reply = await self.fsetattr(fd, stbuf, valid, xdata)
            return PrePostReply(cut.prebuf, reply.postbuf, xdata=reply.xdata)
        ctx = await self._ctx_of(fd)
        results = await self._fan([
            functools.partial(self.children[i].fsetattr, fd, stbuf, valid, xdata)
            for i in ctx.children])
        return self._prepost(self._settle_fd(results, ctx, f"fsetattr {fd}"), ctx.geometry)

    async def statfs(self, loc, xdata=None):
        """The sum over the children, in the first child's fragment size."""
        self._check_up()
        results = await self._fan([functools.partial(c.statfs, loc, xdata)
                                   for c in self.children])
        self._raise_first(results)
        first = results[0].statvfs
        unit = first.frsize or first.bsize or 1
        total = Statvfs(bsize=first.bsize, frsize=first.frsize, fsid=first.fsid,
                        flag=first.flag, namemax=first.namemax)
        for reply in results:
            sv = reply.statvfs
            scale = (sv.frsize or sv.bsize or 1)
            total.blocks += sv.blocks * scale // unit
            total.bfree += sv.bfree * scale // unit
            total.bavail += sv.bavail * scale // unit
            total.files += sv.files
            total.ffree += sv.ffree
            total.favail += sv.favail
        return StatfsReply(total, xdata=results[0].xdata)

    # -- open, read, write ----------------------------------------------------

    async def open(self, loc, flags, fd, xdata=None):
        """Every piece of a regular file (and every child of a directory);
        a single-child inode on the first child."""
        self._check_up()
        shape = await self._shape_of(loc)
        if shape == SINGLE:
            reply = await self.first_child.open(loc, flags, fd, xdata)
            fd.ctx[self] = _FdCtx(None, False, (0,))
            return reply
        down_flags = flags & ~os.O_APPEND
        results = await self._fan([functools.partial(c.open, loc, down_flags, fd, xdata)
                                   for c in self.children])
        if isinstance(results[0], FopError):
            await self._release_opened(results, fd)
            raise results[0]
        await self._opened_everywhere(results[1:], fd, loc)
        geometry = shape if isinstance(shape, Geometry) else None
        fd.ctx[self] = _FdCtx(geometry, bool(flags & os.O_APPEND and geometry), self._all)
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
                self._raise_first_piece(found, [_Op(i, 0) for i in missing], f"readv {fd}")
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

    # -- directories ------------------------------------------------------------

    async def opendir(self, loc, fd, xdata=None):
        self._check_up()
        results = await self._fan([functools.partial(c.opendir, loc, fd, xdata)
                                   for c in self.children])
        if isinstance(results[0], FopError):
            await self._release_opened(results, fd, directory=True)
            raise results[0]
        failed = [(i, r) for i, r in enumerate(results) if isinstance(r, FopError)]
        bad = [r for _, r in failed if r.errno != errno.ENOENT]
        if bad:
            await self._release_opened(results, fd, directory=True)
            raise bad[0]
        held = tuple(i for i, r in enumerate(results) if not isinstance(r, FopError))
        fd.ctx[self] = _FdCtx(None, False, held)
        return OpenReply(fd, xdata=results[0].xdata)

    async def readdirp(self, fd, size, offset, xdata=None):
        """The first child's listing; each regular file's attributes merged
        with its other pieces' (looked up by gfid, in parallel).  An entry
        whose pieces are gone meanwhile is left out, as posix leaves out an
        entry removed since getdents; one whose pieces disagree keeps no
        attributes (its own lookup tells why)."""
        self._check_up()
        req = self._ask_geometry(xdata)
        reply = await self.first_child.readdirp(fd, size, offset, req)
        files = [e for e in reply.entries if e.iatt is not None and e.iatt.is_reg]
        found: dict[int, list] = {}
        if files and len(self.children) > 1:
            limiter = trio.CapacityLimiter(_READDIRP_LOOKUPS)

            async def pieces_of(entry):
                async with limiter:
                    found[id(entry)] = await self._fan([
                        functools.partial(c.lookup, Loc(gfid=entry.iatt.gfid), req)
                        for c in self.children[1:]])
            async with trio.open_nursery() as nursery:
                for entry in files:
                    nursery.start_soon(pieces_of, entry)
        entries = []
        for entry in reply.entries:
            if entry.iatt is None or not entry.iatt.is_reg:
                entry.xdata = self._reply_xdata(entry.xdata, xdata)
                entries.append(entry)
                continue
            rest = found.get(id(entry), [])
            if any(isinstance(r, FopError) and r.errno in (errno.ENOENT, errno.ESTALE)
                   for r in rest):
                continue
            self._raise_first(rest)
            where = Loc(path=None, gfid=entry.iatt.gfid, name=entry.name)
            try:
                geometry = self._geometry_from([entry.xdata] + [r.xdata for r in rest], where)
            except FopError as e:
                self.log.error("readdirp: %s", e)
                entry.iatt = entry.xdata = None
                entries.append(entry)
                continue
            self._remember(entry.iatt.gfid, geometry)
            entry.iatt = self._merge([entry.iatt] + [r.iatt for r in rest], geometry)
            entry.xdata = self._reply_xdata(entry.xdata, xdata)
            entries.append(entry)
        return DirReply(entries, xdata=reply.xdata)

    async def fsyncdir(self, fd, datasync, xdata=None):
        self._check_up()
        ctx = await self._ctx_of(fd)
        results = await self._fan([
            functools.partial(self.children[i].fsyncdir, fd, datasync, xdata)
            for i in ctx.children])
        self._raise_first(results)
        return results[0]

    # -- extended attributes ------------------------------------------------------

    async def setxattr(self, loc, xattrs, flags, xdata=None):
        """The first child decides (XATTR_CREATE/REPLACE); then every other
        child holding the inode."""
        self._check_up()
        self._refuse_geometry_keys(xattrs)
        first = await self.first_child.setxattr(loc, xattrs, flags, xdata)
        rest = await self._fan([functools.partial(c.setxattr, loc, xattrs, flags, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"setxattr {loc}")
        return first

    async def fsetxattr(self, fd, xattrs, flags, xdata=None):
        self._check_up()
        self._refuse_geometry_keys(xattrs)
        ctx = await self._ctx_of(fd)
        first = await self.first_child.fsetxattr(fd, xattrs, flags, xdata)
        rest = await self._fan([
            functools.partial(self.children[i].fsetxattr, fd, xattrs, flags, xdata)
            for i in ctx.children if i])
        self._raise_first(rest)
        return first

    async def removexattr(self, loc, name, xdata=None):
        self._check_up()
        self._refuse_geometry_keys({name: None} if name else xdata or {})
        first = await self.first_child.removexattr(loc, name, xdata)
        rest = await self._fan([functools.partial(c.removexattr, loc, name, xdata)
                                for c in self.children[1:]])
        self._raise_unless_missing(rest, f"removexattr {loc}")
        return first

    async def fremovexattr(self, fd, name, xdata=None):
        self._check_up()
        self._refuse_geometry_keys({name: None} if name else xdata or {})
        ctx = await self._ctx_of(fd)
        first = await self.first_child.fremovexattr(fd, name, xdata)
        rest = await self._fan([
            functools.partial(self.children[i].fremovexattr, fd, name, xdata)
            for i in ctx.children if i])
        self._raise_first(rest)
        return first

    async def getxattr(self, loc, name, xdata=None):
        """The first child's, geometry keys hidden; pathinfo gathers every
        child's, as GlusterFS's stripe_fill_pathinfo_xattr writes it."""
        self._check_up()
        if name in PATHINFO_KEYS:
            results = await self._fan([functools.partial(c.getxattr, loc, name, xdata)
                                       for c in self.children])
            shape = await self._shape_of(loc)
            return self._pathinfo(name, results, shape)
        return self._hide_geometry(name, await self.first_child.getxattr(loc, name, xdata))

    async def fgetxattr(self, fd, name, xdata=None):
        self._check_up()
        if name in PATHINFO_KEYS:
            ctx = await self._ctx_of(fd)
            results = await self._fan([
                functools.partial(self.children[i].fgetxattr, fd, name, xdata)
                for i in ctx.children])
            return self._pathinfo(name, results, ctx.geometry or SINGLE)
        return self._hide_geometry(name, await self.first_child.fgetxattr(fd, name, xdata))

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
        """readv from one fd and writev to the other, through this
        translator, until `length` bytes or the end of the source."""
        self._check_up()
        if flags:
            raise FopError(errno.EINVAL, "copy_file_range takes no flags")
        if length < 0 or off_in < 0 or off_out < 0:
            raise FopError(errno.EINVAL)
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

    # -- fops a striped file cannot serve ------------------------------------------

    async def seek(self, fd, offset, what, xdata=None):
        raise FopError(errno.ENOTSUP, "seek (SEEK_DATA/SEEK_HOLE) is not served by "
                                      "cluster/stripe, as in GlusterFS")

    async def rchecksum(self, fd, offset, length, xdata=None):
        raise FopError(errno.ENOTSUP, "rchecksum of a striped file: no piece holds the "
                                      "range, and the checksums do not combine")

    async def icreate(self, loc, mode, xdata=None):
        raise FopError(errno.ENOTSUP, "icreate is not served by cluster/stripe")

    async def namelink(self, loc, xdata=None):
        raise FopError(errno.ENOTSUP, "namelink is not served by cluster/stripe")

    # ======================================================================
    # helpers: children and their replies

    def _check_up(self) -> None:
        """Every piece is needed: refuse while any child is down."""
        for child, state in zip(self.children, self._child_state):
            if state != Event.CHILD_UP:
                raise FopError(errno.ENOTCONN, f"{self.name}: subvolume {child.name} "
                                               f"is {'down' if state else 'not up yet'}")

    async def _fan(self, calls: Sequence[Callable[[], Awaitable]]) -> list:
        """Run the calls concurrently; each result is its reply or its FopError."""
        if len(calls) <= 1:
            return [await _outcome(call) for call in calls]
        results: list = [None] * len(calls)

        async def run(i, call):
            results[i] = await _outcome(call)
        async with trio.open_nursery() as nursery:
            for i, call in enumerate(calls):
                nursery.start_soon(run, i, call)
        return results

    async def _run_ops(self, ops: list[_Op], call_of) -> list:
        """Run the ops of a plan: each child's in order, the children in
        parallel.  Results come back in the order of `ops`."""
        by_child: dict[int, list[int]] = {}
        for n, op in enumerate(ops):
            by_child.setdefault(op.child, []).append(n)
        results: list = [None] * len(ops)

        async def child_ops(numbers):
            for n in numbers:
                results[n] = await _outcome(call_of(ops[n]))
        if len(by_child) == 1:
            await child_ops(next(iter(by_child.values())))
            return results
        async with trio.open_nursery() as nursery:
            for numbers in by_child.values():
                nursery.start_soon(child_ops, numbers)
        return results

    def _raise_first(self, results: list) -> None:
        for r in results:
            if isinstance(r, FopError):
                raise r

    def _raise_first_piece(self, results: list, ops: list[_Op], what: str) -> None:
        """A piece that is gone makes the file unreadable: EIO, not ENOENT."""
        for op, r in zip(ops, results):
            if isinstance(r, FopError):
                raise self._piece_error(r, op.child, what)

    def _piece_error(self, error: FopError, index: int, what: str) -> FopError:
        if error.errno in (errno.ENOENT, errno.ESTALE):
            return FopError(errno.EIO, f"{what}: the piece on {self.children[index].name} "
                                       f"is missing")
        return error

    def _raise_unless_missing(self, rest: list, what: str = "") -> None:
        """The other children's results of a fop whose target may live on the
        first child only: a missing name is fine, another error is not."""
        for r in rest:
            if isinstance(r, FopError) and r.errno not in (errno.ENOENT, errno.ESTALE):
                if what:
                    self.log.error("%s: %s after the first subvolume succeeded", what, r)
                raise r

    @staticmethod
    def _kind_of(iatt: Iatt) -> Any:
        if iatt.is_reg:
            return FILE
        return DIRECTORY if iatt.is_dir else SINGLE

    def _settle_by_iatt(self, results: list, iatt_of, where) -> tuple[list, Any]:
        """Results of a fop sent to every child, judged by what the first
        child's reply says the inode is: a regular file needs every piece;
        a directory may be missing on other children (they are skipped); a
        single-child inode keeps only the first reply."""
        first = results[0]
        if isinstance(first, FopError):
            raise first
        kind = self._kind_of(iatt_of(first))
        if kind == SINGLE:
            return [first] + [None] * (len(results) - 1), SINGLE
        if kind == DIRECTORY:
            self._raise_unless_missing(results[1:])
            return [r if not isinstance(r, FopError) else None for r in results], DIRECTORY
        return self._settle_file(results, f"{where}"), FILE

    def _settle_file(self, results: list, what: str) -> list:
        """Every piece must have answered."""
        for i, r in enumerate(results):
            if isinstance(r, FopError):
                raise r if i == 0 else self._piece_error(r, i, what)
        return results

    def _settle_rest(self, rest: list, is_file: bool, what: str) -> list:
        if is_file:
            for i, r in enumerate(rest, 1):
                if isinstance(r, FopError):
                    self.log.error("%s: %s on %s after the first subvolume succeeded",
                                   what, r, self.children[i].name)
                    raise self._piece_error(r, i, what)
            return rest
        self._raise_unless_missing(rest, what)
        return [r if not isinstance(r, FopError) else None for r in rest]

    def _settle_fd(self, results: list, ctx: _FdCtx, what: str) -> list:
        """Results of an fd fop sent to ctx.children, aligned to all children."""
        aligned: list = [None] * len(self.children)
        for i, r in zip(ctx.children, results):
            if isinstance(r, FopError):
                raise r if i == 0 else self._piece_error(r, i, what)
            aligned[i] = r
        return aligned

    async def _new_entry_made(self, first, rest: list, loc: Loc, gfid: GFID,
                              fd: Fd | None = None, rmdir: bool = False) -> list:
        """The other children's results of an entry the first child made: if
        one failed, take the entry away again from those that made it and
        raise (a stale piece on a child is EIO, not the first child's say)."""
        failed = [(i, r) for i, r in enumerate(rest, 1) if isinstance(r, FopError)]
        if not failed:
            return [first] + rest
        made = [0] + [i for i, r in enumerate(rest, 1) if not isinstance(r, FopError)]
        index, error = failed[0]
        self.log.error("%s: %s on %s; removing it from %s", loc, error,
                       self.children[index].name,
                       ", ".join(self.children[i].name for i in made))
        target = Loc(path=loc.path, gfid=gfid, pargfid=loc.pargfid, name=loc.name)
        undo = []
        for i in made:
            child = self.children[i]
            if fd is not None:
                undo.append(functools.partial(_then, child.release, (fd, None),
                                              child.unlink, (target, 0, None)))
            elif rmdir:
                undo.append(functools.partial(child.rmdir, target, 0, None))
            else:
                undo.append(functools.partial(child.unlink, target, 0, None))
        for r in await self._fan(undo):
            if isinstance(r, FopError):
                self.log.error("%s: could not undo: %s", loc, r)
        if error.errno in (errno.EEXIST, errno.ENOENT):
            raise FopError(errno.EIO, f"{loc}: {error} on {self.children[index].name} "
                                      f"after the first subvolume made it")
        raise error

    async def _opened_everywhere(self, rest: list, fd: Fd, loc: Loc) -> None:
        """The other children's opens of a file the first child opened: on a
        failure release what was opened and raise."""
        if not any(isinstance(r, FopError) for r in rest):
            return
        await self._release_opened([True] + rest, fd)
        for i, r in enumerate(rest, 1):
            if isinstance(r, FopError):
                raise self._piece_error(r, i, f"open {loc}")

    async def _release_opened(self, results: list, fd: Fd, directory: bool = False) -> None:
        calls = [functools.partial(getattr(self.children[i],
                                           "releasedir" if directory else "release"), fd, None)
                 for i, r in enumerate(results) if not isinstance(r, FopError)]
        await self._fan(calls)

    async def _lookup_all(self, loc: Loc) -> list:
        req = self._ask_geometry(None)
        results = await self._fan([functools.partial(c.lookup, loc, req)
                                   for c in self.children])
        replies, _ = self._settle_by_iatt(results, lambda r: r.iatt, loc)
        return replies

    # ======================================================================
    # helpers: geometry

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
        known = self._shapes.get(where.gfid) if where.gfid is not None else None
        if isinstance(known, Geometry):
            return known
        if not (where.path or where.name):
            raise FopError(errno.EINVAL, f"{where}: use-xattr is off and the file's path "
                                         f"is unknown: its stripe geometry cannot be told")
        return self._new_geometry(where)

    def _remember(self, gfid: GFID | None, shape: Any) -> None:
        if gfid is None:
            return
        self._shapes[gfid] = shape
        self._shapes.move_to_end(gfid)
        while len(self._shapes) > _GEOMETRY_CACHE:
            self._shapes.popitem(last=False)

    async def _shape_of(self, loc: Loc) -> Any:
        """The inode's shape (Geometry, DIRECTORY or SINGLE), remembered or
        looked up on every child."""
        if loc.gfid is not None:
            shape = self._shapes.get(loc.gfid)
            if shape is not None:
                return shape
        replies = await self._lookup_all(loc)
        iatt = replies[0].iatt
        kind = self._kind_of(iatt)
        return self._learn(replies, loc, kind) if kind == FILE else kind

    async def _shape_for_merge(self, iatt: Iatt) -> Any:
        return await self._shape_of(Loc(gfid=iatt.gfid)) if iatt.is_reg else None

    async def _ctx_of(self, fd: Fd) -> _FdCtx:
        """The fd's context; an anonymous fd (never opened here) learns its
        inode's shape from the cache or a lookup by gfid."""
        ctx = fd.ctx.get(self)
        if ctx is not None:
            return ctx
        if fd.gfid is None:
            raise FopError(errno.EBADFD, "an fd without a gfid")
        shape = await self._shape_of(Loc(gfid=fd.gfid))
        if isinstance(shape, Geometry):
            ctx = _FdCtx(shape, bool(fd.flags & os.O_APPEND), self._all)
        else:
            ctx = _FdCtx(None, False, self._all if shape == DIRECTORY else (0,))
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

    # ======================================================================
    # helpers: gfids, attributes

    @staticmethod
    def _gfid_req(xdata: dict, gfid: GFID) -> dict:
        out = dict(xdata)
        out[GFID_REQ] = gfid
        return out

    def _with_gfid_req(self, xdata: dict | None) -> tuple[dict, GFID]:
        """Every child must give a new entry the same gfid: make sure there
        is a gfid-req (gfapi and the FUSE bridge always send one)."""
        out = dict(xdata) if xdata else {}
        req = out.get(GFID_REQ)
        if isinstance(req, (bytearray, memoryview)):
            req = bytes(req)
        gfid = GFID(req) if req is not None else GFID.random()
        out[GFID_REQ] = gfid
        return out, gfid

    def _merge(self, iatts: list[Iatt | None], geometry: Geometry | None) -> Iatt | None:
        """One inode's attributes from its children's (one per child, None
        where a child has nothing): the first child's, with the size the
        pieces imply, their blocks summed and the latest of each time."""
        present = [(i, ia) for i, ia in enumerate(iatts) if ia is not None]
        if not present:
            return None
        merged = dataclasses.replace(present[0][1])
        if len(present) == 1 and geometry is None:
            return merged
        if geometry is not None:
            merged.size = max(geometry.implied_size(i, ia.size) for i, ia in present)
        else:
            merged.size = max(ia.size for _, ia in present)
        merged.blocks = sum(ia.blocks for _, ia in present)
        for sec, nsec in (("atime", "atime_nsec"), ("mtime", "mtime_nsec"),
                          ("ctime", "ctime_nsec")):
            latest = max(present, key=lambda p: (getattr(p[1], sec), getattr(p[1], nsec)))[1]
            setattr(merged, sec, getattr(latest, sec))
            setattr(merged, nsec, getattr(latest, nsec))
        return merged

    def _prepost(self, replies: list, geometry: Geometry | None) -> PrePostReply:
        first = next(r for r in replies if r is not None)
        return PrePostReply(self._merge([r.prebuf if r else None for r in replies], geometry),
                            self._merge([r.postbuf if r else None for r in replies], geometry),
                            xdata=first.xdata)

    def _entry_reply(self, replies: list, geometry: Geometry | None) -> EntryReply:
        return EntryReply(self._merge([r.iatt if r else None for r in replies], geometry),
                          self._merge([r.preparent if r else None for r in replies], None),
                          self._merge([r.postparent if r else None for r in replies], None),
                          xdata=replies[0].xdata)

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
        self._raise_first_piece(stats, [_Op(i, 0) for i in others], f"writev {fd}")
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
        self._raise_first_piece(stats, [_Op(i, 0) for i in others], f"{name} {fd}")
        pre: list[Iatt | None] = [None] * geometry.count
        post: list[Iatt | None] = [None] * geometry.count
        for op, r in zip(ops, results):
            if pre[op.child] is None:
                pre[op.child] = r.prebuf
            post[op.child] = r.postbuf
        for i, r in zip(others, stats):
            pre[i] = post[i] = r.iatt
        return PrePostReply(self._merge(pre, geometry), self._merge(post, geometry))

    def dump_state(self) -> dict:
        return {"children": {c.name: (s.name if s else None)
                             for c, s in zip(self.children, self._child_state)},
                "reported": self._reported.name if self._reported else None,
                "known_inodes": len(self._shapes),
                "appending_files": len(self._append_locks)}


#: readlink and symlink: symlinks live on the first child; the lock fops:
#: one child arbitrates; the rest act on what the first child alone keeps
FIRST_CHILD_FOPS = ("access", "readlink", "symlink", "readdir", "xattrop", "fxattrop",
                    "inodelk", "finodelk", "entrylk", "fentrylk", "lk", "lease",
                    "getactivelk", "setactivelk", "ipc")

#: the fops stripe sends to the first child only (stripe.c's defaults)
FOP_METHODS = Family(
    module="xlators.cluster.stripe_fops", owner="Stripe",
    doc="{name}: to the first child, which holds the namespace.",
    fop_names=lambda: FIRST_CHILD_FOPS,
    template="""
async def {name}(self, {params}, xdata=None):
    self._check_up()
    return await self.first_child.{name}({params}, xdata)
""")
install(Stripe, FOP_METHODS)


async def _outcome(call):
    try:
        return await call()
    except FopError as e:
        return e


async def _then(first, first_args, second, second_args):
    """Two calls in order, the second whatever error the first gave."""
    try:
        await first(*first_args)
    except FopError:
        pass
    return await second(*second_args)


def _as_view(data) -> memoryview:
    if isinstance(data, (list, tuple)):
        data = b"".join(data)
    view = memoryview(data)
    return view if view.format == "B" and view.ndim == 1 else view.cast("B")


def _segments_in_order(ops: list[_Op], results: list, pad: bool = False):
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


def _count_in_order(ops: list[_Op], results: list) -> tuple[int, tuple | None]:
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


TRANSLATOR = Stripe
