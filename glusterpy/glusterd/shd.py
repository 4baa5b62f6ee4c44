"""glustershd under glusterpyd: one self-heal daemon process per node.

glusterd runs one glustershd per node for the replicated volumes that have
bricks on it (glusterd-shd-svc.c, with GlusterFS 10's multiplexing: one
process, one graph per volume).  glusterpyd does the same:

* which volumes (`ShdService.served`): started, replicated, a brick on this
  node, and ``cluster.self-heal-daemon`` not off (gd_is_self_heal_enabled);
  their volfiles are volgen's ``WORKDIR/vols/VOL/VOL-shd.vol``.
* the process: `glusterpy shd` (glusterpy/cli/shd_cmd.py), started and
  supervised as a brick is - `ShdProcess` is a `BrickProcess` with its own
  command line: restarted with back-off when it dies, adopted by a daemon
  restarted after kill -9 (its pid file and command line), stopped with
  SIGTERM when no volume needs it any more (the last one stopped, deleted,
  its shd turned off).  It keeps running when glusterpyd stops, as
  glustershd outlives glusterd.
* attach/detach: the process reads its volume list from
  ``WORKDIR/run/glustershd.vols``; `reconcile()` rewrites that file and asks
  the process to re-read it (a "reload" on the control socket), which also
  applies changed options (heal-timeout ...) to the running graphs -
  GlusterFS's shd attach/detach and volfile reconfigure.
* glusterd's brick op to the shd (`call`): the control socket
  ``WORKDIR/run/glustershd.socket`` (or, when that path is too long for a
  Unix socket, one under the temporary directory named by a hash of the
  working directory - GlusterFS's /var/run/gluster/<hash>.socket), one JSON
  line each way; xlators/cluster/replicate/shd.py answers.
* ``--xlator-option *-replicate-*.node-uuid=<this node's uuid>`` on the
  command line, as glusterd passes it, so the process crawls only the
  indices of this node's bricks; and ``*-replicate-*.shd-state-dir=
  WORKDIR/glustershd`` (GlusterFS's /var/lib/glusterd/glustershd), where
  replicate saves the position of a full sweep so that it resumes after a
  restart.

Files: WORKDIR/run/glustershd.pid, .vols, .socket; WORKDIR/logs/glustershd.log;
WORKDIR/glustershd/*.full-sweep.json.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import trio

from . import volgen
from .bricks import BrickProcess, Supervisor
from .portmap import _port_is_free
from .store import write_atomic

log = logging.getLogger("glusterpy.glusterd.shd")

#: the longest Unix socket path (sun_path holds 108 bytes with the NUL)
SOCKET_PATH_MAX = 100
CALL_TIMEOUT = 60.0
#: how long a new glustershd waits for this node's bricks to listen
BRICK_WAIT = 10.0
#: how long an operation waits for glustershd to attach its volumes
SERVE_WAIT = 20.0
NAME = "glustershd"


@dataclass
class ShdProcess(BrickProcess):
    """The node's glustershd process, supervised like a brick (bricks.py);
    `volfile` is the volume list file, whose path identifies the process
    when a restarted daemon adopts it."""

    socket: Path = field(default=Path("."))
    node_uuid: str = ""
    state_dir: Path | None = None

    def command(self) -> list[str]:
        return [sys.executable, "-m", "glusterpy.cli.main", "shd",
                "--volfile-list", str(self.volfile), "--socket", str(self.socket),
                "--pidfile", str(self.pidfile), "--log-file", str(self.logfile),
                "--xlator-option", f"*-replicate-*.node-uuid={self.node_uuid}",
                *(["--xlator-option", f"*-replicate-*.shd-state-dir={self.state_dir}"]
                  if self.state_dir is not None else [])]


def socket_path(workdir: Path) -> Path:
    path = workdir / "run" / f"{NAME}.socket"
    if len(os.fsencode(path)) <= SOCKET_PATH_MAX:
        return path
    digest = hashlib.sha256(os.fsencode(workdir)).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / f"glusterpy-{digest}.socket"


class ShdUnavailable(Exception):
    """The self-heal daemon cannot be asked (not running, not answering)."""


class ShdService(Supervisor):
    """This node's glustershd as glusterpyd manages it (module docstring):
    one process, kept running (idle) once started."""

    def __init__(self, gd):
        super().__init__(gd)
        run = gd.store.run_dir
        self.listfile = run / f"{NAME}.vols"
        self.socket = socket_path(gd.workdir)
        self._texts: dict[str, str] = {}

    def served(self) -> list[str]:
        """The volumes this node's glustershd heals now."""
        out = []
        for name, vol in sorted(self.gd.volumes.items()):
            if vol.status == "Started" and volgen.has_shd(vol) and \
                    volgen.shd_enabled(vol) and \
                    any(b.node == self.gd.uuid for b in vol.bricks):
                out.append(name)
        return out

    def volfile(self, name: str) -> Path:
        return self.gd.store.volume_dir(name) / volgen.SHD_VOLFILE.format(vol=name)

    @property
    def process(self) -> ShdProcess | None:
        return self.processes.get(NAME)

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def _make_process(self) -> ShdProcess:
        store = self.gd.store
        return ShdProcess(volume=NAME, path=NAME, volfile=self.listfile, port=0,
                          pidfile=store.run_dir / f"{NAME}.pid",
                          logfile=store.log_dir / f"{NAME}.log", portmap="",
                          socket=self.socket, node_uuid=self.gd.uuid,
                          state_dir=Path(self.gd.workdir) / NAME)

    async def _reconcile(self) -> None:
        names = self.served()
        listing = "".join(f"{self.volfile(n)}\n" for n in names)
        texts = {}
        for n in names:
            try:
                texts[n] = self.volfile(n).read_text()
            except OSError:
                texts[n] = ""
        old_listing = self.listfile.read_text() if self.listfile.exists() else None
        if listing != old_listing:
            write_atomic(self.listfile, listing, 0o644)
        process = self.keep(NAME, self._make_process)
        starting = bool(names) and not process.running and not process.wanted
        if starting:
            # a new glustershd connects at once to bricks already listening
            # instead of retrying a few seconds later (glusterd, too, starts
            # it after the bricks)
            await self._wait_local_bricks(names)
        # before any other await: the supervisor must not see an adopted
        # process as unwanted
        process.want(bool(names))
        changed = listing != old_listing or texts != self._texts
        self._texts = texts
        if names and process.running and changed:
            try:
                await self.call({"op": "reload"}, timeout=30)
            except ShdUnavailable as e:
                # not listening yet: it reads the new list when it starts
                log.info("glustershd reload not sent: %s", e)
        if names and (starting or changed):
            # as glusterd's start of glustershd returns once it runs: a
            # `volume heal` right after `volume start` finds it serving
            await self._wait_serving(names)
        if not names:
            with trio.move_on_after(self.RETIRE_WAIT):
                await process.stopped()

    async def _wait_local_bricks(self, names: list[str]) -> None:
        ports = [b.port for n in names for b in self.gd.volumes[n].bricks
                 if b.node == self.gd.uuid and b.port]
        with trio.move_on_after(BRICK_WAIT):
            while any(_port_is_free("", port) for port in ports):
                await trio.sleep(0.1)

    async def call(self, request: dict, timeout: float = CALL_TIMEOUT) -> dict:
        """One request to the process's control socket; ShdUnavailable when
        it cannot be asked, the answer's error as ShdUnavailable too."""
        try:
            with trio.fail_after(timeout):
                stream = await trio.open_unix_socket(str(self.socket))
                try:
                    await stream.send_all(json.dumps(request).encode() + b"\n")
                    data = b""
                    while not data.endswith(b"\n"):
                        chunk = await stream.receive_some(65536)
                        if not chunk:
                            break
                        data += chunk
                finally:
                    await stream.aclose()
        except (OSError, trio.TooSlowError, trio.BrokenResourceError) as e:
            raise ShdUnavailable(f"the self-heal daemon does not answer ({e})") from None
        try:
            reply = json.loads(data)
        except ValueError:
            raise ShdUnavailable("the self-heal daemon's answer is not JSON") from None
        if "error" in reply:
            raise ShdUnavailable(reply["error"])
        return reply

    async def _wait_serving(self, names: list[str], timeout: float = SERVE_WAIT) -> bool:
        """Wait until the process has attached every volume of `names`."""
        with trio.move_on_after(timeout):
            while True:
                if self.running:
                    try:
                        status = await self.call({"op": "status"}, timeout=5)
                        if set(names) <= set(status.get("volumes", {})):
                            return True
                    except ShdUnavailable:
                        pass
                await trio.sleep(0.1)
        log.warning("glustershd does not serve %s yet (see %s)", ", ".join(names),
                    self.process.logfile if self.process else "its log")
        return False

    def status(self) -> dict:
        p = self.process
        return {"name": NAME, "online": self.running, "pid": p.pid if p and p.running else None,
                "volumes": self.served(), "restarts": p.restarts if p else 0}


__all__ = ["ShdService", "ShdProcess", "ShdUnavailable", "socket_path"]
