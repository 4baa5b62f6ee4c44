"""The trio-native client: a mounted volume as path-based async calls.

`AsyncVolume` does what libgfapi's glfs_* calls do: it resolves paths to
gfids by walking them one component at a time with lookup fops (following
symlinks as POSIX does, ELOOP after 40), keeps a dentry cache for the
directories it passes through, and winds fops into the top of a translator
graph.  `glusterpy.gfapi.Volume` is the synchronous facade over it.

    async with AsyncVolume.from_volfile("demo.vol") as vol:
        async with await vol.open("/a.txt", os.O_CREAT | os.O_WRONLY) as f:
            await f.write(b"hello")

A remote volume (`AsyncVolume.from_server(hosts, volname, port)`) gets its
graph at mount time: the client volfile fetched with GETSPEC from the first
volfile server that answers (`gfapi.mgmt`), whose protocol/client
translators then connect to the bricks.  As libgfapi's glfs_init, mount
waits for the first CHILD_UP or CHILD_DOWN to reach the top of the graph
(CHILD_DOWN fails the mount), and it keeps a connection to the volfile
server: a FETCHSPEC there, or VOLFILE_MODIFIED from a brick, fetches the
volfile again.  A volfile that changes only options is applied to the
running graph (Graph.reconfigure); one that changes the graph's shape (a
brick added, a translator switched on or off) is a graph switch, as
GlusterFS's glfs_graph_setup/glfs_migrate_openfds do: the new graph is
started and must come up, new calls go to it, every open file and
directory is reopened on it by gfid (handles keep working, offsets kept),
calls already running on the old graph finish there, and only then is the
old graph released and stopped.  Departure: POSIX locks held through an
fd do not move to the new graph (GlusterFS moves them with
lock-migration); a failed switch keeps the old graph.

Errors surface as OSError with the errno the translators raised
(`FopError` never escapes this module).  Following libgfapi, an absolute
symlink target is resolved from the root of the volume.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import logging
import os
import sys
import stat as st
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import AsyncIterator, Callable

import trio

from .. import fops
from ..fops import (GFID, ROOT_GFID, Caller, Fd, FopError, Iatt, Loc,
                    SET_ATTR_ATIME, SET_ATTR_GID, SET_ATTR_MODE, SET_ATTR_MTIME,
                    SET_ATTR_UID, caller)
from ..keys import GFID_REQ
from .. import volfile as vf
from ..graph import Graph
from ..process import ProcessIdentity, set_process_identity
from ..xlator import Event
from .exceptions import LibgfapiException, VolumeNotMounted

MAX_SYMLINKS = 40
READDIR_SIZE = 128 * 1024  # bytes of entries asked per readdir(p), as GlusterFS's FUSE
READ_ALL_CHUNK = 1 << 20
log = logging.getLogger("glusterpy.gfapi")
XATTR_CREATE, XATTR_REPLACE = 1, 2
# lseek whence values beyond SEEK_SET/CUR/END
SEEK_DATA, SEEK_HOLE = 3, 4


def _oserror(e: FopError, path: str | None = None, path2: str | None = None) -> OSError:
    if path2 is not None:
        return OSError(e.errno, os.strerror(e.errno), path, None, path2)
    return OSError(e.errno, os.strerror(e.errno), path)


def _edge(fn):
    """Turn FopError into OSError (naming the path) at the API edge."""
    @functools.wraps(fn)
    async def wrapper(self, *args, **kwargs):
        try:
            return await fn(self, *args, **kwargs)
        except FopError as e:
            paths = [a for a in args[:2] if isinstance(a, str)]
            raise _oserror(e, *paths) from None
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


@dataclass(slots=True)
class _Node:
    """A resolved directory on the walk: its gfid, attributes and path."""

    iatt: Iatt
    path: str

    @property
    def gfid(self) -> GFID:
        return self.iatt.gfid


@dataclass(slots=True)
class _Resolved:
    """The outcome of a path walk.

    `parent` and `name` are set when the path ends in a name (not for "/",
    "." or ".."); `iatt` is None when that name does not exist.
    """

    parent: _Node | None
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


class _LiveGraph:
    """A running graph of a mounted volume and the calls in flight on it."""

    __slots__ = ("graph", "inflight", "_idle", "stop")

    def __init__(self, graph: Graph):
        self.graph = graph
        self.inflight = 0
        self._idle = trio.Event()
        self._idle.set()
        self.stop = trio.Event()

    def enter(self) -> None:
        if self.inflight == 0:
            self._idle = trio.Event()
        self.inflight += 1

    def exit(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self) -> None:
        await self._idle.wait()


#: the graph an operation runs on, fixed when it starts (see _CallerScope)
_pinned: contextvars.ContextVar[_LiveGraph | None] = contextvars.ContextVar(
    "glusterpy_gfapi_graph", default=None)
#: how long a graph switch waits for the old graph's calls to finish
SWITCH_DRAIN_TIMEOUT = 120.0


class AsyncVolume:
    """A volume mounted through a translator graph, used from trio."""

    def __init__(self, graph: Graph | None, *, volname: str | None = None,
                 mount_timeout: float = 30.0, servers=None):
        if graph is None and (servers is None or volname is None):
            raise ValueError("a volume needs a graph, or volfile servers and a volume name")
        self.graph = graph
        self.volname = volname or graph.top.name
        self.mount_timeout = mount_timeout
        #: volfile servers (mgmt.VolfileServer) when the graph comes from GETSPEC
        self.servers = servers
        #: the pass-through translators left out of the fetched graph
        self.elided: list[str] = []
        self._volfile_text: str | None = None
        self._log_handler: logging.Handler | None = None
        self._log_level = logging.NOTSET
        self._log_forward = _ForwardHandler()
        self._nursery: trio.Nursery | None = None
        self._live: _LiveGraph | None = None
        self._watch = None  # mgmt.VolfileWatch of a remote volume while mounted
        self.umask = _process_umask()
        self.identity = Caller(uid=os.geteuid(), gid=os.getegid(),
                               groups=tuple(os.getgroups()), pid=os.getpid())
        self._stack: AsyncExitStack | None = None
        self._root: _Node | None = None
        self._cwd: list[_Node] = []
        #: (parent gfid, name) -> iatt of directories passed through
        self._dentries: dict[tuple[bytes, str], Iatt] = {}
        self._open: set[AsyncFile | AsyncDir] = set()
        self._unmounting = False

    # -- mounting ---------------------------------------------------------

    @classmethod
    def from_volfile(cls, path: str | os.PathLike, *, xlator_options=(), **kwargs) -> "AsyncVolume":
        """A volume served by the local graph a volfile describes;
        `xlator_options` override options as `VOLUME.KEY=VALUE` strings."""
        return cls(Graph.from_file(os.fspath(path), xlator_options), **kwargs)

    @classmethod
    def from_server(cls, hosts, volname: str, port: int = 24007, *, transport: str = "tcp",
                    **kwargs) -> "AsyncVolume":
        """A remote volume: mount() fetches its client volfile with GETSPEC
        from the first of `hosts` that answers (see gfapi.mgmt) and runs
        that graph."""
        from .mgmt import volfile_servers
        return cls(None, volname=volname, servers=volfile_servers(hosts, port, transport),
                   **kwargs)

    def set_logging(self, log_file: str | os.PathLike | None, log_level=7) -> None:
        """Log the volume's translators to `log_file` at `log_level`
        (GlusterFS's levels 0 NONE .. 9 TRACE, or a logging level name);
        None leaves logging to the application.  Before mount() it applies
        from the mount; on a mounted volume at once, as glfs_set_logging."""
        level = _python_log_level(log_level)
        handler = None
        if log_file is not None:
            handler = logging.FileHandler(os.fspath(log_file), delay=True)
            handler.setFormatter(logging.Formatter(
                "[%(asctime)s] %(levelname).1s [%(name)s] %(message)s"))
        old, self._log_level, self._log_handler = self._log_handler, level, handler
        # the loggers hold a forwarder from mount to umount, so a new file
        # takes over at once, and what stopping the graph logs still
        # reaches it
        self._log_forward.target = handler
        if self._stack is not None and self.graph is not None:
            loggers = [xl.log for xl in self.graph.by_name.values()]
            loggers.append(logging.getLogger("glusterpy"))
            for logger in loggers:
                logger.setLevel(level)  # umount puts back the level from before mount
        if old is not None:
            old.close()

    @property
    def mounted(self) -> bool:
        return self._root is not None

    async def __aenter__(self) -> "AsyncVolume":
        await self.mount()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.umount()

    async def mount(self) -> None:
        """Start the graph, wait for CHILD_UP and look up the root.

        Must be paired with umount() in the same trio task (the graph's
        nursery lives in it); `async with` does that.
        """
        if self.mounted:
            return
        stack = AsyncExitStack()
        try:
            if self.servers is not None:
                await self._load_remote_graph()
            self._attach_logging(stack)
            first_state = _FirstChildState(self)
            self.graph.root.listeners.append(first_state)
            stack.callback(self.graph.root.listeners.remove, first_state)
            self._nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(self._nursery.cancel_scope.cancel)
            self._live = await self._start_graph(self.graph)
            up = await first_state.wait(self.mount_timeout)
            if up is None:
                raise LibgfapiException(f"volume {self.volname}: no subvolume came up "
                                        f"within {self.mount_timeout:g}s")
            if not up:
                if first_state.auth_error:
                    raise LibgfapiException(f"volume {self.volname}: a brick refused this "
                                            f"client ({first_state.auth_error})")
                raise LibgfapiException(f"volume {self.volname}: its bricks are not "
                                        f"reachable (the client graph went CHILD_DOWN)")
            if self.servers is not None:
                from .mgmt import VolfileWatch
                self._watch = VolfileWatch(self.servers, self.volname, self._volfile_text)
                stack.callback(setattr, self, "_watch", None)
                self._nursery.start_soon(self._watch.run, self._volfile_changed)
            with self._as_caller():
                reply = await self._top.lookup(Loc.root(), None)
        except FopError as e:
            await stack.aclose()
            raise LibgfapiException(f"volume {self.volname}: root lookup failed: {e}") from None
        except BaseException:
            await stack.aclose()
            raise
        self._stack = stack
        self._root = _Node(reply.iatt, "/")
        self._cwd = [self._root]

    async def _start_graph(self, graph: Graph) -> _LiveGraph:
        """Run `graph` in a task of the mount's nursery until its `stop`."""
        try:
            return await self._nursery.start(self._run_graph, graph)
        except BaseExceptionGroup as group:
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            raise leaf from None

    async def _run_graph(self, graph: Graph, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        live = _LiveGraph(graph)
        async with graph.running():
            task_status.started(live)
            await live.stop.wait()

    @property
    def _top(self):
        """The top translator of the graph this operation runs on."""
        live = _pinned.get()
        return (live.graph if live is not None else self.graph).top

    async def _load_remote_graph(self) -> None:
        """GETSPEC the client volfile and build its graph (a fresh one for
        every mount, as the volfile may have changed)."""
        from .mgmt import fetch_client_graph
        # libgfapi names the process gfapi.<program_invocation_short_name>
        program = os.path.basename(sys.argv[0] or "") or "python"
        self.graph, fetched, self.elided = await fetch_client_graph(
            self.servers, self.volname, process_name=f"gfapi.{program}")
        self._volfile_text = fetched.text
        if self.elided:
            log.info("volume %s: translators glusterpy does not have were left out of the "
                     "client graph: %s", self.volname, ", ".join(self.elided))

    async def _volfile_changed(self, fetched) -> None:
        """The volfile server has a new volfile (FETCHSPEC, or a brick's
        VOLFILE_MODIFIED made us ask): apply a change of options to the
        running graph, switch graphs for a change of shape."""
        from .mgmt import elide_unavailable
        if fetched.text == self._volfile_text:
            return
        try:
            new = vf.parses(fetched.text, f"<volfile of {self.volname} from {fetched.server}>")
            elided = elide_unavailable(new)
            if not self.graph.same_shape(new):
                await self._switch_graph(new, fetched, elided)
                return
            self.graph.reconfigure(new)
        except (ValueError, FopError) as e:
            log.warning("volume %s: the new volfile was not applied: %s", self.volname, e)
            return
        self._volfile_text = fetched.text
        log.info("volume %s: reconfigured from the changed volfile", self.volname)

    async def _switch_graph(self, volfile, fetched, elided: list[str]) -> None:
        """Start the graph of `volfile`, move every open handle to it, then
        stop the old one (see the module docstring)."""
        graph = Graph(volfile)
        program = os.path.basename(sys.argv[0] or "") or "python"
        set_process_identity(graph, ProcessIdentity(
            process_name=f"gfapi.{program}", volfile_key=self.volname,
            volfile_server=fetched.server.host))
        self._attach_graph_logging(graph)
        try:
            live = await self._start_graph(graph)
        except (OSError, FopError, ValueError) as e:
            log.warning("volume %s: the new graph did not start (%s); keeping the old one",
                        self.volname, e)
            return
        if not await graph.wait_child_up(self.mount_timeout):
            log.warning("volume %s: the new graph did not come up; keeping the old one",
                        self.volname)
            live.stop.set()
            return
        old = self._live
        self._live, self.graph = live, graph
        self._volfile_text, self.elided = fetched.text, elided
        self._dentries.clear()
        moved: dict[int, Fd] = {}
        old_fds: list[Fd] = []
        with trio.move_on_after(SWITCH_DRAIN_TIMEOUT):
            while True:
                for handle in [h for h in self._open if h.live is old]:
                    try:
                        await handle._move_to(live, moved, old_fds)
                    except FopError as e:
                        log.warning("volume %s: %s could not be reopened on the new graph: "
                                    "%s", self.volname, handle.path, e)
                        handle.live = live  # its calls now fail there, not on a dead graph
                await old.wait_idle()
                if not any(h.live is old for h in self._open) and old.inflight == 0:
                    break
        for fd in old_fds:
            with trio.CancelScope(shield=True), trio.move_on_after(5):
                try:
                    await (old.graph.top.releasedir if fd.is_dir else old.graph.top.release)(
                        fd, None)
                except FopError:
                    pass
        old.stop.set()
        log.info("volume %s: switched to the new graph (%d open files moved)", self.volname,
                 len(old_fds))

    def _attach_graph_logging(self, graph: Graph) -> None:
        for xl in graph.by_name.values():
            if self._log_forward not in xl.log.handlers:
                xl.log.addHandler(self._log_forward)
            if self._log_handler is not None or self._log_level != logging.NOTSET:
                xl.log.setLevel(self._log_level)

    def _attach_logging(self, stack: AsyncExitStack) -> None:
        configured = self._log_handler is not None or self._log_level != logging.NOTSET
        loggers = [xl.log for xl in self.graph.by_name.values()]
        loggers.append(logging.getLogger("glusterpy"))
        for logger in loggers:
            # the forwarder is there even without a file (it then drops
            # records), so set_logging on the mounted volume needs no
            # re-attaching
            logger.addHandler(self._log_forward)
            stack.callback(logger.removeHandler, self._log_forward)
            stack.callback(logger.setLevel, logger.level)
            if configured:
                logger.setLevel(self._log_level)

    async def umount(self) -> None:
        """Close what is still open (flush + release) and stop the graph."""
        if not self.mounted:
            return
        for handle in list(self._open):
            with trio.CancelScope(shield=True):
                try:
                    await handle.close()
                except OSError:
                    pass
        stack, self._stack, self._root = self._stack, None, None
        self._dentries.clear()
        self._unmounting = True  # children going down now is expected
        try:
            await stack.aclose()
        finally:
            self._unmounting = False

    def _check_mounted(self) -> None:
        if not self.mounted:
            raise VolumeNotMounted("the volume is not mounted")

    def _as_caller(self, live: _LiveGraph | None = None):
        """The caller identity, and the graph the operation runs on: the
        current one, or `live` (an open handle's)."""
        return _CallerScope(self.identity, live or self._live)

    def setfsuid(self, uid: int) -> None:
        self.identity = Caller(uid=uid, gid=self.identity.gid, groups=self.identity.groups,
                               pid=self.identity.pid)

    def setfsgid(self, gid: int) -> None:
        self.identity = Caller(uid=self.identity.uid, gid=gid, groups=self.identity.groups,
                               pid=self.identity.pid)

    # -- path resolution ----------------------------------------------------

    async def _lookup(self, parent: _Node, name: str, path: str, *, cached: bool) -> Iatt | None:
        key = (parent.gfid, name)
        if cached:
            hit = self._dentries.get(key)
            if hit is not None:
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
        else:
            self._dentries.pop(key, None)
        return reply.iatt

    def _forget(self, parent_gfid: bytes | None, name: str | None) -> None:
        if parent_gfid is not None and name is not None:
            self._dentries.pop((parent_gfid, name), None)

    async def _resolve(self, path: str, *, follow: bool = True,
                       may_be_missing: bool = False) -> _Resolved:
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
        stack: list[_Node] = [self._root] if path.startswith("/") else list(self._cwd)
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
                    return _Resolved(parent, name, None, child_path)
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
                return _Resolved(parent, name, iatt, child_path)
            stack.append(_Node(iatt, child_path))
        # the path ended in "/", "." or ".." (or a symlink to a directory that
        # had nothing after it): the result is the directory on top, whose
        # attributes we refresh with a nameless (gfid) lookup
        top = stack[-1]
        reply = await self._top.lookup(Loc(path=top.path, gfid=top.gfid), None)
        if len(stack) > 1 and top.path != "/":
            return _Resolved(stack[-2], top.path.rsplit("/", 1)[1], reply.iatt, top.path)
        return _Resolved(None, None, reply.iatt, top.path)

    async def _resolve_for_entry(self, path: str) -> _Resolved:
        """Resolve the parent of a name about to be created."""
        r = await self._resolve(path, follow=False, may_be_missing=True)
        if r.iatt is not None:
            raise FopError(errno.EEXIST)
        if r.parent is None or r.name is None:
            raise FopError(errno.EEXIST)
        return r

    def _entry_xdata(self) -> dict:
        return {GFID_REQ: GFID.random()}

    # -- namespace --------------------------------------------------------------

    @_edge
    async def stat(self, path: str) -> os.stat_result:
        with self._as_caller():
            return stat_result((await self._resolve(path)).require())

    @_edge
    async def lstat(self, path: str) -> os.stat_result:
        with self._as_caller():
            return stat_result((await self._resolve(path, follow=False)).require())

    @_edge
    async def access(self, path: str, mode: int) -> bool:
        """True when the caller may access `path` in `mode` (os.access)."""
        with self._as_caller():
            try:
                r = await self._resolve(path)
                await self._top.access(r.loc(), mode, None)
            except FopError:
                return False
        return True

    @_edge
    async def mkdir(self, path: str, mode: int = 0o777) -> None:
        with self._as_caller():
            r = await self._resolve_for_entry(path)
            await self._top.mkdir(r.loc(), mode & ~self.umask & 0o7777, self.umask,
                                       self._entry_xdata())

    @_edge
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

    @_edge
    async def mknod(self, path: str, mode: int = 0o600 | st.S_IFREG, dev: int = 0) -> None:
        with self._as_caller():
            r = await self._resolve_for_entry(path)
            perm = mode & 0o7777 & ~self.umask
            await self._top.mknod(r.loc(), (mode & ~0o7777) | perm, dev, self.umask,
                                       self._entry_xdata())

    @_edge
    async def symlink(self, source: str, link_name: str) -> None:
        """Create `link_name` pointing at `source` (stored verbatim)."""
        with self._as_caller():
            r = await self._resolve_for_entry(link_name)
            await self._top.symlink(source, r.loc(), self.umask, self._entry_xdata())

    @_edge
    async def readlink(self, path: str) -> str:
        with self._as_caller():
            r = await self._resolve(path, follow=False)
            if not r.require().is_link:
                raise FopError(errno.EINVAL)
            return (await self._top.readlink(r.loc(), 4096, None)).path

    @_edge
    async def link(self, source: str, link_name: str) -> None:
        """Hard link; like libgfapi's glfs_link, `source` is not followed."""
        with self._as_caller():
            src = await self._resolve(source, follow=False)
            src.require()
            dst = await self._resolve_for_entry(link_name)
            if src.iatt.is_dir:  # after the EEXIST check, in the kernel's order
                raise FopError(errno.EPERM)
            await self._top.link(src.loc(), dst.loc(), None)

    @_edge
    async def unlink(self, path: str) -> None:
        with self._as_caller():
            r = await self._resolve(path, follow=False)
            r.require()
            if r.name is None:
                raise FopError(errno.EISDIR if r.iatt.is_dir else errno.EINVAL)
            await self._top.unlink(r.loc(), 0, None)
            self._forget(r.parent.gfid, r.name)

    remove = unlink

    @_edge
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

    @_edge
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

    @_edge
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

    @_edge
    async def chmod(self, path: str, mode: int) -> None:
        await self._setattr(path, Iatt(mode=mode & 0o7777), SET_ATTR_MODE)

    @_edge
    async def chown(self, path: str, uid: int, gid: int) -> None:
        await self._setattr(path, *_owner_change(uid, gid))

    @_edge
    async def lchown(self, path: str, uid: int, gid: int) -> None:
        await self._setattr(path, *_owner_change(uid, gid), follow=False)

    @_edge
    async def utime(self, path: str, times: tuple[float, float] | None = None, *,
                    ns: tuple[int, int] | None = None, follow_symlinks: bool = True) -> None:
        """Set access and modification times (like os.utime)."""
        await self._setattr(path, *_times_change(times, ns), follow=follow_symlinks)

    @_edge
    async def statvfs(self, path: str = "/") -> os.statvfs_result:
        with self._as_caller():
            r = await self._resolve(path)
            return statvfs_result((await self._top.statfs(r.loc(), None)).statvfs)

    # -- xattrs -------------------------------------------------------------

    @_edge
    async def getxattr(self, path: str, key: str, size: int = 0, *,
                       follow_symlinks: bool = True) -> bytes:
        """The value of xattr `key`; with size > 0 a longer value is ERANGE."""
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            reply = await self._top.getxattr(r.loc(), key, None)
            return _xattr_value(reply.dict, key, size, path)

    @_edge
    async def listxattr(self, path: str, size: int = 0, *,
                        follow_symlinks: bool = True) -> list[str]:
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            reply = await self._top.getxattr(r.loc(), None, None)
            return _xattr_names(reply.dict, size, path)

    @_edge
    async def setxattr(self, path: str, key: str, value: bytes, flags: int = 0, *,
                       follow_symlinks: bool = True) -> None:
        _check_xattr_flags(flags)
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            await self._top.setxattr(r.loc(), {key: _xattr_bytes(value)}, flags, None)

    @_edge
    async def removexattr(self, path: str, key: str, *, follow_symlinks: bool = True) -> None:
        with self._as_caller():
            r = await self._resolve(path, follow=follow_symlinks)
            r.require()
            await self._top.removexattr(r.loc(), key, None)

    # -- files ----------------------------------------------------------------

    @_edge
    async def open(self, path: str, flags: int = os.O_RDONLY, mode: int = 0o777) -> "AsyncFile":
        """Open (and with O_CREAT create) a file, as os.open does."""
        if not isinstance(flags, int):
            raise TypeError("flags must be an integer")
        with self._as_caller():
            return await self._open_file(path, flags, mode)

    async def _open_file(self, path: str, flags: int, mode: int) -> "AsyncFile":
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
                self._entry_xdata())
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

    @_edge
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

    # -- conveniences built on the calls above -------------------------------

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

    @_edge
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
                chain.append(_Node(cur.iatt, cur.path))
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


class _FirstChildState:
    """A graph-root listener: the first CHILD_UP or CHILD_DOWN that reaches
    the top decides the mount (glfs_init waits for the same); a later
    VOLFILE_MODIFIED makes the volume fetch its volfile again."""

    def __init__(self, vol: AsyncVolume):
        self.vol = vol
        self.decided = trio.Event()
        self.up: bool | None = None
        #: what a brick said when it refused this client (AUTH_FAILED)
        self.auth_error: str | None = None

    def __call__(self, event: Event, source, data) -> None:
        if event == Event.AUTH_FAILED:
            self.auth_error = str(data)  # protocol/client names itself in it
        if event in (Event.CHILD_UP, Event.CHILD_DOWN) and not self.decided.is_set():
            self.up = event == Event.CHILD_UP
            self.decided.set()
        elif event == Event.CHILD_DOWN:
            log.log(logging.INFO if self.vol._unmounting else logging.WARNING,
                    "volume %s: %s went down", self.vol.volname, getattr(source, "name", source))
        elif event == Event.VOLFILE_MODIFIED and self.vol._watch is not None:
            self.vol._watch.refresh()

    async def wait(self, timeout: float) -> bool | None:
        """True (up), False (down), or None when nothing came in time."""
        if self.vol.graph.root.child_up:
            return True
        with trio.move_on_after(timeout):
            await self.decided.wait()
        return self.up


class _CallerScope:
    """Sets the `caller` context variable for the duration of a call, and
    pins the graph the call runs on (counted in flight there, so a graph
    switch waits for it); a nested scope keeps the outer pin."""

    __slots__ = ("identity", "token", "live", "pin")

    def __init__(self, identity: Caller, live: _LiveGraph | None = None):
        self.identity = identity
        self.live = live

    def __enter__(self):
        self.token = caller.set(self.identity)
        self.pin = None
        if self.live is not None and _pinned.get() is None:
            self.pin = _pinned.set(self.live)
            self.live.enter()

    def __exit__(self, *exc):
        if self.pin is not None:
            _pinned.reset(self.pin)
            self.live.exit()
        caller.reset(self.token)


class _GraphHandle:
    """What AsyncFile and AsyncDir share: an fd on one live graph, moved to
    the next graph when the volume switches (see AsyncVolume's graph switch)."""

    vol: "AsyncVolume"
    fd: Fd
    live: "_LiveGraph"

    async def _move_to(self, live: _LiveGraph, moved: dict, old_fds: list) -> None:
        """Reopen this handle's fd on the graph `live` (once per fd: dup()s
        share it) by gfid, as glfs_migrate_fd does, and switch to it."""
        old = self.fd
        new = moved.get(id(old))
        if new is None:
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


class AsyncFile(_GraphHandle):
    """An open file (or a directory opened read-only) with its own offset."""

    def __init__(self, vol: AsyncVolume, fd: Fd, path: str, flags: int, iatt: Iatt | None,
                 refs: list[int] | None = None):
        self.vol = vol
        self.fd = fd
        self.path = path
        self.flags = flags
        self.offset = 0
        self.closed = False
        self._refs = refs if refs is not None else [1]  # shared with dup()s
        #: the graph `fd` is open on (the one the opening call ran on)
        self.live: _LiveGraph = _pinned.get() or vol._live

    async def __aenter__(self) -> "AsyncFile":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    def _check(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _readable(self) -> None:
        self._check()
        if self.fd.is_dir:
            raise OSError(errno.EISDIR, os.strerror(errno.EISDIR), self.path)
        if self.flags & os.O_ACCMODE == os.O_WRONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.path)

    def _writable(self) -> None:
        self._check()
        if self.fd.is_dir or self.flags & os.O_ACCMODE == os.O_RDONLY:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF), self.path)

    async def _call(self, fop: str, *args):
        with self.vol._as_caller(self.live):
            try:
                return await getattr(self.live.graph.top, fop)(self.fd, *args)
            except FopError as e:
                raise _oserror(e, self.path) from None

    async def pread(self, size: int, offset: int) -> bytes:
        self._readable()
        if size < 0 or offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        if size == 0:  # POSIX reads nothing; GlusterFS's posix would say EINVAL
            return b""
        reply = await self._call("readv", size, offset, 0, None)
        return reply.data if isinstance(reply.data, bytes) else bytes(reply.data)

    async def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes from the offset; everything to EOF if size < 0."""
        if size is None or size < 0:
            chunks = []
            while True:
                chunk = await self.read(READ_ALL_CHUNK)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
        data = await self.pread(size, self.offset)
        self.offset += len(data)
        return data

    async def readinto(self, buf) -> int:
        view = memoryview(buf).cast("B")
        data = await self.pread(len(view), self.offset)
        view[: len(data)] = data
        self.offset += len(data)
        return len(data)

    async def pwrite(self, data, offset: int) -> int:
        self._writable()
        if offset < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        reply = await self._call("writev", data, offset, 0, None)
        return reply.count

    async def write(self, data, flags: int = 0) -> int:
        self._writable()
        reply = await self._call("writev", data, self.offset, flags, None)
        if self.flags & os.O_APPEND and reply.postbuf is not None:
            self.offset = reply.postbuf.size
        else:
            self.offset += reply.count
        return reply.count

    async def lseek(self, pos: int, how: int = os.SEEK_SET) -> int:
        self._check()
        if how == os.SEEK_SET:
            new = pos
        elif how == os.SEEK_CUR:
            new = self.offset + pos
        elif how == os.SEEK_END:
            new = (await self.fstat()).st_size + pos
        elif how in (SEEK_DATA, SEEK_HOLE):
            what = fops.SeekWhat.DATA if how == SEEK_DATA else fops.SeekWhat.HOLE
            new = (await self._call("seek", pos, what, None)).offset
        else:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        if new < 0:
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        self.offset = new
        return new

    def tell(self) -> int:
        return self.offset

    async def fstat(self) -> os.stat_result:
        self._check()
        return stat_result((await self._call("fstat", None)).iatt)

    async def fgetsize(self) -> int:
        return (await self.fstat()).st_size

    async def fchmod(self, mode: int) -> None:
        self._check()
        await self._call("fsetattr", Iatt(mode=mode & 0o7777), SET_ATTR_MODE, None)

    async def fchown(self, uid: int, gid: int) -> None:
        self._check()
        await self._call("fsetattr", *_owner_change(uid, gid), None)

    async def futime(self, times=None, *, ns=None) -> None:
        self._check()
        await self._call("fsetattr", *_times_change(times, ns), None)

    async def ftruncate(self, length: int) -> None:
        self._check()
        if self.fd.is_dir or self.flags & os.O_ACCMODE == os.O_RDONLY or length < 0:
            # ftruncate(2) on a descriptor not open for writing is EINVAL
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL), self.path)
        await self._call("ftruncate", length, None)

    async def fsync(self) -> None:
        self._check()
        await self._call("fsyncdir" if self.fd.is_dir else "fsync", 0, None)

    async def fdatasync(self) -> None:
        self._check()
        await self._call("fsyncdir" if self.fd.is_dir else "fsync", 1, None)

    async def fallocate(self, mode: int, offset: int, length: int) -> None:
        self._writable()
        await self._call("fallocate", mode, offset, length, None)

    async def discard(self, offset: int, length: int) -> None:
        self._writable()
        await self._call("discard", offset, length, None)

    async def zerofill(self, offset: int, length: int) -> None:
        self._writable()
        await self._call("zerofill", offset, length, None)

    async def fgetxattr(self, key: str, size: int = 0) -> bytes:
        self._check()
        return _xattr_value((await self._call("fgetxattr", key, None)).dict, key, size,
                            self.path)

    async def flistxattr(self, size: int = 0) -> list[str]:
        self._check()
        return _xattr_names((await self._call("fgetxattr", None, None)).dict, size, self.path)

    async def fsetxattr(self, key: str, value: bytes, flags: int = 0) -> None:
        self._check()
        _check_xattr_flags(flags)
        await self._call("fsetxattr", {key: _xattr_bytes(value)}, flags, None)

    async def fremovexattr(self, key: str) -> None:
        self._check()
        await self._call("fremovexattr", key, None)

    async def lock(self, cmd: int, flock: fops.Flock) -> fops.Flock:
        """A POSIX record lock (fcntl F_GETLK/F_SETLK/F_SETLKW as LockCmd)."""
        self._check()
        flock.owner = flock.owner or self.fd.lk_owner or id(self).to_bytes(8, "little")
        return (await self._call("lk", cmd, flock, None)).flock

    def dup(self) -> "AsyncFile":
        """A second handle on the same open file, with its own offset."""
        self._check()
        self._refs[0] += 1
        twin = AsyncFile(self.vol, self.fd, self.path, self.flags, None, self._refs)
        twin.offset = self.offset
        return self.vol._track(twin)

    async def close(self) -> None:
        """Flush (as close(2) does on GlusterFS) and release the last handle."""
        if self.closed:
            return
        self.closed = True
        self.vol._open.discard(self)
        self._refs[0] -= 1
        top = self.live.graph.top
        with self.vol._as_caller(self.live):
            try:
                if not self.fd.is_dir:
                    await top.flush(self.fd, None)
            except FopError as e:
                raise _oserror(e, self.path) from None
            finally:
                if self._refs[0] == 0:
                    try:
                        await (top.releasedir if self.fd.is_dir else top.release)(self.fd, None)
                    except FopError:
                        pass

    @property
    def fileno(self) -> Fd:
        return self.fd

    @property
    def name(self) -> str:
        return self.path

    @property
    def mode(self) -> int:
        return self.flags


@dataclass(slots=True)
class DirectoryEntry:
    """One entry read from a directory: its name and, with readdirplus, iatt."""

    name: str
    type: int
    iatt: Iatt | None


class AsyncDir(_GraphHandle):
    """An open directory; `async for entry in dir` reads all its entries."""

    def __init__(self, vol: AsyncVolume, fd: Fd, path: str, readdirplus: bool):
        self.vol = vol
        self.fd = fd
        self.path = path
        self.readdirplus = readdirplus
        #: the graph `fd` is open on
        self.live: _LiveGraph = _pinned.get() or vol._live
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
                    raise _oserror(e, self.path) from None
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


# --------------------------------------------------------------------------
# helpers

_MODE_FLAGS = {
    "r": os.O_RDONLY, "r+": os.O_RDWR,
    "w": os.O_WRONLY | os.O_CREAT | os.O_TRUNC, "w+": os.O_RDWR | os.O_CREAT | os.O_TRUNC,
    "a": os.O_WRONLY | os.O_CREAT | os.O_APPEND, "a+": os.O_RDWR | os.O_CREAT | os.O_APPEND,
    "x": os.O_WRONLY | os.O_CREAT | os.O_EXCL, "x+": os.O_RDWR | os.O_CREAT | os.O_EXCL,
}


def mode_to_flags(mode: str) -> int:
    """Python's open() mode string -> os.O_* flags; ValueError if invalid."""
    if not isinstance(mode, str):
        raise TypeError("mode must be a string")
    plain = mode.replace("b", "").replace("t", "")
    if mode.count("b") > 1 or ("b" in mode and "t" in mode):
        raise ValueError(f"invalid mode: {mode!r}")
    key = plain[0] + ("+" if "+" in plain else "") if plain else ""
    if key not in _MODE_FLAGS or len(plain) != len(key) or plain.count("+") > 1:
        raise ValueError(f"invalid mode: {mode!r}")
    return _MODE_FLAGS[key]


#: GlusterFS's log levels (gf_loglevel_t) as Python's
_GF_LOG_LEVELS = {0: logging.CRITICAL + 10, 1: logging.CRITICAL, 2: logging.CRITICAL,
                  3: logging.CRITICAL, 4: logging.ERROR, 5: logging.WARNING,
                  6: logging.INFO, 7: logging.INFO, 8: logging.DEBUG, 9: 5}
_GF_LOG_NAMES = {"NONE": 0, "EMERG": 1, "ALERT": 2, "CRITICAL": 3, "ERROR": 4,
                 "WARNING": 5, "NOTICE": 6, "INFO": 7, "DEBUG": 8, "TRACE": 9}


class _ForwardHandler(logging.Handler):
    """Hands records to the volume's current log handler (set_logging)."""

    def __init__(self):
        super().__init__()
        self.target: logging.Handler | None = None

    def emit(self, record: logging.LogRecord) -> None:
        target = self.target
        if target is not None:
            target.handle(record)


def _python_log_level(level) -> int:
    """A GlusterFS log level (0-9 or its name) as a Python logging level."""
    if isinstance(level, str):
        name = level.strip().upper()
        if name not in _GF_LOG_NAMES:
            raise ValueError(f"unknown log level {level!r} "
                             f"(one of {', '.join(_GF_LOG_NAMES)})")
        level = _GF_LOG_NAMES[name]
    if level not in _GF_LOG_LEVELS:
        raise ValueError(f"log level {level!r} is not 0..9")
    return _GF_LOG_LEVELS[level]


def _process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _owner_change(uid: int, gid: int) -> tuple[Iatt, int]:
    valid = (SET_ATTR_UID if uid != -1 else 0) | (SET_ATTR_GID if gid != -1 else 0)
    return Iatt(uid=max(uid, 0), gid=max(gid, 0)), valid


def _times_change(times, ns) -> tuple[Iatt, int]:
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


def _xattr_bytes(value) -> bytes:
    if isinstance(value, str):
        return value.encode()
    return bytes(value)


def _check_xattr_flags(flags: int) -> None:
    if flags & ~(XATTR_CREATE | XATTR_REPLACE) or flags == XATTR_CREATE | XATTR_REPLACE:
        raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))


def _xattr_value(d: dict, key: str, size: int, path: str | None = None) -> bytes:
    """The value from a getxattr reply, with getxattr(2)'s size rule."""
    if key not in d:
        raise _oserror(FopError(errno.ENODATA), path)
    value = d[key]
    value = value.encode() if isinstance(value, str) else bytes(value)
    if size and len(value) > size:
        raise _oserror(FopError(errno.ERANGE), path)
    return value


def _xattr_names(d: dict, size: int, path: str | None = None) -> list[str]:
    """The names from a list-all getxattr reply, with listxattr(2)'s size rule."""
    names = sorted(d)
    if size and sum(len(os.fsencode(n)) + 1 for n in names) > size:
        raise _oserror(FopError(errno.ERANGE), path)
    return names
