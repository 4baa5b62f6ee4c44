"""Linux native AIO (io_submit) for O_DIRECT reads and writes, on trio.

Why: a brick serving QEMU gets dozens of O_DIRECT requests at once.  Done
inline, each pread holds the event loop for the disk's latency and the
requests reach the disk one at a time; handed to io-threads' workers, each
costs a thread wake-up and two GIL hand-overs, which in CPython cost more
than the pread itself (bench/notes/qemu.md).  The kernel's AIO takes the
request without a thread: io_submit queues it at the disk and returns, the
completion is signalled on an eventfd that trio watches like a socket, and
one io_getevents collects every request that finished meanwhile.  The event
loop keeps decoding and answering while the disk works on all of them.

GlusterFS's storage/posix has the same path (posix-aio.c, its `linux-aio`
option).  Only descriptors opened with O_DIRECT use it here: on a buffered
descriptor io_submit would block in the page cache anyway.

The syscalls are called through ctypes (no libaio binding is needed: the
ABI is four syscalls and two structures, linux/aio_abi.h).  `AioContext.open()`
returns None where the kernel or the architecture has no AIO (ENOSYS,
aio-max-nr used up): callers then keep their synchronous path.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import os
import platform

import outcome
import trio

log = logging.getLogger(__name__)

#: io_setup, io_destroy, io_getevents, io_submit per architecture
_SYSCALLS = {"x86_64": (206, 207, 208, 209), "aarch64": (0, 1, 4, 2)}
#: linux/aio_abi.h
IOCB_CMD_PREAD, IOCB_CMD_PWRITE = 0, 1
IOCB_FLAG_RESFD = 1
#: requests one context holds in flight; more wait for a slot
DEFAULT_DEPTH = 256
#: completions one io_getevents collects
_BATCH = 64


class _IoCb(ctypes.Structure):
    # struct iocb, little-endian layout (x86_64, aarch64)
    _fields_ = [("aio_data", ctypes.c_uint64), ("aio_key", ctypes.c_uint32),
                ("aio_rw_flags", ctypes.c_int32), ("aio_lio_opcode", ctypes.c_uint16),
                ("aio_reqprio", ctypes.c_int16), ("aio_fildes", ctypes.c_uint32),
                ("aio_buf", ctypes.c_uint64), ("aio_nbytes", ctypes.c_uint64),
                ("aio_offset", ctypes.c_int64), ("aio_reserved2", ctypes.c_uint64),
                ("aio_flags", ctypes.c_uint32), ("aio_resfd", ctypes.c_uint32)]


class _IoEvent(ctypes.Structure):
    _fields_ = [("data", ctypes.c_uint64), ("obj", ctypes.c_uint64),
                ("res", ctypes.c_int64), ("res2", ctypes.c_int64)]


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long


class _Request:
    __slots__ = ("iocb", "keep", "task", "result")

    def __init__(self, iocb: _IoCb, keep, task) -> None:
        self.iocb = iocb
        self.keep = keep        # the buffer's ctypes view: the memory stays put
        self.task = task
        self.result: int | None = None


class AioContext:
    """One kernel AIO context, the task that submits its requests and the
    one that reaps their completions.  Run `run()` in a nursery;
    `pread`/`pwrite` from tasks of the same trio run.  Requests made in one
    pass of trio's scheduler (the reads decoded from one receive) go to the
    kernel in one io_submit, which also lets the block layer pass them to
    the disk together.  A read made while the context is idle (nothing in
    the kernel, nothing queued: one request in flight, the latency case)
    is submitted by its caller at once instead: there is no batch for it
    to join, and the submitter's turn would only delay it by a pass of the
    scheduler.  A request, once made, is waited for even when its
    caller is cancelled: the kernel writes into its buffer until it
    completes."""

    def __init__(self, ctx: int, eventfd: int, calls: tuple[int, int, int, int],
                 depth: int) -> None:
        self._ctx = ctx
        self._eventfd = eventfd
        self._nr_destroy, self._nr_getevents, self._nr_submit = calls[1:]
        self._pending: dict[int, _Request] = {}
        self._queue: list[_Request] = []       # made, not yet submitted
        self._submitter: trio.lowlevel.Task | None = None
        self._submitter_parked = False
        self._next = 1
        self._slots = trio.Semaphore(depth)
        self._events = (_IoEvent * _BATCH)()
        self._zero = _Timespec(0, 0)
        self.closed = False

    @classmethod
    def open(cls, depth: int = DEFAULT_DEPTH) -> "AioContext | None":
        """A new context, or None (logged) where this kernel cannot give one."""
        calls = _SYSCALLS.get(platform.machine())
        if calls is None:
            log.info("no Linux AIO on %s: O_DIRECT IO stays synchronous", platform.machine())
            return None
        ctx = ctypes.c_ulong(0)
        if _syscall(ctypes.c_long(calls[0]), ctypes.c_uint(depth), ctypes.byref(ctx)) < 0:
            err = ctypes.get_errno()
            log.warning("io_setup(%d) failed: %s; O_DIRECT IO stays synchronous", depth,
                        os.strerror(err))
            return None
        efd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        return cls(ctx.value, efd, calls, depth)

    async def pread(self, fd: int, buf, offset: int) -> int:
        """Read into `buf` (a writable, suitably aligned buffer such as an
        mmap) at `offset`; the bytes read.  OSError on failure."""
        return await self._submit(IOCB_CMD_PREAD, fd, buf, offset, True)

    async def pwrite(self, fd: int, buf, offset: int) -> int:
        """Write `buf` (writable and aligned: an mmap) at `offset`; the bytes
        written.  OSError on failure."""
        return await self._submit(IOCB_CMD_PWRITE, fd, buf, offset)

    async def _submit(self, opcode: int, fd: int, buf, offset: int,
                      at_once_if_idle: bool = False) -> int:
        if self.closed:
            raise OSError(errno.EBADF, "the AIO context is closed")
        try:
            self._slots.acquire_nowait()
        except trio.WouldBlock:
            await self._slots.acquire()
        try:
            if self.closed:
                raise OSError(errno.EBADF, "the AIO context is closed")
            view = (ctypes.c_char * len(buf)).from_buffer(buf)
            key = self._next
            self._next += 1
            iocb = _IoCb(aio_data=key, aio_lio_opcode=opcode, aio_fildes=fd,
                         aio_buf=ctypes.addressof(view), aio_nbytes=len(buf),
                         aio_offset=offset, aio_flags=IOCB_FLAG_RESFD,
                         aio_resfd=self._eventfd)
            request = _Request(iocb, view, trio.lowlevel.current_task())
            if not (at_once_if_idle and not self._pending and not self._queue
                    and self._submit_one(request)):
                self._queue.append(request)
                if self._submitter_parked:
                    self._submitter_parked = False
                    trio.lowlevel.reschedule(self._submitter)
            await trio.lowlevel.wait_task_rescheduled(
                lambda _: trio.lowlevel.Abort.FAILED)   # the kernel owns the buffer
            res = request.result
        finally:
            self._slots.release()
        if res < 0:
            raise OSError(-res, os.strerror(-res))
        return res

    async def run(self) -> None:
        """Submit and reap until cancelled or closed; then close."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._submit_loop)
                await self.reap()
                nursery.cancel_scope.cancel()
        finally:
            self.close()

    async def _submit_loop(self) -> None:
        self._submitter = trio.lowlevel.current_task()

        def unpark(_):
            self._submitter_parked = False
            return trio.lowlevel.Abort.SUCCEEDED
        try:
            while not self.closed:
                if not self._queue:
                    self._submitter_parked = True
                    await trio.lowlevel.wait_task_rescheduled(unpark)
                    continue
                self._submit_queued()
                await trio.lowlevel.checkpoint()
        finally:
            self._submitter = None
            self._submitter_parked = False

    def _submit_one(self, request: _Request) -> bool:
        """io_submit `request` alone, now: True when the kernel took it,
        False when it is busy (EAGAIN: queue it); OSError if it refuses it."""
        pointers = (ctypes.c_void_p * 1)(ctypes.addressof(request.iocb))
        key = request.iocb.aio_data
        self._pending[key] = request
        if _syscall(ctypes.c_long(self._nr_submit), ctypes.c_ulong(self._ctx),
                    ctypes.c_long(1), pointers) == 1:
            return True
        del self._pending[key]
        err = ctypes.get_errno()
        if err == errno.EAGAIN:
            return False
        raise OSError(err, os.strerror(err))

    def _submit_queued(self) -> None:
        """io_submit everything queued, in order; a request the kernel
        refuses fails alone, the ones after it are submitted next time."""
        batch, self._queue = self._queue, []
        # io_submit's struct iocb *[]: the iocbs' addresses (a ctypes.pointer
        # object per request cost more than the number; `batch` keeps them alive)
        pointers = (ctypes.c_void_p * len(batch))(
            *[ctypes.addressof(r.iocb) for r in batch])
        for request in batch:
            self._pending[request.iocb.aio_data] = request
        done = _syscall(ctypes.c_long(self._nr_submit), ctypes.c_ulong(self._ctx),
                        ctypes.c_long(len(batch)), pointers)
        if done == len(batch):
            return
        if done < 0:
            # the first request is refused (EBADF, EINVAL ...): it fails
            err = ctypes.get_errno()
            if err == errno.EAGAIN:
                done = 0
            else:
                self._finish(self._pending.pop(batch[0].iocb.aio_data), -err)
                done = 1
        for request in batch[done:]:
            del self._pending[request.iocb.aio_data]
        self._queue[:0] = batch[done:]

    @staticmethod
    def _finish(request: _Request, result: int) -> None:
        request.result = result
        trio.lowlevel.reschedule(request.task, outcome.Value(None))

    async def reap(self) -> None:
        """Wake each request's task as the kernel completes it, until the
        context is closed."""
        try:
            while True:
                try:
                    await trio.lowlevel.wait_readable(self._eventfd)
                except trio.ClosedResourceError:
                    return      # close() from elsewhere
                try:
                    os.eventfd_read(self._eventfd)
                except BlockingIOError:
                    continue
                self._collect()
        finally:
            self.close()

    def _collect(self) -> None:
        events = self._events
        while True:
            n = _syscall(ctypes.c_long(self._nr_getevents), ctypes.c_ulong(self._ctx),
                         ctypes.c_long(0), ctypes.c_long(_BATCH), events,
                         ctypes.byref(self._zero))
            if n < 0:
                err = ctypes.get_errno()
                if err == errno.EINTR:
                    continue
                raise OSError(err, f"io_getevents: {os.strerror(err)}")
            for i in range(n):
                request = self._pending.pop(events[i].data, None)
                if request is not None:
                    self._finish(request, events[i].res)
            if n < _BATCH:
                return

    def close(self) -> None:
        """Destroy the context: the kernel waits for requests in flight."""
        if self.closed:
            return
        self.closed = True
        _syscall(ctypes.c_long(self._nr_destroy), ctypes.c_ulong(self._ctx))
        # io_destroy completed what was in flight; wake whoever still waits
        for request in [*self._pending.values(), *self._queue]:
            self._finish(request, -errno.ECANCELED)
        self._pending.clear()
        self._queue.clear()
        if self._submitter_parked:
            self._submitter_parked = False
            trio.lowlevel.reschedule(self._submitter)
        try:
            trio.lowlevel.notify_closing(self._eventfd)
        except RuntimeError:
            pass        # not inside a trio run
        os.close(self._eventfd)
