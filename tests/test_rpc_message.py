"""ONC RPC call/reply headers and the authentication flavours."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glusterpy.fops import Caller
from glusterpy.rpc.auth import (AUTH_GLUSTERFS_V2, AUTH_GLUSTERFS_V3, AUTH_NULL_CRED,
                                AuthGlusterfs, AuthGlusterfsV2, AuthGlusterfsV3, AuthUnix,
                                OpaqueAuth, decode_auth, is_malformed)
from glusterpy.rpc.errors import RpcProtocolError
from glusterpy.rpc.message import (AcceptStat, AuthStat, RejectStat, ReplyStat, RpcCall,
                                   RpcReply, decode_message, encode_call, encode_reply,
                                   message_bytes)

ALL_REPLIES = [
    RpcReply(7, body=b"\0\0\0\0"),
    RpcReply(7, accept_stat=AcceptStat.PROG_UNAVAIL),
    RpcReply(7, accept_stat=AcceptStat.PROG_MISMATCH, low=330, high=400),
    RpcReply(7, accept_stat=AcceptStat.PROC_UNAVAIL),
    RpcReply(7, accept_stat=AcceptStat.GARBAGE_ARGS),
    RpcReply(7, accept_stat=AcceptStat.SYSTEM_ERR),
    RpcReply(7, ReplyStat.MSG_DENIED, None, reject_stat=RejectStat.RPC_MISMATCH, low=2, high=2),
    *(RpcReply(7, ReplyStat.MSG_DENIED, None, reject_stat=RejectStat.AUTH_ERROR, auth_stat=s)
      for s in AuthStat),
]


def unframe(buffers) -> bytes:
    wire = message_bytes(buffers)
    (mark,) = struct.unpack_from(">I", wire)
    assert mark == 0x80000000 | (len(wire) - 4)
    return wire[4:]


@pytest.mark.parametrize("reply", ALL_REPLIES, ids=lambda r: r.describe())
def test_every_reply_kind_roundtrips(reply):
    wire = unframe(encode_reply(reply))
    back = decode_message(wire)
    assert isinstance(back, RpcReply)
    assert (back.reply_stat, back.accept_stat, back.low, back.high, back.reject_stat,
            back.auth_stat) == (reply.reply_stat, reply.accept_stat, reply.low, reply.high,
                                reply.reject_stat, reply.auth_stat)
    assert bytes(back.body) == bytes(reply.body)
    assert unframe(encode_reply(back)) == wire


def test_prog_mismatch_wire_layout():
    wire = unframe(encode_reply(RpcReply(9, accept_stat=AcceptStat.PROG_MISMATCH,
                                         low=330, high=400)))
    # xid, REPLY, MSG_ACCEPTED, verf AUTH_NULL (flavor, len), PROG_MISMATCH, low, high
    assert struct.unpack(">8I", wire) == (9, 1, 0, 0, 0, 2, 330, 400)


def test_auth_error_wire_layout():
    wire = unframe(encode_reply(RpcReply(9, ReplyStat.MSG_DENIED, None,
                                         reject_stat=RejectStat.AUTH_ERROR,
                                         auth_stat=AuthStat.AUTH_BADCRED)))
    assert struct.unpack(">5I", wire) == (9, 1, 1, 1, 1)


def test_call_header_roundtrip_with_glusterfs_v3_credential():
    cred = AuthGlusterfsV3(pid=-6, uid=1000, gid=100, flags=1, ctime_nsec=5, ctime_sec=7,
                           groups=(1, 2, 3), lk_owner=b"\x01\x02\x03\x04\x05\x06\x07\x08")
    call = RpcCall(0x1234, 1298437, 400, 27, cred)
    wire = unframe(encode_call(call, [b"ARGS"]))
    back = decode_message(wire)
    assert back == RpcCall(0x1234, 1298437, 400, 27, cred, AUTH_NULL_CRED, back.body)
    assert bytes(back.body) == b"ARGS"


def test_credentials_roundtrip_and_map_to_caller():
    for cred in (AuthUnix(1, "host", 0, 0, (4, 5)),
                 AuthGlusterfs(lk_owner=0x0807060504030201, pid=9, uid=1, gid=2,
                               groups=(10, 11)),
                 AuthGlusterfsV2(pid=42, uid=1, gid=2, groups=(3,), lk_owner=b"abcd"),
                 AuthGlusterfsV3(pid=42, uid=1, gid=2, groups=(3,), lk_owner=b"abcd")):
        assert decode_auth(cred.flavor, cred.body()) == cred
    c = AuthGlusterfs(lk_owner=0x0807060504030201, pid=9).caller()
    assert c.lk_owner == bytes(range(1, 9))


def test_default_lk_owner_is_the_pid_little_endian():
    # rpc-clnt.c: without a frame lk_owner, the pid's bytes, low byte first
    cred = AuthGlusterfsV2.from_caller(Caller(uid=5, gid=6, pid=0x01020304))
    assert cred.lk_owner == b"\x04\x03\x02\x01"
    assert cred.flavor == AUTH_GLUSTERFS_V2
    assert AuthGlusterfsV3.from_caller(Caller(), ctime_ns=3_000_000_007).ctime_sec == 3


def test_credential_over_400_bytes_is_refused_when_encoding():
    with pytest.raises(ValueError):
        AuthGlusterfsV3(groups=tuple(range(100))).body()


def test_malformed_known_credential_stays_opaque():
    cred = decode_auth(AUTH_GLUSTERFS_V3, b"\0\0\0\1")
    assert cred == OpaqueAuth(AUTH_GLUSTERFS_V3, b"\0\0\0\1")
    assert is_malformed(cred)
    assert not is_malformed(OpaqueAuth(12345, b"x"))


def test_rpc_version_is_kept_for_the_server_to_refuse():
    call = RpcCall(1, 100, 1, 0, rpcvers=3)
    assert decode_message(unframe(encode_call(call))).rpcvers == 3


@pytest.mark.parametrize("wire", [
    b"",                                   # nothing
    b"\0\0\0\1",                           # no message type
    b"\0\0\0\1\0\0\0\2",                   # message type 2
    b"\0\0\0\1\0\0\0\1\0\0\0\2",           # reply_stat 2
    b"\0\0\0\1\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\6",  # accept_stat 6
    b"\0\0\0\1\0\0\0\1\0\0\0\1\0\0\0\1\0\0\0\77",         # auth_stat 63
    b"\0\0\0\1\0\0\0\0\0\0\0\2\0\0\0\1\0\0\0\1\0\0\0\0\0\0\0\0\0\0\1\x91",  # cred > 400
    b"\0\0\0\1\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\2\0\0\0\1",  # mismatch w/o high
    b"\0\0\0\1\0\0\0\1\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\1\0",  # garbage after PROG_UNAVAIL
])
def test_malformed_headers(wire):
    with pytest.raises(RpcProtocolError):
        decode_message(wire)


@settings(max_examples=300)
@given(st.binary(max_size=120))
def test_decode_message_raises_only_protocol_errors(data):
    try:
        msg = decode_message(data)
    except RpcProtocolError:
        return
    encoder = encode_call if isinstance(msg, RpcCall) else encode_reply
    # whatever decodes re-encodes to the same bytes
    assert unframe(encoder(msg)) == data
