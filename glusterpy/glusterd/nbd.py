"""NBD servers under glusterpyd: `volume set VOL nbd.export on`.

A started volume with ``nbd.export on`` and a brick on this node is
served by a `glusterpy nbd` process (glusterpy/nbd) on this node, on port
``nbd.port`` (10809, NBD's, by default); volumes on the same port share
one process.  Each process is a `BrickProcess` with its own command line
(bricks.py): restarted with back-off when it dies, adopted by a daemon
restarted after kill -9 (its pid file and command line), stopped when no
volume needs it.

The process reads its volumes from ``WORKDIR/run/nbd-PORT.json`` - each
volume's ``auth.allow``/``auth.reject`` (as its bricks apply them) and
``nbd.read-only``, ``nbd.tls`` with ``auth.ssl-allow``, and the certificate
files STARTTLS offers (``ssl.own-cert``, ``ssl.private-key``, ``ssl.ca-list``
or GlusterFS's defaults) - which `reconcile()` rewrites, then sends SIGHUP; the
process cuts connections the new policy no longer admits.  It fetches the
volumes' client volfiles from this daemon.

Files: WORKDIR/run/nbd-PORT.json, nbd-PORT.pid; WORKDIR/logs/nbd-PORT.log.
"""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass

import trio

from . import volgen
from .bricks import BrickProcess, Supervisor
from .model import Volume
from .store import write_atomic

log = logging.getLogger("glusterpy.glusterd.nbd")

#: how long an operation waits for a new NBD server to listen
LISTEN_WAIT = 20.0


@dataclass
class NbdProcess(BrickProcess):
    """One `glusterpy nbd` process; `volfile` is its policy file, whose
    path identifies the process when a restarted daemon adopts it."""

    def command(self) -> list[str]:
        return [sys.executable, "-m", "glusterpy.cli.main", "nbd",
                "--volfile-server", self.portmap, "--config", str(self.volfile),
                "--port", str(self.port), "--pidfile", str(self.pidfile),
                "--log-file", str(self.logfile)]


def policy(vol: Volume) -> dict:
    # unset, auth.allow is "*": what glusterd writes into every brick volfile
    return {"allow": volgen.option_value(vol, "auth.allow") or "*",
            "reject": volgen.option_value(vol, "auth.reject"),
            "read_only": volgen.enabled(vol, "nbd.read-only"),
            "tls": volgen.enabled(vol, "nbd.tls"),
            "ssl_allow": volgen.option_value(vol, "auth.ssl-allow")}


def tls_files(vol: Volume) -> dict:
    """The certificate STARTTLS offers: the volume's ssl.* keys, else
    GlusterFS's files (the ones `glusterpy tls setup` writes)."""
    from ..rpc import tls
    return {"cert": volgen.option_value(vol, "ssl.own-cert") or tls.default_own_cert(),
            "key": volgen.option_value(vol, "ssl.private-key") or tls.default_private_key(),
            "ca": volgen.option_value(vol, "ssl.ca-list") or tls.default_ca_list()}


class NbdService(Supervisor):
    """This node's NBD servers as glusterpyd manages them (module docstring),
    one process per port."""

    def served(self) -> dict[int, dict]:
        """port -> the policy file's document of what this node serves there."""
        out: dict[int, dict[str, dict]] = {}
        for name, vol in sorted(self.gd.volumes.items()):
            if vol.status != "Started" or not volgen.enabled(vol, "nbd.export") or \
                    not any(b.node == self.gd.uuid for b in vol.bricks):
                continue
            port = int(volgen.option_value(vol, "nbd.port") or 10809)
            out.setdefault(port, {"volumes": {}})["volumes"][name] = policy(vol)
            if volgen.enabled(vol, "nbd.tls"):
                # one certificate per port: the first TLS volume's (by name)
                out[port].setdefault("tls", tls_files(vol))
        return out

    def _config(self, port: int):
        return self.gd.store.run_dir / f"nbd-{port}.json"

    def _make_process(self, port: int) -> NbdProcess:
        store = self.gd.store
        return NbdProcess(volume="nbd", path=f"nbd-{port}", volfile=self._config(port),
                          port=port, pidfile=store.run_dir / f"nbd-{port}.pid",
                          logfile=store.log_dir / f"nbd-{port}.log",
                          portmap=self.gd.portmap_address)

    async def _reconcile(self) -> None:
        served = self.served()
        for port, doc in served.items():
            path = self._config(port)
            text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
            old = path.read_text() if path.exists() else None
            if text != old:
                write_atomic(path, text, 0o600)
            p = self.keep(port, self._make_process, port)
            starting = not p.running
            p.want(True)
            if not starting and text != old:
                p.reload()  # SIGHUP: the process re-reads its policy file
            if starting:
                await self._wait_listening(p)
        for port in [p for p in self.processes if p not in served]:
            await self.retire(port)
            self._config(port).unlink(missing_ok=True)

    async def _wait_listening(self, p: NbdProcess) -> None:
        """Until the new process accepts connections - it has its SIGHUP
        handler by then, so a reload right after cannot kill it."""
        restarts = p.restarts
        with trio.move_on_after(LISTEN_WAIT):
            while p.restarts == restarts:  # else it exited; the supervisor says why
                try:
                    # a connection, not a bind test: a port in TIME_WAIT is not a server
                    stream = await trio.open_tcp_stream("127.0.0.1", p.port)
                except OSError:
                    await trio.sleep(0.1)
                    continue
                await stream.aclose()
                return
        log.warning("the NBD server on port %d is not listening (see %s)", p.port, p.logfile)

    def status(self) -> list[dict]:
        return [{"port": port, "online": p.running, "pid": p.pid if p.running else None,
                 "restarts": p.restarts} for port, p in sorted(self.processes.items())]


__all__ = ["NbdService", "NbdProcess"]
