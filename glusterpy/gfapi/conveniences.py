"""gfapi: os, os.path and shutil calls built on the volume's calls -
listdir, scandir, exists/isdir/..., the working directory, walk, rmtree,
copy and copytree.
"""

from __future__ import annotations

import errno
import os
import stat as st
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, AsyncIterator, Callable

import trio

from ..fops import FopError
from ..keys import COLOCATE_KEY
from .common import edge, stat_result
from .dirs import DirEntry
from .resolve import Node

if TYPE_CHECKING:
    from .files import AsyncFile

#: copy_file's piece per copy_file_range call (and per progress report)
COPY_FILE_CHUNK = 64 << 20


class VolumeConveniences:
    """AsyncVolume's calls built on its other calls."""

    async def listdir(self, path: str = ".") -> list[str]:
        async with await self.opendir(path) as d:
            return [e.name async for e in d if e.name not in (".", "..")]

    async def listdir_with_stat(self, path: str = ".") -> list[tuple[str, os.stat_result]]:
        async with await self.opendir(path, readdirplus=True) as d:
            return [(e.name, stat_result(e.iatt)) async for e in d
                    if e.name not in (".", "..")]

    async def scandir(self, path: str = ".") -> AsyncIterator["DirEntry"]:
        """Entries with their lstat; '.' and '..' left out."""
        async with await self.opendir(path, readdirplus=True) as d:
            async for e in d:
                if e.name not in (".", ".."):
                    yield DirEntry(path, e.name, stat_result(e.iatt))

    async def exists(self, path: str) -> bool:
        try:
            await self.stat(path)
        except OSError:
            return False
        return True

    async def _is(self, path: str, test: Callable[[int], bool], follow: bool = True) -> bool:
        try:
            s = await (self.stat(path) if follow else self.lstat(path))
        except OSError:
            return False
        return test(s.st_mode)

    async def isdir(self, path: str) -> bool:
        return await self._is(path, st.S_ISDIR)

    async def isfile(self, path: str) -> bool:
        return await self._is(path, st.S_ISREG)

    async def islink(self, path: str) -> bool:
        return await self._is(path, st.S_ISLNK, follow=False)

    async def getsize(self, path: str) -> int:
        return (await self.stat(path)).st_size

    async def getmtime(self, path: str) -> float:
        return (await self.stat(path)).st_mtime

    async def getatime(self, path: str) -> float:
        return (await self.stat(path)).st_atime

    async def getctime(self, path: str) -> float:
        return (await self.stat(path)).st_ctime

    async def samefile(self, path1: str, path2: str) -> bool:
        a, b = await self.stat(path1), await self.stat(path2)
        return (a.st_ino, a.st_dev) == (b.st_ino, b.st_dev)

    @edge
    async def chdir(self, path: str) -> None:
        with self._as_caller():
            r = await self._resolve(path)
            if not r.require().is_dir:
                raise FopError(errno.ENOTDIR)
            # rebuild the directory stack so ".." works from the new cwd
            stack = [self._root]
            cur = r
            chain = []
            while cur.parent is not None:
                chain.append(Node(cur.iatt, cur.path))
                parent_path = cur.path.rsplit("/", 1)[0] or "/"
                if parent_path == "/":
                    break
                cur = await self._resolve(parent_path)
            stack.extend(reversed(chain))
            self._cwd = stack

    def getcwd(self) -> str:
        self._check_mounted()
        return self._cwd[-1].path

    async def walk(self, top: str, topdown: bool = True, onerror=None,
                   followlinks: bool = False) -> AsyncIterator[tuple[str, list[str], list[str]]]:
        """os.walk over the volume."""
        try:
            entries = [e async for e in self.scandir(top)]
        except OSError as err:
            if onerror is not None:
                onerror(err)
            return
        dirs, files = [], []
        for e in entries:
            (dirs if e.is_dir() else files).append(e.name)
        if topdown:
            yield top, dirs, files
        for name in dirs:
            path = os.path.join(top, name)
            if followlinks or not await self.islink(path):
                async for item in self.walk(path, topdown, onerror, followlinks):
                    yield item
        if not topdown:
            yield top, dirs, files

    async def rmtree(self, path: str, ignore_errors: bool = False, onerror=None) -> None:
        """shutil.rmtree on the volume; symlinks are removed, not followed."""
        def fail(fn, p, err):
            if ignore_errors:
                return
            if onerror is None:
                raise err
            onerror(fn, p, (type(err), err, err.__traceback__))
        try:
            if await self.islink(path):
                raise OSError(errno.ENOTDIR, "cannot call rmtree on a symbolic link", path)
            entries = [e async for e in self.scandir(path)]
        except OSError as err:
            fail(self.scandir, path, err)
            return
        for e in entries:
            full = os.path.join(path, e.name)
            if e.is_dir():
                await self.rmtree(full, ignore_errors, onerror)
            else:
                try:
                    await self.unlink(full)
                except OSError as err:
                    fail(self.unlink, full, err)
        try:
            await self.rmdir(path)
        except OSError as err:
            fail(self.rmdir, path, err)

    async def copyfileobj(self, fsrc, fdst, length: int = 128 * 1024) -> None:
        while True:
            buf = await fsrc.read(length)
            if not buf:
                break
            await fdst.write(buf)

    async def copyfile(self, src: str, dst: str) -> None:
        async with await self.fopen(src, "rb") as fsrc:
            async with await self.fopen(dst, "wb") as fdst:
                await self.copyfileobj(fsrc, fdst)

    @edge
    async def copy_file(self, src: str, dst: str, *,
                        progress: Callable[[int, int], object] | None = None,
                        chunk: int = COPY_FILE_CHUNK) -> int:
        """A new file `dst` (never over an existing one) with `src`'s bytes
        and mode, copied with copy_file_range: by the bricks, not through
        this client, wherever the volume can - distribute creates `dst` on
        `src`'s brick (COLOCATE_KEY), replicas copy their own copies, XFS
        bricks reflink (instant), holes stay holes.  `progress(done,
        total)` follows every `chunk` bytes.  On any failure `dst` is
        removed again.  Returns the size copied."""
        with self._as_caller():
            fsrc = await self._open_file(src, os.O_RDONLY, 0)
        try:
            total = (await fsrc.fstat()).st_size
            mode = st.S_IMODE((await fsrc.fstat()).st_mode)
            with self._as_caller():
                fdst = await self._open_file(dst, os.O_CREAT | os.O_EXCL | os.O_WRONLY, mode,
                                             {COLOCATE_KEY: fsrc.fd.gfid})
            async with self.removed_on_failure(fdst):
                done = 0
                while done < total:
                    n = await fsrc.copy_file_range(fdst, min(chunk, total - done), done, done)
                    if n == 0:        # the source shrank meanwhile
                        break
                    done += n
                    if progress is not None:
                        progress(done, total)
                if (await fdst.fstat()).st_size < total:
                    await fdst.ftruncate(total)
                await fdst.fsync()
            await fdst.close()
            return done
        finally:
            with trio.CancelScope(shield=True):
                await fsrc.close()

    @asynccontextmanager
    async def removed_on_failure(self, f: AsyncFile) -> AsyncIterator[None]:
        """For filling a file just created: if the body fails (or is
        cancelled), `f` is closed and its file removed again, so the volume
        is left as it was; a removal that fails too is noted on the error."""
        try:
            yield
        except BaseException as e:
            with trio.CancelScope(shield=True):   # clean up even when cancelled
                await f.close()
                try:
                    await self.unlink(f.path)
                except OSError as gone:
                    e.add_note(f"{f.path} could not be removed again: {gone}")
            raise

    async def copymode(self, src: str, dst: str) -> None:
        await self.chmod(dst, st.S_IMODE((await self.stat(src)).st_mode))

    async def copystat(self, src: str, dst: str) -> None:
        s = await self.stat(src)
        await self.utime(dst, ns=(s.st_atime_ns, s.st_mtime_ns))
        await self.chmod(dst, st.S_IMODE(s.st_mode))

    async def copy(self, src: str, dst: str) -> None:
        if await self.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        await self.copyfile(src, dst)
        await self.copymode(src, dst)

    async def copy2(self, src: str, dst: str) -> None:
        if await self.isdir(dst):
            dst = os.path.join(dst, os.path.basename(src))
        await self.copyfile(src, dst)
        await self.copystat(src, dst)

    async def copytree(self, src: str, dst: str, symlinks: bool = False, ignore=None) -> None:
        """shutil.copytree within the volume."""
        entries = [e async for e in self.scandir(src)]
        ignored = ignore(src, [e.name for e in entries]) if ignore else set()
        await self.makedirs(dst)
        errors = []
        for e in entries:
            if e.name in ignored:
                continue
            s, d = os.path.join(src, e.name), os.path.join(dst, e.name)
            try:
                if e.is_symlink() and symlinks:
                    await self.symlink(await self.readlink(s), d)
                elif await self.isdir(s):
                    await self.copytree(s, d, symlinks, ignore)
                else:
                    await self.copy2(s, d)
            except OSError as err:
                errors.append((s, d, str(err)))
        try:
            await self.copystat(src, dst)
        except OSError as err:
            errors.append((src, dst, str(err)))
        if errors:
            raise OSError(errno.EIO, f"copytree failed for {len(errors)} entries: {errors}")
