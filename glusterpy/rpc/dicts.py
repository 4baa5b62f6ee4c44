"""GlusterFS dictionaries on the wire: the 4.x typed `gfx_dict` and the old
3.x serialized form.

gfx_dict (glusterfs4-xdr.x; filled by dict_to_xdr()/xdr_to_dict() in
rpc/xdr/src/glusterfs3.h) carries xdata in every 4.x fop::

    unsigned int xdr_size;   bytes of the XDR that follow, minus 12
    int          count;      number of pairs, or -1 for "no dict" (NULL)
    gfx_dict_pair pairs<>;   key: opaque<> with its NUL; value: gfx_value

The typed values map to Python like this (decode gives exactly these types
back, so decoding and re-encoding a captured dict reproduces its bytes):

======================  ====  ============================================
Python value            type  wire arm
======================  ====  ============================================
`fops.UInt`             3     UINT, unsigned hyper
`int` (and `bool`)      2     INT, hyper
`float`                 4     DOUBLE
`str`                   5     STR: the UTF-8 text plus the trailing NUL
                                 GlusterFS always counts in a string's length
`RawStr` (bytes)        5     STR whose bytes are not "UTF-8 text + NUL"
`fops.GFID`             7     GFUUID, opaque[16]
`fops.Iatt`             8     IATT, gfx_iattx
`MdataIatt`             9     MDATA, gfx_mdata_iatt
`StrOld` (bytes)        1     STR_OLD: untyped bytes (what the old
                                 serialized dict gives every value)
`bytes`, `bytearray`    6     PTR: binary data, e.g. xattr values set with
                                 dict_set_bin()
======================  ====  ============================================

A NULL dict (count -1) decodes to None and None encodes to it; an empty dict
(count 0) is ``{}``.  Keys are str; bytes that are not UTF-8 survive as
surrogate escapes.

The old serialized dict (dict_serialize()/dict_unserialize() in
libglusterfs/src/dict.c), still used inside the handshake program's
SETVOLUME, GETSPEC, GET_VOLUME_INFO and EVENT_NOTIFY messages and in the
3.x-era callback xdata, is untyped::

    count (u32 BE), then per pair: keylen (u32 BE, without NUL),
    vallen (u32 BE), key bytes, NUL, value bytes

Its values decode to `StrOld` (GlusterFS gives them GF_DATA_TYPE_STR_OLD);
`StrOld.text` reads one as text.  Encoding accepts `str` (UTF-8 plus NUL, as
dict_set_str stores it), `int` (decimal digits plus NUL, as data_from_int64
does) and bytes as they are.
"""

from __future__ import annotations

import struct
from typing import Any, Mapping

from ..fops import GFID, Iatt, UInt
from .compiled import mypyc_attr
from .errors import RpcProtocolError
from .structs import MdataIatt, iattx_bytes, pack_mdata, unpack_iattx, unpack_mdata
from .xdr import I32, U32, Packer, Unpacker

# gf_dict_data_type_t (libglusterfs/src/glusterfs/glusterfs-fops.h)
TYPE_STR_OLD = 1
TYPE_INT = 2
TYPE_UINT = 3
TYPE_DOUBLE = 4
TYPE_STR = 5
TYPE_PTR = 6
TYPE_GFUUID = 7
TYPE_IATT = 8
TYPE_MDATA = 9


# bytes subclasses stay Python classes when compiled (mypyc compiles no
# subclass of bytes)
@mypyc_attr(native_class=False)
class StrOld(bytes):
    """A GF_DATA_TYPE_STR_OLD value: bytes GlusterFS did not type.

    Every value of an old serialized dict is one.  `text` reads it as a
    string the way GlusterFS's data_to_str() does: up to the trailing NUL.
    """

    __slots__ = ()

    @property
    def text(self) -> str:
        raw = bytes(self)
        if raw.endswith(b"\0"):
            raw = raw[:-1]
        return raw.decode("utf-8", "surrogateescape")

    def __repr__(self) -> str:
        return f"StrOld({bytes(self)!r})"


@mypyc_attr(native_class=False)
class RawStr(bytes):
    """A GF_DATA_TYPE_STR value whose bytes are not valid UTF-8 followed by
    one NUL (no NUL at all, say); kept as bytes so it re-encodes exactly."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"RawStr({bytes(self)!r})"


_HEAD = struct.Struct(">IiI")  # xdr_size, count, pairs_len
_NULL_DICT = _HEAD.pack(0, -1, 0)
_EMPTY_DICT = _HEAD.pack(0, 0, 0)


def _decode_key(raw: bytes) -> str:
    # dict_to_xdr sends strlen(key)+1 bytes: the key and its NUL.
    if not raw or raw[-1] != 0 or 0 in raw[:-1]:
        raise RpcProtocolError(f"gfx_dict key {raw[:64]!r} is not one NUL-terminated string")
    return raw[:-1].decode("utf-8", "surrogateescape")


def _decode_str(raw: bytes) -> str | RawStr:
    if raw and raw[-1] == 0:
        try:
            return raw[:-1].decode("utf-8")
        except UnicodeDecodeError:
            pass
    return RawStr(raw)


def unpack_dict(u: Unpacker) -> dict[str, Any] | None:
    """Decode a gfx_dict; None for GlusterFS's NULL dict (count -1)."""
    start = u.pos
    xdr_size, count, npairs = u.unpack(_HEAD)
    if count < 0:
        if count != -1 or npairs != 0 or xdr_size != 0:
            raise RpcProtocolError(
                f"gfx_dict: count {count} with {npairs} pairs, xdr_size {xdr_size}")
        return None
    if count != npairs:
        raise RpcProtocolError(f"gfx_dict: count {count} but {npairs} pairs")
    # Each pair takes at least 12 bytes (key length, key, type): refuse a
    # pair count the remaining bytes cannot hold before looping.
    if npairs * 12 > u.end - u.pos:
        raise RpcProtocolError(f"gfx_dict: {npairs} pairs cannot fit in {u.end - u.pos} bytes")
    out: dict[str, Any] = {}
    value: object  # one of the types the branches below decode
    data = u.data
    for _ in range(npairs):
        key = _decode_key(u.opaque())
        typ = u.i32()
        if typ == TYPE_STR:
            value = _decode_str(u.opaque())
        elif typ == TYPE_INT:
            value = u.i64()
        elif typ == TYPE_UINT:
            value = UInt(u.u64())
        elif typ == TYPE_PTR:
            value = u.opaque()
        elif typ == TYPE_GFUUID:
            p = u.need(16)
            u.pos = p + 16
            value = GFID(bytes(data[p:p + 16]))
        elif typ == TYPE_IATT:
            value = unpack_iattx(u)
        elif typ == TYPE_DOUBLE:
            value = u.f64()
        elif typ == TYPE_STR_OLD:
            value = StrOld(u.opaque())
        elif typ == TYPE_MDATA:
            value = unpack_mdata(u)
        else:
            raise RpcProtocolError(f"gfx_dict: value of unknown type {typ} for key {key!r}")
        if key in out:
            raise RpcProtocolError(f"gfx_dict: key {key!r} appears twice")
        out[key] = value
    # xdr_size is what GlusterFS's transport uses to find the end of a
    # request's XDR; a dict whose xdr_size lies is malformed.
    expect = u.pos - start - 12
    if xdr_size != expect:
        raise RpcProtocolError(f"gfx_dict: xdr_size {xdr_size}, but the pairs take {expect} bytes")
    return out


def _pack_value(p: Packer, key: str, value: object) -> None:
    buf = p.buf
    # Order matters: UInt before int, GFID/StrOld/RawStr before bytes.
    if isinstance(value, str):
        raw = value.encode("utf-8", "surrogateescape") + b"\0"
        buf += U32.pack(TYPE_STR)
        p.opaque(raw)
    elif isinstance(value, UInt):
        buf += U32.pack(TYPE_UINT)
        p.u64(value)
    elif isinstance(value, int):
        buf += U32.pack(TYPE_INT)
        p.i64(value)
    elif isinstance(value, GFID):
        buf += U32.pack(TYPE_GFUUID)
        buf += value
    elif isinstance(value, StrOld):
        buf += U32.pack(TYPE_STR_OLD)
        p.opaque(value)
    elif isinstance(value, RawStr):
        buf += U32.pack(TYPE_STR)
        p.opaque(value)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        buf += U32.pack(TYPE_PTR)
        p.opaque(value)
    elif isinstance(value, float):
        buf += U32.pack(TYPE_DOUBLE)
        p.f64(value)
    elif isinstance(value, Iatt):
        buf += U32.pack(TYPE_IATT)
        buf += iattx_bytes(value)
    elif isinstance(value, MdataIatt):
        buf += U32.pack(TYPE_MDATA)
        pack_mdata(p, value)
    else:
        raise TypeError(f"xdata value for {key!r} has no GlusterFS dict type: {value!r}")


def pack_dict(p: Packer, d: Mapping[str, Any] | None) -> None:
    """Encode a gfx_dict (None is GlusterFS's NULL dict)."""
    if d is None:
        p.buf += _NULL_DICT
        return
    if not d:
        p.buf += _EMPTY_DICT
        return
    buf = p.buf
    head = len(buf)
    buf += _EMPTY_DICT  # patched below once the size is known
    for key, value in d.items():
        if not isinstance(key, str):
            raise TypeError(f"dict keys are str, not {key!r}")
        raw = key.encode("utf-8", "surrogateescape")
        if b"\0" in raw:
            raise ValueError(f"dict key {key!r} contains NUL")
        p.opaque(raw + b"\0")
        _pack_value(p, key, value)
    # dict_to_xdr: xdr_size = xdr_sizeof(gfx_dict) - 12
    _HEAD.pack_into(buf, head, len(buf) - head - 12, len(d), len(d))


def dict_bytes(d: Mapping[str, Any] | None) -> bytes:
    p = Packer()
    pack_dict(p, d)
    return p.getvalue()


def decode_dict(data: bytes | memoryview) -> dict[str, Any] | None:
    """Decode a complete gfx_dict from `data` (no trailing bytes)."""
    u = Unpacker(data)
    d = unpack_dict(u)
    u.done()
    return d


# ---------------------------------------------------------------------------
# The old (3.x) serialized dict: dict_serialize() / dict_unserialize()

_OLD_PAIR = struct.Struct(">ii")


def decode_old_dict(data: bytes | memoryview) -> dict[str, StrOld] | None:
    """Decode dict_serialize() output.  An empty buffer is None: GlusterFS
    sends a zero-length opaque for a NULL dict, and a 4-byte count of 0 for
    an empty one."""
    n = len(data)
    if n == 0:
        return None
    if n < 4:
        raise RpcProtocolError("serialized dict shorter than its header")
    (count,) = I32.unpack_from(data, 0)
    if count < 0 or count > (n - 4) // 9:  # a pair needs 8 header bytes and a NUL
        raise RpcProtocolError(f"serialized dict claims {count} pairs in {n} bytes")
    pos = 4
    out: dict[str, StrOld] = {}
    for _ in range(count):
        if n - pos < 8:
            raise RpcProtocolError("serialized dict: truncated pair header")
        keylen, vallen = _OLD_PAIR.unpack_from(data, pos)
        pos += 8
        if keylen < 0 or vallen < 0 or keylen + 1 + vallen > n - pos:
            raise RpcProtocolError(
                f"serialized dict: key of {keylen} and value of {vallen} bytes "
                f"overrun the {n - pos} that remain")
        rawkey = bytes(data[pos:pos + keylen])
        if data[pos + keylen] != 0 or 0 in rawkey:
            raise RpcProtocolError("serialized dict: key is not NUL-terminated")
        pos += keylen + 1
        key = rawkey.decode("utf-8", "surrogateescape")
        if key in out:
            raise RpcProtocolError(f"serialized dict: key {key!r} appears twice")
        out[key] = StrOld(data[pos:pos + vallen])
        pos += vallen
    if pos != n:
        raise RpcProtocolError(f"serialized dict: {n - pos} trailing bytes")
    return out


def encode_old_dict(d: Mapping[str, Any] | None) -> bytes:
    """dict_serialize(): str values get their NUL, ints become decimal text
    with a NUL, bytes go as they are.  None encodes to b"" (GlusterFS's "no
    dict"), {} to a count of zero."""
    if d is None:
        return b""
    parts = [U32.pack(len(d))]
    for key, value in d.items():
        rawkey = key.encode("utf-8", "surrogateescape")
        if b"\0" in rawkey:
            raise ValueError(f"dict key {key!r} contains NUL")
        if isinstance(value, str):
            raw = value.encode("utf-8", "surrogateescape") + b"\0"
        elif isinstance(value, bool) or not isinstance(value, int):
            if not isinstance(value, (bytes, bytearray, memoryview)):
                raise TypeError(f"old dict value for {key!r} must be str, int or bytes")
            raw = bytes(value)
        else:
            raw = str(value).encode() + b"\0"
        parts.append(_OLD_PAIR.pack(len(rawkey), len(raw)))
        parts.append(rawkey + b"\0")
        parts.append(raw)
    return b"".join(parts)


def old_dict_text(d: Mapping[str, bytes] | None) -> dict[str, str]:
    """All values of a decoded old dict as text (see `StrOld.text`)."""
    return {k: StrOld(v).text for k, v in (d or {}).items()}


__all__ = [
    "StrOld", "RawStr", "MdataIatt", "unpack_dict", "pack_dict", "dict_bytes",
    "decode_dict", "decode_old_dict", "encode_old_dict", "old_dict_text",
    "TYPE_STR_OLD", "TYPE_INT", "TYPE_UINT", "TYPE_DOUBLE", "TYPE_STR",
    "TYPE_PTR", "TYPE_GFUUID", "TYPE_IATT", "TYPE_MDATA",
]
