"""Brick processes: start, supervise, reload, stop - glusterd's brick ops.

glusterpyd runs each of its node's bricks of a started volume as a
`glusterpy brick` process (glusterfsd's role), as glusterd runs glusterfsd:

    python -m glusterpy.cli.main brick --volfile VOLS/NAME/NAME.HOST.PATH.vol
        --port PORT --pidfile RUN/NAME/HOST-PATH.pid
        --log-file LOGS/bricks/PATH.log --volfile-server 127.0.0.1:DAEMONPORT
        --brick-name PATH

The process signs in to the daemon's portmap under the brick path (the name
clients use as remote-subvolume) and keeps signing in after the daemon
restarts.  Each brick runs in a session of its own, so - as with glusterd
and glusterfsd - a daemon that dies (even by kill -9) leaves its bricks
serving; the restarted daemon finds them by their pid files (a live pid
whose command line names the same volfile) and adopts them instead of
starting second copies.

Supervision: a brick process that exits while its volume is started is
started again after a back-off that doubles from 1 s to 30 s and resets
after a minute of healthy running (glusterd itself restarts bricks only on
`volume start force`; we keep VMs' storage up).  `reload()` sends SIGHUP
(the brick reapplies its volfile's options); `stop()` sends SIGTERM (the
brick signs out and releases its clients' fds and locks), and SIGKILL after
15 s.
"""

from __future__ import annotations

import abc
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import trio

log = logging.getLogger("glusterpy.glusterd.bricks")

BACKOFF_MIN, BACKOFF_MAX = 1.0, 30.0
HEALTHY_AFTER = 60.0
STOP_TIMEOUT = 15.0


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return []


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is not alive
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except (OSError, IndexError):
        return False


@dataclass
class BrickProcess:
    """One brick of this node and its process."""

    volume: str
    path: str
    volfile: Path
    port: int
    pidfile: Path
    logfile: Path
    portmap: str  # HOST:PORT of the daemon's portmap
    #: seconds from SIGTERM to SIGKILL (a rebalance process finishes its file first)
    stop_timeout: ClassVar[float] = STOP_TIMEOUT
    #: wanted running (the volume is started)
    wanted: bool = False
    pid: int | None = None
    started_at: float = 0.0
    restarts: int = 0
    last_exit: str = ""
    _restarting: bool = False
    _proc: trio.Process | None = field(default=None, repr=False)
    _changed: trio.Event = field(default_factory=trio.Event, repr=False)
    _stopped: trio.Event = field(default_factory=trio.Event, repr=False)

    def command(self) -> list[str]:
        return [sys.executable, "-m", "glusterpy.cli.main", "brick",
                "--volfile", str(self.volfile), "--port", str(self.port),
                "--pidfile", str(self.pidfile), "--log-file", str(self.logfile),
                "--volfile-server", self.portmap, "--brick-name", self.path]

    @property
    def running(self) -> bool:
        return self.pid is not None and _alive(self.pid)

    def adopt(self) -> bool:
        """Take over a brick process a previous daemon left running."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return False
        if not _alive(pid) or str(self.volfile) not in _cmdline(pid):
            return False
        self.pid = pid
        self.started_at = time.monotonic()
        log.info("brick %s: adopted the running process %d", self.path, pid)
        return True

    async def _start(self) -> None:
        self.pidfile.parent.mkdir(parents=True, exist_ok=True)
        self.logfile.parent.mkdir(parents=True, exist_ok=True)
        with open(self.logfile.with_suffix(".out"), "ab") as out:
            self._proc = await trio.lowlevel.open_process(
                self.command(), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        self.pid = self._proc.pid
        self.started_at = time.monotonic()
        log.info("brick %s: started process %d on port %d", self.path, self.pid, self.port)

    async def _wait_exit(self) -> str:
        if self._proc is not None:
            code = await self._proc.wait()
            self._proc = None
            return f"exit status {code}" if code >= 0 else f"signal {-code}"
        while self.pid is not None and _alive(self.pid):  # adopted: not our child
            await trio.sleep(0.5)
        return "exited"

    async def supervise(self) -> None:
        """Keep the process running while `wanted`; stop it when not."""
        backoff = BACKOFF_MIN
        while True:
            if not self.wanted:
                if self.running:
                    await self._terminate()
                self.pid = None
                self._stopped.set()
                await self._wait_changed()
                continue
            self._stopped = trio.Event()
            if not self.running:
                try:
                    await self._start()
                except OSError as e:
                    self.last_exit = f"could not start: {e}"
                    log.error("brick %s: %s", self.path, self.last_exit)
            async with trio.open_nursery() as nursery:
                async def watch_exit():
                    self.last_exit = await self._wait_exit()
                    nursery.cancel_scope.cancel()

                async def watch_wanted():
                    while self.wanted:
                        await self._wait_changed()
                    nursery.cancel_scope.cancel()
                nursery.start_soon(watch_exit)
                nursery.start_soon(watch_wanted)
            if not self.wanted:
                continue
            ran = time.monotonic() - self.started_at
            self.pid = None
            if self._restarting:  # restart(): start again at once
                self._restarting = False
                continue
            # the process ended on its own
            if ran > HEALTHY_AFTER:
                backoff = BACKOFF_MIN
            self.restarts += 1
            log.warning("brick %s: process ended (%s); restarting in %.0fs", self.path,
                        self.last_exit, backoff)
            with trio.move_on_after(backoff):
                await self._wait_changed()
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _wait_changed(self) -> None:
        await self._changed.wait()
        self._changed = trio.Event()

    def _poke(self) -> None:
        self._changed.set()

    def want(self, running: bool) -> None:
        if self.wanted != running:
            self.wanted = running
            self._poke()

    async def stopped(self) -> None:
        await self._stopped.wait()

    def reload(self) -> None:
        if self.running:
            os.kill(self.pid, signal.SIGHUP)
            log.info("brick %s: told process %d to reload its volfile", self.path, self.pid)

    async def _terminate(self) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        with trio.move_on_after(self.stop_timeout):
            await self._wait_exit()
            log.info("brick %s: process %d stopped", self.path, pid)
            return
        log.warning("brick %s: process %d did not stop; killing it", self.path, pid)
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        with trio.move_on_after(5):
            await self._wait_exit()

    async def restart(self) -> None:
        """Stop the process; the supervisor starts it again at once."""
        if self.running:
            self._restarting = True
            await self._terminate()


class Supervisor(abc.ABC):
    """Processes other than bricks that glusterpyd keeps running, one per
    key (glustershd, the NBD servers, the geo-replication workers): each
    service says which it wants in `_reconcile`, run one at a time by
    `reconcile`; `keep` starts supervising a key's process (adopting one a
    previous glusterpyd left running), `retire` stops it and forgets it."""

    #: how long `retire` waits for a process to stop before leaving it to
    #: its supervisor's SIGKILL
    RETIRE_WAIT = 30.0

    def __init__(self, gd):
        self.gd = gd
        self.processes: dict = {}
        self._scopes: dict[object, trio.CancelScope] = {}
        self._lock = trio.Lock()

    async def reconcile(self) -> None:
        """Start, reload or stop processes to match the volumes' state."""
        if self.gd._nursery is None:
            return
        async with self._lock:
            await self._reconcile()

    @abc.abstractmethod
    async def _reconcile(self) -> None:
        """Make the processes match what the volumes want (one at a time:
        `reconcile` holds the lock)."""

    def keep(self, key, make, *args, **kwargs):
        """The process of `key`; if there is none yet, `make(*args,
        **kwargs)`'s, adopted and supervised."""
        p = self.processes.get(key)
        if p is None:
            p = self.processes[key] = make(*args, **kwargs)
            p.adopt()
            self._scopes[key] = scope = trio.CancelScope()
            self.gd._nursery.start_soon(self._supervise, p, scope)
        return p

    async def retire(self, key):
        """Stop the process of `key` and forget it; returns it (it may
        still be running if it did not stop within RETIRE_WAIT)."""
        p = self.processes.pop(key)
        p.want(False)
        with trio.move_on_after(self.RETIRE_WAIT):
            await p.stopped()
        self._scopes.pop(key).cancel()
        return p

    async def _supervise(self, p, scope: trio.CancelScope) -> None:
        with scope:
            await p.supervise()


__all__ = ["BrickProcess", "Supervisor"]
