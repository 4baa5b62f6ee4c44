"""The trio transport over real loopback TCP: concurrent calls matched by
xid, incoming calls served concurrently, and failures surfacing as
ConnectionLost instead of hangs."""

import gc
import socket

import pytest
import trio
import trio.testing

from glusterpy.rpc import (DUMP, DumpReply, DumpRequest, ProgramInfo, RpcConnection)
from glusterpy.rpc.connection import CallReceived, ReplyReceived
from glusterpy.rpc.transport import ConnectionLost, RpcCallFailed, RpcEndpoint
from glusterpy.aligned import AlignedBuffers

DUMP_PROC = DUMP.by_name("DUMP")
PING_PROC = DUMP.by_name("PING")


async def open_pair(handler, receive_buffers=None):
    """A listening endpoint with `handler` and a connected client endpoint."""
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    client_stream = await trio.open_tcp_stream("127.0.0.1", port)
    server_stream = await listeners[0].accept()
    await listeners[0].aclose()
    server = RpcEndpoint(server_stream, RpcConnection(), handler=handler, name="server",
                         receive_buffers=receive_buffers)
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


class _Spawns(trio.abc.Instrument):
    def __init__(self):
        self.names = []

    def task_spawned(self, task):
        self.names.append(task.name)


async def test_calls_are_served_by_kept_tasks_not_a_task_each(nursery):
    """Issue 15: 300 calls, 32 in flight at a time, some waiting in the
    handler: served by the tasks the first burst started, none per call;
    the per-call context (a context variable set and reset by the handler)
    does not leak from one call into the next on the same task."""
    import contextvars
    who = contextvars.ContextVar("who", default=None)
    seen_stale = []

    async def handler(endpoint, call):
        if who.get() is not None:
            seen_stale.append(who.get())
        token = who.set(call.args.gfs_id)
        try:
            if call.args.gfs_id % 3 == 0:
                await trio.sleep(0.001)        # suspends: needs a task of its own
            return DumpReply(gfs_id=call.args.gfs_id)
        finally:
            who.reset(token)
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    spawns = _Spawns()
    trio.lowlevel.add_instrument(spawns)
    try:
        results = []

        async def one(n):
            results.append((await client.call(DUMP_PROC, DumpRequest(gfs_id=n))).gfs_id)
        for burst in range(10):
            async with trio.open_nursery() as calls:
                for n in range(burst * 30, burst * 30 + 30):
                    calls.start_soon(one, n)
    finally:
        trio.lowlevel.remove_instrument(spawns)
    assert sorted(results) == list(range(300))
    # every task started meanwhile but the callers' own
    served = [n for n in spawns.names if not n.endswith("<locals>.one")]
    assert 0 < len(served) <= 32, served[:5]
    assert not seen_stale
    # parked, the tasks keep nothing of their last calls (a WRITE's data);
    # the reader still names the last call it decoded
    gc.collect()
    kept = [o for o in gc.get_objects() if isinstance(o, CallReceived)]
    assert len(kept) <= 1, kept
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


async def test_a_peer_that_never_reads_costs_bounded_memory_and_loses_nothing(nursery):
    """Replies queue for the flusher; above SEND_QUEUE_LIMIT their senders
    wait.  A client that sends many calls and reads nothing therefore holds
    the server to the limit (plus one reply), and once it reads, every
    reply arrives, each matched to its call."""
    from glusterpy.rpc import ReplyReceived
    from glusterpy.rpc.transport import SEND_QUEUE_LIMIT
    reply_size = 256 * 1024
    calls = 64                       # 16 MiB of replies: well over what can queue
    served = []

    async def handler(endpoint, call):
        served.append(call.xid)
        return DumpReply(gfs_id=call.args.gfs_id,
                         programs=[ProgramInfo("x" * reply_size, call.args.gfs_id, 1)])
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    raw = socket.socket()
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    server = RpcEndpoint(await listeners[0].accept(), RpcConnection(), handler=handler,
                         name="server")
    await listeners[0].aclose()
    nursery.start_soon(server.serve)
    client = RpcConnection()
    xids = []
    for n in range(calls):
        xid, buffers = client.send_call(DUMP_PROC, DumpRequest(gfs_id=n))
        xids.append(xid)
        raw.sendall(b"".join(buffers))
    most_queued = 0
    for _ in range(50):              # let the server do all it can
        await trio.sleep(0.02)
        most_queued = max(most_queued, server._outq_bytes)
    assert 0 < most_queued <= SEND_QUEUE_LIMIT + reply_size + 1024
    assert len(served) == calls      # every call was served...
    # ...but not every reply could be queued or sent: nobody reads

    raw.setblocking(False)
    answered = {}
    with trio.fail_after(20):
        while len(answered) < calls:
            await trio.lowlevel.wait_readable(raw)
            data = raw.recv(1 << 20)
            assert data, "the server closed before answering everything"
            client.receive_data(data)
            for event in client.events():
                assert isinstance(event, ReplyReceived)
                answered[event.xid] = event.result
    assert sorted(answered) == sorted(xids)
    assert all(len(answered[x].programs[0].name) == reply_size for x in xids)
    assert [answered[x].gfs_id for x in xids] == list(range(calls))
    raw.close()
    await server.aclose()


@pytest.mark.parametrize("pooled", [False, True], ids=["bytearray", "pooled"])
async def test_large_writes_and_reads_arrive_intact(nursery, pooled):
    """WRITE calls and READ replies big enough to be received straight into
    a buffer of their own, many at once, mixed with tiny ones; the server's
    WRITEs into a pool's reused buffers when it has one (the brick's), each
    held by its call while the call runs."""
    import hashlib
    from glusterpy import fops as F
    from glusterpy.fops import Iatt
    from glusterpy.rpc import FOP_PROCEDURES
    from glusterpy.rpc.fops4 import FopRequest, RemoteFd
    gfid = b"\x01" * 16
    fd = RemoteFd(gfid, 1)

    def content(n: int) -> bytes:
        size = n if n % 3 == 0 else (n * 37_001) % 300_000
        return hashlib.shake_256(n.to_bytes(4, "big")).digest(size) if size else b""
    written = {}

    async def handler(endpoint, call):
        request = call.args
        if request.name == "writev":
            if pooled:
                held.append(request.args["data"])   # kept as a slow fop keeps it
                await trio.sleep(0.001 * (request.args["offset"] % 7))
                held.remove(request.args["data"])
            data = bytes(request.args["data"])
            written[request.args["offset"]] = data
            return F.WriteReply(count=len(data), prebuf=Iatt(gfid=gfid), postbuf=Iatt(gfid=gfid))
        return F.ReadReply(data=content(request.args["offset"]), iatt=Iatt(gfid=gfid))
    held: list = []
    pool = AlignedBuffers(limit=8 << 20)    # small: records past it get fresh maps
    server, client = await open_pair(handler, pool.take if pooled else None)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    read = {}

    async def one(n):
        if n % 2:
            args = {"fd": fd, "data": content(n), "offset": n, "flags": 0}
            reply = await client.call(FOP_PROCEDURES["writev"],
                                      FopRequest(F.BY_NAME["writev"], args), timeout=20)
            assert reply.unwrap().count == len(content(n))
        else:
            args = {"fd": fd, "size": 1 << 20, "offset": n, "flags": 0}
            reply = await client.call(FOP_PROCEDURES["readv"],
                                      FopRequest(F.BY_NAME["readv"], args), timeout=20)
            read[n] = bytes(reply.unwrap().data)
    async with trio.open_nursery() as calls:
        for n in range(60):
            calls.start_soon(one, n)
    assert written == {n: content(n) for n in range(1, 60, 2)}
    assert read == {n: content(n) for n in range(0, 60, 2)}
    if pooled:
        assert pool.reused > 0 and pool.mapped <= pool.limit
    await client.aclose()
    await server.aclose()


@pytest.mark.parametrize("behind_a_call", [False, True])
async def test_a_call_whose_mark_reaches_an_idle_pooled_server_first_is_served(nursery,
                                                                                behind_a_call):
    """The brick's side (arenas from a pool): a call's 4-byte record mark
    arrives without any of the call - alone, or right behind a whole call
    (as a brick receives WRITEs 4 bytes shorter than the one before: the
    receive sized for one record ends just past the next one's mark) - and
    the connection goes idle, so its arena goes back to the pool: the
    reader lets it go before it waits, or the task that served the call
    before it does when done.  The rest of the call, and a call after it,
    must still be served.  (The arena used to forget where that call ends:
    the server waited inside it and swallowed every call after it - the
    FUSE mount's tools-test stall, bench/notes/metadata.md.)"""
    async def handler(endpoint, call):
        return DumpReply(gfs_id=call.args.gfs_id)
    pool = AlignedBuffers(limit=8 << 20)
    listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
    port = listeners[0].socket.getsockname()[1]
    peer = await trio.open_tcp_stream("127.0.0.1", port)
    server = RpcEndpoint(await listeners[0].accept(), RpcConnection(), handler=handler,
                         name="server", receive_buffers=pool.take)
    await listeners[0].aclose()
    nursery.start_soon(server.serve)
    conn = RpcConnection()

    async def replies(n):
        got = []
        with trio.fail_after(5):
            while len(got) < n:
                conn.receive_data(await peer.receive_some(65536))
                got += [e.result.gfs_id if isinstance(e, ReplyReceived) else e
                        for e in conn.events()]
        return got

    def wire(n):
        return b"".join(conn.send_call(DUMP_PROC, DumpRequest(gfs_id=n))[1])
    first, second = wire(1), wire(2)
    if behind_a_call:
        await peer.send_all(first + second[:4])
        assert await replies(1) == [1]
    else:
        await peer.send_all(first)
        assert await replies(1) == [1]
        await peer.send_all(second[:4])
    await trio.testing.wait_all_tasks_blocked(0.05)
    records = server.conn._records
    assert records._arena is None and not records.at_record_boundary()  # let go meanwhile
    await peer.send_all(second[4:] + wire(3))
    assert sorted(await replies(2), key=repr) == [2, 3]    # served concurrently: any order
    await peer.aclose()


class _Steps(trio.abc.Instrument):
    """Counts the steps each task runs."""

    def __init__(self):
        self.steps = {}

    def before_task_step(self, task):
        self.steps[task] = self.steps.get(task, 0) + 1


async def flusher_steps(client, watched) -> int:
    """How many times `watched`'s flusher task ran while `client` made 100
    calls one after another (after one call that starts the flusher)."""
    await client.call(DUMP_PROC, DumpRequest(gfs_id=1))
    flusher = watched._flusher
    assert flusher is not None
    steps = _Steps()
    trio.lowlevel.add_instrument(steps)
    try:
        for n in range(100):
            assert (await client.call(DUMP_PROC, DumpRequest(gfs_id=n))).gfs_id == n
    finally:
        trio.lowlevel.remove_instrument(steps)
    return steps.steps.get(flusher, 0)


async def test_a_lone_call_goes_out_from_the_caller_without_the_flusher(nursery):
    """Issue 17: with one call in flight the calling task writes it itself;
    the flusher task never runs, where it used to run once per call."""
    async def handler(endpoint, call):
        return DumpReply(gfs_id=call.args.gfs_id)
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    assert await flusher_steps(client, client) == 0
    await client.aclose()
    await server.aclose()


async def test_a_lone_reply_goes_out_at_once_and_concurrent_ones_in_a_batch(nursery):
    """Issue 15: a reply whose call is the only one in service is written by
    its serving task (the server's flusher never runs: no wait for its turn,
    the latency case of one request in flight); replies of calls in service
    together still leave through the flusher, in one sendmsg per batch."""
    async def handler(endpoint, call):
        if call.args.gfs_id >= 1000:
            await trio.sleep(0.01)      # in service together, finishing together
        return DumpReply(gfs_id=call.args.gfs_id)
    server, client = await open_pair(handler)
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    assert await flusher_steps(client, server) == 0
    sends = []
    raw = server._raw
    server._raw = _CountingSocket(raw, sends)
    results = {}

    async def one(n):
        results[n] = (await client.call(DUMP_PROC, DumpRequest(gfs_id=n))).gfs_id
    async with trio.open_nursery() as calls:
        for n in range(1000, 1020):
            calls.start_soon(one, n)
    assert results == {n: n for n in range(1000, 1020)}
    assert 1 <= len(sends) < 10, sends
    assert server._serving == 0
    await client.aclose()
    await server.aclose()


class _CountingSocket:
    """A socket that records its sendmsg calls (their buffer counts)."""

    def __init__(self, sock, sends):
        self._sock, self._sends = sock, sends

    def sendmsg(self, buffers):
        buffers = list(buffers)
        self._sends.append(len(buffers))
        return self._sock.sendmsg(buffers)

    def __getattr__(self, name):
        return getattr(self._sock, name)


async def test_what_a_full_socket_does_not_take_is_queued_in_order(nursery):
    """A direct send the kernel takes only part of leaves the rest to the
    flusher, and a call made meanwhile goes behind it: the peer gets both
    whole, in the order they were made."""
    from glusterpy import fops as F
    from glusterpy.fops import Iatt
    from glusterpy.rpc import FOP_PROCEDURES
    from glusterpy.rpc.fops4 import FopRequest, RemoteFd
    arrived = []

    async def handler(endpoint, call):
        request = call.args
        if getattr(request, "name", None) == "writev":
            data = bytes(request.args["data"])
            arrived.append(("writev", data))
            return F.WriteReply(count=len(data), prebuf=Iatt(gfid=b"\1" * 16),
                                postbuf=Iatt(gfid=b"\1" * 16))
        arrived.append(("dump", call.args.gfs_id))
        return DumpReply(gfs_id=call.args.gfs_id)
    server, client = await open_pair(handler)
    client._raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8192)
    nursery.start_soon(client.serve)
    await trio.testing.wait_all_tasks_blocked()
    data = bytes(range(256)) * 16384          # 4 MiB: the server does not read yet
    results = {}

    async def write():
        args = {"fd": RemoteFd(b"\1" * 16, 1), "data": data, "offset": 0, "flags": 0}
        results["w"] = await client.call(FOP_PROCEDURES["writev"],
                                         FopRequest(F.BY_NAME["writev"], args), timeout=20)

    async def dump():
        results["d"] = await client.call(DUMP_PROC, DumpRequest(gfs_id=9), timeout=20)
    async with trio.open_nursery() as calls:
        calls.start_soon(write)
        await trio.testing.wait_all_tasks_blocked()
        assert client._outq or client._writing, "the write should not have gone out whole"
        calls.start_soon(dump)
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(server.serve)
    assert arrived == [("writev", data), ("dump", 9)]
    assert results["w"].unwrap().count == len(data) and results["d"].gfs_id == 9
    await client.aclose()
    await server.aclose()


async def test_frame_timeout_bails_late_calls_with_one_sweep(nursery):
    """rpc-clnt's call_bail: with frame_timeout set, a call left unanswered
    fails with TooSlowError once older than it (checked every quarter of
    it), is forgotten, and its late reply is dropped; a call with a timeout
    of its own is not bailed; the connection stays."""
    gate = trio.Event()

    async def handler(endpoint, call):
        if call.args.gfs_id == 0:
            await gate.wait()
        elif call.args.gfs_id == 1:
            await trio.sleep(1.0)
        return DumpReply(gfs_id=call.args.gfs_id)
    server, client = await open_pair(handler)
    client.frame_timeout = 0.4
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    start = trio.current_time()
    with trio.fail_after(5):
        with pytest.raises(trio.TooSlowError):
            await client.call(DUMP_PROC, DumpRequest(gfs_id=0))
    took = trio.current_time() - start
    assert 0.4 <= took <= 0.4 + 2 * 0.1 + 0.3, took
    assert client.conn.pending == {} and client._waiters == {}
    gate.set()                                  # the late reply is dropped
    reply = await client.call(DUMP_PROC, DumpRequest(gfs_id=1), timeout=5)
    assert reply.gfs_id == 1                    # 1 s: its own timeout governs
    assert (await client.call(DUMP_PROC, DumpRequest(gfs_id=2))).gfs_id == 2
    await client.aclose()
    await server.aclose()


async def test_a_broken_connection_fails_every_waiting_call_at_once(nursery):
    async def handler(endpoint, call):
        if call.args.gfs_id == 9:
            await endpoint.aclose()
        await trio.sleep_forever()
    server, client = await open_pair(handler)
    client.frame_timeout = 1800
    nursery.start_soon(server.serve)
    nursery.start_soon(client.serve)
    failed = []

    async def one(n):
        with pytest.raises(ConnectionLost):
            await client.call(DUMP_PROC, DumpRequest(gfs_id=n))
        failed.append(n)
    with trio.fail_after(5):
        async with trio.open_nursery() as calls:
            for n in range(10):
                calls.start_soon(one, n)
    assert sorted(failed) == list(range(10))
