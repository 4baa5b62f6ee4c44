"""The rebalance process of one volume on one node: `python -m glusterpy.rebalance`.

GlusterFS's glusterd runs, per volume and node,

    glusterfs -s localhost --volfile-id rebalance/VOL --process-name rebalance
        --xlator-option *dht.rebalance-cmd=N --xlator-option *dht.node-uuid=UUID
        --xlator-option *dht.commit-hash=H --pid-file ... -l ...

and the distribute translator of that graph runs the crawl when it comes
up.  glusterpyd runs (glusterpy/glusterd/rebalance.py)

    python -m glusterpy.rebalance --volfile-server 127.0.0.1:PORT
        --volfile-id VOL.rebalance --cmd start|start-force|fix-layout
        --task-id ID --node-uuid UUID --commit-hash H
        --status-file RUN/VOL/rebalance.json --pid-file RUN/VOL/rebalance.pid
        --log-file LOGS/VOL-rebalance.log

which mounts the volume's rebalance graph from glusterpyd (GETSPEC; a
`volume set` of cluster.rebal-throttle reaches it live through FETCHSPEC),
runs the crawl (glusterpy/rebalance/defrag.py) on its distribute
translator, and exits when the crawl ends, as GlusterFS's process does
(gf_defrag_done).  SIGTERM (or SIGINT) is `rebalance stop`: the file being
moved is finished, nothing more is queued, the status becomes stopped.

Progress goes to the status file, a JSON document replaced atomically
about once a second and at the end: the task id, the command, this node,
the pid, and Defrag.snapshot()'s counters.  glusterpyd reads it for
`rebalance status`; GlusterFS's glusterd asks the process over a unix
socket instead (GLUSTERD_BRICK_XLATOR_DEFRAG) - a file survives the daemon
and the process, so a restarted daemon still knows how a run ended.

A process that finds a status file of the same task ending in a final
status has nothing to do; one that finds it "in progress" (its
predecessor crashed or was killed) runs the crawl again - files already
moved are in place and are not moved twice - and carries the moved-files
and moved-bytes counters over.  Exit status: 0 when the run ended
(completed, stopped, or failed with a reason in the status file), 1 when
the process could not run at all (a bad argument, its pid file held).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import time
from pathlib import Path

import trio

from ..cli.daemon import add_log_arguments, run_service, setup_logging
from ..glusterd.store import write_atomic
from .defrag import CMD_NAMES, STATUS_TEXT, TERMINAL, Cmd, Defrag, Status

log = logging.getLogger("glusterpy.rebalance")

#: seconds between status file updates
STATUS_INTERVAL = 1.0
MOUNT_TIMEOUT = 30.0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m glusterpy.rebalance",
                                description="Rebalance one volume's files on this node "
                                            "(GlusterFS's rebalance process).")
    p.add_argument("--volfile-server", required=True, metavar="HOST:PORT",
                   help="glusterpyd to fetch the rebalance volfile from")
    p.add_argument("--volfile-id", required=True, metavar="KEY",
                   help="the GETSPEC key of the volume's rebalance volfile (VOL.rebalance)")
    p.add_argument("--cmd", required=True, choices=sorted(CMD_NAMES),
                   help="fix-layout, start, or start-force (also remove-brick's migration)")
    p.add_argument("--task-id", required=True, help="the rebalance or remove-brick task id")
    p.add_argument("--node-uuid", help="this node's uuid: only its bricks' files are moved")
    p.add_argument("--commit-hash", required=True, type=int,
                   help="the volume's new commit hash (glusterd's gd_set_commit_hash)")
    p.add_argument("--status-file", required=True, metavar="FILE")
    p.add_argument("--pid-file", metavar="FILE")
    add_log_arguments(p)
    return p


def read_status(path: str) -> dict | None:
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def is_final(doc: dict | None) -> bool:
    return bool(doc) and doc.get("status") in {STATUS_TEXT[s] for s in TERMINAL}


class StatusFile:
    """The status document, replaced atomically."""

    def __init__(self, path: str, args):
        self.path = Path(path)
        self.base = {"id": args.task_id, "cmd": args.cmd, "node": args.node_uuid,
                     "pid": os.getpid(), "volfile-id": args.volfile_id}

    def write(self, doc: dict) -> None:
        doc = {**self.base, **doc, "updated": time.time()}
        try:
            write_atomic(self.path, json.dumps(doc, sort_keys=True) + "\n", 0o644)
        except OSError as e:
            log.warning("status file %s not written: %s", self.path, e)


async def run(args, carried: dict | None) -> None:
    from ..gfapi.aio import AsyncVolume
    from ..gfapi.exceptions import LibgfapiException

    cmd = CMD_NAMES[args.cmd]
    status = StatusFile(args.status_file, args)
    starting = Status.LAYOUT_FIX_STARTED if cmd == Cmd.START_LAYOUT_FIX else Status.STARTED
    status.write({"status": STATUS_TEXT[starting], "status-code": int(starting),
                  "files": (carried or {}).get("files", 0),
                  "size": (carried or {}).get("size", 0), "run-time": 0})
    host, _, port = args.volfile_server.rpartition(":")
    defrag: Defrag | None = None
    stopped_early = False

    async def on_signals(nursery, task_status=trio.TASK_STATUS_IGNORED):
        nonlocal stopped_early
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            task_status.started()
            async for signum in signals:
                log.info("rebalance: %s received: stopping", signal.Signals(signum).name)
                if defrag is None:      # not crawling yet: nothing to finish
                    stopped_early = True
                    nursery.cancel_scope.cancel()
                else:
                    defrag.stop()

    async def report():
        while True:
            await trio.sleep(STATUS_INTERVAL)
            status.write(defrag.snapshot())

    def failed(why: str) -> None:
        code = Status.LAYOUT_FIX_FAILED if cmd == Cmd.START_LAYOUT_FIX else Status.FAILED
        status.write({"status": STATUS_TEXT[code], "status-code": int(code), "error": why})
        log.error("rebalance: %s", why)

    async with trio.open_nursery() as nursery:
        await nursery.start(on_signals, nursery)
        # the bricks may still be starting (glusterpyd restarted with them)
        deadline = trio.current_time() + MOUNT_TIMEOUT
        while True:
            vol = AsyncVolume.from_server([host], args.volfile_id, int(port),
                                          mount_timeout=MOUNT_TIMEOUT)
            try:
                await vol.mount()
                break
            except LibgfapiException as e:
                if trio.current_time() > deadline:
                    failed(str(e))
                    nursery.cancel_scope.cancel()
                    return
                await trio.sleep(1)
        try:
            dht = distribute_of(vol.graph)
            while not all(dht.dump_state()["subvolumes"].values()) and \
                    trio.current_time() < deadline:
                await trio.sleep(0.2)
            defrag = Defrag(dht, cmd, commit_hash=args.commit_hash,
                            node_uuid=args.node_uuid, carried=carried)
            nursery.start_soon(report)
            await defrag.run()
            status.write(defrag.snapshot())
        finally:
            with trio.CancelScope(shield=True):
                await vol.umount()
        nursery.cancel_scope.cancel()
    if stopped_early:
        stopped = Status.LAYOUT_FIX_STOPPED if cmd == Cmd.START_LAYOUT_FIX else Status.STOPPED
        status.write({"status": STATUS_TEXT[stopped], "status-code": int(stopped)})


def distribute_of(graph):
    """The graph's cluster/distribute translator (GlusterFS's rebalance
    runs in the dht translator of its graph)."""
    for xl in graph.by_name.values():
        if xl.type_name in ("cluster/distribute", "cluster/dht"):
            return xl
    raise OSError("the rebalance volfile has no cluster/distribute translator")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.log_file, args.log_level)
    previous = read_status(args.status_file)
    carried = None
    if previous and previous.get("id") == args.task_id:
        if is_final(previous):
            log.info("rebalance task %s already ended (%s)", args.task_id,
                     previous.get("status"))
            return 0
        carried = previous
        log.info("rebalance task %s: resuming after an interrupted run (%d files were "
                 "moved)", args.task_id, int(previous.get("files") or 0))
    log.info("rebalance of %s (%s), task %s, node %s, commit hash %d", args.volfile_id,
             args.cmd, args.task_id, args.node_uuid, args.commit_hash)
    return run_service(run, args, carried, pidfile=args.pid_file, program="rebalance",
                       interrupt_is_success=True)


if __name__ == "__main__":
    sys.exit(main())
