"""protocol/server: serves a brick graph to GlusterFS clients over TCP.

The top of a brick volfile, as in GlusterFS: the translators below it (the
"brick graph", e.g. features/locks over storage/posix) are what clients
reach.  It listens on `transport.socket.bind-address`:`listen-port`
(GlusterFS's option names), speaks GlusterFS's RPC (glusterpy.rpc) to any
number of clients at once, and serves the programs a GlusterFS 10 brick
serves:

* GF-DUMP (DUMP, PING) - DUMP lists the programs below, as rpcsvc does;
* GlusterFS Handshake - SETVOLUME, PING, SET_LK_VER, and GETSPEC refused
  with ENOSYS as GlusterFS's brick refuses it (EVENT_NOTIFY and the info
  procedures have no actor on a brick: PROC_UNAVAIL);
* GlusterFS 4.x v1 (1298437/400) - every fop of the catalogue.

SETVOLUME (server-handshake.c) checks, in GlusterFS's order and with its
error texts: `remote-subvolume` is given and names a translator of the
graph below ("Brick not found", ENOENT); the graph is up (EAGAIN);
`process-uuid` is given (EINVAL); a `volume-id` the client sends matches
the one the graph carries (EINVAL); `fops-version` is the fop program
(EINVAL); then authentication (xlators/protocol/auth.py: `auth.addr.*`,
`auth.login.*`, EACCES "Authentication failed").  The reply dict holds the
keys a GlusterFS 10 client reads, in GlusterFS's order: `transport-ptr`,
`clnt-lk-version`, `process-uuid`, `ERROR` ("Success" when accepted),
`volume-id`, `child_up`; op_errno is EINVAL even on success, as GlusterFS
leaves it.  Then the root is looked up once (server_first_lookup), its
failure ignored.

Clients.  A client is identified by the `process-uuid` it sends
(GlusterFS's client_uid); connections that present the same uid share one
`ServerClient` (gf_client_get's bind count) and its fd table - and, a
departure, only if they proved the same auth.login user as the client's
first (EACCES otherwise: the uuid is no secret, and the client's login is
what makes it trusted).  Every fop
runs with `fops.caller` set from the call's AUTH_GLUSTERFS_v3 credential
(uid, gid, groups, pid, lk_owner, flags, ctime) and `client` = that
ServerClient, after `root-squash`/`all-squash` as get_frame_from_request
applies them.  Departure: on a volume that squashes, the internal pid
(negative, fops.ClientPid) of a client that did not log in (auth.login
credentials, which glusterpyd gives its own clients) is replaced by 0, so
that claiming one does not pass access-control.  When the last connection of a client closes, every
translator's `client_disconnected(client)` runs (locks are dropped), then
each fd the client left open is flushed (pid 0, no lock owner) and
released, as server_connection_cleanup does.

Resolution follows server-resolve.c without an inode table: a loc is
resolved by parent gfid and basename when the request carries them,
otherwise by gfid (lookup: by name when the basename is not empty,
otherwise by gfid, and the wire gfid of a named lookup is ignored); neither
is EINVAL, a basename with '/' is EPERM.  Wire fd numbers index the
client's fd table (EBADF if unknown); -2 is the anonymous fd: an `fops.Fd`
on the gfid opened O_RDWR (plus O_DIRECT when a read or write asks for it,
fd_anonymous_with_flags) that storage/posix opens on demand and that is
released after the fop.  A released fd stays alive until the fops using it
finish (GlusterFS's fd refs).  The lock fops get `connection-id` (the
client uid) in xdata, and the request's separate lock `type` wins over the
flock's, as server4_0_lk/inodelk do.  The iatt of the root carries ino 1;
readdir sizes are capped near GlusterFS's 128 KiB page; rchecksum's strong
checksum is sent in SHA-256's 32 bytes (flags 1), as server4_post_rchecksum
does.  The reply objects carry no op_errno, so the end-of-file and
end-of-directory hints GlusterFS's posix gives beside a successful op_ret
(ENOENT when a read reaches the end of the file, or a readdir returns no
entry - a readdir that ends the directory with entries says nothing here)
are added on the wire by the server.  A fop before a successful SETVOLUME is refused with GARBAGE_ARGS
(rpc_receive_common), RELEASE with SYSTEM_ERR.

Callbacks.  A translator sends an upcall to a client by notifying
`Event.UPCALL` upwards with an `Upcall(client, message)` (message: one of
glusterpy.rpc's CacheInvalidation, RecallLease, InodelkContention,
EntrylkContention), the way GlusterFS's upcall and locks translators reach
server_notify; `Server.send_upcall` does the same directly.  CHILD_UP and
CHILD_DOWN from a subvolume are passed on to its clients as GlusterFS's
server does.

A lookup of "." by name (libgfapi resolves paths that way) is the nameless
lookup of the directory, and ".." of the root is the root: GlusterFS's
posix finds them through the filesystem path, ours refuses dot names.

TLS (`transport.socket.ssl-enabled`, volume set `server.ssl`; the files,
depth and ciphers are glusterpy.rpc.tls's `transport.socket.ssl-*`
options): every accepted connection is TLS from its first byte; a client
whose certificate does not chain to `ssl-ca-list` within `ssl-cert-depth`
(or that has none, or speaks plain RPC) fails the handshake and is logged
("refused connection from ..."), before any RPC.  The certificate's common
name becomes the SETVOLUME param `ssl-name`, which auth/login checks
against `auth.login.<subvolume>.ssl-allow` (volume set `auth.ssl-allow`);
an `ssl-name` sent by a client itself is dropped.  Bad or missing files
fail the brick's init ("ssl setup failed").  Departure: GlusterFS reads
the three files once, at socket_init; here a new connection is served with
the files as they are now (a stat of each per accepted connection), so a CA
list that `tls setup`, `tls client` or geo-replication's push-pem rewrote
admits its new certificates without restarting the bricks (a file that
no longer loads keeps the previous context, and says so in the log).

Departures: no 3.3 fop program (DUMP lists only what is served), no
subdirectory mounts (SETVOLUME answers ENOENT, which a GlusterFS client
reports as a missing subdirectory), PUT is served (GlusterFS 10's
brick has no actor for it), and `transport.listen-backlog` defaults to
1024 (what glusterd writes) rather than 10.
"""

from __future__ import annotations

import dataclasses
import errno
import heapq
import json
import os
import socket
import uuid
from dataclasses import dataclass
from typing import Any

import trio

from glusterpy.aligned import RECEIVE_BUFFERS
from glusterpy import fops
from glusterpy.fops import (ROOT_GFID, Caller, CreateReply, Fd, FopError, Loc, LookupReply,
                            OpenReply)
from glusterpy.keys import CLIENTS_XATTR, CONNECTION_ID
from glusterpy.options import Option, OptionType
from glusterpy.rpc import (ANON_FD, DUMP, FOP, FOP_PROGRAM, HANDSHAKE,
                           ALL_PROGRAMS, AuthGlusterfsV3, CacheInvalidation, CommonReply,
                           DumpReply, EntrylkContention, FopResponse, GetSpecReply,
                           InodelkContention,
                           Program, ProgramInfo, ProgramTable, RecallLease, RemoteFd,
                           RpcConnection, RpcProtocolError, SetLkVerReply, SetVolumeReply,
                           old_dict_text)
from glusterpy.fops import ClientPid
from glusterpy.rpc.message import AcceptStat
from glusterpy.rpc import tls
from glusterpy.rpc.programs import CALLBACK
from glusterpy.rpc.transport import CallRefused, ConnectionLost, RpcEndpoint
from glusterpy.xlator import Event, Translator

from .auth import SSL_NAME, AuthConfig, AuthResult, Peer, authenticate, \
    authenticated_username, is_auth_key

# The largest call an authenticated client may send.  QEMU's gluster driver
# hands libgfapi requests of up to 512 MiB (GLUSTER_MAX_TRANSFER in
# block/gluster.c) and a GlusterFS 10 brick takes such a WRITE in one record;
# the RPC default of 16 MiB would drop the connection of a
# `qemu-io -c 'write 0 32M'`.  Until SETVOLUME accepts a client its
# connection keeps that default, so a stranger cannot make the brick buffer
# more.  The margin covers the call's header and xdata.
MAX_CALL_RECORD = 512 * 1024 * 1024 + 1024 * 1024

#: struct tcp_info: the offsets of tcpi_bytes_acked and tcpi_bytes_received
#: (Linux 4.1/4.2) - the bytes a connection carried, as the kernel counts
#: them, for the BytesRead/BytesWritten columns
_TCPI_BYTES_ACKED, _TCPI_BYTES_RECEIVED, _TCP_INFO_LEN = 120, 128, 136

# --------------------------------------------------------------------------
# Options (GlusterFS's names; the auth.* wildcard keys are read by auth.py)

OPTIONS = (
    Option("transport-type", OptionType.ENUM, "tcp",
           "The transport; TCP only (GlusterFS also knows rdma and unix).",
           choices=("tcp", "socket"), reconfigurable=False),
    Option("transport.address-family", OptionType.ENUM, "inet",
           "Address family to listen on.", choices=("inet", "inet6"), reconfigurable=False),
    Option("transport.socket.listen-port", OptionType.INT, "24007",
           "TCP port to listen on (0: any free port); the brick process sets it "
           "from --port.", min=0, max=65535, reconfigurable=False),
    Option("transport.socket.bind-address", OptionType.STR, None,
           "Address to listen on (default: every address of the family).",
           reconfigurable=False),
    Option("transport.listen-backlog", OptionType.INT, "1024",
           "Length of the queue of connections not yet accepted.", min=1,
           reconfigurable=False),
    Option("transport.socket.keepalive", OptionType.BOOL, "on",
           "Use TCP keepalive on client connections."),
    Option("transport.socket.keepalive-time", OptionType.INT, "20",
           "Idle seconds before the first keepalive probe.", min=1),
    Option("transport.socket.keepalive-interval", OptionType.INT, "2",
           "Seconds between keepalive probes.", min=1),
    Option("transport.socket.keepalive-count", OptionType.INT, "9",
           "Unanswered probes before the connection is dropped.", min=1),
    Option("transport.tcp-user-timeout", OptionType.TIME, "42",
           "Seconds sent data may stay unacknowledged before the connection is "
           "dropped (TCP_USER_TIMEOUT; 0: the kernel's default).", min=0, max=1013),
    tls.ssl_enabled_option("server.ssl"),
    *tls.transport_options(),
    Option("rpc-auth-allow-insecure", OptionType.BOOL, "on",
           "Accept clients bound to unprivileged ports (>= 1024) when auth.addr "
           "rules are set.", aliases=("allow-insecure",)),
    Option("strict-auth-accept", OptionType.BOOL, "off",
           "Reject clients without a valid username and password when auth.login "
           "rules are set."),
    Option("root-squash", OptionType.BOOL, "off",
           "Map requests from uid/gid 0 to anonuid/anongid.", set_keys=("server.root-squash",)),
    Option("all-squash", OptionType.BOOL, "off",
           "Map requests from every uid/gid to anonuid/anongid.",
           set_keys=("server.all-squash",)),
    Option("anonuid", OptionType.INT, "65534",
           "uid that root-squash/all-squash map to.", min=0, max=2**32 - 1,
           set_keys=("server.anonuid",)),
    Option("anongid", OptionType.INT, "65534",
           "gid that root-squash/all-squash map to.", min=0, max=2**32 - 1,
           set_keys=("server.anongid",)),
    Option("rpc.outstanding-rpc-limit", OptionType.INT, "64",
           "Calls of one connection served at once; reading from a client stops "
           "while it has this many outstanding (0: no limit).", min=0, max=65536,
           set_keys=("server.outstanding-rpc-limit",)),
    Option("dynamic-auth", OptionType.BOOL, "on",
           "When auth options change on a live brick, disconnect the clients the new "
           "rules reject.", set_keys=("server.dynamic-auth",)),
    # the auth modules' keys (xlators/protocol/auth.py reads them)
    Option("auth.addr.*.allow", OptionType.STR, None,
           "Addresses, networks or patterns allowed to use subvolume *.",
           set_keys=("auth.allow",)),
    Option("auth.addr.*.reject", OptionType.STR, None,
           "Addresses, networks or patterns refused for subvolume * (checked first).",
           set_keys=("auth.reject",)),
    Option("auth.ip.*.allow", OptionType.STR, None,
           "The old name of auth.addr.*.allow."),
    Option("auth.login.*.allow", OptionType.STR, None,
           "User names allowed to log in to subvolume *."),
    Option("auth.login.*.password", OptionType.STR, None,
           "The password of user *."),
    Option("auth.login.*.ssl-allow", OptionType.STR, None,
           "Common names (fnmatch patterns, comma-separated; * = any) of the TLS "
           "clients' certificates allowed to use subvolume *; unset: every client "
           "whose certificate the CA list trusts.", set_keys=("auth.ssl-allow",)),
)

# GlusterFS's ctx->page_size bounds a readdir reply (server4_0_readdir[p]);
# the headroom stands for the RPC and reply headers it subtracts.
READDIR_MAX = 128 * 1024 - 128
# SHA256_DIGEST_LENGTH: the strong checksum's length on the wire
STRONG_CHECKSUM_LEN = 32
# How long a departed client's cleanup (flush, release, lock drops) may take
CLEANUP_TIMEOUT = 60.0
# Pids that spare a trusted (logged-in) client from root squashing
SQUASH_EXEMPT_PIDS = frozenset({ClientPid.NO_ROOT_SQUASH, ClientPid.GSYNCD, ClientPid.DEFRAG,
                                ClientPid.SELF_HEALD, ClientPid.QUOTA_MOUNT})

_DIR_FOPS = frozenset({"readdir", "readdirp", "fsyncdir"})
_LOCK_FOPS = frozenset({"inodelk", "finodelk", "entrylk", "fentrylk"})
_FLOCK_TYPE_FOPS = frozenset({"inodelk", "finodelk", "lk"})
#: fop -> its arguments the server resolves, as (name, is_loc): the
#: catalogue's loc and fd arguments, looked up once instead of per request
_RESOLVED_ARGS = {f.name: tuple((a.name, a.kind == "loc") for a in f.args
                                if a.kind in ("loc", "fd"))
                  for f in fops.CATALOGUE}
#: the fops _wind changes arguments of before winding them
_WIND_EXTRAS = frozenset({"open", "opendir", "create", "readdir", "readdirp"}
                         | _FLOCK_TYPE_FOPS | _LOCK_FOPS)


def _drop_refs(name: str, held: list[_OpenFd], anonymous: list[Fd]) -> list[tuple[Fd, bool]]:
    """A fop's fd references given back; the releases that are due now, as
    (fd, is_dir): fds whose RELEASE came while fops used them, and the
    anonymous fds the fop opened for itself."""
    due = []
    for entry in held:
        entry.refs -= 1
        if entry.released and entry.refs == 0:
            due.append((entry.fd, entry.is_dir))
    due.extend((fd, name in _DIR_FOPS) for fd in anonymous)
    return due


def _brick_handshake() -> Program:
    """The handshake procedures a GlusterFS brick has actors for."""
    keep = ("NULL", "SETVOLUME", "GETSPEC", "PING", "SET_LK_VER")
    return Program(HANDSHAKE.number, HANDSHAKE.version, HANDSHAKE.name,
                   {n: p for n, p in HANDSHAKE.procedures.items() if p.name in keep})


#: what a brick accepts calls for
BRICK_SERVES = ProgramTable([FOP, DUMP, _brick_handshake()])
#: what DUMP lists, in GlusterFS's order
BRICK_DUMP = [ProgramInfo(FOP.name, FOP.number, FOP.version),
              ProgramInfo(DUMP.name, DUMP.number, DUMP.version),
              ProgramInfo(HANDSHAKE.name, HANDSHAKE.number, HANDSHAKE.version)]

_UPCALL_PROCEDURES = {
    CacheInvalidation: CALLBACK.by_name("CACHE_INVALIDATION"),
    RecallLease: CALLBACK.by_name("RECALL_LEASE"),
    InodelkContention: CALLBACK.by_name("INODELK_CONTENTION"),
    EntrylkContention: CALLBACK.by_name("ENTRYLK_CONTENTION"),
}


@dataclass
class Upcall:
    """The data of an Event.UPCALL a translator sends towards the server:
    `client` is a ServerClient (what fops.caller.client holds) or its
    client_uid; `message` one of the callback program's upcall messages.
    Any object with these two attributes will do (features/locks sends its
    LockContention); a None client is local to the brick and is ignored."""

    client: Any
    message: CacheInvalidation | RecallLease | InodelkContention | EntrylkContention


def _is_upcall(data: Any) -> bool:
    return hasattr(data, "client") and type(getattr(data, "message", None)) in \
        _UPCALL_PROCEDURES


# --------------------------------------------------------------------------
# Clients and their fd tables


class _OpenFd:
    """One fd of a client's table.  `refs` counts fops using it now; a
    RELEASE marks it released and the release fop runs when refs drop to
    zero (GlusterFS's fd_ref/fd_unref)."""

    __slots__ = ("fd", "is_dir", "refs", "released")

    def __init__(self, fd: Fd, is_dir: bool):
        self.fd = fd
        self.is_dir = is_dir
        self.refs = 0
        self.released = False


class FdTable:
    """Wire fd numbers -> open fds.  Numbers start at 0 and the lowest free
    one is reused, as gf_fd_unused_get() hands them out."""

    def __init__(self) -> None:
        self._entries: dict[int, _OpenFd] = {}
        self._free: list[int] = []
        self._next = 0

    def add(self, fd: Fd, is_dir: bool) -> int:
        num = heapq.heappop(self._free) if self._free else self._next
        if num == self._next:
            self._next += 1
        self._entries[num] = _OpenFd(fd, is_dir)
        return num

    def get(self, num: int) -> _OpenFd | None:
        return self._entries.get(num)

    def pop(self, num: int) -> _OpenFd | None:
        entry = self._entries.pop(num, None)
        if entry is not None:
            heapq.heappush(self._free, num)
        return entry

    def pop_all(self) -> list[_OpenFd]:
        entries = [self._entries[n] for n in sorted(self._entries)]
        self._entries.clear()
        self._free.clear()
        self._next = 0
        return entries

    def __len__(self) -> int:
        return len(self._entries)


class ServerClient:
    """A client of the brick (GlusterFS's client_t): what `fops.caller.client`
    holds during its fops and what `client_disconnected` receives.
    `client_uid` is the process-uuid it sent at SETVOLUME, stable for the
    life of the client's graph."""

    def __init__(self, server: "Server", client_uid: str, bound: Translator,
                 params: dict[str, str], peer: Peer, username: str | None):
        self.server = server
        self.client_uid = client_uid
        self.bound = bound
        self.subvolume = bound.name
        self.params = params
        self.process_name = params.get("process-name", "unknown")
        self.client_version = params.get("client-version")
        self.peer = peer
        self.username = username
        #: its internal pid was dropped once (logged once, _caller)
        self.pid_dropped = False
        self.fds = FdTable()
        self.connections: set[_Connection] = set()

    async def send_upcall(self, message) -> int:
        """Send a callback to this client; returns on how many of its
        connections it went out."""
        return await self.server.send_upcall(self, message)

    def __str__(self) -> str:
        return self.client_uid

    def __repr__(self) -> str:
        return f"<ServerClient {self.client_uid} from {self.peer} on {self.subvolume}>"


class _Connection:
    """One accepted TCP connection and the client it is bound to."""

    def __init__(self, server: "Server", stream, peer: Peer):
        self.server = server
        self.peer = peer
        #: the common name of a TLS client's certificate (None: not TLS)
        self.ssl_name: str | None = None
        self.client: ServerClient | None = None
        #: (credential, client, the server's opts, the Caller made of them):
        #: the connection's decoder hands out the same credential object for
        #: the same credential bytes (rpc.auth.CredentialCache), and a Caller
        #: is immutable, so the next call with all three the same reuses it
        self.last_caller: tuple | None = None
        self.endpoint: RpcEndpoint = RpcEndpoint(
            stream, RpcConnection(ALL_PROGRAMS, serves=BRICK_SERVES),
            handler=server._dispatch, name=server.name, peer=str(peer),
            max_calls=server.opts["rpc.outstanding-rpc-limit"] or None,
            receive_buffers=RECEIVE_BUFFERS.take)
        self.endpoint.context["connection"] = self


# --------------------------------------------------------------------------
# The translator


class Server(Translator):
    """protocol/server: see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (1, None)

    def __init__(self, name, options=None, children=()):
        super().__init__(name, options, children)
        #: the TLS server context (init), None without transport.socket.ssl-enabled
        self.tls: tls.TlsConfig | None = None
        self._tls_context = None
        #: the (inode, size, mtime) of the files _tls_context was made from
        self._tls_files: tuple | None = None
        self.auth = self._auth_config()
        self.process_uuid = str(uuid.uuid4())
        self.clients: dict[str, ServerClient] = {}
        self.connections: set[_Connection] = set()
        self.child_up: dict[str, bool] = {c.name: False for c in self.children}
        self.listeners: list[trio.SocketListener] = []
        #: the address and port actually listened on (after init)
        self.address: str | None = None
        self.port: int | None = None
        self._parent_up = False
        self._accepting = trio.CancelScope()
        self._served: trio.Event | None = None

    def _auth_config(self) -> AuthConfig:
        given = {k: v for k, v in self.opts.given.items() if is_auth_key(k)}
        return AuthConfig.from_options(given, strict=self.opts["strict-auth-accept"],
                                       allow_insecure=self.opts["rpc-auth-allow-insecure"])

    # -- life cycle ------------------------------------------------------------

    async def init(self) -> None:
        if self.opts["transport.socket.ssl-enabled"]:
            # socket_init: the files are read once, a failure fails the brick
            self.tls = tls.TlsConfig.from_options(self.opts)
            try:
                self._tls_files = self._tls_file_stamps()
                self._tls_context = self.tls.context(server_side=True)
            except tls.TlsError as e:
                raise tls.TlsError(e.errno, f"{self.name}: ssl setup failed: "
                                            f"{e.strerror}") from None
            self.log.info("SSL support on the I/O path is ENABLED, certificate depth is "
                          "%d, CA list %s", self.tls.cert_depth, self.tls.ca_list)
        inet6 = self.opts["transport.address-family"] == "inet6"
        host = self.opts["transport.socket.bind-address"] or ("::" if inet6 else "0.0.0.0")
        port = self.opts["transport.socket.listen-port"]
        try:
            self.listeners = await trio.open_tcp_listeners(
                port, host=host, backlog=self.opts["transport.listen-backlog"])
        except OSError as e:
            raise OSError(e.errno, f"{self.name}: cannot listen on {host}:{port}: "
                                   f"{e.strerror}") from None
        sockname = self.listeners[0].socket.getsockname()
        self.address, self.port = sockname[0], sockname[1]
        for child in self.children:
            if not self.auth.has_rules_for(child.name):
                self.log.warning("no auth.addr.%s.allow (or auth.login) option: every "
                                 "client of %s will be refused, as GlusterFS does",
                                 child.name, child.name)
        self.log.info("listening on %s:%d", self.address, self.port)
        self._served = trio.Event()
        self.spawn(self._serve)

    async def fini(self) -> None:
        """Stop accepting, close every connection (their cleanup releases the
        clients' fds and locks), then return; the graph finis the rest."""
        self._accepting.cancel()
        for listener in self.listeners:
            await listener.aclose()
        for conn in list(self.connections):
            await conn.endpoint.aclose()
        if self._served is not None:
            with trio.move_on_after(CLEANUP_TIMEOUT):
                await self._served.wait()

    def options_changed(self, old) -> None:
        self.auth = self._auth_config()
        if self.opts["dynamic-auth"] and self.nursery is not None and self.connections:
            self.spawn(self._reauthenticate)

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.PARENT_UP:
            self._parent_up = True
        elif event in (Event.CHILD_UP, Event.CHILD_DOWN) and source in self.children:
            up = event == Event.CHILD_UP
            changed = self.child_up.get(source.name) != up
            self.child_up[source.name] = up
            if changed and self.nursery is not None and self.connections:
                self.spawn(self._tell_clients, source, up)
        elif event == Event.UPCALL and _is_upcall(data):
            if self.nursery is not None and data.client is not None:
                self.spawn(self._send_upcall_quietly, data)
            return
        super().notify(event, source, data)

    def dump_state(self) -> dict:
        return {"address": self.address, "port": self.port,
                "connections": len(self.connections),
                "clients": {uid: {"subvolume": c.subvolume, "fds": len(c.fds),
                                  "connections": len(c.connections), "peer": str(c.peer)}
                            for uid, c in self.clients.items()}}

    def _clients_report(self, asking: _Connection) -> fops.Reply | FopError:
        """CLIENTS_XATTR's answer: one row per bound connection but the
        asker's (gluster's `volume status clients` lists transports, each
        with its address, bytes and op-version)."""
        if not _is_loopback(asking.peer):
            return FopError(errno.EPERM, f"{CLIENTS_XATTR} is for this node's glusterd")
        rows = []
        for conn in list(self.connections):
            client = conn.client
            if client is None or conn is asking:
                continue
            read, written = _tcp_bytes(conn.endpoint.stream)
            rows.append({"hostname": f"{conn.peer.host}:{conn.peer.port}",
                         "bytes_read": read, "bytes_written": written,
                         "op_version": _int(client.params.get("opversion")) or None,
                         "process_name": client.process_name,
                         "client_uid": client.client_uid, "subvolume": client.subvolume,
                         "fds": len(client.fds)})
        rows.sort(key=lambda r: r["hostname"])
        return fops.DictReply({CLIENTS_XATTR: json.dumps({"clients": rows}).encode()})

    # -- connections -------------------------------------------------------------

    async def _serve(self) -> None:
        try:
            async with trio.open_nursery() as connections:
                with self._accepting:
                    await trio.serve_listeners(self._handle_stream, self.listeners,
                                               handler_nursery=connections)
        finally:
            self._served.set()

    async def _handle_stream(self, stream: trio.SocketStream) -> None:
        peer = _peer_of(stream.socket)
        self._tune_socket(stream)
        ssl_name = None
        if self._tls_context is not None:
            self._refresh_tls_context()
            try:
                stream = await tls.handshake(stream, self._tls_context, server_side=True,
                                             cert_depth=self.tls.cert_depth, peer=str(peer))
            except tls.TlsError as e:
                self.log.warning("refused connection from %s: %s", peer, e.strerror)
                return
            ssl_name = tls.common_name(stream) or ""
            self.log.info("TLS connection from %s, certificate CN %r", peer, ssl_name)
        conn = _Connection(self, stream, peer)
        conn.ssl_name = ssl_name
        self.connections.add(conn)
        self.log.debug("accepted connection from %s", peer)
        try:
            await conn.endpoint.serve()
        except RpcProtocolError:
            pass  # RpcEndpoint logged what the peer sent; the connection is closed
        except Exception:
            # whatever went wrong belongs to this connection alone: the brick
            # serves on (the endpoint is closed by now)
            self.log.exception("connection from %s failed", peer)
        finally:
            self.connections.discard(conn)
            with trio.CancelScope(shield=True):
                await self._connection_closed(conn)

    def _tls_file_stamps(self) -> tuple:
        stamps = []
        for path in (self.tls.own_cert, self.tls.private_key, self.tls.ca_list):
            try:
                s = os.stat(path)
                stamps.append((s.st_ino, s.st_size, s.st_mtime_ns))
            except OSError:
                stamps.append(None)
        return tuple(stamps)

    def _refresh_tls_context(self) -> None:
        """The context again from the files when one of them changed since
        it was made (the module docstring's departure)."""
        stamps = self._tls_file_stamps()
        if stamps == self._tls_files:
            return
        self._tls_files = stamps
        try:
            self._tls_context = self.tls.context(server_side=True)
        except tls.TlsError as e:
            self.log.error("the TLS files changed and do not load (%s): new connections "
                           "keep the previous ones", e.strerror)
            return
        self.log.info("the TLS files changed: new connections use them (CA list %s)",
                      self.tls.ca_list)

    def _tune_socket(self, stream: trio.SocketStream) -> None:
        sock = stream.socket
        try:
            stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, True)
            if self.opts["transport.socket.keepalive"]:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE,
                                self.opts["transport.socket.keepalive-time"])
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL,
                                self.opts["transport.socket.keepalive-interval"])
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT,
                                self.opts["transport.socket.keepalive-count"])
            timeout = self.opts["transport.tcp-user-timeout"]
            if timeout:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, timeout * 1000)
        except OSError as e:  # a connection already reset, or an exotic kernel
            self.log.debug("socket options for %s: %s", stream, e)

    async def _connection_closed(self, conn: _Connection) -> None:
        client = conn.client
        conn.client = None
        self.log.debug("connection from %s closed", conn.peer)
        if client is not None:
            await self._unbind(conn, client)

    async def _unbind(self, conn: _Connection, client: ServerClient) -> None:
        """Drop one connection of a client; the last one takes the client,
        its locks and its fds with it (gf_client_put, then
        server_connection_cleanup)."""
        client.connections.discard(conn)
        if client.connections or self.clients.get(client.client_uid) is not client:
            return
        del self.clients[client.client_uid]
        self.log.info("disconnecting client %s (%s, %d open fds)", client.client_uid,
                      client.peer, len(client.fds))
        token = fops.caller.set(Caller(client=client))
        try:
            with trio.move_on_after(CLEANUP_TIMEOUT) as timer:
                for xl in self._descendants():
                    try:
                        await xl.client_disconnected(client)
                    except Exception:
                        self.log.exception("%s: client_disconnected failed", xl.name)
                for entry in client.fds.pop_all():
                    entry.released = True
                    if not entry.is_dir:
                        try:
                            await client.bound.flush(entry.fd, None)
                        except FopError as e:
                            self.log.debug("flush on disconnect: %s", e)
                    if entry.refs == 0:
                        await self._release(client, entry.fd, entry.is_dir)
            if timer.cancelled_caught:
                self.log.error("cleanup of client %s took over %.0f s; gave up",
                               client.client_uid, CLEANUP_TIMEOUT)
        finally:
            fops.caller.reset(token)

    def _descendants(self) -> list[Translator]:
        """Every translator below the server, top-down, each once."""
        out: list[Translator] = []
        seen: set[int] = set()
        stack = list(reversed(self.children))
        while stack:
            xl = stack.pop()
            if id(xl) in seen:
                continue
            seen.add(id(xl))
            out.append(xl)
            stack.extend(reversed(xl.children))
        return out

    def find_subvolume(self, name: str) -> Translator | None:
        for xl in self._descendants():
            if xl.name == name:
                return xl
        return None

    # -- dispatch ----------------------------------------------------------------

    async def _dispatch(self, endpoint: RpcEndpoint, call) -> Any:
        proc = call.procedure
        conn: _Connection = endpoint.context["connection"]
        if proc.program == FOP_PROGRAM:
            if proc.number == 0:
                return None
            # _serve_fop's work in line: a coroutine frame fewer per request
            client = conn.client
            req = call.args
            name = req.fop.name
            if client is None:
                # rpc_receive_common: no bound subvolume, the handshake
                # failed or never happened; RELEASE says SYSTEM_ERR
                raise CallRefused(AcceptStat.SYSTEM_ERR if name in ("release", "releasedir")
                                  else AcceptStat.GARBAGE_ARGS, f"{name} before SETVOLUME")
            if name == "getxattr" and req.args.get("name") == CLIENTS_XATTR:
                return self._clients_report(conn)
            last = conn.last_caller
            if last is not None and last[0] is call.cred and last[1] is client \
                    and last[2] is self.opts:
                caller = last[3]
            else:
                caller = self._caller(call.cred, client)
                conn.last_caller = (call.cred, client, self.opts, caller)
            token = fops.caller.set(caller)
            try:
                if name in ("release", "releasedir"):
                    return await self._serve_release(client, req)
                return await self._wind(client, req)
            finally:
                fops.caller.reset(token)
        if proc.program == DUMP.number:
            if proc.name == "DUMP":
                return DumpReply(gfs_id=0, op_ret=0, op_errno=0, programs=list(BRICK_DUMP))
            if proc.name == "PING":
                return CommonReply(op_ret=0, op_errno=0)
            return None
        # the handshake program
        if proc.name == "SETVOLUME":
            return await self._setvolume(conn, call.args)
        if proc.name == "PING":
            return CommonReply(op_ret=0, op_errno=0)
        if proc.name == "GETSPEC":
            return GetSpecReply(op_ret=-1, op_errno=errno.ENOSYS,
                                spec="<this method is not in use, use glusterd for getspec>")
        if proc.name == "SET_LK_VER":
            return SetLkVerReply(op_ret=0, op_errno=0, lk_ver=call.args.lk_ver)
        return None  # NULL

    # -- SETVOLUME ---------------------------------------------------------------

    async def _setvolume(self, conn: _Connection, request) -> SetVolumeReply:
        params = old_dict_text(request.dict)
        # only the transport may say who a TLS client is (server_setvolume
        # sets ssl-name from trans->ssl_name)
        params.pop(SSL_NAME, None)
        if conn.ssl_name is not None:
            params[SSL_NAME] = conn.ssl_name
        reply: dict[str, Any] = {}
        op_ret, op_errno, error = await self._check_setvolume(conn, params, reply)
        if error is not None:
            reply["ERROR"] = error
        if op_ret < 0:
            self.log.warning("SETVOLUME from %s (%s) refused: %s", conn.peer,
                             params.get("process-uuid", "?"), error)
        # GlusterFS's dict_serialize walks the pairs newest first
        return SetVolumeReply(op_ret=op_ret, op_errno=op_errno,
                              dict=dict(reversed(list(reply.items()))))

    async def _check_setvolume(self, conn: _Connection, params: dict[str, str],
                               reply: dict) -> tuple[int, int, str | None]:
        name = params.get("remote-subvolume")
        if name is None:
            return -1, errno.EINVAL, "No remote-subvolume option specified"
        xl = self.find_subvolume(name)
        if not self._parent_up:
            return -1, errno.EAGAIN, ("xlator graph in server is not initialised yet. "
                                      "Try again later")
        if name in self.child_up:
            reply["child_up"] = int(self.child_up[name])
            if not self.child_up[name]:
                return -1, errno.EAGAIN, "Not received child_up for this xlator"
        client_uid = params.get("process-uuid")
        if client_uid is None:
            return -1, errno.EINVAL, "UUID not specified"
        if xl is not None:
            volume_id = _volume_id(xl)
            if volume_id is not None:
                theirs = params.get("volume-id")
                if theirs is not None and theirs != volume_id:
                    return -1, errno.EINVAL, ("Volume-ID different, possible case of same "
                                              "brick re-used in another volume")
                reply["volume-id"] = volume_id
        subdir = params.get("subdir-mount")
        if subdir not in (None, "", "/"):
            return -1, errno.ENOENT, (f"subdirectory for mount \"{subdir}\" is not found: "
                                      f"this brick does not serve subdirectory mounts")
        fops_version = _int(params.get("fops-version"))
        if fops_version != FOP_PROGRAM:
            return -1, errno.EINVAL, (f"version mismatch: client({fops_version}) - "
                                      f"client-mgmt({_int(params.get('mgmt-version'))})")
        result, why = await authenticate(self.auth, name, params, conn.peer)
        if result is not AuthResult.ACCEPT:
            self.log.error("cannot authenticate client %s from %s: %s", client_uid,
                           conn.peer, why)
            if xl is None:
                return -1, errno.ENOENT, "Brick not found"
            return -1, errno.EACCES, "Authentication failed"
        if xl is None:  # accepted, yet nothing of that name to bind to
            return -1, errno.ENOENT, "Brick not found"
        known = self.clients.get(client_uid)
        if known is not None and \
                authenticated_username(self.auth, xl.name, params) != known.username:
            # connections of one process-uuid share one client and its
            # trust; the uuid is no secret (volume status clients, the
            # logs), so a connection that did not prove the same user may
            # not join it - a rogue could otherwise borrow a logged-in
            # client's trust (GlusterFS keeps the first connection's)
            self.log.error("client %s from %s: that process-uuid is bound with another "
                           "login", client_uid, conn.peer)
            return -1, errno.EACCES, "Authentication failed"
        client = self._bind(conn, client_uid, xl, params)
        conn.endpoint.conn.max_record_size = MAX_CALL_RECORD
        self.log.info("accepted client from %s (version: %s) with subvol %s",
                      client_uid, params.get("client-version", "old"), name)
        reply["ERROR"] = "Success"
        reply["process-uuid"] = self.process_uuid
        reply["clnt-lk-version"] = 0
        reply["transport-ptr"] = id(conn) & 0xFFFFFFFFFFFF
        await self._first_lookup(client)
        # GlusterFS leaves op_errno at its initial EINVAL when it succeeds
        return 0, errno.EINVAL, None

    def _bind(self, conn: _Connection, client_uid: str, xl: Translator,
              params: dict[str, str]) -> ServerClient:
        client = self.clients.get(client_uid)
        if client is None:
            username = authenticated_username(self.auth, xl.name, params)
            client = ServerClient(self, client_uid, xl, params, conn.peer, username)
            self.clients[client_uid] = client
        else:
            client.bound, client.subvolume = xl, xl.name
        old = conn.client
        conn.client = client
        client.connections.add(conn)
        if old is not None and old is not client:
            # a second SETVOLUME with another identity: the old one goes
            self.spawn(self._unbind, conn, old)
        return client

    async def _first_lookup(self, client: ServerClient) -> None:
        """server_first_lookup(): look the root up once; a failure is logged,
        not reported (a snapshot brick may answer ESTALE)."""
        token = fops.caller.set(Caller(client=client))
        try:
            await client.bound.lookup(Loc.root(), None)
        except FopError as e:
            self.log.error("lookup on root failed: %s", e)
        finally:
            fops.caller.reset(token)

    async def _reauthenticate(self) -> None:
        """dynamic-auth: check the connected clients against new rules."""
        for conn in list(self.connections):
            client = conn.client
            if client is None:
                continue
            result, why = await authenticate(self.auth, client.subvolume, client.params,
                                             conn.peer)
            if result is not AuthResult.ACCEPT:
                self.log.info("disconnecting %s after an auth change: %s", conn.peer, why)
                await conn.endpoint.aclose()

    # -- fops ----------------------------------------------------------------------

    def _caller(self, cred, client: ServerClient) -> Caller:
        if isinstance(cred, AuthGlusterfsV3):
            uid, gid, groups, pid = cred.uid, cred.gid, cred.groups, cred.pid
            lk_owner, flags = cred.lk_owner, cred.flags
            ctime = cred.ctime_sec * 1_000_000_000 + cred.ctime_nsec \
                if (cred.ctime_sec or cred.ctime_nsec) else None
        elif hasattr(cred, "caller"):  # v2, v1, AUTH_UNIX
            c = cred.caller()
            uid, gid, groups, pid, lk_owner, flags, ctime = (c.uid, c.gid, c.groups, c.pid,
                                                            c.lk_owner, 0, None)
        else:  # AUTH_NULL: rpcsvc leaves the request's ids zero
            uid = gid = pid = flags = 0
            groups, lk_owner, ctime = (), b"", None
        opts = self.opts
        squashes = opts.root_squash or opts.all_squash
        if squashes and pid < 0 and client.username is None:
            # An internal pid (fops.ClientPid) lets a fop pass access-control
            # and changes what changelog, posix, io-threads and replicate do
            # with it; from a client that did not log in it is only its word.
            # On a volume that squashes, where a client's word is not enough
            # to be root, it is not enough to be internal either: the fop
            # runs as an application's (pid 0).  glusterpyd's own clients log
            # in (volgen's internal user).  A TLS certificate alone does not
            # make a client trusted: auth.ssl-allow admits mounts as well.
            if not client.pid_dropped:
                client.pid_dropped = True
                self.log.info("client %s from %s is not logged in: its internal pid %d "
                              "is dropped (the volume squashes root)", client.client_uid,
                              client.peer, pid)
            pid = 0
        if squashes and not (client.username is not None and pid in SQUASH_EXEMPT_PIDS):
            anonuid, anongid = opts.anonuid, opts.anongid
            if opts.all_squash:
                uid, gid, groups = anonuid, anongid, tuple(anongid for _ in groups)
            else:
                uid = anonuid if uid == 0 else uid
                gid = anongid if gid == 0 else gid
                groups = tuple(anongid if g == 0 else g for g in groups)
        return Caller(uid=uid, gid=gid, groups=tuple(groups), pid=pid, lk_owner=lk_owner,
                      client=client, flags=flags, ctime_ns=ctime)

    async def _wind(self, client: ServerClient, req) -> Any:
        fop = req.fop
        name = fop.name
        args = req.args
        xdata = req.xdata
        held: list[_OpenFd] = []
        anonymous: list[Fd] = []
        dot_lookup = name == "lookup" and args["loc"].name in (".", "..")
        opened = None
        try:
            for arg_name, is_loc in _RESOLVED_ARGS[name]:
                if is_loc:
                    args[arg_name] = _resolve_loc(name, args[arg_name])
                elif args[arg_name] is not None:
                    args[arg_name] = self._resolve_fd(client, name, args, args[arg_name],
                                                      held, anonymous)
            if name in _WIND_EXTRAS:
                if name == "open":
                    opened = args["fd"] = Fd(args["loc"].gfid, args["flags"])
                elif name == "opendir":
                    opened = args["fd"] = Fd(args["loc"].gfid, 0, is_dir=True)
                elif name == "create":
                    opened = args["fd"] = Fd(None, args["flags"])
                elif name in ("readdir", "readdirp"):
                    args["size"] = min(args["size"], READDIR_MAX)
                if name in _FLOCK_TYPE_FOPS and "type" in req.extra:
                    # the request's own lock type wins over the flock's
                    args["flock"] = dataclasses.replace(args["flock"], type=req.extra["type"])
                if name in _LOCK_FOPS:
                    xdata = dict(xdata or {})
                    xdata[CONNECTION_ID] = client.client_uid
            reply = await getattr(client.bound, name)(**args, xdata=xdata)
        except FopError as e:
            self.log.debug("%s from %s failed: %s", name, client.client_uid, e)
            return e
        finally:
            # only a release now due (the fd's RELEASE came meanwhile, or an
            # anonymous fd) awaits, shielded; the common case gives its
            # references back without a cancel scope
            due = _drop_refs(name, held, anonymous)
            if due:
                with trio.CancelScope(shield=True):
                    for fd, is_dir in due:
                        await self._release(client, fd, is_dir)
        if opened is not None:
            num = client.fds.add(opened, opened.is_dir)
            if name == "create":
                return CreateReply(RemoteFd(None, num), reply.iatt, reply.preparent,
                                   reply.postparent, xdata=reply.xdata)
            return OpenReply(RemoteFd(None, num), xdata=reply.xdata)
        if name == "lookup" and isinstance(reply, LookupReply):
            if reply.iatt.gfid == ROOT_GFID:
                reply = dataclasses.replace(reply, iatt=dataclasses.replace(reply.iatt, ino=1))
            if dot_lookup and reply.postparent is None:
                # "." looked up by name: the directory it is in is itself
                reply = dataclasses.replace(reply, postparent=reply.iatt)
        elif name == "rchecksum" and len(reply.strong) < STRONG_CHECKSUM_LEN:
            reply = dataclasses.replace(
                reply, strong=bytes(reply.strong).ljust(STRONG_CHECKSUM_LEN, b"\0"))
        elif name == "readv" and reply.iatt is not None:
            # posix_readv's end-of-file hint: op_errno ENOENT beside a
            # successful op_ret when the read reached the end of the file
            count = len(reply.data)
            if not reply.iatt.size or args["offset"] + count >= reply.iatt.size:
                return FopResponse(req.fop, reply, count, errno.ENOENT)
        elif name in ("readdir", "readdirp") and not reply.entries:
            # and posix's end-of-directory hint, which distribute reads
            return FopResponse(req.fop, reply, 0, errno.ENOENT)
        return reply

    def _resolve_fd(self, client: ServerClient, name: str, args: dict, remote: RemoteFd,
                    held: list, anonymous: list) -> Fd:
        num = remote.num
        if num == ANON_FD:
            # fd_anonymous[_with_flags]: O_RDWR, keeping O_DIRECT of a read/write
            if remote.gfid is None:
                raise FopError(errno.ENOENT, "anonymous fd without a gfid")
            flags = os.O_RDWR
            if name in ("readv", "writev"):
                flags |= args["flags"] & os.O_DIRECT
            fd = Fd(remote.gfid, flags)
            anonymous.append(fd)
            return fd
        entry = client.fds.get(num)
        if entry is None:
            raise FopError(errno.EBADF, f"fd {num} is not open")
        entry.refs += 1
        held.append(entry)
        return entry.fd

    async def _put_fds(self, client: ServerClient, name: str, held: list[_OpenFd],
                       anonymous: list[Fd]) -> None:
        """Give a fop's fd references back and run the releases now due."""
        for fd, is_dir in _drop_refs(name, held, anonymous):
            await self._release(client, fd, is_dir)

    async def _release(self, client: ServerClient, fd: Fd, is_dir: bool) -> None:
        try:
            if is_dir:
                await client.bound.releasedir(fd, None)
            else:
                await client.bound.release(fd, None)
        except FopError as e:
            self.log.debug("release of %r: %s", fd, e)

    async def _serve_release(self, client: ServerClient, req) -> fops.Reply:
        """RELEASE/RELEASEDIR: the number leaves the table at once; the
        release fop runs now, or when the last fop using the fd ends.  An
        unknown number is not an error (gf_fd_put ignores it)."""
        entry = client.fds.pop(req.args["fd"].num)
        if entry is not None:
            entry.released = True
            if entry.refs == 0:
                await self._release(client, entry.fd, entry.is_dir)
        return fops.Reply()

    # -- callbacks ---------------------------------------------------------------

    async def send_upcall(self, client: ServerClient | str, message) -> int:
        """Send an upcall (CACHE_INVALIDATION, RECALL_LEASE, *_CONTENTION) to
        every connection of a client; returns how many it went out on."""
        procedure = _UPCALL_PROCEDURES.get(type(message))
        if procedure is None:
            raise TypeError(f"{type(message).__name__} is not an upcall message")
        uid = client if isinstance(client, str) else client.client_uid
        target = self.clients.get(uid)
        if target is None:
            return 0
        sent = 0
        for conn in list(target.connections):
            try:
                await conn.endpoint.call(procedure, message)
                sent += 1
            except ConnectionLost:
                pass
        return sent

    async def _send_upcall_quietly(self, upcall: Upcall) -> None:
        try:
            await self.send_upcall(upcall.client, upcall.message)
        except Exception:
            self.log.exception("upcall to %s failed", upcall.client)

    async def _tell_clients(self, child: Translator, up: bool) -> None:
        """CHILD_UP/CHILD_DOWN callbacks to the clients of a subvolume."""
        procedure = CALLBACK.by_name("CHILD_UP" if up else "CHILD_DOWN")
        below = {xl.name for xl in _subtree(child)}
        for conn in list(self.connections):
            if conn.client is not None and conn.client.subvolume in below:
                try:
                    await conn.endpoint.call(procedure, None)
                except ConnectionLost:
                    pass


TRANSLATOR = Server


# --------------------------------------------------------------------------
# Helpers


def _resolve_loc(fop_name: str, loc: Loc) -> Loc:
    """server_resolve(): by parent gfid and basename, else by gfid."""
    if fop_name == "lookup":
        if loc.name is not None:
            if loc.pargfid is None:
                raise FopError(errno.EINVAL, "lookup of a name without a parent gfid")
            if loc.name == "." or (loc.name == ".." and loc.pargfid == ROOT_GFID):
                # libgfapi looks "." up by name (glfs_resolve_component);
                # GlusterFS's posix finds the directory itself through the
                # path, ours refuses dot names, so it becomes the nameless
                # lookup of the directory (".." of the root is the root)
                return _inode_loc(loc.pargfid)
            return _entry_loc(loc)
        if loc.gfid is None:
            raise FopError(errno.EINVAL, "nameless lookup without a gfid")
        return _inode_loc(loc.gfid)
    if loc.pargfid is not None:
        if loc.name is None:
            raise FopError(errno.EINVAL, f"{fop_name}: an entry without a basename")
        return _entry_loc(loc)
    if loc.gfid is not None:
        return _inode_loc(loc.gfid)
    raise FopError(errno.EINVAL, f"{fop_name}: nothing to resolve (no gfid, no parent)")


def _entry_loc(loc: Loc) -> Loc:
    if "/" in loc.name:
        # resolve_entry_simple: a basename may not span directories
        raise FopError(errno.EPERM, f"basename {loc.name!r} contains '/'")
    return Loc(pargfid=loc.pargfid, name=loc.name)


def _inode_loc(gfid) -> Loc:
    return Loc(path="/", gfid=gfid) if gfid == ROOT_GFID else Loc(gfid=gfid)


def _volume_id(xl: Translator) -> str | None:
    """The volume-id the bound graph carries (io-stats or posix option)."""
    for t in _subtree(xl):
        given = t.opts.given.get("volume-id")
        if given:
            return given.strip()
    return None


def _subtree(xl: Translator) -> list[Translator]:
    out, stack, seen = [], [xl], set()
    while stack:
        t = stack.pop()
        if id(t) not in seen:
            seen.add(id(t))
            out.append(t)
            stack.extend(t.children)
    return out


def _int(text: str | None) -> int:
    try:
        return int(text) if text is not None else 0
    except ValueError:
        return 0


def _is_loopback(peer: Peer) -> bool:
    return peer.host.startswith("127.") or peer.host == "::1"


def _tcp_bytes(stream) -> tuple[int | None, int | None]:
    """(bytes received, bytes sent and acknowledged) on the connection under
    `stream` (TLS or not), from TCP_INFO; None where the kernel cannot say."""
    sock = getattr(stream, "socket", None) or \
        getattr(getattr(stream, "transport_stream", None), "socket", None)
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
    except (AttributeError, OSError):
        return None, None
    if len(info) < _TCP_INFO_LEN:
        return None, None
    return (int.from_bytes(info[_TCPI_BYTES_RECEIVED:_TCPI_BYTES_RECEIVED + 8], "little"),
            int.from_bytes(info[_TCPI_BYTES_ACKED:_TCPI_BYTES_ACKED + 8], "little"))


def _peer_of(sock) -> Peer:
    try:
        addr = sock.getpeername()
    except OSError:
        return Peer("(unconnected)", 0, sock.family)
    if sock.family == socket.AF_UNIX:
        return Peer(str(addr), 0, socket.AF_UNIX)
    host = addr[0]
    if host.startswith("::ffff:") and "." in host:
        host = host[7:]  # an IPv4 client of an inet6 listener
    return Peer(host, addr[1], sock.family)


__all__ = ["Server", "ServerClient", "Upcall", "FdTable", "OPTIONS", "BRICK_SERVES",
           "BRICK_DUMP", "TRANSLATOR"]
