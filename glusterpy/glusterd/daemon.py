"""glusterpyd: the management daemon, one per node - glusterd's role.

One TCP port (24007 by default) serves two protocols, told apart by the
first bytes of each connection, in plain text or TLS (a first byte 0x16,
then the same test inside):

* GlusterFS RPC - a record mark, whose first byte has the last-fragment bit
  (0x80) set: GETSPEC, PORTMAP and DUMP for real GlusterFS clients, our
  clients (gfapi, FUSE) and our bricks, served by `volfile_server.
  VolfileServer` over this node's volume directories;
* HTTP/1.1 - a request line, whose first byte is an ASCII letter: the REST
  API (glusterd/routes/) that the CLI, peers and future UIs use.

A unix socket, WORKDIR/run/glusterpyd.socket, serves the same to this
node's root.  Who may do what over each is glusterd/trust.py's and
glusterd/routes/api.py's (`authorize`): root on the socket, tokens over TCP,
peers by their pinned certificate over TLS.  With WORKDIR/secure-access
(glusterd's secure-access) the TCP port refuses plain text, except RPC from
this node's own addresses (its bricks and daemons).

State (glusterd/store.py) is loaded at start; the volfiles are regenerated
from it (the translators on this machine may have changed) and the bricks of
started volumes are started, or adopted when they survived the previous
daemon (glusterd/bricks.py).

Volume operations run as glusterd's mgmt_v3 transactions (glusterd-mgmt.c):
the node that receives the request (the originator) takes the cluster lock
on every node, prepares the new volume document (glusterd/ops.py), stages
it on every node (each checks its own bricks and proposes their ports),
then commits it on every node (each stores it, writes the volfiles, starts,
reloads or stops its bricks, and sends FETCHSPEC to the clients connected
to it), and unlocks.  Any node that is down, or refuses at lock or stage,
fails the operation before anything changed; a commit that fails on one
node is undone on the nodes that had committed by committing the old
document there - so no operation is ever left half-applied.  Locks expire
after LOCK_TIMEOUT seconds (glusterd's mgmt_v3 lock timer), so a dead
originator cannot wedge the cluster.

Peers: `peer probe HOST[:PORT]` joins a node that has no peers and no
volumes: it receives every node's identity and every volume document, and
every node records it (glusterd's friend state machine, reduced to "Peer in
Cluster" and "Connected/Disconnected", which is what its CLI shows).
`peer detach` refuses a peer that holds bricks, as glusterd does.

Rebalance and remove-brick migration (glusterd/rebalance.py): a task in
the volume document names the nodes that run a rebalance process for it;
each node's `_reconcile` stops its process before the bricks when the task
ends or the volume stops, and starts it after them; `stage` lets the
node's process refuse what glusterd refuses during a rebalance (add-brick,
another rebalance, volume stop, remove-brick commit before the migration
completed).

Departures: peer calls are mutual TLS with pinned certificates, where
glusterd trusts any host that claims a peer's address; `volume start` fails
(and is undone) when a brick does not sign in within BRICK_UP_TIMEOUT,
where glusterd reports success once glusterfsd is spawned.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import socket
import ssl
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from .. import localsock, pki
from ..localsock import SOCKET_NAME
from .bricks import BrickProcess
from .common import VERSION, OpFailed
from .model import Brick, Volume, new_credentials
from .http import PeerUnreachable, Response, request, serve_http
from .ops import Cluster, prepare_brick_dirs, stage_local, unstamp
from . import ops, volgen
from .portmap import PortmapRegistry, _port_is_free
from .rebalance import RebalanceService
from .nbd import NbdService
from .georep import GeorepService
from .shd import ShdService
from .heal_task import HealTracker
from .store import Store
from ..rpc import tls
from .trust import NodeTrust, peer_fingerprint
from .volfile_server import VolfileServer

log = logging.getLogger("glusterpy.glusterd")

DEFAULT_WORKDIR = "/var/lib/glusterpy"
DEFAULT_PORT = 24007
LOCK_TIMEOUT = 180.0
BRICK_UP_TIMEOUT = 30.0
PEER_TIMEOUT = 60.0
PEER_CHECK_TIMEOUT = 3.0


class DaemonVolfileServer(VolfileServer):
    """GETSPEC from WORKDIR/vols/<volume>/: the volume is the key up to its
    first '.', as volume names hold no dots (`demo`, `demo.noperf`,
    `demo.HOST.srv-b1`)."""

    def volfile_dir(self, key: str) -> Path | None:
        volname = key.split(".", 1)[0]
        try:
            ops.check_volname(volname)
        except ValueError:
            return None
        return self.dir / volname


class PrefixedStream(trio.abc.HalfCloseableStream):
    """A stream whose first bytes were already read to see what it speaks:
    they are given back first.  It exposes the raw socket (which the RPC
    transport writes to directly) only for a plain TCP stream - never under
    TLS, where writing to the socket would bypass the encryption."""

    def __init__(self, stream: trio.abc.Stream, prefix: bytes):
        self.stream = stream
        if isinstance(stream, trio.SocketStream):
            self.socket = stream.socket
        self._prefix = prefix

    async def receive_some(self, max_bytes=None):
        if self._prefix:
            n = len(self._prefix) if max_bytes is None else max_bytes
            data, self._prefix = self._prefix[:n], self._prefix[n:]
            return data
        return await self.stream.receive_some(max_bytes)

    async def send_all(self, data):
        await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self):
        await self.stream.wait_send_all_might_not_block()

    async def send_eof(self):
        if isinstance(self.stream, trio.abc.HalfCloseableStream):
            await self.stream.send_eof()
        else:
            await self.stream.aclose()

    async def aclose(self):
        await self.stream.aclose()


#: first byte of a TLS handshake record
TLS_HANDSHAKE = 0x16


async def _refuse_plain_text(req) -> Response:
    return Response(403, {"error": "management TLS is on (secure-access): connect with TLS "
                                   "(https://...)"})


async def _first_bytes(stream: trio.abc.Stream) -> bytes | None:
    try:
        with trio.fail_after(60):
            return await stream.receive_some(65536) or None
    except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, OSError,
            ssl.SSLError):
        return None


def _check_member(node) -> None:
    """OpFailed unless `node` is a member record a join may carry: uuid,
    host names, port and certificate, each well-formed."""
    if not isinstance(node, dict):
        raise OpFailed("a join's members must be objects")
    try:
        uuid.UUID(str(node.get("uuid")))
    except ValueError:
        raise OpFailed(f"member uuid {node.get('uuid')!r} is not a uuid") from None
    names = node.get("hostnames")
    if not isinstance(names, list) or not names or \
            not all(isinstance(h, str) and h and len(h) < 256 for h in names):
        raise OpFailed(f"member {node['uuid']}: hostnames must be a list of names")
    port = node.get("port")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise OpFailed(f"member {node['uuid']}: port {port!r} is not a TCP port")
    if not isinstance(node.get("cert"), str):
        raise OpFailed(f"member {node['uuid']}: a join must carry every member's certificate")
    try:
        pki.fingerprint_of_pem(node["cert"])
    except ValueError as e:
        raise OpFailed(f"member {node['uuid']}: bad certificate ({e})") from None


def _record(doc: dict | None) -> Volume | None:
    """A plan's volume document (None: no volume) as the record."""
    return Volume.from_json(doc) if doc is not None else None


def _disk_use(path: str) -> dict:
    """The brick's file system, as `volume status detail` shows it (the web
    console's capacity chart); nothing for a brick that is not a directory
    here (a device lv brick is a volume group)."""
    try:
        st = os.statvfs(path)
    except OSError:
        return {}
    # (the file system's id: bricks sharing one count its space once)
    return {"disk_total": st.f_blocks * st.f_frsize, "disk_free": st.f_bavail * st.f_frsize,
            "disk_fsid": st.f_fsid}


class Glusterd:
    """One node's management daemon."""

    def __init__(self, workdir: str | os.PathLike = DEFAULT_WORKDIR, *,
                 address: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 hostname: str | None = None, brick_roots=None):
        self.store = Store(workdir)
        self.workdir = self.store.root
        #: where this node's bricks may be (ops.brick_roots; None: the defaults)
        self.brick_roots: tuple[str, ...] = ops.brick_roots(brick_roots, self.workdir)
        self.address = address
        self.port = port
        self.node = self.store.open()
        self.uuid: str = self.node["uuid"]
        names = [n for n in (hostname, address) if n and n not in ("0.0.0.0", "::")]
        self.names: list[str] = names or [socket.gethostname()]
        self.peers: dict[str, dict] = self.store.peers()
        #: this node's certificate, the TLS contexts and the API tokens
        self.trust = NodeTrust(self.workdir, self.names[0])
        self.socket_path = self.store.run_dir / SOCKET_NAME
        #: what the environment said before management TLS changed it
        self._secure_access_env = os.environ.get(tls.SECURE_ACCESS_ENV)
        self.volumes: dict[str, Volume] = self.store.volumes()
        self.portmap = PortmapRegistry()
        self.volfiles = DaemonVolfileServer(self.store.vols, self.portmap)
        self.bricks: dict[tuple[str, str], BrickProcess] = {}
        self._supervisors: dict[tuple[str, str], trio.CancelScope] = {}
        self._lock: tuple[str, str, float] | None = None  # txn, holder, expiry
        self._stamped: dict[str, list[str]] = {}
        self._nursery: trio.Nursery | None = None
        self.started = trio.Event()
        #: this node's rebalance processes (glusterd/rebalance.py)
        self.rebalance = RebalanceService(self)
        #: this node's self-heal daemon (glusterd/shd.py)
        self.shd = ShdService(self)
        # heals as tasks, for the console (glusterd/heal_task.py)
        self.heal_tasks = HealTracker(self)
        #: this node's NBD servers (glusterd/nbd.py)
        self.nbd = NbdService(self)
        #: this node's geo-replication workers (glusterd/georep.py)
        self.georep = GeorepService(self)

    # -- serving ----------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.address, backlog=1024)
        self.port = listeners[0].socket.getsockname()[1]
        self.volfiles.address, self.volfiles.port = self.address, self.port
        local = await self._open_local_socket()
        self.export_secure_access()
        # the one place the REST routes are wired in: services never import
        # glusterd/routes/ (tests/test_glusterd_layout.py)
        from .routes import make_app
        self.app = make_app(self)
        log.info("glusterpyd %s (node %s) listening on %s:%d and %s, workdir %s", VERSION,
                 self.uuid, self.address, self.port, self.socket_path, self.workdir)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.volfiles.use_nursery(nursery)
                nursery.start_soon(trio.serve_listeners, self._handle, listeners)
                nursery.start_soon(trio.serve_listeners, self._handle_local, [local])
                for name in list(self.volumes):
                    try:
                        await self._restore(name)
                    except Exception:
                        log.exception("volume %s: restoring failed", name)
                self.started.set()
                task_status.started(self.port)
        finally:
            self._nursery = None
            self._close_local_socket()

    async def _open_local_socket(self) -> trio.SocketListener:
        """WORKDIR/run/glusterpyd.socket, owner-only, linked from the
        registry the CLI looks in (glusterpy/localsock.py)."""
        path = self.socket_path
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a previous daemon's, or kill -9's leftover
        sock = trio.socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            await sock.bind(str(path))
        finally:
            os.umask(old_umask)
        os.chmod(path, 0o600)
        sock.listen(128)
        link = localsock.registry_path(self.port)
        try:
            link.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
            tmp = link.with_name(f".{link.name}.{os.getpid()}")
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            tmp.symlink_to(path)
            os.replace(tmp, link)
            self._registry_link = link
        except OSError as e:
            self._registry_link = None
            log.warning("cannot link %s to %s (%s): the CLI finds this daemon with "
                        "--remote-host unix:%s only", link, path, e.strerror, path)
        return trio.SocketListener(sock)

    def _close_local_socket(self) -> None:
        link = getattr(self, "_registry_link", None)
        with contextlib.suppress(OSError):
            if link is not None and os.readlink(link) == str(self.socket_path):
                link.unlink()
        with contextlib.suppress(OSError):
            self.socket_path.unlink()

    @property
    def portmap_address(self) -> str:
        host = self.address if self.address not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{host}:{self.port}"

    @property
    def secure_access(self) -> bool:
        """Management TLS (glusterd's /var/lib/glusterd/secure-access): with
        WORKDIR/secure-access present, RPC and the REST API on the TCP port
        are served over TLS only."""
        return (self.workdir / "secure-access").exists()

    def export_secure_access(self) -> None:
        """Let the processes this daemon starts (bricks, self-heal,
        rebalance) speak TLS to it when management TLS is on, whatever
        /var/lib/glusterd/secure-access says (rpc/tls.py reads the
        variable)."""
        given = self._secure_access_env
        if self.secure_access:
            os.environ[tls.SECURE_ACCESS_ENV] = "1"
        elif given is None:
            os.environ.pop(tls.SECURE_ACCESS_ENV, None)
        else:
            os.environ[tls.SECURE_ACCESS_ENV] = given

    def server_tls_context(self):
        """Our certificate; clients' certificates verified against the
        pinned peers and GlusterFS's CA list (glusterfs.ca, for
        bricks and GlusterFS clients speaking management TLS).  Only a
        pinned certificate makes a caller a peer (api.principal)."""
        peer_certs = [p["cert"] for p in self.peers.values() if p.get("cert")]
        return self.trust.server_context(
            peer_certs, Path(tls.default_ca_list()),
            (Path(tls.default_own_cert()), Path(tls.default_private_key())))

    async def _handle(self, stream: trio.SocketStream) -> None:
        """One TCP connection: TLS or not, then RPC or HTTP (module docstring)."""
        try:
            peer = stream.socket.getpeername()[:2]
        except OSError:
            await stream.aclose()
            return
        where = f"{peer[0]}:{peer[1]}"
        first = await _first_bytes(stream)
        if first is None:
            await stream.aclose()
            return
        facts = {"transport": "tcp", "address": peer[0]}
        inner: trio.abc.Stream = stream
        if first[0] == TLS_HANDSHAKE:
            inner = trio.SSLStream(PrefixedStream(stream, first), self.server_tls_context(),
                                   server_side=True)
            try:
                with trio.fail_after(60):
                    await inner.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError, OSError) as e:
                log.info("TLS handshake with %s failed: %s", where, e)
                await stream.aclose()
                return
            facts.update(transport="tls", cert=peer_fingerprint(inner))
            first = await _first_bytes(inner)
            if first is None:
                await inner.aclose()
                return
        elif self.secure_access and not (first[0] & 0x80 and ops.is_local_address(peer[0])):
            # (this node's own bricks and daemons may sign in without TLS:
            # they can read its key anyway)
            log.info("plain-text connection from %s refused: management TLS is on "
                     "(%s)", where, self.workdir / "secure-access")
            if not first[0] & 0x80:
                await serve_http(stream, _refuse_plain_text, prefix=first)
            else:
                await stream.aclose()
            return
        if first[0] & 0x80:  # an RPC record mark: the last-fragment bit
            await self.volfiles.handle_stream(PrefixedStream(inner, first), peer=where)
            return
        await serve_http(inner, self.app, peer=peer, prefix=first, conn_facts=facts)

    async def _handle_local(self, stream: trio.SocketStream) -> None:
        """A connection to the unix socket: HTTP from a local administrator
        (the kernel says who: SO_PEERCRED), or RPC from a local process."""
        try:
            pid, uid, gid = localsock.peer_credentials(stream.socket)
        except OSError:
            await stream.aclose()
            return
        first = await _first_bytes(stream)
        if first is None:
            await stream.aclose()
            return
        if first[0] & 0x80:
            await self.volfiles.handle_stream(PrefixedStream(stream, first),
                                              peer=f"unix:pid{pid}")
            return
        await serve_http(stream, self.app, prefix=first,
                         conn_facts={"transport": "unix", "uid": uid, "pid": pid})

    # -- identity ---------------------------------------------------------

    def node_info(self) -> dict:
        return {"uuid": self.uuid, "hostnames": list(self.names), "port": self.port,
                "version": VERSION, "op-version": self.node.get("op-version")}

    def cluster(self) -> Cluster:
        return Cluster(self.uuid, self.names, self.peers, self.volumes, self.workdir)

    def host_of(self, node_uuid: str) -> str:
        if node_uuid == self.uuid:
            return "localhost"
        peer = self.peers.get(node_uuid)
        return peer["hostnames"][0] if peer else node_uuid

    # -- local state changes ------------------------------------------------

    def _volfile_texts(self, name: str) -> dict[str, str]:
        vdir = self.store.volume_dir(name)
        return {p.name: p.read_text() for p in vdir.glob("*.vol")} if vdir.exists() else {}

    async def _restore(self, name: str) -> None:
        """At start: regenerate the volfiles, adopt or start the bricks."""
        vol = self.volumes[name]
        old_texts = self._volfile_texts(name)
        self.store.save_volume(vol, volgen.volfiles(vol))
        await self._reconcile(name, old_texts, adopt=True)

    def _brick_process(self, vol: Volume, brick: Brick) -> BrickProcess:
        safe = brick.path.strip("/").replace("/", "-")
        return BrickProcess(
            volume=vol.name, path=brick.path,
            volfile=self.store.volume_dir(vol.name) / volgen.brick_volfile_name(vol, brick),
            port=brick.port, pidfile=self.store.run_dir / vol.name / f"{safe}.pid",
            logfile=self.store.log_dir / "bricks" / f"{safe}.log",
            portmap=self.portmap_address)

    async def _reconcile(self, name: str, old_texts: dict[str, str], *,
                         adopt: bool = False) -> None:
        """Make this node's brick processes of volume `name` match its
        document: start, reload, restart or stop them."""
        # a rebalance stops before the bricks it uses (volume stop, task ended)
        await self.rebalance.stop_unwanted(name)
        vol = self.volumes.get(name)
        local = {b.path: b for b in (vol.bricks if vol else []) if b.node == self.uuid}
        for key, bp in list(self.bricks.items()):
            if key[0] == name and key[1] not in local:
                bp.want(False)
                with trio.move_on_after(30):
                    await bp.stopped()
                self._supervisors.pop(key).cancel()
                del self.bricks[key]
        if vol is None:
            await self.georep.reconcile()
            await self.shd.reconcile()
            await self.nbd.reconcile()
            return
        started = vol.status == "Started"
        new_texts = self._volfile_texts(name)
        restarted = False
        for path, brick in local.items():
            key = (name, path)
            bp = self.bricks.get(key)
            if bp is None:
                bp = self._brick_process(vol, brick)
                self.bricks[key] = bp
                if adopt:
                    bp.adopt()
                scope = trio.CancelScope()
                self._supervisors[key] = scope
                self._nursery.start_soon(self._supervise, bp, scope)
            fname = bp.volfile.name
            if started and bp.running and old_texts.get(fname) != new_texts.get(fname):
                if old_texts.get(fname) is None or \
                        volgen.needs_restart(old_texts[fname], new_texts[fname]) or \
                        bp.port != brick.port:
                    bp.port = brick.port
                    await bp.restart()
                    restarted = True
                else:
                    bp.reload()
            bp.port = brick.port
            bp.want(started)
        if not started:
            for path in local:
                with trio.move_on_after(30):
                    await self.bricks[(name, path)].stopped()
        elif restarted:
            # the services below mount the volume at once (an NBD server
            # fails its first mount against a brick still starting)
            await self.wait_bricks_up(name)
        # ... and starts after them
        await self.rebalance.reconcile(name, adopt=adopt)
        # glusterd's shd manager runs after the bricks' (glusterd_svcs_manager)
        await self.shd.reconcile()
        # NBD servers follow the volume's start/stop, auth and nbd.* keys
        await self.nbd.reconcile()
        # geo-replication workers read from the bricks: after them
        await self.georep.reconcile()

    async def _supervise(self, bp: BrickProcess, scope: trio.CancelScope) -> None:
        with scope:
            await bp.supervise()

    async def wait_bricks_up(self, name: str, timeout: float = BRICK_UP_TIMEOUT) -> list[str]:
        """Wait until this node's bricks of `name` signed in; the ones that
        did not, as HOST:PATH."""
        vol = self.volumes[name]
        local = [b for b in vol.bricks if b.node == self.uuid]
        procs = {b.path: self.bricks[(name, b.path)] for b in local}
        restarts = {path: bp.restarts for path, bp in procs.items()}

        def up(b) -> bool:
            # signed in by the process running now, not one a restart ended
            reg = self.portmap.registration(b.path)
            return reg is not None and reg.port == b.port and procs[b.path].running and \
                reg.pid in (0, procs[b.path].pid)

        def failed(b) -> bool:  # it exited since: no need to wait for the time-out
            return procs[b.path].restarts > restarts[b.path]
        with trio.move_on_after(timeout):
            while not all(up(b) or failed(b) for b in local):
                await trio.sleep(0.1)
        return [volgen.brick_id(b) + (f" ({procs[b.path].last_exit})" if failed(b) else "")
                for b in local if not up(b)]

    async def notify_clients(self) -> None:
        if self._nursery is not None:
            self._nursery.start_soon(self.volfiles.notify_fetchspec)

    # -- the transaction phases, as every node runs them --------------------

    def take_lock(self, txn: str, holder: str) -> None:
        now = time.monotonic()
        if self._lock is not None and self._lock[0] != txn and self._lock[2] > now:
            raise OpFailed(f"Another transaction is in progress (held by {self._lock[1]}). "
                           "Please try again after some time.")
        self._lock = (txn, holder, now + LOCK_TIMEOUT)

    def release_lock(self, txn: str) -> None:
        if self._lock is not None and self._lock[0] == txn:
            self._lock = None
        self._stamped.pop(txn, None)

    def check_lock(self, txn: str) -> None:
        if self._lock is None or self._lock[0] != txn:
            raise OpFailed("the cluster lock of this operation is not held here")

    def stage(self, plan: dict) -> dict:
        self.check_lock(plan["txn"])
        name, old, new = plan["name"], _record(plan["old"]), _record(plan["new"])
        mine = self.volumes.get(name)
        if (mine.version if mine else None) != (old.version if old else None):
            raise OpFailed(f"volume {name} changed on this node during the operation; "
                           "try again")
        taken = {b.port for v in self.volumes.values() for b in v.bricks
                 if b.node == self.uuid and b.port}
        try:
            result = stage_local(self.uuid, self.workdir, old, new, plan.get("force", False),
                                 taken, lambda t: self.portmap.alloc_port(taken=t),
                                 self.brick_roots)
        except ValueError as e:
            raise OpFailed(str(e)) from None
        try:
            self.rebalance.check_stage(plan)
        except ValueError as e:
            raise OpFailed(str(e)) from None
        if plan["op"] == "start" and plan.get("force"):
            result["reassign"] = self._busy_brick_ports(name, new, taken)
        result["node"] = self.uuid
        return result

    def _busy_brick_ports(self, name: str, vol: Volume, taken: set[int]) -> dict[str, int]:
        """`start force`: new ports for this node's bricks that are not
        running and whose port something else holds (glusterd's start force
        restarts such bricks; with a fixed port ours could not start)."""
        out = {}
        for b in vol.bricks:
            bp = self.bricks.get((name, b.path))
            if b.node != self.uuid or (bp is not None and bp.running):
                continue
            if not _port_is_free("", b.port):
                port = self.portmap.alloc_port(taken=taken)
                if port:
                    taken.add(port)
                    out[b.path] = port
        return out

    async def commit(self, plan: dict, rollback: bool = False) -> None:
        txn = plan["txn"]
        self.check_lock(txn)
        name = plan["name"]
        new, old = (plan["old"], plan["new"]) if rollback else (plan["new"], plan["old"])
        new, old = _record(new), _record(old)
        old_texts = self._volfile_texts(name)
        if rollback:
            unstamp(self._stamped.pop(txn, []))
        elif new is not None:
            try:
                self._stamped.setdefault(txn, []).extend(
                    prepare_brick_dirs(self.uuid, new, old))
            except OSError as e:
                raise OpFailed(f"cannot prepare a brick directory: {e}") from None
        if new is None:
            self.volumes.pop(name, None)
            await self._reconcile(name, old_texts)
            self.store.delete_volume(name)
        else:
            self.store.save_volume(new, volgen.volfiles(new))
            self.volumes[name] = new
            await self._reconcile(name, old_texts)
        if not rollback and new is not None and new.status == "Started" and \
                (old is None or old.status != "Started" or plan["op"] == "add-brick"):
            down = await self.wait_bricks_up(name)
            if down:
                raise OpFailed(f"brick{'s' if len(down) > 1 else ''} {', '.join(down)} did "
                               f"not come up (see {self.store.log_dir / 'bricks'})")
        # clients fetch the new volfile once the bricks it names are up
        await self.notify_clients()

    # -- talking to peers ---------------------------------------------------

    def _peer_address(self, peer: dict) -> tuple[str, int]:
        return peer["hostnames"][0], peer["port"]

    async def call_peer(self, peer: dict, method: str, path: str, body: Any = None, *,
                        timeout: float = PEER_TIMEOUT) -> Any:
        """Call a peer's API over TLS: we show our certificate, and its
        certificate must be the one pinned for it (glusterd/trust.py)."""
        host, port = self._peer_address(peer)
        try:
            reply = await request(host, port, method, path, body, timeout=timeout,
                                  headers={"x-glusterpy-node": self.uuid},
                                  tls=self.trust.client_context(),
                                  pin=peer.get("fingerprint") or "(none pinned)")
        except PeerUnreachable as e:
            raise OpFailed(f"{host} is not connected ({e})") from None
        if reply.status >= 400:
            raise OpFailed((reply.doc or {}).get("error", f"HTTP {reply.status}"))
        return reply.doc

    async def peer_connected(self, peer: dict) -> bool:
        try:
            doc = await self.call_peer(peer, "GET", "/api/v1/node", timeout=PEER_CHECK_TIMEOUT)
        except OpFailed:
            return False
        return (doc or {}).get("uuid") == peer["uuid"]

    # -- the originator -------------------------------------------------------

    async def transact(self, op: str, args: dict, who: dict) -> dict:
        """Run a volume operation across the cluster; OpFailed with the
        reason when it does not happen (and then nothing changed)."""
        txn = str(uuid.uuid4())
        peers = list(self.peers.values())
        locked: list[dict] = []
        holder = f"{who.get('user') or '?'}@{self.names[0]}"
        result: dict = {}
        try:
            self.take_lock(txn, holder)
            for peer in peers:
                try:
                    await self.call_peer(peer, "POST", "/api/v1/cluster/lock",
                                         {"txn": txn, "holder": holder})
                except OpFailed as e:
                    raise OpFailed(f"Locking failed on {peer['hostnames'][0]}. {e}") from None
                locked.append(peer)
            name = args.get("name")
            old = self.volumes.get(name) if isinstance(name, str) else None
            try:
                new = ops.PREPARE[op](self.cluster(), args)
            except ValueError as e:
                raise OpFailed(str(e)) from None
            if op == "remove-brick" and args.get("action") == "status":
                return {"volume": new}
            if new is not None:
                new.version = (old.version if old else 0) + 1
                if new.username is None:
                    # the internal user is made here, once: at volume create,
                    # or for a volume stored before glusterpy had them at its
                    # first operation (volume set server.root-squash is one) -
                    # the plan carries it to every node, so all agree
                    new.username, new.password = new_credentials()
            # what every node stages and commits, as it travels: JSON documents
            plan = {"txn": txn, "op": op, "args": args, "name": name,
                    "old": old.to_json() if old else None,
                    "new": new.to_json() if new else None,
                    "force": bool(args.get("force"))}
            stages = [("localhost", self.stage(plan))]
            for peer in peers:
                try:
                    stages.append((peer["hostnames"][0], await self.call_peer(
                        peer, "POST", "/api/v1/cluster/stage", plan)))
                except OpFailed as e:
                    raise OpFailed(f"Staging failed on {peer['hostnames'][0]}. Error: {e}") \
                        from None
            self._merge_stage(plan, stages)
            committed: list[dict | None] = []
            for peer in [None] + peers:
                try:
                    if peer is None:
                        await self.commit(plan)
                    else:
                        await self.call_peer(peer, "POST", "/api/v1/cluster/commit",
                                             {"plan": plan})
                    committed.append(peer)
                except OpFailed as e:
                    where = "localhost" if peer is None else peer["hostnames"][0]
                    committed.append(peer)  # undo its partial work too
                    await self._rollback(plan, committed)
                    raise OpFailed(f"Commit failed on {where}. Error: {e}") from None
            # the document as committed (with the ports the nodes staged)
            result = {"volume": _record(plan["new"])}
            return result
        finally:
            for peer in locked:
                try:
                    await self.call_peer(peer, "POST", "/api/v1/cluster/unlock", {"txn": txn},
                                         timeout=10)
                except OpFailed as e:
                    log.warning("unlock on %s failed: %s", peer["hostnames"][0], e)
            self.release_lock(txn)

    def _merge_stage(self, plan: dict, stages: list[tuple[str, dict]]) -> None:
        # into the plan's JSON document of the new volume, which the
        # commit then carries to every node
        new = plan["new"]
        if new is None:
            return
        for _, result in stages:
            for path, port in (result or {}).get("ports", {}).items():
                for b in new["bricks"]:
                    if b["path"] == path and not b.get("port") and \
                            b["node"] == result.get("node"):
                        b["port"] = port
            for path, meta in (result or {}).get("metadata", {}).items():
                for b in new["bricks"]:
                    if b["path"] == path and b["node"] == result.get("node"):
                        b["metadata"] = meta
            for path, port in (result or {}).get("reassign", {}).items():
                for b in new["bricks"]:
                    if b["path"] == path and b["node"] == result.get("node"):
                        log.info("brick %s: port %d is taken, moving to %d", path,
                                 b["port"], port)
                        b["port"] = port

    async def _rollback(self, plan: dict, committed: list[dict | None]) -> None:
        for peer in reversed(committed):
            try:
                if peer is None:
                    await self.commit(plan, rollback=True)
                else:
                    await self.call_peer(peer, "POST", "/api/v1/cluster/commit",
                                         {"plan": plan, "rollback": True})
            except OpFailed as e:
                log.error("rollback of %s on %s failed: %s", plan["op"],
                          "localhost" if peer is None else peer["hostnames"][0], e)

    # -- peers ----------------------------------------------------------------

    def me(self) -> dict:
        """This node as its peers record it."""
        return {"uuid": self.uuid, "hostnames": list(self.names), "port": self.port,
                "cert": self.trust.cert_pem, "fingerprint": self.trust.fingerprint}

    async def probe(self, host: str, port: int, who: dict) -> str:
        """Bring HOST:PORT into this pool.  Its certificate, as its TLS
        handshake shows it, is pinned here and on every member: from now on
        only that key speaks for it."""
        if ops.is_local_address(host) and port == self.port or host in self.names and \
                port == self.port:
            return "Probe on localhost not needed"
        for peer in self.peers.values():
            if host in peer["hostnames"] and peer["port"] == port:
                return f"Host {host} port {peer['port']} already in peer list"
        try:
            hello = await request(host, port, "GET", "/api/v1/openapi.json",
                                  timeout=PEER_CHECK_TIMEOUT * 3,
                                  tls=self.trust.client_context(anonymous=True))
        except PeerUnreachable as e:
            raise OpFailed(f"Probe returned with Transport endpoint is not connected ({e})") \
                from None
        if hello.status != 200 or "openapi" not in (hello.doc or {}):
            raise OpFailed(f"{host}:{port} is not a glusterpyd")
        if hello.fingerprint == self.trust.fingerprint:
            return "Probe on localhost not needed"
        known = next((p for p in self.peers.values()
                      if p.get("fingerprint") == hello.fingerprint), None)
        if known is not None:
            if host not in known["hostnames"]:
                known["hostnames"].append(host)
                self.store.save_peer(known)
            return f"Host {host} port {port} already in peer list"
        txn = str(uuid.uuid4())
        peers = list(self.peers.values())
        locked = []
        try:
            self.take_lock(txn, f"probe of {host}")
            for peer in peers:
                await self.call_peer(peer, "POST", "/api/v1/cluster/lock",
                                     {"txn": txn, "holder": f"probe of {host}"})
                locked.append(peer)
            nodes = [self.me()] + peers
            joined = await self._join_call(host, port, hello.fingerprint,
                                           {"nodes": nodes, "volumes": {
                                               n: v.to_json() for n, v in self.volumes.items()}})
            new_peer = {"uuid": joined["uuid"], "hostnames": [host], "port": port,
                        "cert": joined["cert"], "fingerprint": hello.fingerprint}
            for peer in peers:
                await self.call_peer(peer, "POST", "/api/v1/cluster/peers",
                                     {"txn": txn, "peer": new_peer})
            self.add_peer(new_peer)
        finally:
            for peer in locked:
                try:
                    await self.call_peer(peer, "POST", "/api/v1/cluster/unlock",
                                         {"txn": txn}, timeout=10)
                except OpFailed:
                    pass
            self.release_lock(txn)
        return ""

    async def _join_call(self, host: str, port: int, fingerprint: str, body: dict) -> dict:
        """POST /cluster/join to the probed node, pinned to the certificate
        it showed at the first contact; its answer must carry that
        certificate (so members can pin it too) and a uuid."""
        try:
            reply = await request(host, port, "POST", "/api/v1/cluster/join", body,
                                  timeout=PEER_TIMEOUT,
                                  tls=self.trust.client_context(anonymous=True),
                                  pin=fingerprint, headers={"x-glusterpy-node": self.uuid})
        except PeerUnreachable as e:
            raise OpFailed(f"{host} is not connected ({e})") from None
        doc = reply.doc if isinstance(reply.doc, dict) else {}
        if reply.status >= 400:
            raise OpFailed(doc.get("error", f"HTTP {reply.status}"))
        try:
            if pki.fingerprint_of_pem(doc["cert"]) != fingerprint or \
                    not isinstance(doc.get("uuid"), str):
                raise ValueError("certificate mismatch")
        except (KeyError, TypeError, ValueError) as e:
            raise OpFailed(f"{host}:{port} answered the join with a bad identity ({e})") \
                from None
        return doc

    def add_peer(self, peer: dict) -> None:
        if peer["uuid"] == self.uuid:
            return
        peer = dict(peer, fingerprint=pki.fingerprint_of_pem(peer["cert"]))
        known = self.peers.get(peer["uuid"])
        if known:
            for h in peer["hostnames"]:
                if h not in known["hostnames"]:
                    known["hostnames"].append(h)
            peer = known
        self.peers[peer["uuid"]] = peer
        self.store.save_peer(peer)

    async def join(self, nodes: list[dict], volumes: dict, seen_as: str | None) -> dict:
        """Become a peer of `nodes` (another node probed us), pinning the
        certificate each of them carries."""
        for node in nodes:
            _check_member(node)
        if self.peers:
            raise OpFailed(f"{self.names[0]} is already part of another cluster")
        if self.volumes:
            raise OpFailed(f"{self.names[0]} is either already part of another cluster or "
                           "having volumes configured")
        for i, node in enumerate(nodes):
            node = copy.deepcopy(node)
            if i == 0 and seen_as and seen_as not in node["hostnames"]:
                node["hostnames"].append(seen_as)
            self.add_peer(node)
        for name, doc in volumes.items():
            vol = Volume.from_json(doc)
            self.store.save_volume(vol, volgen.volfiles(vol))
            self.volumes[name] = vol
            await self._reconcile(name, {})
        return dict(self.node_info(), cert=self.trust.cert_pem)

    async def detach(self, host: str, force: bool) -> None:
        peer = next((p for p in self.peers.values() if host in p["hostnames"]), None)
        if peer is None:
            if ops.is_local_address(host) or host in self.names:
                raise OpFailed(f"{host} is localhost")
            raise OpFailed(f"{host} is not part of cluster")
        holding = [v.name for v in self.volumes.values()
                   if any(b.node == peer["uuid"] for b in v.bricks)]
        if holding:
            raise OpFailed(f"Peer {host} hosts one or more bricks. If the peer is in not "
                           "recoverable state then use either replace-brick or remove-brick "
                           "command with force to remove all bricks from the peer and "
                           "attempt the peer detach again.")
        txn = str(uuid.uuid4())
        others = [p for p in self.peers.values() if p["uuid"] != peer["uuid"]]
        locked = []
        try:
            self.take_lock(txn, f"detach of {host}")
            for p in others:
                await self.call_peer(p, "POST", "/api/v1/cluster/lock",
                                     {"txn": txn, "holder": f"detach of {host}"})
                locked.append(p)
            try:
                await self.call_peer(peer, "POST", "/api/v1/cluster/leave", {})
            except OpFailed as e:
                if not force:
                    raise OpFailed(f"{host} is not connected: {e}. Use force to detach it "
                                   "anyway") from None
            for p in others:
                await self.call_peer(p, "DELETE", f"/api/v1/cluster/peers/{peer['uuid']}")
            self.remove_peer(peer["uuid"])
        finally:
            for p in locked:
                try:
                    await self.call_peer(p, "POST", "/api/v1/cluster/unlock", {"txn": txn},
                                         timeout=10)
                except OpFailed:
                    pass
            self.release_lock(txn)

    def remove_peer(self, peer_uuid: str) -> None:
        self.peers.pop(peer_uuid, None)
        self.store.delete_peer(peer_uuid)

    async def leave(self) -> None:
        """We were detached: forget the cluster's peers and volumes."""
        for name in list(self.volumes):
            old_texts = self._volfile_texts(name)
            self.volumes.pop(name)
            await self._reconcile(name, old_texts)
            self.store.delete_volume(name)
        for peer_uuid in list(self.peers):
            self.remove_peer(peer_uuid)

    # -- status ------------------------------------------------------------------

    def local_brick_status(self, name: str | None = None) -> list[dict]:
        out = []
        for vol in self.volumes.values():
            if name is not None and vol.name != name:
                continue
            for b in vol.bricks:
                if b.node != self.uuid:
                    continue
                bp = self.bricks.get((vol.name, b.path))
                online = bool(bp and bp.running and
                              self.portmap.port_by_brick(b.path) == b.port)
                out.append({"volume": vol.name, "brick": volgen.brick_id(b),
                            "host": b.host, "path": b.path, "node": self.uuid,
                            "port": b.port if online else 0, "online": online,
                            "pid": bp.pid if bp and bp.running else None,
                            "restarts": bp.restarts if bp else 0, **_disk_use(b.path)})
        return out

    def audit(self, who: dict, op: str, args: dict, result: str) -> None:
        try:
            self.store.audit({"node": self.uuid, "who": who, "op": op, "args": args,
                              "result": result})
        except OSError as e:
            log.error("cannot write the audit log: %s", e)


__all__ = ["Glusterd", "OpFailed", "DEFAULT_PORT", "DEFAULT_WORKDIR"]
