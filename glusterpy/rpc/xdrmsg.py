"""A small base for fixed-layout XDR messages (management and callbacks).

The handshake, portmap, dump and callback programs use plain structures
(rpc-common-xdr.x, glusterfs3-xdr.x, portmap-xdr.x).  Each becomes a
dataclass deriving from `XdrMessage` that lists its wire layout in
`_layout` as (attribute, wire type) pairs in .x-file order::

    @dataclass
    class PortByBrickReply(XdrMessage):
        _layout = (("op_ret", "i32"), ("op_errno", "i32"),
                   ("status", "i32"), ("port", "i32"))
        op_ret: int = 0
        ...

and gets `encode() -> bytes` and `decode(buffer)` (which raises
`RpcProtocolError` on anything but exactly one well-formed structure).

Wire types: u32 i32 u64 string (text, surrogate-escaped) opaque16 (fixed
16 bytes) gfid (fops.GFID) olddict (an opaque<> holding an old serialized
dict, see dicts.decode_old_dict; None when empty) opaque (bytes) gf_iatt
(3.x iatt as fops.Iatt) flock (fops.Flock) progs (gf_prog_detail list).
"""

from __future__ import annotations

from collections.abc import Mapping, Sized
from typing import Any, Callable, ClassVar, Self

from ..fops import GFID
from .compiled import mypyc_attr
from .dicts import StrOld, decode_old_dict, encode_old_dict
from .errors import RpcProtocolError
from .structs import pack_flock, pack_gf_iatt, unpack_flock, unpack_gf_iatt
from .xdr import Packer, Unpacker


def _unpack_olddict(u: Unpacker) -> dict[str, StrOld] | None:
    return decode_old_dict(u.opaque_view())


def _pack_olddict(p: Packer, d: Mapping[str, Any] | None) -> None:
    p.opaque(encode_old_dict(d))


def _pack_gfid(p: Packer, g: bytes | None) -> None:
    p.fixed(bytes(16) if g is None else bytes(g), 16)


FIELD_TYPES: dict[str, tuple[Callable[[Unpacker], Any], Callable[[Packer, Any], None]]] = {
    "u32": (Unpacker.u32, Packer.u32),
    "i32": (Unpacker.i32, Packer.i32),
    "u64": (Unpacker.u64, Packer.u64),
    "string": (Unpacker.string, Packer.string),
    "opaque": (Unpacker.opaque, Packer.opaque),
    "opaque16": (lambda u: u.fixed(16), lambda p, v: p.fixed(bytes(v), 16)),
    "gfid": (lambda u: GFID(u.fixed(16)), _pack_gfid),
    "olddict": (_unpack_olddict, _pack_olddict),
    "gf_iatt": (unpack_gf_iatt, pack_gf_iatt),
    "flock": (unpack_flock, pack_flock),
}


# mgmt's and callback's messages (not compiled, off the hot path) subclass it
@mypyc_attr(allow_interpreted_subclasses=True)
class XdrMessage:
    """Mixin for dataclasses with an `_layout`; see the module docstring."""

    __slots__ = ()
    _layout: ClassVar[tuple[tuple[str, str], ...]] = ()

    def pack(self, p: Packer) -> None:
        for attr, typ in self._layout:
            FIELD_TYPES[typ][1](p, getattr(self, attr))

    def encode(self) -> bytes:
        p = Packer()
        self.pack(p)
        return p.getvalue()

    @classmethod
    def unpack(cls, u: Unpacker) -> Self:
        values = {attr: FIELD_TYPES[typ][0](u) for attr, typ in cls._layout}
        return cls(**values)

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> Self:
        u = Unpacker(data)
        msg = cls.unpack(u)
        u.done()
        return msg


def decode_void(data: Sized) -> None:
    """A procedure without arguments or results: the body must be empty."""
    if len(data):
        raise RpcProtocolError(f"{len(data)} bytes where no arguments belong")
    return None


def encode_void(value: None = None) -> bytes:
    if value is not None:
        raise ValueError("this procedure carries no arguments or results")
    return b""


__all__ = ["XdrMessage", "FIELD_TYPES", "decode_void", "encode_void"]
