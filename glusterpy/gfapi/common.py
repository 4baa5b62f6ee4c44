"""gfapi: what the volume and its open handles share - errors at the API
edge, stat results, attribute changes, and the graph a call is pinned to
(a graph switch waits for the calls on the old graph).
"""

from __future__ import annotations

import contextvars
import functools
import logging
import os
import time
from typing import TYPE_CHECKING

import trio

from .. import fops
from ..fops import (Caller, Fd, FopError, Iatt, Loc, SET_ATTR_ATIME, SET_ATTR_GID,
                    SET_ATTR_MTIME, SET_ATTR_UID, caller)
from ..graph import Graph

if TYPE_CHECKING:
    from .aio import AsyncVolume


log = logging.getLogger("glusterpy.gfapi")


def oserror(e: FopError, path: str | None = None, path2: str | None = None) -> OSError:
    if path2 is not None:
        return OSError(e.errno, os.strerror(e.errno), path, None, path2)
    return OSError(e.errno, os.strerror(e.errno), path)


def edge(fn):
    """Turn FopError into OSError (naming the path) at the API edge."""
    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except FopError as e:
            paths = [a for a in args[:2] if isinstance(a, str)]
            raise oserror(e, *paths) from None
    return wrapper


def stat_result(iatt: Iatt) -> os.stat_result:
    """An os.stat_result from a GlusterFS iatt (ns times included)."""
    a, m, c = iatt.atime_ns, iatt.mtime_ns, iatt.ctime_ns
    return os.stat_result((
        iatt.mode, iatt.ino, iatt.dev, iatt.nlink, iatt.uid, iatt.gid, iatt.size,
        iatt.atime, iatt.mtime, iatt.ctime,
        a / 1e9, m / 1e9, c / 1e9, a, m, c,
        iatt.blksize, iatt.blocks, fops.dev_from_ia(iatt.rdev),
    ))


def statvfs_result(s: fops.Statvfs) -> os.statvfs_result:
    return os.statvfs_result((s.bsize, s.frsize, s.blocks, s.bfree, s.bavail,
                              s.files, s.ffree, s.favail, s.flag, s.namemax, s.fsid))


class LiveGraph:
    """A running graph of a mounted volume and the calls in flight on it."""

    __slots__ = ("graph", "inflight", "_idle", "stop")

    def __init__(self, graph: Graph):
        self.graph = graph
        self.inflight = 0
        # made only when someone waits (a graph switch): an Event made and
        # set per operation was two calls of every gfapi operation
        self._idle: trio.Event | None = None
        self.stop = trio.Event()

    def enter(self) -> None:
        self.inflight += 1

    def exit(self) -> None:
        self.inflight -= 1
        if self.inflight == 0 and self._idle is not None:
            self._idle.set()
            self._idle = None

    async def wait_idle(self) -> None:
        if self.inflight == 0:
            await trio.lowlevel.checkpoint()
            return
        if self._idle is None:
            self._idle = trio.Event()
        await self._idle.wait()


#: the graph an operation runs on, fixed when it starts (see CallerScope)
pinned: contextvars.ContextVar[LiveGraph | None] = contextvars.ContextVar(
    "glusterpy_gfapi_graph", default=None)


class CallerScope:
    """Sets the `caller` context variable for the duration of a call, and
    pins the graph the call runs on (counted in flight there, so a graph
    switch waits for it); a nested scope keeps the outer pin."""

    __slots__ = ("identity", "token", "live", "pin")

    def __init__(self, identity: Caller, live: LiveGraph | None = None):
        self.identity = identity
        self.live = live

    def __enter__(self):
        self.token = caller.set(self.identity)
        self.pin = None
        if self.live is not None and pinned.get() is None:
            self.pin = pinned.set(self.live)
            self.live.enter()

    def __exit__(self, *exc):
        if self.pin is not None:
            pinned.reset(self.pin)
            self.live.exit()
        caller.reset(self.token)


class GraphHandle:
    """What AsyncFile and AsyncDir share: an fd on one live graph, moved to
    the next graph when the volume switches (see AsyncVolume's graph switch)."""

    vol: "AsyncVolume"
    fd: Fd
    live: "LiveGraph"
    #: set while a graph switch moves this handle: its calls wait for it
    moving: trio.Event | None = None

    async def _move_to(self, live: LiveGraph, moved: dict, old_fds: list) -> None:
        """Reopen this handle's fd on the graph `live` (once per fd: dup()s
        share it) by gfid, as glfs_migrate_fd does, and switch to it.  A
        file's writes still behind in the old graph (write-behind) are sent
        first with an fsync there, as glfs_migrate_fd does: a read on the
        new graph must see them."""
        old = self.fd
        new = moved.get(id(old))
        if new is None:
            if not old.is_dir:
                with self.vol._as_caller(self.live):
                    try:
                        await self.live.graph.top.fsync(old, 0, None)
                    except FopError as e:
                        log.warning("%s: the writes behind on the old graph: %s",
                                    getattr(self, "path", old.gfid), e)
            new = Fd(gfid=old.gfid, flags=old.flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC),
                     is_dir=old.is_dir)
            new.lk_owner = old.lk_owner
            with self.vol._as_caller(live):
                top = live.graph.top
                loc = Loc(gfid=old.gfid)
                await top.lookup(loc, None)
                if old.is_dir:
                    await top.opendir(loc, new, None)
                else:
                    await top.open(loc, new.flags, new, None)
            moved[id(old)] = new
            old_fds.append(old)
        self.fd, self.live = new, live


def owner_change(uid: int, gid: int) -> tuple[Iatt, int]:
    valid = (SET_ATTR_UID if uid != -1 else 0) | (SET_ATTR_GID if gid != -1 else 0)
    return Iatt(uid=max(uid, 0), gid=max(gid, 0)), valid


def times_change(times, ns) -> tuple[Iatt, int]:
    if times is not None and ns is not None:
        raise ValueError("utime: give times or ns, not both")
    if ns is not None:
        if not (isinstance(ns, tuple) and len(ns) == 2):
            raise TypeError("utime: ns must be a tuple (atime_ns, mtime_ns)")
        a_ns, m_ns = ns
    elif times is not None:
        if not (isinstance(times, tuple) and len(times) == 2):
            raise TypeError("utime() arg 2 must be a tuple (atime, mtime)")
        a_ns, m_ns = (int(round(t * 1e9)) for t in times)
    else:
        a_ns = m_ns = time.time_ns()
    iatt = Iatt(atime=a_ns // 1_000_000_000, atime_nsec=a_ns % 1_000_000_000,
                mtime=m_ns // 1_000_000_000, mtime_nsec=m_ns % 1_000_000_000)
    return iatt, SET_ATTR_ATIME | SET_ATTR_MTIME
