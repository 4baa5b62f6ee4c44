"""The thread pool behind performance/io-threads: blocking syscalls off the
event loop, in GlusterFS's four priority lanes.

Translators are trio coroutines and storage/posix's Python state is not
thread-safe, so unlike GlusterFS's io-threads (which runs the whole lower
graph in its workers) this pool runs only the blocking syscall itself - a
pread, pwrite, fsync, fallocate ... on a descriptor the calling fop holds
open - while the fop's task waits and the event loop keeps serving.

How a fop reaches it: performance/io-threads sets the `lane` context
variable to the `Lane` (pool and priority) of each fop it passes down;
storage/posix calls `await lane.run(fn, *args)` for its blocking syscalls
when a lane is set, and runs them inline when none is (posix alone in a
graph behaves as it always did).

The pool, for its cost (one hop must be a small fraction of the ~65 us
O_DIRECT pread it offloads):

* one FIFO per priority (HIGH, NORMAL, LOW, LEAST); a worker takes the
  first job of the highest priority whose lane is below its limit
  (GlusterFS's `*-prio-threads`, its __iot_dequeue), so a flood of LOW
  reads never delays a HIGH job by more than the job a worker is running;
* workers are started on demand up to `thread_count` (with
  `_thread.start_new_thread`, which does not wait for the thread as
  `threading.Thread.start` does) and exit after `idle_time` seconds without
  work, keeping one (GlusterFS's IOT_MIN_THREADS);
* a sleeping worker waits on its own lock, and a submit wakes exactly one;
  a busy worker takes its next job without sleeping;
* completions are handed back in batches: a worker appends the finished job
  to one list and only the completion that finds the list empty calls
  `run_sync_soon` (one write to trio's wake-up socket); the callback then
  reschedules every task in the list, so completions that finish together
  cost one wake-up of the event loop.

Which syscalls take the hop is measured, not assumed (`runs_inline`): the
pool keeps, per function, a moving average of how long the syscall took
inline, and the caller runs it inline while that average is below
`offload_above` (200 us by default; 0 offloads everything).  A function
never seen goes to a worker, whose timings seed the average until the first
inline one; after that only inline runs count - a worker's timing includes
its wait for the GIL, which grows with the loop's load and would keep a
cheap syscall offloaded for ever - so one call in PROBE_EVERY of an
offloaded function runs inline to measure it again.  On the
machine of bench/RESULTS.md a hop costs the brick ~150 us of CPU per
request (thread wake-ups, the GIL handed back and forth, the completion's
wake-up of the loop) while an O_DIRECT 4 KiB pread takes ~70 us: those stay
inline and only slower syscalls - fsync, a slow or busy disk's reads - go
to the workers.  A function never seen is first run in a worker.

Cancellation.  A job still queued when its task is cancelled is removed from
its queue and the task sees Cancelled at once: no thread ever touched its
arguments.  A job already running is not abandoned: the abort is refused
(trio's Abort.FAILED), the task keeps waiting until the syscall returns and
receives its result, and the cancellation is delivered at the task's next
checkpoint.  So a worker never writes into a buffer whose owner has gone
away, never writes data its caller was told was not written, and never
works on a descriptor its fop no longer holds (storage/posix also defers
closing a descriptor while a job uses it).  The price: a cancelled fop
waits for at most one syscall, as a GlusterFS fop in flight does.
"""

from __future__ import annotations

import _thread
import contextvars
import logging
import threading
import time
from collections import deque
from time import perf_counter_ns
from typing import Any, Callable

import outcome
import trio
from trio.lowlevel import (Abort, current_task, current_trio_token, reschedule,
                           wait_task_rescheduled)

log = logging.getLogger("glusterpy.iothreads")

#: GlusterFS's gf_fop_pri_t
HIGH, NORMAL, LOW, LEAST = 0, 1, 2, 3
PRIORITIES = (HIGH, NORMAL, LOW, LEAST)
#: iot_get_pri_meaning
PRIORITY_NAMES = ("fast", "normal", "slow", "least priority")
#: GlusterFS's IOT_MIN_THREADS: idle workers exit down to this many
MIN_THREADS = 1

_QUEUED, _RUNNING, _DROPPED = 0, 1, 2


#: the default of `offload_above`, in ns
OFFLOAD_ABOVE_NS = 200_000
#: one call in this many of an offloaded function runs inline, to re-measure it
PROBE_EVERY = 32


class _Job:
    __slots__ = ("fn", "args", "task", "prio", "state", "result", "ns")

    def __init__(self, fn, args, task, prio):
        self.fn = fn
        self.args = args
        self.task = task
        self.prio = prio
        self.state = _QUEUED
        self.result = None
        self.ns = 0


class Pool:
    """Worker threads taking jobs from four priority queues; see the module
    docstring.  Made and used inside one trio run; `close()` lets the
    workers go."""

    def __init__(self, thread_count: int = 16, limits=(16, 16, 16, 1),
                 idle_time: float = 120, name: str = "iot",
                 offload_above_ns: int = OFFLOAD_ABOVE_NS):
        self.name = name
        self.offload_above_ns = offload_above_ns
        #: fn -> moving average of its duration (ns); touched only by the trio thread
        self._cost: dict[Any, float] = {}
        self._measured_inline: set = set()
        self._calls = 0
        self._lock = threading.Lock()
        self._queues = tuple(deque() for _ in PRIORITIES)
        self._queued = 0
        self._active = [0, 0, 0, 0]
        self._limits = [int(n) for n in limits]
        self._thread_count = int(thread_count)
        self._idle_time = float(idle_time)
        self._idle: list = []          # wake locks of sleeping workers, LIFO
        self._threads = 0
        self._done: list[_Job] = []
        self._token: trio.lowlevel.TrioToken | None = None
        self._closed = False
        # counters, for statedumps and tests (updated under the lock)
        self.max_threads = 0
        self.max_active = [0, 0, 0, 0]
        self.jobs = 0
        self.deliveries = 0
        self.started = 0
        self.exited = 0
        self.dropped = 0

    # -- configuration -----------------------------------------------------

    def configure(self, thread_count: int | None = None, limits=None,
                  idle_time: float | None = None, offload_above_ns: int | None = None) -> None:
        """Change the limits on a live pool (volume set): more threads are
        started as jobs come, extra ones exit as they go idle."""
        wake = []
        with self._lock:
            if thread_count is not None:
                self._thread_count = int(thread_count)
            if limits is not None:
                self._limits = [int(n) for n in limits]
            if idle_time is not None:
                self._idle_time = float(idle_time)
            if offload_above_ns is not None:
                self.offload_above_ns = int(offload_above_ns)
            # sleeping workers re-read the limits: wake those above the count
            while self._idle and self._threads - len(wake) > self._thread_count:
                wake.append(self._idle.pop())
            if self._queued:
                wake.extend(self._idle)
                self._idle.clear()
        for w in wake:
            w.release()

    @property
    def thread_count(self) -> int:
        return self._thread_count

    @property
    def threads(self) -> int:
        """Workers alive now."""
        return self._threads

    @property
    def idle(self) -> int:
        return len(self._idle)

    def queued(self) -> list[int]:
        with self._lock:
            return [len(q) for q in self._queues]

    def state(self) -> dict:
        with self._lock:
            return {"threads": self._threads, "idle": len(self._idle),
                    "max-threads": self.max_threads, "thread-count": self._thread_count,
                    "limits": list(self._limits), "queued": [len(q) for q in self._queues],
                    "active": list(self._active), "max-active": list(self.max_active),
                    "jobs": self.jobs, "deliveries": self.deliveries,
                    "started": self.started, "exited": self.exited, "dropped": self.dropped,
                    "offload-above-us": self.offload_above_ns / 1000,
                    "syscall-us": self.costs()}

    # -- the hop -------------------------------------------------------------

    def runs_inline(self, fn) -> bool:
        """Whether fn has been cheaper than a hop lately, or is due for an
        inline probe (see the module docstring); a caller that runs it
        inline reports with `observe(fn, ns, inline=True)`."""
        cost = self._cost.get(fn)
        if cost is None or not self.offload_above_ns:
            return False
        if cost < self.offload_above_ns:
            return True
        self._calls += 1
        return self._calls % PROBE_EVERY == 0

    def observe(self, fn, ns: int, inline: bool = False) -> None:
        """One measured duration of fn (1/8 weight to the new one)."""
        if inline:
            self._measured_inline.add(fn)
        elif fn in self._measured_inline:
            return              # a worker's time includes its wait for the GIL
        old = self._cost.get(fn)
        self._cost[fn] = ns if old is None else old + (ns - old) / 8

    def costs(self) -> dict[str, float]:
        """The moving averages in microseconds, by function name."""
        return {getattr(fn, "__name__", repr(fn)): ns / 1000 for fn, ns in self._cost.items()}

    async def run(self, prio: int, fn: Callable[..., Any], *args: Any) -> Any:
        """fn(*args) in a worker, at priority `prio`; its result or exception.
        A checkpoint: see the module docstring for cancellation."""
        if self._token is None:
            self._token = current_trio_token()
        job = _Job(fn, args, current_task(), prio)
        spawn = False
        lock = self._lock
        with lock:
            if self._closed:
                raise RuntimeError(f"{self.name}: the io-threads pool is closed")
            self._queues[prio].append(job)
            self._queued += 1
            self.jobs += 1
            if self._active[prio] < self._limits[prio]:
                if self._idle:
                    self._idle.pop().release()
                elif self._threads < self._thread_count:
                    self._threads += 1
                    self.started += 1
                    if self._threads > self.max_threads:
                        self.max_threads = self._threads
                    spawn = True
        if spawn:
            wake = _thread.allocate_lock()
            wake.acquire()
            _thread.start_new_thread(self._worker, (wake,))

        def abort(raise_cancel):
            with lock:
                if job.state == _QUEUED:
                    self._queues[job.prio].remove(job)
                    self._queued -= 1
                    self.dropped += 1
                    job.state = _DROPPED
                    return Abort.SUCCEEDED
            return Abort.FAILED  # running: wait for the syscall, see above

        return await wait_task_rescheduled(abort)

    def _take(self) -> _Job | None:
        """The next job a worker may run (lock held), or None."""
        if not self._queued:
            return None
        for prio in PRIORITIES:
            q = self._queues[prio]
            if q and self._active[prio] < self._limits[prio]:
                job = q.popleft()
                self._queued -= 1
                job.state = _RUNNING
                n = self._active[prio] = self._active[prio] + 1
                if n > self.max_active[prio]:
                    self.max_active[prio] = n
                return job
        return None

    def _worker(self, wake) -> None:
        lock = self._lock
        job = None
        try:
            while True:
                lock.acquire()
                notify = False
                if job is not None:
                    self._active[job.prio] -= 1
                    self._done.append(job)
                    notify = len(self._done) == 1
                leave = self._threads > self._thread_count   # thread-count lowered
                job = None if leave else self._take()
                if job is None:
                    if leave or self._closed:
                        self._threads -= 1
                        self.exited += 1
                        leave = True
                    else:
                        self._idle.append(wake)
                lock.release()
                if notify:
                    self._notify()
                if leave:
                    return
                if job is None:
                    if not self._sleep(wake):
                        return
                    continue
                start = perf_counter_ns()
                try:
                    job.result = outcome.Value(job.fn(*job.args))
                except BaseException as e:  # handed to the waiting task
                    job.result = outcome.Error(e)
                job.ns = perf_counter_ns() - start
        except BaseException:  # pragma: no cover - a bug here must not go silent
            log.exception("%s: io-threads worker failed", self.name)
            raise

    def _sleep(self, wake) -> bool:
        """Wait to be woken; False when idle-time passed and this worker left."""
        while True:
            if wake.acquire(timeout=self._idle_time):
                return True
            with self._lock:
                if wake not in self._idle:
                    pass            # woken just as the wait ended: consume it
                elif self._threads > MIN_THREADS or self._closed:
                    self._idle.remove(wake)
                    self._threads -= 1
                    self.exited += 1
                    return False
                else:
                    continue        # the last worker stays
            wake.acquire()
            return True

    def _notify(self) -> None:
        try:
            self._token.run_sync_soon(self._deliver)
        except trio.RunFinishedError:  # the run is over: nobody waits any more
            with self._lock:
                self._done.clear()

    def _deliver(self) -> None:
        """In the trio thread: wake every task whose job finished."""
        with self._lock:
            done, self._done = self._done, []
            self.deliveries += 1
        observe = self.observe
        for job in done:
            observe(job.fn, job.ns)
            reschedule(job.task, job.result)

    # -- shutdown ----------------------------------------------------------------

    def close(self) -> None:
        """Idle workers exit now, busy ones after the queues are empty."""
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for w in idle:
            w.release()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """For tests: block until every worker has exited."""
        deadline = time.monotonic() + timeout
        while self._threads and time.monotonic() < deadline:
            time.sleep(0.005)
        return not self._threads


class Lane:
    """A priority lane of a pool: what performance/io-threads puts in the
    `lane` context variable for the fops below it."""

    __slots__ = ("pool", "prio")

    def __init__(self, pool: Pool, prio: int):
        self.pool = pool
        self.prio = prio

    def run(self, fn: Callable[..., Any], *args: Any):
        return self.pool.run(self.prio, fn, *args)

    def __repr__(self) -> str:
        return f"<Lane {PRIORITY_NAMES[self.prio]} of {self.pool.name}>"


#: the lane of the fop running in this task; None: run syscalls inline
lane: contextvars.ContextVar[Lane | None] = contextvars.ContextVar(
    "glusterpy_iothreads_lane", default=None)
