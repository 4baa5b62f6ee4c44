"""protocol/client: the leaf of a client graph that sends every fop to a brick.

It speaks GlusterFS's own wire protocol, so the brick may be a GlusterFS 10
glusterfsd or a glusterpy brick.  The behaviour follows GlusterFS 10's
xlators/protocol/client (client.c, client-handshake.c, client-helpers.c,
client-callback.c) and rpc/rpc-lib (rpc-clnt.c, rpc-clnt-ping.c):

Connecting (started by PARENT_UP, as rpc_clnt_start is):
  1. TCP to `remote-host` at `remote-port`, or at glusterd's port 24007 when
     no `remote-port` is given (socket.c / name.c take the option, else
     GF_DEFAULT_BASE_PORT).
  2. DUMP.  If the peer lists the PORTMAP program it is glusterd: ask
     PORTBYBRICK for `remote-subvolume` (the brick path), drop the
     connection without telling anyone (GlusterFS's skip_notify) and connect
     again at once to the port it gave, for that one attempt.
  3. The peer is a brick: it must serve the 4.x fop program (1298437 v400,
     the only one glusterpy speaks).  SETVOLUME carries the volfile options
     of this translator plus what GlusterFS 10 adds (process-uuid with a
     new RECON_NO per attempt so the brick never reuses an old connection's
     fds and locks, client-version, process-name, volfile-key,
     volfile-checksum, clnt-lk-version, opversion, fops-version), in
     GlusterFS's order on the wire.  DUMP and PORTBYBRICK go with the v2
     GlusterFS credential, SETVOLUME and everything after it with v3.
  4. Re-open the fds that were open before a disconnect (below), then
     CHILD_UP upward (only if the brick's reply says its own child is up).
  A failed SETVOLUME sends CHILD_CONNECTING (and AUTH_FAILED for a refused
  login, VOLFILE_MODIFIED for ESTALE) and disconnects.  Any disconnect marks
  every fd bad and sends CHILD_DOWN; CHILD_UP and CHILD_DOWN are never sent
  twice in a row (client_notify_dispatch_uniq).  Reconnecting repeats the
  whole sequence - portmap included, as the brick may have a new port -
  every 3 seconds (rpc-clnt.c's reconnect timer).

While connected:
  * Every fop of the catalogue goes out with the 4.x program: a `Loc`
    becomes gfid / pargfid+bname (EINVAL when a field the request needs is
    missing, as client-common.c asserts), an `Fd` the remote fd number that
    open/create/opendir returned, kept in `fd.ctx[self]` (a `RemoteFdCtx`),
    and `fops.caller` the AUTH_GLUSTERFS_v3 credential (groups only with
    `send-gids`; an `lk` without a caller lock owner uses the flock's
    owner, which is what the brick's locks key on).  One exception: a
    FLUSH is answered here while no lk, lease or setactivelk has been sent
    (`flush`: on a brick it only releases the closing owner's locks).
  * PING (the DUMP program's) is sent while calls are outstanding, again
    `ping-timeout` seconds after each answer.  When a ping stays unanswered
    for `ping-timeout` and nothing at all came from or went to the peer in
    that time, the connection is declared dead and dropped ("server ... has
    not responded in the last N seconds, disconnecting.").  As in GlusterFS
    an idle connection is not pinged; `ping-timeout 0` disables pings.
  * A call unanswered after `frame-timeout` seconds fails with ENOTCONN and
    its late reply is dropped (GlusterFS's call_bail).
  * A fop while disconnected fails at once with ENOTCONN; calls in flight
    when the connection drops fail with ENOTCONN.
  * The callback program is served on the same connection; see `Upcall`
    and the events below.

Fds across a disconnect (client_mark_fd_bad, client_post_handshake,
protocol_client_reopen_v2): after a reconnect every fd open before it is
re-opened by gfid (files with their flags minus O_CREAT/O_EXCL/O_TRUNC)
before CHILD_UP is sent; with `strict-locks` an fd that holds POSIX locks
is not re-opened.  An fd whose re-open failed (or is still pending) answers
EBADFD, except that readv, writev, fsync, finodelk, fxattrop and
copy_file_range fall back to the anonymous fd (-2) when it holds no locks;
every 1024th such fallback tries the re-open again.  Locks themselves are
never re-sent: a GlusterFS 10 brick releases a client's locks when its
connection goes, and GlusterFS 10's client does not re-acquire them either
(lock healing was removed); `strict-locks` is the way to make that visible.

Events this translator sends upward (`notify(event, self, data)`):

=================  ==========================================================
CHILD_UP           data None: handshake done, fds re-opened, brick child up
CHILD_DOWN         data None: disconnected (or the brick said CHILD_DOWN)
CHILD_CONNECTING   data None: the brick refused SETVOLUME; retrying
AUTH_FAILED        data: "<this translator>: <the brick's ERROR text>" (auth.login /
                   auth.allow) - named here, as the event is re-sourced on its way up
CHILD_PING         data: round-trip time of the last PING in milliseconds
VOLFILE_MODIFIED   data: "FETCHSPEC" (the callback) or "ESTALE" (SETVOLUME
                   said the volfile is stale): the graph's owner should
                   fetch the volfile again
UPCALL             data: an `Upcall` (cache invalidation, lease recall,
                   inodelk/entrylk contention)
=================  ==========================================================

TLS (glusterpy.rpc.tls): the connection to the brick is TLS from its first
byte with `transport.socket.ssl-enabled` (volume set `client.ssl`), the
connection to glusterd's port 24007 (portmap) when secure access is on
(/var/lib/glusterd/secure-access, or $GLUSTERPY_SECURE_ACCESS), as
socket_fix_ssl_opts() decides by the port.  The brick's certificate must
chain to `ssl-ca-list` within `ssl-cert-depth`; host names are not
checked.  A failed handshake (the brick refusing our certificate included)
is logged once per outage with OpenSSL's reason and retried every 3
seconds; fops meanwhile fail with ENOTCONN.

Identity: the process-uuid, process-name and volfile-key that SETVOLUME
sends come from `ProcessIdentity` (glusterpy.process); a graph's owner
(gfapi, FUSE) gives one to all its clients with `set_process_identity()`,
as GlusterFS's ctx is per process.  Without an owner each translator has
its own, so two graphs in one process are two clients to a brick.  A volfile without `remote-host`
(glusterd's gfproxy volfiles) connects to the identity's volfile server.
An IPv6 address as remote-host is reached over IPv6 whatever
`transport.address-family` says, as name.c decides.

Departures from GlusterFS, on purpose: a reconfigured `remote-port` is
used from the next connection on (GlusterFS's transport keeps the old one
until a graph switch); `frame-timeout 0` disables the
timeout (GlusterFS would bail every frame after its 10 s bail-out tick);
frame timeouts are checked, as GlusterFS's call_bail checks them, by one
timer per connection, every 10 s or every quarter of frame-timeout when
that is shorter (a call is bailed within frame-timeout plus two such
intervals, not up to 10 s late); a call the brick
refuses at the RPC level fails with EOPNOTSUPP (no such program or
procedure) or EIO (garbage arguments, system error) instead of ENOTCONN;
connecting gives up after `ping-timeout` (42 s when pings are off) where
GlusterFS leaves it to the kernel.  Not supported: rdma and unix transports,
the 3.x fop program (`testing.old-protocol`), binding to a privileged
source port (`client-bind-insecure` is accepted and has no effect) and
`event-threads` (one trio task per connection).
"""

from __future__ import annotations

import enum
import errno
import os
import socket
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import trio

from glusterpy import fops
from glusterpy.fops import NULL_GFID, GFID, Caller, Fd, FopError, LockCmd, LockType, Loc
from glusterpy.fopgen import Family, install
from glusterpy.options import Option, OptionError, OptionType as T
from glusterpy.process import ProcessIdentity
from glusterpy.rpc import (CLIENT_PROGRAMS, DUMP, FOP_PROCEDURES, FOP_PROGRAM,
                           FOP_VERSION, HANDSHAKE, PMAP_PROGRAM, PMAP_VERSION, PORTMAP,
                           ALL_PROGRAMS, AcceptStat, AuthGlusterfsV2, AuthGlusterfsV3,
                           CacheInvalidation, DumpRequest, EntrylkContention, FopRequest,
                           InodelkContention, PortByBrickRequest, RecallLease, RemoteFd,
                           RpcConnection, RpcProtocolError, SetVolumeRequest, old_dict_text)
from glusterpy.rpc.auth import MAX_AUTH_BYTES
from glusterpy.rpc.fops4 import ANON_FD, REQUESTS
from glusterpy.rpc import tls
from glusterpy.rpc.transport import ConnectionLost, RpcCallFailed, RpcEndpoint
from glusterpy.xlator import Event, Translator

#: glusterd's port (GF_DEFAULT_BASE_PORT): the portmap server when no
#: remote-port is given
GLUSTERD_PORT = 24007
#: seconds between reconnection attempts (rpc-clnt.c's reconnect timer)
RECONNECT_INTERVAL = 3.0
#: what GlusterFS 10.3 sends as client-version and opversion (GD_OP_VERSION_MAX)
CLIENT_VERSION = "10.3"
OP_VERSION = 100000
#: DUMP's gfs_id in client_handshake()
DUMP_GFS_ID = 0xCAED
#: client-handshake.c: fallbacks to the anonymous fd between re-open attempts
REOPEN_MAX_ATTEMPTS = 1024
#: the fops that use the anonymous fd when their fd is bad (FALLBACK_TO_ANON_FD)
ANON_FD_FOPS = frozenset({"readv", "writev", "fsync", "finodelk", "fxattrop",
                          "copy_file_range"})

_DUMP_DUMP = DUMP.by_name("DUMP")
_DUMP_PING = DUMP.by_name("PING")
_SETVOLUME = HANDSHAKE.by_name("SETVOLUME")
_PORTBYBRICK = PORTMAP.by_name("PORTBYBRICK")
_ANONYMOUS = Caller()  # frames the client makes itself (handshake, release, re-open)

_NOT_SERVED = {AcceptStat.PROG_UNAVAIL, AcceptStat.PROG_MISMATCH, AcceptStat.PROC_UNAVAIL}


def _time(key, default, description, lo, hi, **kw) -> Option:
    return Option(key, T.TIME, default, description, min=lo, max=hi, **kw)


def _bool(key, default, description, **kw) -> Option:
    return Option(key, T.BOOL, default, description, **kw)


OPTIONS = (
    Option("remote-host", T.STR, None, "Host name or address of the brick's server "
           "(and of its portmap server, glusterd).", reconfigurable=False),
    Option("remote-port", T.INT, None, "The brick's port.  Without it the port is "
           "asked from glusterd's portmap on port 24007.  A new value is used from the "
           "next connection on (a volfile server moves it when a brick restarts on "
           "another port).", min=1, max=65535, aliases=("transport.remote-port",)),
    Option("remote-subvolume", T.STR, None, "The brick (its path, or the name of its "
           "top translator) to attach to.", reconfigurable=False),
    Option("transport-type", T.ENUM, "tcp", "Transport; only TCP is supported.",
           choices=("tcp", "socket", "tcp/client"), reconfigurable=False),
    Option("transport.address-family", T.ENUM, "inet", "Address family used to "
           "resolve remote-host.", choices=("inet", "inet6"),
           aliases=("address-family",), reconfigurable=False),
    _time("frame-timeout", "1800", "Time frame after which the (file) operation would be "
          "declared as dead, if the server does not respond for a particular (file) "
          "operation.", 0, 86400, aliases=("rpc-timeout",),
          set_keys=("network.frame-timeout",)),
    _time("ping-timeout", "42", "Time duration for which the client waits to check if "
          "the server is responsive.", 0, 1013, set_keys=("network.ping-timeout",)),
    Option("username", T.STR, None, "auth.login user name sent in SETVOLUME.",
           reconfigurable=False),
    Option("password", T.STR, None, "auth.login password sent in SETVOLUME.",
           reconfigurable=False),
    _bool("filter-O_DIRECT", "disable", "If enabled, in open/creat/readv/writev fops, "
          "O_DIRECT flag will be filtered at the client protocol level so server will "
          "still continue to cache the file.", set_keys=("network.remote-dio",)),
    _bool("send-gids", "on", "Send the caller's supplementary groups with each fop."),
    _bool("strict-locks", "off", "When set, doesn't reopen saved fds after reconnect if "
          "POSIX locks are held on them.", set_keys=("features.strict-locks",)),
    Option("event-threads", T.INT, "2", "GlusterFS's epoll threads; glusterpy serves "
           "each connection from one trio task, so this has no effect.", min=1, max=32,
           set_keys=("client.event-threads",)),
    _bool("client-bind-insecure", None, "GlusterFS binds to a privileged source port "
          "unless set; glusterpy does not bind (accepted for compatibility)."),
    Option("tcp-window-size", T.SIZE, None, "Socket send and receive buffer size.",
           min=512, max=1 << 30, set_keys=("network.tcp-window-size",)),
    _bool("testing.old-protocol", "off", "Use the 3.x fop program (not supported)."),
    _bool("transport.socket.keepalive", "on", "TCP keepalive on the connection."),
    Option("transport.socket.keepalive-time", T.INT, "20", "Idle seconds before the "
           "first keepalive probe.", min=0),
    Option("transport.socket.keepalive-interval", T.INT, "2", "Seconds between "
           "keepalive probes.", min=0),
    Option("transport.socket.keepalive-count", T.INT, "9", "Unanswered keepalive "
           "probes before the connection is dropped.", min=0),
    _time("transport.tcp-user-timeout", "42", "TCP_USER_TIMEOUT: seconds sent data may "
          "stay unacknowledged before the kernel drops the connection (0 = kernel "
          "default).", 0, 1013),
    _bool("transport.socket.nodelay", "on", "TCP_NODELAY on the connection."),
    tls.ssl_enabled_option("client.ssl"),
    _bool("transport.socket.own-thread", None, "GlusterFS's thread-per-connection mode; "
          "no effect."),
    _bool("transport.socket.read-fail-log", None, "Log failed reads; no effect."),
    *tls.transport_options(),
)


# --------------------------------------------------------------------------
# What travels upward


class UpcallType(enum.IntEnum):
    """gf_upcall_event_t (upcall-utils.h)."""

    CACHE_INVALIDATION = 1
    RECALL_LEASE = 2
    INODELK_CONTENTION = 3
    ENTRYLK_CONTENTION = 4


@dataclass(slots=True)
class Upcall:
    """The data of an UPCALL event (GlusterFS's struct gf_upcall).

    `gfid` is the inode concerned; `message` the decoded callback - a
    `glusterpy.rpc.CacheInvalidation` (its `flags` are the UP_* bits of
    what changed, its iatts the new attributes), `RecallLease`,
    `InodelkContention` or `EntrylkContention`.
    """

    event_type: UpcallType
    gfid: GFID
    message: Any


# --------------------------------------------------------------------------
# Per-fd state


@dataclass(eq=False, slots=True)
class RemoteFdCtx:
    """What `fd.ctx[client]` holds (GlusterFS's clnt_fd_ctx_t).

    `remote_fd` is the brick's fd number, -1 while the fd is bad (after a
    disconnect, until it is re-opened).  `locks` lists the POSIX locks
    granted through this fd as (owner, start, end) with end None for "to
    the end of the file"; only `strict-locks` and the anonymous-fd fallback
    look at it.
    """

    gfid: GFID | None
    flags: int
    is_dir: bool
    remote_fd: int
    locks: list[tuple[bytes, int, int | None]] = field(default_factory=list)
    reopen_attempts: int = 0
    reopening: bool = False
    released: bool = False

    def add_lock(self, owner: bytes, start: int, end: int | None) -> None:
        self.remove_lock(owner, start, end)
        self.locks.append((owner, start, end))

    def remove_lock(self, owner: bytes, start: int, end: int | None) -> None:
        """Subtract [start, end] from the owner's ranges (an unlock may
        split a range in two, as POSIX unlocks do)."""
        kept = []
        for o, s, e in self.locks:
            if o != owner or (end is not None and s > end) or (e is not None and e < start):
                kept.append((o, s, e))
                continue
            if s < start:
                kept.append((o, s, start - 1))
            if end is not None and (e is None or e > end):
                kept.append((o, end + 1, e))
        self.locks = kept


# --------------------------------------------------------------------------
# Which Loc fields each request needs (client-common.c asserts them)


def _required_loc_parts() -> dict[str, list[tuple[str, tuple[str, ...]]]]:
    """fop -> [(loc argument, parts that must be set)]; lookup's loc needs
    a gfid or a parent and name, which is checked separately."""
    out: dict[str, list[tuple[str, tuple[str, ...]]]] = {}
    for fop in fops.CATALOGUE:
        parts: dict[str, list[str]] = {}
        for item in REQUESTS[fop.name].split():
            binding = item.split("=", 1)[-1]
            arg, dot, part = binding.partition(".")
            if dot and fops.BY_NAME[fop.name].args[fop.arg_names.index(arg)].kind == "loc":
                parts.setdefault(arg, []).append(part)
        out[fop.name] = [(arg, tuple(p)) for arg, p in parts.items()]
    return out


_LOC_PARTS = _required_loc_parts()
#: per fop, its argument names, and the fd arguments that go to the brick
#: as its fd numbers (not those the fop opens)
_ARG_NAMES = {fop.name: fop.arg_names for fop in fops.CATALOGUE}
_FD_ARGS = {fop.name: tuple(a.name for a in fop.args
                            if a.kind == "fd" and (fop.name, a.name) not in fops.OPENED_FDS)
            for fop in fops.CATALOGUE}


def _check_locs(name: str, args: Mapping[str, Any]) -> None:
    for arg, parts in _LOC_PARTS[name]:
        loc: Loc | None = args[arg]
        if loc is None:
            raise FopError(errno.EINVAL, f"{name}: no {arg}")
        if "gfid" in parts and "pargfid" in parts:  # lookup
            if loc.gfid is None and (loc.pargfid is None or not loc.name):
                raise FopError(errno.EINVAL, f"{name}: {arg} has neither a gfid nor a "
                                             f"parent and a name")
            continue
        if "gfid" in parts and (loc.gfid is None or loc.gfid == NULL_GFID):
            raise FopError(errno.EINVAL, f"{name}: {arg} has no gfid")
        if "pargfid" in parts and (loc.pargfid is None or loc.pargfid == NULL_GFID):
            raise FopError(errno.EINVAL, f"{name}: {arg} has no parent gfid")
        if "name" in parts and not loc.name:
            raise FopError(errno.EINVAL, f"{name}: {arg} has no name")


# --------------------------------------------------------------------------
# The translator


class _Attempt:
    """The outcome of one connection attempt."""

    __slots__ = ("brick_port", "skip_notify")

    def __init__(self):
        self.brick_port: int | None = None  # portmap's answer: connect there next
        self.skip_notify = False


class ProtocolClient(Translator):
    """protocol/client; see the module docstring."""

    OPTIONS = OPTIONS
    CHILDREN = (0, 0)

    def __init__(self, name: str, options: Mapping[str, str] | None = None,
                 children: Sequence[Translator] = ()):
        super().__init__(name, options, children)
        if self.opts.remote_subvolume is None:
            raise OptionError("remote-subvolume", "option 'remote-subvolume' is required")
        if self.opts["testing.old-protocol"]:
            raise OptionError("testing.old-protocol",
                              "glusterpy speaks only the 4.x fop program")
        #: the volfile's options as written, for SETVOLUME
        self._volfile_options = dict(options or {})
        # A graph run without an owner that calls set_process_identity() is a
        # process of its own: two such graphs must not look like one client
        # to a brick, which would share their fd tables and locks.
        self.identity = ProcessIdentity()
        self._endpoint: RpcEndpoint | None = None
        self._connected = False      # SETVOLUME succeeded on _endpoint
        self._v3 = False             # the fop program is chosen: v3 credentials
        self._child_up = False
        self._last_event: Event | None = None
        self._setvol_count = 0
        self._saved: set[RemoteFdCtx] = set()
        self._busy = 0
        #: a fop that takes a lock a FLUSH releases (lk, lease, setactivelk)
        #: has been sent on this translator's connections (see flush)
        self._owner_locks_sent = False
        #: set by the first call when the ping timer waits for one (None otherwise)
        self._busy_event: trio.Event | None = None
        # the last fop's Caller and its credential (_cred)
        self._cred_of: Caller | None = None
        self._cred_last: AuthGlusterfsV3 | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = False
        self._portmap_err_logged = False
        self._connect_err_logged = False
        self._tls_err_logged = False
        # SSL contexts by kind ("io", "mgmt"), built at the first connection
        self._tls_contexts: dict[str, tuple[tls.TlsConfig, Any]] = {}

    # -- life cycle -------------------------------------------------------------

    def notify(self, event: Event, source: Any, data: Any = None) -> None:
        if event == Event.PARENT_UP:
            if self._scope is None and not self._stopped:
                self._scope = trio.CancelScope()
                self.spawn(self._connection_loop, name=f"{self.name}:connection")
        elif event == Event.PARENT_DOWN:
            self._stop()
        else:
            super().notify(event, source, data)

    async def init(self) -> None:
        if self.remote_host is None:
            raise OptionError("remote-host", f"{self.name}: option 'remote-host' is "
                                             f"required when no volfile server is known")

    async def fini(self) -> None:
        self._stop()

    def options_changed(self, old) -> None:
        self._cred_of = None    # send-gids may have changed
        ep = self._endpoint
        if ep is not None:
            ep.frame_timeout = self.opts.frame_timeout

    @property
    def remote_host(self) -> str | None:
        """`remote-host`, or else the volfile server's host, as
        client_check_remote_host() fills it in (gfproxy volfiles)."""
        return self.opts.remote_host or self.identity.volfile_server

    def _stop(self) -> None:
        self._stopped = True
        self._connected = False
        if self._scope is not None:
            self._scope.cancel()

    @property
    def connected(self) -> bool:
        """True between SETVOLUME's success and the next disconnect."""
        return self._connected

    def _notify(self, event: Event, data: Any = None, *, uniq: bool = False) -> None:
        """client_notify_dispatch(_uniq): CHILD_UP/CHILD_DOWN never twice in a row."""
        if uniq and self._last_event == event:
            return
        self._last_event = event
        self.notify_parents(event, data)

    def dump_state(self) -> dict:
        ep = self._endpoint
        return {
            "connected": self._connected,
            "peer": ep.peer if ep is not None else None,
            "child_up": self._child_up,
            "saved_fds": sorted((c.remote_fd, str(c.gfid)) for c in self._saved),
            "setvolume_count": self._setvol_count,
        }

    # -- connecting -------------------------------------------------------------

    async def _connection_loop(self) -> None:
        """Connect, serve, and reconnect until PARENT_DOWN (rpc_clnt_start)."""
        brick_port: int | None = None
        with self._scope:
            while not self._stopped:
                port = brick_port or self.opts.remote_port or GLUSTERD_PORT
                brick_port = None
                attempt = _Attempt()
                try:
                    await self._connect_once(port, attempt)
                finally:
                    self._disconnected(attempt)
                if attempt.brick_port is not None:
                    brick_port = attempt.brick_port  # quick reconnect, no wait
                    continue
                await trio.sleep(RECONNECT_INTERVAL)

    def _disconnected(self, attempt: _Attempt) -> None:
        """RPC_CLNT_DISCONNECT: fds go bad; CHILD_DOWN unless this was the
        planned hop from glusterd to the brick."""
        self._endpoint = None
        self._connected = False
        self._v3 = False
        for ctx in self._saved:
            ctx.remote_fd = -1
            ctx.reopening = False
        if not attempt.skip_notify:
            self._child_up = False
            self._notify(Event.CHILD_DOWN, uniq=True)

    async def _connect_once(self, port: int, attempt: _Attempt) -> None:
        host = self.remote_host
        try:
            stream = await self._open_stream(host, port)
        except (OSError, trio.TooSlowError) as e:
            if not self._connect_err_logged:
                self.log.info("connection to %s:%d failed (%s); retrying every %gs",
                              host, port, e, RECONNECT_INTERVAL)
                self._connect_err_logged = True
            return
        self._connect_err_logged = False
        try:
            stream = await self._start_tls(stream, host, port)
        except tls.TlsError as e:
            # logged once per outage; fops meanwhile fail with ENOTCONN
            log = self.log.debug if self._tls_err_logged else self.log.error
            log("%s; retrying every %gs", e.strerror, RECONNECT_INTERVAL)
            self._tls_err_logged = True
            return
        self._tls_err_logged = False
        ep = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                         handler=self._serve_callback, name=self.name,
                         frame_timeout=self.opts.frame_timeout)
        self.log.debug("connected to %s", ep.peer)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._read, ep, nursery.cancel_scope)
                nursery.start_soon(self._ping_loop, ep)
                await self._handshake(ep, attempt)
                if self._connected:
                    await trio.sleep_forever()  # until the reader cancels us
                nursery.cancel_scope.cancel()
        finally:
            with trio.CancelScope(shield=True):
                await ep.aclose()
        if self._connected and not attempt.skip_notify:
            self.log.info("disconnected from %s", ep.peer)

    async def _open_stream(self, host: str, port: int) -> trio.SocketStream:
        """Resolve in the configured family and connect, with GlusterFS's
        socket options applied."""
        family = socket.AF_INET6 if self.opts["transport.address-family"] == "inet6" \
            or _is_ipv6_literal(host) else socket.AF_INET
        with trio.fail_after(self.opts.ping_timeout or 42):
            infos = await trio.socket.getaddrinfo(host, port, family, socket.SOCK_STREAM)
            last: OSError | None = None
            for fam, kind, proto, _name, addr in infos:
                sock = trio.socket.socket(fam, kind, proto)
                try:
                    self._set_socket_options(sock)
                    await sock.connect(addr)
                except OSError as e:
                    sock.close()
                    last = e
                    continue
                return trio.SocketStream(sock)
        raise last or OSError(errno.EHOSTUNREACH, f"{host} has no address")

    def _tls_config(self, port: int) -> tuple[str, tls.TlsConfig] | None:
        """socket_fix_ssl_opts(): glusterd's port speaks TLS when secure
        access is on, any other port when ssl-enabled is."""
        if port == GLUSTERD_PORT:
            return ("mgmt", tls.TlsConfig.for_mgmt()) if tls.secure_access() else None
        if self.opts["transport.socket.ssl-enabled"]:
            return "io", tls.TlsConfig.from_options(self.opts)
        return None

    async def _start_tls(self, stream: trio.SocketStream, host: str, port: int):
        """The connection as the RPC runs over it: TLS or plain TCP."""
        which = self._tls_config(port)
        if which is None:
            return stream
        kind, config = which
        cached = self._tls_contexts.get(kind)
        if cached is None or cached[0] != config:
            try:
                cached = self._tls_contexts[kind] = (config, config.context(server_side=False))
            except tls.TlsError:
                await stream.aclose()
                raise
        peer = f"{host}:{port}"
        stream = await tls.handshake(stream, cached[1], server_side=False,
                                     cert_depth=config.cert_depth, peer=peer)
        self.log.debug("TLS to %s (%s), server certificate CN %r", peer, kind,
                       tls.common_name(stream))
        return stream

    def _set_socket_options(self, sock) -> None:
        o = self.opts
        if o["transport.socket.nodelay"]:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if o["transport.socket.keepalive"]:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            for opt, key in ((getattr(socket, "TCP_KEEPIDLE", None), "keepalive-time"),
                             (getattr(socket, "TCP_KEEPINTVL", None), "keepalive-interval"),
                             (getattr(socket, "TCP_KEEPCNT", None), "keepalive-count")):
                value = o[f"transport.socket.{key}"]
                if opt is not None and value:
                    sock.setsockopt(socket.IPPROTO_TCP, opt, value)
        user_timeout = getattr(socket, "TCP_USER_TIMEOUT", None)
        if user_timeout is not None and o["transport.tcp-user-timeout"]:
            sock.setsockopt(socket.IPPROTO_TCP, user_timeout,
                            o["transport.tcp-user-timeout"] * 1000)
        if o["tcp-window-size"]:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, o["tcp-window-size"])
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, o["tcp-window-size"])

    async def _read(self, ep: RpcEndpoint, scope: trio.CancelScope) -> None:
        """Run the endpoint's read loop; when it ends the connection is over."""
        try:
            await ep.serve()
        except RpcProtocolError as e:
            self.log.warning("%s sent something that is not GlusterFS RPC: %s", ep.peer, e)
        finally:
            scope.cancel()

    def _handshake_cred(self):
        """rpc-clnt sends AUTH_GLUSTERFS_v2 until the 4.x program is chosen."""
        return AuthGlusterfsV3.from_caller(_ANONYMOUS) if self._v3 \
            else AuthGlusterfsV2.from_caller(_ANONYMOUS)

    async def _handshake(self, ep: RpcEndpoint, attempt: _Attempt) -> None:
        """DUMP, then PORTBYBRICK (glusterd) or SETVOLUME (a brick)."""
        try:
            dump = await self._rpc(ep, _DUMP_DUMP, DumpRequest(gfs_id=DUMP_GFS_ID))
            if dump.op_ret == -1:
                self.log.warning("DUMP to %s failed: %s", ep.peer, os.strerror(dump.op_errno))
                return
            programs = {(p.number, p.version) for p in dump.programs}
            if (PMAP_PROGRAM, PMAP_VERSION) in programs:
                await self._query_portmap(ep, attempt)
                return
            if (FOP_PROGRAM, FOP_VERSION) not in programs:
                self.log.error("%s does not serve the GlusterFS 4.x fop program (%d v%d); "
                               "it offers %s", ep.peer, FOP_PROGRAM, FOP_VERSION,
                               ", ".join(f"{p.name} ({p.number} v{p.version})"
                                         for p in dump.programs))
                return
            self._v3 = True
            await self._setvolume(ep)
        except (ConnectionLost, RpcCallFailed, FopError) as e:
            self.log.warning("handshake with %s failed: %s", ep.peer, e)

    async def _query_portmap(self, ep: RpcEndpoint, attempt: _Attempt) -> None:
        brick = self.opts.remote_subvolume
        reply = await self._rpc(ep, _PORTBYBRICK, PortByBrickRequest(brick=brick))
        if reply.op_ret == -1 or not reply.port:
            # logged once per outage, as client_query_portmap_cbk does
            log = self.log.debug if self._portmap_err_logged else self.log.error
            log("failed to get the port number for remote subvolume %s from %s. Please "
                "run 'gluster volume status' on server to see if brick process is "
                "running.", brick, ep.peer)
            self._portmap_err_logged = True
            return
        self._portmap_err_logged = False
        self.log.debug("portmap: %s is on port %d", brick, reply.port)
        attempt.brick_port = reply.port
        attempt.skip_notify = True

    def setvolume_dict(self) -> dict[str, str | int]:
        """The SETVOLUME dict, in the order GlusterFS 10 puts it on the wire:
        its dict is a list that grows at the head, so the keys added last
        come first, then the volfile's options in reverse."""
        ident = self.identity
        counter = self._setvol_count
        process_uuid = (f"CTX_ID:{ident.ctx_uuid}-GRAPH_ID:{ident.graph_id}-PID:{os.getpid()}"
                        f"-HOST:{socket.gethostname()}-PC_NAME:{self.name}-RECON_NO:-{counter}")
        added: dict[str, str | int] = {"fops-version": FOP_PROGRAM,
                                       "process-uuid": process_uuid}
        if ident.process_name:
            added["process-name"] = ident.process_name
        added["client-version"] = CLIENT_VERSION
        if ident.volfile_key is not None:
            added["volfile-key"] = ident.volfile_key
            added["volfile-checksum"] = 0
        added["clnt-lk-version"] = 1
        added["opversion"] = OP_VERSION
        options = dict(self._volfile_options)
        options.setdefault("remote-host", self.remote_host)
        if options.get("transport-type", "tcp") in ("tcp", "tcp/client"):
            # rpc_transport_load() rewrites tcp to the socket transport's name
            options["transport-type"] = "socket"
        for key in added:
            options.pop(key, None)
        out: dict[str, str | int] = {}
        for key in reversed(list(added)):
            out[key] = added[key]
        for key in reversed(list(options)):
            out[key] = options[key]
        return out

    async def _setvolume(self, ep: RpcEndpoint) -> None:
        request = SetVolumeRequest(dict=self.setvolume_dict())
        self._setvol_count += 1
        reply = await self._rpc(ep, _SETVOLUME, request)
        answer = old_dict_text(reply.dict)
        remote_error = answer.get("ERROR")
        if reply.op_ret < 0:
            err = reply.op_errno
            self.log.error("SETVOLUME on remote-host failed: remote-error=%s [%s]",
                           remote_error, os.strerror(err) if err else "no errno")
            if err == errno.EACCES and remote_error:
                self.log.info("sending AUTH_FAILED event")
                self._notify(Event.AUTH_FAILED, f"{self.name}: {remote_error}")
            elif err == errno.ESTALE:
                self._notify(Event.VOLFILE_MODIFIED, "ESTALE")
            self._notify(Event.CHILD_CONNECTING)
            return
        try:
            self._child_up = int(answer.get("child_up", "1")) != 0
        except ValueError:
            self._child_up = True
        self._endpoint = ep
        self._connected = True
        self.log.info("Connected, attached to remote volume '%s' on %s",
                      self.opts.remote_subvolume, ep.peer)
        await self._reopen_saved_fds(ep)
        if self._child_up:
            self._notify(Event.CHILD_UP, uniq=True)
        else:
            self.log.info("the brick's own subvolume is not up yet; waiting for its "
                          "CHILD_UP callback")

    # -- ping ---------------------------------------------------------------------

    async def _ping_loop(self, ep: RpcEndpoint) -> None:
        """rpc-clnt-ping.c: ping while calls are outstanding; a ping that
        stays unanswered for ping-timeout with no traffic either way in that
        time drops the connection."""
        timeout = self.opts.ping_timeout
        if not timeout:
            return
        while not ep.closed:
            if self._busy == 0:
                busy = self._busy_event = trio.Event()
                await busy.wait()
            answered = trio.Event()
            sent_at = trio.current_time()
            latency: list[float] = []

            async def ping():
                try:
                    await ep.call(_DUMP_PING, None, cred=self._handshake_cred())
                except (ConnectionLost, RpcCallFailed, trio.TooSlowError):
                    return  # bailed by frame-timeout: unanswered, as below
                latency.append(trio.current_time() - sent_at)
                answered.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping)
                deadline = sent_at + timeout
                while not answered.is_set():
                    with trio.move_on_at(deadline):
                        await answered.wait()
                    if answered.is_set() or ep.closed:
                        break
                    now = trio.current_time()
                    if now - ep.last_received < timeout or now - ep.last_sent < timeout:
                        deadline = now + timeout  # busy, not silent: wait again
                        continue
                    self.log.critical("server %s has not responded in the last %d "
                                      "seconds, disconnecting.", ep.peer, timeout)
                    await ep.aclose()
                    return
            if latency and self._connected:
                self._notify(Event.CHILD_PING, int(latency[0] * 1000))
            await trio.sleep(timeout)

    # -- calls ----------------------------------------------------------------------

    async def _rpc(self, ep: RpcEndpoint, procedure, args, cred=None):
        """One call on `ep`, bailed by the endpoint after frame-timeout;
        counts as outstanding for the ping timer.  (`_wind` does the same
        for fops, without this frame.)"""
        self._busy += 1
        if self._busy_event is not None:
            self._busy_event.set()
            self._busy_event = None
        try:
            return await ep.call(procedure, args, cred=cred or self._handshake_cred())
        except trio.TooSlowError:
            raise self._bailed(ep, procedure) from None
        finally:
            self._busy -= 1

    def _bailed(self, ep: RpcEndpoint, procedure) -> FopError:
        """call_bail's log line, and the ENOTCONN the caller gets."""
        self.log.error("bailing out frame type(%s), op(%s), timeout = %d for %s",
                       procedure.program, procedure.name, self.opts.frame_timeout, ep.peer)
        return FopError(errno.ENOTCONN, f"{self.name}: no reply to {procedure.name} "
                                        f"in {self.opts.frame_timeout}s")

    def _cred(self, lk_owner: bytes | None = None) -> AuthGlusterfsV3:
        c = fops.caller.get()
        if c is self._cred_of and lk_owner is None:
            # the same Caller as the last fop's (gfapi's, FUSE's within one
            # request): Callers are never changed once made (fops.Caller)
            return self._cred_last
        groups = tuple(c.groups) if self.opts.send_gids else ()
        owner = c.lk_owner or lk_owner or b""
        if not owner:
            owner = (c.pid & 0xFFFFFFFF).to_bytes(4, "little")
        # the groups and the owner share the credential's 400 bytes
        room = (MAX_AUTH_BYTES - 32 - 4 - (len(owner) + 3) // 4 * 4) // 4
        if len(groups) > room:
            groups = groups[:room]
        cred = AuthGlusterfsV3(c.pid, c.uid, c.gid, c.flags,
                               (c.ctime_ns or 0) % 1_000_000_000,
                               (c.ctime_ns or 0) // 1_000_000_000, groups, owner)
        if lk_owner is None:
            self._cred_of, self._cred_last = c, cred
        return cred

    async def _wind(self, name: str, args: dict[str, Any], xdata, *, cred=None):
        """Send one fop and return its reply; FopError for a failure."""
        ep = self._endpoint
        if ep is None or not self._connected:
            raise FopError(errno.ENOTCONN, f"{self.name}: not connected to "
                                           f"{self.remote_host}")
        procedure = FOP_PROCEDURES[name]
        self._busy += 1         # _rpc's accounting, without its frame
        if self._busy_event is not None:
            self._busy_event.set()
            self._busy_event = None
        try:
            response = await ep.call(procedure, FopRequest(fops.BY_NAME[name], args, xdata),
                                     cred=cred or self._cred())
        except ConnectionLost:
            self._broke(ep)
            raise FopError(errno.ENOTCONN, f"{self.name}: connection lost during "
                                           f"{name}") from None
        except RpcCallFailed as e:
            stat = e.reply.accept_stat
            err = errno.EOPNOTSUPP if stat in _NOT_SERVED else errno.EIO
            raise FopError(err, f"{self.name}: the brick refused {name}: {e}") from None
        except trio.TooSlowError:
            raise self._bailed(ep, procedure) from None
        finally:
            self._busy -= 1
        return response.unwrap()

    def _broke(self, ep: RpcEndpoint) -> None:
        """The connection broke under a fop: the parents hear CHILD_DOWN now,
        not once the connection loop has unwound (`_disconnected` sends it
        then, and uniq keeps it from going twice).  A parent that decides by
        it - write-behind writes through while its child is down - must
        know before the caller's next fop, which follows this ENOTCONN."""
        if ep is self._endpoint and self._connected:
            self._connected = False
            self._child_up = False
            self._notify(Event.CHILD_DOWN, uniq=True)

    def _remote_fd(self, name: str, fd: Fd) -> RemoteFd:
        """client_get_remote_fd: the brick's number for our fd."""
        ctx = fd.ctx.get(self) if fd is not None else None
        if ctx is None:
            raise FopError(errno.EBADFD, f"{self.name}: {name} on an fd not opened here")
        num = ctx.remote_fd
        if num == -1 or ctx.reopening:
            if name in ANON_FD_FOPS and not ctx.locks:
                self._count_anonymous_use(ctx)
                num = ANON_FD
            else:
                raise FopError(errno.EBADFD, f"{self.name}: {name} on an fd that is not "
                                             f"open on the brick (lost with a disconnect)")
        return RemoteFd(fd.gfid or ctx.gfid, num)

    def _count_anonymous_use(self, ctx: RemoteFdCtx) -> None:
        """client_attempt_reopen: every REOPEN_MAX_ATTEMPTS-th fallback
        tries to re-open the fd."""
        if ctx.reopening:
            return
        ctx.reopen_attempts += 1
        if ctx.reopen_attempts >= REOPEN_MAX_ATTEMPTS and self._endpoint is not None:
            ctx.reopen_attempts = 0
            self.spawn(self._reopen, self._endpoint, ctx)

    def _prepare(self, name: str, values: tuple, xdata) -> dict[str, Any]:
        """The wire arguments of a fop: fds mapped, O_DIRECT filtered."""
        args = dict(zip(_ARG_NAMES[name], values))
        if _LOC_PARTS[name]:
            _check_locs(name, args)
        for arg in _FD_ARGS[name]:
            args[arg] = self._remote_fd(name, args[arg])
        if self.opts.filter_O_DIRECT and name in ("open", "create", "readv", "writev"):
            args["flags"] = args["flags"] & ~os.O_DIRECT
        return args

    # -- fops that open and close fds -------------------------------------------

    def _register(self, fd: Fd, gfid: GFID | None, flags: int, is_dir: bool,
                  remote: RemoteFd) -> None:
        ctx = RemoteFdCtx(gfid, flags, is_dir, remote.num)
        fd.ctx[self] = ctx
        self._saved.add(ctx)

    async def open(self, loc, flags, fd, xdata=None):
        reply = await self._wind("open", self._prepare("open", (loc, flags, fd), xdata), xdata)
        self._register(fd, loc.gfid, flags, False, reply.fd)
        reply.fd = fd
        return reply

    async def create(self, loc, flags, mode, umask, fd, xdata=None):
        reply = await self._wind("create", self._prepare(
            "create", (loc, flags, mode, umask, fd), xdata), xdata)
        self._register(fd, reply.iatt.gfid, flags & ~(os.O_CREAT | os.O_EXCL | os.O_TRUNC),
                       False, reply.fd)
        reply.fd = fd
        return reply

    async def opendir(self, loc, fd, xdata=None):
        reply = await self._wind("opendir", self._prepare("opendir", (loc, fd), xdata), xdata)
        self._register(fd, loc.gfid, os.O_RDONLY, True, reply.fd)
        reply.fd = fd
        return reply

    async def release(self, fd, xdata=None):
        return await self._release("release", fd, xdata)

    async def releasedir(self, fd, xdata=None):
        return await self._release("releasedir", fd, xdata)

    async def _release(self, name: str, fd: Fd, xdata) -> fops.Reply:
        """client_fdctx_destroy: forget the fd; tell the brick if it knows
        it.  Never fails upward: a brick that is gone has released it."""
        ctx = fd.ctx.pop(self, None)
        if ctx is None:
            return fops.Reply()
        ctx.released = True
        self._saved.discard(ctx)
        if ctx.remote_fd < 0 or not self._connected:
            return fops.Reply()
        token = fops.caller.set(_ANONYMOUS)  # GlusterFS releases from a fresh frame
        try:
            await self._wind(name, {"fd": RemoteFd(fd.gfid or ctx.gfid, ctx.remote_fd)},
                             xdata, cred=self._cred())
        except FopError as e:
            self.log.debug("%s of fd %d: %s", name, ctx.remote_fd, e)
        finally:
            fops.caller.reset(token)
        return fops.Reply()

    async def flush(self, fd, xdata=None):
        """close(2)'s FLUSH.  On a brick it does one thing: features/locks
        drops the POSIX locks (and features/leases the lease) that the
        closing lock owner holds on the inode through this connection -
        posix's flush is a no-op, and protocol/server keeps the fd until
        RELEASE.  So while this translator has sent no lk, lease or
        setactivelk, no such lock exists and the FLUSH is answered here,
        after the checks a sent one would meet first (the fd open on the
        brick, the connection up): one RPC fewer per file a program writes
        and closes (issue 17; GlusterFS's client sends it always, so its
        `volume profile` counts a FLUSH per close where this counts none).
        Write-behind, above, still makes close(2) wait for its writes and
        report their errors.  A FLUSH with xdata is always sent."""
        if self._owner_locks_sent or xdata:
            return await self._wind("flush", self._prepare("flush", (fd,), xdata), xdata)
        self._remote_fd("flush", fd)
        if self._endpoint is None or not self._connected:
            raise FopError(errno.ENOTCONN, f"{self.name}: not connected to "
                                           f"{self.remote_host}")
        return fops.Reply()

    async def lease(self, loc, lease, xdata=None):
        self._owner_locks_sent = True    # before it is sent: see flush
        return await self._wind("lease", self._prepare("lease", (loc, lease), xdata), xdata)

    async def setactivelk(self, loc, locks, xdata=None):
        self._owner_locks_sent = True
        return await self._wind("setactivelk", self._prepare("setactivelk", (loc, locks), xdata),
                                xdata)

    async def lk(self, fd, cmd, flock, xdata=None):
        self._owner_locks_sent = True    # before it is sent: see flush
        args = self._prepare("lk", (fd, cmd, flock), xdata)
        reply = await self._wind("lk", args, xdata, cred=self._cred(flock.owner))
        ctx = fd.ctx.get(self)
        if ctx is not None and cmd in (LockCmd.SETLK, LockCmd.SETLKW):
            owner = fops.caller.get().lk_owner or flock.owner
            start = flock.start
            end = start + flock.len - 1 if flock.len > 0 else None
            if flock.type == LockType.UNLCK:
                ctx.remove_lock(owner, start, end)
            else:
                ctx.add_lock(owner, start, end)
        return reply

    async def _reopen_saved_fds(self, ep: RpcEndpoint) -> None:
        """client_post_handshake: re-open what a disconnect closed, all at
        once, before CHILD_UP."""
        todo = [ctx for ctx in self._saved if ctx.remote_fd == -1
                and not (ctx.locks and self.opts.strict_locks)]
        if not todo:
            return
        self.log.info("%d fds open - Delaying child_up until they are re-opened", len(todo))
        async with trio.open_nursery() as nursery:
            for ctx in todo:
                nursery.start_soon(self._reopen, ep, ctx)

    async def _reopen(self, ep: RpcEndpoint, ctx: RemoteFdCtx) -> None:
        """protocol_client_reopen_v2: open (or opendir) by gfid again."""
        if ctx.reopening or ctx.gfid is None:
            return
        ctx.reopening = True
        loc = Loc(gfid=ctx.gfid)
        try:
            if ctx.is_dir:
                request = FopRequest(fops.BY_NAME["opendir"], {"loc": loc})
                procedure = FOP_PROCEDURES["opendir"]
            else:
                flags = ctx.flags & ~(os.O_TRUNC | os.O_CREAT | os.O_EXCL)
                request = FopRequest(fops.BY_NAME["open"], {"loc": loc, "flags": flags})
                procedure = FOP_PROCEDURES["open"]
            response = await self._rpc(ep, procedure, request,
                                       AuthGlusterfsV3.from_caller(_ANONYMOUS))
            remote = response.unwrap().fd.num
        except (FopError, ConnectionLost, RpcCallFailed) as e:
            self.log.warning("reopen on <gfid:%s> failed: %s", ctx.gfid, e)
            return
        finally:
            ctx.reopening = False
        if ctx.released:
            # released while the re-open was on its way: close it again
            try:
                await self._rpc(ep, FOP_PROCEDURES["releasedir" if ctx.is_dir else "release"],
                                FopRequest(fops.BY_NAME["releasedir" if ctx.is_dir
                                                        else "release"],
                                           {"fd": RemoteFd(ctx.gfid, remote)}),
                                AuthGlusterfsV3.from_caller(_ANONYMOUS))
            except (FopError, ConnectionLost, RpcCallFailed):
                pass
            return
        ctx.remote_fd = remote
        ctx.reopen_attempts = 0
        self.log.debug("reopen on <gfid:%s> succeeded (remote-fd = %d)", ctx.gfid, remote)

    # -- the callback program -------------------------------------------------------

    async def _serve_callback(self, ep: RpcEndpoint, call) -> None:
        """client-callback.c's actors, one-way: nothing is answered."""
        name = call.procedure.name
        msg = call.args
        if name == "FETCHSPEC":
            self._notify(Event.VOLFILE_MODIFIED, "FETCHSPEC")
        elif name == "CACHE_INVALIDATION" and isinstance(msg, CacheInvalidation):
            try:
                gfid = GFID(msg.gfid)
            except ValueError:
                self.log.warning("cache invalidation for a bad gfid %r", msg.gfid)
                return None
            self._notify(Event.UPCALL, Upcall(UpcallType.CACHE_INVALIDATION, gfid, msg))
        elif name == "RECALL_LEASE" and isinstance(msg, RecallLease):
            self._notify(Event.UPCALL, Upcall(UpcallType.RECALL_LEASE, msg.gfid, msg))
        elif name == "INODELK_CONTENTION" and isinstance(msg, InodelkContention):
            self._notify(Event.UPCALL, Upcall(UpcallType.INODELK_CONTENTION, msg.gfid, msg))
        elif name == "ENTRYLK_CONTENTION" and isinstance(msg, EntrylkContention):
            self._notify(Event.UPCALL, Upcall(UpcallType.ENTRYLK_CONTENTION, msg.gfid, msg))
        elif name == "CHILD_UP":
            self._child_up = True
            if self._connected:
                self._notify(Event.CHILD_UP, uniq=True)
        elif name == "CHILD_DOWN":
            self._child_up = False
            self._notify(Event.CHILD_DOWN, uniq=True)
        else:
            self.log.debug("callback %s from %s ignored", name, ep.peer)
        return None


def _is_ipv6_literal(host: str) -> bool:
    """name.c: an IPv6 address as remote-host overrides the address family."""
    try:
        socket.inet_pton(socket.AF_INET6, host)
    except OSError:
        return False
    return True




#: every fop the class does not write itself: sent to the brick
FOP_METHODS = Family(
    module="xlators.protocol.client_fops", owner="ProtocolClient",
    doc="{name}: sent to the brick with the 4.x fop program.",
    fields=lambda fop: {"quoted": repr(fop.name)},
    template="""
async def {name}(self, {params}, xdata=None):
    return await self._wind({quoted}, self._prepare({quoted}, ({params},), xdata), xdata)
""")
install(ProtocolClient, FOP_METHODS)

TRANSLATOR = ProtocolClient
