"""Run a FUSE mount of a graph: the `glusterfs` FUSE client's job.

One mount per process, as with GlusterFS's glusterfs (pyfuse3 keeps global
state).  `run_mount()` starts the graph, waits for the volume to come up,
mounts, serves until unmounted (fusermount3 -u, umount, SIGTERM/SIGINT),
and always leaves the mount point clean.  By default the process puts
itself in the background once the mount works, so `mount` returns only
when the filesystem is usable and fails with a clear message - and no stale
mount point - when it is not.

A mount whose graph came from a volfile server (`Refetch`) follows the
volfile as gfapi does: the standing mgmt connection (gfapi.mgmt.VolfileWatch)
hears FETCHSPEC, fetches the volfile, applies a change of options to the
live graph, and for a change of shape starts the new graph, waits for it
to come up, lets the bridge switch to it (FuseBridge.switch_graph) and
stops the old one - no remount, open files stay open.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import stat
import subprocess
import sys
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field

import pyfuse3
import trio

from ..graph import Graph
from ..inode import DEFAULT_LRU_LIMIT
from ..process import ProcessIdentity, set_process_identity, settle_heap
from .bridge import FuseBridge
from .copy_range import CopyRange
from .ops_table import find_session_ops
from .posix_locks import PosixLocks
from .session_loop import SessionLoop

log = logging.getLogger(__name__)


class MountError(Exception):
    """The volume could not be mounted; the message says why."""


#: kernel mount flags that go to the kernel as they are (libfuse 3 passes
#: these; GlusterFS's mount helper hands the same ones to its fuse mount)
KERNEL_FLAGS = frozenset({"atime", "noatime", "dev", "nodev", "exec", "noexec", "suid",
                          "nosuid", "sync", "async", "dirsync"})
#: accepted and without effect: the kernel's default (relatime), atime
#: variants libfuse 3.14 cannot pass, and mount(8)/fstab housekeeping
NO_EFFECT = frozenset({"defaults", "relatime", "_netdev", "noauto", "auto", "nofail", "user",
                       "users", "nouser", "owner", "group", "comment", "diratime",
                       "nodiratime", "norelatime", "strictatime", "nostrictatime", "lazytime",
                       "nolazytime", "silent", "loud"})
TRANSPORTS = ("tcp", "socket")
#: worker tasks kept idle for requests that wait (session_loop.py; pyfuse3's
#: min_tasks when its own loop serves).  pyfuse3's default (1) ends every
#: worker but one as soon as it finishes a request and starts a new task
#: for the next request that finds none waiting: with 4 requests in flight
#: (fio's 4 psync jobs) about one request in six paid for a new task (339
#: tasks for 2,000 reads; bench/notes/metadata.md).  Idle workers are parked
#: and cost nothing per request.
FUSE_WORKERS = 16
#: at most this many requests waiting at once (pyfuse3's default max_tasks);
#: past it the next request is read when one of them is done
FUSE_MAX_WORKERS = 99


@dataclass
class MountOptions:
    """What `-o` may set, with GlusterFS's mount option names (those of
    mount.glusterfs and the glusterfs client's command line)."""

    read_only: bool = False
    direct_io_mode: bool = False
    attribute_timeout: float = 1.0
    entry_timeout: float = 1.0
    #: seconds a caller's supplementary groups are kept (fuse-bridge's default)
    gid_timeout: float = 300.0
    #: inodes the client's inode table keeps (GlusterFS's lru-limit; 0: no bound)
    lru_limit: int = DEFAULT_LRU_LIMIT
    #: the kernel's writeback cache (GlusterFS's kernel-writeback-cache)
    kernel_writeback_cache: bool = False
    #: POSIX ACL xattrs reach the volume (GlusterFS's `acl`; off: EOPNOTSUPP)
    acl: bool = False
    #: let security.capability / security.selinux reach the volume
    capability: bool = False
    selinux: bool = False
    log_level: str = "INFO"
    log_file: str | None = None
    allow_other: bool = True
    fsname: str = "glusterpy"
    #: more volfile servers to try, after the one of the spec
    backup_volfile_servers: list[str] = field(default_factory=list)
    #: the volfile servers' port, when the spec gives none
    server_port: int | None = None
    transport: str = "tcp"
    #: kernel flags (nosuid, noexec, ...) and auto_unmount, for libfuse
    kernel_flags: list[str] = field(default_factory=list)
    #: options that were accepted without effect (-s: unknown ones too)
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None, *, sloppy: bool = False) -> "MountOptions":
        """`ro,direct-io-mode=enable,attribute-timeout=0,...` (mount -o).
        An unknown option is an error, or with `sloppy` (mount -s) ignored."""
        opts = cls()
        if not text:
            return opts
        for item in text.split(","):
            item = item.strip()
            key, _, value = item.partition("=")
            key = key.replace("_", "-") if key != "_netdev" else key
            if not key:
                continue
            if key == "ro":
                opts.read_only = True
            elif key == "rw":
                opts.read_only = False
            elif key == "direct-io-mode":
                if value.lower() not in ("enable", "disable", "on", "off", "true", "false",
                                         "yes", "no", "auto", ""):
                    raise MountError(f"direct-io-mode={value!r}: use enable or disable")
                opts.direct_io_mode = value.lower() in ("enable", "on", "true", "yes", "")
            elif key in ("attribute-timeout", "entry-timeout", "gid-timeout"):
                try:
                    seconds = float(value)
                except ValueError:
                    raise MountError(f"{key}={value!r} is not a number of seconds") from None
                if not 0 <= seconds < 1e9:
                    raise MountError(f"{key}={value!r} must be 0 or more seconds")
                setattr(opts, key.replace("-", "_"), seconds)
            elif key == "kernel-writeback-cache":
                if value.lower() not in ("yes", "no", "on", "off", "true", "false", ""):
                    raise MountError(f"kernel-writeback-cache={value!r}: use yes or no")
                opts.kernel_writeback_cache = value.lower() in ("yes", "on", "true", "")
            elif key == "lru-limit":
                if not value.isdigit() or int(value) > 2**32:
                    raise MountError(f"lru-limit={value!r} is not a number of inodes "
                                     f"(0 for no bound)")
                opts.lru_limit = int(value)
            elif key in ("capability", "selinux", "acl") and not value:
                setattr(opts, key, True)
            elif key == "log-level":
                level = value.upper()
                if level not in ("CRITICAL", "ERROR", "WARNING", "INFO", "DEBUG", "TRACE",
                                 "NONE"):
                    raise MountError(f"log-level={value!r}: use ERROR, WARNING, INFO or DEBUG")
                opts.log_level = {"TRACE": "DEBUG", "NONE": "CRITICAL"}.get(level, level)
            elif key == "log-file":
                if not value:
                    raise MountError("log-file= needs a path")
                opts.log_file = value
            elif key in ("backup-volfile-servers", "backupvolfile-server"):
                # GlusterFS separates them with ':' (host names hold no colon)
                hosts = [h for h in value.split(":") if h]
                if not hosts:
                    raise MountError(f"{key}= needs host names (h1:h2:...)")
                opts.backup_volfile_servers += hosts
            elif key == "server-port":
                if not value.isdigit() or not 0 < int(value) < 65536:
                    raise MountError(f"server-port={value!r} is not a port number")
                opts.server_port = int(value)
            elif key == "transport":
                if value not in TRANSPORTS:
                    raise MountError(f"transport={value!r}: glusterpy speaks "
                                     f"{' or '.join(TRANSPORTS)}")
                opts.transport = value
            elif item in KERNEL_FLAGS or item == "auto_unmount":
                opts.kernel_flags.append(item)
            elif item in NO_EFFECT or key in NO_EFFECT or key.startswith("x-"):
                opts.ignored.append(item)
            elif sloppy:
                opts.ignored.append(item)
            else:
                raise MountError(f"unknown mount option {item!r}")
        return opts

    def fuse_options(self) -> set[str]:
        out = set(pyfuse3.default_options)
        out.add(f"fsname={self.fsname}")
        out.add("subtype=glusterpy")
        if self.allow_other and os.geteuid() == 0:
            out.add("allow_other")
        out.add("ro" if self.read_only else "rw")
        out.update(self.kernel_flags)
        return out


@dataclass
class Refetch:
    """Where a mounted graph's volfile came from, to follow its changes."""

    servers: list
    volname: str
    text: str
    process_name: str = "fuse"


class _Graphs:
    """Graphs running as tasks of one nursery, each until told to stop."""

    def __init__(self, nursery: trio.Nursery):
        self.nursery = nursery
        self.stops: dict[int, trio.Event] = {}

    async def start(self, graph: Graph) -> None:
        try:
            await self.nursery.start(self._run, graph)
        except BaseExceptionGroup as group:
            raise _sole(group) from None

    async def _run(self, graph: Graph, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        stop = self.stops[id(graph)] = trio.Event()
        async with graph.running():
            task_status.started()
            await stop.wait()

    def stop(self, graph: Graph) -> None:
        self.stops.pop(id(graph)).set()


def _sole(group: BaseException) -> BaseException:
    while isinstance(group, BaseExceptionGroup) and len(group.exceptions) == 1:
        group = group.exceptions[0]
    return group


@asynccontextmanager
async def _running_graphs():
    try:
        async with trio.open_nursery() as nursery:
            try:
                yield _Graphs(nursery)
            finally:
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        raise _sole(group) from None


async def _follow_volfile(refetch: Refetch, graphs: _Graphs, bridge: FuseBridge,
                          current: list) -> None:
    """Apply the volfile's changes to the mount (see the module docstring)."""
    from .. import volfile as vf
    from ..gfapi.mgmt import VolfileWatch, elide_unavailable

    async def changed(fetched) -> None:
        graph = current[0]
        new = vf.parses(fetched.text, f"<volfile of {refetch.volname} from {fetched.server}>")
        elide_unavailable(new)
        if graph.same_shape(new):
            graph.reconfigure(new)
            log.info("volume %s: reconfigured from the changed volfile", refetch.volname)
            return
        new_graph = Graph(new)
        set_process_identity(new_graph, ProcessIdentity(
            process_name=refetch.process_name, volfile_key=refetch.volname,
            volfile_server=fetched.server.host))
        await graphs.start(new_graph)
        if not await new_graph.wait_child_up(30):
            log.warning("volume %s: the new graph did not come up; keeping the old one",
                        refetch.volname)
            graphs.stop(new_graph)
            return
        moved = await bridge.switch_graph(new_graph.top)
        current[0] = new_graph
        graphs.stop(graph)
        log.info("volume %s: switched to the new graph (%d open fds moved)", refetch.volname,
                 moved)

    await VolfileWatch(refetch.servers, refetch.volname, refetch.text).run(changed)


def check_mountpoint(mountpoint: str) -> None:
    try:
        st = os.stat(mountpoint)
    except OSError as e:
        if e.errno in (errno.ENOTCONN, errno.ECONNABORTED):
            # a FUSE mount whose process died (kill -9 without auto_unmount);
            # the kernel says ECONNABORTED instead when a request was in
            # flight as the connection was torn down
            raise MountError(f"{mountpoint} is a stale mount whose process is gone: "
                             f"unmount it first (umount {mountpoint})") from None
        raise MountError(f"mount point {mountpoint} does not exist or is not a "
                         f"directory ({e.strerror})") from None
    if not stat.S_ISDIR(st.st_mode):
        raise MountError(f"mount point {mountpoint} does not exist or is not a directory")
    if os.path.ismount(mountpoint):
        raise MountError(f"{mountpoint} is already a mount point")


async def serve(graph: Graph, mountpoint: str, opts: MountOptions, *,
                up_timeout: float = 30.0, ready=None, refetch: Refetch | None = None) -> None:
    """Start `graph`, mount it on `mountpoint`, serve until unmounted;
    with `refetch`, follow the volfile's changes."""
    check_mountpoint(mountpoint)
    async with _running_graphs() as graphs:
        await graphs.start(graph)
        if not await graph.wait_child_up(up_timeout):
            raise MountError(f"the volume did not come up within {up_timeout:g}s "
                             f"(are its bricks running and reachable?)")
        bridge = FuseBridge(graph.top, attr_timeout=opts.attribute_timeout,
                            entry_timeout=opts.entry_timeout,
                            direct_io=opts.direct_io_mode, read_only=opts.read_only,
                            gid_timeout=opts.gid_timeout, capability=opts.capability,
                            selinux=opts.selinux, lru_limit=opts.lru_limit or sys.maxsize,
                            writeback_cache=opts.kernel_writeback_cache, acl=opts.acl)
        try:
            pyfuse3.init(bridge, mountpoint, opts.fuse_options())
        except RuntimeError as e:
            raise MountError(f"mounting on {mountpoint} failed: {e}") from None
        locks, copies = PosixLocks(bridge), CopyRange(bridge)
        unmounted = False
        signalled: list = []
        try:
            # before main: the kernel's INIT asks libfuse for lock support
            found = find_session_ops()
            locks.install(found)
            copies.install(found)
            log.info("mounted %s on %s", opts.fsname, mountpoint)
            if ready is not None:
                ready()
            async with trio.open_nursery() as nursery:
                # lock and copy requests are answered from its tasks
                locks.nursery = copies.nursery = nursery
                nursery.start_soon(_stop_on_signals, signalled)
                nursery.start_soon(_statedump_on_signal, bridge)
                if refetch is not None:
                    nursery.start_soon(_follow_volfile, refetch, graphs, bridge, [graph])
                await _session_loop(bridge)
                # the loop also ends when a signal stopped it: the kernel's
                # mount is still there then, and is ours to take down
                unmounted = not signalled
                nursery.cancel_scope.cancel()
        finally:
            # SIGTERM or an error: take the mount down ourselves
            pyfuse3.close(unmount=not unmounted)
            locks.uninstall()
            copies.uninstall()
            log.info("unmounted %s", mountpoint)
        # leaving _running_graphs(): every graph still running is stopped


async def _session_loop(bridge: FuseBridge) -> None:
    """Serve the session until unmounted: glusterpy's loop (session_loop.py),
    or pyfuse3.main if pyfuse3 is not the one that loop was written for."""
    loop, why = SessionLoop.find(idle=FUSE_WORKERS, max_tasks=FUSE_MAX_WORKERS)
    if loop is None:
        log.warning("serving FUSE with pyfuse3's own loop (a scheduler pass per request): %s",
                    why)
        await pyfuse3.main(min_tasks=FUSE_WORKERS, max_tasks=FUSE_MAX_WORKERS)
        return
    await loop.run()


async def _stop_on_signals(signalled: list) -> None:
    """SIGTERM/SIGINT/SIGHUP end the session loop (appended to `signalled`,
    so `serve` unmounts)."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async for signum in signals:
            signalled.append(signum)
            pyfuse3.terminate()
            return


#: where SIGUSR1 writes a statedump (GlusterFS's default statedump path)
STATEDUMP_DIR = "/var/run/gluster"


def statedump_path(pid: int) -> str:
    return os.path.join(STATEDUMP_DIR, f"glusterpy-mount.{pid}.dump")


async def _statedump_on_signal(bridge: FuseBridge) -> None:
    """SIGUSR1: write what the bridge and each translator of the graph in
    use hold, as JSON, to statedump_path(pid) (GlusterFS's clients dump on
    the same signal)."""
    with trio.open_signal_receiver(signal.SIGUSR1) as signals:
        async for _ in signals:
            state = {"bridge": bridge.dump_state(), "fuse_workers": _fuse_workers(),
                     "translators": {xl.name: _jsonable(xl.dump_state())
                                     for xl in _translators(bridge.top)}}
            path = statedump_path(os.getpid())
            try:
                os.makedirs(STATEDUMP_DIR, exist_ok=True)
                tmp = path + ".tmp"
                with open(tmp, "w") as f:
                    json.dump(state, f, indent=1, default=repr)
                os.replace(tmp, path)
                log.info("statedump written to %s", path)
            except OSError as e:
                log.warning("statedump to %s failed: %s", path, e)


def _fuse_workers() -> dict:
    """The session loop's worker tasks: how many are alive and how many
    were ever started ("newest"), so a statedump shows whether workers are
    kept or started anew; with glusterpy's loop also its counts
    (session_loop.LoopStats)."""
    loop = SessionLoop.active
    if loop is not None:
        stats = asdict(loop.stats)
        stats.update(alive=loop.tasks, idle=len(loop.idle), newest=loop.stats.tasks_started)
        return stats
    # pyfuse3's own loop names its tasks pyfuse-NN, counting every one started
    alive, newest = 0, 0
    todo = [trio.lowlevel.current_root_task()]
    while todo:
        task = todo.pop()
        prefix, _, serial = task.name.rpartition("-")
        if prefix == "pyfuse" and serial.isdigit():
            alive += 1
            newest = max(newest, int(serial))
        for nursery in task.child_nurseries:
            todo.extend(nursery.child_tasks)
    return {"alive": alive, "newest": newest}


def _translators(top) -> list:
    seen, out, todo = set(), [], [top]
    while todo:
        xl = todo.pop()
        if id(xl) not in seen:
            seen.add(id(xl))
            out.append(xl)
            todo.extend(xl.children)
    return out


def _jsonable(value):
    try:
        json.dumps(value, default=repr)
        return value
    except (TypeError, ValueError):
        return repr(value)


def run_mount(make_graph, mountpoint: str, opts: MountOptions, *,
              foreground: bool = False, prog: str = "glusterpy mount",
              failure_status: int = 1) -> int:
    """Mount in this process (foreground) or in a child that detaches once
    the mount works.  Returns the exit status for the command line:
    0, or `failure_status` with the reason on stderr after `prog: `."""
    mountpoint = os.path.abspath(mountpoint)
    try:
        check_mountpoint(mountpoint)
    except MountError as e:
        print(f"{prog}: {e}", file=sys.stderr)
        return failure_status
    if foreground:
        _setup_logging(opts)
        settle_heap()
        try:
            trio.run(_serve_made, make_graph, mountpoint, opts, None)
        except MountError as e:
            print(f"{prog}: {e}", file=sys.stderr)
            return failure_status
        return 0
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid:
        os.close(write_end)
        # one message: "ok" once mounted, an error text, or nothing if it died
        verdict = _read_all(read_end).decode(errors="replace")
        os.close(read_end)
        if verdict == "ok":
            return 0
        os.waitpid(pid, 0)
        print(f"{prog}: {verdict or 'the mount process died'}", file=sys.stderr)
        return failure_status
    # the child: detach, serve, report success or failure through the pipe
    os.close(read_end)
    os.setsid()
    status = 0
    with os.fdopen(write_end, "wb", buffering=0) as pipe:
        def ready():
            pipe.write(b"ok")
            pipe.close()
            _detach_stdio()
        _setup_logging(opts)
        settle_heap()
        try:
            trio.run(_serve_made, make_graph, mountpoint, opts, ready)
        except MountError as e:
            _report(pipe, str(e))
            status = 1
        except BaseException as e:  # reported to the waiting parent, then logged
            _report(pipe, f"{type(e).__name__}: {e}")
            log.exception("mount failed")
            status = 1
    os._exit(status)


def _read_all(fd: int) -> bytes:
    """Everything the child writes before it closes its end."""
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    return b"".join(chunks)


async def _serve_made(make_graph, mountpoint, opts, ready) -> None:
    """`make_graph()` gives a Graph, or (Graph, Refetch) for a fetched one."""
    if opts.ignored:
        log.info("mount options without effect here: %s", ",".join(opts.ignored))
    made = await make_graph()
    graph, refetch = made if isinstance(made, tuple) else (made, None)
    await serve(graph, mountpoint, opts, ready=ready, refetch=refetch)


def _report(pipe, message: str) -> None:
    if pipe.closed:  # mounted already: the parent has gone
        return
    try:
        pipe.write(message.encode())
    except OSError:
        pass


def _detach_stdio() -> None:
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)


def _setup_logging(opts: MountOptions) -> None:
    handler: logging.Handler
    if opts.log_file:
        handler = logging.FileHandler(opts.log_file)
    else:
        handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        "[%(asctime)s] %(levelname).1s [%(name)s] %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(opts.log_level)


def unmount(mountpoint: str) -> int:
    """`glusterpy umount MNT`: fusermount3 -u, or umount for root."""
    mountpoint = os.path.abspath(mountpoint)
    if not os.path.ismount(mountpoint):
        print(f"glusterpy umount: {mountpoint} is not mounted", file=sys.stderr)
        return 1
    for cmd in (["fusermount3", "-u", mountpoint], ["umount", mountpoint]):
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
        except FileNotFoundError:
            continue
        if done.returncode == 0:
            return 0
        last = done.stderr.strip()
    print(f"glusterpy umount: {last}", file=sys.stderr)
    return 1


__all__ = ["MountError", "MountOptions", "Refetch", "run_mount", "serve", "unmount"]
