"""The trio transport: one `RpcConnection` driven over a trio stream.

The only module of `glusterpy.rpc` that does I/O.  It moves bytes between a
socket and the sans-IO state machine, and nothing more:

* `call()` sends a call and waits for its reply (calls from many tasks
  share the connection; replies are matched by xid); with `frame_timeout`
  set, one sweep per connection fails the calls waiting longer than that
  (below);
* incoming calls go to a handler, each served by a task of its own while
  it runs, so a slow fop does not hold up the others (the brick's
  protocol/server, the client's callback program);
* a connection that closes or sends garbage fails every waiting call with
  `ConnectionLost`, which protocol/client turns into ENOTCONN.

Built for the cost of a request, which on a brick is mostly the request
path around the fop (bench/notes/qemu.md has the profiles):

* Sends are queued and written by one flusher task per connection with one
  vectored `sendmsg` per batch: the replies of every call that finished in
  one pass of trio's scheduler leave in one syscall, and a WRITE's payload
  reaches the socket without being copied into one buffer.  Senders wait
  only when the queue is over `SEND_QUEUE_LIMIT` bytes (a peer that does
  not read cannot make us buffer more).  Over TLS (a `trio.SSLStream` from
  glusterpy.rpc.tls) each message is joined once and encrypted by the
  stream on its own (the record layer copies anyway): no TLS record may
  carry the end of one message and the start of another (`_enqueue`).
* A call goes out from the calling task itself when nothing is queued
  and no write is in progress: one non-blocking sendmsg of the whole
  message, and only what the kernel does not take (EAGAIN, a partial
  write) is queued for the flusher, so the order on the wire is kept.  A
  client with one call in flight then pays no task switch to the flusher
  and back.  So does a reply when its call is the only one in service
  (one request in flight: fio's gfapi engine with one job, a latency
  test): nothing could join its batch, so it pays no wait for the
  flusher's turn either.  Other replies keep going through the flusher:
  the replies of many calls finished in one scheduler pass leave in one
  sendmsg, where each sending its own would cost the brick a syscall per
  reply.
* The caller waits for its reply parked on trio directly (the reader
  reschedules it with the decoded result), not on a trio.Event per call.
* Frame timeouts (rpc-clnt.c's call_bail): calls carry no cancel scope
  each; one task per connection wakes every `BAIL_INTERVAL` seconds (a
  quarter of `frame_timeout` when that is shorter) and fails the calls
  older than `frame_timeout` with trio.TooSlowError.  A call is stamped
  with the time of the last sweep, not read from the clock, so it is
  bailed between `frame_timeout` and `frame_timeout` plus two intervals
  after it was sent.  `call(timeout=...)` keeps an exact timeout of its own
  for the callers that pass one.
* A plain TCP connection is read and written with the socket's own
  non-blocking calls, waiting on trio only when the kernel says EAGAIN:
  trio's socket methods checkpoint twice per call, a trip through the
  scheduler each.  The reader yields once per received chunk instead, so
  the calls it started run (and their replies go out) before it reads on.
* A large record (a WRITE call, a READ reply) is received straight into a
  buffer of its size (`RecordDecoder.fragment_buffer`), not joined from
  chunks.  With `receive_buffers` (the brick) every byte is received into
  the pool's arenas instead (`RecordDecoder.arena_view`): records are cut
  from them as they lie, a WRITE's payload lands page-aligned, nothing is
  received into a chunk first and copied; a connection with no call in
  service gives its arena back.
* The tasks that serve calls are kept: one that finished its call parks
  (up to `SPARE_SERVERS` of them) and the reader hands the next call to a
  parked one, where a task started per call cost the brick a trio spawn
  and exit - Task, context, cancel status, nursery bookkeeping - per
  request.  A call cannot simply run in the reader: nearly every data fop
  waits (Linux AIO, io-threads), and what it waits on belongs to the task
  that started waiting.
* At most `max_calls` calls are in service at once (rpcsvc's
  outstanding-rpc-limit); the calls beyond wait in a backlog, served in
  order as calls finish, and the reader stops reading (TCP throttles the
  peer) only once the backlog holds `BACKLOG_LIMIT` bytes.  So a PING -
  answered at once, outside the limit - still gets through while every
  call is stuck on a slow disk, and the client's ping timer does not
  take a busy brick for a dead one; a flood still cannot fill memory.

A connection that breaks on a TLS failure (the peer's alert refusing our
certificate, which TLS 1.3 delivers after the handshake) is logged with
OpenSSL's reason.
"""

from __future__ import annotations

import collections
import errno
import logging
import socket
from typing import Any, Awaitable, Callable, Iterable

import outcome
import trio

from .auth import AUTH_NULL_CRED, Auth
from .connection import (CallFailed, CallReceived, ConnectionClosed, OrphanReply,
                         RejectedCall, ReplyReceived, RpcConnection)
from .errors import RpcProtocolError
from .message import AcceptStat
from .programs import DUMP, HANDSHAKE, Procedure
from .record import Buffer
from .tls import socket_of, ssl_failure

log = logging.getLogger(__name__)

_PING_PROGRAMS = frozenset({DUMP.number, HANDSHAKE.number})

#: what one receive asks for between large records; 64 requests of a
#: qemu at queue depth 64 fit many times over
RECV_SIZE = 64 * 1024
#: a fragment with at least this much still to come is received straight
#: into a buffer of its own size instead of in chunks that are then joined
DIRECT_RECEIVE_MIN = 32 * 1024
#: receives in a row that complete no message (a large record arriving in
#: pieces) read on without a pass of the scheduler
QUIET_RECEIVES = 8
#: bytes queued for sending above which senders wait for the flusher
SEND_QUEUE_LIMIT = 4 * 1024 * 1024
#: buffers one sendmsg takes (the kernel's UIO_MAXIOV)
IOV_MAX = 1024
#: seconds a TLS connection's close_notify may take before the socket is just closed
TLS_CLOSE_TIMEOUT = 2.0
#: serving tasks a connection keeps parked for its next calls: QEMU's queue
#: depth; a burst beyond it starts tasks that end when it is over
SPARE_SERVERS = 64
#: bytes of calls read but waiting for a free place in service above
#: which the reader stops reading
BACKLOG_LIMIT = 1 << 20
#: what a call is counted as in the backlog besides the data it carries
CALL_OVERHEAD = 512
#: seconds between two sweeps for calls past frame_timeout (rpc-clnt.c
#: registers call_bail every 10 seconds)
BAIL_INTERVAL = 10.0


def _urgent(procedure: Procedure) -> bool:
    """PING (GF-DUMP's and GlusterFS Handshake's): answered at once, outside
    the outstanding-call limit - it is how a peer tells busy from dead."""
    return procedure.name == "PING" and procedure.program in _PING_PROGRAMS


def _call_bytes(call: CallReceived) -> int:
    args = getattr(call.args, "args", None)
    data = args.get("data") if isinstance(args, dict) else None
    return CALL_OVERHEAD + (len(data) if isinstance(data, (bytes, bytearray, memoryview)) else 0)


class ConnectionLost(ConnectionError):
    """The connection closed (or was found broken) before the reply came."""

    def __init__(self, message: str = "connection lost"):
        super().__init__(errno.ENOTCONN, message)


class CallRefused(Exception):
    """Raised by a call handler to refuse the call with an RPC error reply
    (GARBAGE_ARGS, SYSTEM_ERR, ...) instead of results, as rpcsvc.c does
    when an actor sets req->rpc_err; it is not logged as a crash."""

    def __init__(self, stat: AcceptStat, reason: str = ""):
        self.stat = stat
        super().__init__(reason or stat.name)


class RpcCallFailed(Exception):
    """The peer refused a call (PROG_UNAVAIL, GARBAGE_ARGS, AUTH_ERROR, ...)."""

    def __init__(self, event: CallFailed):
        self.reply = event.reply
        super().__init__(event.describe())


#: serves one incoming call; returns the result to encode (or raises)
CallHandler = Callable[["RpcEndpoint", CallReceived], Awaitable[Any]]


class _Waiter:
    """A call waiting for its reply: `task` once it is parked (the reader
    reschedules it), `result` if the reply came before it parked; `since`
    the bail clock when it was sent, None when the call has a timeout of
    its own."""

    __slots__ = ("task", "result", "since")

    def __init__(self, since: float | None) -> None:
        self.task: trio.lowlevel.Task | None = None
        self.result: outcome.Outcome[Any] | None = None
        self.since = since


def _nbytes(b: Buffer) -> int:
    return len(b) if isinstance(b, bytes) else memoryview(b).nbytes


class RpcEndpoint:
    """One RPC connection over a trio stream (either end).

    Run `await endpoint.serve()` in a nursery: it reads until the peer
    closes (returns) or sends garbage (raises RpcProtocolError); incoming
    calls go to `handler(endpoint, call)` in tasks of `nursery`.
    """

    def __init__(self, stream: trio.abc.Stream, connection: RpcConnection, *,
                 handler: CallHandler | None = None, name: str = "rpc",
                 peer: str | None = None, max_calls: int | None = None,
                 frame_timeout: float | None = None,
                 receive_buffers: Callable[[int], memoryview] | None = None):
        self.stream = stream
        self.conn = connection
        self.handler = handler
        self.name = name
        self.peer = peer or _peer_name(stream)
        self.closed = False
        #: trio.current_time() of the last bytes sent and received (set when
        #: serve() starts): protocol/client's ping timer tells a silent peer
        #: from a busy one by them, as rpc-clnt.c keeps last_sent/last_received
        self.last_sent = self.last_received = 0.0
        #: seconds a call without a timeout of its own may wait for its
        #: reply (0: forever); None: no sweep at all (the brick's side).
        #: May change while connected (protocol/client's reconfigure)
        self.frame_timeout = frame_timeout
        self._waiters: dict[int, _Waiter] = {}
        self._now = trio.lowlevel.current_clock().current_time
        #: the time of the last sweep for late calls, what calls are stamped with
        self._bail_clock = self._now()
        self._send_lock = trio.StrictFIFOLock()
        self._raw = _raw_socket(stream)
        #: where a large record is received into (RecordDecoder.fragment_buffer's
        #: alloc): a pool's buffers on the brick (its WRITE calls), a new
        #: bytearray each by default
        self._receive_buffers = receive_buffers
        # the send queue: buffers in order, written by the flusher task
        # while serve() runs (before it, _send writes directly)
        self._outq: list[Any] = []
        self._outq_bytes = 0
        self._flusher: trio.lowlevel.Task | None = None
        self._flusher_parked = False
        #: writes going out or about to (the flusher's batch in hand, a
        #: direct one from before serve()): nothing may overtake them
        self._writing = 0
        self._queue_drained = trio.Event()
        self._calls_nursery: trio.Nursery | None = None
        # At most max_calls incoming calls in service at once, the others in
        # the backlog (module docstring)
        self._max_calls = max_calls or None
        self._in_service = 0
        #: calls handed to a serving task whose reply is not yet out (any
        #: call, counted or not): a reply with no other call beside it goes
        #: out at once (_serve_one)
        self._serving = 0
        #: calls waiting for a place in service, with the bytes each counts for
        self._backlog: collections.deque[tuple[CallReceived, int]] = collections.deque()
        self._backlog_bytes = 0
        self._backlog_room = trio.Event()
        #: serving tasks parked until the reader hands them a call
        self._idle_servers: list[trio.lowlevel.Task] = []
        #: state other layers attach to the connection (protocol/server's client)
        self.context: dict[str, Any] = {}

    # -- sending ------------------------------------------------------------------

    async def _send(self, buffers: Iterable[Buffer]) -> None:
        """Queue one message's buffers for the flusher (or write them now
        when no flusher runs); raises ConnectionLost if the connection is
        closed.  A failure of the write itself fails every waiting call."""
        if self.closed:
            raise ConnectionLost(f"{self.name}: connection to {self.peer} is closed")
        if self._flusher is None:
            self._writing += 1      # counted while it waits for the lock too
            try:
                async with self._send_lock:
                    await self._write(list(buffers))
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                self._lost(f"send failed: {e}")
                raise ConnectionLost(f"{self.name}: {e}") from None
            finally:
                self._writing -= 1
            return
        while self._outq_bytes > SEND_QUEUE_LIMIT:
            await self._queue_drained.wait()
            if self.closed:
                raise ConnectionLost(f"{self.name}: connection to {self.peer} is closed")
        self._enqueue(buffers)

    def _enqueue(self, buffers: Iterable[Buffer]) -> None:
        """_send's queueing, for a caller that checked there is room.  Over
        TLS a message is queued as one joined buffer and written by its own
        send_all (`_write`), so that no TLS record holds the end of one
        message and the start of the next: GlusterFS's socket transport
        reads one message per readable event, and a whole message left
        decrypted inside its OpenSSL buffer - with nothing more on the
        socket to wake it - would never be read (qemu-img and qemu-io over
        TLS hung on it, intermittently, when replies left in one batch)."""
        queue = self._outq
        if self._raw is None:
            joined = b"".join(buffers)
            queue.append(joined)
            self._outq_bytes += len(joined)
        else:
            for b in buffers:
                queue.append(b)
                self._outq_bytes += _nbytes(b)
        flusher = self._flusher
        if self._flusher_parked and flusher is not None:
            self._flusher_parked = False
            trio.lowlevel.reschedule(flusher)

    async def _flush_loop(self) -> None:
        """The flusher: writes whatever was queued since its last write in
        one go, then parks until more comes."""
        self._flusher = trio.lowlevel.current_task()

        def unpark(_: object) -> trio.lowlevel.Abort:
            self._flusher_parked = False
            return trio.lowlevel.Abort.SUCCEEDED
        try:
            while True:
                if not self._outq:
                    self._flusher_parked = True
                    await trio.lowlevel.wait_task_rescheduled(unpark)
                    continue
                batch, self._outq, self._outq_bytes = self._outq, [], 0
                drained, self._queue_drained = self._queue_drained, trio.Event()
                drained.set()
                self._writing += 1
                try:
                    # a direct write from before serve() started may still
                    # be going out; messages must not interleave
                    try:
                        self._send_lock.acquire_nowait()
                    except trio.WouldBlock:
                        await self._send_lock.acquire()
                    try:
                        await self._write(batch)
                    finally:
                        self._send_lock.release()
                except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                    self._lost(f"send failed: {e}")
                    return
                finally:
                    self._writing -= 1
        finally:
            self._flusher = None
            self._flusher_parked = False
            self._outq, self._outq_bytes = [], 0
            self._queue_drained.set()

    async def _write(self, buffers: list[Buffer]) -> None:
        """A batch of messages; over TLS (no raw socket) the flusher's batch
        holds one joined message per buffer (`_enqueue`), each sent on its
        own, and `_send`'s direct write is one message."""
        if self._raw is not None:
            await _sendmsg_all(self._raw, buffers)
        elif self._flusher is trio.lowlevel.current_task():
            for message in buffers:
                await self.stream.send_all(message)
        else:
            await self.stream.send_all(b"".join(buffers))
        self.last_sent = self._now()

    async def call(self, procedure: Procedure, args: Any = None, *,
                   cred: Auth = AUTH_NULL_CRED, timeout: float | None = None) -> Any:
        """Send a call and return its decoded result.

        Raises ConnectionLost, RpcCallFailed, or trio.TooSlowError after
        `timeout` seconds, or else once the call is older than the
        endpoint's `frame_timeout` (the call is then forgotten; a late reply
        is dropped as GlusterFS bails out a frame).
        """
        if self.closed:
            raise ConnectionLost(f"{self.name}: connection to {self.peer} is closed")
        try:
            xid, buffers = self.conn.send_call(procedure, args, cred=cred)
        except RpcProtocolError as e:
            raise ConnectionLost(f"{self.name}: {e}") from None
        if procedure.one_way:
            if not self._send_now(buffers):
                await self._send(buffers)
            return None
        waiter = self._waiters[xid] = _Waiter(self._bail_clock if timeout is None else None)
        try:
            if not self._send_now(buffers):
                await self._send(buffers)
        except BaseException:
            self._waiters.pop(xid, None)
            self.conn.forget_call(xid)
            raise
        if waiter.result is not None:   # answered (or failed) while the send waited
            return waiter.result.unwrap()
        waiter.task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            waiter.task = None
            self._waiters.pop(xid, None)
            self.conn.forget_call(xid)
            return trio.lowlevel.Abort.SUCCEEDED
        if timeout is None:
            return await trio.lowlevel.wait_task_rescheduled(abort)
        with trio.fail_after(timeout):
            return await trio.lowlevel.wait_task_rescheduled(abort)

    def _send_now(self, buffers: list[Buffer]) -> bool:
        """Send one message from the calling task (module docstring): False
        when it must go through `_send` (TLS, no flusher, something queued
        or being written); True when it went out, what the kernel did not
        take queued for the flusher.  A failed write fails every waiting
        call and raises ConnectionLost."""
        raw = self._raw
        if raw is None or self._flusher is None or self._outq or self._writing \
                or self.closed or len(buffers) > IOV_MAX:
            return False
        try:
            sent = raw.sendmsg(buffers)
        except BlockingIOError:
            sent = 0
        except OSError as e:
            self._lost(f"send failed: {e}")
            raise ConnectionLost(f"{self.name}: {e}") from None
        self.last_sent = self._now()
        for i, b in enumerate(buffers):
            size = len(b) if isinstance(b, bytes) else memoryview(b).nbytes
            if sent < size:
                rest: list[Buffer] = [memoryview(b).cast("B")[sent:]] if sent else [b]
                rest.extend(buffers[i + 1:])
                self._enqueue(rest)
                break
            sent -= size
        return True

    async def reply(self, call: CallReceived, result: Any) -> None:
        await self._send(self._encode(self.conn.send_reply, call, result))

    async def reply_error(self, call: CallReceived, stat: AcceptStat) -> None:
        await self._send(self._encode(self.conn.send_error, call, stat))

    def _encode(self, send: Callable[[CallReceived, Any], list[Buffer]], call: CallReceived,
                arg: Any) -> list[Buffer]:
        # The peer may have sent garbage while this call was in service: the
        # connection is then in its ERROR state and closing, so the reply
        # has nowhere to go - a lost connection, not a crash of the task.
        try:
            return send(call, arg)
        except RpcProtocolError as e:
            raise ConnectionLost(f"{self.name}: {e}") from None

    # -- receiving -----------------------------------------------------------------

    async def serve(self) -> None:
        """Read and dispatch until the peer closes; then fail what waits,
        cancel the calls still being served (nobody can take their replies)
        and close the stream.  Raises RpcProtocolError if the peer sent
        something that is not GlusterFS RPC."""
        error: RpcProtocolError | None = None
        self.last_sent = self.last_received = trio.current_time()
        try:
            async with trio.open_nursery() as nursery:
                self._calls_nursery = nursery
                nursery.start_soon(self._flush_loop)
                if self.frame_timeout is not None:
                    nursery.start_soon(self._bail_loop)
                try:
                    await self._read_loop(nursery)
                except RpcProtocolError as e:
                    log.warning("%s: %s sent garbage: %s", self.name, self.peer, e)
                    error = e
                finally:
                    self._lost("connection closed")
                    nursery.cancel_scope.cancel()
        finally:
            self._calls_nursery = None
            await self.aclose()
        if error is not None:
            raise error

    async def _read_loop(self, nursery: trio.Nursery) -> None:
        conn = self.conn
        limit = self._max_calls
        backlog = self._backlog
        raw = self._raw
        alloc = self._receive_buffers
        quiet = 0       # receives in a row that completed no message
        # the last receive took less than it asked for: the socket was
        # empty then, so the next one waits for it to be readable first
        # instead of trying (an EAGAIN) after a pass of the scheduler
        drained = False
        while True:
            try:
                if raw is None:
                    data = await self.stream.receive_some(
                        max(RECV_SIZE, conn.receive_size_hint()))
                    conn.receive_data(data)
                    more = bool(data)
                else:
                    while True:
                        if drained:
                            if alloc is not None and not self._serving:
                                conn.drop_arena()   # idle: the pool may lend it meanwhile
                            await trio.lowlevel.wait_readable(raw)
                        try:
                            if alloc is not None:
                                # straight into the pool's arena, records
                                # cut from it (RecordDecoder.arena_view); as
                                # much as before per receive, so the backlog
                                # stays within BACKLOG_LIMIT + one receive
                                into = conn.arena_view(alloc, RECV_SIZE)
                                n = raw.recv_into(into)
                                conn.arena_filled(n)
                                drained = n < len(into)
                                break
                            view = conn.receive_buffer(DIRECT_RECEIVE_MIN, alloc)
                            if view is not None:
                                n = raw.recv_into(view)
                                conn.received_into(n)
                                drained = n < view.nbytes
                            else:
                                data = raw.recv(RECV_SIZE)
                                conn.receive_data(data)
                                n = len(data)
                                drained = n < RECV_SIZE
                        except BlockingIOError:
                            drained = True
                            continue
                        break
                    more = n > 0
                self.last_received = self._now()
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as e:
                reason = ssl_failure(e)
                if reason is not None and not self.closed:
                    log.error("%s: TLS connection with %s failed: %s", self.name, self.peer,
                              reason)
                else:
                    log.debug("%s: receive from %s failed: %s", self.name, self.peer, e)
                return
            started = False
            for event in conn.events():
                started = True
                if isinstance(event, ReplyReceived):
                    self._resolve(event.xid, outcome.Value(event.result))
                elif isinstance(event, CallReceived):
                    if limit is None:
                        self._dispatch(nursery, event, False)
                    elif self._in_service < limit and not backlog:
                        self._in_service += 1
                        self._dispatch(nursery, event, True)
                    elif _urgent(event.procedure):
                        self._dispatch(nursery, event, False)
                    else:
                        size = _call_bytes(event)
                        backlog.append((event, size))
                        self._backlog_bytes += size
                elif isinstance(event, CallFailed):
                    self._resolve(event.xid, outcome.Error(RpcCallFailed(event)))
                elif isinstance(event, RejectedCall):
                    log.info("%s: refused a call from %s: %s", self.name, self.peer, event.reason)
                    if event.expects_reply:
                        await self._quietly(self._send(conn.send_rejection(event)))
                elif isinstance(event, OrphanReply):
                    log.debug("%s: late reply xid %d dropped", self.name, event.xid)
                elif isinstance(event, ConnectionClosed):
                    return
            if not more:
                return
            while self._backlog_bytes > BACKLOG_LIMIT:
                if self._backlog_room.is_set():
                    self._backlog_room = trio.Event()
                await self._backlog_room.wait()
            # let what this chunk started run (and its replies go out)
            # before reading on; a peer that never stops sending cannot
            # keep the loop to itself (a drained socket's wait for more
            # yields anyway).  A receive that completed no message (the
            # middle of a large record) started nothing: the rest of the
            # record is read at once, without a pass of the scheduler -
            # QUIET_RECEIVES times in a row at most (a peer sending empty
            # fragments forever completes no record either)
            if started:
                quiet = 0
            else:
                quiet += 1
            if not drained and (started or quiet > QUIET_RECEIVES):
                quiet = 0
                await trio.lowlevel.checkpoint()

    def _dispatch(self, nursery: trio.Nursery, call: CallReceived, counted: bool) -> None:
        """Hand `call` to a parked serving task, or start one; `counted`:
        it holds one of the max_calls places in service."""
        idle = self._idle_servers
        self._serving += 1
        if idle:
            trio.lowlevel.reschedule(idle.pop(), outcome.Value((call, counted)))
        else:
            nursery.start_soon(self._server, call, counted)

    def _next_after(self, counted: bool) -> CallReceived | None:
        """A counted call finished: its place goes to the oldest call of the
        backlog (returned), or is given back."""
        if not counted:
            return None
        if self._backlog:
            call, size = self._backlog.popleft()
            self._backlog_bytes -= size
            if self._backlog_bytes <= BACKLOG_LIMIT:
                self._backlog_room.set()
            return call
        self._in_service -= 1
        return None

    def _resolve(self, xid: int, result: outcome.Outcome[Any]) -> None:
        waiter = self._waiters.pop(xid, None)
        if waiter is not None:
            _wake(waiter, result)

    async def _bail_loop(self) -> None:
        """rpc-clnt.c's call_bail: every BAIL_INTERVAL (or a quarter of
        frame_timeout) fail the calls older than frame_timeout."""
        while True:
            timeout = self.frame_timeout
            interval = min(BAIL_INTERVAL, timeout / 4) if timeout else BAIL_INTERVAL
            await trio.sleep(interval)
            now = self._bail_clock = self._now()
            timeout = self.frame_timeout
            if not timeout:
                continue
            # a call is stamped with the previous sweep's time, up to one
            # interval before it was sent: it is late once older than that
            late = [xid for xid, w in self._waiters.items()
                    if w.since is not None and now - w.since >= timeout + interval]
            for xid in late:
                self.conn.forget_call(xid)
                self._resolve(xid, outcome.Error(trio.TooSlowError(
                    f"{self.name}: no reply from {self.peer} in {timeout:g}s")))

    async def _server(self, call: CallReceived, counted: bool) -> None:
        """Serve `call`, then the backlog's next call if this one held a
        place in service, then park for the next one the reader hands over;
        ends when SPARE_SERVERS others are parked already.  Per-call state
        in context variables (fops.caller, io-threads' lane) is set and
        reset around each fop, so nothing of one call stays for the next."""
        task = trio.lowlevel.current_task()
        idle = self._idle_servers

        def abort(_: object) -> trio.lowlevel.Abort:
            # cancelled while parked (the connection is closing)
            idle.remove(task)
            return trio.lowlevel.Abort.SUCCEEDED
        while True:
            following: CallReceived | None = None
            try:
                await self._serve_one(call)
            finally:
                self._serving -= 1
                following = self._next_after(counted)
                if not self._serving and self._receive_buffers is not None:
                    # the connection went idle: its receive arena back to the
                    # pool unless a record is half in it (the reader takes
                    # another when the peer sends again)
                    self.conn.drop_arena()
            if following is not None:
                self._serving += 1
                call = following
                continue
            del call    # parked, a task keeps nothing of its last call (a WRITE's data)
            if len(idle) >= SPARE_SERVERS:
                return
            idle.append(task)
            call, counted = await trio.lowlevel.wait_task_rescheduled(abort)

    async def _serve_one(self, call: CallReceived) -> None:
        if self.handler is None:
            if call.expects_reply:
                await self._quietly(self.reply_error(call, AcceptStat.PROC_UNAVAIL))
            return
        try:
            result = await self.handler(self, call)
        except ConnectionLost:
            return
        except CallRefused as e:
            log.debug("%s: refused %s from %s: %s", self.name, call.procedure.name,
                      self.peer, e)
            if call.expects_reply:
                await self._quietly(self.reply_error(call, e.stat))
            return
        except Exception:
            log.exception("%s: serving %s from %s failed", self.name,
                          call.procedure.name, self.peer)
            if call.expects_reply:
                await self._quietly(self.reply_error(call, AcceptStat.SYSTEM_ERR))
            return
        if call.expects_reply:
            try:
                buffers = self._encode(self.conn.send_reply, call, result)
                if self._serving == 1 and self._send_now(buffers):
                    pass    # no other call could join its batch: out at once
                elif self._flusher is not None and not self.closed and \
                        self._outq_bytes <= SEND_QUEUE_LIMIT:
                    self._enqueue(buffers)      # the common case, without a coroutine
                else:
                    await self._send(buffers)
            except ConnectionLost:
                pass

    async def _quietly(self, coro: Awaitable[object]) -> None:
        try:
            await coro
        except ConnectionLost:
            pass

    def _lost(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        waiters = list(self._waiters.values())
        self._waiters.clear()
        for waiter in waiters:
            _wake(waiter, outcome.Error(ConnectionLost(f"{self.name}: {why}")))

    async def aclose(self) -> None:
        self._lost("closed locally")
        with trio.CancelScope(shield=True):
            try:
                if isinstance(self.stream, trio.SSLStream):
                    # close_notify may not get out to a peer that stopped
                    # reading: give it a moment, then just close the socket
                    with trio.move_on_after(TLS_CLOSE_TIMEOUT) as scope:
                        await self.stream.aclose()
                    if scope.cancelled_caught:
                        await trio.aclose_forcefully(self.stream.transport_stream)
                else:
                    await self.stream.aclose()
            except (trio.BrokenResourceError, OSError):
                pass


def _wake(waiter: _Waiter, result: outcome.Outcome[Any]) -> None:
    """Give a waiting call its result: reschedule its parked task, or leave
    the result for it to find if it has not parked yet."""
    task = waiter.task
    if task is None:
        waiter.result = result
    else:
        waiter.task = None
        trio.lowlevel.reschedule(task, result)


async def _sendmsg_all(sock: socket.socket, buffers: list[Buffer]) -> None:
    """Write every buffer with the socket's own non-blocking sendmsg,
    IOV_MAX at a time, waiting for room only on EAGAIN."""
    views = [b if isinstance(b, bytes) else memoryview(b).cast("B") for b in buffers if len(b)]
    first = 0
    while first < len(views):
        chunk = views[first:first + IOV_MAX]
        try:
            sent = sock.sendmsg(chunk)
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)
            continue
        if sent == sum(map(len, chunk)):
            first += len(chunk)     # all of it: no walk over the buffers
            continue
        while sent:
            head = views[first]
            if sent >= len(head):
                sent -= len(head)
                first += 1
            else:
                views[first] = memoryview(head)[sent:]
                sent = 0


def _raw_socket(stream: trio.abc.Stream) -> socket.socket | None:
    """The stdlib socket under a plain trio.SocketStream (None for TLS and
    other streams): its non-blocking calls are used directly, see the
    module docstring.  trio keeps it as `_sock`; if a trio release drops
    that, the transport falls back to the stream's own methods (slower)."""
    if not isinstance(stream, trio.SocketStream):
        return None
    raw = getattr(stream.socket, "_sock", None)
    return raw if isinstance(raw, socket.socket) else None


def _peer_name(stream: trio.abc.Stream) -> str:
    sock = socket_of(stream)
    if sock is None:
        return "(stream)"
    try:
        addr = sock.getpeername()
    except OSError:
        return "(unconnected)"
    if sock.family == socket.AF_UNIX:
        return f"unix:{addr}"
    return f"{addr[0]}:{addr[1]}"
