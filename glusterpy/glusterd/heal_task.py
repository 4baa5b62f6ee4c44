"""Self-heal as a task: what the console's Tasks page shows for heals.

GlusterFS has no heal task to query - `volume heal NAME` only wakes the
self-heal daemons, and `heal NAME info` counts what is still pending on
each brick.  A person watching a heal wants what rebalance shows: how far
it is, how fast it goes, when it will end.  So glusterpyd makes a task of
it, from the counts it already has: each time someone asks
(``GET /api/v1/volumes/{name}/heal/task``; at most one `heal_info` per
SAMPLE_INTERVAL, shared by every caller) it takes heal info's per-brick
counts and compares them with the previous sample.

* A task begins when a sample finds entries pending and none is running
  ("self-heal daemon": the counts are as first seen, the heal may have
  begun before), or when `volume heal NAME [full]` succeeds through the API
  (the CLI and the console both call it: the task is then "volume heal").
* Per brick, what the count went down by since the previous sample is
  healed; what it went up by is new work, so `healed + pending` is all
  that was seen, and `progress` is their ratio.
* The rate is what was healed over the samples of the last RATE_WINDOW
  seconds; `time-left` is pending / rate.  With fewer than two samples,
  or nothing healed in the window, the rate is not known and `time-left`
  is null - the console says so rather than guess.
* It is completed when a sample reaches every brick and finds nothing
  pending, and stays listed KEEP_DONE seconds.  A brick that does not
  answer keeps its last count ("not connected").  With the self-heal
  daemon off (`volume heal NAME disable`) the task is "waiting": nothing
  heals until it is on again.

The task lives in the memory of the daemon that is asked: another node's
console builds its own from the same counts (a heal requested there is
noted there).
"""

from __future__ import annotations

import time
import uuid
from collections import deque

import trio

from . import volgen
from .model import Volume

#: a sample answers every caller for this long (heal info connects to every brick)
SAMPLE_INTERVAL = 2.0
#: the heal rate is measured over the samples of this many seconds
RATE_WINDOW = 60.0
#: a completed heal stays on the Tasks page this long
KEEP_DONE = 600.0
IN_PROGRESS, WAITING, COMPLETED = "in progress", "waiting", "completed"
NOT_CONNECTED_ROW = "not connected"

#: the schema of GET .../heal/task, for the OpenAPI document
TASK_SCHEMA = {
    "type": "object", "required": ["volume", "kind", "task", "nodes", "aggregate"],
    "properties": {
        "volume": {"type": "string"},
        "kind": {"type": "string", "enum": ["heal"]},
        "task": {"type": ["object", "null"], "description":
                 "null when nothing is pending and no heal ran lately",
                 "properties": {"id": {"type": "string"}, "started": {"type": "number"},
                                "started-by": {"type": "string"},
                                "requests": {"type": "array"}}},
        "nodes": {"type": "array", "items": {"type": "object", "properties": {
            "brick": {"type": "string"}, "host": {"type": "string"},
            "node": {"type": "string"}, "status": {"type": "string"},
            "pending": {"type": ["integer", "null"]}, "healed": {"type": "integer"},
            "progress": {"type": ["number", "null"]}, "rate": {"type": ["number", "null"]},
            "time-left": {"type": ["number", "null"]}}}},
        "aggregate": {"type": "object", "properties": {
            "status": {"type": "string"}, "pending": {"type": "integer"},
            "healed": {"type": "integer"}, "progress": {"type": ["number", "null"]},
            "rate": {"type": ["number", "null"], "description": "entries healed per second"},
            "time-left": {"type": ["number", "null"]}, "run-time": {"type": "number"}}},
        "note": {"type": "string"}}}


class HealTask:
    """One heal of one volume, as the samples saw it."""

    def __init__(self, started_by: str, now: float):
        self.id = str(uuid.uuid4())
        self.started_by = started_by
        self.started_wall = time.time()
        self.started = now
        self.finished: float | None = None
        self.requests: list[dict] = []
        #: brick -> last known pending count (None: never reached)
        self.pending: dict[str, int | None] = {}
        self.healed: dict[str, int] = {}
        self.connected: dict[str, bool] = {}
        #: (time, {brick: healed}) of recent samples
        self.samples: deque[tuple[float, dict[str, int]]] = deque()

    def observe(self, counts: dict[str, int | None], now: float) -> None:
        """Take one sample: brick -> the count heal info gave (None: the
        brick did not answer)."""
        for brick, count in counts.items():
            self.connected[brick] = count is not None
            if count is None:
                self.pending.setdefault(brick, None)
                continue
            before = self.pending.get(brick)
            self.healed.setdefault(brick, 0)
            if before is not None and count < before:
                self.healed[brick] += before - count
            self.pending[brick] = count
        self.samples.append((now, dict(self.healed)))
        while len(self.samples) > 2 and self.samples[1][0] <= now - RATE_WINDOW:
            self.samples.popleft()
        if self.finished is None and counts and all(c == 0 for c in counts.values()):
            self.finished = now

    @property
    def done(self) -> bool:
        return self.finished is not None

    def rate(self, brick: str | None = None) -> float | None:
        """Entries healed per second over the window (one brick's, or all);
        None while it is not known."""
        if len(self.samples) < 2:
            return None
        (t0, h0), (t1, h1) = self.samples[0], self.samples[-1]
        if t1 - t0 <= 0:
            return None
        bricks = [brick] if brick is not None else list(h1)
        healed = sum(h1.get(b, 0) - h0.get(b, 0) for b in bricks)
        return healed / (t1 - t0) if healed > 0 else None

    def document(self, vol: Volume, shd_on: bool, now: float) -> dict:
        rows = []
        for b in vol.bricks:
            name = volgen.brick_id(b)
            pending, healed = self.pending.get(name), self.healed.get(name, 0)
            rate = self.rate(name)
            seen = healed + (pending or 0)
            rows.append({
                "brick": name, "host": b.host, "node": b.node,
                "status": NOT_CONNECTED_ROW if not self.connected.get(name, True) else
                COMPLETED if pending == 0 else WAITING if not shd_on else IN_PROGRESS,
                "pending": pending, "healed": healed,
                "progress": healed / seen if seen else (1.0 if pending == 0 else None),
                "rate": rate,
                "time-left": (pending / rate if rate else None) if pending else
                (0.0 if pending == 0 else None)})
        pending = sum(self.pending.get(r["brick"]) or 0 for r in rows)
        healed = sum(r["healed"] for r in rows)
        rate = self.rate()
        status = COMPLETED if self.done else WAITING if not shd_on else IN_PROGRESS
        doc = {"task": {"id": self.id, "started": self.started_wall,
                        "started-by": self.started_by, "requests": list(self.requests)},
               "nodes": rows,
               "aggregate": {"status": status, "pending": pending, "healed": healed,
                             "progress": 1.0 if self.done else
                             (healed / (healed + pending) if healed + pending else None),
                             "rate": rate,
                             "time-left": 0.0 if self.done else
                             (pending / rate if rate else None),
                             "run-time": (self.finished or now) - self.started}}
        if status == WAITING:
            doc["note"] = (f"the self-heal daemon of {vol.name} is disabled: nothing "
                           f"heals until `volume heal {vol.name} enable`")
        return doc


class HealTracker:
    """The heal tasks of this daemon's volumes (see the module docstring)."""

    def __init__(self, gd):
        self.gd = gd
        self.tasks: dict[str, HealTask] = {}
        self._sampled: dict[str, float] = {}
        self._locks: dict[str, trio.Lock] = {}

    def requested(self, name: str, op: str, who: dict) -> None:
        """`volume heal NAME [full]` succeeded: note it on the running task,
        or begin one."""
        now = trio.current_time()
        task = self.tasks.get(name)
        if task is None or task.done:
            task = self.tasks[name] = HealTask(f"volume heal {name}"
                                               f"{' full' if op == 'full' else ''}", now)
            self._sampled.pop(name, None)   # the next caller samples at once
        task.requests.append({"op": op, "time": time.time(),
                              "who": who.get("token") or who.get("kind") or "?"})

    def forget(self, name: str) -> None:
        self.tasks.pop(name, None)
        self._sampled.pop(name, None)

    async def status(self, name: str) -> dict:
        """The task document of volume `name`; HealRefused (heal info's)
        when the volume cannot be asked."""
        from .heal import HealRefused, heal_info
        lock = self._locks.setdefault(name, trio.Lock())
        async with lock:
            now = trio.current_time()
            if now - self._sampled.get(name, -SAMPLE_INTERVAL) >= SAMPLE_INTERVAL:
                try:
                    info = await heal_info(self.gd, name)
                except HealRefused:
                    self.forget(name)
                    raise
                now = trio.current_time()
                self._sampled[name] = now
                counts = {b["brick"]: b["count"] for b in info["bricks"]}
                task = self.tasks.get(name)
                if task is not None and task.done and any(counts.values()):
                    task = None    # a new heal after the last one completed
                if task is None and any(counts.values()):
                    task = self.tasks[name] = HealTask("self-heal daemon", now)
                if task is not None:
                    task.observe(counts, now)
            vol = self.gd.volumes[name]
            task = self.tasks.get(name)
            if task is not None and task.done and now - task.finished > KEEP_DONE:
                self.forget(name)
                task = None
            doc = {"volume": name, "kind": "heal"}
            if task is None:
                doc.update(task=None, nodes=[], aggregate={
                    "status": "nothing to heal", "pending": 0, "healed": 0, "progress": None,
                    "rate": None, "time-left": None, "run-time": 0.0})
            else:
                doc.update(task.document(vol, volgen.shd_enabled(vol), now))
            return doc


__all__ = ["HealTracker", "HealTask", "TASK_SCHEMA", "SAMPLE_INTERVAL", "RATE_WINDOW",
           "KEEP_DONE"]
