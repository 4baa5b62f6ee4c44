"""`glusterpy brick`: a brick process, glusterfsd's role.

    glusterpy brick --volfile FILE [--port P] [--pidfile F] [--log-file F]
                    [--log-level L] [--volfile-server HOST:PORT [--brick-name NAME]]
                    [--xlator-option VOL.KEY=VALUE ...]

Builds the graph of a brick volfile - protocol/server on top, e.g. over
features/locks over storage/posix - and serves it until SIGTERM or SIGINT.
`--port` sets the server's `transport.socket.listen-port`, as glusterd
passes `--brick-port` to glusterfsd.

With `--volfile-server`, the process signs in to that portmap (PMAP SIGNIN
of every subvolume protocol/server exports - glusterfsd signs in the
children of its top translator - plus `--brick-name` if it is another
name), keeps the connection open, signs in again after reconnecting (the
portmap forgets a brick whose connection drops), and signs out at exit.
Unlike glusterfsd, the volfile is always the local file: the volfile server
is used for the portmap only.

SIGHUP reloads the volfile, as glusterfsd reloads on glusterd's
FETCHSPEC: a volfile that differs only in options is applied to the live
graph (Graph.reconfigure - every translator validates before any changes);
one that changes the graph's shape, or an option that is not
reconfigurable, is refused and logged ("brick reload refused"), and the
brick keeps serving the old graph: glusterpyd restarts the brick instead
when it sees such a change coming (glusterd/volgen.py needs_restart).

Shutdown on SIGTERM/SIGINT follows glusterfsd's cleanup_and_exit: sign out,
stop accepting, disconnect the clients (their fds are flushed and released
and their locks dropped), fini every translator, remove the pid file.  The
pid file is taken with a lock at start, so two bricks cannot share it.
Exit status: 0 after a clean shutdown, 1 when the volfile or the listening
port is refused, 2 for bad arguments.
"""

from __future__ import annotations

import logging
import os
import signal
import sys

import trio

from ..rpc import tls
from .. import volfile as vf
from ..fops import FopError
from ..graph import Graph
from ..rpc import (ALL_PROGRAMS, CLIENT_PROGRAMS, PORTMAP, AuthGlusterfsV2, RpcConnection,
                   RpcProtocolError, SigninRequest, SignoutRequest)
from ..rpc.transport import ConnectionLost, RpcCallFailed, RpcEndpoint
from ..process import settle_heap
from .daemon import add_log_arguments, run_service, setup_logging

log = logging.getLogger("glusterpy.brick")

SIGNIN = PORTMAP.by_name("SIGNIN")
SIGNOUT = PORTMAP.by_name("SIGNOUT")
PORTMAP_TIMEOUT = 10.0


def register(sub) -> None:
    p = sub.add_parser("brick", help="run a brick process (glusterfsd's role)",
                       description="Serve a brick volfile (protocol/server on top) until "
                                   "SIGTERM.")
    p.add_argument("--volfile", required=True, metavar="FILE", help="the brick volfile")
    p.add_argument("--port", type=int, metavar="P",
                   help="listen on this TCP port (transport.socket.listen-port)")
    p.add_argument("--pidfile", metavar="FILE", help="write the process id here")
    add_log_arguments(p)
    p.add_argument("--volfile-server", metavar="HOST:PORT",
                   help="portmap to sign in to (glusterd, or glusterpy volfile-server)")
    p.add_argument("--brick-name", metavar="NAME",
                   help="a further name to sign in under (glusterd passes the brick path)")
    p.add_argument("--xlator-option", action="append", default=[], metavar="VOL.KEY=VALUE",
                   help="override an option of the volfile, as glusterfsd --xlator-option")
    p.set_defaults(func=run)


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, 24007
    if not host or not port.isdigit() or not 0 < int(port) <= 65535:
        raise ValueError(f"--volfile-server {text!r}: expected HOST:PORT")
    return host.strip("[]"), int(port)


def build_graph(path: str, port: int | None, xlator_options) -> Graph:
    """The brick graph; VolfileError unless its top is protocol/server."""
    volfile = vf.apply_xlator_options(vf.load(path), xlator_options)
    top = volfile.top
    if top.type not in ("protocol/server",):
        raise vf.VolfileError(volfile.filename, top.type_line,
                              f"the top volume '{top.name}' is {top.type}, not protocol/server")
    if port is not None:
        top.options["transport.socket.listen-port"] = str(port)
    return Graph(volfile)


def run(args) -> int:
    try:
        portmap = _host_port(args.volfile_server) if args.volfile_server else None
        if args.port is not None and not 0 <= args.port <= 65535:
            raise ValueError(f"--port {args.port}: not a TCP port")
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        graph = build_graph(args.volfile, args.port, args.xlator_option)
    except vf.VolfileError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    setup_logging(args.log_file, args.log_level)
    reload = lambda: build_graph(args.volfile, args.port, args.xlator_option).volfile
    status = run_service(_serve, graph, portmap, args.brick_name, reload,
                         pidfile=args.pidfile, program="brick", expected=(OSError, FopError))
    if status:
        return status
    log.info("brick stopped")
    return 0


async def _serve(graph: Graph, portmap: tuple[str, int] | None, brick_name: str | None,
                 reload=None) -> None:
    server = graph.top
    names = [child.name for child in server.children]
    if brick_name and brick_name not in names:
        names.append(brick_name)
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
        async with graph.running():
            log.info("brick %s serving on %s:%d", ", ".join(names), server.address,
                     server.port)
            settle_heap()       # again: the graph's translators are set up now
            signin = None
            async with trio.open_nursery() as nursery:
                if portmap is not None:
                    signin = PortmapSignin(*portmap, names, server.port)
                    nursery.start_soon(signin.run)
                async for signum in signals:
                    if signum == signal.SIGHUP:
                        _reload(graph, reload)
                        continue
                    log.info("received signal %d, shutting down", signum)
                    break
                if signin is not None:
                    await signin.signout()
                nursery.cancel_scope.cancel()
        # leaving graph.running(): protocol/server stops accepting and
        # disconnects its clients, then every translator's fini runs


def _reload(graph: Graph, reload) -> None:
    """SIGHUP: apply the volfile as it is now on disk to the live graph."""
    if reload is None:
        return
    try:
        new = reload()
        if not graph.same_shape(new):
            log.error("brick reload refused: the volfile changes the graph's shape "
                      "(the brick must be restarted)")
            return
        graph.reconfigure(new)
    except (vf.VolfileError, FopError, ValueError) as e:
        log.error("brick reload refused: %s", e)
        return
    log.info("brick reconfigured from %s", new.filename)


class PortmapSignin:
    """Keeps this brick signed in to a portmap (glusterfsd-mgmt.c's
    glusterfs_mgmt_pmap_signin, redone after every reconnect)."""

    def __init__(self, host: str, port: int, names: list[str], brick_port: int):
        self.host, self.port = host, port
        self.names = names
        self.brick_port = brick_port
        self.endpoint: RpcEndpoint | None = None
        self.signed_in = trio.Event()
        self._cred = AuthGlusterfsV2(pid=os.getpid(), lk_owner=os.getpid().to_bytes(4, "little"))

    async def _connect(self) -> RpcEndpoint:
        # TLS under secure-access, as glusterfsd signs in to glusterd
        stream = await tls.open_mgmt_stream(self.host, self.port)
        return RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                           name="portmap")

    async def run(self) -> None:
        delay = 0.5
        while True:
            try:
                endpoint = await self._connect()
            except OSError as e:
                log.warning("cannot reach the portmap at %s:%d: %s", self.host, self.port,
                            e.strerror or e)
                await trio.sleep(delay)
                delay = min(delay * 2, 10.0)
                continue
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_serve_endpoint, endpoint)
                try:
                    for name in self.names:
                        reply = await endpoint.call(
                            SIGNIN, SigninRequest(brick=name, port=self.brick_port,
                                                  pid=os.getpid()),
                            cred=self._cred, timeout=PORTMAP_TIMEOUT)
                        if reply.op_ret < 0:
                            log.error("portmap refused the sign-in of %s (errno %d)", name,
                                      reply.op_errno)
                        else:
                            log.info("signed in %s on port %d at %s:%d", name,
                                     self.brick_port, self.host, self.port)
                    self.endpoint = endpoint
                    self.signed_in.set()
                    delay = 0.5
                except (ConnectionLost, RpcCallFailed, trio.TooSlowError) as e:
                    log.warning("portmap sign-in failed: %s", e)
                    await endpoint.aclose()
            # the connection is gone: the portmap dropped our names with it
            self.endpoint = None
            log.warning("lost the portmap connection to %s:%d; signing in again",
                        self.host, self.port)
            await trio.sleep(delay)

    async def signout(self) -> None:
        """PMAP SIGNOUT of every name, on the open connection or a new one;
        gives up quietly after a few seconds (the portmap also forgets us
        when the connection closes)."""
        with trio.move_on_after(5):
            async with trio.open_nursery() as nursery:
                endpoint = self.endpoint
                try:
                    if endpoint is None or endpoint.closed:
                        endpoint = await self._connect()
                        nursery.start_soon(_serve_endpoint, endpoint)
                    for name in self.names:
                        await endpoint.call(SIGNOUT, SignoutRequest(brick=name,
                                                                    port=self.brick_port),
                                            cred=self._cred, timeout=PORTMAP_TIMEOUT)
                        log.info("signed out %s", name)
                except (OSError, RpcCallFailed, trio.TooSlowError) as e:
                    log.warning("portmap sign-out failed: %s", e)
                finally:
                    if endpoint is not None:
                        await endpoint.aclose()


async def _serve_endpoint(endpoint: RpcEndpoint) -> None:
    try:
        await endpoint.serve()
    except RpcProtocolError:
        pass  # logged by the endpoint
