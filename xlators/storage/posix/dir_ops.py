"""Directories (GlusterFS's posix_opendir, posix_readdir and
posix_readdirp_fill): opendir, and listings from getdents64(2) resumed at
the kernel's d_off cookies."""

from __future__ import annotations

import concurrent.futures
import ctypes
import errno
import operator
import os
import stat
import struct
import threading
import time

from glusterpy.fops import GFID, NULL_GFID, ROOT_GFID, Dirent, DirReply, FopError, Iatt, OpenReply
from glusterpy.keys import READDIR_SKIP_DIRS

from .helpers import MdataCache, Node, OpenFile, entry_path, inline_fop, libc
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


#: A cold directory's entries are read from the disk in parallel first
#: (`_prefetch_cold`): on ext4 with 256-byte inodes the mdata xattr never
#: fits in the inode, so each file's first listing reads its inode and a
#: 4 KiB xattr block of its own - a random read, ~100 us on the disks of
#: bench/RESULTS.md, one after the other.  With PREFETCH_THREADS of them in
#: flight the disk answers ~3x as many per second (bench/notes/metadata.md).
PREFETCH_THREADS = 8
#: fewer entries to read than this: not worth a hand-off
PREFETCH_MIN = 32
#: the first PREFETCH_PROBE misses are read here, timed: faster than
#: PREFETCH_COLD_NS each on average and the kernel has them cached - no
#: prefetch (it would only add the threads' cost to a warm listing)
PREFETCH_PROBE = 4
PREFETCH_COLD_NS = 30_000

_prefetch_pool: concurrent.futures.ThreadPoolExecutor | None = None
_prefetch_lock = threading.Lock()


def _prefetcher() -> concurrent.futures.ThreadPoolExecutor:
    global _prefetch_pool
    with _prefetch_lock:
        if _prefetch_pool is None:
            _prefetch_pool = concurrent.futures.ThreadPoolExecutor(
                PREFETCH_THREADS, thread_name_prefix="posix-prefetch")
        return _prefetch_pool


def _warm(dirfd: int, names) -> None:
    """Bring each entry's inode and xattrs into the kernel's caches:
    llistxattr resolves the name (its inode) and reads the xattr block;
    what it returns is not needed.  Errors are the listing's to find."""
    for name in names:
        try:
            os.listxattr(entry_path(dirfd, name), follow_symlinks=False)
        except OSError:
            pass


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
            if len(entries) >= PREFETCH_MIN:
                self._prefetch_cold(of, entries)
            keep = []
            asked = Asked.of(xdata) if xdata else None
            for ent in entries:
                if self._fill_dirent(of, ent, at_root, xdata, asked):
                    keep.append(ent)
            entries = keep
        return entries

    def _prefetch_cold(self, of: "OpenFile", entries: list[Dirent]) -> None:
        """Read the entries this listing will find neither in MdataCache
        nor, as a probe of the first few shows, in the kernel's caches,
        PREFETCH_THREADS at a time; the fill that follows then finds them
        in memory.  The fop waits for it (it is inline, as the serial reads
        it replaces were)."""
        fd = of.osfd
        named = [e for e in entries if e.name != "." and e.name != ".."]
        misses = [named[i].name for i in self._mdata.unlisted(os.fstat(fd).st_dev,
                                                              [e.ino for e in named])]
        if len(misses) < PREFETCH_MIN:
            return
        probe, rest = misses[:PREFETCH_PROBE], misses[PREFETCH_PROBE:]
        start = time.perf_counter_ns()
        _warm(fd, probe)
        if time.perf_counter_ns() - start < PREFETCH_COLD_NS * len(probe):
            return
        self.prefetched += len(rest)
        n = PREFETCH_THREADS
        for done in _prefetcher().map(_warm, [fd] * n, [rest[i::n] for i in range(n)]):
            pass

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
