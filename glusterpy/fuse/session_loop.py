"""The mount's FUSE session loop, in place of pyfuse3.main.

pyfuse3 (3.5) serves each request with a trio.Lock taken by one of its
worker tasks and a trio.lowlevel.wait_readable on /dev/fuse - a scheduler
pass with epoll and a hand-over of the lock to the next worker task, before
every request even when the kernel has more queued - then
fuse_session_receive_buf, fuse_session_process_buf (libfuse calls
pyfuse3's C handler, which stores the request's coroutine in its C global
py_retval) and an inline await of that coroutine.  For a request the
bridge answers without waiting (a getxattr it refuses, a stat answered
from a cache) that fixed cost is most of the request.

This loop calls the same two libfuse functions (ctypes, with pyfuse3's
session) and runs the same coroutine, but:

- one task at a time, the leader, reads /dev/fuse (made non-blocking) until
  it is empty and only then waits for it to become readable: a batch of
  queued requests costs one scheduler pass, not one each;
- the leader starts each request's coroutine itself.  Most finish without
  waiting, and cost no task and no task switch.  One that waits (its first
  step yields a trio trap: it waits for a brick) keeps the leader's task -
  a coroutine that yielded a trap in one task cannot be resumed in another,
  the trap parked *that* task - and the leadership goes to an idle worker
  task (or a new one), so a slow request holds up no other.  When it is
  done its task idles (up to `idle` of them) or ends;
- after `batch` requests in a row without waiting it lets the rest of trio
  run (the graph's connections), so a stream of requests cannot starve the
  replies the slow ones wait for.

Like ops_table.py this reaches into pyfuse3's C state - the session and
py_retval, found by their ELF symbols - and runs only if everything
matches (`SessionLoop.find()` gives the reason otherwise, and the mount
falls back to pyfuse3.main).
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import logging
import os
from dataclasses import dataclass
from typing import ClassVar
from types import coroutine

import pyfuse3
import trio
from outcome import Value
from trio.lowlevel import Abort, current_task, reschedule, wait_task_rescheduled

from .ops_table import extension_addresses

log = logging.getLogger(__name__)

SESSION_SYMBOL = b"__pyx_v_7pyfuse3_session"
RETVAL_SYMBOL = b"__pyx_v_7pyfuse3_py_retval"


class FuseBuf(ctypes.Structure):
    """struct fuse_buf (fuse_common.h)."""

    _fields_ = [("size", ctypes.c_size_t), ("flags", ctypes.c_int), ("mem", ctypes.c_void_p),
                ("fd", ctypes.c_int), ("pos", ctypes.c_int64)]


_lib = None


def session_functions():
    """libfuse3's session functions, called holding the GIL (PyDLL):
    fuse_session_process_buf calls pyfuse3's handlers, C functions that
    run Python and expect the GIL held, as in pyfuse3's own loop."""
    global _lib
    if _lib is None:
        lib = ctypes.PyDLL("libfuse3.so.3")
        lib.fuse_session_receive_buf.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fuse_session_process_buf.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.fuse_session_process_buf.restype = None
        lib.fuse_session_exited.argtypes = [ctypes.c_void_p]
        lib.fuse_session_fd.argtypes = [ctypes.c_void_p]
        _lib = lib
    return _lib


_incref = ctypes.pythonapi.Py_IncRef
_incref.argtypes = [ctypes.py_object]
_incref.restype = None
_decref = ctypes.pythonapi.Py_DecRef
_decref.argtypes = [ctypes.py_object]
_decref.restype = None
_free = ctypes.CDLL(None).free
_free.argtypes = [ctypes.c_void_p]
_free.restype = None


@coroutine
def _finish(coro, trap):
    """Drive `coro`, whose first step yielded `trap`, to its end in the
    calling task: `await coro` from its second step on (what `yield from`
    does after the first)."""
    while True:
        try:
            sent = yield trap
        except BaseException as e:  # trio's wake-up with an error, or a close
            try:
                trap = coro.throw(e)
            except StopIteration as done:
                return done.value
        else:
            try:
                trap = coro.send(sent)
            except StopIteration as done:
                return done.value


@dataclass
class LoopStats:
    """Counts of the loop's work, for the statedump and the tests."""

    #: requests read from /dev/fuse
    requests: int = 0
    #: times the leader waited for /dev/fuse to become readable
    readable_waits: int = 0
    #: requests whose coroutine finished in its first step (no task switch)
    inline: int = 0
    #: requests that waited, and so handed the leadership on
    handoffs: int = 0
    #: worker tasks started (the first included)
    tasks_started: int = 0
    #: times the leader let trio run after `batch` requests in a row
    yields: int = 0


class SessionLoop:
    """Serves pyfuse3's session until it exits (see the module docstring).
    Build with `find()`; one per mount (pyfuse3 runs one session per
    process)."""

    #: the loop serving this process's session (statedumps)
    active: ClassVar[SessionLoop | None] = None

    def __init__(self, session: int, retval_addr: int, *, idle: int, max_tasks: int,
                 batch: int = 64):
        self.lib = session_functions()
        self.session = ctypes.c_void_p(session)
        self.fd = self.lib.fuse_session_fd(self.session)
        #: pyfuse3's py_retval: where its C handler leaves the coroutine
        self.retval = ctypes.py_object.from_address(retval_addr)
        self.idle_max, self.max_tasks, self.batch = idle, max_tasks, batch
        self.stats = LoopStats()
        self.idle: list = []  # parked worker tasks
        self.has_leader = False
        self.tasks = 0
        self.nursery: trio.Nursery | None = None

    @classmethod
    def find(cls, *, idle: int, max_tasks: int):
        """(SessionLoop, None) for pyfuse3's running session, or (None,
        the reason it cannot be served this way)."""
        found, why = extension_addresses(SESSION_SYMBOL, RETVAL_SYMBOL)
        if found is None:
            return None, why
        (session_addr, session_size), (retval_addr, retval_size) = found
        if session_size != retval_size or session_size != ctypes.sizeof(ctypes.c_void_p):
            return None, "pyfuse3's session and py_retval are not pointers"
        session = ctypes.c_void_p.from_address(session_addr).value
        if not session:
            return None, "pyfuse3 has no session yet"
        if ctypes.c_void_p.from_address(retval_addr).value != id(None):
            # a PyObject* holding None between requests, or not what we think
            return None, "pyfuse3's py_retval does not hold None between requests"
        return cls(session, retval_addr, idle=idle, max_tasks=max_tasks), None

    async def run(self) -> None:
        """Serve until the session exits (unmount, pyfuse3.terminate)."""
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags | os.O_NONBLOCK)
        pyfuse3.trio_token = trio.lowlevel.current_trio_token()
        SessionLoop.active = self
        try:
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                self._start_worker()
        finally:
            SessionLoop.active = self.nursery = None
            pyfuse3.trio_token = None

    def _start_worker(self) -> None:
        self.tasks += 1
        self.stats.tasks_started += 1
        self.has_leader = True
        self.nursery.start_soon(self._worker, name=f"fuse-worker-{self.stats.tasks_started:02d}")

    def _pass_leadership(self) -> None:
        """The leader is about to wait inside a request: an idle worker,
        or a new one, reads /dev/fuse meanwhile (none past max_tasks: then
        the first worker done with its request reads)."""
        self.has_leader = False
        if self.idle:
            self.has_leader = True
            reschedule(self.idle.pop(), Value(_LEAD))
        elif self.tasks < self.max_tasks:
            self._start_worker()

    def _exited(self) -> bool:
        return bool(self.lib.fuse_session_exited(self.session))

    async def _worker(self) -> None:
        buf = FuseBuf()
        try:
            while True:
                await self._lead(buf)
                # back from a request that waited: lead, idle, or end
                if self._exited():
                    return
                if self.has_leader:
                    if len(self.idle) >= self.idle_max or not await self._park():
                        return
                self.has_leader = True
        finally:
            self.tasks -= 1
            _free(buf.mem)
            if self._exited():
                self._wake_all()

    async def _park(self) -> bool:
        """Idle until given the leadership (True) or told to end (False)."""
        task = current_task()
        self.idle.append(task)

        def abort(_):
            self.idle.remove(task)
            return Abort.SUCCEEDED

        return (await wait_task_rescheduled(abort)) is _LEAD

    def _wake_all(self) -> None:
        while self.idle:
            reschedule(self.idle.pop(), Value(_END))

    async def _lead(self, buf: FuseBuf) -> None:
        """Read and start requests until one waits (then return, having
        passed the leadership on, once it is done) or the session ends."""
        lib, session, ref = self.lib, self.session, ctypes.byref(buf)
        retval, stats = self.retval, self.stats
        in_a_row = 0
        while True:
            if in_a_row >= self.batch:
                in_a_row = 0
                stats.yields += 1
                await trio.lowlevel.checkpoint()
            if lib.fuse_session_exited(session):
                return
            res = lib.fuse_session_receive_buf(session, ref)
            if res == -errno.EAGAIN:
                in_a_row = 0
                stats.readable_waits += 1
                try:
                    await trio.lowlevel.wait_readable(self.fd)
                except trio.ClosedResourceError:  # pyfuse3.terminate
                    return
                continue
            if res == -errno.EINTR:
                continue
            if res < 0:
                raise OSError(-res, f"fuse_session_receive_buf failed: {os.strerror(-res)}")
            if res == 0:  # unmounted: libfuse marked the session exited
                return
            stats.requests += 1
            in_a_row += 1
            lib.fuse_session_process_buf(session, ref)
            coro = retval.value
            if coro is None:  # answered in C (libfuse, or ops_table's slots)
                continue
            # pyfuse3's global gives up its reference: None again, as
            # save_retval expects between requests
            retval.value = None
            _incref(None)
            _decref(coro)
            try:
                trap = coro.send(None)
            except StopIteration:
                stats.inline += 1
                continue
            stats.handoffs += 1
            self._pass_leadership()
            await _finish(coro, trap)
            return


#: what an idle worker is woken with: lead, or end
_LEAD, _END = object(), object()
