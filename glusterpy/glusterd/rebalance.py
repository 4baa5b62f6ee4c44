"""Rebalance and remove-brick migration in glusterpyd: tasks, processes, status.

What glusterd does in glusterd-rebalance.c and glusterd-brick-ops.c, on
glusterpyd's transactions (glusterd/daemon.py):

* `volume rebalance NAME fix-layout start | start [force] | stop` is a
  volume operation ("rebalance"): `prepare_rebalance` checks it with
  glusterd's rules and messages (glusterd_rebalance_cmd_validate: a
  distribute volume of more than one set, started; no remove-brick task
  left uncommitted) and writes a *task* into the volume document:

      tasks.rebalance = {"id", "cmd": fix-layout|start|start-force,
                         "commit-hash", "nodes": [uuids], "started"}

  The commit hash is glusterd's (gd_set_commit_hash: seconds << 3 with a
  low bit set); `nodes` are the nodes holding a brick of the volume
  (gd_should_i_start_rebalance).  `stop` marks the task stopped.
* `remove-brick start` (glusterd/ops.py) writes tasks.remove-brick with
  the same fields, command start-force and the nodes of the removed
  bricks; the client volfiles then name those bricks in distribute's
  `decommissioned-bricks`.  `commit` is refused on a node whose migration
  is not completed, or completed with failures or skipped files - the
  check each node makes at stage (glusterd_op_stage_remove_brick's
  "use 'force' option as migration is in progress" and its siblings).
* On every node, after each commit and when the daemon starts,
  `RebalanceService.reconcile` makes the node's rebalance process match
  its document: started for a task naming this node that has not ended
  here (a `RebalanceProcess`, a sibling of BrickProcess - same pid file,
  supervision and adoption, another command: glusterpy/rebalance/
  process.py), told to stop (SIGTERM) for a task that was stopped or
  removed, or when the volume stops.  A process that exits without a final
  status (killed, crashed) is started again with BrickProcess's back-off
  and resumes; one that wrote a final status is not (glusterd restarts a
  rebalance only while its status is "started").
* Status: each process writes WORKDIR/run/VOL/rebalance.json; a node's
  row is that document (`local_status`), the cluster's the rows of every
  node the task names, fetched from the peers (GET /api/v1/local/
  rebalance/VOL) - gluster's per-node table (gf_cli_print_rebalance_status)
  and an aggregate (totals, the largest elapsed time and estimate, the
  overall status and share done) for the CLI's progress bar.

While a rebalance runs on a node, that node refuses to stage add-brick
("Volume name %s rebalance is in progress. Please retry after
completion"), remove-brick start, a new rebalance ("Rebalance on %s is
already started") and volume stop without force ("rebalance session is in
progress for the volume '%s'"), as glusterd does.

Departures: the status travels through a file, not over the process's
unix socket; a rebalance task stays in the document after it ends (with
its node's status files), so `rebalance status` answers until the next
rebalance or remove-brick replaces it.
"""

from __future__ import annotations

import copy
import json
import logging
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import trio

from .bricks import BrickProcess, _alive, _cmdline
from .model import Volume

log = logging.getLogger("glusterpy.glusterd.rebalance")

#: the words of `volume rebalance NAME ...` -> the process's command
REBALANCE_CMDS = {"fix-layout": "fix-layout", "start": "start", "start-force": "start-force"}
STATUS_FILE = "rebalance.json"
PID_FILE = "rebalance.pid"
FINAL = frozenset({"stopped", "completed", "failed", "fix-layout stopped",
                   "fix-layout completed", "fix-layout failed"})
IN_PROGRESS = frozenset({"in progress", "fix-layout in progress"})
#: a stopping rebalance process finishes the file it is moving first, which
#: may be large: SIGKILL only after this many seconds
STOP_TIMEOUT = 300.0


def new_commit_hash(now: float | None = None) -> int:
    """gd_set_commit_hash: seconds << 3, one of the three low bits set
    from the milliseconds, so two rebalances never share one."""
    now = time.time() if now is None else now
    sec, usec = int(now), int((now % 1) * 1e6)
    return ((sec << 3) | (1 << ((usec >> 10) % 3))) & 0xFFFFFFFF


def volume_nodes(vol: Volume, indices=None) -> list[str]:
    """The nodes holding the volume's bricks (those at `indices`)."""
    bricks = vol.bricks if indices is None else [vol.bricks[i] for i in indices]
    return sorted({b.node for b in bricks})


def active_task(vol: Volume | None) -> tuple[str, dict] | tuple[None, None]:
    """The volume's migration task: ("remove-brick", task) or ("rebalance", task)."""
    tasks = vol.tasks if vol is not None else {}
    for kind in ("remove-brick", "rebalance"):
        if tasks.get(kind):
            return kind, tasks[kind]
    return None, None


# --------------------------------------------------------------------------
# the operation's plan (ops.PREPARE["rebalance"])


def prepare_rebalance(cluster, args: dict) -> Volume:
    """`volume rebalance NAME fix-layout start | start [force] | stop`: the
    volume document with its rebalance task; ValueError with glusterd's
    message when refused."""
    vol = copy.deepcopy(cluster.volume(args.get("name")))
    action = args.get("action")
    if action not in ("start", "fix-layout", "stop"):
        raise ValueError("rebalance needs one of fix-layout start, start [force], stop or "
                         "status")
    name = vol.name
    if len(vol.bricks) <= vol.replica * vol.stripe:
        raise ValueError(f"Volume {name} is not a distribute volume or contains only 1 "
                         "brick.\nNot performing rebalance")
    if vol.status != "Started":
        raise ValueError(f"Volume {name} needs to be started to perform rebalance")
    tasks = vol.tasks
    if action == "stop":
        task = tasks.get("rebalance")
        if task is None:
            raise ValueError(f"Rebalance not started for volume {name}.")
        task["stopped"] = True
        return vol
    if tasks.get("remove-brick"):
        raise ValueError(f"A remove-brick task on volume {name} is not yet committed. "
                         "Either commit or stop the remove-brick task.")
    cmd = "fix-layout" if action == "fix-layout" else \
        ("start-force" if args.get("force") else "start")
    tasks["rebalance"] = {"id": str(uuid.uuid4()), "cmd": cmd,
                          "commit-hash": new_commit_hash(), "nodes": volume_nodes(vol),
                          "started": time.time()}
    return vol


def remove_brick_task(vol: Volume, ids: list[int], subvolumes: list[str],
                      brick_ids: list[str]) -> dict:
    """remove-brick start's task: the removed bricks' nodes migrate their
    data off them (GF_DEFRAG_CMD_START_FORCE over decommissioned bricks)."""
    return {"id": str(uuid.uuid4()), "indices": ids, "bricks": brick_ids,
            "subvolumes": subvolumes, "cmd": "start-force", "commit-hash": new_commit_hash(),
            "nodes": volume_nodes(vol, ids), "started": time.time()}


# --------------------------------------------------------------------------
# the process


@dataclass
class RebalanceProcess(BrickProcess):
    """One volume's rebalance process on this node (glusterfs --process-name
    rebalance); supervised, adopted and stopped as BrickProcess is."""

    stop_timeout: ClassVar[float] = STOP_TIMEOUT
    task_id: str = ""
    cmd: str = "start"
    node_uuid: str = ""
    commit_hash: int = 0
    volfile_id: str = ""
    status_file: Path = field(default_factory=Path)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "glusterpy.rebalance",
                "--volfile-server", self.portmap, "--volfile-id", self.volfile_id,
                "--cmd", self.cmd, "--task-id", self.task_id,
                "--node-uuid", self.node_uuid, "--commit-hash", str(self.commit_hash),
                "--status-file", str(self.status_file), "--pid-file", str(self.pidfile),
                "--log-file", str(self.logfile)]

    def adopt(self) -> bool:
        """Take over the process of the same task a previous daemon left."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return False
        line = _cmdline(pid)
        if not _alive(pid) or self.task_id not in line or str(self.status_file) not in line:
            return False
        self.pid = pid
        self.started_at = time.monotonic()
        log.info("rebalance of %s: adopted the running process %d", self.volume, pid)
        return True

    def final_status(self) -> dict | None:
        doc = read_status(self.status_file)
        if doc and doc.get("id") == self.task_id and doc.get("status") in FINAL:
            return doc
        return None

    async def _wait_exit(self) -> str:
        how = await super()._wait_exit()
        if self.final_status() is not None:
            # its run ended (gf_defrag_done): nothing to restart
            self.wanted = False
        return how


def read_status(path: Path) -> dict | None:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


# --------------------------------------------------------------------------
# the service: this node's rebalance processes


class RebalanceService:
    """This node's rebalance processes, one per volume with a task."""

    def __init__(self, gd):
        self.gd = gd
        self.procs: dict[str, RebalanceProcess] = {}
        self._scopes: dict[str, trio.CancelScope] = {}
        #: processes told to stop that are finishing their file
        self._stopping: dict[str, RebalanceProcess] = {}

    def status_file(self, name: str) -> Path:
        return self.gd.store.run_dir / name / STATUS_FILE

    def _wanted(self, vol: Volume | None) -> tuple[str | None, dict | None]:
        """The task this node should be running for `vol`, if any."""
        if vol is None or vol.status != "Started":
            return None, None
        kind, task = active_task(vol)
        if task is None or task.get("stopped") or self.gd.uuid not in task.get("nodes", ()):
            return None, None
        doc = read_status(self.status_file(vol.name))
        if doc and doc.get("id") == task["id"] and doc.get("status") in FINAL:
            return None, None
        return kind, task

    def running(self, name: str) -> bool:
        """Whether this node's rebalance of `name` is at work (or still
        finishing its file after a stop)."""
        stopping = self._stopping.get(name)
        if stopping is not None and stopping.final_status() is None:
            return True
        proc = self.procs.get(name)
        return proc is not None and proc.wanted and proc.final_status() is None

    async def stop_unwanted(self, name: str) -> None:
        """Stop the process of `name` if its task ended, was stopped or
        replaced, or the volume is stopping: then - its bricks are about to
        go - wait for it; otherwise return at once, as `rebalance stop` does
        in gluster, while it finishes the file it is moving."""
        proc = self.procs.get(name)
        if proc is None:
            return
        vol = self.gd.volumes.get(name)
        _, task = self._wanted(vol)
        if task is None or proc.task_id != task["id"]:
            await self._stop(name, wait=vol is None or vol.status != "Started")

    async def reconcile(self, name: str, *, adopt: bool = False) -> None:
        """Start, keep or stop this node's rebalance process of `name`."""
        vol = self.gd.volumes.get(name)
        kind, task = self._wanted(vol)
        proc = self.procs.get(name)
        if proc is not None and (task is None or proc.task_id != task["id"]):
            await self._stop(name, wait=True)
            proc = None
        if task is None:
            return
        if proc is None:
            store = self.gd.store
            proc = RebalanceProcess(
                volume=name, path=f"rebalance/{name}",
                volfile=store.volume_dir(name) / f"{name}.rebalance.vol", port=0,
                pidfile=store.run_dir / name / PID_FILE,
                logfile=store.log_dir / f"{name}-rebalance.log",
                portmap=self.gd.portmap_address, task_id=task["id"], cmd=task["cmd"],
                node_uuid=self.gd.uuid, commit_hash=int(task["commit-hash"]),
                volfile_id=f"{name}.rebalance", status_file=self.status_file(name))
            self._clear_status(name, task["id"])
            if adopt:
                proc.adopt()
            self.procs[name] = proc
            scope = trio.CancelScope()
            self._scopes[name] = scope
            self.gd._nursery.start_soon(self._supervise, proc, scope)
            log.info("%s of %s: task %s (%s) runs here", kind, name, task["id"], task["cmd"])
        proc.want(True)

    def _clear_status(self, name: str, task_id: str) -> None:
        """A new task's process starts from no status, not an old task's."""
        path = self.status_file(name)
        doc = read_status(path)
        if doc is not None and doc.get("id") != task_id:
            try:
                path.unlink()
            except OSError:
                pass

    async def _supervise(self, proc: RebalanceProcess, scope: trio.CancelScope) -> None:
        with scope:
            await proc.supervise()

    async def _stop(self, name: str, wait: bool) -> None:
        proc = self.procs.pop(name, None)
        if proc is None:
            return
        scope = self._scopes.pop(name)
        proc.want(False)         # the supervisor sends SIGTERM
        if wait:
            with trio.move_on_after(STOP_TIMEOUT + 10):
                await proc.stopped()
            scope.cancel()
            return
        self._stopping[name] = proc

        async def finish():
            try:
                with trio.move_on_after(STOP_TIMEOUT + 10):
                    await proc.stopped()
            finally:
                scope.cancel()
                if self._stopping.get(name) is proc:
                    del self._stopping[name]
        self.gd._nursery.start_soon(finish)

    # -- status ---------------------------------------------------------------

    def local_status(self, name: str) -> dict:
        """This node's row for the volume's current task."""
        vol = self.gd.volumes.get(name)
        kind, task = active_task(vol)
        row = {"node": self.gd.uuid, "host": self.gd.names[0], "status": "not started",
               "files": 0, "size": 0, "lookups": 0, "failures": 0, "skipped": 0,
               "run-time": 0, "time-left": None, "progress": None}
        if task is None or self.gd.uuid not in task.get("nodes", ()):
            return row
        row["task"] = task["id"]
        doc = read_status(self.status_file(name))
        if doc is not None and doc.get("id") == task["id"]:
            row.update({k: v for k, v in doc.items() if k not in ("node", "id", "host")})
        proc = self.procs.get(name)
        alive = name in self._stopping or (proc is not None and proc.wanted)
        if row["status"] == "not started" and alive:
            row["status"] = "fix-layout in progress" if task["cmd"] == "fix-layout" \
                else "in progress"
        elif row["status"] in IN_PROGRESS and not alive:
            row["status"] = "fix-layout failed" if task["cmd"] == "fix-layout" else "failed"
            row["error"] = row.get("error") or \
                "the rebalance process ended without a final status"
        return row

    async def cluster_status(self, name: str) -> dict:
        """Every node's row of the volume's task, and the aggregate."""
        vol = self.gd.volumes[name]
        kind, task = active_task(vol)
        rows = [self.local_status(name)] if task and self.gd.uuid in task["nodes"] else []
        for peer in self.gd.peers.values():
            if not task or peer["uuid"] not in task["nodes"]:
                continue
            try:
                doc = await self.gd.call_peer(peer, "GET", f"/api/v1/local/rebalance/{name}",
                                              timeout=10)
                rows.append(doc)
            except Exception as e:      # OpFailed: the peer is down or refuses
                rows.append({"node": peer["uuid"], "host": peer["hostnames"][0],
                             "status": "unknown", "error": str(e), "files": 0, "size": 0,
                             "lookups": 0, "failures": 0, "skipped": 0, "run-time": 0,
                             "time-left": None, "progress": None})
        return {"volume": name, "kind": kind, "task": task, "nodes": rows,
                "aggregate": aggregate(rows, task)}

    # -- the stage checks (every node, for its own process) -------------------

    def check_stage(self, plan: dict) -> None:
        """ValueError when this node's rebalance refuses `plan`."""
        op, name, args = plan["op"], plan["name"], plan.get("args") or {}
        busy = self.running(name)
        if op == "rebalance" and args.get("action") in ("start", "fix-layout") and busy:
            raise ValueError(f"Rebalance on {name} is already started")
        if op == "add-brick" and busy:
            raise ValueError(f"Volume name {name} rebalance is in progress. Please retry "
                             "after completion")
        if op == "remove-brick" and args.get("action") == "start" and busy:
            raise ValueError("Rebalance is in progress. Please retry after completion")
        if op == "stop" and busy and not args.get("force"):
            raise ValueError(f"rebalance session is in progress for the volume '{name}'")
        if op == "remove-brick" and args.get("action") == "commit":
            self._check_commit(plan)

    def _check_commit(self, plan: dict) -> None:
        """remove-brick commit: only once this node's migration completed
        with nothing skipped or failed."""
        # the plan as it travels between nodes: its volumes are JSON documents
        old = plan.get("old") or {}
        task = (old.get("tasks") or {}).get("remove-brick")
        if not task or self.gd.uuid not in task.get("nodes", ()):
            return
        name = plan["name"]
        where = self.gd.names[0]
        doc = read_status(self.status_file(name))
        status = doc.get("status") if doc and doc.get("id") == task["id"] else None
        hint = ("check 'volume remove-brick ... status', or use 'force' to remove the "
                "bricks without it (files still on them are not moved)")
        if status is None or status in IN_PROGRESS:
            raise ValueError(f"use 'force' option as migration is in progress: data "
                             f"migration off the removed bricks has not completed on "
                             f"{where}; {hint}")
        if status != "completed":
            raise ValueError(f"use 'force' option as migration has {status}: data "
                             f"migration off the removed bricks did not complete on "
                             f"{where}; {hint}")
        if doc.get("failures") or doc.get("skipped"):
            raise ValueError(f"use 'force' option as migration of some files might have "
                             f"been skipped or has failed ({doc.get('failures', 0)} failed, "
                             f"{doc.get('skipped', 0)} skipped on {where}); {hint}")


def aggregate(rows: list[dict], task: dict | None) -> dict:
    """The cluster's totals: counters summed, the longest run time and
    estimate, the share done over all nodes, and one status."""
    out = {k: sum(int(r.get(k) or 0) for r in rows)
           for k in ("files", "size", "lookups", "failures", "skipped", "size-processed")}
    out["run-time"] = max((float(r.get("run-time") or 0) for r in rows), default=0.0)
    lefts = [r.get("time-left") for r in rows if r.get("time-left") is not None]
    out["time-left"] = max(lefts) if lefts else None
    statuses = [r.get("status") for r in rows]
    fix = bool(task) and task.get("cmd") == "fix-layout"
    prefix = "fix-layout " if fix else ""
    if not rows:
        status = "not started"
    elif any(s in IN_PROGRESS for s in statuses):
        status = prefix + "in progress"
    elif any(s in ("failed", "fix-layout failed", "unknown") for s in statuses):
        status = prefix + "failed"
    elif any(s in ("stopped", "fix-layout stopped") for s in statuses):
        status = prefix + "stopped"
    elif all(s in ("completed", "fix-layout completed") for s in statuses):
        status = prefix + "completed"
    else:
        status = statuses[0]
    out["status"] = status
    shares = [r.get("progress") for r in rows]
    if rows and all(s is not None for s in shares):
        totals = [r.get("total-dirs" if fix else "total-size") for r in rows]
        if not fix and all(totals) and sum(totals):
            done = sum(min(float(s), 1.0) * t for s, t in zip(shares, totals))
            out["progress"] = done / sum(totals)
        else:
            out["progress"] = sum(float(s) for s in shares) / len(shares)
    else:
        out["progress"] = None
    out["nodes"] = len(rows)
    return out


__all__ = ["RebalanceService", "RebalanceProcess", "prepare_rebalance", "remove_brick_task",
           "new_commit_hash", "active_task", "aggregate", "read_status"]
