"""`glusterpy shd`: the self-heal daemon process, glustershd's role.

    glusterpy shd --volfile-list FILE --socket PATH [--pidfile F] [--log-file F]
                  [--log-level L] [--xlator-option VOL.KEY=VALUE ...]

One process per node heals every replicated volume with bricks on that
node, as GlusterFS 10's multiplexed glustershd does: FILE lists the
volumes' self-heal volfiles (glusterd's `VOL-shd.vol`: protocol/clients,
cluster/replicate with ``iam-self-heal-daemon yes``, debug/io-stats on
top), one path per line, and each is run as a graph of its own.  The
healing itself is cluster/replicate's (xlators/cluster/replicate/shd.py): index
crawls every ``cluster.heal-timeout`` seconds and whenever a brick comes
back, full crawls on request.  glusterpyd passes ``--xlator-option
*-replicate-*.node-uuid=<its uuid>`` so that only this node's bricks'
indices are crawled, as glusterd does.

Re-reading FILE (on a "reload" request or SIGHUP) attaches the volumes
that appeared, detaches those that left, applies changed options to a
running graph (Graph.reconfigure - e.g. a new heal-timeout) and replaces
a graph whose shape changed (add-brick): GlusterFS's attach/detach of
volumes to a running glustershd, and its volfile reconfigure.

The control socket (a Unix socket; glusterd reaches glustershd over one
too) takes one JSON object per line and answers one line:

    {"op": "heal-index"|"heal-full"|"statistics"|"heal-count", "volume": V}
        -> {"volume": V, "sets": [{"replicate": NAME, "op_ret": 0|-1,
                                   "children": [...]}]}       (replicate/shd.py's xl_op)
    {"op": "reload"}  -> {"volumes": [...]}   re-read FILE first
    {"op": "status"}  -> {"pid": P, "volumes": {V: {volfile, sets}}}

Errors are {"error": MESSAGE}.  The socket is opened before FILE is read,
so a caller that wrote FILE and then finds the socket not yet listening
knows the process will read the new FILE when it starts.

SIGTERM or SIGINT stops every graph and exits 0; a volfile that does not
load is logged and left out (the others keep healing); exit status 1 when
the socket or the pid file is refused, 2 for bad arguments.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import sys
from pathlib import Path

import trio

from .. import volfile as vf
from ..fops import FopError
from ..graph import Graph
from .daemon import PidFile, add_log_arguments, setup_logging, sole_exception

log = logging.getLogger("glusterpy.shd")

MAX_REQUEST = 65536
REQUEST_TIMEOUT = 60.0
#: how long attaching a volume waits for its bricks to answer
ATTACH_WAIT = 5.0


def register(sub) -> None:
    p = sub.add_parser("shd", help="run the self-heal daemon process (glustershd's role)",
                       description="Heal the replicated volumes whose self-heal volfiles "
                                   "FILE lists, until SIGTERM.")
    p.add_argument("--volfile-list", required=True, metavar="FILE",
                   help="a file naming one self-heal volfile per line")
    p.add_argument("--socket", required=True, metavar="PATH",
                   help="the Unix socket glusterpyd sends heal requests to")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    add_log_arguments(p)
    p.add_argument("--xlator-option", action="append", default=[], metavar="VOL.KEY=VALUE",
                   help="override an option of every volfile (VOL may be a glob)")
    p.set_defaults(func=run)


def run(args) -> int:
    setup_logging(args.log_file, args.log_level)
    pidfile = None
    try:
        if args.pidfile:
            pidfile = PidFile(args.pidfile)
        daemon = SelfHealProcess(Path(args.volfile_list), Path(args.socket),
                                 args.xlator_option)
        trio.run(daemon.serve)
    except BaseException as e:
        error = sole_exception(e)
        if isinstance(error, KeyboardInterrupt):
            return 0
        if not isinstance(error, OSError):
            raise
        log.error("self-heal daemon failed: %s", error)
        print(f"error: {error}", file=sys.stderr)
        return 1
    finally:
        if pidfile is not None:
            pidfile.remove()
    log.info("self-heal daemon stopped")
    return 0


class _Attached:
    """One volume's graph, running in a task of its own."""

    def __init__(self, path: Path, text: str, graph: Graph):
        self.path = path
        self.text = text
        self.graph = graph
        self.scope = trio.CancelScope()
        self.stopped = trio.Event()

    @property
    def name(self) -> str:
        return self.graph.top.name

    def replicates(self) -> list:
        return sorted((xl for xl in self.graph.by_name.values()
                       if xl.type_name == "cluster/replicate"), key=lambda xl: xl.name)


class SelfHealProcess:
    """The graphs of one glustershd and its control socket."""

    def __init__(self, volfile_list: Path, socket_path: Path, xlator_options=()):
        self.volfile_list = volfile_list
        self.socket_path = socket_path
        self.xlator_options = list(xlator_options)
        self.volumes: dict[str, _Attached] = {}  # by volfile path
        self._nursery: trio.Nursery | None = None
        self._reloading = trio.Lock()

    async def serve(self) -> None:
        listener = await self._listen()
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(trio.serve_listeners, self._handle, [listener])
                await self.reload()
                log.info("self-heal daemon (pid %d) serving %d volume(s) on %s", os.getpid(),
                         len(self.volumes), self.socket_path)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        await self.reload()
                        continue
                    log.info("received signal %d, shutting down", signum)
                    break
                for attached in list(self.volumes.values()):
                    await self._detach(attached)
                nursery.cancel_scope.cancel()
        try:
            self.socket_path.unlink()
        except OSError:
            pass

    async def _listen(self) -> trio.SocketListener:
        try:
            self.socket_path.unlink()
        except FileNotFoundError:
            pass
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        await sock.bind(str(self.socket_path))
        os.chmod(self.socket_path, 0o600)
        sock.listen(64)
        return trio.SocketListener(sock)

    # -- volumes ---------------------------------------------------------------

    def _wanted(self) -> list[Path]:
        try:
            lines = self.volfile_list.read_text().splitlines()
        except FileNotFoundError:
            return []
        return [Path(line.strip()) for line in lines if line.strip()]

    async def reload(self) -> list[str]:
        """Make the running graphs match the volfile list (see the module
        docstring); the names of the volumes served afterwards."""
        async with self._reloading:
            wanted = self._wanted()
            for key, attached in list(self.volumes.items()):
                if attached.path not in wanted:
                    log.info("detaching volume %s", attached.name)
                    await self._detach(attached)
            for path in wanted:
                try:
                    text = path.read_text()
                except OSError as e:
                    log.error("cannot read %s: %s", path, e)
                    continue
                current = self.volumes.get(str(path))
                if current is not None and current.text == text:
                    continue
                try:
                    volfile = vf.apply_xlator_options(vf.parses(text, str(path)),
                                                      self.xlator_options)
                except vf.VolfileError as e:
                    log.error("volfile %s refused: %s", path, e)
                    continue
                if current is not None and current.graph.same_shape(volfile):
                    try:
                        current.graph.reconfigure(volfile)
                        current.text = text
                        log.info("volume %s reconfigured from %s", current.name, path)
                        continue
                    except (vf.VolfileError, FopError, ValueError) as e:
                        log.warning("volume %s cannot take %s live (%s); restarting its "
                                    "graph", current.name, path, e)
                if current is not None:
                    await self._detach(current)
                try:
                    graph = Graph(volfile)
                except vf.VolfileError as e:
                    log.error("volfile %s refused: %s", path, e)
                    continue
                await self._attach(_Attached(path, text, graph))
            return sorted(a.name for a in self.volumes.values())

    async def _attach(self, attached: _Attached) -> None:
        try:
            await self._nursery.start(self._run_graph, attached)
        except (FopError, OSError) as e:
            log.error("volume %s did not start: %s", attached.name, e)
            return
        self.volumes[str(attached.path)] = attached
        log.info("attached volume %s from %s", attached.name, attached.path)

    async def _run_graph(self, attached: _Attached, task_status=trio.TASK_STATUS_IGNORED):
        try:
            with attached.scope:
                async with attached.graph.running():
                    # attached once its bricks answered (or a few seconds
                    # went by): a heal request right after finds them up
                    with trio.move_on_after(ATTACH_WAIT):
                        for afr in attached.replicates():
                            while not all(afr.child_up):
                                await trio.sleep(0.05)
                    task_status.started()
                    await trio.sleep_forever()
        finally:
            attached.stopped.set()

    async def _detach(self, attached: _Attached) -> None:
        self.volumes.pop(str(attached.path), None)
        attached.scope.cancel()
        with trio.move_on_after(30):
            await attached.stopped.wait()

    def _by_volume(self, name) -> _Attached | None:
        for attached in self.volumes.values():
            if attached.name == name:
                return attached
        return None

    # -- the control socket ------------------------------------------------------

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(REQUEST_TIMEOUT):
                data = b""
                while not data.endswith(b"\n"):
                    chunk = await stream.receive_some(MAX_REQUEST)
                    if not chunk:
                        break
                    data += chunk
                    if len(data) > MAX_REQUEST:
                        raise ValueError("request too long")
                try:
                    request = json.loads(data)
                    if not isinstance(request, dict):
                        raise ValueError("a request is a JSON object")
                    reply = await self.answer(request)
                except (ValueError, KeyError) as e:
                    reply = {"error": str(e)}
                await stream.send_all(json.dumps(reply).encode() + b"\n")
        except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError,
                ValueError) as e:
            log.warning("control request failed: %s", e)
        finally:
            await stream.aclose()

    async def answer(self, request: dict) -> dict:
        op = request.get("op")
        if op == "reload":
            return {"volumes": await self.reload()}
        if op == "status":
            return {"pid": os.getpid(), "volumes": {
                a.name: {"volfile": str(a.path), "sets": [
                    {"replicate": r.name, "child_up": list(r.child_up),
                     **(r.shd.dump_state() if r.shd is not None else {})}
                    for r in a.replicates()]} for a in self.volumes.values()}}
        name = request.get("volume")
        attached = self._by_volume(name)
        if attached is None:
            return {"error": f"volume {name} is not served by this self-heal daemon"}
        sets = []
        for afr in attached.replicates():
            if afr.shd is None:
                continue
            reply = await afr.shd.xl_op(op)
            sets.append({"replicate": afr.name, **reply})
        return {"volume": name, "sets": sets}


__all__ = ["register", "run", "SelfHealProcess"]
