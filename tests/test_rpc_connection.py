"""RpcConnection: the sans-IO state machine, on made-up and captured traffic."""

from __future__ import annotations

import dataclasses
import errno
import struct
import subprocess
import sys

import pytest

from glusterpy import fops as F
from glusterpy.fops import Iatt, Loc
from glusterpy.rpc import (ALL_PROGRAMS, BRICK_PROGRAMS, CALLBACK, DUMP, FOP, FOP_PROCEDURES,
                           HANDSHAKE,
                           NEED_DATA, AcceptStat, AuthGlusterfsV3, AuthStat, CallFailed,
                           CallReceived, ConnectionClosed, DumpReply, DumpRequest, FopRequest,
                           InodelkContention, OpaqueAuth, OrphanReply, RejectedCall, RejectStat,
                           ReplyReceived, ReplyStat, RpcCall, RpcConnection, RpcProtocolError,
                           RpcReply, SetVolumeRequest, State, decode_message, encode_call,
                           encode_reply)
from glusterpy.rpc.connection import Event
from glusterpy.rpc.fops4 import FopResponse, RemoteFd, encode_read_reply_record
from pcap import capture_path, rpc_records

G = F.GFID("3d6cd142-e23c-4a53-a6cb-c9982847d9cd")
F_REMOTE = RemoteFd(G, 1)
CRED = AuthGlusterfsV3(pid=100, uid=0, gid=0, lk_owner=b"\x64\0\0\0")


def wire(buffers) -> bytes:
    return b"".join(bytes(b) for b in buffers)


def feed(conn: RpcConnection, data: bytes) -> list[Event]:
    conn.receive_data(data)
    return list(conn.events())


def stat_request() -> FopRequest:
    return FopRequest(F.BY_NAME["stat"], {"loc": Loc(gfid=G)}, None)


def test_codecs_import_without_trio():
    """The sans-IO rule: importing the whole package pulls in no I/O library."""
    code = ("import sys, glusterpy.rpc; "
            "bad = [m for m in ('trio', 'socket', 'asyncio') if m in sys.modules]; "
            "sys.exit(', '.join(bad) or None)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_fop_procedures_follow_the_catalogue():
    assert list(FOP_PROCEDURES) == [f.name for f in F.CATALOGUE]
    assert all(FOP_PROCEDURES[f.name].number == f.procnum for f in F.CATALOGUE)


def test_call_and_reply_between_two_connections():
    client, brick = RpcConnection(), RpcConnection(serves=BRICK_PROGRAMS)
    xid, out = client.send_call(FOP.procedures[1], stat_request(), cred=CRED)
    assert xid == 1 and client.pending == {1: FOP.procedures[1]}
    (call,) = feed(brick, wire(out))
    assert isinstance(call, CallReceived) and call.expects_reply
    assert call.args.args["loc"].gfid == G and call.cred == CRED
    reply = brick.send_reply(call, F.StatReply(iatt=Iatt(gfid=G, size=5)))
    (ev,) = feed(client, wire(reply))
    assert isinstance(ev, ReplyReceived) and ev.xid == 1
    assert ev.result.result.iatt.size == 5 and client.pending == {}


def _read_call(brick: RpcConnection) -> CallReceived:
    client = RpcConnection()
    _, out = client.send_call(FOP_PROCEDURES["readv"], FopRequest(
        F.BY_NAME["readv"], {"fd": F_REMOTE, "size": 4096, "offset": 0, "flags": 0}),
        cred=CRED)
    (call,) = feed(brick, wire(out))
    return call


IATT = Iatt(gfid=G, ino=7, size=1 << 40, mode=0o100644, nlink=1, uid=5, gid=6, blksize=4096,
            atime=-3, atime_nsec=999, mtime=1, ctime=2, btime=3, blocks=8, flags=0xFFF)


DATA = memoryview(bytes(range(256)) * 16)


@pytest.mark.parametrize("result,packed", [
    (F.ReadReply(data=DATA, iatt=IATT), True),
    (F.ReadReply(data=b"", iatt=IATT), True),
    (FopResponse(F.BY_NAME["readv"], F.ReadReply(data=b"tail", iatt=IATT), 4, errno.ENOENT),
     True),
    # not the packed case: the general encoder answers, the same way
    (F.ReadReply(data=b"x", iatt=None), False),
    (F.ReadReply(data=b"x", iatt=IATT, xdata={"k": b"v"}), False),
    (FopResponse(F.BY_NAME["readv"], F.ReadReply(data=b"tail", iatt=IATT), 3, 0), False),
    (FopResponse(F.BY_NAME["readv"], F.ReadReply(data=b"x", iatt=IATT), 1, 0, {"size": 1}),
     False),
    (F.FopError(errno.EIO), False),
    (F.ReadReply(data=b"x", iatt=dataclasses.replace(IATT, uid=-1)), False),
], ids=["4k", "empty", "eof", "no-iatt", "xdata", "op_ret", "extra", "error", "bad-iatt"])
def test_read_reply_packed_in_one_go_is_the_general_encoding(result, packed):
    """A READ reply's header is packed in one struct (fops4's
    encode_read_reply_record), its data buffer passed on as it is; the bytes
    are those of the general encoder, and what the fast path does not pack
    falls back to it."""
    brick = RpcConnection(serves=BRICK_PROGRAMS)
    call = _read_call(brick)
    fast = encode_read_reply_record(call.xid, result, brick.max_fragment)
    assert (fast is not None) == packed
    if isinstance(result, F.ReadReply) and result.iatt is not None and result.iatt.uid < 0:
        with pytest.raises(ValueError, match="gfx_iattx"):
            brick.send_reply(call, result)     # the general encoder's clear error
        return
    out = brick.send_reply(call, result)
    assert wire(out) == wire(encode_reply(RpcReply(call.xid),
                                          call.procedure.encode_result(result)))
    if result is not None and packed and isinstance(result, F.ReadReply) and result.data:
        assert len(out) == 2 and out[1] is result.data      # the payload is not copied


def test_read_reply_over_max_fragment_is_split_the_general_way():
    brick = RpcConnection(serves=BRICK_PROGRAMS, max_fragment=1000)
    call = _read_call(brick)
    result = F.ReadReply(data=bytes(4096), iatt=IATT)
    out = brick.send_reply(call, result)
    assert encode_read_reply_record(call.xid, result, 1000) is None
    assert wire(out) == wire(encode_reply(RpcReply(call.xid), call.procedure.encode_result(result),
                                          max_fragment=1000))


def test_error_reply_reaches_the_caller_as_a_fop_error():
    client, brick = RpcConnection(), RpcConnection()
    _, out = client.send_call(FOP.procedures[1], stat_request())
    (call,) = feed(brick, wire(out))
    (ev,) = feed(client, wire(brick.send_reply(call, F.FopError(errno.ENOENT))))
    with pytest.raises(F.FopError) as e:
        ev.result.unwrap()
    assert e.value.errno == errno.ENOENT


def test_xids_increase_and_skip_pending_ones():
    conn = RpcConnection(first_xid=0xFFFFFFFF)
    x1, _ = conn.send_call(DUMP.procedures[1], DumpRequest(1))
    x2, _ = conn.send_call(DUMP.procedures[1], DumpRequest(1))
    assert (x1, x2) == (0xFFFFFFFF, 0)
    conn2 = RpcConnection(first_xid=5)
    conn2.send_call(DUMP.procedures[2], None, xid=6)
    assert conn2.send_call(DUMP.procedures[2])[0] == 5
    assert conn2.send_call(DUMP.procedures[2])[0] == 7
    with pytest.raises(ValueError):
        conn2.send_call(DUMP.procedures[2], xid=7)


def test_callbacks_are_one_way():
    brick, client = RpcConnection(), RpcConnection()
    proc = CALLBACK.procedures[10]
    xid, out = brick.send_call(proc, InodelkContention(gfid=G, domain="d"))
    assert brick.pending == {}
    (ev,) = feed(client, wire(out))
    assert isinstance(ev, CallReceived) and not ev.expects_reply
    assert ev.args.domain == "d"
    with pytest.raises(ValueError, match="one-way"):
        client.send_reply(ev, None)


def raw_call(prog, vers, proc, body=b"", rpcvers=2, cred=CRED, xid=9) -> bytes:
    return wire(encode_call(RpcCall(xid, prog, vers, proc, cred, rpcvers=rpcvers), [body]))


@pytest.mark.parametrize("record,expect", [
    (raw_call(555, 1, 0), (ReplyStat.MSG_ACCEPTED, AcceptStat.PROG_UNAVAIL, None, None)),
    (raw_call(1298437, 330, 27), (ReplyStat.MSG_ACCEPTED, AcceptStat.PROG_MISMATCH, 400, 400)),
    (raw_call(1298437, 400, 49), (ReplyStat.MSG_ACCEPTED, AcceptStat.PROC_UNAVAIL, None, None)),
    (raw_call(1298437, 400, 1, b"\0" * 5),
     (ReplyStat.MSG_ACCEPTED, AcceptStat.GARBAGE_ARGS, None, None)),
    (raw_call(1298437, 400, 1, rpcvers=3), (ReplyStat.MSG_DENIED, RejectStat.RPC_MISMATCH, 2, 2)),
    (raw_call(1298437, 400, 1, cred=OpaqueAuth(390040, b"\0\0\0\1")),
     (ReplyStat.MSG_DENIED, AuthStat.AUTH_BADCRED, None, None)),
    (raw_call(1298437, 400, 1, cred=OpaqueAuth(7777, b"")),
     (ReplyStat.MSG_DENIED, AuthStat.AUTH_REJECTEDCRED, None, None)),
], ids=["prog-unavail", "prog-mismatch", "proc-unavail", "garbage-args", "rpc-mismatch",
        "auth-badcred", "auth-rejectedcred"])
def test_calls_we_cannot_serve_become_rejections(record, expect):
    server = RpcConnection(serves=BRICK_PROGRAMS)
    (ev,) = feed(server, record)
    assert isinstance(ev, RejectedCall) and ev.xid == 9 and server.state is State.OPEN
    reply = decode_message(wire(server.send_rejection(ev))[4:])
    stat, detail, low, high = expect
    assert reply.reply_stat == stat and reply.xid == 9
    if stat == ReplyStat.MSG_ACCEPTED:
        assert reply.accept_stat == detail
    elif isinstance(detail, RejectStat):
        assert reply.reject_stat == detail
    else:
        assert reply.reject_stat == RejectStat.AUTH_ERROR and reply.auth_stat == detail
    assert (reply.low, reply.high) == (low, high)


def test_the_same_credential_bytes_give_the_same_credential_object():
    """Issue 15: a connection does not parse again the credential its last
    call carried (rpc.auth.CredentialCache): the same object comes back,
    another credential is parsed, and a malformed one after a good one is
    still refused."""
    server = RpcConnection(serves=BRICK_PROGRAMS)
    first, second = feed(server, raw_call(1298437, 400, 0, xid=1) + raw_call(1298437, 400, 0,
                                                                               xid=2))
    assert first.cred == CRED and second.cred is first.cred
    other = AuthGlusterfsV3(pid=7, uid=1000, gid=1000, lk_owner=b"\7" * 8)
    (third,) = feed(server, raw_call(1298437, 400, 0, cred=other))
    assert third.cred == other and third.cred is not first.cred
    (bad,) = feed(server, raw_call(1298437, 400, 0, cred=OpaqueAuth(390040, b"\0\0\0\1")))
    assert isinstance(bad, RejectedCall)
    (again,) = feed(server, raw_call(1298437, 400, 0, cred=OpaqueAuth(390040, b"\0\0\0\1")))
    assert isinstance(again, RejectedCall)
    (back,) = feed(server, raw_call(1298437, 400, 0))
    assert back.cred == CRED and isinstance(back, CallReceived)


def test_the_caller_sees_refusals_as_call_failed():
    client, glusterd = RpcConnection(), RpcConnection(serves=ALL_PROGRAMS.subset((123451501, 1)))
    _, out = client.send_call(HANDSHAKE.procedures[1], SetVolumeRequest({"a": "b"}))
    (rej,) = feed(glusterd, wire(out))
    (ev,) = feed(client, wire(glusterd.send_rejection(rej)))
    assert isinstance(ev, CallFailed) and ev.reply.accept_stat == AcceptStat.PROG_UNAVAIL
    assert "PROG_UNAVAIL" in ev.describe()


def test_send_error_for_a_received_call():
    client, server = RpcConnection(), RpcConnection()
    _, out = client.send_call(DUMP.procedures[1], DumpRequest(3))
    (call,) = feed(server, wire(out))
    (ev,) = feed(client, wire(server.send_error(call, AcceptStat.SYSTEM_ERR)))
    assert isinstance(ev, CallFailed) and ev.reply.accept_stat == AcceptStat.SYSTEM_ERR


def test_forgotten_call_reply_is_an_orphan():
    client, server = RpcConnection(), RpcConnection()
    xid, out = client.send_call(DUMP.procedures[1], DumpRequest(3))
    (call,) = feed(server, wire(out))
    client.forget_call(xid)
    (ev,) = feed(client, wire(server.send_reply(call, DumpReply())))
    assert isinstance(ev, OrphanReply) and ev.xid == xid


def test_malformed_reply_results_are_a_protocol_error_and_stick():
    client = RpcConnection()
    xid, _ = client.send_call(DUMP.procedures[1], DumpRequest(3))
    bad = wire(encode_reply(RpcReply(xid, body=b"\0\0\0\1")))
    client.receive_data(bad)
    with pytest.raises(RpcProtocolError):
        client.next_event()
    assert client.state is State.ERROR
    with pytest.raises(RpcProtocolError):
        client.receive_data(b"")
    with pytest.raises(RpcProtocolError):
        client.send_call(DUMP.procedures[2])


def test_oversized_record_is_refused_from_its_header():
    conn = RpcConnection(max_record_size=1 << 20)
    conn.receive_data(struct.pack(">I", 0xFFFFFFFF))
    with pytest.raises(RpcProtocolError, match="exceeds"):
        conn.next_event()
    assert conn.state is State.ERROR


def test_garbage_header_is_a_protocol_error():
    conn = RpcConnection()
    conn.receive_data(struct.pack(">I", 0x80000008) + b"\0\0\0\1\0\0\0\7")
    with pytest.raises(RpcProtocolError):
        conn.next_event()


def test_eof_at_a_boundary_closes_and_inside_a_record_fails():
    conn = RpcConnection()
    record = raw_call(123451501, 1, 2)
    assert isinstance(feed(conn, record)[0], CallReceived)
    assert feed(conn, b"") == [ConnectionClosed()]
    assert conn.state is State.CLOSED and conn.next_event() is NEED_DATA
    broken = RpcConnection()
    broken.receive_data(record[:-3])
    assert broken.next_event() is NEED_DATA
    broken.receive_data(b"")
    with pytest.raises(RpcProtocolError, match="end of file"):
        broken.next_event()


def test_multi_fragment_messages_both_ways():
    a = RpcConnection(max_fragment=16)
    b = RpcConnection()
    payload = bytes(range(256)) * 8
    req = FopRequest(F.BY_NAME["writev"], {"fd": F_REMOTE, "data": payload, "offset": 0,
                                           "flags": 0})
    _, out = a.send_call(FOP.procedures[13], req)
    data = wire(out)
    (call,) = feed(b, data)
    assert bytes(call.args.args["data"]) == payload
    # byte at a time
    c = RpcConnection()
    events = []
    for i in range(len(data)):
        c.receive_data(data[i:i + 1])
        events += list(c.events())
    assert len(events) == 1 and bytes(events[0].args.args["data"]) == payload


def test_receive_size_hint_counts_down_a_fragment():
    conn = RpcConnection()
    record = raw_call(123451501, 1, 2)
    assert conn.receive_size_hint() == 4
    conn.receive_data(record[:10])
    assert conn.next_event() is NEED_DATA
    assert conn.receive_size_hint() == len(record) - 10


# ---------------------------------------------------------------------------
# Replaying the captures through pairs of connections

@pytest.mark.skipif(not capture_path("qemu-img.pcap").exists(),
                    reason=f"GlusterFS 10 sample captures not found at {capture_path('')}")
@pytest.mark.parametrize("name", ["qemu-img.pcap", "fuse-single.pcap",
                                  "replica3-kill-heal.pcap", "distribute3.pcap"])
def test_captured_streams_replay_through_connections(name):
    """For each TCP stream: the client side re-sends every captured call
    through send_call (same xid, same credential) and gets the same bytes;
    the server side receives them as CallReceived, answers with send_reply
    from the captured results and again gets the same bytes; the client then
    receives the captured replies (and callbacks) as events."""
    streams: dict[int, dict] = {}
    for stream, direction, record in rpc_records(capture_path(name)):
        streams.setdefault(stream.index, {"to_server": [], "to_client": []})[direction].append(
            record)
    total = 0
    for records in streams.values():
        client, server = RpcConnection(), RpcConnection()
        # client -> server
        calls = {}
        for record in records["to_server"]:
            msg = decode_message(memoryview(record)[4:])
            assert isinstance(msg, RpcCall)
            proc = ALL_PROGRAMS.procedure(msg.prog, msg.vers, msg.proc)
            _, out = client.send_call(proc, proc.decode_args(msg.body), cred=msg.cred,
                                      verf=msg.verf, xid=msg.xid)
            assert wire(out) == record
        server.receive_data(b"".join(records["to_server"]))
        for ev in server.events():
            assert isinstance(ev, CallReceived)
            calls[ev.xid] = ev
        # server -> client: replies and callbacks
        replies = {}
        for record in records["to_client"]:
            msg = decode_message(memoryview(record)[4:])
            if isinstance(msg, RpcCall):  # a callback
                proc = ALL_PROGRAMS.procedure(msg.prog, msg.vers, msg.proc)
                _, out = server.send_call(proc, proc.decode_args(msg.body), cred=msg.cred,
                                          xid=msg.xid)
            else:
                call = calls[msg.xid]
                result = call.procedure.decode_result(msg.body)
                out = server.send_reply(call, result, verf=msg.verf)
                replies[msg.xid] = result
            assert wire(out) == record
        client.receive_data(b"".join(records["to_client"]))
        client.receive_data(b"")
        for ev in client.events():
            assert isinstance(ev, (ReplyReceived, CallReceived, ConnectionClosed))
            total += 1
        assert client.pending == {}
        assert client.state is State.CLOSED
    assert total > 0
