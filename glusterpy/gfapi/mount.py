"""gfapi: the volume's lifecycle - mount (the graph started, the first
CHILD_UP awaited, the root looked up), the remote volfile and its changes
(reconfigure, or a graph switch), logging, umount, and the caller's
identity (libgfapi's glfs.c and glfs-mgmt.c).
"""

from __future__ import annotations

import errno
import logging
import os
import sys
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

import trio

from .. import volfile as vf
from ..fops import Caller, Fd, FopError, Loc
from ..graph import Graph
from ..process import ProcessIdentity, set_process_identity
from ..xlator import Event
from .common import CallerScope, LiveGraph, log, pinned
from .exceptions import LibgfapiException, VolumeNotMounted
from .resolve import Node

if TYPE_CHECKING:
    from .aio import AsyncVolume


#: how long a graph switch waits for the old graph's calls to finish
SWITCH_DRAIN_TIMEOUT = 120.0


class VolumeMount:
    """AsyncVolume's mount, graph and umount."""

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
        self._root = Node(reply.iatt, "/")
        self._cwd = [self._root]

    async def _start_graph(self, graph: Graph) -> LiveGraph:
        """Run `graph` in a task of the mount's nursery until its `stop`."""
        try:
            return await self._nursery.start(self._run_graph, graph)
        except BaseExceptionGroup as group:
            leaf: BaseException = group
            while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
                leaf = leaf.exceptions[0]
            raise leaf from None

    async def _run_graph(self, graph: Graph, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        live = LiveGraph(graph)
        async with graph.running():
            task_status.started(live)
            await live.stop.wait()

    @property
    def _top(self):
        """The top translator of the graph this operation runs on."""
        live = pinned.get()
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
        # the open files' calls wait while they move: the calls already on
        # the old graph finish first, so their writes are behind there when
        # _move_to sends them on (a read on the new graph sees them)
        held = [h for h in self._open if h.live is old and h.moving is None]
        for h in held:
            h.moving = trio.Event()
        try:
            with trio.move_on_after(SWITCH_DRAIN_TIMEOUT):
                await old.wait_idle()
                while True:
                    for handle in [h for h in self._open if h.live is old]:
                        try:
                            await handle._move_to(live, moved, old_fds)
                        except FopError as e:
                            log.warning("volume %s: %s could not be reopened on the new "
                                        "graph: %s", self.volname, handle.path, e)
                            handle.live = live  # its calls now fail there, not on a dead graph
                    await old.wait_idle()
                    if not any(h.live is old for h in self._open) and old.inflight == 0:
                        break
        finally:
            for h in held:
                event, h.moving = h.moving, None
                event.set()
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

    def _as_caller(self, live: LiveGraph | None = None):
        """The caller identity, and the graph the operation runs on: the
        current one, or `live` (an open handle's)."""
        return CallerScope(self.identity, live or self._live)

    def setfsuid(self, uid: int) -> None:
        self.identity = Caller(uid=uid, gid=self.identity.gid, groups=self.identity.groups,
                               pid=self.identity.pid)

    def setfsgid(self, gid: int) -> None:
        self.identity = Caller(uid=self.identity.uid, gid=gid, groups=self.identity.groups,
                               pid=self.identity.pid)

    def setfsgroups(self, groups) -> None:
        """libgfapi's glfs_setfsgroups: the auxiliary groups later calls
        carry (the bricks' access control checks group entries against
        them); setfsuid and setfsgid leave them as they are."""
        groups = tuple(groups)
        if any(isinstance(g, bool) or not isinstance(g, int) or not 0 <= g < 2 ** 32
               for g in groups):
            raise OSError(errno.EINVAL, f"setfsgroups({groups!r}): not group ids")
        self.identity = Caller(uid=self.identity.uid, gid=self.identity.gid, groups=groups,
                               pid=self.identity.pid)


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


#: GlusterFS's log levels (gf_loglevel_t) as Python's
_GF_LOG_LEVELS = {0: logging.CRITICAL + 10, 1: logging.CRITICAL, 2: logging.CRITICAL,
                  3: logging.CRITICAL, 4: logging.ERROR, 5: logging.WARNING,
                  6: logging.INFO, 7: logging.INFO, 8: logging.DEBUG, 9: 5}
_GF_LOG_NAMES = {"NONE": 0, "EMERG": 1, "ALERT": 2, "CRITICAL": 3, "ERROR": 4,
                 "WARNING": 5, "NOTICE": 6, "INFO": 7, "DEBUG": 8, "TRACE": 9}


class ForwardHandler(logging.Handler):
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


def process_umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask
