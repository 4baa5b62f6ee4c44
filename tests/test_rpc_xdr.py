"""XDR primitives: exact encodings, bounds checked before allocation, padding."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glusterpy.rpc.errors import RpcProtocolError
from glusterpy.rpc.xdr import Packer, Unpacker, pad_len


def test_integers_are_big_endian_four_and_eight_bytes():
    p = Packer()
    p.u32(1)
    p.i32(-2)
    p.u64(3)
    p.i64(-4)
    p.f64(1.5)
    p.bool(True)
    assert p.getvalue() == (b"\0\0\0\1" + b"\xff\xff\xff\xfe" + b"\0" * 7 + b"\3"
                            + b"\xff" * 7 + b"\xfc" + struct.pack(">d", 1.5) + b"\0\0\0\1")
    u = Unpacker(p.getvalue())
    assert (u.u32(), u.i32(), u.u64(), u.i64(), u.f64(), u.bool()) == (1, -2, 3, -4, 1.5, True)
    u.done()


@pytest.mark.parametrize("n", range(9))
def test_opaque_is_length_bytes_and_zero_padding(n):
    data = bytes(range(1, n + 1))
    p = Packer()
    p.opaque(data)
    assert p.getvalue() == struct.pack(">I", n) + data + b"\0" * pad_len(n)
    assert len(p) % 4 == 0
    u = Unpacker(p.getvalue())
    assert u.opaque() == data
    u.done()


def test_strings_keep_non_utf8_bytes():
    raw = b"caf\xe9\xff"
    p = Packer()
    p.opaque(raw)
    text = Unpacker(p.getvalue()).string()
    q = Packer()
    q.string(text)
    assert q.getvalue() == p.getvalue()


def test_huge_length_is_refused_without_allocating():
    # 2**32-1 bytes announced in an 8-byte buffer: refused by arithmetic.
    u = Unpacker(b"\xff\xff\xff\xff" + b"abcd")
    with pytest.raises(RpcProtocolError, match="truncated"):
        u.opaque()


def test_opaque_limit():
    p = Packer()
    p.opaque(b"x" * 10)
    with pytest.raises(RpcProtocolError, match="limit"):
        Unpacker(p.getvalue()).opaque(maxlen=8)


def test_nonzero_padding_is_malformed():
    with pytest.raises(RpcProtocolError, match="padding"):
        Unpacker(b"\0\0\0\1a\0\0\1").opaque()


def test_truncated_items():
    for method in ("u32", "i32", "u64", "i64", "f64"):
        with pytest.raises(RpcProtocolError):
            getattr(Unpacker(b"\0\0\0"), method)()
    with pytest.raises(RpcProtocolError):
        Unpacker(b"\0" * 15).fixed(16)


def test_bool_must_be_zero_or_one():
    with pytest.raises(RpcProtocolError):
        Unpacker(b"\0\0\0\2").bool()


def test_trailing_bytes_are_detected():
    u = Unpacker(b"\0\0\0\1\0")
    u.u32()
    with pytest.raises(RpcProtocolError, match="trailing"):
        u.done()


def test_rest_is_a_view_not_a_copy():
    data = bytes(100)
    u = Unpacker(data)
    u.u32()
    rest = u.rest()
    assert isinstance(rest, memoryview) and rest.obj is data and len(rest) == 96


def test_encoding_out_of_range_is_a_value_error():
    with pytest.raises(ValueError):
        Packer().u32(-1)
    with pytest.raises(ValueError):
        Packer().i64(2**63)
    with pytest.raises(ValueError):
        Packer().fixed(b"short", 16)


@settings(max_examples=200)
@given(st.binary(max_size=64))
def test_unpacker_raises_only_protocol_errors(data):
    u = Unpacker(data)
    for op in (u.u32, u.opaque, u.u64, u.string, u.bool, u.f64):
        try:
            op()
        except RpcProtocolError:
            pass
