"""The times GlusterFS 10 reports (posix-metadata.c): the
trusted.glusterfs.mdata xattr's format, iatts with its times, and moving
them as fops change a file (the caller's clock, utime's flags)."""

from __future__ import annotations

import dataclasses
import errno
import os
import struct
import time

from glusterpy import fops
from glusterpy.fops import GFID, NULL_GFID, FopError, Iatt, Reply
from glusterpy.keys import MDATA_KEY, SET_CTIME_MDATA

from .helpers import MdataCache, Node, OpenFile, xget_quiet, xset


#: _mdata_store's `raw` when the xattr has not been read in this fop
_UNREAD = object()

#: Iatt's fields in its __init__'s order (what _fd_iatt keeps per open file)
_IATT_FIELDS = tuple(f.name for f in dataclasses.fields(Iatt))

#: mdata flags (GlusterFS's MDATA_CTIME/MTIME/ATIME, stack.h)
MDATA_C, MDATA_M, MDATA_A = 1, 2, 4
NS = 1_000_000_000

# posix_mdata_disk_t: version, flags, then ctime, mtime, atime as
# (sec, nsec), all big-endian, packed
_MDATA = struct.Struct(">BQqQqQqQ")


def mdata_decode(raw: bytes | None) -> tuple[int, int, int] | None:
    """(ctime, mtime, atime) in ns from posix_mdata_disk_t, or None."""
    if raw is None or len(raw) < _MDATA.size:
        return None
    _, _, cs, cn, ms, mn, as_, an = _MDATA.unpack_from(raw)
    return cs * NS + cn, ms * NS + mn, as_ * NS + an


def mdata_encode(c: int, m: int, a: int) -> bytes:
    return _MDATA.pack(1, 0, *divmod(c, NS), *divmod(m, NS), *divmod(a, NS))


def apply_mdata(ia: Iatt, raw: bytes | None) -> None:
    times = mdata_decode(raw)
    if times is not None:
        _set_iatt_times(ia, *times)


def _set_iatt_times(ia: Iatt, c: int, m: int, a: int) -> None:
    ia.ctime, ia.ctime_nsec = divmod(c, NS)
    ia.mtime, ia.mtime_nsec = divmod(m, NS)
    ia.atime, ia.atime_nsec = divmod(a, NS)


class PosixMdata:
    """iatts and the mdata times."""

    def _iatt(self, node: "Node", read: dict | None = None) -> Iatt:
        """The iatt of `node`; `read`, when given, gets the mdata xattr read
        for it (MDATA_KEY -> the bytes, or None when absent), so a lookup
        that was asked for that key too does not read it again."""
        ia = Iatt.from_stat(node.st, node.gfid or NULL_GFID)
        if not node.is_dir and ia.nlink and node.gfid is not None:
            ia.nlink -= 1     # the handle is not a name
        if self.opts.ctime:
            raw = xget_quiet(node.target, MDATA_KEY)
            apply_mdata(ia, raw)
            if read is not None:
                read[MDATA_KEY] = raw
        return ia

    def _iatt_nlink(self, node: "Node") -> int:
        n = node.st.st_nlink
        return n - 1 if not node.is_dir and node.gfid is not None and n else n

    def _fd_iatt(self, of: "OpenFile", touch: int = 0, known: tuple | None = None) -> Iatt:
        """The iatt of an open file, from an fstat now (GlusterFS's posix
        does the same after a read or write, for the reply's postbuf).

        What it is made of - the fstat, the gfid, the mdata times (cached in
        `_mdata` while ctime and the inode's last store stand), the ctime
        option - is kept per open file with the iatt's fields: when the
        fstat shows the same file (every field of it, the ns times
        included) and nothing else moved, the fields are reused and only a
        new Iatt is made (~1.5 us instead of ~6 us: bench/notes/qemu.md
        (11)).  Each reply still gets its own Iatt: a translator above may
        change it.

        With `touch`, the flagged mdata times move first (`_mdata_touch`),
        then the fstat: what was stored is then kept as above, so the next
        fop on the file reads no xattr either.  `known` is `_fd_known`'s
        answer from earlier in the same fop: the stored mdata it holds is
        moved without reading it again while no store went through this
        process on the file since (a write: one fsetxattr and no fgetxattr,
        as GlusterFS's posix_set_ctime with its inode-context copy)."""
        ctime = self.opts.ctime
        if touch and ctime:
            raw = _UNREAD
            if known is not None and known[0] == MdataCache.last_store(of.inode):
                raw = known[1]
            stored, n = self._mdata_store(of.osfd, touch, raw, of.inode)
            st = os.fstat(of.osfd)
            of.inode = (st.st_dev, st.st_ino)
            ia = Iatt.from_stat(st, of.gfid or NULL_GFID)
            if not of.is_dir and ia.nlink:
                ia.nlink -= 1
            if stored is None:
                return ia
            _set_iatt_times(ia, *mdata_decode(stored))
            self._mdata.put(st, stored, n)
            self._keep_fields(of, st, ctime, ia, stored, n)
            return ia
        st = os.fstat(of.osfd)
        inode = of.inode = (st.st_dev, st.st_ino)
        # stat_result's == compares the whole-second times only: the ns
        # times (and the fields outside its tuple) are in the key themselves
        key = (st, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks,
               st.st_blksize, st.st_rdev, of.gfid, ctime, MdataCache.last_store(inode))
        if key == of.iatt_key:
            return Iatt(*of.iatt_fields)
        ia = Iatt.from_stat(st, of.gfid or NULL_GFID)
        if not of.is_dir and ia.nlink:
            ia.nlink -= 1
        raw = None
        if ctime:
            raw = self._mdata.get(of.osfd, st)
            apply_mdata(ia, raw)
        of.iatt_key = key
        of.iatt_fields = tuple(getattr(ia, name) for name in _IATT_FIELDS)
        of.mdata = raw
        return ia

    @staticmethod
    def _keep_fields(of: "OpenFile", st: os.stat_result, ctime: bool, ia: Iatt,
                     raw: bytes | None, n: int) -> None:
        """`n`: the number of the store that wrote `raw` (MdataCache.stored)."""
        of.iatt_key = (st, st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks,
                       st.st_blksize, st.st_rdev, of.gfid, ctime, n)
        of.iatt_fields = tuple(getattr(ia, name) for name in _IATT_FIELDS)
        of.mdata = raw

    def _fd_known(self, of: "OpenFile") -> tuple | None:
        """Right after `_fd_iatt(of)`: (the file's last store then, as
        MdataCache.last_store numbers it, and the mdata xattr that iatt was
        made with), for `_fd_iatt(of, touch, known)` later in the same fop;
        None when ctime is off."""
        if not self.opts.ctime or of.iatt_key is None:
            return None
        return of.iatt_key[-1], of.mdata

    def _dir_iatt(self, dfd: int, gfid: GFID, touch: int = 0,
                  known: tuple | None = None) -> Iatt:
        """The iatt of the directory open as `dfd` (a parent's pre- or
        post-op); with `touch`, its flagged mdata times moved first.
        `known` is `_dir_pre`'s from earlier in the same fop: the mdata it
        holds is moved without reading it again while no store went
        through this process on the directory since; the store is then
        followed by the fstat, so what was stored is kept (MdataCache.put)
        for the next fop in the directory - a create storm reads the
        parent's mdata from neither disk nor xattr."""
        if not (touch and self.opts.ctime):
            return self._dir_pre(dfd, gfid)[0]
        raw = _UNREAD
        inode = None
        if known is not None:
            inode = known[0]
            if known[1] == MdataCache.last_store(inode):
                raw = known[2]
        stored, n = self._mdata_store(dfd, touch, raw, inode)
        st = os.fstat(dfd)
        ia = Iatt.from_stat(st, gfid)
        if stored is not None:
            _set_iatt_times(ia, *mdata_decode(stored))
            self._mdata.put(st, stored, n)
        else:
            apply_mdata(ia, self._mdata.get(dfd, st))
        return ia

    def _dir_pre(self, dfd: int, gfid: GFID, st: os.stat_result | None = None
                 ) -> tuple[Iatt, tuple | None]:
        """(the iatt of the directory open as `dfd`, what `_dir_iatt(...,
        known=)` takes later in the same fop).  `st`: its fstat, when the
        fop just took one (`_seen_dir`).  The mdata comes from MdataCache,
        kept while ctime and the directory's last store stand."""
        if st is None:
            st = os.fstat(dfd)
        ia = Iatt.from_stat(st, gfid)
        if not self.opts.ctime:
            return ia, None
        inode = (st.st_dev, st.st_ino)
        last = MdataCache.last_store(inode)
        raw = self._mdata.get(dfd, st)
        apply_mdata(ia, raw)
        return ia, (inode, last, raw)

    def _mdata_touch(self, target, flags: int, ia: Iatt | None = None,
                     inode: tuple[int, int] | None = None) -> None:
        """posix_set_mdata_xattr: move the flagged times to now (never back);
        a missing xattr is created with every time set to now.  "Now" is the
        client's clock when it sent one (`_clock`).  `inode`: the target's
        (st_dev, st_ino) when known (only its cached mdata is retired)."""
        if not self.opts.ctime or not flags:
            return
        stored = self._mdata_store(target, flags, _UNREAD, inode)[0]
        if stored is not None and ia is not None:
            _set_iatt_times(ia, *mdata_decode(stored))

    def _mdata_store(self, target, flags: int, raw,
                     inode: tuple[int, int] | None = None) -> tuple[bytes | None, int]:
        """`_mdata_touch`'s store: from `raw` (the xattr as stored, None when
        absent) or, when it is _UNREAD, from an fgetxattr now; (the value
        stored, or None when the store failed; the store's number)."""
        now = self._clock()
        cur = mdata_decode(xget_quiet(target, MDATA_KEY) if raw is _UNREAD else raw)
        if cur is None:
            c = m = a = now
        else:
            c, m, a = cur
            if flags & MDATA_C and now > c:
                c = now
            if flags & MDATA_M and now > m:
                m = now
            if flags & MDATA_A and now > a:
                a = now
        value = mdata_encode(c, m, a)
        try:
            n = xset(target, MDATA_KEY, value, 0, inode)
        except OSError as e:
            self.log.warning("storing %s failed: %s", MDATA_KEY, e)
            return None, MdataCache.seq
        return value, n

    @staticmethod
    def _clock() -> int:
        """The time this fop stamps, GlusterFS's frame->root->ctime: the
        client's clock when its features/utime sent one (the caller's
        ctime_ns), so that every brick of a replica stores the same times;
        otherwise the brick's."""
        stamped = fops.caller.get().ctime_ns
        return stamped if stamped is not None else time.time_ns()

    @staticmethod
    def _atime_asked() -> int:
        """MDATA_A when the client's features/utime asks reads, opens and
        opendirs to move atime (its noatime is off), as posix_set_ctime
        honours the frame's flags; else 0."""
        return fops.caller.get().flags & MDATA_A

    def _set_legacy_mdata(self, target, node, of, times) -> Reply:
        """posix_set_mdata_xattr_legacy_files: the client's features/utime
        found no stored times on lookup (a file made before the ctime feature)
        and sends its own - store them, or keep the later of each time when
        another client stored some meanwhile.  `times` is the dict's MDATA
        value (rpc.MdataIatt: atime/mtime/ctime with *_nsec)."""
        try:
            incoming = tuple(getattr(times, f) * NS + getattr(times, f + "_nsec")
                             for f in ("ctime", "mtime", "atime"))
        except (AttributeError, TypeError):
            raise FopError(errno.EINVAL, f"{SET_CTIME_MDATA} needs an mdata value") from None
        cur = mdata_decode(xget_quiet(target, MDATA_KEY))
        if cur is not None:
            incoming = tuple(max(a, b) for a, b in zip(incoming, cur))
        xset(target, MDATA_KEY, mdata_encode(*incoming), 0)
        return Reply()
