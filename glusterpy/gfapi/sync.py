"""The synchronous facade, shaped like libgfapi-python's `gluster.gfapi`.

    from glusterpy.gfapi import Volume
    vol = Volume("server1", "myvol")                   # a remote volume, by GETSPEC
    vol.mount()
    vol = Volume.from_volfile("volfiles/demo.vol")     # a local graph, mounted
    with vol.fopen("/hello", "w") as f:
        f.write(b"hi")
    vol.umount()

Each `Volume` runs its `AsyncVolume` on a trio event loop in a daemon thread
of its own; calls from any number of threads are handed to that loop and
wait for their result.  The hand-off avoids `trio.from_thread.run`, which
spawns a task per call: persistent worker tasks park between calls, and a
call wakes one (or starts a new one when all are busy, so a call that blocks
- a waiting lock - never holds up another thread's call).

A graph made only of translators whose fops never suspend
(`Translator.FOPS_NEVER_SUSPEND`: storage/posix, performance/io-cache) skips
the hand-off: calls run in the caller's thread, one at a time under a
volume lock.  Measured here, the hand-off costs ~50 us per call; a 128 KiB
read from the page cache costs ~11 us.  Anything that can block (locks,
the network) keeps the loop thread.

The methods are generated from `AsyncVolume`, `AsyncFile` and `AsyncDir`, so
the facade cannot drift from the async API: every public coroutine becomes a
blocking method, every async generator a generator, and async handles come
back wrapped as `File` and `Dir`.
"""

from __future__ import annotations

import collections
import functools
import inspect
import os
import threading
from typing import Any

import trio

from .aio import AsyncDir, AsyncFile, AsyncVolume, DirEntry
from .exceptions import LibgfapiException, VolumeNotMounted


class _Box:
    """A call's result, handed back to the waiting thread."""

    __slots__ = ("done", "value", "error")

    def __init__(self):
        self.done = threading.Lock()
        self.done.acquire()
        self.value = None
        self.error: BaseException | None = None


class _LoopThread:
    """A trio loop in a daemon thread, serving calls from other threads."""

    def __init__(self, name: str):
        self.name = name
        self._jobs: collections.deque = collections.deque()
        self._idle: list = []  # parked worker tasks (touched only on the loop)
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._thread: threading.Thread | None = None

    def start(self, main) -> None:
        """Run `await main(loop)` on a new thread; return once it called
        `loop.ready()` or raise what it raised before that."""
        started = threading.Event()
        failure: list[BaseException] = []

        async def runner():
            self._token = trio.lowlevel.current_trio_token()
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                try:
                    await main(lambda: started.set())
                finally:
                    nursery.cancel_scope.cancel()

        def thread_main():
            try:
                trio.run(runner)
            except BaseException as e:  # reported to the thread that waits
                failure.append(e)
            finally:
                started.set()

        self._thread = threading.Thread(target=thread_main, name=self.name, daemon=True)
        self._thread.start()
        started.wait()
        if failure:
            self._thread.join()
            raise failure[0]

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def call(self, async_fn, *args, **kwargs) -> Any:
        """Run `await async_fn(*args, **kwargs)` on the loop; block for it."""
        if threading.current_thread() is self._thread:
            raise RuntimeError("a blocking gfapi call from the volume's own loop "
                               "would deadlock; use the AsyncVolume API there")
        box = _Box()
        self._jobs.append((async_fn, args, kwargs, box))
        try:
            self._token.run_sync_soon(self._wake)
        except trio.RunFinishedError:
            raise VolumeNotMounted("the volume is not mounted") from None
        box.done.acquire()
        if box.error is not None:
            raise box.error.with_traceback(box.error.__traceback__)
        return box.value

    def call_soon(self, sync_fn) -> None:
        self._token.run_sync_soon(sync_fn)

    def join(self) -> None:
        if self._thread is not None:
            self._thread.join()

    # -- on the loop thread ------------------------------------------------

    def _wake(self) -> None:
        if self._idle:
            trio.lowlevel.reschedule(self._idle.pop())
        else:
            self._nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        while True:
            while self._jobs:
                async_fn, args, kwargs, box = self._jobs.popleft()
                try:
                    box.value = await async_fn(*args, **kwargs)
                except BaseException as e:
                    box.error = e
                    if isinstance(e, trio.Cancelled):
                        box.error = VolumeNotMounted("the volume was unmounted during the call")
                        box.done.release()
                        raise
                box.done.release()
            task = trio.lowlevel.current_task()
            self._idle.append(task)

            def abort(_):
                self._idle.remove(task)
                return trio.lowlevel.Abort.SUCCEEDED
            await trio.lowlevel.wait_task_rescheduled(abort)


class Volume:
    """A volume used from synchronous code (libgfapi-python's Volume).

    ``Volume(hosts, volname, proto="tcp", port=24007, log_file=None,
    log_level=7)`` names a remote volume; `mount()` fetches its client
    volfile from the first of `hosts` (one host, a comma-separated list or a
    sequence) that answers GETSPEC and connects to its bricks.  As in
    libgfapi-python it is not mounted until `mount()` (or `with`).
    `log_file`/`log_level` are glfs_set_logging's: a file for the volume's
    log and GlusterFS's level 0 (none) .. 9 (trace); None leaves logging to
    the application.  ``Volume(async_volume)`` wraps an `AsyncVolume`.
    """

    def __init__(self, hosts, volname: str | None = None, proto: str = "tcp",
                 port: int = 24007, log_file: str | os.PathLike | None = None,
                 log_level=7, *, inline_fops: bool | None = None):
        """`inline_fops`: run fops in the caller's thread (True), always on
        the loop thread (False), or decide from the graph (None)."""
        if isinstance(hosts, AsyncVolume):
            avol = hosts
        else:
            if volname is None:
                raise LibgfapiException("Volume(hosts, volname): the volume name is missing")
            avol = AsyncVolume.from_server(hosts, volname, port, transport=proto)
        if log_file is not None:
            avol.set_logging(log_file, log_level)
        self._avol = avol
        self._inline_fops = inline_fops
        self._loop: _LoopThread | None = None
        self._stop: trio.Event | None = None
        self._lock = threading.Lock()
        #: set while mounted when every translator has FOPS_NEVER_SUSPEND
        self._inline_lock: threading.Lock | None = None

    @classmethod
    def from_volfile(cls, path: str | os.PathLike, *, mount: bool = True,
                     inline_fops: bool | None = None, **kwargs) -> "Volume":
        """A volume served by the local graph that the volfile describes."""
        vol = cls(AsyncVolume.from_volfile(path, **kwargs), inline_fops=inline_fops)
        if mount:
            vol.mount()
        return vol

    # -- mounting ---------------------------------------------------------

    @property
    def mounted(self) -> bool:
        return self._loop is not None and self._loop.alive and self._avol.mounted

    @property
    def runs_inline(self) -> bool:
        """True when fops run in the calling thread (see the module docstring)."""
        return self._inline_lock is not None

    @property
    def volname(self) -> str:
        return self._avol.volname

    def mount(self) -> None:
        """Start the graph on its own loop thread; LibgfapiException on failure."""
        with self._lock:
            if self.mounted:
                return
            loop = _LoopThread(f"gfapi:{self._avol.volname}")

            async def main(ready):
                self._stop = trio.Event()
                await self._avol.mount()
                try:
                    ready()
                    await self._stop.wait()
                finally:
                    with trio.CancelScope(shield=True):
                        await self._avol.umount()
            try:
                loop.start(main)
            except Exception as e:
                # the loop's nursery wraps what mount() raised in a group
                while isinstance(e, BaseExceptionGroup) and len(e.exceptions) == 1:
                    e = e.exceptions[0]
                if isinstance(e, LibgfapiException):
                    raise e from None
                raise LibgfapiException(f"mounting {self._avol.volname} failed: {e}") from e
            self._loop = loop
            never_suspend = all(type(xl).FOPS_NEVER_SUSPEND
                                for xl in self._avol.graph.by_name.values())
            if self._inline_fops and not never_suspend:
                raise LibgfapiException("inline_fops=True needs a graph whose translators "
                                        "all declare FOPS_NEVER_SUSPEND")
            if never_suspend and self._inline_fops is not False:
                self._inline_lock = threading.Lock()

    def umount(self) -> None:
        """Close what is open and stop the graph; safe to call twice."""
        with self._lock:
            if self._loop is None:
                return
            loop, self._loop = self._loop, None
            self._inline_lock = None
            if loop.alive:
                loop.call_soon(self._stop.set)
            loop.join()

    def __enter__(self) -> "Volume":
        self.mount()
        return self

    def __exit__(self, *exc) -> None:
        self.umount()

    def __del__(self):
        try:
            self.umount()
        except Exception:
            pass

    def _call(self, async_fn, *args, **kwargs):
        loop = self._loop
        if loop is None:
            raise VolumeNotMounted("the volume is not mounted")
        inline = self._inline_lock
        if inline is not None:
            with inline:
                return _complete(async_fn(*args, **kwargs))
        return loop.call(async_fn, *args, **kwargs)

    # -- calls that need no loop -----------------------------------------------

    def getcwd(self) -> str:
        return self._avol.getcwd()

    def set_logging(self, log_file, log_level=7) -> None:
        """glfs_set_logging; takes effect at the next mount."""
        self._avol.set_logging(log_file, log_level)

    @property
    def host(self) -> str | None:
        """The first volfile server (libgfapi-python's `host`)."""
        servers = self._avol.servers
        return servers[0].host if servers else None

    @property
    def port(self) -> int | None:
        servers = self._avol.servers
        return servers[0].port if servers else None

    def setfsuid(self, uid: int) -> None:
        self._avol.setfsuid(uid)

    def setfsgid(self, gid: int) -> None:
        self._avol.setfsgid(gid)

    def setfsgroups(self, groups) -> None:
        self._avol.setfsgroups(groups)

    @property
    def umask(self) -> int:
        return self._avol.umask

    @umask.setter
    def umask(self, mask: int) -> None:
        self._avol.umask = mask & 0o777

    def _wrap(self, value):
        if isinstance(value, AsyncFile):
            return File(self, value)
        if isinstance(value, AsyncDir):
            return Dir(self, value)
        if isinstance(value, DirEntry):
            return DirEntry_(value, self)
        return value


class File:
    """An open file (libgfapi-python's File); methods mirror AsyncFile's."""

    def __init__(self, vol: Volume, afile: AsyncFile):
        self._vol = vol
        self._afile = afile

    def __enter__(self) -> "File":
        if self._afile.closed:
            raise ValueError("I/O operation on closed file")
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._afile.closed

    @property
    def fd(self):
        return self._afile.fd

    fileno = fd

    @property
    def name(self) -> str:
        return self._afile.path

    @property
    def mode(self) -> int:
        return self._afile.flags

    def tell(self) -> int:
        return self._afile.offset

    def dup(self) -> "File":
        return File(self._vol, self._vol._call(_as_coroutine, self._afile.dup))

    def __del__(self):
        if not getattr(self, "_afile", None) or self._afile.closed:
            return
        try:
            if self._vol.mounted:
                self.close()
        except Exception:
            pass


class Dir:
    """An open directory, iterated for its entries (libgfapi-python's Dir)."""

    def __init__(self, vol: Volume, adir: AsyncDir):
        self._vol = vol
        self._adir = adir

    def __iter__(self) -> "Dir":
        return self

    def __next__(self):
        entry = self._vol._call(self._adir.next)
        if entry is None:
            raise StopIteration
        return entry

    def __enter__(self) -> "Dir":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._adir.closed and self._vol.mounted:
            self._vol._call(self._adir.close)

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass


class DirEntry_(DirEntry):
    """A scandir() entry that can follow its symlink through the volume."""

    __slots__ = ("_vol",)

    def __init__(self, entry: DirEntry, vol: Volume):
        DirEntry.__init__(self, os.path.dirname(entry.path), entry.name, entry._lstat)
        self.path = entry.path
        self._vol = vol

    def stat(self, follow_symlinks: bool = False) -> os.stat_result:
        if follow_symlinks and self.is_symlink():
            return self._vol.stat(self.path)
        return self._lstat

    def is_dir(self, follow_symlinks: bool = False) -> bool:
        import stat as st
        return st.S_ISDIR(self.stat(follow_symlinks).st_mode)

    def is_file(self, follow_symlinks: bool = False) -> bool:
        import stat as st
        return st.S_ISREG(self.stat(follow_symlinks).st_mode)


async def _as_coroutine(fn):
    return fn()


def _complete(awaitable):
    """Run an awaitable that never suspends to its end, in this thread."""
    try:
        awaitable.send(None)
    except StopIteration as done:
        return done.value
    awaitable.close()
    raise RuntimeError("a fop suspended in a graph whose translators all declare "
                       "FOPS_NEVER_SUSPEND")


# --------------------------------------------------------------------------
# Generate the blocking methods from the async classes.

def _unwrap(value):
    """Facade handles passed back in (copyfileobj(f1, f2)) become async ones."""
    if isinstance(value, File):
        return value._afile
    if isinstance(value, Dir):
        return value._adir
    return value


def _blocking(name: str, afn, target: str):
    """A method that runs `afn` on the loop: `target` names the attribute
    holding the async object ('_avol', '_afile', '_adir')."""
    if inspect.isasyncgenfunction(afn):
        @functools.wraps(afn)
        def generator(self, *args, **kwargs):
            vol = self if isinstance(self, Volume) else self._vol
            agen = getattr(getattr(self, target), name)(*map(_unwrap, args), **kwargs)
            try:
                while True:
                    try:
                        item = vol._call(agen.__anext__)
                    except StopAsyncIteration:
                        return
                    yield vol._wrap(item)
            finally:
                if vol.mounted:
                    vol._call(agen.aclose)
        return generator

    @functools.wraps(afn)
    def method(self, *args, **kwargs):
        vol = self if isinstance(self, Volume) else self._vol
        return vol._wrap(vol._call(getattr(getattr(self, target), name),
                                   *map(_unwrap, args), **kwargs))
    return method


def _install(facade: type, source: type, target: str, skip=()) -> None:
    for name, afn in inspect.getmembers(source):
        if name.startswith("_") or name in skip or name in facade.__dict__:
            continue
        if inspect.iscoroutinefunction(afn) or inspect.isasyncgenfunction(afn):
            setattr(facade, name, _blocking(name, afn, target))


_install(Volume, AsyncVolume, "_avol", skip={"mount", "umount"})
_install(File, AsyncFile, "_afile")
_install(Dir, AsyncDir, "_adir", skip={"next"})
