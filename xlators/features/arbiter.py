"""features/arbiter: the third brick of "replica 3 arbiter 1" keeps no data.

Follows GlusterFS's features/arbiter (xlators/features/arbiter/src/arbiter.c),
which glusterd puts right above storage/posix on the last brick of each
arbiter replica set.  The arbiter holds every name, attribute, xattr and -
above all - the AFR changelogs, so it can break ties, but no file content:

* writev, truncate, ftruncate, fallocate, discard and zerofill succeed
  without reaching storage/posix.  writev answers the length it was given
  (cluster/replicate sends the arbiter a single byte and counts it as the
  whole write); all of them answer the attributes last seen for the inode,
  and writev honours the open-fd-count and write-is-append requests.
* readv and seek answer ENOSYS: replicate never reads from an arbiter.
* everything else - lookup, stat, xattrs, xattrop, the namespace fops -
  goes to storage/posix, so files exist on the arbiter with size 0.

Departure: GlusterFS remembers the attributes of a lookup only; here the
attributes of any lookup, stat or fstat are remembered, and an inode never
looked up gets its attributes from a stat through the child instead of an
all-zero iatt (the size stays the size posix reports, i.e. 0).
"""

from __future__ import annotations

import errno
from collections import OrderedDict

from glusterpy.fops import FopError, Iatt, Loc, PrePostReply, UInt, WriteReply
from glusterpy.keys import OPEN_FD_COUNT, WRITE_IS_APPEND
from glusterpy.xlator import Translator

_CACHE_MAX = 4096


class Arbiter(Translator):
    """features/arbiter: see the module docstring."""

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self._iatts: OrderedDict = OrderedDict()

    # -- remembering attributes -------------------------------------------

    async def lookup(self, loc, xdata=None):
        reply = await self.first_child.lookup(loc, xdata)
        self._remember(reply.iatt)
        return reply

    async def stat(self, loc, xdata=None):
        reply = await self.first_child.stat(loc, xdata)
        self._remember(reply.iatt)
        return reply

    async def fstat(self, fd, xdata=None):
        reply = await self.first_child.fstat(fd, xdata)
        self._remember(reply.iatt)
        return reply

    # -- data fops answered here ----------------------------------------------

    async def writev(self, fd, data, offset, flags, xdata=None):
        buf = await self._iatt_of_fd(fd)
        count = sum(len(b) for b in data) if isinstance(data, (list, tuple)) else len(data)
        reply_x = None
        if xdata and fd.gfid is not None:
            reply_x = {}
            if OPEN_FD_COUNT in xdata:
                reply_x[OPEN_FD_COUNT] = UInt(1)
            if WRITE_IS_APPEND in xdata:
                reply_x[WRITE_IS_APPEND] = UInt(1)
        return WriteReply(buf, buf, count=count, xdata=reply_x or None)

    async def truncate(self, loc, offset, xdata=None):
        buf = await self._iatt_of_loc(loc)
        return PrePostReply(buf, buf)

    async def ftruncate(self, fd, offset, xdata=None):
        buf = await self._iatt_of_fd(fd)
        return PrePostReply(buf, buf)

    async def fallocate(self, fd, mode, offset, length, xdata=None):
        buf = await self._iatt_of_fd(fd)
        return PrePostReply(buf, buf)

    async def discard(self, fd, offset, length, xdata=None):
        buf = await self._iatt_of_fd(fd)
        return PrePostReply(buf, buf)

    async def zerofill(self, fd, offset, length, xdata=None):
        buf = await self._iatt_of_fd(fd)
        return PrePostReply(buf, buf)

    async def readv(self, fd, size, offset, flags, xdata=None):
        raise FopError(errno.ENOSYS, "an arbiter brick holds no data")

    async def seek(self, fd, offset, what, xdata=None):
        raise FopError(errno.ENOSYS, "an arbiter brick holds no data")

    # -- helpers ----------------------------------------------------------------

    def _remember(self, iatt: Iatt | None) -> None:
        if iatt is None or iatt.gfid is None:
            return
        self._iatts[iatt.gfid] = iatt
        self._iatts.move_to_end(iatt.gfid)
        while len(self._iatts) > _CACHE_MAX:
            self._iatts.popitem(last=False)

    async def _iatt_of_fd(self, fd) -> Iatt:
        cached = self._iatts.get(fd.gfid)
        if cached is not None:
            return cached
        reply = await self.first_child.fstat(fd, None)
        self._remember(reply.iatt)
        return reply.iatt

    async def _iatt_of_loc(self, loc: Loc) -> Iatt:
        cached = self._iatts.get(loc.gfid) if loc.gfid is not None else None
        if cached is not None:
            return cached
        reply = await self.first_child.stat(loc, None)
        self._remember(reply.iatt)
        return reply.iatt


TRANSLATOR = Arbiter
