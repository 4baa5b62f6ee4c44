"""Every RPC record in the GlusterFS 10.3 captures decodes and re-encodes to
the same bytes, and what it decodes to makes sense.

The captures (../shared/glusterfs10-samples/captures, see its README) are
real traffic between GlusterFS 10.3 clients (qemu-img's gfapi, the FUSE
client, the self-heal daemon), bricks and glusterd.  TCP streams are
reassembled by tests/pcap.py, not by tshark, so this checks our codecs
against the bytes alone.
"""

from __future__ import annotations

import functools
import os
import struct
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pytest

from glusterpy.fops import ROOT_GFID
from glusterpy.rpc import (ALL_PROGRAMS, AUTH_GLUSTERFS_V2, AUTH_GLUSTERFS_V3, AUTH_NULL,
                           CBK_PROGRAM, DUMP_PROGRAM, FOP_PROGRAM, HNDSK_PROGRAM, PMAP_PROGRAM,
                           AuthGlusterfsV3, FopRequest, FopResponse, RpcCall, RpcReply,
                           decode_message, encode_call, encode_reply, old_dict_text)
from pcap import capture_path, rpc_records

CAPTURES = {
    # name: RPC records (tshark -Y rpc counts the same)
    "qemu-img.pcap": 202,
    "fuse-single.pcap": 222,
    "replica3-kill-heal.pcap": 3059,
    "distribute3.pcap": 1354,
}

pytestmark = pytest.mark.skipif(
    not capture_path("qemu-img.pcap").exists(),
    reason=f"GlusterFS 10 sample captures not found at {capture_path('')}")


@dataclass
class Decoded:
    stream: Any
    direction: str
    record: bytes
    message: RpcCall | RpcReply
    call: RpcCall            # the call itself, or the call a reply answers
    procedure: Any
    value: Any               # decoded arguments or results


@functools.cache
def decode_capture(name: str) -> list[Decoded]:
    out = []
    by_stream: dict[int, list] = {}
    for stream, direction, record in rpc_records(capture_path(name)):
        msg = decode_message(memoryview(record)[4:])
        by_stream.setdefault(stream.index, []).append((stream, direction, record, msg))
    for items in by_stream.values():
        calls = {(d, m.xid): m for _, d, _, m in items if isinstance(m, RpcCall)}
        for stream, direction, record, msg in items:
            if isinstance(msg, RpcCall):
                call = msg
                proc = ALL_PROGRAMS.procedure(call.prog, call.vers, call.proc)
                value = proc.decode_args(call.body)
            else:
                other = "to_server" if direction == "to_client" else "to_client"
                call = calls[(other, msg.xid)]
                proc = ALL_PROGRAMS.procedure(call.prog, call.vers, call.proc)
                value = proc.decode_result(msg.body)
            out.append(Decoded(stream, direction, record, msg, call, proc, value))
    return out


def reencode(d: Decoded) -> bytes:
    if isinstance(d.message, RpcCall):
        body = d.procedure.encode_args(d.value)
        return b"".join(bytes(b) for b in encode_call(d.message, body))
    body = d.procedure.encode_result(d.value)
    return b"".join(bytes(b) for b in encode_reply(d.message, body))


@pytest.mark.parametrize("name", CAPTURES)
def test_every_record_decodes_and_reencodes_exactly(name):
    decoded = decode_capture(name)
    assert len(decoded) == CAPTURES[name]
    mismatched = [d for d in decoded if reencode(d) != d.record]
    assert not mismatched, [(d.procedure, d.direction) for d in mismatched[:5]]


@pytest.mark.parametrize("name", CAPTURES)
def test_credentials_glusterd_v2_bricks_v3_callbacks_null(name):
    """rpc-clnt starts with AUTH_GLUSTERFS_v2 and moves to v3 once the brick
    has the 4.x fop program: DUMP/PING before SETVOLUME still carry v2."""
    seen = Counter()
    for d in decode_capture(name):
        if not isinstance(d.message, RpcCall):
            continue
        flavour = d.message.cred.flavor
        if d.call.prog == CBK_PROGRAM:
            assert flavour == AUTH_NULL
        elif d.stream.server_port == 24007 and d.direction == "to_server":
            assert flavour == AUTH_GLUSTERFS_V2, d.procedure
        elif d.call.prog in (FOP_PROGRAM, HNDSK_PROGRAM):
            assert flavour == AUTH_GLUSTERFS_V3, d.procedure
        else:
            assert d.call.prog == DUMP_PROGRAM and flavour in (AUTH_GLUSTERFS_V2,
                                                               AUTH_GLUSTERFS_V3)
        seen[flavour] += 1
    assert seen[AUTH_GLUSTERFS_V2] and seen[AUTH_GLUSTERFS_V3]


def values(name, procname, kind=RpcCall):
    return [d for d in decode_capture(name)
            if d.procedure.name == procname and isinstance(d.message, kind)]


def test_qemu_img_handshake():
    (getspec, *_) = values("qemu-img.pcap", "GETSPEC")
    assert getspec.value.key == "test"
    assert old_dict_text(getspec.value.xdata)["min-op-version"] == "1"
    spec = values("qemu-img.pcap", "GETSPEC", RpcReply)[0].value
    assert spec.op_ret == len(spec.spec) and "type protocol/client" in spec.spec
    assert "option remote-subvolume /srv/t1" in spec.spec

    pmap = values("qemu-img.pcap", "PORTBYBRICK")[0].value
    port = values("qemu-img.pcap", "PORTBYBRICK", RpcReply)[0].value
    assert pmap.brick == "/srv/t1" and port.op_ret == 0 and 49152 <= port.port <= 65535

    setvolume = old_dict_text(values("qemu-img.pcap", "SETVOLUME")[0].value.dict)
    assert setvolume["remote-subvolume"] == "/srv/t1"
    assert setvolume["volfile-key"] == "test"
    assert setvolume["process-uuid"].startswith("CTX_ID:")
    assert setvolume["fops-version"] == str(FOP_PROGRAM)
    assert setvolume["process-name"] == "gfapi.qemu-img"
    answer = old_dict_text(values("qemu-img.pcap", "SETVOLUME", RpcReply)[0].value.dict)
    assert answer["child_up"] == "1" and answer["ERROR"] == "Success"

    dump = values("qemu-img.pcap", "DUMP", RpcReply)
    programs = {(p.number, p.version) for d in dump for p in d.value.programs}
    assert {(FOP_PROGRAM, 400), (DUMP_PROGRAM, 1), (HNDSK_PROGRAM, 2), (PMAP_PROGRAM, 1)} <= programs


def test_qemu_img_write_and_read_0x5a():
    """qemu-io's `write -P 0x5a 0 128k` lands in a qcow2 data cluster; the
    other writes are qcow2 metadata."""
    writes = [d.value for d in values("qemu-img.pcap", "WRITE")]
    assert all(isinstance(w, FopRequest) for w in writes)
    pattern = [w for w in writes if bytes(w.args["data"]) == b"\x5a" * 131072]
    assert len(pattern) == 1
    offset = pattern[0].args["offset"]
    assert offset % 65536 == 0 and offset > 0  # a cluster after the header and tables
    assert bytes(writes[0].args["data"][:4]) == b"QFI\xfb"  # the qcow2 header
    reads = [(d.call, d.value) for d in values("qemu-img.pcap", "READ", RpcReply)]
    back = [v for c, v in reads if v.op_ret == 131072]
    assert len(back) == 1 and bytes(back[0].result.data) == b"\x5a" * 131072
    read_call = next(d.value for d in values("qemu-img.pcap", "READ")
                     if d.value.args["size"] == 131072)
    assert read_call.args["offset"] == offset


def test_qemu_img_lookup_names_and_create():
    bnames = {d.value.args["loc"].name for d in values("qemu-img.pcap", "LOOKUP")}
    assert "cap2.qcow2" in bnames
    create = values("qemu-img.pcap", "CREATE")[0].value
    assert create.args["loc"] == create.args["loc"].__class__(
        pargfid=ROOT_GFID, name="cap2.qcow2")
    assert create.args["flags"] & os.O_CREAT
    created = values("qemu-img.pcap", "CREATE", RpcReply)[0].value
    assert isinstance(created, FopResponse) and created.ok
    assert created.result.iatt.is_reg and created.result.fd.num >= 0


def test_fuse_operations():
    name = "fuse-single.pcap"
    mkdirs = {d.value.args["loc"].name for d in values(name, "MKDIR")}
    assert mkdirs
    xattrs = [d.value.args["xattrs"] for d in values(name, "SETXATTR")]
    assert any("user.color" in x for x in xattrs)
    (symlink,) = [d.value for d in values(name, "SYMLINK")]
    (readlink,) = [d.value for d in values(name, "READLINK", RpcReply)]
    assert readlink.result.path == symlink.args["linkname"]
    renames = [d.value.args for d in values(name, "RENAME")]
    assert all(r["oldloc"].name and r["newloc"].name for r in renames)
    locks = [d.value.args["flock"] for d in values(name, "LK")]
    assert {f.type for f in locks} >= {1, 2}  # F_WRLCK then F_UNLCK
    statfs = values(name, "STATFS", RpcReply)[0].value.result.statvfs
    assert statfs.bsize > 0 and statfs.namemax == 255


def test_replica_heal_traffic():
    name = "replica3-kill-heal.pcap"
    contention = [d.value for d in values(name, "INODELK_CONTENTION")]
    assert contention and all(c.domain.startswith("rep3-replicate-0") for c in contention)
    assert all(d.call.prog == CBK_PROGRAM for d in values(name, "INODELK_CONTENTION"))
    keys = {k for d in values(name, "FXATTROP") for k in d.value.args["xattrs"] or ()}
    assert any(k.startswith("trusted.afr.rep3-client-") for k in keys)
    (signin,) = [d.value for d in values(name, "SIGNIN")]
    assert signin.brick.startswith("/srv/r") and signin.port > 0
    internal = [d.message.cred for d in decode_capture(name)
                if isinstance(d.message, RpcCall) and isinstance(d.message.cred, AuthGlusterfsV3)
                and d.message.cred.pid < 0]
    assert internal  # the self-heal daemon's frames carry negative pids


def test_distribute_linkto_and_layouts():
    name = "distribute3.pcap"
    xdata_keys = {k for d in decode_capture(name) if isinstance(d.value, FopRequest)
                  for k in (d.value.xdata or ())}
    assert "trusted.glusterfs.dht.linkto" in xdata_keys or any(
        "trusted.glusterfs.dht.linkto" in (d.value.args.get("xattrs") or ())
        for d in decode_capture(name) if isinstance(d.value, FopRequest))
    lookups = values(name, "LOOKUP", RpcReply)
    layouts = [d.value.result.xdata.get("trusted.glusterfs.dht") for d in lookups
               if d.value.ok and d.value.result.xdata]
    assert any(isinstance(v, bytes) and len(v) == 16 for v in layouts)


def test_enoent_lookups_and_eof_reads():
    errors = Counter()
    for name in CAPTURES:
        for d in decode_capture(name):
            if isinstance(d.value, FopResponse) and not d.value.ok:
                errors[(d.value.name, d.value.result.errno)] += 1
    assert errors[("lookup", 2)] > 0


def test_fop_payload_lengths_match_their_size_fields():
    for name in CAPTURES:
        for d in decode_capture(name):
            v = d.value
            if isinstance(v, FopRequest) and v.name == "writev":
                size = struct.unpack_from(">I", bytes(d.call.body), 32)[0]
                assert size == len(v.args["data"])
            if isinstance(v, FopResponse) and v.name == "readv" and v.ok:
                assert v.op_ret == len(v.result.data)
