"""gfapi: directories - AsyncDir reading an open directory with readdir or
readdirp, its entries, and what scandir() yields.
"""

from __future__ import annotations

import errno
import os
import stat as st
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import fops
from ..fops import Fd, FopError, Iatt
from .common import GraphHandle, LiveGraph, oserror, pinned

if TYPE_CHECKING:
    from .aio import AsyncVolume


READDIR_SIZE = 128 * 1024  # bytes of entries asked per readdir(p), as GlusterFS's FUSE


@dataclass(slots=True)
class DirectoryEntry:
    """One entry read from a directory: its name and, with readdirplus, iatt."""

    name: str
    type: int
    iatt: Iatt | None


class AsyncDir(GraphHandle):
    """An open directory; `async for entry in dir` reads all its entries."""

    def __init__(self, vol: AsyncVolume, fd: Fd, path: str, readdirplus: bool):
        self.vol = vol
        self.fd = fd
        self.path = path
        self.readdirplus = readdirplus
        #: the graph `fd` is open on
        self.live: LiveGraph = pinned.get() or vol._live
        self.closed = False
        self._offset = 0
        self._buffer: list[fops.Dirent] = []
        self._eof = False

    async def __aenter__(self) -> "AsyncDir":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def __aiter__(self) -> "AsyncDir":
        return self

    async def __anext__(self) -> DirectoryEntry:
        entry = await self.next()
        if entry is None:
            raise StopAsyncIteration
        return entry

    async def next(self) -> DirectoryEntry | None:
        """The next entry, or None at the end of the directory."""
        if self.closed:
            raise ValueError("I/O operation on closed directory")
        while not self._buffer:
            if self._eof:
                return None
            with self.vol._as_caller(self.live):
                try:
                    reply = await (self.live.graph.top.readdirp if self.readdirplus
                                   else self.live.graph.top.readdir)(
                        self.fd, READDIR_SIZE, self._offset, None)
                except FopError as e:
                    raise oserror(e, self.path) from None
            if not reply.entries:
                self._eof = True
                return None
            self._buffer = list(reversed(reply.entries))
        d = self._buffer.pop()
        self._offset = d.off
        return DirectoryEntry(d.name, d.type, d.iatt)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.vol._open.discard(self)
        with self.vol._as_caller(self.live):
            try:
                await self.live.graph.top.releasedir(self.fd, None)
            except FopError:
                pass


class DirEntry:
    """What scandir() yields (libgfapi-python's DirEntry): name, path and the
    lstat that readdirplus brought; `stat(follow_symlinks=True)` of a symlink
    needs the volume and is offered by the facades."""

    __slots__ = ("name", "path", "_lstat")

    def __init__(self, scandir_path: str, name: str, lstat: os.stat_result):
        self.name = name
        self.path = os.path.join(scandir_path, name)
        self._lstat = lstat

    def stat(self, follow_symlinks: bool = False) -> os.stat_result:
        if follow_symlinks and self.is_symlink():
            raise OSError(errno.EINVAL, "stat(follow_symlinks=True) of a symlink entry "
                          "needs the volume: call Volume.stat(entry.path)", self.path)
        return self._lstat

    def is_dir(self) -> bool:
        return st.S_ISDIR(self._lstat.st_mode)

    def is_file(self) -> bool:
        return st.S_ISREG(self._lstat.st_mode)

    def is_symlink(self) -> bool:
        return st.S_ISLNK(self._lstat.st_mode)

    def inode(self) -> int:
        return self._lstat.st_ino

    def __repr__(self) -> str:
        return f"<DirEntry {self.name!r}>"
