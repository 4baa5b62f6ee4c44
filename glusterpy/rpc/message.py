"""ONC RPC v2 call and reply messages (RFC 5531 §9), without record marking.

`decode_message(record)` parses the RPC header of one record and returns an
`RpcCall` or an `RpcReply` whose `body` is a memoryview of the program part
(arguments or results, plus any READ/WRITE payload that follows them, which
GlusterFS keeps outside the XDR).  `encode_call()`/`encode_reply()` do the
reverse; they return the header (with the 4 bytes of record marking in
front, filled in once the total length is known) as the first buffer and
the program's buffers after it, so a 128 KiB payload is never copied.

Replies follow GlusterFS's rpcsvc.c / xdr-rpc.c: an accepted reply carries a
verifier (GlusterFS echoes the call's; usually AUTH_NULL) and an
accept_stat - SUCCESS with results, PROG_MISMATCH with the supported
low/high versions, or PROG_UNAVAIL / PROC_UNAVAIL / GARBAGE_ARGS /
SYSTEM_ERR with nothing; a denied reply carries RPC_MISMATCH with low/high
(GlusterFS sends 2/2) or AUTH_ERROR with an auth_stat.
"""

from __future__ import annotations

import enum
import struct
from dataclasses import dataclass
from typing import Any, Sequence, TypeVar

from .auth import AUTH_NULL, AUTH_NULL_CRED, Auth, CredentialCache, pack_auth, unpack_auth
from .errors import RpcProtocolError
from .record import LAST_FRAGMENT, MAX_FRAGMENT_SIZE, Buffer, frame_record
from .xdr import U32, Packer, Unpacker

RPC_VERSION = 2
CALL = 0
REPLY = 1


class ReplyStat(enum.IntEnum):
    MSG_ACCEPTED = 0
    MSG_DENIED = 1


class AcceptStat(enum.IntEnum):
    SUCCESS = 0
    PROG_UNAVAIL = 1
    PROG_MISMATCH = 2
    PROC_UNAVAIL = 3
    GARBAGE_ARGS = 4
    SYSTEM_ERR = 5


class RejectStat(enum.IntEnum):
    RPC_MISMATCH = 0
    AUTH_ERROR = 1


class AuthStat(enum.IntEnum):
    AUTH_OK = 0
    AUTH_BADCRED = 1
    AUTH_REJECTEDCRED = 2
    AUTH_BADVERF = 3
    AUTH_REJECTEDVERF = 4
    AUTH_TOOWEAK = 5
    AUTH_INVALIDRESP = 6
    AUTH_FAILED = 7
    AUTH_KERB_GENERIC = 8
    AUTH_TIMEEXPIRE = 9
    AUTH_TKT_FILE = 10
    AUTH_DECODE = 11
    AUTH_NET_ADDR = 12
    RPCSEC_GSS_CREDPROBLEM = 13
    RPCSEC_GSS_CTXPROBLEM = 14


_E = TypeVar("_E", bound=enum.IntEnum)

# Each class's values map to that class's own members; Any lets `_enum`
# return the class it was given.
_MEMBERS: dict[type[enum.IntEnum], dict[int, Any]] = {cls: {m.value: m for m in cls} for cls in (ReplyStat, AcceptStat, RejectStat,
                                                       AuthStat)}


def _enum(cls: type[_E], value: int, what: str) -> _E:
    # a dict lookup: calling the enum class costs more than the rest of a
    # reply header
    member: _E | None = _MEMBERS[cls].get(value)
    if member is None:
        raise RpcProtocolError(f"unknown {what} {value}")
    return member


@dataclass(slots=True)
class RpcCall:
    """A call message.  `body` holds the program's arguments undecoded."""

    xid: int
    prog: int
    vers: int
    proc: int
    cred: Auth = AUTH_NULL_CRED
    verf: Auth = AUTH_NULL_CRED
    body: Buffer = b""
    rpcvers: int = RPC_VERSION


@dataclass(slots=True)
class RpcReply:
    """A reply message.

    Accepted: `reply_stat` MSG_ACCEPTED, `accept_stat` set, `verf` the
    server's verifier, `body` the results (SUCCESS only), `low`/`high` the
    supported versions (PROG_MISMATCH only).
    Denied: `reply_stat` MSG_DENIED, `reject_stat` set, `low`/`high` for
    RPC_MISMATCH, `auth_stat` for AUTH_ERROR.
    """

    xid: int
    reply_stat: ReplyStat = ReplyStat.MSG_ACCEPTED
    accept_stat: AcceptStat | None = AcceptStat.SUCCESS
    verf: Auth = AUTH_NULL_CRED
    body: Buffer = b""
    low: int | None = None
    high: int | None = None
    reject_stat: RejectStat | None = None
    auth_stat: AuthStat | None = None

    @property
    def success(self) -> bool:
        return (self.reply_stat == ReplyStat.MSG_ACCEPTED
                and self.accept_stat == AcceptStat.SUCCESS)

    def describe(self) -> str:
        """A short human-readable status, for errors and logs."""
        if self.reply_stat == ReplyStat.MSG_DENIED:
            if self.reject_stat == RejectStat.RPC_MISMATCH:
                return f"RPC_MISMATCH (supports {self.low}..{self.high})"
            return f"AUTH_ERROR ({self.auth_stat.name if self.auth_stat is not None else '?'})"
        assert self.accept_stat is not None
        if self.accept_stat == AcceptStat.PROG_MISMATCH:
            return f"PROG_MISMATCH (supports {self.low}..{self.high})"
        return self.accept_stat.name


#: struct format of a record that starts an accepted SUCCESS reply with the
#: null verifier - record mark, xid, REPLY, MSG_ACCEPTED, AUTH_NULL (flavour,
#: length), SUCCESS - for a program's codec that packs a whole reply header
#: with its results in one call (fops4's READ reply); the values after the
#: mark and xid are SUCCESS_REPLY_CONSTANTS
SUCCESS_REPLY_HEAD = ">7I"
SUCCESS_REPLY_CONSTANTS = (REPLY, int(ReplyStat.MSG_ACCEPTED), AUTH_NULL, 0,
                           int(AcceptStat.SUCCESS))

_CALL_HEAD = struct.Struct(">IIIIII")  # xid, CALL, rpcvers, prog, vers, proc
_CALL_HEAD_TAIL = struct.Struct(">IIII")  # rpcvers, prog, vers, proc
_XID_TYPE = struct.Struct(">II")


def decode_message(record: Buffer, creds: CredentialCache | None = None) -> RpcCall | RpcReply:
    """Parse one record's RPC header.  Raises only `RpcProtocolError`.
    `creds`: the connection's last credential, reused when a call's is the
    same (auth.CredentialCache)."""
    u = Unpacker(record)
    xid, mtype = u.unpack(_XID_TYPE)
    if mtype == CALL:
        rpcvers, prog, vers, proc = u.unpack(_CALL_HEAD_TAIL)
        cred = unpack_auth(u) if creds is None else creds.unpack(u)
        verf = unpack_auth(u)
        return RpcCall(xid, prog, vers, proc, cred, verf, u.rest(), rpcvers)
    if mtype != REPLY:
        raise RpcProtocolError(f"message type {mtype} is neither CALL nor REPLY")
    stat = _enum(ReplyStat, u.u32(), "reply_stat")
    if stat == ReplyStat.MSG_ACCEPTED:
        verf = unpack_auth(u)
        astat = _enum(AcceptStat, u.u32(), "accept_stat")
        reply = RpcReply(xid, stat, astat, verf)
        if astat == AcceptStat.SUCCESS:
            reply.body = u.rest()
        elif astat == AcceptStat.PROG_MISMATCH:
            reply.low, reply.high = u.u32(), u.u32()
        u.done()
        return reply
    rstat = _enum(RejectStat, u.u32(), "reject_stat")
    reply = RpcReply(xid, stat, None, AUTH_NULL_CRED, reject_stat=rstat)
    if rstat == RejectStat.RPC_MISMATCH:
        reply.low, reply.high = u.u32(), u.u32()
    else:
        reply.auth_stat = _enum(AuthStat, u.u32(), "auth_stat")
    u.done()
    return reply



def _finish(p: Packer, body: Sequence[Buffer], max_fragment: int) -> list[Buffer]:
    """Fill in the record mark reserved at the start of `p`."""
    total = len(p.buf) - 4 + sum(len(b) for b in body)
    if total <= max_fragment:
        U32.pack_into(p.buf, 0, LAST_FRAGMENT | total)
        return [p.buf, *body]
    return frame_record([memoryview(p.buf)[4:], *body], max_fragment)


def encode_call(call: RpcCall, body: Sequence[Buffer] = (), *,
                max_fragment: int = MAX_FRAGMENT_SIZE) -> list[Buffer]:
    """Record-marked buffers for a call; `body` replaces `call.body` when
    given (the program's encoded arguments and any payload)."""
    p = Packer(bytearray(4))
    p.pack(_CALL_HEAD, call.xid, CALL, call.rpcvers, call.prog, call.vers, call.proc)
    pack_auth(p, call.cred)
    pack_auth(p, call.verf)
    if not body and call.body:
        body = (call.body,)
    return _finish(p, body, max_fragment)


def encode_reply(reply: RpcReply, body: Sequence[Buffer] = (), *,
                 max_fragment: int = MAX_FRAGMENT_SIZE) -> list[Buffer]:
    """Record-marked buffers for a reply; `body` (the results) only for an
    accepted SUCCESS reply."""
    p = Packer(bytearray(4))
    p.pack(_XID_TYPE, reply.xid, REPLY)
    p.u32(reply.reply_stat)
    if reply.reply_stat == ReplyStat.MSG_ACCEPTED:
        pack_auth(p, reply.verf)
        if reply.accept_stat is None:
            raise ValueError("an accepted reply needs an accept_stat")
        p.u32(reply.accept_stat)
        if reply.accept_stat == AcceptStat.SUCCESS:
            if not body and reply.body:
                body = (reply.body,)
        else:
            if body:
                raise ValueError(f"a {reply.accept_stat.name} reply carries no results")
            body = ()
            if reply.accept_stat == AcceptStat.PROG_MISMATCH:
                p.u32(reply.low or 0)
                p.u32(reply.high or 0)
    else:
        if reply.reject_stat is None:
            raise ValueError("a denied reply needs a reject_stat")
        if body:
            raise ValueError("a denied reply carries no results")
        p.u32(reply.reject_stat)
        if reply.reject_stat == RejectStat.RPC_MISMATCH:
            p.u32(RPC_VERSION if reply.low is None else reply.low)
            p.u32(RPC_VERSION if reply.high is None else reply.high)
        else:
            p.u32(AuthStat.AUTH_FAILED if reply.auth_stat is None else reply.auth_stat)
    return _finish(p, body, max_fragment)


def message_bytes(buffers: Sequence[Buffer]) -> bytes:
    """Join encoder output into one bytes object (copies)."""
    return b"".join(buffers)


__all__ = [
    "RPC_VERSION", "CALL", "REPLY", "ReplyStat", "AcceptStat", "RejectStat",
    "AuthStat", "RpcCall", "RpcReply", "decode_message", "encode_call",
    "encode_reply", "message_bytes", "SUCCESS_REPLY_HEAD", "SUCCESS_REPLY_CONSTANTS",
]
