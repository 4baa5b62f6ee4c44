"""Directories (GlusterFS's posix_opendir, posix_readdir and
posix_readdirp_fill): opendir, and listings from getdents64(2) resumed at
the kernel's d_off cookies."""

from __future__ import annotations

import ctypes
import errno
import operator
import os
import stat
import struct

from glusterpy.fops import GFID, NULL_GFID, ROOT_GFID, Dirent, DirReply, FopError, Iatt, OpenReply
from glusterpy.keys import READDIR_SKIP_DIRS

from .helpers import MdataCache, Node, OpenFile, inline_fop, libc
from .mdata import _IATT_FIELDS, apply_mdata
from .xattr_ops import Asked, _stored_xattrs


#: an iatt's fields as a tuple, in Iatt's order (one C call: a generator
#: of getattrs costs ~4 us more per entry of a listing not seen before)
_iatt_fields = operator.attrgetter(*_IATT_FIELDS)

#: sizeof(gf_dirent_t) on x86_64: what GlusterFS charges per readdir entry
DIRENT_COST = 208

_DIRENT64 = struct.Struct("=QqHB")  # linux_dirent64 header; d_name follows
_DT_DIR, _DT_UNKNOWN = 4, 0
GETDENTS_BUF = 64 * 1024

_c_getdents64 = libc.getdents64
_c_getdents64.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_size_t)
_c_getdents64.restype = ctypes.c_ssize_t


class PosixDirOps:
    """opendir, readdir, readdirp."""

    @inline_fop
    def opendir(self, loc, fd, xdata=None):
        node = self._inode(loc)
        if not node.is_dir:
            raise FopError(errno.ENOTDIR)
        osfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.at_fd)
        self._adopt(fd, osfd, os.O_RDONLY, node.gfid, is_dir=True)
        if fd.gfid is None:
            fd.gfid = node.gfid
        self._mdata_touch(osfd, self._atime_asked())
        return OpenReply(fd)

    @inline_fop
    def readdir(self, fd, size, offset, xdata=None):
        """Entries from the d_off cookie `offset` (0 = start) within `size`
        bytes as GlusterFS counts them; Dirent.off resumes after the entry."""
        of = self._of(fd, want_dir=True)
        return DirReply(self._list(of, size, offset, False, xdata))

    @inline_fop
    def readdirp(self, fd, size, offset, xdata=None):
        """readdir with each entry's iatt (and the xattrs xdata asks for)."""
        of = self._of(fd, want_dir=True)
        return DirReply(self._list(of, size, offset, True, xdata))

    def _list(self, of: "OpenFile", size: int, offset: int, plus: bool,
              xdata: dict | None) -> list[Dirent]:
        """Entries from `offset` (a d_off cookie, 0 = start) within the budget."""
        fd = of.osfd
        os.lseek(fd, offset, os.SEEK_SET)
        at_root = of.gfid == ROOT_GFID
        skip_dirs = bool(xdata and xdata.get(READDIR_SKIP_DIRS))
        entries: list[Dirent] = []
        filled = 0
        buf = self._dentbuf
        full = False
        while not full:
            n = _c_getdents64(fd, buf, GETDENTS_BUF)
            if n < 0:
                e = ctypes.get_errno()
                raise OSError(e, os.strerror(e))
            if n == 0:
                break
            raw = ctypes.string_at(buf, n)
            pos = 0
            while pos < n:
                ino, off, reclen, dtype = _DIRENT64.unpack_from(raw, pos)
                bname = raw[pos + _DIRENT64.size:pos + reclen].split(b"\0", 1)[0]
                pos += reclen
                if at_root and bname == b".glusterfs":
                    continue
                if dtype == _DT_UNKNOWN or (skip_dirs and dtype == _DT_DIR):
                    try:
                        dtype = _dtype(os.stat(bname, dir_fd=fd, follow_symlinks=False).st_mode)
                    except OSError:
                        pass
                    if skip_dirs and dtype == _DT_DIR:
                        continue
                cost = DIRENT_COST + len(bname) + 1
                if entries and filled + cost > size:
                    full = True
                    break
                filled += cost
                entries.append(Dirent(os.fsdecode(bname), ino, off, dtype))
        if plus:
            keep = []
            asked = Asked.of(xdata) if xdata else None
            for ent in entries:
                if self._fill_dirent(of, ent, at_root, xdata, asked):
                    keep.append(ent)
            entries = keep
        return entries

    def _fill_dirent(self, of: "OpenFile", ent: Dirent, at_root: bool,
                     xdata: dict | None, asked: "Asked | None" = None) -> bool:
        fd = of.osfd
        name = ent.name
        target = None     # an entry's /proc path is made only when its xattrs are read
        try:
            if name == "." or (name == ".." and at_root):
                st, gfid, target = os.fstat(fd), of.gfid, fd
                node = Node.directory(fd, st, gfid)
                ia = self._iatt(node)
            else:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                # gfid and mdata as _read_gfid and _iatt read them, kept
                # while the inode's ctime stands (MdataCache.listed)
                ctime = self.opts.ctime
                cache = self._mdata
                raw, mdata = cache.listed(fd, name, st, ctime)
                gfid = GFID(raw) if raw is not None and len(raw) == 16 else None
                node = Node.entry(fd, name, st, gfid)
                # every field Iatt.from_stat takes (dev and ino key the
                # table), not the stat_result: held per inode, it is the
                # larger part of an entry (its float times)
                made_of = (st.st_mode, st.st_nlink, st.st_uid, st.st_gid, st.st_size,
                           st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns, st.st_blocks,
                           st.st_blksize, st.st_rdev, ctime)
                fields = cache.listed_iatt(st, made_of)
                if fields:
                    ia = Iatt(*fields)
                else:
                    ia = Iatt.from_stat(st, gfid or NULL_GFID)
                    if not node.is_dir and ia.nlink and gfid is not None:
                        ia.nlink -= 1     # the handle is not a name
                    if ctime:
                        apply_mdata(ia, mdata)
                    cache.keep_iatt(st, made_of, _iatt_fields(ia))
        except OSError:
            return False     # gone since getdents: skip it, as GlusterFS does
        ent.iatt = ia
        if ia.ino:
            ent.ino = ia.ino
        if xdata:
            want = asked.stored if asked is not None else None
            try:
                if want is None or target is not None:
                    ent.xdata = self._fill_xattrs(node.target if target is None else target,
                                                  xdata, ia, node, asked) or None
                    return True
                # the stored xattrs asked, held with the gfid and mdata while
                # ctime stands (MdataCache.keep_xattrs): a listing seen before
                # costs the lstat alone per entry
                held = self._mdata.listed_xattrs(st, want)
                if held is None:
                    generation = MdataCache.xattr_generation
                    held = _stored_xattrs(node.target, asked)
                    self._mdata.keep_xattrs(st, want, held, generation)
                ent.xdata = self._fill_xattrs(None, xdata, ia, node, asked, held) or None
            except OSError:
                return False     # gone since its lstat: skipped as above
        return True


def _dtype(mode: int) -> int:
    return {stat.S_IFREG: 8, stat.S_IFDIR: 4, stat.S_IFLNK: 10, stat.S_IFCHR: 2,
            stat.S_IFBLK: 6, stat.S_IFIFO: 1, stat.S_IFSOCK: 12}.get(stat.S_IFMT(mode), 0)
