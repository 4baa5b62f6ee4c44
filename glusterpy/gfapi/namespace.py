"""gfapi: the calls on names - stat, mkdir, link, unlink, rename, setattr,
statvfs - and opening files and directories (libgfapi's path calls in
glfs-fops.c).
"""

from __future__ import annotations

import errno
import os
import stat as st

from ..fops import Fd, FopError, Iatt, ROOT_GFID, SET_ATTR_MODE
from .common import edge, owner_change, stat_result, statvfs_result, times_change
from .dirs import AsyncDir
from .files import AsyncFile, mode_to_flags


class VolumeNamespace:
    """AsyncVolume's calls on names."""

    @edge
    async def stat(self, path: str) -> os.stat_result:
        with self._as_caller():
            return stat_result((await self._resolve(path)).require())

    @edge
    async def lstat(self, path: str) -> os.stat_result:
        with self._as_caller():
            return stat_result((await self._resolve(path, follow=False)).require())

    @edge
    async def access(self, path: str, mode: int) -> bool:
        """True when the caller may access `path` in `mode` (os.access)."""
        with self._as_caller():
            try:
                r = await self._resolve(path)
                await self._top.access(r.loc(), mode, None)
            except FopError:
                return False
        return True

    @edge
    async def mkdir(self, path: str, mode: int = 0o777, *, gfid: bytes | None = None) -> None:
        """`gfid`: the gfid the new directory gets (geo-replication keeps
        the primary's gfids on the secondary); a random one by default."""
        with self._as_caller():
            r = await self._resolve_for_entry(path)
            await self._top.mkdir(r.loc(), mode & ~self.umask & 0o7777, self.umask,
                                       self._entry_xdata(gfid))

    @edge
    async def makedirs(self, path: str, mode: int = 0o777, exist_ok: bool = False) -> None:
        head, tail = os.path.split(path.rstrip("/") or "/")
        if head and head != path and not await self.exists(head):
            try:
                await self.makedirs(head, mode, exist_ok=True)
            except FileExistsError:
                pass
        if not tail:
            return
        try:
            await self.mkdir(path, mode)
        except OSError as e:
            if not (exist_ok and e.errno == errno.EEXIST and await self.isdir(path)):
                raise

    @edge
    async def mknod(self, path: str, mode: int = 0o600 | st.S_IFREG, dev: int = 0, *,
                    gfid: bytes | None = None) -> None:
        with self._as_caller():
            r = await self._resolve_for_entry(path)
            perm = mode & 0o7777 & ~self.umask
            await self._top.mknod(r.loc(), (mode & ~0o7777) | perm, dev, self.umask,
                                       self._entry_xdata(gfid))

    @edge
    async def symlink(self, source: str, link_name: str, *, gfid: bytes | None = None) -> None:
        """Create `link_name` pointing at `source` (stored verbatim)."""
        with self._as_caller():
            r = await self._resolve_for_entry(link_name)
            await self._top.symlink(source, r.loc(), self.umask, self._entry_xdata(gfid))

    @edge
    async def readlink(self, path: str) -> str:
        with self._as_caller():
            r = await self._resolve(path, follow=False)
            if not r.require().is_link:
                raise FopError(errno.EINVAL)
            return (await self._top.readlink(r.loc(), 4096, None)).path

    @edge
    async def link(self, source: str, link_name: str) -> None:
        """Hard link; like libgfapi's glfs_link, `source` is not followed."""
        with self._as_caller():
            src = await self._resolve(source, follow=False)
            src.require()
            dst = await self._resolve_for_entry(link_name)
            if src.iatt.is_dir:  # after the EEXIST check, in the kernel's order
                raise FopError(errno.EPERM)
            await self._top.link(src.loc(), dst.loc(), None)

    @edge
    async def unlink(self, path: str) -> None:
        with self._as_caller():
            r = await self._resolve(path, follow=False)
            r.require()
            if r.name is None:
                raise FopError(errno.EISDIR if r.iatt.is_dir else errno.EINVAL)
            await self._top.unlink(r.loc(), 0, None)
            self._forget(r.parent.gfid, r.name)

    remove = unlink

    @edge
    async def rmdir(self, path: str) -> None:
        with self._as_caller():
            if path.rstrip("/").endswith("/.") or path.rstrip("/") == ".":
                raise FopError(errno.EINVAL)
            r = await self._resolve(path, follow=False)
            r.require()
            if r.name is None:
                raise FopError(errno.EBUSY if r.iatt.gfid == ROOT_GFID else errno.ENOTEMPTY)
            if not r.iatt.is_dir:
                raise FopError(errno.ENOTDIR)
            await self._top.rmdir(r.loc(), 0, None)
            self._forget(r.parent.gfid, r.name)

    @edge
    async def rename(self, src: str, dst: str) -> None:
        with self._as_caller():
            # both parents first, then the source name, as the kernel does
            old = await self._resolve(src, follow=False, may_be_missing=True)
            new = await self._resolve(dst, follow=False, may_be_missing=True)
            old.require()
            if old.name is None:
                raise FopError(errno.EBUSY)
            if new.name is None:
                raise FopError(errno.EBUSY if new.iatt and new.iatt.gfid == ROOT_GFID
                               else errno.EINVAL)
            if dst.endswith("/") and not old.iatt.is_dir:
                raise FopError(errno.ENOTDIR)
            await self._top.rename(old.loc(), new.loc(), None)
            self._forget(old.parent.gfid, old.name)
            self._forget(new.parent.gfid, new.name)

    @edge
    async def truncate(self, path: str, length: int) -> None:
        if length < 0:
            raise FopError(errno.EINVAL)
        with self._as_caller():
            r = await self._resolve(path)
            if r.require().is_dir:
                raise FopError(errno.EISDIR)
            await self._top.truncate(r.loc(), length, None)

    async def _setattr(self, path: str, iatt: Iatt, valid: int, follow: bool = True) -> None:
        with self._as_caller():
            r = await self._resolve(path, follow=follow)
            r.require()
            await self._top.setattr(r.loc(), iatt, valid, None)

    @edge
    async def chmod(self, path: str, mode: int) -> None:
        await self._setattr(path, Iatt(mode=mode & 0o7777), SET_ATTR_MODE)

    @edge
    async def chown(self, path: str, uid: int, gid: int) -> None:
        await self._setattr(path, *owner_change(uid, gid))

    @edge
    async def lchown(self, path: str, uid: int, gid: int) -> None:
        await self._setattr(path, *owner_change(uid, gid), follow=False)

    @edge
    async def utime(self, path: str, times: tuple[float, float] | None = None, *,
                    ns: tuple[int, int] | None = None, follow_symlinks: bool = True) -> None:
        """Set access and modification times (like os.utime)."""
        await self._setattr(path, *times_change(times, ns), follow=follow_symlinks)

    @edge
    async def statvfs(self, path: str = "/") -> os.statvfs_result:
        with self._as_caller():
            r = await self._resolve(path)
            return statvfs_result((await self._top.statfs(r.loc(), None)).statvfs)

    # -- files ------------------------------------------------------------------

    @edge
    async def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o777) -> "AsyncFile":
        """Open (and with O_CREAT create) a file, as os.open does."""
        if not isinstance(flags, int):
            raise TypeError("flags must be an integer")
        with self._as_caller():
            return await self._open_file(path, flags, mode)

    async def _open_file(self, path: str, flags: int, mode: int,
                         create_xdata: dict | None = None) -> "AsyncFile":
        accmode = flags & os.O_ACCMODE
        if accmode == os.O_ACCMODE or (flags & os.O_CREAT and flags & os.O_DIRECTORY):
            # O_CREAT|O_DIRECTORY: EINVAL, as Linux answers since 6.4
            raise FopError(errno.EINVAL)
        creating = bool(flags & os.O_CREAT)
        follow = not (flags & os.O_NOFOLLOW) and not (creating and flags & os.O_EXCL)
        r = await self._resolve(path, follow=follow, may_be_missing=creating)
        if r.iatt is None:
            if path.endswith("/"):
                raise FopError(errno.EISDIR)
            fd = Fd(flags=flags)
            reply = await self._top.create(
                r.loc(), flags, mode & 0o7777 & ~self.umask, self.umask, fd,
                {**self._entry_xdata(), **(create_xdata or {})})
            fd.gfid = reply.iatt.gfid
            return self._track(AsyncFile(self, reply.fd, path, flags, reply.iatt))
        if creating and flags & os.O_EXCL:
            raise FopError(errno.EEXIST)
        iatt = r.iatt
        if iatt.is_link:  # O_NOFOLLOW (or O_CREAT|O_EXCL) on a symlink
            raise FopError(errno.ELOOP if flags & os.O_NOFOLLOW else errno.EEXIST)
        if iatt.is_dir:
            if accmode != os.O_RDONLY or creating:
                raise FopError(errno.EISDIR)
            fd = Fd(gfid=iatt.gfid, flags=flags, is_dir=True)
            reply = await self._top.opendir(r.loc(), fd, None)
            return self._track(AsyncFile(self, reply.fd, path, flags, iatt))
        if flags & os.O_DIRECTORY:
            raise FopError(errno.ENOTDIR)
        fd = Fd(gfid=iatt.gfid, flags=flags)
        reply = await self._top.open(r.loc(), flags & ~(os.O_CREAT | os.O_EXCL), fd, None)
        return self._track(AsyncFile(self, reply.fd, path, flags, iatt))

    async def fopen(self, path: str, mode: str = "r") -> "AsyncFile":
        """Open with a Python mode string ('r', 'w', 'a', 'x', '+', 'b')."""
        return await self.open(path, mode_to_flags(mode), 0o666)

    @edge
    async def opendir(self, path: str, readdirplus: bool = False) -> "AsyncDir":
        with self._as_caller():
            r = await self._resolve(path)
            if not r.require().is_dir:
                raise FopError(errno.ENOTDIR)
            fd = Fd(gfid=r.iatt.gfid, flags=os.O_RDONLY, is_dir=True)
            reply = await self._top.opendir(r.loc(), fd, None)
            return self._track(AsyncDir(self, reply.fd, path, readdirplus))

    def _track(self, handle):
        self._open.add(handle)
        return handle
