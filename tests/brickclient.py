"""Helpers for the protocol/server tests: an in-process brick and a raw
GlusterFS RPC client built only from glusterpy.rpc (RpcConnection driven by
RpcEndpoint), so the tests see exactly what goes on the wire and nothing of
protocol/client.

    async with running_brick(brick_dir) as brick:          # server -> posix
        async with raw_client(brick.port, nursery) as c:
            reply = await c.setvolume(brick.subvolume)
            resp = await c.fop("lookup", loc=Loc(pargfid=ROOT_GFID, name="f"))
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

import trio

from glusterpy import fops
from glusterpy.fops import BY_NAME, Caller
from glusterpy.graph import Graph
from glusterpy.rpc import (ALL_PROGRAMS, CLIENT_PROGRAMS, DUMP, FOP_PROCEDURES, HANDSHAKE,
                           AuthGlusterfsV3, FopRequest, RpcConnection, SetVolumeRequest,
                           old_dict_text)
from glusterpy.rpc.transport import RpcEndpoint

SETVOLUME = HANDSHAKE.by_name("SETVOLUME")
HANDSHAKE_PING = HANDSHAKE.by_name("PING")
DUMP_DUMP = DUMP.by_name("DUMP")
DUMP_PING = DUMP.by_name("PING")


def brick_volfile(directory, *, name: str = "test", locks: bool = False,
                  server_options: dict | None = None, allow: str | None = "*") -> str:
    """server -> [locks ->] posix on `directory`, listening on 127.0.0.1 on
    a free port; the subvolume clients name is the server's child."""
    top = f"{name}-locks" if locks else f"{name}-posix"
    text = (f"volume {name}-posix\n    type storage/posix\n"
            f"    option directory {directory}\nend-volume\n")
    if locks:
        text += (f"volume {name}-locks\n    type features/locks\n"
                 f"    subvolumes {name}-posix\nend-volume\n")
    options = {"transport.socket.listen-port": "0",
               "transport.socket.bind-address": "127.0.0.1"}
    if allow is not None:
        options[f"auth.addr.{top}.allow"] = allow
    options.update(server_options or {})
    text += f"volume {name}-server\n    type protocol/server\n"
    for key, value in options.items():
        text += f'    option {key} "{value}"\n'
    text += f"    subvolumes {top}\nend-volume\n"
    return text


@dataclass
class Brick:
    graph: Graph
    server: object
    subvolume: str

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def posix(self):
        return next(xl for xl in self.graph.by_name.values() if xl.type_name == "storage/posix")

    def open_fds(self) -> int:
        """OS descriptors storage/posix holds for open (and anonymous) fds."""
        return self.posix.dump_state()["open-fds"]


@contextlib.asynccontextmanager
async def running_brick(directory, **kwargs):
    graph = Graph.from_text(brick_volfile(directory, **kwargs))
    async with graph.running():
        yield Brick(graph, graph.top, graph.top.children[0].name)


def client_caller(pid: int = 4242) -> Caller:
    return Caller(uid=0, gid=0, pid=pid, lk_owner=os.urandom(8))


@dataclass
class SetVolumeResult:
    op_ret: int
    op_errno: int
    text: dict[str, str]   # the reply dict, values as text
    keys: list[str]        # its keys in wire order


class RawClient:
    """One connection to a brick, speaking GlusterFS RPC directly."""

    def __init__(self, endpoint: RpcEndpoint):
        self.endpoint = endpoint
        self.caller = client_caller()
        self.process_uuid = f"CTX_ID:{uuid.uuid4()}-GRAPH_ID:0-PID:{os.getpid()}-HOST:test-" \
                            f"PC_NAME:raw-client-RECON_NO:-0"
        #: callbacks the brick sent us (procedure name, args)
        self.callbacks: list[tuple[str, object]] = []
        self.callback_event = trio.Event()

    async def call(self, procedure, args=None, *, cred=None, timeout: float = 10):
        return await self.endpoint.call(
            procedure, args, cred=cred or AuthGlusterfsV3.from_caller(self.caller),
            timeout=timeout)

    async def setvolume(self, subvolume: str, **params):
        d = {"remote-subvolume": subvolume, "process-uuid": self.process_uuid,
             "fops-version": "1298437", "mgmt-version": "0", "client-version": "10.3",
             "process-name": "raw-client"}
        d.update(params)
        d = {k: v for k, v in d.items() if v is not None}
        reply = await self.call(SETVOLUME, SetVolumeRequest(dict=d))
        return SetVolumeResult(reply.op_ret, reply.op_errno, old_dict_text(reply.dict),
                               list(reply.dict or {}))

    async def fop(self, fop_name: str, /, *, xdata=None, caller: Caller | None = None, **args):
        """Call a fop; returns the FopResponse (`.result` is the reply or a
        FopError).  Arguments are the catalogue's; fds are RemoteFd."""
        fop = BY_NAME[fop_name]
        for a in fop.args:
            args.setdefault(a.name, None)
        cred = AuthGlusterfsV3.from_caller(caller or self.caller)
        return await self.call(FOP_PROCEDURES[fop_name], FopRequest(fop, args, xdata),
                               cred=cred)

    async def ok(self, fop_name: str, /, **kwargs) -> fops.Reply:
        return (await self.fop(fop_name, **kwargs)).unwrap()

    async def aclose(self) -> None:
        await self.endpoint.aclose()


async def _record_callbacks(client_box, endpoint, call):
    client = client_box[0]
    client.callbacks.append((call.procedure.name, call.args))
    client.callback_event.set()
    client.callback_event = trio.Event()


@contextlib.asynccontextmanager
async def raw_client(port: int, host: str = "127.0.0.1"):
    """A RawClient connected to host:port, serving callbacks, closed at the end."""
    stream = await trio.open_tcp_stream(host, port)
    box: list = []
    endpoint = RpcEndpoint(stream, RpcConnection(ALL_PROGRAMS, serves=CLIENT_PROGRAMS),
                           handler=lambda ep, call: _record_callbacks(box, ep, call),
                           name="raw-client")
    client = RawClient(endpoint)
    box.append(client)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_serve_quietly, endpoint)
        try:
            yield client
        finally:
            await endpoint.aclose()
            nursery.cancel_scope.cancel()


async def _serve_quietly(endpoint):
    try:
        await endpoint.serve()
    except Exception:
        pass


async def wait_until(predicate, timeout: float = 5.0, step: float = 0.01) -> None:
    """Poll `predicate()` until true (for effects of another task or process)."""
    with trio.fail_after(timeout):
        while not predicate():
            await trio.sleep(step)
