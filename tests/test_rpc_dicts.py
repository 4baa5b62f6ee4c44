"""gfx_dict (typed, 4.x) and the old serialized dict (dict_serialize)."""

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glusterpy.fops import GFID, Iatt, UInt
from glusterpy.rpc.dicts import (RawStr, StrOld, decode_dict, decode_old_dict, dict_bytes,
                                 encode_old_dict, old_dict_text)
from glusterpy.rpc.errors import RpcProtocolError
from glusterpy.rpc.structs import MdataIatt


def test_null_and_empty_dicts_differ_on_the_wire():
    assert dict_bytes(None) == struct.pack(">IiI", 0, -1, 0)
    assert dict_bytes({}) == struct.pack(">IiI", 0, 0, 0)
    assert decode_dict(dict_bytes(None)) is None
    assert decode_dict(dict_bytes({})) == {}


def test_string_value_layout_matches_dict_to_xdr():
    # key "k" sent with its NUL (len 2), type STR (5), value "v\0" (len 2)
    wire = dict_bytes({"k": "v"})
    pairs = struct.pack(">I", 2) + b"k\0\0\0" + struct.pack(">iI", 5, 2) + b"v\0\0\0"
    assert wire == struct.pack(">IiI", len(pairs), 1, 1) + pairs


def test_every_value_type_roundtrips_with_its_type():
    iatt = Iatt(gfid=GFID.random(), ino=5, size=1 << 40, mode=0o100644, atime=-1, blksize=0)
    d = {
        "int": -5, "uint": UInt(2**64 - 1), "double": 2.5, "str": "héllo",
        "raw-str": RawStr(b"no-nul"), "str-old": StrOld(b"abc\0"), "ptr": b"\x00\x01",
        "gfid": GFID.random(), "iatt": iatt, "mdata": MdataIatt(1, 2, 3, 4, 5, 6),
    }
    back = decode_dict(dict_bytes(d))
    assert back == d
    assert [type(v) for v in back.values()] == [type(v) for v in d.values()]
    assert dict_bytes(back) == dict_bytes(d)


def test_str_without_trailing_nul_stays_raw():
    wire = dict_bytes({"k": RawStr(b"abc")})
    assert decode_dict(wire) == {"k": RawStr(b"abc")}
    assert isinstance(decode_dict(wire)["k"], RawStr)


def test_unknown_value_type_is_malformed():
    wire = bytearray(dict_bytes({"k": 1}))
    struct.pack_into(">i", wire, 12 + 8, 42)  # the type after the 8-byte key field
    with pytest.raises(RpcProtocolError, match="unknown type"):
        decode_dict(bytes(wire))


def test_wrong_xdr_size_is_malformed():
    wire = bytearray(dict_bytes({"k": 1}))
    struct.pack_into(">I", wire, 0, 99)
    with pytest.raises(RpcProtocolError, match="xdr_size"):
        decode_dict(bytes(wire))


def test_huge_pair_count_is_refused_before_looping():
    with pytest.raises(RpcProtocolError):
        decode_dict(struct.pack(">IiI", 0, 0x7FFFFFFF, 0x7FFFFFFF))


def test_keys_need_their_nul():
    pairs = struct.pack(">I", 1) + b"k\0\0\0" + struct.pack(">iq", 2, 1)
    with pytest.raises(RpcProtocolError, match="NUL"):
        decode_dict(struct.pack(">IiI", len(pairs), 1, 1) + pairs)


def test_encoding_refuses_values_without_a_type():
    with pytest.raises(TypeError):
        dict_bytes({"k": object()})


def test_old_dict_layout_matches_dict_serialize():
    wire = encode_old_dict({"volfile-key": "test", "n": 7})
    assert wire == (struct.pack(">i", 2) + struct.pack(">ii", 11, 5) + b"volfile-key\0test\0"
                    + struct.pack(">ii", 1, 2) + b"n\0" + b"7\0")
    back = decode_old_dict(wire)
    assert back == {"volfile-key": b"test\0", "n": b"7\0"}
    assert all(isinstance(v, StrOld) for v in back.values())
    assert old_dict_text(back) == {"volfile-key": "test", "n": "7"}
    assert encode_old_dict(back) == wire


def test_old_dict_null_and_empty():
    assert encode_old_dict(None) == b"" and decode_old_dict(b"") is None
    assert encode_old_dict({}) == b"\0\0\0\0" and decode_old_dict(b"\0\0\0\0") == {}


@pytest.mark.parametrize("wire", [
    b"\0\0\1",                                        # short header
    b"\xff\xff\xff\xff",                              # negative count
    b"\0\0\0\1" + struct.pack(">ii", 100, 0) + b"k",  # key overruns
    b"\0\0\0\1" + struct.pack(">ii", 1, 0) + b"kX",   # key not NUL-terminated
    b"\0\0\0\1" + struct.pack(">ii", 1, 0) + b"k\0junk",  # trailing bytes
])
def test_malformed_old_dicts(wire):
    with pytest.raises(RpcProtocolError):
        decode_old_dict(wire)


keys = st.text(st.characters(blacklist_characters="\0", blacklist_categories=("Cs",)),
               max_size=20)
values = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.integers(0, 2**64 - 1).map(UInt),
    st.floats(allow_nan=False), st.text(max_size=20), st.binary(max_size=20),
    st.binary(max_size=20).map(StrOld), st.binary(min_size=16, max_size=16).map(GFID),
    st.builds(MdataIatt, *[st.integers(-2**63, 2**63 - 1)] * 3, *[st.integers(0, 2**32 - 1)] * 3),
)


@settings(max_examples=150)
@given(st.dictionaries(keys, values, max_size=6))
def test_gfx_dict_roundtrip(d):
    wire = dict_bytes(d)
    back = decode_dict(wire)
    assert dict_bytes(back) == wire
    for k, v in d.items():
        if isinstance(v, float) and math.isnan(v):
            continue
        assert back[k] == v


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data):
    for decoder in (decode_dict, decode_old_dict):
        try:
            out = decoder(data)
        except RpcProtocolError:
            continue
        # what decodes, re-encodes exactly
        assert (dict_bytes(out) if decoder is decode_dict else encode_old_dict(out)) == data
