"""performance/io-threads: blocking syscalls in worker threads, by priority.

GlusterFS's io-threads (xlators/performance/io-threads) queues every fop
in one of four priority queues and resumes the lower graph in a pool of up
to `thread-count` threads.  Here the translators are trio coroutines and
storage/posix's Python state is not thread-safe, so what runs in the
threads is only the blocking syscall a fop makes on a descriptor it holds
(glusterpy.iothreads explains the pool): this translator passes every fop
down unchanged, only marking its priority lane in a context variable, and
storage/posix sends its data-path syscalls - pread, pwrite, fsync,
ftruncate, fallocate, copy_file_range, rchecksum's read, seek - to that
lane.  Metadata fops run on the event loop as before; in GlusterFS they
would take a worker too.  A syscall that has lately been cheaper than the
hop (`offload-above-usec`, glusterpy's own option) runs inline instead.

The priorities are GlusterFS's iot_schedule:

* HIGH ("fast"): open, stat, fstat, lookup, access, readlink, opendir,
  statfs, readdir, readdirp, getactivelk, setactivelk, icreate, namelink
* NORMAL: create, flush, lk, inodelk, finodelk, entrylk, fentrylk, lease,
  unlink, setattr, fsetattr, mknod, mkdir, rmdir, symlink, rename, link,
  setxattr, getxattr, fgetxattr, fsetxattr, removexattr, fremovexattr, put
* LOW ("slow"): readv, writev, fsync, truncate, ftruncate, fsyncdir,
  xattrop, fxattrop, rchecksum, fallocate, discard, zerofill, seek
* LEAST: every fop of an internal client (negative pid, but not
  GF_CLIENT_PID_NO_ROOT_SQUASH -4: self-heal, rebalance, gsyncd ...) when
  `enable-least-priority` is on.

Workers take the highest priority first, each priority limited to its
`*-prio-threads` workers at a time (GlusterFS's __iot_dequeue).  Like
GlusterFS's, release, releasedir and ipc are not queued.

Departures: copy_file_range, which GlusterFS's io-threads does not wrap
(it runs in the epoll thread there), is queued LOW with reads and writes
here; the per-client round robin inside a priority is not kept (one FIFO
per priority); `watchdog-secs` is accepted and does nothing (a queue here
cannot stall behind a blocked lower translator: only syscalls wait in it);
`cleanup-disconnected-reqs` is accepted and is in effect always on (a
request whose connection went away is cancelled, and a cancelled job still
queued is dropped).
"""

from __future__ import annotations


from glusterpy import fops
from glusterpy.iothreads import HIGH, LEAST, LOW, NORMAL, Lane, Pool
from glusterpy.fopgen import Family, install
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Translator
from glusterpy.fops import ClientPid

#: GlusterFS's IOT_MIN_THREADS, IOT_MAX_THREADS, IOT_DEFAULT_THREADS, IOT_DEFAULT_IDLE
MIN_THREADS, MAX_THREADS, DEFAULT_THREADS, DEFAULT_IDLE = 1, 64, 16, 120

#: iot_schedule: each fop's lane, from the catalogue's io-threads column
PRIORITY: dict[str, int] = {f.name: {"high": HIGH, "normal": NORMAL, "low": LOW}[f.iot]
                            for f in fops.CATALOGUE if f.iot is not None}
#: not queued by GlusterFS's io-threads either: passed down as they come
UNQUEUED = frozenset(f.name for f in fops.CATALOGUE if f.iot is None)

_THREADS_RANGE = dict(min=MIN_THREADS, max=MAX_THREADS)


class IoThreads(Translator):
    SKIP_DEFAULT_FOPS = True  # its default fops only wind
    OPTIONS = (
        Option("thread-count", OptionType.INT, str(DEFAULT_THREADS),
               "Number of threads in IO threads translator which perform concurrent IO "
               "operations.", set_keys=("performance.io-thread-count",), **_THREADS_RANGE),
        Option("high-prio-threads", OptionType.INT, str(DEFAULT_THREADS),
               "Max number of threads in IO threads translator which perform high priority "
               "IO operations at a given time.",
               set_keys=("performance.high-prio-threads",), **_THREADS_RANGE),
        Option("normal-prio-threads", OptionType.INT, str(DEFAULT_THREADS),
               "Max number of threads in IO threads translator which perform normal "
               "priority IO operations at a given time.",
               set_keys=("performance.normal-prio-threads",), **_THREADS_RANGE),
        Option("low-prio-threads", OptionType.INT, str(DEFAULT_THREADS),
               "Max number of threads in IO threads translator which perform low priority "
               "IO operations at a given time.",
               set_keys=("performance.low-prio-threads",), **_THREADS_RANGE),
        Option("least-prio-threads", OptionType.INT, str(MIN_THREADS),
               "Max number of threads in IO threads translator which perform least "
               "priority IO operations at a given time.",
               set_keys=("performance.least-prio-threads",), **_THREADS_RANGE),
        Option("enable-least-priority", OptionType.BOOL, "on",
               "Enable/Disable least priority",
               set_keys=("performance.enable-least-priority",)),
        Option("idle-time", OptionType.INT, str(DEFAULT_IDLE),
               "Seconds a worker waits for work before it exits (one always stays).",
               min=1, max=0x7FFFFFFF),
        Option("watchdog-secs", OptionType.INT, "0",
               "Number of seconds a queue must be stalled before starting an 'emergency' "
               "thread.  Accepted for GlusterFS's volfiles; no meaning here: only "
               "syscalls wait in these queues, never a blocked translator.",
               min=0, set_keys=("performance.iot-watchdog-secs",)),
        Option("cleanup-disconnected-reqs", OptionType.BOOL, "off",
               "'Poison' queued requests when a client disconnects.  Accepted; here a "
               "request cancelled with its connection always leaves the queue.",
               set_keys=("performance.iot-cleanup-disconnected-reqs",)),
        Option("offload-above-usec", OptionType.INT, "200",
               "glusterpy's own: a syscall whose recent average duration is below this "
               "many microseconds runs inline on the event loop, where it costs less than "
               "the hop to a worker (0: every syscall goes to a worker).",
               min=0, set_keys=("performance.iot-offload-above-usec",)),
        Option("pass-through", OptionType.BOOL, "false",
               "Enable/Disable io threads translator",
               set_keys=("performance.iot-pass-through",)),
    )

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.pool = Pool(self.opts.thread_count, self._limits(), self.opts.idle_time,
                         name=name, offload_above_ns=self.opts.offload_above_usec * 1000)
        self.lanes = tuple(Lane(self.pool, prio) for prio in (HIGH, NORMAL, LOW, LEAST))
        self._least = self.opts.enable_least_priority
        self._pass = self.opts.pass_through

    def _limits(self) -> tuple[int, int, int, int]:
        o = self.opts
        return (o.high_prio_threads, o.normal_prio_threads, o.low_prio_threads,
                o.least_prio_threads)

    def options_changed(self, old) -> None:
        self.pool.configure(self.opts.thread_count, self._limits(), self.opts.idle_time,
                            self.opts.offload_above_usec * 1000)
        self._least = self.opts.enable_least_priority
        self._pass = self.opts.pass_through
        self.log.info("io-threads reconfigured: thread-count %d, high/normal/low/least "
                      "%s, idle-time %d s, least priority %s%s", self.opts.thread_count,
                      "/".join(map(str, self._limits())), self.opts.idle_time,
                      "on" if self._least else "off", ", pass-through" if self._pass else "")

    async def fini(self) -> None:
        self.pool.close()

    def lane_for(self, fop_name: str) -> Lane | None:
        """The lane a fop runs in now (None: not queued), as iot_schedule
        chooses it."""
        if self._pass or fop_name in UNQUEUED:
            return None
        if self._least:
            pid = fops.caller.get().pid
            if pid < 0 and pid != ClientPid.NO_ROOT_SQUASH:
                return self.lanes[LEAST]
        return self.lanes[PRIORITY.get(fop_name, LEAST)]

    def dump_state(self) -> dict:
        return self.pool.state()


#: every queued fop: wound in its io-threads lane
FOP_METHODS = Family(
    module="xlators.performance.io_threads_fops", owner="IoThreads",
    doc="{name}: wind to the child in its io-threads lane.",
    header="from glusterpy.iothreads import lane as _lane",
    fop_names=lambda: [f.name for f in fops.CATALOGUE if f.name not in UNQUEUED],
    fields=lambda fop: {"quoted": repr(fop.name)},
    template="""
async def {name}(self, {params}, xdata=None):
    _token = _lane.set(self.lane_for({quoted}))
    try:
        return await self.first_child.{name}({params}, xdata)
    finally:
        _lane.reset(_token)
""")
install(IoThreads, FOP_METHODS)

TRANSLATOR = IoThreads
