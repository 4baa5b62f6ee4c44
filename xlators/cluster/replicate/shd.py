"""The self-heal daemon's half of cluster/replicate (afr-self-heald.c).

A replicate translator loaded with ``iam-self-heal-daemon yes`` - in the
glustershd process that glusterpyd runs on each node, from the volume's
``VOL-shd.vol`` - gets a `SelfHealDaemon`, which heals without any client
touching the files:

* one **index healer** per child (afr_shd_index_healer).  It sleeps
  ``heal-timeout`` seconds (600 by default) or until woken, then - when at
  least two children are up and the child is *local* - sweeps that child's
  heal index (``xattrop``, ``dirty`` and ``entry-changes``, through
  `crawl.heal_index`), and sweeps again after a pause of one second as
  long as a sweep healed something: healing a directory can make the
  entries below it healable.  A healer whose child turns out not to be
  local ends, as GlusterFS's thread does, until it is woken again.
* **waking** (afr_selfheal_childup): once every child has reported, and at
  every CHILD_UP after that, the index healers of all up children are
  woken - the bricks that stayed up hold the index entries for the one that
  came back.  Turning ``self-heal-daemon`` on, or changing
  ``heal-timeout``, wakes them too; while ``self-heal-daemon`` is off they
  sleep whatever happens.
* one **full healer** per child, started only on demand (``volume heal
  NAME full``): a walk of the whole namespace as that child lists it
  (`crawl.heal_full`).  It ends when no new request comes within
  ``heal-timeout`` after its sweep.  With ``shd-state-dir`` set (glusterpyd
  sets it) the sweep's position is saved as it goes
  (`crawl.SweepPosition`), and a sweep cut short - the daemon restarted, a
  brick went away - continues from there: on the next request, and by
  itself when the daemon's children come up.  GlusterFS starts over.
* **parallel heals** (``shd-max-threads``, ``shd-wait-qlength``): every
  sweep heals up to ``shd-max-threads`` files at once, with up to
  ``shd-wait-qlength`` waiting, directories one at a time by the crawl
  itself (crawl.py's docstring says why); one `crawl.GfidGuard` for all
  the healers of the daemon keeps two heals of one gfid from overlapping.
  A ``volume set`` of either reaches a sweep in progress.
* **crawl statistics**: every sweep is a crawl event - type INDEX or FULL,
  start and end time, entries healed, in split-brain and failed - and the
  last 50 of each child are kept (AFR_STATISTICS_HISTORY_SIZE) for
  ``volume heal NAME statistics``.
* `xl_op`: what glusterd's brick op asks of the daemon (afr_xl_op):
  "heal-index", "heal-full", "statistics", "heal-count", answered per child
  with GlusterFS's status texts ("Started self-heal", "Brick is not
  connected", "< 2 bricks in replica are up", "Brick is remote").

*Local* (afr_shd_is_subvol_local): a child is local when its brick reports
``trusted.glusterfs.node-uuid`` equal to this translator's ``node-uuid``
option (glusterd starts glustershd with ``--xlator-option
*replicate*.node-uuid=<its uuid>`` and bricks with ``*-posix.glusterd-uuid``);
without either, when the host in the brick's pathinfo is this machine's
host name, which is GlusterFS's own test.  Departure: GlusterFS 10 decides
by pathinfo alone; several glusterpyd nodes may share one machine (network
namespaces share the host name), and the node uuid tells them apart.

Other departures: healers and their heal jobs are trio tasks, not threads;
a full sweep heals in parallel too (GlusterFS's syncop_ftw heals one entry
at a time; only its index sweep uses shd-max-threads) and resumes after a
restart (above); a sweep is not cut short when ``self-heal-daemon``
is turned off in the middle of it (the next one waits); and when the
children are not all heard from (the replicate notify timer ran out) the
index healers are woken once after that timer, where GlusterFS waits for
the next CHILD_UP.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

import trio

from glusterpy import fops
from glusterpy.fops import Caller, ClientPid, FopError, Loc, ROOT_GFID
from glusterpy.keys import INDEX_COUNT_KEY, NODE_UUID_KEY, PATHINFO_KEY

from xlators.cluster.replicate import changelog as cl
from xlators.cluster.replicate import crawl
from xlators.cluster.replicate.heal_common import CrawlStats

if TYPE_CHECKING:
    from xlators.cluster.replicate import Replicate

#: afr-self-heal.h's status texts
SBRICK_NOT_CONNECTED = "Brick is not connected"
SLESS_THAN2_BRICKS_IN_REP = "< 2 bricks in replica are up"
SBRICK_IS_REMOTE = "Brick is remote"
SSTARTED_SELF_HEAL = "Started self-heal"
#: AFR_STATISTICS_HISTORY_SIZE
HISTORY_SIZE = 50
#: the pause between index sweeps that healed something
SWEEP_PAUSE = 1.0
#: replicate's NOTIFY_TIMEOUT plus a margin (see the module docstring)
WATCHDOG_DELAY = 11.0

OPS = ("heal-index", "heal-full", "statistics", "heal-count")


@dataclasses.dataclass
class CrawlEvent:
    """crawl_event_t: one sweep of one child's index or namespace."""

    child: int
    crawl_type: str  # "INDEX" or "FULL"
    start_time: float = 0.0
    end_time: float = 0.0
    healed_count: int = 0
    split_brain_count: int = 0
    heal_failed_count: int = 0

    def as_data(self, brick: str) -> dict:
        return {"child": self.child, "brick": brick, "type": self.crawl_type,
                "start": self.start_time, "end": self.end_time or None,
                "in_progress": not self.end_time, "healed": self.healed_count,
                "split_brain": self.split_brain_count, "heal_failed": self.heal_failed_count}


class _LiveStats(CrawlStats):
    """The crawl's counters, written through to a crawl event so that
    `statistics` shows a sweep in progress with its counts so far."""

    def __init__(self, event: CrawlEvent):
        object.__setattr__(self, "_event", event)
        super().__init__()

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        field = _EVENT_FIELDS.get(name)
        if field is not None:
            setattr(self._event, field, value)


_EVENT_FIELDS = {"healed": "healed_count", "split_brain": "split_brain_count",
                 "failed": "heal_failed_count"}


class _Healer:
    """struct subvol_healer: one child's index or full healer task."""

    def __init__(self, shd: "SelfHealDaemon", child: int, crawl_type: str):
        self.shd = shd
        self.child = child
        self.crawl_type = crawl_type
        self.running = False
        self.started = False  # its task exists
        self.rerun = False
        self.local = False
        self.sweeps = 0
        #: the counters of the last sweep (crawl.CrawlStats), for statedump
        self.last_stats: CrawlStats | None = None
        self._wake = trio.Event()
        #: the sweep in progress (start_time 0: none)
        self.event = CrawlEvent(child, crawl_type)

    def spawn(self) -> None:
        """afr_shd_healer_spawn: wake the task, or start it."""
        self.rerun = True
        if self.running:
            self._wake.set()
            return
        self.running = True
        self.shd._start_healer(self)

    async def wait(self) -> bool:
        """__afr_shd_healer_wait: until woken or heal-timeout seconds went
        by; True when woken.  While the daemon is disabled, wait again."""
        while True:
            if not self.rerun:
                with trio.move_on_after(self.shd.timeout):
                    await self._wake.wait()
            ran, self.rerun = self.rerun, False
            self._wake = trio.Event()
            if self.shd.enabled:
                return ran

    def _stop_unless_rerun(self) -> bool:
        """safe_break: end the task unless a wake-up is pending."""
        if self.rerun:
            return False
        self.running = False
        return True

    # -- the sweeps ----------------------------------------------------------

    def _prepare(self) -> CrawlEvent:
        """afr_shd_sweep_prepare."""
        self.event = CrawlEvent(self.child, self.crawl_type, start_time=time.time())
        return self.event

    def _done(self, event: CrawlEvent) -> None:
        """afr_shd_sweep_done: end time, into the history."""
        event.end_time = time.time()
        self.shd.history[self.child].append(event)
        self.event = CrawlEvent(self.child, self.crawl_type)
        self.sweeps += 1

    async def _sweep(self, sweep, **kw) -> CrawlStats | None:
        """One sweep, its counts kept in the crawl event as it goes."""
        event = self._prepare()
        stats = self.last_stats = _LiveStats(event)
        try:
            await sweep(self.shd.afr, self.child, stats=stats, guard=self.shd.guard, **kw)
        except FopError as e:
            event.heal_failed_count += 1
            self.shd.log.warning("%s sweep of %s stopped: %s", self.crawl_type.lower(),
                                 self.shd.child_name(self.child), e)
            return None
        finally:
            self._done(event)
        return stats

    async def run_index(self) -> None:
        """afr_shd_index_healer."""
        afr = self.shd.afr
        while True:
            await self.wait()
            if sum(afr.child_up) < 2:  # afr_bricks_available_for_heal
                continue
            if not await self.shd.is_local(self.child):
                self.local = False
                if self._stop_unless_rerun():
                    return
                continue
            self.local = True
            while True:
                self.shd.log.debug("starting index sweep on subvol %s",
                                   self.shd.child_name(self.child))
                stats = await self._sweep(crawl.heal_index)
                self.shd.log.debug("finished index sweep on subvol %s",
                                   self.shd.child_name(self.child))
                # a pause, so an entry that is only there for I/O in flight
                # does not make a busy loop
                await trio.sleep(SWEEP_PAUSE)
                if stats is None or stats.healed <= 0:
                    break

    async def run_full(self) -> None:
        """afr_shd_full_healer."""
        while True:
            if not await self.wait():
                self.running = False
                return
            if not await self.shd.is_local(self.child):
                self.local = False
                if self._stop_unless_rerun():
                    return
                continue
            self.local = True
            name = self.shd.child_name(self.child)
            self.shd.log.info("starting full sweep on subvol %s", name)
            await self._sweep(crawl.heal_full, position=self.shd.position(self.child))
            self.shd.log.info("finished full sweep on subvol %s", name)


class SelfHealDaemon:
    """afr_self_heald_t of one replicate translator (see the module docstring)."""

    def __init__(self, afr: "Replicate"):
        self.afr = afr
        self.log = logging.getLogger(afr.name)
        n = afr.child_count
        self.index_healers = [_Healer(self, i, "INDEX") for i in range(n)]
        self.full_healers = [_Healer(self, i, "FULL") for i in range(n)]
        self.history: list[collections.deque[CrawlEvent]] = [
            collections.deque(maxlen=HISTORY_SIZE) for _ in range(n)]
        self._nursery: trio.Nursery | None = None
        self._stopped = False
        self._woken = False
        #: the gfids being healed by any healer of this daemon
        self.guard = crawl.GfidGuard()

    @property
    def enabled(self) -> bool:
        return bool(self.afr.opts.self_heal_daemon)

    @property
    def timeout(self) -> float:
        return float(self.afr.opts.heal_timeout)

    def child_name(self, child: int) -> str:
        return self.afr.children[child].name

    def position(self, child: int) -> crawl.SweepPosition | None:
        """Where child `child`'s full sweep is saved (``shd-state-dir``)."""
        directory = self.afr.opts.shd_state_dir
        if not directory:
            return None
        return crawl.SweepPosition(directory, self.afr.name, self.child_name(child),
                                   self.afr.opts.volume_id)

    def brick_of(self, child: int) -> str:
        """HOST:PATH of the brick a protocol/client child reaches (what
        glfsheal prints), else the child's name."""
        opts = getattr(self.afr.children[child], "opts", None)
        try:
            host, path = opts["remote-host"], opts["remote-subvolume"]
        except (KeyError, TypeError):
            return self.child_name(child)
        return f"{host}:{path}" if host and path else self.child_name(child)

    # -- life cycle (driven by replicate) ------------------------------------

    def start(self) -> None:
        self.afr.spawn(self._run, name=f"{self.afr.name}:self-heal-daemon")

    def stop(self) -> None:
        self._stopped = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()

    async def _run(self) -> None:
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            for healer in self.index_healers + self.full_healers:
                if healer.running and not healer.started:
                    self._start_healer(healer)
            nursery.start_soon(self._watchdog)
            try:
                await trio.sleep_forever()
            finally:
                self._nursery = None

    def _start_healer(self, healer: _Healer) -> None:
        if self._nursery is None or self._stopped:
            return  # _run starts it (or the daemon is going away)
        healer.started = True
        run = healer.run_index if healer.crawl_type == "INDEX" else healer.run_full
        self._nursery.start_soon(self._guarded, healer, run,
                                 name=f"{self.afr.name}:{healer.crawl_type.lower()}-healer-"
                                      f"{healer.child}")

    async def _guarded(self, healer: _Healer, run) -> None:
        """A healer that fails unexpectedly is logged and started again
        after a pause, instead of taking the whole graph down."""
        try:
            while True:
                try:
                    await run()
                    return
                except FopError as e:
                    self.log.warning("%s healer of %s: %s", healer.crawl_type.lower(),
                                     self.child_name(healer.child), e)
                except Exception:
                    self.log.exception("%s healer of %s failed", healer.crawl_type.lower(),
                                       self.child_name(healer.child))
                await trio.sleep(SWEEP_PAUSE)
        finally:
            healer.started = False
            healer.running = False

    async def _watchdog(self) -> None:
        await trio.sleep(WATCHDOG_DELAY)
        if not self._woken and any(self.afr.child_up):
            self.log.info("not every subvolume reported; starting the index healers anyway")
            self.child_up()

    def child_up(self) -> None:
        """afr_selfheal_childup: wake the index healer of every up child."""
        self._woken = True
        for i, up in enumerate(self.afr.child_up):
            if up:
                self.index_healers[i].spawn()
                # a full sweep cut short goes on (see the module docstring)
                position = self.position(i)
                if position is not None and position.exists() and \
                        not self.full_healers[i].running and self.enabled:
                    self.log.info("resuming the interrupted full sweep of %s",
                                  self.child_name(i))
                    self.full_healers[i].spawn()

    def reconfigured(self, old) -> None:
        """afr reconfigure: turning the daemon on or changing heal-timeout
        wakes the index healers (which then sleep the new time)."""
        if self.enabled and (bool(old.self_heal_daemon) != self.enabled or
                             old.heal_timeout != self.afr.opts.heal_timeout):
            self.child_up()

    # -- locality --------------------------------------------------------------

    async def is_local(self, child: int) -> bool:
        """afr_shd_is_subvol_local (see the module docstring)."""
        sub = self.afr.children[child]
        root = Loc(gfid=ROOT_GFID, path="/")
        token = fops.caller.set(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8)))
        try:
            mine = self.afr.opts.node_uuid
            if mine:
                try:
                    reply = await sub.getxattr(root, NODE_UUID_KEY, None)
                    theirs = _text(reply.dict.get(NODE_UUID_KEY))
                    if theirs:
                        return theirs.strip().lower() == mine.strip().lower()
                except FopError:
                    pass
            reply = await sub.getxattr(root, PATHINFO_KEY, None)
            host = cl.pathinfo_host(_text(reply.dict.get(PATHINFO_KEY)) or "")
            return host == socket.gethostname()
        except FopError:
            return False
        finally:
            fops.caller.reset(token)

    # -- glusterd's brick op (afr_xl_op) -----------------------------------------

    async def xl_op(self, op: str) -> dict:
        """{"op_ret": 0 or -1, "children": [...]} - see the module docstring."""
        if op in ("heal-index", "heal-full"):
            return await self._op_heal(op)
        if op == "statistics":
            return self._op_statistics()
        if op == "heal-count":
            return await self._op_heal_count()
        raise ValueError(f"unknown self-heal daemon op {op!r} (one of {', '.join(OPS)})")

    async def _op_heal(self, op: str) -> dict:
        index = op == "heal-index"
        op_ret = 0 if index else -1
        up = self.afr.child_up
        out = []
        for i in range(self.afr.child_count):
            if not up[i]:
                status = SBRICK_NOT_CONNECTED
                if index:
                    op_ret = -1
            elif sum(up) < 2:
                status = SLESS_THAN2_BRICKS_IN_REP
                if index:
                    op_ret = -1
            elif not await self.is_local(i):
                status = SBRICK_IS_REMOTE
            else:
                status = SSTARTED_SELF_HEAL
                (self.index_healers if index else self.full_healers)[i].spawn()
                if not index:
                    op_ret = 0
            out.append({"child": i, "brick": self.brick_of(i), "status": status})
        return {"op_ret": op_ret, "children": out}

    def _op_statistics(self) -> dict:
        out = []
        for i in range(self.afr.child_count):
            brick = self.brick_of(i)
            events = []
            if self.index_healers[i].local:
                events += [e.as_data(brick) for e in self.history[i]]
            for healer in (self.index_healers[i], self.full_healers[i]):
                if healer.event.start_time:  # a sweep in progress
                    events.append(healer.event.as_data(brick))
            if self.index_healers[i].local or events:
                out.append({"child": i, "brick": brick, "events": events})
        return {"op_ret": 0, "children": out}

    async def _op_heal_count(self) -> dict:
        out = []
        op_ret = -1
        token = fops.caller.set(Caller(pid=ClientPid.SELF_HEALD, lk_owner=os.urandom(8)))
        try:
            for i in range(self.afr.child_count):
                brick = self.brick_of(i)
                if not self.afr.child_up[i]:
                    out.append({"child": i, "brick": brick, "status": SBRICK_NOT_CONNECTED})
                    continue
                if not await self.is_local(i):
                    continue
                try:
                    reply = await self.afr.children[i].getxattr(
                        Loc(gfid=ROOT_GFID, path="/"), INDEX_COUNT_KEY, None)
                    count = int(reply.dict[INDEX_COUNT_KEY])
                except (FopError, KeyError, TypeError, ValueError) as e:
                    out.append({"child": i, "brick": brick, "status": f"{e}"})
                    continue
                out.append({"child": i, "brick": brick, "status": "", "count": count})
                op_ret = 0
        finally:
            fops.caller.reset(token)
        return {"op_ret": op_ret, "children": out}

    def dump_state(self) -> dict:
        return {"enabled": self.enabled, "timeout": self.timeout,
                "max_threads": self.afr.opts.shd_max_threads,
                "wait_qlength": self.afr.opts.shd_wait_qlength,
                "healing": self.guard.running, "passed_over": self.guard.passed_over,
                "index_healers": [{"running": h.running, "local": h.local, "sweeps": h.sweeps}
                                  for h in self.index_healers],
                "full_healers": [{"running": h.running, "local": h.local, "sweeps": h.sweeps}
                                 for h in self.full_healers]}


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).rstrip(b"\0").decode(errors="replace")
    return str(value)


__all__ = ["SelfHealDaemon", "CrawlEvent", "OPS", "SBRICK_NOT_CONNECTED",
           "SLESS_THAN2_BRICKS_IN_REP", "SBRICK_IS_REMOTE", "SSTARTED_SELF_HEAL"]
