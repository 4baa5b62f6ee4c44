"""Every RPC program and procedure glusterpy speaks, with their codecs.

A `Procedure` binds (program, version, procedure number) to four functions:
decode/encode of the call's arguments and of the reply's results (the
program part of the message only; `message` does the RPC header and
`record` the record marking).  One-way procedures - the callback
program's - have no result codecs.  A `Program` groups procedures; a
`ProgramTable` answers "which procedure is this call?" and, when the
answer is none, tells the server which RPC error to send (PROG_UNAVAIL,
PROG_MISMATCH with the versions it has, PROC_UNAVAIL), as rpcsvc.c's
rpcsvc_program_actor() does.

Argument and result objects per program:

* DUMP, HANDSHAKE, PORTMAP: the message dataclasses of `mgmt`.
* FOP (1298437 v400): `fops4.FopRequest` in, `fops4.FopResponse` out; the
  result encoder also takes a bare `fops.Reply` or `fops.FopError`.
  Procedures are the catalogue's fops, by `Fop.procnum`; GFS3_OP_COMPOUND
  (49), which GlusterFS 10 refuses with GARBAGE_ARGS, and GFS3_OP_PUT's
  missing actor are not special-cased: PUT has a codec (the catalogue
  lists it), COMPOUND does not.
* CALLBACK (52743234 v1): the dataclasses of `callback`, None for the
  procedures without arguments, raw `bytes` for EVENT_NOTIFY.
* Every program's procedure 0 is NULL: no arguments, no results.

Program names are the ones GlusterFS's own servers list in DUMP replies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Literal, Mapping, Union

from .. import fops as F
from . import callback as cbk
from . import mgmt
from .fops4 import (FOP_CODECS, FOP_PROGRAM, FOP_VERSION, FopCodec, FopRequest, FopResponse,
                    encode_read_reply_record)
from .record import Buffer
from .xdrmsg import XdrMessage, decode_void, encode_void

Encoder = Callable[[Any], list[Buffer]]
Decoder = Callable[[Buffer], Any]
# What `_proc` builds codecs from: a message class, None for void, or "raw".
MessageKind = Union[type[XdrMessage], Literal["raw"], None]


@dataclass(frozen=True, slots=True)
class Procedure:
    program: int
    version: int
    number: int
    name: str
    decode_args: Decoder
    encode_args: Encoder
    decode_result: Decoder | None = None
    encode_result: Encoder | None = None
    #: (xid, result, max_fragment) -> the whole reply record's buffers, or
    #: None for the general way (encode_result under message.encode_reply):
    #: a procedure whose common reply is packed in one go (READ's)
    encode_reply_record: Callable[[int, Any, int], list[Buffer] | None] | None = None

    @property
    def one_way(self) -> bool:
        """True for callbacks: the receiver sends no reply."""
        return self.decode_result is None

    def __repr__(self) -> str:
        return f"<Procedure {self.name} ({self.program} v{self.version} #{self.number})>"


@dataclass(frozen=True, slots=True)
class Program:
    number: int
    version: int
    name: str
    procedures: Mapping[int, Procedure]

    def procedure(self, number: int) -> Procedure | None:
        return self.procedures.get(number)

    def by_name(self, name: str) -> Procedure:
        for proc in self.procedures.values():
            if proc.name == name:
                return proc
        raise KeyError(name)


class ProgramTable:
    """The programs one endpoint knows (to serve calls and decode replies)."""

    def __init__(self, programs: Iterable[Program]) -> None:
        self._programs: dict[tuple[int, int], Program] = {}
        for prog in programs:
            self._programs[(prog.number, prog.version)] = prog

    def __iter__(self) -> Iterator[Program]:
        return iter(self._programs.values())

    def program(self, number: int, version: int) -> Program | None:
        return self._programs.get((number, version))

    def versions(self, number: int) -> list[int]:
        """Versions known for a program number (for PROG_MISMATCH)."""
        return sorted(v for (n, v) in self._programs if n == number)

    def procedure(self, number: int, version: int, proc: int) -> Procedure | None:
        prog = self._programs.get((number, version))
        return None if prog is None else prog.procedures.get(proc)

    def subset(self, *keys: tuple[int, int]) -> "ProgramTable":
        """A table of some of these programs, e.g. what a brick serves."""
        return ProgramTable(self._programs[k] for k in keys)


# ---------------------------------------------------------------------------
# Helpers to build procedures from message classes


def _message_encoder(cls: type[XdrMessage]) -> Encoder:
    def encode(value: object) -> list[Buffer]:
        if not isinstance(value, cls):
            raise TypeError(f"expected {cls.__name__}, got {type(value).__name__}")
        return [value.encode()]
    encode.__name__ = f"encode_{cls.__name__}"
    return encode


def _void_encoder(value: None = None) -> list[Buffer]:
    return [encode_void(value)]


def _raw_decoder(data: Buffer) -> bytes:
    return bytes(data)


def _raw_encoder(value: object) -> list[Buffer]:
    if not isinstance(value, (bytes, bytearray, memoryview)):
        raise TypeError("raw arguments are bytes")
    return [bytes(value)]


def _proc(prog: int, vers: int, num: int, name: str, args: MessageKind,
          result: MessageKind = None, one_way: bool = False) -> Procedure:
    """args/result: a message class, None for void, or "raw"."""
    def codecs(kind: MessageKind) -> tuple[Decoder, Encoder]:
        if kind is None:
            return decode_void, _void_encoder
        if kind == "raw":
            return _raw_decoder, _raw_encoder
        return kind.decode, _message_encoder(kind)
    dec_a, enc_a = codecs(args)
    if one_way:
        return Procedure(prog, vers, num, name, dec_a, enc_a)
    dec_r, enc_r = codecs(result)
    return Procedure(prog, vers, num, name, dec_a, enc_a, dec_r, enc_r)


def _program(number: int, version: int, name: str, procs: list[Procedure]) -> Program:
    return Program(number, version, name, {p.number: p for p in procs})


# ---------------------------------------------------------------------------
# The programs

D, DV = mgmt.DUMP_PROGRAM, mgmt.DUMP_VERSION
DUMP = _program(D, DV, "GF-DUMP", [
    _proc(D, DV, mgmt.GF_DUMP_NULL, "NULL", None, None),
    _proc(D, DV, mgmt.GF_DUMP_DUMP, "DUMP", mgmt.DumpRequest, mgmt.DumpReply),
    _proc(D, DV, mgmt.GF_DUMP_PING, "PING", None, mgmt.CommonReply),
])

H, HV = mgmt.HNDSK_PROGRAM, mgmt.HNDSK_VERSION
HANDSHAKE = _program(H, HV, "GlusterFS Handshake", [
    _proc(H, HV, mgmt.GF_HNDSK_NULL, "NULL", None, None),
    _proc(H, HV, mgmt.GF_HNDSK_SETVOLUME, "SETVOLUME", mgmt.SetVolumeRequest, mgmt.SetVolumeReply),
    _proc(H, HV, mgmt.GF_HNDSK_GETSPEC, "GETSPEC", mgmt.GetSpecRequest, mgmt.GetSpecReply),
    _proc(H, HV, mgmt.GF_HNDSK_PING, "PING", None, mgmt.CommonReply),
    _proc(H, HV, mgmt.GF_HNDSK_SET_LK_VER, "SET_LK_VER", mgmt.SetLkVerRequest, mgmt.SetLkVerReply),
    _proc(H, HV, mgmt.GF_HNDSK_EVENT_NOTIFY, "EVENT_NOTIFY", mgmt.EventNotifyRequest,
          mgmt.EventNotifyReply),
    _proc(H, HV, mgmt.GF_HNDSK_GET_VOLUME_INFO, "GET_VOLUME_INFO", mgmt.GetVolumeInfoRequest,
          mgmt.GetVolumeInfoReply),
    _proc(H, HV, mgmt.GF_HNDSK_GET_SNAPSHOT_INFO, "GET_SNAPSHOT_INFO",
          mgmt.GetSnapshotInfoRequest, mgmt.GetSnapshotInfoReply),
])

P, PV = mgmt.PMAP_PROGRAM, mgmt.PMAP_VERSION
PORTMAP = _program(P, PV, "Gluster Portmap", [
    _proc(P, PV, mgmt.GF_PMAP_NULL, "NULL", None, None),
    _proc(P, PV, mgmt.GF_PMAP_PORTBYBRICK, "PORTBYBRICK", mgmt.PortByBrickRequest,
          mgmt.PortByBrickReply),
    _proc(P, PV, mgmt.GF_PMAP_BRICKBYPORT, "BRICKBYPORT", mgmt.BrickByPortRequest,
          mgmt.BrickByPortReply),
    _proc(P, PV, mgmt.GF_PMAP_SIGNIN, "SIGNIN", mgmt.SigninRequest, mgmt.SigninReply),
    _proc(P, PV, mgmt.GF_PMAP_SIGNOUT, "SIGNOUT", mgmt.SignoutRequest, mgmt.SignoutReply),
])

C, CV = cbk.CBK_PROGRAM, cbk.CBK_VERSION
CALLBACK = _program(C, CV, "GlusterFS Callback", [
    _proc(C, CV, cbk.GF_CBK_NULL, "NULL", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_FETCHSPEC, "FETCHSPEC", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_INO_FLUSH, "INO_FLUSH", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_EVENT_NOTIFY, "EVENT_NOTIFY", "raw", one_way=True),
    _proc(C, CV, cbk.GF_CBK_GET_SNAPS, "GET_SNAPS", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_CACHE_INVALIDATION, "CACHE_INVALIDATION", cbk.CacheInvalidation,
          one_way=True),
    _proc(C, CV, cbk.GF_CBK_CHILD_UP, "CHILD_UP", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_CHILD_DOWN, "CHILD_DOWN", None, one_way=True),
    _proc(C, CV, cbk.GF_CBK_RECALL_LEASE, "RECALL_LEASE", cbk.RecallLease, one_way=True),
    _proc(C, CV, cbk.GF_CBK_STATEDUMP, "STATEDUMP", cbk.Statedump, one_way=True),
    _proc(C, CV, cbk.GF_CBK_INODELK_CONTENTION, "INODELK_CONTENTION", cbk.InodelkContention,
          one_way=True),
    _proc(C, CV, cbk.GF_CBK_ENTRYLK_CONTENTION, "ENTRYLK_CONTENTION", cbk.EntrylkContention,
          one_way=True),
])


def _fop_procedure(codec: FopCodec) -> Procedure:
    def encode_args(req: object) -> list[Buffer]:
        if not isinstance(req, FopRequest):
            raise TypeError(f"{codec.name} arguments are a FopRequest, not {type(req).__name__}")
        if req.fop.name != codec.name:
            raise ValueError(f"a {req.fop.name} request sent as {codec.name}")
        return codec.encode_request(req.args, req.xdata, req.extra)

    def encode_result(result: FopResponse | F.Reply | F.FopError) -> list[Buffer]:
        if isinstance(result, FopResponse):
            return codec.encode_reply(result.result, op_ret=result.op_ret,
                                      op_errno=result.op_errno, extra=result.extra)
        return codec.encode_reply(result)

    return Procedure(FOP_PROGRAM, FOP_VERSION, codec.procnum, F.BY_NAME[codec.name].gf_name,
                     codec.decode_request, encode_args, codec.decode_reply, encode_result,
                     encode_read_reply_record if codec.name == "readv" else None)


FOP = _program(FOP_PROGRAM, FOP_VERSION, "GlusterFS 4.x v1", [
    _proc(FOP_PROGRAM, FOP_VERSION, 0, "NULL", None, None),
    *(_fop_procedure(FOP_CODECS[fop.name]) for fop in F.CATALOGUE),
])

# The fop program's procedures by catalogue name: FOP_PROCEDURES["readv"].
FOP_PROCEDURES: dict[str, Procedure] = {
    fop.name: FOP.procedures[fop.procnum] for fop in F.CATALOGUE}

ALL_PROGRAMS = ProgramTable([DUMP, HANDSHAKE, PORTMAP, FOP, CALLBACK])

# What each kind of GlusterFS endpoint serves (the calls it accepts); all of
# them decode replies and callbacks with ALL_PROGRAMS.
BRICK_PROGRAMS = ALL_PROGRAMS.subset((FOP_PROGRAM, FOP_VERSION), (D, DV), (H, HV))
GLUSTERD_PROGRAMS = ALL_PROGRAMS.subset((D, DV), (H, HV), (P, PV))
CLIENT_PROGRAMS = ALL_PROGRAMS.subset((C, CV))

__all__ = [
    "Procedure", "Program", "ProgramTable", "DUMP", "HANDSHAKE", "PORTMAP", "FOP",
    "FOP_PROCEDURES", "CALLBACK", "ALL_PROGRAMS", "BRICK_PROGRAMS", "GLUSTERD_PROGRAMS",
    "CLIENT_PROGRAMS",
]
