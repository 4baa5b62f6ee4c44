"""Getting a client graph from a volfile server, as libgfapi does at start-up.

`fetch_volfile()` asks for a volume's client volfile with the handshake
program's GETSPEC, the way api/src/glfs-mgmt.c does: key = the volume name,
flags = GF_GETSPEC_FLAG_SERVERS_LIST, xdata = {max-op-version,
min-op-version}, the AUTH_GLUSTERFS_v2 credential of a fresh frame.  The
servers (glusterd on 24007, glusterpyd, `glusterpy volfile-server`) are
tried in turn until one answers, as glfs's mgmt_rpc_notify moves to the next
volfile server on a failed connection; an answer "no such volume" ends the
search, since every server of a cluster knows the same volumes.

`client_graph()` turns the text into a `Graph`.  glusterd's client volfiles
stack translators glusterpy does not have (yet) above the ones that hold
the data.  Those that only cache, defer, count or pass through - GlusterFS's
performance/* translators, debug/io-stats and debug/trace, features/quiesce,
features/utime, and cluster/distribute over a single subvolume - are left
out, their child taking their place, and the caller is told which (gfapi
logs them).  Any other translator glusterpy lacks fails the load with the
volfile's line, as GlusterFS itself refuses a volfile naming an unknown type.
Leaving out features/utime has a visible effect on a GlusterFS brick whose
ctime feature is on: the brick keeps the times it stores in its mdata xattr
only for clients that send their own clock, so those times do not move for
changes made through glusterpy.

`VolfileWatch` keeps a connection to the volfile server open after the
mount, as libgfapi keeps its mgmt connection, and calls back when the server
sends the callback program's FETCHSPEC ("the volfile changed"); it
reconnects every 3 seconds (rpc-clnt's reconnect timer) through the same
list of servers.

Secure access: when /var/lib/glusterd/secure-access exists (or
$GLUSTERPY_SECURE_ACCESS=1) every connection to a volfile server is TLS
from its first byte, with /etc/ssl/glusterfs.{pem,key,ca} and the file's
cert depth (glusterpy.rpc.tls), as libgfapi's glfs_mgmt_init does; the
server must present a certificate the CA list trusts.

`fetch_client_graph()` is the whole start-up of a client process (GETSPEC,
the graph, the identity its protocol/client translators send); the FUSE
bridge uses it as gfapi does.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from typing import Awaitable, Callable, Iterable, Sequence

import trio

from .. import volfile as vf
from ..graph import Graph, UnknownTranslatorType, canonical_type, translator_class
from ..process import ProcessIdentity, set_process_identity
from ..rpc import (ALL_PROGRAMS, CLIENT_PROGRAMS, HANDSHAKE, AuthGlusterfsV2, GetSpecRequest,
                   GetVolumeInfoRequest, RpcConnection, RpcProtocolError)
from ..rpc.mgmt import GF_GET_VOLUME_UUID, GF_GETSPEC_FLAG_SERVERS_LIST
from ..rpc import tls
from ..rpc.transport import ConnectionLost, RpcCallFailed, RpcEndpoint
from ..fops import Caller
from ..volfile import VolfileError
from .exceptions import LibgfapiException

log = logging.getLogger("glusterpy.gfapi.mgmt")

DEFAULT_PORT = 24007
#: GD_OP_VERSION_MIN and GD_OP_VERSION_MAX of GlusterFS 10, which GETSPEC announces
MIN_OP_VERSION, MAX_OP_VERSION = 1, 100000
#: seconds to connect and to wait for GETSPEC's answer, per server
FETCH_TIMEOUT = 10.0
RECONNECT_INTERVAL = 3.0
#: "unix": the host is the path of glusterd's (or glusterpyd's) unix socket,
#: as glfs_set_volfile_server("unix", path, 0) takes it
SUPPORTED_TRANSPORTS = ("tcp", "socket", "unix")

_GETSPEC = HANDSHAKE.by_name("GETSPEC")
_GET_VOLUME_INFO = HANDSHAKE.by_name("GET_VOLUME_INFO")

#: translators that may be left out of a fetched client graph when glusterpy
#: lacks them: each one only caches, defers, counts or passes through
PASS_THROUGH_TYPES = frozenset({
    "performance/write-behind", "performance/read-ahead", "performance/readdir-ahead",
    "performance/io-threads", "performance/open-behind", "performance/quick-read",
    "performance/md-cache", "performance/stat-prefetch", "performance/nl-cache",
    "performance/io-cache", "debug/io-stats", "debug/trace", "features/quiesce",
    "features/utime",
})
#: ... and these only when they have a single subvolume
SINGLE_CHILD_PASS_THROUGH = frozenset({"cluster/distribute"})


class VolfileFetchError(LibgfapiException):
    """GETSPEC did not give a volfile; `errno` says why (ENOENT: no such
    volume, ENOTCONN: no server reachable, other: the server's answer)."""

    def __init__(self, message: str, err: int):
        super().__init__(message)
        self.errno = err


@dataclass(frozen=True, slots=True)
class VolfileServer:
    host: str
    port: int = DEFAULT_PORT
    transport: str = "tcp"

    def __str__(self) -> str:
        if self.transport == "unix":
            return f"unix:{self.host}"
        return f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class FetchedVolfile:
    """A client volfile and the server that gave it."""

    text: str
    key: str
    server: VolfileServer


def volfile_servers(hosts: str | Iterable[str], port: int = DEFAULT_PORT,
                    transport: str = "tcp") -> list[VolfileServer]:
    """The servers to try, in order: `hosts` is one host, a comma-separated
    list or a sequence (libgfapi-python's `hosts`)."""
    if transport not in SUPPORTED_TRANSPORTS:
        raise LibgfapiException(f"transport {transport!r} is not supported "
                                f"(glusterpy speaks {', '.join(SUPPORTED_TRANSPORTS)})")
    names = hosts.split(",") if isinstance(hosts, str) else list(hosts)
    servers = [VolfileServer(h.strip(), int(port), transport) for h in names if h.strip()]
    if not servers:
        raise LibgfapiException("no volfile server given")
    return servers


def getspec_request(key: str) -> GetSpecRequest:
    """GETSPEC's arguments as glfs_volfile_fetch() builds them (the dict's
    keys in the order GlusterFS puts them on the wire)."""
    return GetSpecRequest(flags=GF_GETSPEC_FLAG_SERVERS_LIST, key=key,
                          xdata={"max-op-version": MAX_OP_VERSION,
                                 "min-op-version": MIN_OP_VERSION})


_CRED = AuthGlusterfsV2.from_caller(Caller())


async def _connect(server: VolfileServer, timeout: float) -> trio.abc.Stream:
    """TCP to the volfile server, TLS when secure access is on (glfs_mgmt_init
    reads /var/lib/glusterd/secure-access); a refused handshake is an OSError
    (TlsError) naming the reason.  A unix socket is plain, as GlusterFS
    never puts TLS on a local socket."""
    if server.transport == "unix":
        with trio.fail_after(timeout):
            return await trio.open_unix_socket(server.host)
    try:
        return await tls.open_mgmt_stream(server.host, server.port, timeout=timeout)
    except tls.TlsError as e:
        log.error("volfile server %s: %s", server, e.strerror)
        raise


async def _getspec(ep: RpcEndpoint, key: str, server: VolfileServer,
                   timeout: float) -> FetchedVolfile:
    reply = await ep.call(_GETSPEC, getspec_request(key), cred=_CRED, timeout=timeout)
    if reply.op_ret < 0:
        err = reply.op_errno or errno.ENOENT
        if err == errno.ENOENT:
            raise VolfileFetchError(f"volume {key!r} does not exist on the volfile server "
                                    f"{server} (GETSPEC: {os.strerror(err)})", err)
        raise VolfileFetchError(f"the volfile server {server} refused the volfile of "
                                f"{key!r}: {os.strerror(err)}", err)
    return FetchedVolfile(reply.spec, key, server)


async def fetch_volfile(servers: Sequence[VolfileServer], key: str, *,
                        timeout: float = FETCH_TIMEOUT) -> FetchedVolfile:
    """GETSPEC `key` from the first server that answers."""
    failures = []
    for server in servers:
        try:
            stream = await _connect(server, timeout)
        except (OSError, trio.TooSlowError) as e:
            failures.append(f"{server}: {_why(e)}")
            continue
        ep = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                         name="gfapi-mgmt")
        fetched = refused = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_quietly, ep)
                try:
                    # caught here, inside the nursery, so that it is not
                    # wrapped in an exception group on its way out
                    fetched = await _getspec(ep, key, server, timeout)
                except (ConnectionLost, RpcCallFailed, trio.TooSlowError) as e:
                    failures.append(f"{server}: {_why(e)}")
                except VolfileFetchError as e:  # the server answered: no such volume
                    refused = e
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            await ep.aclose()
        if refused is not None:
            raise refused
        if fetched is not None:
            return fetched
    raise VolfileFetchError("cannot fetch the volfile of "
                            f"{key!r}: no volfile server answered ({'; '.join(failures)})",
                            errno.ENOTCONN)


async def fetch_volume_id(servers: Sequence[VolfileServer], volname: str, *,
                          timeout: float = FETCH_TIMEOUT) -> str:
    """The volume's uuid from the first volfile server that answers the
    handshake program's GET_VOLUME_INFO, as glfs_get_volumeid() asks it
    (glfs_get_volume_info_rpc: dict {flags: GF_GET_VOLUME_UUID, volname});
    glusterd answers {volume_id: UUID}.  VolfileFetchError when no server
    gives it (ENOTSUP: a server without the procedure, such as the
    standalone volfile server)."""
    failures, err = [], errno.ENOTCONN
    request = GetVolumeInfoRequest({"flags": GF_GET_VOLUME_UUID, "volname": volname})
    for server in servers:
        try:
            stream = await _connect(server, timeout)
        except (OSError, trio.TooSlowError) as e:
            failures.append(f"{server}: {_why(e)}")
            continue
        ep = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                         name="gfapi-mgmt")
        reply = None
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_quietly, ep)
                try:
                    reply = await ep.call(_GET_VOLUME_INFO, request, cred=_CRED,
                                          timeout=timeout)
                except RpcCallFailed as e:
                    failures.append(f"{server}: {e}")
                    err = errno.ENOTSUP
                except (ConnectionLost, trio.TooSlowError) as e:
                    failures.append(f"{server}: {_why(e)}")
                finally:
                    nursery.cancel_scope.cancel()
        finally:
            await ep.aclose()
        if reply is None:
            continue
        found = (reply.dict or {}).get("volume_id")
        if reply.op_ret < 0 or not found:
            err = reply.op_errno or errno.ENODATA
            failures.append(f"{server}: GET_VOLUME_INFO: {reply.op_errstr or os.strerror(err)}")
            continue
        found = found.decode() if isinstance(found, bytes) else str(found)
        # glusterd's dict strings carry their C terminator
        return found.rstrip("\x00")
    raise VolfileFetchError(f"cannot get the volume id of {volname!r} "
                            f"({'; '.join(failures)})", err)


async def _serve_quietly(ep: RpcEndpoint) -> None:
    """The endpoint's read loop; garbage from the server ends it (the
    waiting GETSPEC then fails with ConnectionLost)."""
    try:
        await ep.serve()
    except RpcProtocolError as e:
        log.warning("volfile server %s: %s", ep.peer, e)


def _why(e: BaseException) -> str:
    if isinstance(e, trio.TooSlowError):
        return "timed out"
    cause = e.__cause__
    if isinstance(cause, BaseExceptionGroup) and cause.exceptions:
        # trio.open_tcp_stream: "all attempts to connect failed", each in the group
        return "; ".join(sorted({_why(c) for c in cause.exceptions}))
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


def elide_unavailable(volfile: vf.Volfile) -> list[str]:
    """Leave out (in place) the pass-through translators glusterpy lacks;
    return "name (type)" for each one left out."""
    elided = []
    for vdef in list(volfile.volumes):
        try:
            translator_class(vdef.type or "")
            continue
        except UnknownTranslatorType:
            pass
        kind = canonical_type(vdef.type or "")
        if len(vdef.subvolumes) != 1 or \
                kind not in PASS_THROUGH_TYPES | SINGLE_CHILD_PASS_THROUGH:
            continue  # Graph() reports it with its line
        child = vdef.subvolumes[0]
        was_top = volfile.top is vdef
        volfile.volumes.remove(vdef)
        for other in volfile.volumes:
            other.subvolumes = [child if s == vdef.name else s for s in other.subvolumes]
        if was_top:
            child_def = volfile[child]
            volfile.volumes.remove(child_def)
            volfile.volumes.append(child_def)
        elided.append(f"{vdef.name} ({vdef.type})")
    return elided


def client_graph(fetched: FetchedVolfile) -> tuple[Graph, list[str]]:
    """Build the client graph of a fetched volfile; LibgfapiException with
    the volfile's line when it does not load."""
    where = f"<volfile of {fetched.key} from {fetched.server}>"
    try:
        volfile = vf.parses(fetched.text, where)
        elided = elide_unavailable(volfile)
        return Graph(volfile), elided
    except VolfileError as e:
        raise LibgfapiException(f"the volfile of {fetched.key!r} from {fetched.server} "
                                f"does not load: {e}") from None


async def fetch_client_graph(servers: Sequence[VolfileServer], volname: str, *,
                             process_name: str) -> tuple[Graph, FetchedVolfile, list[str]]:
    """GETSPEC + client_graph(), and the process identity that SETVOLUME
    sends (process-name, volfile-key, the volfile server as the default
    remote-host) given to the graph's protocol/client translators: what a
    client process (gfapi, the FUSE bridge) does before running the graph.
    Returns the graph, the fetched volfile and the translators left out."""
    fetched = await fetch_volfile(servers, volname)
    graph, elided = client_graph(fetched)
    set_process_identity(graph, ProcessIdentity(process_name=process_name, volfile_key=volname,
                                                volfile_server=fetched.server.host))
    return graph, fetched, elided


class VolfileWatch:
    """The standing connection to a volfile server that libgfapi keeps.

    `await watch.run(on_change)` (in a nursery) connects to the first
    server that accepts and fetches the volfile there, as glfs does on every
    (re)connection of its mgmt connection - a volfile server sends FETCHSPEC
    to the connections that fetched, and a change made while disconnected
    is caught up with.  It fetches again on each FETCHSPEC and on
    `refresh()`, and awaits `on_change(fetched)` whenever the text differs
    from the last one seen (initially `text`).  After a disconnect it tries
    the servers again every RECONNECT_INTERVAL seconds.  Cancel it to stop.
    """

    def __init__(self, servers: Sequence[VolfileServer], key: str, text: str | None = None):
        self.servers = list(servers)
        self.key = key
        self.text = text
        self.connected_to: VolfileServer | None = None
        self._wanted = trio.Event()

    def refresh(self) -> None:
        """Fetch the volfile again soon (e.g. a brick said it is stale)."""
        self._wanted.set()

    async def _callback(self, ep: RpcEndpoint, call) -> None:
        if call.procedure.name == "FETCHSPEC":
            log.info("volfile server %s: the volfile of %s changed", ep.peer, self.key)
            self.refresh()
        return None

    async def run(self, on_change: Callable[[FetchedVolfile], Awaitable[None]]) -> None:
        while True:
            for server in self.servers:
                try:
                    stream = await _connect(server, FETCH_TIMEOUT)
                except (OSError, trio.TooSlowError):
                    continue
                ep = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                                 handler=self._callback, name="gfapi-mgmt")
                self.connected_to = server
                try:
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._serve, ep, nursery.cancel_scope)
                        self.refresh()
                        await self._fetch_when_wanted(ep, server, on_change)
                finally:
                    self.connected_to = None
                    await ep.aclose()
                break
            await trio.sleep(RECONNECT_INTERVAL)

    async def _serve(self, ep: RpcEndpoint, scope: trio.CancelScope) -> None:
        try:
            await ep.serve()
        except Exception as e:  # garbage from the server: reconnect
            log.warning("volfile server %s: %s", ep.peer, e)
        finally:
            scope.cancel()

    async def _fetch_when_wanted(self, ep, server, on_change) -> None:
        while True:
            await self._wanted.wait()
            self._wanted = trio.Event()
            try:
                fetched = await _getspec(ep, self.key, server, FETCH_TIMEOUT)
            except (ConnectionLost, RpcCallFailed, trio.TooSlowError) as e:
                log.warning("volfile server %s: fetching %s failed: %s", server, self.key,
                            _why(e))
                return
            except VolfileFetchError as e:
                log.warning("%s", e)
                continue
            if fetched.text == self.text:
                continue
            self.text = fetched.text
            try:
                await on_change(fetched)
            except Exception:
                log.exception("applying the changed volfile of %s failed", self.key)
