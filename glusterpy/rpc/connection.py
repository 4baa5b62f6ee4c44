"""`RpcConnection`: the sans-IO state machine of one GlusterFS RPC connection.

Modelled on h11: the transport feeds received bytes in and takes events
out; it asks for bytes to send calls and replies; nothing here touches a
socket, so it is the same code for glusterpy's client, brick and glusterd,
and the tests drive it without any I/O::

    from glusterpy.rpc import (RpcConnection, FOP_PROCEDURES, FopRequest,
                               AuthGlusterfsV3, ReplyReceived, CallReceived,
                               RejectedCall)
    conn = RpcConnection()                     # knows every program
    xid, out = conn.send_call(FOP_PROCEDURES["stat"],
                              FopRequest(BY_NAME["stat"], {"loc": loc}),
                              cred=AuthGlusterfsV3.from_caller(caller.get()))
    sock.sendmsg(out)                          # a list of buffers
    conn.receive_data(sock.recv(max(65536, conn.receive_size_hint())))  # b"" = EOF
    for event in conn.events():
        match event:
            case ReplyReceived(xid=x, result=resp): ...    # resp.unwrap()
            case CallReceived(): sock.sendmsg(conn.send_reply(event, result))
            case RejectedCall(): sock.sendmsg(conn.send_rejection(event))

GlusterFS connections are symmetric: the client calls the brick, the brick
calls back on the same connection (the callback program, one-way), so one
connection both sends and receives calls and replies.

The rules, in one place:

1. Received bytes are cut into records (record.RecordDecoder, with a
   maximum record size); each record is one RPC message.  A record that is
   not a well-formed ONC RPC v2 header, a reply whose results do not decode
   for the call it answers, a record over the maximum, or end of file in
   the middle of a record raise `RpcProtocolError`, and the connection
   enters ERROR: every later `receive_data`/`next_event`/send raises it
   again.  The transport closes the socket.
2. A call this endpoint cannot serve is not a protocol error; it becomes a
   `RejectedCall` event carrying the reply GlusterFS's rpcsvc would send:
   RPC_MISMATCH (rpcvers is not 2, versions 2..2), AUTH_ERROR/BADCRED (a
   known credential flavour whose body does not parse),
   AUTH_ERROR/REJECTEDCRED (a flavour we do not know), PROG_UNAVAIL (no
   such program), PROG_MISMATCH (the program in other versions, with their
   low/high), PROC_UNAVAIL (no such procedure), GARBAGE_ARGS (arguments
   that do not decode).  `send_rejection(event)` gives its bytes.
3. `send_call` allocates the xid (increasing from `first_xid`, wrapping at
   2**32, skipping xids still pending) and remembers the call unless the
   procedure is one-way; a reply is matched to it by xid and decoded with
   that procedure's result codec, then forgotten.  A reply whose xid is not
   pending (the call was forgotten with `forget_call`, e.g. after a
   timeout, as GlusterFS bails out frames) becomes an `OrphanReply` event.
4. An accepted-SUCCESS reply becomes `ReplyReceived`; any other reply
   (PROG_UNAVAIL, GARBAGE_ARGS, AUTH_ERROR, ...) becomes `CallFailed`.
5. A one-way call (callbacks) is delivered as `CallReceived` with
   `expects_reply` False; `send_reply` refuses to answer it.
6. End of file at a record boundary yields `ConnectionClosed` after the
   events before it; the connection is then CLOSED.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, Callable, Iterator, cast

from .auth import AUTH_NULL_CRED, FLAVORS, Auth, CredentialCache, OpaqueAuth, is_malformed
from .errors import RpcProtocolError
from .message import (RPC_VERSION, AcceptStat, AuthStat, RejectStat, ReplyStat, RpcCall,
                      RpcReply, decode_message, encode_call, encode_reply)
from .programs import ALL_PROGRAMS, Procedure, ProgramTable
from .record import DEFAULT_MAX_RECORD_SIZE, MAX_FRAGMENT_SIZE, Buffer, RecordDecoder


class State(enum.Enum):
    OPEN = "OPEN"
    CLOSED = "CLOSED"   # the peer sent EOF
    ERROR = "ERROR"     # malformed input; the stream cannot be trusted


class _NeedData:
    """Sentinel from `next_event`: feed more bytes."""

    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(slots=True)
class CallReceived:
    """A call to serve.  `args` is what the procedure's argument decoder
    returned (e.g. a FopRequest, a SetVolumeRequest, None)."""

    xid: int
    procedure: Procedure
    args: Any
    cred: Auth
    verf: Auth

    @property
    def expects_reply(self) -> bool:
        return not self.procedure.one_way


@dataclass(slots=True)
class RejectedCall:
    """A call this endpoint cannot serve, with the reply to send for it."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred: Auth
    reply: RpcReply
    reason: str
    procedure: Procedure | None = None  # known but its arguments were garbage

    @property
    def expects_reply(self) -> bool:
        """False for a one-way procedure (a callback): nobody waits."""
        return self.procedure is None or not self.procedure.one_way


@dataclass(slots=True)
class ReplyReceived:
    """A SUCCESS reply to one of our calls, its results decoded."""

    xid: int
    procedure: Procedure
    result: Any
    reply: RpcReply


@dataclass(slots=True)
class CallFailed:
    """A reply that refused one of our calls (PROG_UNAVAIL ... AUTH_ERROR)."""

    xid: int
    procedure: Procedure
    reply: RpcReply

    def describe(self) -> str:
        return f"{self.procedure.name}: {self.reply.describe()}"


@dataclass(slots=True)
class OrphanReply:
    """A reply whose xid matches no pending call."""

    xid: int
    reply: RpcReply


@dataclass(slots=True)
class ConnectionClosed:
    """The peer closed its side at a record boundary."""


Event = CallReceived | RejectedCall | ReplyReceived | CallFailed | OrphanReply | ConnectionClosed


class RpcConnection:
    """One GlusterFS RPC connection (either end); see the module docstring.

    `programs` decodes replies to our calls; `serves` lists the programs we
    accept calls for (default: the same table).  `max_record_size` bounds
    every received record; `max_fragment` splits what we send (GlusterFS
    never needs it; it exists for tests and odd peers).
    """

    def __init__(self, programs: ProgramTable = ALL_PROGRAMS, *,
                 serves: ProgramTable | None = None,
                 max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
                 max_fragment: int = MAX_FRAGMENT_SIZE,
                 first_xid: int = 1) -> None:
        self.programs = programs
        self.serves = programs if serves is None else serves
        self.max_fragment = max_fragment
        self._records = RecordDecoder(max_record_size)
        self._creds = CredentialCache()
        self._state = State.OPEN
        self._error: RpcProtocolError | None = None
        self._eof = False
        self._closed_reported = False
        self._next_xid = first_xid & 0xFFFFFFFF
        self.pending: dict[int, Procedure] = {}

    # -- state ---------------------------------------------------------------

    @property
    def max_record_size(self) -> int:
        """The largest record accepted; a server may raise it once a peer
        has authenticated."""
        return self._records.max_record_size

    @max_record_size.setter
    def max_record_size(self, value: int) -> None:
        self._records.max_record_size = value

    @property
    def state(self) -> State:
        return self._state

    def _fail(self, err: RpcProtocolError) -> RpcProtocolError:
        self._state = State.ERROR
        self._error = err
        return err

    def _check_usable(self) -> None:
        if self._state is State.ERROR:
            raise RpcProtocolError(f"connection is in the ERROR state: {self._error}")

    # -- receiving -----------------------------------------------------------

    def receive_data(self, data: Buffer) -> None:
        """Feed bytes from the peer; b"" means the peer closed its side."""
        self._check_usable()
        if self._eof:
            if data:
                raise self._fail(RpcProtocolError("data after end of file"))
            return
        if not data:
            self._eof = True
            return
        self._records.feed(data)

    def receive_size_hint(self) -> int:
        """Bytes that would complete the current fragment: a good recv size."""
        return self._records.bytes_needed()

    def receive_buffer(self, min_size: int,
                       alloc: Callable[[int], memoryview] | None = None) -> memoryview | None:
        """A view to receive the rest of a large fragment into (see
        RecordDecoder.fragment_buffer, which `alloc` is passed to), or
        None: use receive_data()."""
        self._check_usable()
        if self._eof:
            return None
        return self._records.fragment_buffer(min_size, alloc)

    def received_into(self, n: int) -> None:
        """`n` bytes were received into the receive_buffer() view (0: the
        peer closed its side)."""
        self._check_usable()
        if n == 0:
            self._eof = True
            return
        self._records.fragment_filled(n)

    def arena_view(self, alloc: Callable[[int], memoryview], most: int = 0) -> memoryview:
        """Where to receive next in arena mode (RecordDecoder.arena_view:
        records cut from pooled arenas, none copied); then `arena_filled`."""
        self._check_usable()
        return self._records.arena_view(alloc, most)

    def arena_filled(self, n: int) -> None:
        """`n` bytes were received into the arena_view() (0: the peer
        closed its side)."""
        self._check_usable()
        if n == 0:
            self._eof = True
            return
        self._records.arena_filled(n)

    def drop_arena(self) -> bool:
        """Let go of the receive arena if no partial record is in it."""
        return self._records.drop_arena()

    @property
    def receive_copied(self) -> int:
        """Bytes received into an arena and moved since (RecordDecoder.copied)."""
        return self._records.copied

    def next_event(self) -> Event | _NeedData:
        """The next event, or NEED_DATA.  Raises RpcProtocolError (and the
        connection enters ERROR) on malformed input."""
        self._check_usable()
        try:
            record = self._records.next_record()
        except RpcProtocolError as e:
            raise self._fail(e) from None
        if record is None:
            if self._eof:
                if not self._records.at_record_boundary():
                    raise self._fail(RpcProtocolError(
                        f"end of file inside a record ({self._records.buffered} bytes buffered)"))
                if not self._closed_reported:
                    self._closed_reported = True
                    self._state = State.CLOSED
                    return ConnectionClosed()
            return NEED_DATA
        try:
            return self._handle(record)
        except RpcProtocolError as e:
            raise self._fail(e) from None

    def events(self) -> Iterator[Event]:
        """Every event available now (stops at NEED_DATA or after close)."""
        while True:
            ev = self.next_event()
            if ev is NEED_DATA:
                return
            # NEED_DATA is the one _NeedData, but mypy does not narrow on
            # `is` with a plain instance
            yield ev  # type: ignore[misc]
            if isinstance(ev, ConnectionClosed):
                return

    def _handle(self, record: memoryview) -> Event:
        msg = decode_message(record, self._creds)
        if isinstance(msg, RpcCall):
            return self._handle_call(msg)
        return self._handle_reply(msg)

    def _reject(self, call: RpcCall, reply: RpcReply, reason: str,
                procedure: Procedure | None = None) -> RejectedCall:
        return RejectedCall(call.xid, call.prog, call.vers, call.proc, call.cred, reply,
                            reason, procedure)

    def _handle_call(self, call: RpcCall) -> Event:
        if call.rpcvers != RPC_VERSION:
            return self._reject(call, RpcReply(
                call.xid, ReplyStat.MSG_DENIED, None, reject_stat=RejectStat.RPC_MISMATCH,
                low=RPC_VERSION, high=RPC_VERSION), f"RPC version {call.rpcvers}")
        if is_malformed(call.cred):
            return self._auth_error(call, AuthStat.AUTH_BADCRED, "malformed credential")
        if isinstance(call.cred, OpaqueAuth) and call.cred.flavor not in FLAVORS:
            return self._auth_error(call, AuthStat.AUTH_REJECTEDCRED,
                                    f"unknown credential flavour {call.cred.flavor}")
        program = self.serves.program(call.prog, call.vers)
        if program is None:
            versions = self.serves.versions(call.prog)
            if versions:
                return self._reject(call, RpcReply(
                    call.xid, accept_stat=AcceptStat.PROG_MISMATCH,
                    low=versions[0], high=versions[-1]),
                    f"program {call.prog} version {call.vers}")
            return self._reject(call, RpcReply(call.xid, accept_stat=AcceptStat.PROG_UNAVAIL),
                                f"program {call.prog}")
        proc = program.procedure(call.proc)
        if proc is None:
            return self._reject(call, RpcReply(call.xid, accept_stat=AcceptStat.PROC_UNAVAIL),
                                f"procedure {call.proc} of {program.name}")
        try:
            args = proc.decode_args(call.body)
        except RpcProtocolError as e:
            return self._reject(call, RpcReply(call.xid, accept_stat=AcceptStat.GARBAGE_ARGS),
                                f"{proc.name}: {e}", proc)
        return CallReceived(call.xid, proc, args, call.cred, call.verf)

    def _auth_error(self, call: RpcCall, stat: AuthStat, reason: str) -> RejectedCall:
        return self._reject(call, RpcReply(
            call.xid, ReplyStat.MSG_DENIED, None, reject_stat=RejectStat.AUTH_ERROR,
            auth_stat=stat), reason)

    def _handle_reply(self, reply: RpcReply) -> Event:
        proc = self.pending.pop(reply.xid, None)
        if proc is None:
            return OrphanReply(reply.xid, reply)
        if not reply.success:
            return CallFailed(reply.xid, proc, reply)
        assert proc.decode_result is not None
        result = proc.decode_result(reply.body)
        return ReplyReceived(reply.xid, proc, result, reply)

    # -- sending -------------------------------------------------------------

    def _allocate_xid(self) -> int:
        for _ in range(len(self.pending) + 1):
            xid = self._next_xid
            self._next_xid = (xid + 1) & 0xFFFFFFFF
            if xid not in self.pending:
                return xid
        raise RuntimeError("no free xid")  # pragma: no cover - 2**32 pending calls

    def send_call(self, procedure: Procedure, args: Any = None, *,
                  cred: Auth = AUTH_NULL_CRED, verf: Auth = AUTH_NULL_CRED,
                  xid: int | None = None) -> tuple[int, list[Buffer]]:
        """Encode a call; returns its xid and the buffers to send."""
        self._check_usable()
        body = procedure.encode_args(args)
        if xid is None:
            xid = self._allocate_xid()
        elif xid in self.pending:
            raise ValueError(f"xid {xid} is already pending")
        out = encode_call(RpcCall(xid, procedure.program, procedure.version, procedure.number,
                                  cred, verf), body, max_fragment=self.max_fragment)
        if not procedure.one_way:
            self.pending[xid] = procedure
        return xid, out

    def forget_call(self, xid: int) -> Procedure | None:
        """Stop waiting for a reply (a timeout); a late one is an OrphanReply."""
        return self.pending.pop(xid, None)

    def send_reply(self, call: CallReceived, result: Any, *,
                   verf: Auth = AUTH_NULL_CRED) -> list[Buffer]:
        """Encode a SUCCESS reply carrying `result` for a received call."""
        self._check_usable()
        if call.procedure.one_way:
            raise ValueError(f"{call.procedure.name} is one-way; it gets no reply")
        record = call.procedure.encode_reply_record
        if record is not None and verf is AUTH_NULL_CRED:
            out = record(call.xid, result, self.max_fragment)
            if out is not None:
                return out
        assert call.procedure.encode_result is not None
        body = call.procedure.encode_result(result)
        return encode_reply(RpcReply(call.xid, verf=verf), body, max_fragment=self.max_fragment)

    def send_error(self, call: CallReceived, accept_stat: AcceptStat, *,
                   verf: Auth = AUTH_NULL_CRED) -> list[Buffer]:
        """Refuse a received call after all (e.g. SYSTEM_ERR, GARBAGE_ARGS
        for arguments that decoded but make no sense)."""
        self._check_usable()
        if accept_stat in (AcceptStat.SUCCESS, AcceptStat.PROG_MISMATCH):
            raise ValueError("send_error is for errors without results or versions")
        return encode_reply(RpcReply(call.xid, accept_stat=accept_stat, verf=verf),
                            max_fragment=self.max_fragment)

    def send_rejection(self, event: RejectedCall) -> list[Buffer]:
        """The reply for a RejectedCall (not for a one-way procedure's)."""
        self._check_usable()
        if not event.expects_reply:
            # expects_reply is False only with a procedure (a one-way one);
            # the cast runs on this error path only
            proc = cast(Procedure, event.procedure)
            raise ValueError(f"{proc.name} is one-way; it gets no reply")
        return encode_reply(event.reply, max_fragment=self.max_fragment)


__all__ = [
    "RpcConnection", "State", "NEED_DATA", "Event", "CallReceived", "RejectedCall",
    "ReplyReceived", "CallFailed", "OrphanReply", "ConnectionClosed",
]
