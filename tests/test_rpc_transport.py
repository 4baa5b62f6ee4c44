"""The trio transport over real loopback TCP: concurrent calls matched by
xid, incoming calls served concurrently, and failures surfacing as
ConnectionLost instead of hangs."""

import socket

import pytest
import trio

from glusterpy.rpc import (DUMP, DumpReply, DumpRequest, ProgramInfo, RpcConnection)
from glusterpy.rpc.transport import ConnectionLost, RpcCallFailed, RpcEndpoint

DUMP_PROC = DUMP.by_name("DUMP")
PING_PROC = DUMP.by_name("PING")


async def open_pair(handler):
    """A listening endpoint with `handler` and a connected client endpoint."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client_stream = await trio.open_tcp_stream("127.0.0.1", port)
    server_stream = await listeners[0].accept()
    await listeners[0].aclose()
    server = RpcEndpoint(server_stream, RpcConnection(), handler=handler, name="server")
    client = RpcEndpoint(client_stream, RpcConnection(), name="client")
    return server, client


async def test_concurrent_calls_are_matched_by_xid(nursery):
    async def handler(endpoint, call):
        # answer in reverse order of arrival: later calls finish first
        await trio.sleep(0.05 - call.args.gfs_id * 0.01)
        return DumpReply(gfs_id=call.args.gfs_id,
                         programs=[ProgramInfo("echo", call.args.gfs_id, 1)])
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    results = {}

    async def one(n):
        results[n] = await client.call(DUMP_PROC, DumpRequest(gfs_id=n))
    async with trio.open_nursery() as calls:
        for n in range(5):
            calls.start_soon(one, n)
    assert {n: r.programs[0].number for n, r in results.items()} == {n: n for n in range(5)}
    await client.aclose()
    await server.aclose()


async def test_peer_closing_fails_waiting_calls(nursery):
    async def handler(endpoint, call):
        await endpoint.aclose()  # the server goes away mid-call
        await trio.sleep_forever()
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    with trio.fail_after(5):
        with pytest.raises(ConnectionLost):
            await client.call(DUMP_PROC, DumpRequest())
    with pytest.raises(ConnectionLost):
        await client.call(DUMP_PROC, DumpRequest())


async def test_unserved_procedure_is_refused_not_hung(nursery):
    server, client = await open_pair(None)  # serves nothing
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    with trio.fail_after(5):
        with pytest.raises(RpcCallFailed, match="PROC_UNAVAIL"):
            await client.call(DUMP_PROC, DumpRequest())
    await client.aclose()
    await server.aclose()


async def test_handler_crash_becomes_system_err(nursery):
    async def handler(endpoint, call):
        raise RuntimeError("boom")
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    with pytest.raises(RpcCallFailed, match="SYSTEM_ERR"):
        await client.call(DUMP_PROC, DumpRequest())
    # the connection still works afterwards
    with pytest.raises(RpcCallFailed):
        await client.call(DUMP_PROC, DumpRequest())
    await client.aclose()
    await server.aclose()


async def test_timeout_forgets_the_call(nursery):
    gate = trio.Event()

    async def handler(endpoint, call):
        await gate.wait()
        return DumpReply()
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    with pytest.raises(trio.TooSlowError):
        await client.call(DUMP_PROC, DumpRequest(), timeout=0.1)
    assert client.conn.pending == {}
    gate.set()  # the late reply is dropped, the next call still works
    reply = await client.call(DUMP_PROC, DumpRequest(gfs_id=7), timeout=5)
    assert isinstance(reply, DumpReply)
    await client.aclose()
    await server.aclose()


async def test_garbage_from_the_peer_ends_the_connection(nursery):
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    raw = socket.create_connection(("127.0.0.1", port))
    stream = await listeners[0].accept()
    server = RpcEndpoint(stream, RpcConnection(), handler=None, name="server")
    raw.sendall(b"\x80\x00\x00\x08" + b"\xff" * 8)  # one record that is no RPC message
    from glusterpy.rpc import RpcProtocolError
    with trio.fail_after(5):
        with pytest.raises(RpcProtocolError):
            await server.serve()
    assert server.closed
    raw.close()
    await listeners[0].aclose()
