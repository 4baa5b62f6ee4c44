"""debug/io-stats: counts and times every fop that passes through it.

GlusterFS loads io-stats at the top of every client graph and just below
protocol/server in every brick graph; `gluster volume profile` reads the
bricks' copies.  This one follows xlators/debug/io-stats/src/io-stats.c:

* Per fop: calls (`count-fop-hits`) and latency - min, max, average and
  total, in nanoseconds as GlusterFS 10 keeps them (`latency-measurement`).
  Failed fops count and are timed too, as GlusterFS's callbacks do.
* Bytes read and written, and a count of reads and writes per block-size
  bucket: bucket i holds sizes 2**i .. 2**(i+1)-1 (GlusterFS's log_base2;
  sizes 0 and 1 share bucket 0), 32 buckets.  These are kept whatever the
  options say, as GlusterFS does.  A read counts the bytes it returned (only
  when it returned some); a write counts the bytes it asked to write, before
  winding, whether it succeeds or not - both as GlusterFS does.
* Open files: how many are open now, the most ever open and when.
* Upcalls received from below (count-fop-hits): UPCALL, and per kind
  CI_IATT, CI_XATTR, CI_RENAME, CI_UNLINK, CI_FORGET, LEASE_RECALL.
* Two periods, as GlusterFS's `cumulative` and `incremental`: everything
  since start (or the last clear), and everything since the last interval
  read.  Reading the interval (not peeking) starts the next one and
  numbers them 0, 1, 2 ... as `gluster volume profile info` shows.

Reading the stats:

* in Python: `stats(interval=False, peek=False)` (one period as plain data),
  `profile(op, peek)` (what the management daemon gets) and `dump_state()`;
* through the graph: getxattr of the virtual key `trusted.glusterpy.io-stats`
  on any inode (the root by convention) answers the JSON of `profile()`,
  UTF-8 encoded; glusterpyd's `volume profile NAME info` asks each brick
  through a client connection.  GlusterFS's glusterd asks its bricks by the
  brick op GLUSTERD_BRICK_XLATOR_INFO, which io-stats answers in notify();
  this key is glusterpy's stand-in, as glusterpy's bricks have no brick-op
  program.  io-stats answers it itself (it is not counted as a GETXATTR)
  and refuses an unknown suffix with EINVAL.  A suffix chooses GlusterFS's
  info-op and peek:

      trusted.glusterpy.io-stats[.all|.incremental|.cumulative|.clear][.peek]

  The JSON shape (`FORMAT_VERSION` 1):

      {"version": 1, "xlator": NAME, "unique_id": ID, "volume_id": UUID|null,
       "side": "brick"|"client", "info_op": "all",
       "latency_measurement": bool, "count_fop_hits": bool,
       "open_fds": {"current": N, "max": N, "max_at": EPOCH|null},
       "cumulative": PERIOD, "interval": PERIOD}     # as info_op asks

      PERIOD = {"interval": -1 (cumulative) | N, "started_at": EPOCH,
                "duration": SECONDS, "data_read": BYTES, "data_written": BYTES,
                "block_read": {"4096": COUNT, ...}, "block_write": {...},
                "fops": {"LOOKUP": {"hits": N, "timed": N, "total_ns": N,
                                    "avg_ns": F, "min_ns": N, "max_ns": N}, ...},
                "upcalls": {"UPCALL": N, ...}}

  Block-size keys are the bucket's lower bound in bytes; only non-zero
  buckets, fops and upcalls are listed; fop names are GlusterFS's (READ,
  WRITE, LOOKUP ...).  `.clear` answers {"version": 1, "info_op": "clear",
  "stats_cleared": true}.
* setxattr of a key matching `*io*stat*dump` (GlusterFS's
  `trusted.io-stats-dump`) writes both periods to `<run dir>/<value>.<unique
  id>` - JSON when the key matches `*io*stat*<pid>_json_dump`, text
  otherwise - and still winds the setxattr (storage/posix drops the key).
  As in GlusterFS (CVE-2018-14659) a brick refuses it: a setxattr that
  arrived through protocol/server (the caller has a `client`) dumps nothing.
* `ios-dump-interval` N > 0 rewrites `<stats dir>/<glusterfs|glusterfsd>_<unique
  id>.dump` every N seconds in `ios-dump-format`.

`log-level` sets the level of this graph's translator loggers and of the
`glusterpy` package logger (GlusterFS sets the process's level); TRACE maps
to 5, NONE silences.  Unsetting it, or stopping the graph, gives them back
the levels they had, since a gfapi graph shares its process with others.
glusterd writes `log-level` from diagnostics.client-log-level into client
volfiles and from diagnostics.brick-log-level into brick volfiles
(`SIDE_SPECIFIC_KEYS`); `client-log-level` and `brick-log-level` themselves
are, as in GlusterFS, declared only so that `volume set` can check them.
`global-threading` and `threads` are accepted as glusterd writes them and
change nothing: fops run on trio tasks, there is no thread pool to size.

Departures: hits and latencies are independent (GlusterFS records neither
unless both options are on; `volume profile start` turns both on); per-file
"top" lists (`volume top`), latency samples (`ios-sample-interval`) and the
`dict`/`samples` dump formats are not implemented, so their options are not
declared; clearing keeps the count of open files right (GlusterFS zeroes
it), and releasing an fd that was not opened through io-stats leaves it
alone (GlusterFS decrements it on every release); the text dump prints
latencies in microseconds as its headings say.  Each counter is bumped
once, in the current interval, and the cumulative figures are the closed
intervals merged with it when read (GlusterFS bumps both copies per fop).

Cost: every fop is wrapped, generated from the catalogue.  With both options
off a wrapper adds one attribute test to the wind; the clock is read
(`time.perf_counter_ns`) only while `latency-measurement` is on.  Wrappers
only await their child, so FOPS_NEVER_SUSPEND holds.
"""

from __future__ import annotations

import errno
import fnmatch
import inspect
import json
import logging
import os
import time
from dataclasses import dataclass
from typing import Any

import trio

from glusterpy import fops
from glusterpy.fopgen import Family, install
from glusterpy.fops import DictReply, FopError
from glusterpy.keys import IOSTATS_XATTR
from glusterpy.options import Option, OptionType
from glusterpy.xlator import Event, Translator

# --------------------------------------------------------------------------
# Options

#: GlusterFS's log levels (glusterd_check_log_level) and Python's numbers
LOG_LEVELS = {"TRACE": 5, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
              "WARNING": logging.WARNING, "ERROR": logging.ERROR,
              "CRITICAL": logging.CRITICAL, "NONE": logging.CRITICAL + 10}
_LEVEL_NAMES = ("DEBUG", "WARNING", "ERROR", "INFO", "CRITICAL", "NONE", "TRACE")

OPTIONS = (
    Option("dump-fd-stats", OptionType.BOOL, "off",
           "If on stats related to file-operations would be tracked inside GlusterFS "
           "data-structures.", set_keys=("diagnostics.dump-fd-stats",)),
    Option("ios-dump-interval", OptionType.INT, "0",
           "Interval (in seconds) at which to auto-dump statistics. Zero disables "
           "automatic dumping.", min=0, max=3600,
           set_keys=("diagnostics.stats-dump-interval",)),
    Option("ios-dump-format", OptionType.ENUM, "json",
           "The dump-format option specifies the format in which to dump the "
           "statistics. Select between \"text\" and \"json\". Default is \"json\".",
           choices=("text", "json"), set_keys=("diagnostics.stats-dump-format",)),
    Option("latency-measurement", OptionType.BOOL, "off",
           "If on stats related to the latency of each operation would be tracked "
           "inside GlusterFS data-structures.",
           set_keys=("diagnostics.latency-measurement",)),
    Option("count-fop-hits", OptionType.BOOL, "off",
           "If on the calls of each operation are counted.",
           set_keys=("diagnostics.count-fop-hits",)),
    Option("log-level", OptionType.ENUM, None,
           "The log level of the process's glusterpy loggers (glusterd writes it from "
           "diagnostics.client-log-level or diagnostics.brick-log-level).",
           choices=_LEVEL_NAMES),
    Option("client-log-level", OptionType.ENUM, "INFO",
           "Changes the log-level of the clients", choices=_LEVEL_NAMES,
           set_keys=("diagnostics.client-log-level",)),
    Option("brick-log-level", OptionType.ENUM, "INFO",
           "Changes the log-level of the bricks", choices=_LEVEL_NAMES,
           set_keys=("diagnostics.brick-log-level",)),
    Option("unique-id", OptionType.STR, "/no/such/path",
           "Unique ID for our files (glusterd sets the brick path on bricks; clients "
           "use the translator's name).", reconfigurable=False),
    Option("volume-id", OptionType.STR, None,
           "This option points to the 'unique' UUID particular to this volume, which "
           "would be set in 'graph->volume_id'"),
    Option("global-threading", OptionType.BOOL, "off",
           "This option enables the global threading support for bricks. glusterpy "
           "runs fops on trio tasks and accepts it without effect.",
           set_keys=("config.global-threading",)),
    Option("threads", OptionType.INT, None,
           "Size of the global thread pool (glusterd writes it from "
           "config.client-threads or config.brick-threads); no effect in glusterpy."),
)

#: volume-set keys that glusterd writes under another option name, into the
#: client or the brick volfiles only ("!" options in glusterd-volume-set.c):
#: key -> (side, io-stats option written, default glusterd writes)
SIDE_SPECIFIC_KEYS = {
    "diagnostics.client-log-level": ("client", "log-level", "INFO"),
    "diagnostics.brick-log-level": ("brick", "log-level", "INFO"),
    "config.client-threads": ("client", "threads", "16"),
    "config.brick-threads": ("brick", "threads", "16"),
}

# --------------------------------------------------------------------------
# GlusterFS's names and numbers

FORMAT_VERSION = 1
#: GlusterFS's info-ops (gf1_cli_info_op): all, incremental, cumulative, clear
INFO_OPS = ("all", "incremental", "cumulative", "clear")
#: setxattr keys that ask for a dump file (match_special_xattr)
DUMP_KEY_PATTERN = "*io*stat*dump"
#: IOS_STATS_DUMP_DIR (setxattr dumps) and _IOS_DUMP_DIR (periodic dumps)
RUN_DIR = "/var/run/gluster"
STATS_DIR = "/var/lib/glusterd/stats"
BLOCK_BUCKETS = 32  # IOS_BLOCK_COUNT_SIZE

#: gf_fop_list names where they differ from the catalogue's upper-cased names
#: the catalogue in GlusterFS's fop-number order, as its dumps list fops
_FOPS = sorted(fops.CATALOGUE, key=lambda f: f.gf_fop)
FOP_INDEX = {f.name: i for i, f in enumerate(_FOPS)}
GF_FOP_NAMES = tuple(f.gf_name for f in _FOPS)

#: gf_upcall_list, and the UP_* bits a cache invalidation carries
UPCALL_NAMES = ("UPCALL", "CI_IATT", "CI_XATTR", "CI_RENAME", "CI_UNLINK", "CI_FORGET",
                "LEASE_RECALL")
_UPCALL_CACHE_INVALIDATION, _UPCALL_RECALL_LEASE = 1, 2
_UP_NLINK, _UP_RENAME, _UP_FORGET, _UP_XATTR, _UP_XATTR_RM = 0x1, 0x80, 0x100, 0x400, 0x800
_UP_IATT = 0x1 | 0x2 | 0x4 | 0x8 | 0x10 | 0x20 | 0x40  # IATT_UPDATE_FLAGS

#: bits of IoStats._mode
COUNT_HITS, MEASURE_LATENCY = 1, 2


class _Period:
    """One period of counters (GlusterFS's ios_global_stats)."""

    __slots__ = ("started_at", "started_mono", "data_read", "data_written", "block_read",
                 "block_write", "hits", "timed", "lat_total", "lat_min", "lat_max", "upcalls")

    def __init__(self) -> None:
        self.started_at = time.time()
        self.started_mono = time.monotonic()
        self.data_read = self.data_written = 0
        self.block_read = [0] * BLOCK_BUCKETS
        self.block_write = [0] * BLOCK_BUCKETS
        n = len(_FOPS)
        self.hits = [0] * n
        self.timed = [0] * n          # how many latencies were measured
        self.lat_total = [0] * n
        self.lat_min = [0] * n
        self.lat_max = [0] * n
        self.upcalls = [0] * len(UPCALL_NAMES)

    def add_latency(self, index: int, elapsed: int) -> None:
        self.timed[index] += 1
        self.lat_total[index] += elapsed
        if not self.lat_min[index] or elapsed < self.lat_min[index]:
            self.lat_min[index] = elapsed
        if elapsed > self.lat_max[index]:
            self.lat_max[index] = elapsed

    def merged(self, later: "_Period") -> "_Period":
        """This period followed by `later`, as one period."""
        out = _Period.__new__(_Period)
        out.started_at, out.started_mono = self.started_at, self.started_mono
        out.data_read = self.data_read + later.data_read
        out.data_written = self.data_written + later.data_written
        for name in ("block_read", "block_write", "hits", "timed", "lat_total", "upcalls"):
            setattr(out, name, [a + b for a, b in zip(getattr(self, name), getattr(later, name))])
        out.lat_min = [min(a, b) if a and b else a or b
                       for a, b in zip(self.lat_min, later.lat_min)]
        out.lat_max = [max(a, b) for a, b in zip(self.lat_max, later.lat_max)]
        return out

    def as_data(self, number: int) -> dict:
        """Plain data (the PERIOD of the module docstring); `number` is -1
        for the cumulative period."""
        fop_data = {}
        for i, name in enumerate(GF_FOP_NAMES):
            if self.hits[i] or self.timed[i]:
                timed = self.timed[i]
                fop_data[name] = {
                    "hits": self.hits[i], "timed": timed, "total_ns": self.lat_total[i],
                    "avg_ns": self.lat_total[i] / timed if timed else 0.0,
                    "min_ns": self.lat_min[i], "max_ns": self.lat_max[i]}
        return {
            "interval": number,
            "started_at": self.started_at,
            "duration": int(time.monotonic() - self.started_mono),
            "data_read": self.data_read,
            "data_written": self.data_written,
            "block_read": {1 << i: c for i, c in enumerate(self.block_read) if c},
            "block_write": {1 << i: c for i, c in enumerate(self.block_write) if c},
            "fops": fop_data,
            "upcalls": {n: c for n, c in zip(UPCALL_NAMES, self.upcalls) if c},
        }


@dataclass(slots=True, eq=False)
class _FdStats:
    """What io-stats keeps per open file (GlusterFS's ios_fd), in fd.ctx."""

    filename: str | None
    opened_at: float
    data_read: int = 0
    data_written: int = 0
    block_read: list | None = None
    block_write: list | None = None


class IoStats(Translator):
    """debug/io-stats: see the module docstring."""

    OPTIONS = OPTIONS
    #: GlusterFS's io-stats takes any number of subvolumes and winds fops to
    #: the first; the self-heal daemon's graph puts every replicate set of a
    #: volume under one io-stats (glusterd's VOL-shd.vol)
    CHILDREN = (1, None)
    FOPS_NEVER_SUSPEND = True  # the wrappers await only the child

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        self.unique_id = self.opts.unique_id if "unique-id" in self.opts.given else name
        #: where setxattr dumps and periodic dumps go (tests point them elsewhere)
        self.run_dir = RUN_DIR
        self.stats_dir = STATS_DIR
        # Every counter is bumped once, in the current interval; the
        # cumulative figures are the closed intervals (`_closed`) merged with
        # it when read.  GlusterFS bumps both of its copies on every fop.
        self._closed: _Period | None = None
        self._current = _Period()
        self._interval_number = 0
        self.open_fds = 0
        self.max_open_fds = 0
        self.max_open_fds_at: float | None = None
        self._saved_levels: dict[logging.Logger, int] = {}
        self._dump_scope: trio.CancelScope | None = None
        self._set_mode()

    # -- life cycle and options --------------------------------------------

    async def init(self) -> None:
        # parents are linked only once the whole graph is built: now
        self._apply_log_level()
        self._restart_dumper()

    async def fini(self) -> None:
        if self._dump_scope is not None:
            self._dump_scope.cancel()
        self._restore_log_levels()

    def options_changed(self, old) -> None:
        self._set_mode()
        if self.opts.log_level != old.log_level:
            self._apply_log_level()
        if self.opts.ios_dump_interval != old.ios_dump_interval:
            self._restart_dumper()

    def _set_mode(self) -> None:
        # plain attributes: the fop path reads them on every call
        self._mode = (COUNT_HITS if self.opts.count_fop_hits else 0) | \
            (MEASURE_LATENCY if self.opts.latency_measurement else 0)
        self._track_fds = self.opts.dump_fd_stats

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.UPCALL and self._mode & COUNT_HITS:
            self._count_upcall(data)
        super().notify(event, source, data)

    # -- reading the stats ---------------------------------------------------

    def stats(self, interval: bool = False, peek: bool = False) -> dict:
        """One period as plain data: the cumulative one, or (interval=True)
        the one since the last interval read - which this read ends, unless
        `peek`."""
        period = self._current
        if not interval:
            closed = self._closed
            return (closed.merged(period) if closed is not None else period).as_data(-1)
        number = self._interval_number
        if not peek:
            self._next_interval()
        return period.as_data(number)

    def profile(self, op: str = "all", peek: bool = False) -> dict:
        """What `volume profile info` gets from this translator: GlusterFS's
        io_stats_dump for info-op `op` (all, incremental, cumulative, clear)."""
        if op not in INFO_OPS:
            raise ValueError(f"info-op {op!r} is not one of {', '.join(INFO_OPS)}")
        out: dict[str, Any] = {"version": FORMAT_VERSION, "info_op": op}
        if op == "clear":
            self.clear()
            out["stats_cleared"] = True
            return out
        out.update({
            "xlator": self.name, "unique_id": self.unique_id,
            "volume_id": self.opts.volume_id, "side": self._side(),
            "latency_measurement": self.opts.latency_measurement,
            "count_fop_hits": self.opts.count_fop_hits,
            "open_fds": {"current": self.open_fds, "max": self.max_open_fds,
                         "max_at": self.max_open_fds_at},
        })
        if op in ("all", "cumulative"):
            out["cumulative"] = self.stats()
        if op in ("all", "incremental"):
            out["interval"] = self.stats(interval=True, peek=peek)
        return out

    def clear(self) -> None:
        """io_stats_clear: both periods start again; interval numbers restart."""
        self._closed = None
        self._current = _Period()
        self._interval_number = 0
        self.max_open_fds = self.open_fds
        self.max_open_fds_at = time.time() if self.open_fds else None

    def dump_state(self) -> dict:
        return {"cumulative": self.stats(), "interval": self.stats(interval=True, peek=True),
                "open-fds": self.open_fds, "max-open-fds": self.max_open_fds,
                "latency-measurement": self.opts.latency_measurement,
                "count-fop-hits": self.opts.count_fop_hits}

    # -- fop hooks: the generated wrappers call _wind_<fop> before winding
    #    (a reply it returns answers the fop here) and _unwind_<fop> with the
    #    reply after; each takes the fop arguments it names

    def _wind_getxattr(self, name):
        if not name or not name.startswith(IOSTATS_XATTR):
            return None
        rest = name[len(IOSTATS_XATTR):].split(".")
        if rest[0]:
            return None  # another key that merely starts like ours
        parts = rest[1:]
        peek = bool(parts) and parts[-1] == "peek"
        if peek:
            parts = parts[:-1]
        if len(parts) > 1 or (parts and parts[0] not in INFO_OPS):
            raise FopError(errno.EINVAL, f"{name}: the info-op is one of "
                                         f"{', '.join(INFO_OPS)}, then optionally .peek")
        report = self.profile(parts[0] if parts else "all", peek=peek)
        return DictReply({name: json.dumps(report).encode()})

    def _wind_setxattr(self, xattrs):
        if isinstance(xattrs, dict):
            for key, value in xattrs.items():
                if isinstance(key, str) and fnmatch.fnmatchcase(key, DUMP_KEY_PATTERN):
                    self._dump_on_request(key, value)
        return None

    def _wind_writev(self, fd, data):
        size = len(data) if type(data) is bytes else _nbytes(data)
        bucket = size.bit_length() - 1 if size > 1 else 0
        if bucket >= BLOCK_BUCKETS:
            bucket = BLOCK_BUCKETS - 1
        period = self._current
        period.data_written += size
        period.block_write[bucket] += 1
        fs = fd.ctx.get(self) if self._track_fds else None
        if fs is not None and fs.block_write is not None:
            fs.data_written += size
            fs.block_write[bucket] += 1
        return None

    def _unwind_readv(self, reply, fd):
        data = reply.data
        size = len(data) if type(data) is bytes else _nbytes(data)
        if size <= 0:
            return
        bucket = size.bit_length() - 1
        if bucket >= BLOCK_BUCKETS:
            bucket = BLOCK_BUCKETS - 1
        period = self._current
        period.data_read += size
        period.block_read[bucket] += 1
        fs = fd.ctx.get(self) if self._track_fds else None
        if fs is not None and fs.block_read is not None:
            fs.data_read += size
            fs.block_read[bucket] += 1

    def _unwind_open(self, reply, loc, fd):
        self._opened(fd, loc.path)

    def _unwind_create(self, reply, loc, fd):
        self._opened(fd, loc.path)

    def _wind_release(self, fd):
        fs = fd.ctx.pop(self, None)
        if fs is not None:
            self.open_fds -= 1
            if self.opts.dump_fd_stats:
                self._log_fd_stats(fs)
        return None

    # -- helpers: counting ---------------------------------------------------

    def _opened(self, fd, path: str | None) -> None:
        now = time.time()
        # per-file byte counts only when they will be reported at release
        tracked = self.opts.dump_fd_stats
        fd.ctx[self] = _FdStats(path, now, block_read=[0] * BLOCK_BUCKETS if tracked else None,
                                block_write=[0] * BLOCK_BUCKETS if tracked else None)
        self.open_fds += 1
        if self.open_fds > self.max_open_fds:
            self.max_open_fds = self.open_fds
            self.max_open_fds_at = now

    def _count_upcall(self, data: Any) -> None:
        kinds = ["UPCALL"]
        event_type = getattr(data, "event_type", None)
        if event_type == _UPCALL_RECALL_LEASE:
            kinds.append("LEASE_RECALL")
        elif event_type == _UPCALL_CACHE_INVALIDATION:
            flags = getattr(getattr(data, "message", None), "flags", 0) or 0
            if flags & (_UP_XATTR | _UP_XATTR_RM):
                kinds.append("CI_XATTR")
            if flags & _UP_IATT:
                kinds.append("CI_IATT")
            if flags & _UP_RENAME:
                kinds.append("CI_RENAME")
            if flags & _UP_FORGET:
                kinds.append("CI_FORGET")
            if flags & _UP_NLINK:
                kinds.append("CI_UNLINK")
        for kind in kinds:
            i = UPCALL_NAMES.index(kind)
            self._current.upcalls[i] += 1

    def _next_interval(self) -> None:
        """End the current interval: fold it into the closed ones."""
        ended, self._current = self._current, _Period()
        self._closed = ended if self._closed is None else self._closed.merged(ended)
        self._interval_number += 1

    # -- helpers: where this translator runs ---------------------------------

    def _graph_translators(self) -> list[Translator]:
        """Every translator connected to this one, parents and children."""
        seen: dict[int, Translator] = {}
        stack: list[Any] = [self]
        while stack:
            xl = stack.pop()
            if not isinstance(xl, Translator) or id(xl) in seen:
                continue
            seen[id(xl)] = xl
            stack.extend(xl.children)
            stack.extend(xl.parents)
        return list(seen.values())

    def _side(self) -> str:
        """'brick' below a protocol/server (GlusterFS: glusterfsd), else 'client'."""
        stack, seen = list(self.parents), set()
        while stack:
            xl = stack.pop()
            if id(xl) in seen:
                continue
            seen.add(id(xl))
            if getattr(xl, "type_name", "") == "protocol/server":
                return "brick"
            stack.extend(getattr(xl, "parents", ()))
        return "client"

    def _apply_log_level(self) -> None:
        """gf_log_set_loglevel: the level of this graph's loggers and of the
        glusterpy package.  An unset log-level, and the graph's end, give
        them back the levels they had."""
        self._restore_log_levels()
        text = self.opts.log_level
        if text is None:
            return
        loggers = [logging.getLogger("glusterpy"), logging.getLogger("xlators")]
        loggers += [xl.log for xl in self._graph_translators()]
        for logger in loggers:
            self._saved_levels.setdefault(logger, logger.level)
            logger.setLevel(LOG_LEVELS[text])

    def _restore_log_levels(self) -> None:
        for logger, level in self._saved_levels.items():
            logger.setLevel(level)
        self._saved_levels = {}

    # -- helpers: dumps ------------------------------------------------------

    def _key_prefix(self) -> str:
        """_io_stats_get_key_prefix: gluster[.brick].<unique id, / as _>."""
        root = "gluster.brick" if self._side() == "brick" else "gluster"
        return f"{root}.{self.unique_id.replace('/', '_')}"

    def _dump_on_request(self, key: str, value: Any) -> None:
        """conditional_dump: write both periods to RUN_DIR/<value>.<unique id>."""
        if fops.caller.get().client is not None:
            self.log.debug("taking io-stats dump using setxattr not permitted on brick. "
                           "Use 'gluster profile' instead")
            return
        name = value.decode(errors="replace") if isinstance(value, (bytes, bytearray)) \
            else str(value)
        name = name.rstrip("\0")
        if "../" in name:
            self.log.error('%s: no "../" allowed in path', name)
            return
        name = name.lstrip("/")
        if not name:
            self.log.error("No filename given")
            return
        filename = os.path.join(self.run_dir, f"{name}.{self.unique_id}".replace("/", "-"))
        as_json = fnmatch.fnmatchcase(key, f"*io*stat*{os.getpid()}_json_dump")
        try:
            self._write_dump(filename, "json" if as_json else "text")
        except OSError as e:
            self.log.error("failed to open %s for writing: %s", filename, e)

    def _write_dump(self, filename: str, dump_format: str) -> None:
        """io_stats_dump(GF_IOS_INFO_ALL, not peek) to a file."""
        interval_number = self._interval_number
        cumulative, interval = self.stats(), self.stats(interval=True)
        if dump_format == "json":
            text = _json_dump(self._key_prefix(), cumulative, interval, self.open_fds,
                              self.max_open_fds)
        else:
            text = _text_dump(cumulative, -1, self) + _text_dump(interval, interval_number, self)
        with open(filename, "w") as f:
            f.write(text)

    def _restart_dumper(self) -> None:
        """Start, stop or re-time the periodic dump (GlusterFS's dump thread)."""
        if self._dump_scope is not None:
            self._dump_scope.cancel()
            self._dump_scope = None
        if self.opts.ios_dump_interval > 0 and self.nursery is not None:
            self._dump_scope = trio.CancelScope()
            self.spawn(self._dump_periodically, self._dump_scope)

    async def _dump_periodically(self, scope: trio.CancelScope) -> None:
        progname = "glusterfsd" if self._side() == "brick" else "glusterfs"
        filename = os.path.join(self.stats_dir,
                                f"{progname}_{self.unique_id.replace('/', '_')}.dump")
        self.log.info("IO stats dump thread started, polling IO stats every %d seconds",
                      self.opts.ios_dump_interval)
        failed_before = False
        with scope:
            while True:
                await trio.sleep(self.opts.ios_dump_interval)
                try:
                    os.makedirs(self.stats_dir, exist_ok=True)
                    self._write_dump(filename, self.opts.ios_dump_format)
                    failed_before = False
                except OSError as e:
                    if not failed_before:  # once per failure streak, as GlusterFS
                        self.log.error("could not open stats-dump file %s (%s)", filename, e)
                    failed_before = True

    def _log_fd_stats(self, fs: _FdStats) -> None:
        """io_stats_dump_fd: an fd's stats in the log when it is released."""
        log = self.log
        log.info("--- fd stats ---")
        if fs.filename:
            log.info("      Filename : %s", fs.filename)
        log.info("      Lifetime : %f secs", time.time() - fs.opened_at)
        if fs.data_read:
            log.info("     BytesRead : %d bytes", fs.data_read)
        if fs.data_written:
            log.info("  BytesWritten : %d bytes", fs.data_written)
        for i, count in enumerate(fs.block_read or ()):
            if count:
                log.info(" Read %06db+ :%d", 1 << i, count)
        for i, count in enumerate(fs.block_write or ()):
            if count:
                log.info("Write %06db+ : %d", 1 << i, count)


# --------------------------------------------------------------------------
# The wrappers, one per fop of the catalogue

def _fields(fop: fops.Fop) -> dict[str, str]:
    """What io-stats' template needs for `fop`: its counter's index, the
    wind and unwind hooks IoStats has for it, and the bits of `_mode`
    (literals: the generated module does not import this one)."""
    wind = unwind = ""
    hook = getattr(IoStats, f"_wind_{fop.name}", None)
    if hook is not None:
        wind = (f"    _answer = self._wind_{fop.name}({_hook_args(hook, fop)})\n"
                f"    if _answer is not None:\n        return _answer\n")
    hook = getattr(IoStats, f"_unwind_{fop.name}", None)
    if hook is not None:
        unwind = (f"    self._unwind_{fop.name}({_hook_args(hook, fop)})\n"
                  f"    return _reply\n")
    return {"index": str(FOP_INDEX[fop.name]), "wind": wind, "unwind": unwind,
            "result": "_reply = " if unwind else "return ",
            "MEASURE_LATENCY": str(MEASURE_LATENCY), "COUNT_HITS": str(COUNT_HITS)}


def _hook_args(hook, fop: fops.Fop) -> str:
    """The arguments a hook names: `reply` and any of the fop's."""
    names = list(inspect.signature(hook).parameters)[1:]
    unknown = [n for n in names if n != "reply" and n not in fop.arg_names + ("xdata",)]
    if unknown:
        raise TypeError(f"{hook.__qualname__}: {fop.name} has no argument {unknown[0]!r}")
    return ", ".join("_reply" if n == "reply" else n for n in names)


#: count, time and wind every fop
FOP_METHODS = Family(
    module="xlators.debug.io_stats_fops", owner="IoStats",
    doc="{name}: count and time the call, then wind to the child.",
    header="from time import perf_counter_ns",
    fields=_fields,
    template="""
async def {name}(self, {params}, xdata=None):
{wind}    _mode = self._mode
    if not _mode:
        {result}await self.first_child.{name}({params}, xdata)
    else:
        _start = perf_counter_ns() if _mode & {MEASURE_LATENCY} else 0   # MEASURE_LATENCY
        try:
            {result}await self.first_child.{name}({params}, xdata)
        finally:
            # a failed fop counts and is timed too, as in GlusterFS
            _period = self._current
            if _mode & {COUNT_HITS}:     # COUNT_HITS
                _period.hits[{index}] += 1
            if _start:
                _period.add_latency({index}, perf_counter_ns() - _start)
{unwind}""")
install(IoStats, FOP_METHODS)


def _nbytes(data) -> int:
    """The bytes in a fop's payload: a bytes-like object or a list of them."""
    if isinstance(data, memoryview):
        return data.nbytes
    if isinstance(data, (list, tuple)):
        return sum(_nbytes(part) for part in data)
    return len(data)


# --------------------------------------------------------------------------
# Dump formats


def _size_label(size: int) -> str:
    if size >= 1 << 20:
        return f"{size >> 20}mb"
    if size >= 1 << 10:
        return f"{size >> 10}kb"
    return f"{size}b"


def _json_dump(prefix: str, cumulative: dict, interval: dict, open_fds: int,
               max_open_fds: int) -> str:
    """io_stats_dump_global_to_json_logfp for both periods, one JSON object
    each, as GlusterFS writes them."""
    out = []
    for period in (cumulative, interval):
        aggregate = period["interval"] == -1
        p = f"{prefix}.{'aggr' if aggregate else 'inter'}"
        seconds = max(time.time() - period["started_at"], 1e-9)
        d: dict[str, Any] = {}
        for i in range(31):
            label = _size_label(1 << i)
            reads = period["block_read"].get(1 << i, 0)
            writes = period["block_write"].get(1 << i, 0)
            if aggregate:
                d[f"{p}.read_{label}"] = reads
                d[f"{p}.write_{label}"] = writes
            else:
                d[f"{p}.read_{label}_per_sec"] = round(reads / seconds, 2)
                d[f"{p}.write_{label}_per_sec"] = round(writes / seconds, 2)
        if aggregate:
            d[f"{p}.fds.open_count"] = open_fds
            d[f"{p}.fds.max_open_count"] = max_open_fds
        avg_sum = weighted_sum = 0.0
        total_hits = 0
        for name in GF_FOP_NAMES:
            f = period["fops"].get(name, {})
            hits = f.get("hits", 0)
            avg_us = f.get("avg_ns", 0.0) / 1000
            lc = name.lower()
            if aggregate:
                d[f"{p}.fop.{lc}.count"] = hits
            else:
                d[f"{p}.fop.{lc}.per_sec"] = round(hits / seconds, 2)
            d[f"{p}.fop.{lc}.latency_ave_usec"] = round(avg_us, 2)
            d[f"{p}.fop.{lc}.latency_min_usec"] = round(f.get("min_ns", 0) / 1000, 2)
            d[f"{p}.fop.{lc}.latency_max_usec"] = round(f.get("max_ns", 0) / 1000, 2)
            avg_sum += avg_us
            weighted_sum += hits * avg_us
            total_hits += hits
        weighted = weighted_sum / total_hits if total_hits else 0.0
        if total_hits:
            d[f"{p}.fop.weighted_latency_ave_usec_nozerofill"] = round(weighted, 4)
        d[f"{p}.fop.weighted_latency_ave_usec"] = round(weighted, 4)
        d[f"{p}.fop.weighted_fop_count"] = total_hits
        d[f"{p}.fop.unweighted_latency_ave_usec"] = round(avg_sum / len(GF_FOP_NAMES), 4)
        for name in UPCALL_NAMES:
            hits = period["upcalls"].get(name, 0)
            if aggregate:
                d[f"{p}.fop.{name.lower()}.count"] = hits
            else:
                d[f"{p}.fop.{name.lower()}.per_sec"] = round(hits / seconds, 2)
        if aggregate:
            d[f"{p}.uptime"] = period["duration"]
            d[f"{p}.bytes_read"] = period["data_read"]
            d[f"{p}.bytes_written"] = period["data_written"]
        else:
            d[f"{p}.sample_interval_sec"] = round(seconds, 2)
            d[f"{p}.bytes_read_per_sec"] = round(period["data_read"] / seconds, 2)
            d[f"{p}.bytes_written_per_sec"] = round(period["data_written"] / seconds, 2)
        out.append(json.dumps(d, indent=0))
    return "\n".join(out) + "\n"


def _text_dump(period: dict, number: int, xl: IoStats) -> str:
    """io_stats_dump_global_to_logfp: one period as GlusterFS's text dump."""
    lines = ["", "=== Cumulative stats ===" if number == -1 else f"=== Interval {number} stats ===",
             f"      Duration : {period['duration']} secs",
             f"     BytesRead : {period['data_read']}",
             f"  BytesWritten : {period['data_written']}", ""]
    buckets = sorted(set(period["block_read"]) | set(period["block_write"]))
    for row in range(0, len(buckets), 3):
        sizes = buckets[row:row + 3]
        lines.append(f"{'Block Size':<12} :" + "".join(f"{s:>16}B+" for s in sizes))
        lines.append(f"{'Read Count':<12} :" +
                     "".join(f"{period['block_read'].get(s, 0):>18}" for s in sizes))
        lines.append(f"{'Write Count':<12} :" +
                     "".join(f"{period['block_write'].get(s, 0):>18}" for s in sizes))
        lines.append("")
    lines.append(f"{'Fop':<13} {'Call Count':>10} {'Avg-Latency':>14} {'Min-Latency':>14} "
                 f"{'Max-Latency':>14}")
    lines.append(f"{'---':<13} {'----------':>10} {'-----------':>14} {'-----------':>14} "
                 f"{'-----------':>14}")
    for name in GF_FOP_NAMES:
        f = period["fops"].get(name)
        if not f or not f["hits"]:
            continue
        lines.append(f"{name:<13} {f['hits']:>10} {f['avg_ns'] / 1000:>11.2f} us "
                     f"{f['min_ns'] / 1000:>11.2f} us {f['max_ns'] / 1000:>11.2f} us")
    for name, hits in period["upcalls"].items():
        lines.append(f"{name:<13} {hits:>10} {'0':>11} us {'0':>11} us {'0':>11} us")
    lines.append("------ ----- ----- ----- ----- ----- ----- -----  ----- ----- ----- -----")
    if number == -1:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(xl.max_open_fds_at)) \
            if xl.max_open_fds_at else "-"
        lines.append(f"Current open fd's: {xl.open_fds} Max open fd's: {xl.max_open_fds} "
                     f"time {when}")
    return "\n".join(lines) + "\n"


TRANSLATOR = IoStats
