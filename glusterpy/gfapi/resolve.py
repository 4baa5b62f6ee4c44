"""gfapi: path resolution - a path walked one component at a time with
lookup fops, symlinks followed as POSIX does, and the dentry cache of the
directories passed through (libgfapi's glfs-resolve.c).
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

from .. import fops
from ..fops import GFID, FopError, Iatt, Loc
from ..inode import DEFAULT_LRU_LIMIT
from ..keys import GFID_REQ


MAX_SYMLINKS = 40


@dataclass(slots=True)
class Node:
    """A resolved directory on the walk: its gfid, attributes and path."""

    iatt: Iatt
    path: str

    @property
    def gfid(self) -> GFID:
        return self.iatt.gfid


@dataclass(slots=True)
class Resolved:
    """The outcome of a path walk.

    `parent` and `name` are set when the path ends in a name (not for "/",
    "." or ".."); `iatt` is None when that name does not exist.
    """

    parent: Node | None
    name: str | None
    iatt: Iatt | None
    path: str

    def loc(self) -> Loc:
        return Loc(path=self.path, gfid=self.iatt.gfid if self.iatt else None,
                   pargfid=self.parent.gfid if self.parent else None, name=self.name)

    def require(self) -> Iatt:
        if self.iatt is None:
            raise FopError(errno.ENOENT)
        return self.iatt


class PathResolution:
    """AsyncVolume's path walk."""

    async def _lookup(self, parent: Node, name: str, path: str, *, cached: bool) -> Iatt | None:
        key = (parent.gfid, name)
        if cached:
            hit = self._dentries.get(key)
            if hit is not None:
                self._dentries.move_to_end(key)
                return hit
        try:
            reply = await self._top.lookup(
                Loc(path=path, pargfid=parent.gfid, name=name), None)
        except FopError as e:
            if e.errno in (errno.ENOENT, errno.ESTALE):
                self._dentries.pop(key, None)
                return None
            raise
        if reply.iatt.is_dir:
            self._dentries[key] = reply.iatt
            self._dentries.move_to_end(key)
            if len(self._dentries) > DEFAULT_LRU_LIMIT:
                self._dentries.popitem(last=False)
        else:
            self._dentries.pop(key, None)
        return reply.iatt

    def _forget(self, parent_gfid: bytes | None, name: str | None) -> None:
        if parent_gfid is not None and name is not None:
            self._dentries.pop((parent_gfid, name), None)

    async def _resolve(self, path: str, *, follow: bool = True,
                       may_be_missing: bool = False) -> Resolved:
        """Walk `path` as the kernel walks a path.

        Intermediate symlinks are always followed; the last one only when
        `follow`.  A trailing slash requires a directory (and follows a
        final symlink).  With `may_be_missing` a missing last name is not an
        error: the result then has `iatt` None and the parent to create in.
        """
        self._check_mounted()
        if not isinstance(path, str):
            path = os.fsdecode(path)
        if not path:
            raise FopError(errno.ENOENT)
        if "\0" in path:
            raise FopError(errno.EINVAL, "path contains NUL")
        must_be_dir = path.endswith("/") or path.endswith("/.") or path.endswith("/..") \
            or path in (".", "..")
        follow = follow or must_be_dir
        stack: list[Node] = [self._root] if path.startswith("/") else list(self._cwd)
        todo = [c for c in path.split("/") if c and c != "."]
        todo.reverse()  # a stack: pop() takes the next component
        links = 0
        while todo:
            name = todo.pop()
            is_last = not todo
            if name == "..":
                if len(stack) > 1:
                    stack.pop()
                continue
            parent = stack[-1]
            if not parent.iatt.is_dir:
                raise FopError(errno.ENOTDIR)
            if len(os.fsencode(name)) > fops.NAME_MAX:
                raise FopError(errno.ENAMETOOLONG)
            child_path = parent.path.rstrip("/") + "/" + name
            iatt = await self._lookup(parent, name, child_path, cached=not is_last)
            if iatt is None:
                if is_last and may_be_missing:
                    return Resolved(parent, name, None, child_path)
                raise FopError(errno.ENOENT)
            if iatt.is_link and (not is_last or follow):
                links += 1
                if links > MAX_SYMLINKS:
                    raise FopError(errno.ELOOP)
                target = (await self._top.readlink(
                    Loc(path=child_path, gfid=iatt.gfid, pargfid=parent.gfid, name=name),
                    4096, None)).path
                if target.startswith("/"):
                    stack = [self._root]
                parts = [c for c in target.split("/") if c and c != "."]
                if target.endswith("/") and is_last:
                    must_be_dir = True
                todo.extend(reversed(parts))
                continue
            if is_last:
                if must_be_dir and not iatt.is_dir:
                    raise FopError(errno.ENOTDIR)
                return Resolved(parent, name, iatt, child_path)
            stack.append(Node(iatt, child_path))
        # the path ended in "/", "." or ".." (or a symlink to a directory that
        # had nothing after it): the result is the directory on top, whose
        # attributes we refresh with a nameless (gfid) lookup
        top = stack[-1]
        reply = await self._top.lookup(Loc(path=top.path, gfid=top.gfid), None)
        if len(stack) > 1 and top.path != "/":
            return Resolved(stack[-2], top.path.rsplit("/", 1)[1], reply.iatt, top.path)
        return Resolved(None, None, reply.iatt, top.path)

    async def _resolve_for_entry(self, path: str) -> Resolved:
        """Resolve the parent of a name about to be created."""
        r = await self._resolve(path, follow=False, may_be_missing=True)
        if r.iatt is not None:
            raise FopError(errno.EEXIST)
        if r.parent is None or r.name is None:
            raise FopError(errno.EEXIST)
        return r

    def _entry_xdata(self, gfid: bytes | None = None) -> dict:
        """A new entry's xdata: the gfid asked for (as GlusterFS's gsyncd
        asks for the primary's), or a fresh one."""
        return {GFID_REQ: GFID(gfid) if gfid is not None else GFID.random()}
