"""glusterpyd: the management daemon, one per node - glusterd's role.

One TCP port (24007 by default) serves two protocols, told apart by the
first bytes of each connection:

* GlusterFS RPC - a record mark, whose first byte has the last-fragment bit
  (0x80) set: GETSPEC, PORTMAP and DUMP for real GlusterFS clients, our
  clients (gfapi, FUSE) and our bricks, served by `volfile_server.
  VolfileServer` over this node's volume directories;
* HTTP/1.1 - a request line, whose first byte is an ASCII letter: the REST
  API (glusterd/api.py) that the CLI, peers and future UIs use.

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

Departures: peer calls are unauthenticated HTTP (keep the management port
on a trusted network, as glusterd's 24007 must be); `volume start` fails
(and is undone) when a brick does not sign in within BRICK_UP_TIMEOUT,
where glusterd reports success once glusterfsd is spawned.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import trio

from .bricks import BrickProcess
from .http import PeerUnreachable, request, serve_http
from .ops import Cluster, prepare_brick_dirs, stage_local, unstamp
from . import ops, volgen
from .portmap import PortmapRegistry, _port_is_free
from .rebalance import RebalanceService
from .shd import ShdService
from .store import Store
from .volfile_server import VolfileServer

log = logging.getLogger("glusterpy.glusterd")

DEFAULT_WORKDIR = "/var/lib/glusterpy"
DEFAULT_PORT = 24007
LOCK_TIMEOUT = 180.0
BRICK_UP_TIMEOUT = 30.0
PEER_TIMEOUT = 60.0
PEER_CHECK_TIMEOUT = 3.0
VERSION = "glusterpy 0.1.0"


class OpFailed(Exception):
    """An operation refused or failed; the message is the CLI's reason."""


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
    they are given back first."""

    def __init__(self, stream: trio.SocketStream, prefix: bytes):
        self.stream = stream
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
        await self.stream.send_eof()

    async def aclose(self):
        await self.stream.aclose()


def tcp_peer_uid(local: tuple[str, int], remote: tuple[str, int]) -> int | None:
    """The uid owning the client end of a loopback TCP connection, from
    /proc/net/tcp[6] (the kernel's word, unlike a header the client sends)."""
    def hexaddr(addr: tuple[str, int], v6: bool) -> str | None:
        try:
            if v6:
                packed = socket.inet_pton(socket.AF_INET6, addr[0])
                words = [packed[i:i + 4][::-1].hex().upper() for i in range(0, 16, 4)]
                return "".join(words) + f":{addr[1]:04X}"
            packed = socket.inet_aton(addr[0])
            return packed[::-1].hex().upper() + f":{addr[1]:04X}"
        except OSError:
            return None
    for table, v6 in (("/proc/net/tcp", False), ("/proc/net/tcp6", True)):
        want_local, want_remote = hexaddr(remote, v6), hexaddr(local, v6)
        if want_local is None:
            continue
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 7 and f[1] == want_local and f[2] == want_remote:
                return int(f[7])
    return None


class Glusterd:
    """One node's management daemon."""

    def __init__(self, workdir: str | os.PathLike = DEFAULT_WORKDIR, *,
                 address: str = "0.0.0.0", port: int = DEFAULT_PORT,
                 hostname: str | None = None):
        self.store = Store(workdir)
        self.workdir = self.store.root
        self.address = address
        self.port = port
        self.node = self.store.open()
        self.uuid: str = self.node["uuid"]
        names = [n for n in (hostname, address) if n and n not in ("0.0.0.0", "::")]
        self.names: list[str] = names or [socket.gethostname()]
        self.peers: dict[str, dict] = self.store.peers()
        self.volumes: dict[str, dict] = self.store.volumes()
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

    # -- serving ----------------------------------------------------------

    async def serve(self, *, task_status=trio.TASK_STATUS_IGNORED) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.address, backlog=1024)
        self.port = listeners[0].socket.getsockname()[1]
        self.volfiles.address, self.volfiles.port = self.address, self.port
        from .api import make_app
        self.app = make_app(self)
        log.info("glusterpyd %s (node %s) listening on %s:%d, workdir %s", VERSION, self.uuid,
                 self.address, self.port, self.workdir)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                self.volfiles.use_nursery(nursery)
                nursery.start_soon(trio.serve_listeners, self._handle, listeners)
                for name in list(self.volumes):
                    try:
                        await self._restore(name)
                    except Exception:
                        log.exception("volume %s: restoring failed", name)
                self.started.set()
                task_status.started(self.port)
        finally:
            self._nursery = None

    @property
    def portmap_address(self) -> str:
        host = self.address if self.address not in ("0.0.0.0", "::", "") else "127.0.0.1"
        return f"{host}:{self.port}"

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            with trio.fail_after(60):
                first = await stream.receive_some(65536)
        except (trio.TooSlowError, trio.BrokenResourceError, OSError):
            await stream.aclose()
            return
        if not first:
            await stream.aclose()
            return
        if first[0] & 0x80:  # an RPC record mark: the last-fragment bit
            await self.volfiles.handle_stream(PrefixedStream(stream, first))
            return
        try:
            peer = stream.socket.getpeername()[:2]
            local = stream.socket.getsockname()[:2]
        except OSError:
            peer = local = None
        await serve_http(stream, self._app_for(peer, local), peer=peer, prefix=first)

    def _app_for(self, peer, local):
        async def app(req):
            req.headers["x-connection-uid"] = ""
            if peer is not None and ops.is_loopback(peer[0]):
                uid = tcp_peer_uid(local, peer)
                if uid is not None:
                    req.headers["x-connection-uid"] = str(uid)
            return await self.app(req)
        return app

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

    def _brick_process(self, vol: dict, brick: dict) -> BrickProcess:
        safe = brick["path"].strip("/").replace("/", "-")
        return BrickProcess(
            volume=vol["name"], path=brick["path"],
            volfile=self.store.volume_dir(vol["name"]) / volgen.brick_volfile_name(vol, brick),
            port=brick["port"], pidfile=self.store.run_dir / vol["name"] / f"{safe}.pid",
            logfile=self.store.log_dir / "bricks" / f"{safe}.log",
            portmap=self.portmap_address)

    async def _reconcile(self, name: str, old_texts: dict[str, str], *,
                         adopt: bool = False) -> None:
        """Make this node's brick processes of volume `name` match its
        document: start, reload, restart or stop them."""
        # a rebalance stops before the bricks it uses (volume stop, task ended)
        await self.rebalance.stop_unwanted(name)
        vol = self.volumes.get(name)
        local = {b["path"]: b for b in (vol or {}).get("bricks", []) if b["node"] == self.uuid}
        for key, bp in list(self.bricks.items()):
            if key[0] == name and key[1] not in local:
                bp.want(False)
                with trio.move_on_after(30):
                    await bp.stopped()
                self._supervisors.pop(key).cancel()
                del self.bricks[key]
        if vol is None:
            await self.shd.reconcile()
            return
        started = vol["status"] == "Started"
        new_texts = self._volfile_texts(name)
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
                        bp.port != brick["port"]:
                    bp.port = brick["port"]
                    await bp.restart()
                else:
                    bp.reload()
            bp.port = brick["port"]
            bp.want(started)
        if not started:
            for path in local:
                with trio.move_on_after(30):
                    await self.bricks[(name, path)].stopped()
        # ... and starts after them
        await self.rebalance.reconcile(name, adopt=adopt)
        # glusterd's shd manager runs after the bricks' (glusterd_svcs_manager)
        await self.shd.reconcile()

    async def _supervise(self, bp: BrickProcess, scope: trio.CancelScope) -> None:
        with scope:
            await bp.supervise()

    async def wait_bricks_up(self, name: str, timeout: float = BRICK_UP_TIMEOUT) -> list[str]:
        """Wait until this node's bricks of `name` signed in; the ones that
        did not, as HOST:PATH."""
        vol = self.volumes[name]
        local = [b for b in vol["bricks"] if b["node"] == self.uuid]
        procs = {b["path"]: self.bricks[(name, b["path"])] for b in local}
        restarts = {path: bp.restarts for path, bp in procs.items()}

        def up(b) -> bool:
            return self.portmap.port_by_brick(b["path"]) == b["port"] and \
                procs[b["path"]].running

        def failed(b) -> bool:  # it exited since: no need to wait for the time-out
            return procs[b["path"]].restarts > restarts[b["path"]]
        with trio.move_on_after(timeout):
            while not all(up(b) or failed(b) for b in local):
                await trio.sleep(0.1)
        return [volgen.brick_id(b) + (f" ({procs[b['path']].last_exit})" if failed(b) else "")
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
        name, old, new = plan["name"], plan["old"], plan["new"]
        mine = self.volumes.get(name)
        if (mine or {}).get("version") != (old or {}).get("version"):
            raise OpFailed(f"volume {name} changed on this node during the operation; "
                           "try again")
        taken = {b["port"] for v in self.volumes.values() for b in v["bricks"]
                 if b["node"] == self.uuid and b.get("port")}
        try:
            result = stage_local(self.uuid, self.workdir, old, new, plan.get("force", False),
                                 taken, lambda t: self.portmap.alloc_port(taken=t))
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

    def _busy_brick_ports(self, name: str, vol: dict, taken: set[int]) -> dict[str, int]:
        """`start force`: new ports for this node's bricks that are not
        running and whose port something else holds (glusterd's start force
        restarts such bricks; with a fixed port ours could not start)."""
        out = {}
        for b in vol["bricks"]:
            bp = self.bricks.get((name, b["path"]))
            if b["node"] != self.uuid or (bp is not None and bp.running):
                continue
            if not _port_is_free("", b["port"]):
                port = self.portmap.alloc_port(taken=taken)
                if port:
                    taken.add(port)
                    out[b["path"]] = port
        return out

    async def commit(self, plan: dict, rollback: bool = False) -> None:
        txn = plan["txn"]
        self.check_lock(txn)
        name = plan["name"]
        new, old = (plan["old"], plan["new"]) if rollback else (plan["new"], plan["old"])
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
        if not rollback and new is not None and new["status"] == "Started" and \
                (old is None or old["status"] != "Started" or plan["op"] == "add-brick"):
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
        host, port = self._peer_address(peer)
        try:
            status, doc = await request(host, port, method, path, body, timeout=timeout,
                                        headers={"x-glusterpy-node": self.uuid})
        except PeerUnreachable as e:
            raise OpFailed(f"{host} is not connected ({e})") from None
        if status >= 400:
            raise OpFailed((doc or {}).get("error", f"HTTP {status}"))
        return doc

    async def peer_connected(self, peer: dict) -> bool:
        host, port = self._peer_address(peer)
        try:
            status, doc = await request(host, port, "GET", "/api/v1/node",
                                        timeout=PEER_CHECK_TIMEOUT)
        except PeerUnreachable:
            return False
        return status == 200 and (doc or {}).get("uuid") == peer["uuid"]

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
                new["version"] = (old["version"] if old else 0) + 1
            plan = {"txn": txn, "op": op, "args": args, "name": name, "old": old, "new": new,
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
            result = {"volume": plan["new"]}
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

    async def probe(self, host: str, port: int, who: dict) -> str:
        if ops.is_local_address(host) and port == self.port or host in self.names and \
                port == self.port:
            return "Probe on localhost not needed"
        for peer in self.peers.values():
            if host in peer["hostnames"]:
                return f"Host {host} port {peer['port']} already in peer list"
        try:
            status, remote = await request(host, port, "GET", "/api/v1/node",
                                           timeout=PEER_CHECK_TIMEOUT * 3)
        except PeerUnreachable as e:
            raise OpFailed(f"Probe returned with Transport endpoint is not connected ({e})") \
                from None
        if status != 200 or "uuid" not in (remote or {}):
            raise OpFailed(f"{host}:{port} is not a glusterpyd")
        if remote["uuid"] == self.uuid:
            return "Probe on localhost not needed"
        if remote["uuid"] in self.peers:
            self.peers[remote["uuid"]]["hostnames"].append(host)
            self.store.save_peer(self.peers[remote["uuid"]])
            return f"Host {host} port {port} already in peer list"
        txn = str(uuid.uuid4())
        peers = list(self.peers.values())
        locked = []
        new_peer = {"uuid": remote["uuid"], "hostnames": [host], "port": port}
        try:
            self.take_lock(txn, f"probe of {host}")
            for peer in peers:
                await self.call_peer(peer, "POST", "/api/v1/cluster/lock",
                                     {"txn": txn, "holder": f"probe of {host}"})
                locked.append(peer)
            me = {"uuid": self.uuid, "hostnames": self.names, "port": self.port}
            nodes = [me] + peers
            await self.call_peer(new_peer, "POST", "/api/v1/cluster/join",
                                 {"nodes": nodes, "volumes": self.volumes})
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

    def add_peer(self, peer: dict) -> None:
        if peer["uuid"] == self.uuid:
            return
        known = self.peers.get(peer["uuid"])
        if known:
            for h in peer["hostnames"]:
                if h not in known["hostnames"]:
                    known["hostnames"].append(h)
            peer = known
        self.peers[peer["uuid"]] = peer
        self.store.save_peer(peer)

    async def join(self, nodes: list[dict], volumes: dict, seen_as: str | None) -> dict:
        """Become a peer of `nodes` (another node probed us)."""
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
        for name, vol in volumes.items():
            self.store.save_volume(vol, volgen.volfiles(vol))
            self.volumes[name] = vol
            await self._reconcile(name, {})
        return self.node_info()

    async def detach(self, host: str, force: bool) -> None:
        peer = next((p for p in self.peers.values() if host in p["hostnames"]), None)
        if peer is None:
            if ops.is_local_address(host) or host in self.names:
                raise OpFailed(f"{host} is localhost")
            raise OpFailed(f"{host} is not part of cluster")
        holding = [v["name"] for v in self.volumes.values()
                   if any(b["node"] == peer["uuid"] for b in v["bricks"])]
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
            if name is not None and vol["name"] != name:
                continue
            for b in vol["bricks"]:
                if b["node"] != self.uuid:
                    continue
                bp = self.bricks.get((vol["name"], b["path"]))
                online = bool(bp and bp.running and
                              self.portmap.port_by_brick(b["path"]) == b["port"])
                out.append({"volume": vol["name"], "brick": volgen.brick_id(b),
                            "host": b["host"], "path": b["path"], "node": self.uuid,
                            "port": b["port"] if online else 0, "online": online,
                            "pid": bp.pid if bp and bp.running else None,
                            "restarts": bp.restarts if bp else 0})
        return out

    def audit(self, who: dict, op: str, args: dict, result: str) -> None:
        try:
            self.store.audit({"node": self.uuid, "who": who, "op": op, "args": args,
                              "result": result})
        except OSError as e:
            log.error("cannot write the audit log: %s", e)


__all__ = ["Glusterd", "OpFailed", "DEFAULT_PORT", "DEFAULT_WORKDIR", "tcp_peer_uid"]
