"""GETSPEC and PORTMAP service: the part of glusterd every client talks to.

A GlusterFS client (libgfapi, the FUSE client, a brick process) starts by
asking a volfile server for its graph - HANDSHAKE GETSPEC with a key, the
volfile-id - and each protocol/client of that graph asks the portmap
(PORTMAP PORTBYBRICK) where its brick listens.  `VolfileServer` answers
both from a directory of volfiles and a `PortmapRegistry` that bricks sign
in to; `glusterpy volfile-server` runs it alone (so real clients can use
glusterpy bricks before the management daemon exists) and the management
daemon reuses it.

GETSPEC follows glusterd's server_getspec/build_volfile_path:

* a key of NAME_MAX (255) bytes or more is EINVAL; one leading '/' is
  dropped (`mount -t glusterfs host:/vol`);
* the volfile is `DIR/<key>.vol`; if there is none, `DIR/<key>.tcp-fuse.vol`
  (".tcp" is added only to a key without a dot, as glusterd does), and for
  a client on this host `DIR/trusted-<key>.tcp-fuse.vol` before it (the
  trusted volfile, with credentials, that glusterd gives local clients);
* a key with an empty, '.'-leading or '..' path component, or one that
  would leave DIR, is ENOENT, like a volume that does not exist;
* a volfile that holds credentials (Volfile.carries_credentials: a brick's,
  the self-heal daemon's, the rebalance and geo-replication graphs) is
  served only to a caller on this node (a unix socket, loopback or an
  address of this machine), EACCES to anyone else - glusterd gives its
  trusted volfiles only to local callers;
* success: op_ret is the volfile's size, the text in `spec`, no xdata
  (glusterd adds "servers-list" only when it has peers); failure: op_ret
  -1, op_errno ENOENT (EINVAL for the long key), spec "".

Reaching a brick on a non-default port.  A real GlusterFS client asks the
portmap on `remote-host`:24007 - whatever port it fetched the volfile from
(client-handshake.c connects to the default port for PORTBYBRICK) - unless
its protocol/client has `option remote-port`.  So the served volfile gets
`option remote-port <port>` for every protocol/client that has none and
whose `remote-subvolume` names a brick signed in here; the file on disk is
not changed.  When a sign-in or sign-out changes a port, the clients that
fetched a volfile here get a FETCHSPEC callback, as glusterd sends when a
volfile changes, and fetch it again.

PORTMAP follows glusterd-pmap.c: SIGNIN and SIGNOUT answer op_ret 0;
PORTBYBRICK answers the port, or op_ret -1 and port 0 for a brick it does
not know.  Departures: BRICKBYPORT, which glusterd leaves unanswered,
answers the names on that port (space-separated) or op_ret -1; a bad
SIGNIN (empty name, port out of range) is op_ret -1 EINVAL; bricks signed
in over a connection are dropped when it closes (glusterd learns the same
from its own connection to the brick).

DUMP lists GF-DUMP, Gluster Portmap and Gluster Handshake (glusterd also
lists its peer, CLI and mgmt programs, which this server does not serve).
"""

from __future__ import annotations

import errno
import glob
import ipaddress
import logging
import os
from pathlib import Path
from typing import Any

import trio

from .. import volfile as vf
from ..graph import canonical_type
from ..rpc import (ALL_PROGRAMS, DUMP, HANDSHAKE, PORTMAP, BrickByPortReply, CommonReply,
                   DumpReply, GetSpecReply, PortByBrickReply, Program, ProgramInfo,
                   ProgramTable, RpcConnection, RpcProtocolError, SigninReply, SignoutReply)
from ..rpc.dicts import old_dict_text
from ..rpc.mgmt import GF_GET_VOLUME_UUID, GetVolumeInfoReply
from ..rpc.programs import CALLBACK
from ..rpc.transport import ConnectionLost, RpcEndpoint
from .portmap import PortmapRegistry

log = logging.getLogger("glusterpy.volfile-server")

NAME_MAX = 255


def _glusterd_handshake() -> Program:
    keep = ("NULL", "GETSPEC", "GET_VOLUME_INFO")
    return Program(HANDSHAKE.number, HANDSHAKE.version, "Gluster Handshake",
                   {n: p for n, p in HANDSHAKE.procedures.items() if p.name in keep})


#: the calls a volfile server accepts
VOLFILE_SERVES = ProgramTable([DUMP, _glusterd_handshake(), PORTMAP])
#: what DUMP lists, with glusterd's names
VOLFILE_DUMP = [ProgramInfo("GF-DUMP", DUMP.number, DUMP.version),
                ProgramInfo("Gluster Portmap", PORTMAP.number, PORTMAP.version),
                ProgramInfo("Gluster Handshake", HANDSHAKE.number, HANDSHAKE.version)]

FETCHSPEC = CALLBACK.by_name("FETCHSPEC")


def fill_remote_ports(text: str, ports: dict[str, int],
                      parsed: vf.Volfile | None = None) -> str:
    """The volfile `text` (`parsed`, if it was already) with `option
    remote-port` added to each protocol/client without one whose
    remote-subvolume is in `ports`; the text unchanged if none needs it (or
    it does not parse)."""
    if parsed is None:
        try:
            parsed = vf.parses(text)
        except vf.VolfileError:
            return text
    volfile = parsed
    changed = False
    for v in volfile.volumes:
        if canonical_type(v.type or "") != "protocol/client" or "remote-port" in v.options:
            continue
        port = ports.get(v.options.get("remote-subvolume", ""))
        if port is not None:
            v.options["remote-port"] = str(port)
            changed = True
    return vf.dumps(volfile) if changed else text


class VolfileServer:
    """Serves GETSPEC from `volfile_dir` and PORTMAP from `portmap`."""

    def __init__(self, volfile_dir: str | os.PathLike, portmap: PortmapRegistry | None = None):
        self.dir = Path(volfile_dir).resolve()
        self.portmap = portmap if portmap is not None else PortmapRegistry()
        self.portmap.listeners.append(self._portmap_changed)
        self.address: str | None = None
        self.port: int | None = None
        #: connections that fetched a volfile: they get FETCHSPEC on changes
        self.spec_clients: set[RpcEndpoint] = set()
        self.connections: set[RpcEndpoint] = set()
        self._nursery: trio.Nursery | None = None

    # -- serving -------------------------------------------------------------

    async def serve(self, host: str = "0.0.0.0", port: int = 24007, *,
                    task_status=trio.TASK_STATUS_IGNORED) -> None:
        """Listen on host:port (0: any free port) and serve until cancelled;
        `task_status.started()` reports the port listened on."""
        listeners = await trio.open_tcp_listeners(port, host=host, backlog=1024)
        sockname = listeners[0].socket.getsockname()
        self.address, self.port = sockname[0], sockname[1]
        log.info("serving volfiles from %s on %s:%d", self.dir, self.address, self.port)
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started(self.port)
                await trio.serve_listeners(self.handle_stream, listeners,
                                           handler_nursery=nursery)
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                for listener in listeners:
                    await listener.aclose()

    async def handle_stream(self, stream: trio.abc.Stream, peer: str | None = None) -> None:
        """Serve one connection; `peer` names the caller HOST:PORT when the
        stream cannot tell (a TLS stream hides its socket on purpose)."""
        endpoint = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=VOLFILE_SERVES),
                               handler=self.dispatch, name="volfile-server", max_calls=64,
                               peer=peer)
        self.connections.add(endpoint)
        try:
            await endpoint.serve()
        except RpcProtocolError:
            pass  # logged by the endpoint; the connection is closed
        finally:
            self.connections.discard(endpoint)
            self.spec_clients.discard(endpoint)
            gone = self.portmap.drop_owner(endpoint)
            if gone:
                log.info("bricks %s left with their connection from %s",
                         ", ".join(gone), endpoint.peer)

    async def dispatch(self, endpoint: RpcEndpoint, call) -> Any:
        proc = call.procedure
        if proc.program == DUMP.number:
            if proc.name == "DUMP":
                return DumpReply(gfs_id=0, op_ret=0, op_errno=0, programs=list(VOLFILE_DUMP))
            if proc.name == "PING":
                return CommonReply(op_ret=0, op_errno=0)
            return None
        if proc.program == HANDSHAKE.number:
            if proc.name == "GETSPEC":
                reply = self.getspec(call.args.key, _peer_host(endpoint),
                                     local=_signs_in_here(endpoint))
                if reply.op_ret >= 0:
                    self.spec_clients.add(endpoint)
                return reply
            if proc.name == "GET_VOLUME_INFO":
                return self.volume_info(call.args.dict)
            return None
        # the portmap program
        args = call.args
        if proc.name == "PORTBYBRICK":
            port = self.portmap.port_by_brick(args.brick)
            if port is None:
                return PortByBrickReply(op_ret=-1, op_errno=0, status=0, port=0)
            return PortByBrickReply(op_ret=0, op_errno=0, status=0, port=port)
        if proc.name == "BRICKBYPORT":
            names = self.portmap.bricks_by_port(args.port)
            if not names:
                return BrickByPortReply(op_ret=-1, op_errno=0, status=0, brick="")
            return BrickByPortReply(op_ret=0, op_errno=0, status=0, brick=" ".join(names))
        if proc.name in ("SIGNIN", "SIGNOUT") and not _signs_in_here(endpoint):
            # A brick signs in from its own node; anyone else could point
            # clients at a port of theirs (glusterd trusts any caller here).
            log.warning("%s from %s refused: bricks sign in from this node only", proc.name,
                        endpoint.peer)
            return (SigninReply if proc.name == "SIGNIN" else SignoutReply)(
                op_ret=-1, op_errno=errno.EPERM)
        if proc.name == "SIGNIN":
            try:
                self.portmap.signin(args.brick, args.port, owner=endpoint, pid=args.pid)
            except ValueError as e:
                log.warning("SIGNIN from %s refused: %s", endpoint.peer, e)
                return SigninReply(op_ret=-1, op_errno=errno.EINVAL)
            log.info("brick %s signed in on port %d (pid %d, from %s)", args.brick,
                     args.port, args.pid, endpoint.peer)
            return SigninReply(op_ret=0, op_errno=0)
        if proc.name == "SIGNOUT":
            if self.portmap.signout(args.brick, args.port):
                log.info("brick %s signed out of port %d", args.brick, args.port)
            return SignoutReply(op_ret=0, op_errno=0)
        return None  # NULL

    # -- GETSPEC -------------------------------------------------------------

    def volfile_path(self, key: str, peer_host: str | None = None) -> Path | None:
        """The file that answers GETSPEC `key` (after the leading '/' is
        dropped), or None."""
        parts = key.split("/")
        if not key or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
            return None
        candidates = [f"{key}.vol"]
        fuse = key if "." in parts[-1] else f"{key}.tcp"
        if peer_host is not None and _is_local(peer_host):
            head, _, tail = fuse.rpartition("/")
            candidates.append(f"{head}/trusted-{tail}-fuse.vol" if head else
                              f"trusted-{tail}-fuse.vol")
        candidates.append(f"{fuse}-fuse.vol")
        base = self.volfile_dir(key)
        if base is None:
            return None
        for name in candidates:
            path = (base / name).resolve()
            if path.is_file() and path.is_relative_to(self.dir):
                return path
        return None

    def volfile_dir(self, key: str) -> Path | None:
        """The directory holding the volfiles of GETSPEC `key`: `dir` here;
        glusterpyd keeps each volume's volfiles in a directory of its own."""
        return self.dir

    def getspec(self, key: str, peer_host: str | None = None, *,
                local: bool = False) -> GetSpecReply:
        """The GETSPEC answer for `key` asked from `peer_host`; `local`: the
        caller is on this node (only it gets a volfile with credentials)."""
        if len(key.encode("utf-8", "surrogateescape")) >= NAME_MAX:
            log.error("GETSPEC: volume name too long (%s...)", key[:64])
            return GetSpecReply(op_ret=-1, op_errno=errno.EINVAL, spec="")
        wanted = key[1:] if key.startswith("/") else key
        path = self.volfile_path(wanted, peer_host)
        if path is None:
            log.error("GETSPEC %r from %s: no volfile", key, peer_host)
            return GetSpecReply(op_ret=-1, op_errno=errno.ENOENT, spec="")
        try:
            text = path.read_text("utf-8", "surrogateescape")
        except OSError as e:
            log.error("GETSPEC %r: %s: %s", key, path, e)
            return GetSpecReply(op_ret=-1, op_errno=errno.ENOENT, spec="")
        try:
            parsed = vf.parses(text, path.name)
        except vf.VolfileError:
            parsed = None
        if parsed is not None and parsed.carries_credentials and not local:
            # the internal user's password makes its holder a trusted client
            # (its internal pids count on a volume that squashes root): only
            # this node's own processes get it, as glusterd gives its
            # trusted volfiles to local callers only
            log.warning("GETSPEC %r from %s refused: %s holds credentials and is served "
                        "to callers on this node only", key, peer_host, path.name)
            return GetSpecReply(op_ret=-1, op_errno=errno.EACCES, spec="")
        spec = fill_remote_ports(text, self.portmap.ports(), parsed)
        log.info("GETSPEC %r from %s: %s", key, peer_host, path.name)
        return GetSpecReply.for_volfile(spec)

    # -- GET_VOLUME_INFO ---------------------------------------------------------

    def volume_info(self, request: dict | None) -> GetVolumeInfoReply:
        """What glusterd's server_get_volume_info answers glfs_get_volumeid():
        {volume_id: UUID} when the flags ask GF_GET_VOLUME_UUID; EINVAL for
        other flags or a volume not served here.  The id is the one the
        volume's volfiles carry (posix's or replicate's `volume-id`)."""
        params = old_dict_text(request)
        try:
            flags = int(params.get("flags", "0"), 0)
        except ValueError:
            flags = 0
        volname = params.get("volname", "")
        if not flags & GF_GET_VOLUME_UUID:
            return GetVolumeInfoReply(op_ret=-1, op_errno=errno.EINVAL,
                                      op_errstr="only the volume id can be asked for")
        vid = self.volume_id(volname) if volname else None
        if vid is None:
            log.info("GET_VOLUME_INFO %r: no such volume here", volname)
            return GetVolumeInfoReply(op_ret=-1, op_errno=errno.EINVAL,
                                      op_errstr=f"Volume {volname} does not exist")
        return GetVolumeInfoReply(op_ret=0, op_errno=0, dict={"volume_id": vid})

    def volume_id(self, volname: str) -> str | None:
        """The volume-id option of the volume's volfiles here, or None."""
        if "/" in volname or volname.startswith("."):
            return None
        base = self.volfile_dir(volname)
        if base is None or not base.is_dir():
            return None
        for path in sorted(base.glob(glob.escape(volname) + ".*vol")):
            try:
                parsed = vf.parses(path.read_text("utf-8", "surrogateescape"), str(path))
            except (OSError, vf.VolfileError):
                continue
            for volume in parsed.volumes:
                if volume.options.get("volume-id"):
                    return volume.options["volume-id"]
        return None

    def use_nursery(self, nursery: trio.Nursery) -> None:
        """Serve connections accepted elsewhere (`handle_stream`) - as
        glusterpyd does on its one port shared with HTTP - with `nursery`
        running the FETCHSPEC notifications."""
        self._nursery = nursery

    # -- FETCHSPEC -----------------------------------------------------------

    def _portmap_changed(self) -> None:
        if self._nursery is not None and self.spec_clients:
            self._nursery.start_soon(self.notify_fetchspec)

    async def notify_fetchspec(self) -> int:
        """Tell every client that fetched a volfile here to fetch it again
        (the FETCHSPEC callback); returns how many were told."""
        told = 0
        for endpoint in list(self.spec_clients):
            try:
                await endpoint.call(FETCHSPEC, None)
                told += 1
            except ConnectionLost:
                self.spec_clients.discard(endpoint)
        return told


def _peer_host(endpoint: RpcEndpoint) -> str | None:
    host, sep, _port = endpoint.peer.rpartition(":")
    return host if sep else None


def _signs_in_here(endpoint: RpcEndpoint) -> bool:
    """Whether the caller is on this node: a unix socket, or a TCP source
    address of one of this machine's interfaces (which no other host can
    use to reach us)."""
    from .ops import is_local_address
    host = _peer_host(endpoint)
    if endpoint.peer.startswith("unix:"):
        return True
    return host is not None and (_is_local(host) or is_local_address(host.strip("[]")))


def _is_local(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host.startswith("unix:")


__all__ = ["VolfileServer", "VOLFILE_SERVES", "VOLFILE_DUMP", "fill_remote_ports"]
