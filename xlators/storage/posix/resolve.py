"""Resolution (GlusterFS's posix-handle.c MAKE_INODE_HANDLE and
posix_fd_ctx_get): a loc or a gfid to an inode through directory
descriptors, the cache of those descriptors, and an Fd to its OS descriptor
(opened on demand for anonymous fds)."""

from __future__ import annotations

import errno
import os
import stat
import weakref

from glusterpy import fops
from glusterpy.fops import GFID, NULL_GFID, ROOT_GFID, FopError
from glusterpy.keys import GFID_KEY

from .handles import hrel, parse_dir_handle
from .helpers import (DIR_CACHE_MAX, HIDDEN_DIR, O_NOFOLLOW, UNLINK_DIR, Node, OpenFile, entry_path,
                      quiet, xget)


_ANON_STRIP = os.O_CREAT | os.O_EXCL | os.O_TRUNC | os.O_NOCTTY
_MAX_DIR_DEPTH = 4096


def _check_name(name) -> None:
    if not isinstance(name, str):
        raise FopError(errno.EINVAL, f"invalid name {name!r}")
    fops.check_name(name)
    if name in (".", ".."):
        raise FopError(errno.EINVAL, f"invalid name {name!r}")


def _path_parts(path: str) -> list[str]:
    parts = [p for p in path.split("/") if p]
    for p in parts:
        _check_name(p)
    return parts


class PosixResolve:
    """Locs, gfids and fds to what the syscalls take."""

    def _node(self, gfid: GFID) -> "Node":
        """The inode a gfid names, through its handle."""
        if gfid == ROOT_GFID:
            return Node.directory(self._root, os.fstat(self._root), ROOT_GFID)
        if gfid == NULL_GFID:
            raise FopError(errno.EINVAL, "null gfid")
        rel = hrel(gfid)
        st = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        if stat.S_ISLNK(st.st_mode) and st.st_nlink == 1:
            dfd = self._dir_fd(gfid)
            return Node.directory(dfd, os.fstat(dfd), gfid)
        return Node(gfid, st, self._hdir, rel)

    def _dir_fd(self, gfid: GFID) -> int:
        """An open descriptor of the directory a gfid names (cached).

        The handle symlink `../../pp/qq/<pargfid>/<name>` is followed one
        step at a time: the parent's descriptor, then `name` opened in it with
        O_NOFOLLOW, then its gfid checked - the kernel never follows a link.
        """
        if gfid == ROOT_GFID:
            return self._root
        fd = self._cached_dir(gfid)
        if fd is not None:
            return fd
        chain: list[tuple[GFID, str]] = []
        g = gfid
        while True:
            pg, name = self._read_dir_handle(g)
            chain.append((g, name))
            if pg == ROOT_GFID:
                base = self._root
                break
            cached = self._cached_dir(pg)
            if cached is not None:
                base = cached
                break
            if len(chain) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP, "directory handles nest too deep")
            g = pg
        for g, name in reversed(chain):
            base = self._open_child_dir(base, name, g)
            self._dirs[g] = base
        return base

    def _cached_dir(self, gfid: GFID) -> int | None:
        fd = self._dirs.get(gfid)
        if fd is None:
            return None
        st = os.fstat(fd)
        if st.st_nlink:     # a removed directory has no links
            self._dirs.move_to_end(gfid)
            self._dir_seen = (fd, st)
            return fd
        self._retired.append(self._dirs.pop(gfid))
        return None

    def _forget_dir(self, gfid: GFID) -> None:
        fd = self._dirs.pop(gfid, None)
        if fd is not None:
            self._retired.append(fd)

    def _trim_dir_cache(self) -> None:
        """Close what the cache dropped and its least recently used entries.
        Only between fops: a fop may still hold descriptors it got from the
        cache, so fops retire descriptors instead of closing them."""
        while len(self._dirs) > DIR_CACHE_MAX:
            self._retired.append(self._dirs.popitem(last=False)[1])
        retired, self._retired = self._retired, []
        for fd in retired:
            quiet(os.close, fd)

    def _read_dir_handle(self, gfid: GFID) -> tuple[GFID, str]:
        """(parent gfid, name) from a directory's handle symlink."""
        rel = hrel(gfid)
        st = os.stat(rel, dir_fd=self._hdir, follow_symlinks=False)
        if not (stat.S_ISLNK(st.st_mode) and st.st_nlink == 1):
            raise FopError(errno.ENOTDIR, f"{gfid} is not a directory")
        return parse_dir_handle(os.readlink(rel, dir_fd=self._hdir), gfid)

    def _open_child_dir(self, base: int, name: str, gfid: GFID) -> int:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW, dir_fd=base)
        try:
            st = os.fstat(fd)
            if (st.st_ino, st.st_dev) == self._hdir_id:
                raise FopError(errno.ENOENT)
            if xget(fd, GFID_KEY) != gfid:
                raise FopError(errno.ESTALE, f"stale handle for directory {gfid}")
        except BaseException:
            os.close(fd)
            raise
        return fd

    def _resolve_dir_uncached(self, gfid: GFID) -> None:
        """Check that a directory handle still leads to a directory with this
        gfid, without touching the cache (safe in the janitor's thread)."""
        names = []
        g = gfid
        while g != ROOT_GFID:
            g, name = self._read_dir_handle(g)
            names.append(name)
            if len(names) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP)
        fd = os.dup(self._root)
        try:
            for name in reversed(names):
                nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW, dir_fd=fd)
                os.close(fd)
                fd = nfd
            if xget(fd, GFID_KEY) != gfid:
                raise FopError(errno.ESTALE)
        finally:
            os.close(fd)

    def _dir_path(self, gfid: GFID) -> str:
        """The path of a directory from the brick root, through its handles."""
        names = []
        g = gfid
        while g != ROOT_GFID:
            g, name = self._read_dir_handle(g)
            names.append(name)
            if len(names) > _MAX_DIR_DEPTH:
                raise FopError(errno.ELOOP)
        return "/" + "/".join(reversed(names))

    def _parent(self, loc) -> tuple[int, GFID, str]:
        """(parent directory fd, parent gfid, checked name) of an entry loc."""
        self._dir_seen = None
        if loc.pargfid is not None and loc.name is not None:
            name = loc.name
            _check_name(name)
            pgfid = loc.pargfid
            pfd = self._dir_fd(pgfid)
        elif loc.path is not None and loc.path.strip("/"):
            parts = _path_parts(loc.path)
            name = parts[-1]
            pfd, pgfid = self._walk(parts[:-1])
        else:
            raise FopError(errno.EINVAL, f"{loc}: no parent and name to act on")
        if name == HIDDEN_DIR and pgfid == ROOT_GFID:
            raise FopError(errno.EPERM, f"{HIDDEN_DIR} is private to the brick")
        return pfd, pgfid, name

    def _seen_dir(self, pfd: int) -> os.stat_result | None:
        """The fstat of `pfd` that the `_parent` just before took (checking
        that the cached descriptor's directory still has links), for the
        parent's pre-op iatt: nothing this fop did came between.  Taken
        once; None when `_parent` took none (the root, a walk by path)."""
        seen, self._dir_seen = self._dir_seen, None
        if seen is not None and seen[0] == pfd:
            return seen[1]
        return None

    def _walk(self, parts: list[str]) -> tuple[int, GFID]:
        """Walk directory names from the root without following symlinks."""
        fd, gfid = self._root, ROOT_GFID
        for name in parts:
            if name == HIDDEN_DIR and gfid == ROOT_GFID:
                raise FopError(errno.EPERM, f"{HIDDEN_DIR} is private to the brick")
            nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | O_NOFOLLOW, dir_fd=fd)
            raw = xget(nfd, GFID_KEY)
            if raw is None or len(raw) != 16:
                os.close(nfd)
                raise FopError(errno.ENODATA, f"{name}: directory has no gfid")
            gfid = GFID(raw)
            fd = self._cache_dir(gfid, nfd)
        return fd, gfid

    def _inode(self, loc) -> "Node":
        """The inode a loc names: by gfid, else by parent and name, else by path."""
        if loc.gfid is not None:
            return self._node(loc.gfid)
        if loc.name is None and loc.pargfid is None and loc.path in (None, "", "/"):
            if loc.path == "/":
                return self._node(ROOT_GFID)
            raise FopError(errno.EINVAL, "a loc needs a gfid, a parent and a name, or a path")
        pfd, pgfid, name = self._parent(loc)
        st = os.stat(name, dir_fd=pfd, follow_symlinks=False)
        self._not_hidden_dir(st)
        gfid = self._read_gfid(pfd, name)
        if stat.S_ISDIR(st.st_mode):
            if gfid is None:
                raise FopError(errno.ENODATA, f"{name}: directory has no gfid")
            return Node.directory(self._child_dir_fd(pfd, name, st, gfid), st, gfid)
        return Node.entry(pfd, name, st, gfid)

    def _child_dir_fd(self, pfd: int, name: str, st, gfid: GFID) -> int:
        """The cached descriptor of directory `name` in pfd, opened from the
        parent (not through the handle, which may be missing)."""
        fd = self._cached_dir(gfid)
        if fd is not None:
            cst = os.fstat(fd)
            if (cst.st_ino, cst.st_dev) == (st.st_ino, st.st_dev):
                return fd
        return self._cache_dir(gfid, self._open_child_dir(pfd, name, gfid))

    def _cache_dir(self, gfid: GFID, fd: int) -> int:
        """Keep a freshly opened directory descriptor, unless the cache holds
        one for the same directory already (then that one is used)."""
        cached = self._dirs.get(gfid)
        if cached is not None:
            cst, st = os.fstat(cached), os.fstat(fd)
            if (cst.st_ino, cst.st_dev) == (st.st_ino, st.st_dev):
                os.close(fd)
                self._dirs.move_to_end(gfid)
                return cached
            # two directories with one gfid (self-heal of a rename does this
            # for a while): the one just reached by name wins
            self._retired.append(self._dirs.pop(gfid))
        self._dirs[gfid] = fd
        return fd

    def _not_hidden_dir(self, st) -> None:
        # GlusterFS's posix_pstat: the handle directory itself does not exist
        if (st.st_ino, st.st_dev) == self._hdir_id:
            raise FopError(errno.ENOENT)

    def _read_gfid(self, dirfd: int, name: str) -> GFID | None:
        raw = xget(entry_path(dirfd, name), GFID_KEY)
        return GFID(raw) if raw is not None and len(raw) == 16 else None

    def _of(self, fd, want_dir: bool = False) -> "OpenFile":
        of = fd.ctx.get(self)
        if of is None:
            of = self._anon(fd)
        if want_dir and not of.is_dir:
            raise FopError(errno.ENOTDIR)
        return of

    def _anon(self, fd) -> "OpenFile":
        """Open an anonymous fd on demand through its gfid's handle."""
        if fd.gfid is None:
            raise FopError(errno.EBADF, "fd was never opened and names no gfid")
        gfid = GFID(fd.gfid)
        try:
            node = self._node(gfid)
        except FileNotFoundError:
            # unlinked while open elsewhere: GlusterFS looks in .glusterfs/unlink
            st = os.stat(f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir, follow_symlinks=False)
            node = Node(gfid, st, self._hdir, f"{UNLINK_DIR}/{gfid}")
        mode = node.st.st_mode
        if node.is_dir:
            osfd = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=node.at_fd)
            return self._adopt(fd, osfd, os.O_RDONLY, gfid, is_dir=True)
        if stat.S_ISLNK(mode):
            raise FopError(errno.ELOOP)
        if stat.S_ISBLK(mode) or stat.S_ISCHR(mode):
            raise FopError(errno.EINVAL)
        flags = fd.flags & ~_ANON_STRIP
        if stat.S_ISFIFO(mode):
            flags |= os.O_NONBLOCK
        osfd = os.open(node.at_name, flags | O_NOFOLLOW, dir_fd=node.at_fd)
        return self._adopt(fd, osfd, flags, gfid, is_dir=False)

    def _adopt(self, fd, osfd: int, flags: int, gfid: GFID | None, is_dir: bool) -> "OpenFile":
        """Keep an OS descriptor in fd.ctx[self]; it is closed by release or
        when the Fd is garbage-collected."""
        old = fd.ctx.get(self)
        if old is not None:
            closer = self._open_files.pop(old.osfd, None)
            if closer is not None:
                closer()
        of = OpenFile(osfd, flags, is_dir, gfid)
        fd.ctx[self] = of
        if gfid is not None:
            self._opencount[gfid] = self._opencount.get(gfid, 0) + 1
        self._open_files[osfd] = weakref.finalize(fd, self._closed, osfd, gfid)
        return of

    def _closed(self, osfd: int, gfid: GFID | None) -> None:
        self._open_files.pop(osfd, None)
        if osfd in self._busy:
            self._close_later.add(osfd)   # a worker uses it: see _blocking
        else:
            quiet(os.close, osfd)
        if gfid is None:
            return
        left = self._opencount.get(gfid, 0) - 1
        if left > 0:
            self._opencount[gfid] = left
            return
        self._opencount.pop(gfid, None)
        if gfid in self._unlinked:
            self._unlinked.discard(gfid)
            if self._hdir >= 0:
                quiet(os.unlink, f"{UNLINK_DIR}/{gfid}", dir_fd=self._hdir)
