"""Record marking (RFC 5531 §11): fragments, maximum size, truncation."""

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from glusterpy.rpc.errors import RpcProtocolError
from glusterpy.rpc.record import (LAST_FRAGMENT, RecordDecoder, frame_record,
                                  record_bytes)


def frag(data: bytes, last: bool) -> bytes:
    return struct.pack(">I", (LAST_FRAGMENT if last else 0) | len(data)) + data


def records(dec: RecordDecoder) -> list[bytes]:
    out = []
    while (r := dec.next_record()) is not None:
        out.append(bytes(r))
    return out


def test_single_fragment_record():
    dec = RecordDecoder()
    dec.feed(frag(b"hello", True))
    assert records(dec) == [b"hello"]
    assert dec.at_record_boundary()


def test_multi_fragment_record_is_joined():
    dec = RecordDecoder()
    dec.feed(frag(b"abc", False) + frag(b"", False) + frag(b"defg", True) + frag(b"x", True))
    assert records(dec) == [b"abcdefg", b"x"]


def test_byte_at_a_time():
    stream = frag(b"one", False) + frag(b"two", True) + frag(b"three", True)
    dec = RecordDecoder()
    got = []
    for i in range(len(stream)):
        dec.feed(stream[i:i + 1])
        got += records(dec)
    assert got == [b"onetwo", b"three"]


def test_whole_record_in_one_chunk_is_not_copied():
    chunk = frag(b"z" * 1000, True)
    dec = RecordDecoder()
    dec.feed(chunk)
    rec = dec.next_record()
    assert isinstance(rec, memoryview) and rec.obj is chunk


def test_oversized_fragment_raises_before_buffering():
    dec = RecordDecoder(max_record_size=1 << 20)
    # A 2 GiB fragment: the header alone must be enough to refuse it.
    dec.feed(struct.pack(">I", LAST_FRAGMENT | 0x7FFFFFFF) + b"abc")
    with pytest.raises(RpcProtocolError, match="exceeds"):
        dec.next_record()
    assert dec.buffered < 16


def test_oversized_record_across_fragments():
    dec = RecordDecoder(max_record_size=10)
    dec.feed(frag(b"123456", False) + frag(b"789012", True))
    with pytest.raises(RpcProtocolError):
        dec.next_record()


def test_truncated_record_waits_and_reports_its_state():
    dec = RecordDecoder()
    dec.feed(frag(b"abcdef", True)[:7])
    assert dec.next_record() is None
    assert not dec.at_record_boundary()
    assert dec.bytes_needed() == 3


def test_frame_record_single_fragment_keeps_payload_buffers():
    payload = memoryview(b"p" * 100)
    out = frame_record([b"head", payload])
    assert out[0] == struct.pack(">I", LAST_FRAGMENT | 104)
    assert out[2] is payload


def test_frame_record_splits_into_fragments():
    data = bytes(range(250))
    wire = record_bytes([data[:7], data[7:]], max_fragment=64)
    dec = RecordDecoder()
    dec.feed(wire)
    assert records(dec) == [data]
    # 64+64+64+58: four fragments, only the last marked
    headers = [struct.unpack_from(">I", wire, off)[0] for off in (0, 68, 136, 204)]
    assert [h >> 31 for h in headers] == [0, 0, 0, 1]


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 100),
       st.lists(st.integers(1, 50), min_size=1, max_size=10))
def test_roundtrip_any_fragmentation_and_chunking(messages, max_fragment, cuts):
    wire = b"".join(record_bytes([m], max_fragment=max_fragment) for m in messages)
    dec = RecordDecoder()
    got, pos, i = [], 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        dec.feed(wire[pos:pos + step])
        pos += step
        i += 1
        got += records(dec)
    assert got == messages


@settings(max_examples=200)
@given(st.binary(max_size=200))
def test_random_bytes_raise_only_protocol_errors(data):
    dec = RecordDecoder(max_record_size=64)
    dec.feed(data)
    try:
        records(dec)
    except RpcProtocolError:
        pass


def receive_like_a_transport(dec: RecordDecoder, wire: bytes, cuts: list[int],
                             direct_min: int, alloc=None) -> list[bytes]:
    """Drive the decoder as rpc.transport does: feed() small pieces, and
    receive into fragment_buffer() whenever it offers one."""
    got, pos, i = [], 0, 0
    while pos < len(wire):
        step = cuts[i % len(cuts)]
        i += 1
        view = dec.fragment_buffer(direct_min, alloc)
        if view is not None:
            n = min(step, len(view), len(wire) - pos)
            view[:n] = wire[pos:pos + n]
            dec.fragment_filled(n)
        else:
            n = step
            dec.feed(wire[pos:pos + n])
        pos += n
        got += records(dec)
    return got


@settings(max_examples=150)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 100),
       st.lists(st.integers(1, 50), min_size=1, max_size=10), st.integers(1, 64))
def test_direct_receive_any_fragmentation_and_chunking(messages, max_fragment, cuts,
                                                       direct_min):
    wire = b"".join(record_bytes([m], max_fragment=max_fragment) for m in messages)
    dec = RecordDecoder()
    assert receive_like_a_transport(dec, wire, cuts, direct_min) == messages
    assert dec.at_record_boundary() and dec.buffered == 0


@settings(max_examples=100)
@given(st.lists(st.binary(max_size=300), max_size=5), st.integers(1, 100),
       st.lists(st.integers(1, 50), min_size=1, max_size=10), st.integers(1, 64))
def test_direct_receive_into_given_buffers(messages, max_fragment, cuts, direct_min):
    """With an allocator (the brick's pool), fragments are received into
    its buffers - stale bytes in them never show - and records come out
    the same."""
    given_out = []

    def alloc(n):
        buf = memoryview(bytearray(b"\xee" * (n + 3)))[3:]   # stale, and not at 0
        given_out.append(buf)
        return buf
    wire = b"".join(record_bytes([m], max_fragment=max_fragment) for m in messages)
    dec = RecordDecoder()
    assert receive_like_a_transport(dec, wire, cuts, direct_min, alloc) == messages
    assert dec.at_record_boundary() and dec.buffered == 0
    if any(len(m) >= direct_min + 50 for m in messages if max_fragment >= len(m)):
        assert given_out


def test_direct_receive_refuses_a_buffer_of_another_size():
    dec = RecordDecoder()
    dec.feed(frag(b"x" * 100, True)[:10])
    assert dec.next_record() is None
    with pytest.raises(RuntimeError):
        dec.fragment_buffer(1, lambda n: memoryview(bytearray(n + 1)))
    assert len(dec.fragment_buffer(1, lambda n: memoryview(bytearray(n)))) == 94


def test_direct_receive_moves_what_was_buffered_and_hands_out_read_only():
    payload = bytes(range(256)) * 4
    wire = frag(payload, True)
    dec = RecordDecoder()
    dec.feed(wire[:100])                       # header + 96 bytes, chunked
    assert dec.fragment_buffer(1) is None      # the header is not read yet
    assert dec.next_record() is None
    assert dec.fragment_buffer(2000) is None   # not enough still to come
    view = dec.fragment_buffer(100)
    assert len(view) == len(payload) - 96 and dec.buffered == 96
    assert not dec.at_record_boundary()
    assert dec.bytes_needed() == len(view)
    view[:500] = wire[100:600]
    dec.fragment_filled(500)
    assert dec.next_record() is None
    assert len(dec.fragment_buffer(1)) == len(payload) - 596  # the view shrinks
    rest = dec.fragment_buffer(1)
    rest[:] = wire[600:]
    dec.fragment_filled(len(rest))
    record = dec.next_record()
    assert bytes(record) == payload and record.readonly
    assert dec.at_record_boundary()


def test_direct_receive_misuse_is_refused():
    dec = RecordDecoder()
    with pytest.raises(RuntimeError):
        dec.fragment_filled(1)                 # no buffer handed out
    dec.feed(frag(b"x" * 100, True)[:10])
    assert dec.next_record() is None
    view = dec.fragment_buffer(1)
    with pytest.raises(RuntimeError):
        dec.fragment_filled(len(view) + 1)     # more than there is room for
    with pytest.raises(RuntimeError):
        dec.feed(b"y")                         # bytes would go around the buffer


# -- arena mode (the brick's receive path: RecordDecoder.arena_view) -----------

class _Arenas:
    """Page-aligned arenas (mmaps) of the size asked, counted."""

    def __init__(self):
        self.given = 0

    def __call__(self, n):
        import mmap
        self.given += 1
        return memoryview(mmap.mmap(-1, n))


def receive_into_arenas(dec: RecordDecoder, wire: bytes, cuts: list[int], alloc,
                        most: int = 0, drop: bool = False) -> list:
    """Drive the decoder as the brick's transport does: every receive into
    arena_view(), at most what the socket gives (`cuts`); with `drop`, the
    arena offered back after every receive, as the transport does when the
    socket is drained and no call is in service."""
    got, pos, i = [], 0, 0
    while pos < len(wire):
        view = dec.arena_view(alloc, most)
        if most:
            assert len(view) <= max(most, 4 + dec._hint) or dec._frag_len >= 32768
        n = min(cuts[i % len(cuts)], len(view), len(wire) - pos)
        i += 1
        view[:n] = wire[pos:pos + n]
        dec.arena_filled(n)
        pos += n
        while (r := dec.next_record()) is not None:
            got.append(r)
        if drop:
            dec.drop_arena()
    return got


@settings(max_examples=150)
@given(st.lists(st.binary(max_size=3000), max_size=6), st.integers(1, 4000),
       st.lists(st.integers(1, 5000), min_size=1, max_size=10))
def test_arena_receive_any_fragmentation_and_chunking(messages, max_fragment, cuts):
    import glusterpy.rpc.record as R
    wire = b"".join(record_bytes([m], max_fragment=max_fragment) for m in messages)
    dec = RecordDecoder(arena_size=8192)      # small: records cross arena ends often
    got = receive_into_arenas(dec, wire, cuts, _Arenas())
    assert [bytes(r) for r in got] == messages
    assert all(r.readonly for r in got)
    assert dec.at_record_boundary() and dec.buffered == 0
    assert R.ARENA_SIZE > 8192 and dec.arena_size == 8192
    # the same with the arena offered back after every receive (an idle
    # brick connection waiting for its peer): no receive boundary may
    # change what comes out
    dec = RecordDecoder(arena_size=8192)
    assert [bytes(r) for r in receive_into_arenas(dec, wire, cuts, _Arenas(),
                                                  drop=True)] == messages
    assert dec.at_record_boundary() and dec.buffered == 0


def test_arena_records_are_views_of_the_arena_not_copies():
    """Many small records and large ones, received in big pieces: every
    record is a view of an arena, and no byte is moved while the arena has
    room."""
    small = [bytes([n]) * (50 + n) for n in range(100)]
    wire = b"".join(record_bytes([m]) for m in small)
    dec = RecordDecoder()
    arenas = _Arenas()
    got = receive_into_arenas(dec, wire, [65536], arenas)
    assert [bytes(r) for r in got] == small
    assert arenas.given == 1 and dec.copied == 0
    assert all(isinstance(r.obj, __import__("mmap").mmap) for r in got)


def test_arena_places_large_records_to_end_page_aligned():
    """A stream of WRITE-like records (a header, then a 128 KiB payload):
    after the first, each lands so that its end - the payload's end, and so
    its start too - is page-aligned, with nothing copied; the first one is
    moved to alignment while little of it has arrived."""
    from glusterpy.aligned import address
    payload = 128 * 1024
    messages = [bytes([n]) * 172 + bytes([n + 1]) * payload for n in range(20)]
    wire = b"".join(record_bytes([m]) for m in messages)
    dec = RecordDecoder()
    # the peer's data comes as loopback TCP gives it: 64 KiB pieces at most
    got = receive_into_arenas(dec, wire, [1000, 65536, 65536, 65536, 40000], _Arenas())
    assert [bytes(r) for r in got] == messages
    for r in got:
        assert address(r[172:]) % 4096 == 0, "payload not page-aligned"
    assert dec.copied <= 1000       # the first record's first piece, realigned


def test_arena_with_mixed_records_still_aligns_when_it_can():
    """Small calls between large records: records come out right, and a
    large one still lands aligned when its start came in a receive of its
    own or in a small piece (realigned); one whose head came behind a small
    call in a large receive stays where it is (its payload is copied at
    posix, as before)."""
    from glusterpy.aligned import address
    big = [b"h" * 140 + bytes([n]) * 65536 for n in range(10)]
    small = [b"s" * 90] * 10
    wire = b"".join(record_bytes([m]) for pair in zip(big, small) for m in pair)
    dec = RecordDecoder()
    got = receive_into_arenas(dec, wire, [300, 65536, 65536], _Arenas())
    assert [bytes(r) for r in got] == [m for pair in zip(big, small) for m in pair]
    aligned = sum(address(r[140:]) % 4096 == 0 for r in got if len(r) > 60000)
    assert aligned >= 3


def test_arena_record_across_arenas_is_moved_once_and_arena_dropped_when_idle():
    dec = RecordDecoder(arena_size=8192)
    arenas = _Arenas()
    msgs = [b"a" * 5000, b"b" * 5000]
    wire = b"".join(record_bytes([m]) for m in msgs)
    got = receive_into_arenas(dec, wire, [6000], arenas)
    assert [bytes(r) for r in got] == msgs
    assert arenas.given == 2 and 0 < dec.copied < 5004
    assert dec.drop_arena() and dec._arena is None
    view = dec.arena_view(arenas)           # a new one when the peer sends again
    view[:3] = b"\x80\x00\x00"
    dec.arena_filled(3)
    assert dec.next_record() is None and not dec.drop_arena()   # a header half in it


@pytest.mark.parametrize("body", [200, 40000])
def test_arena_dropped_after_a_whole_header_keeps_the_fragment_length(body):
    """A receive that ends just after a record's 4-byte mark: the mark is
    read (the fragment's length known), none of its bytes are in the arena,
    and the idle transport lets the arena go.  The fragment's end was
    kept as an offset into the arena given up, so the next arena waited for
    that offset's worth of extra bytes: the record and every call after it
    were swallowed as its content and the brick stalled with "end of file
    inside a record" (bench/notes/metadata.md, the session loop's stall)."""
    dec = RecordDecoder()
    arenas = _Arenas()
    first, second, third = b"a" * 300, b"b" * body, b"c" * 50
    wire = record_bytes([first]) + record_bytes([second]) + record_bytes([third])
    cut = len(record_bytes([first])) + 4
    got = receive_into_arenas(dec, wire[:cut], [cut], arenas)
    assert [bytes(r) for r in got] == [first]
    assert not dec.at_record_boundary() and dec.bytes_needed() == body
    assert dec.drop_arena() and dec._arena is None      # nothing of the record held
    got = receive_into_arenas(dec, wire[cut:], [65536], arenas)
    assert [bytes(r) for r in got] == [second, third]
    assert dec.at_record_boundary() and dec.buffered == 0


def test_arena_misuse_and_oversize_are_refused():
    dec = RecordDecoder(max_record_size=100)
    with pytest.raises(RuntimeError):
        dec.arena_filled(1)                    # no arena handed out
    view = dec.arena_view(_Arenas())
    with pytest.raises(RuntimeError):
        dec.arena_filled(len(view) + 1)
    view[:4] = struct.pack(">I", LAST_FRAGMENT | 101)
    dec.arena_filled(4)
    with pytest.raises(RpcProtocolError):
        dec.next_record()
    dec2 = RecordDecoder()
    dec2.feed(b"\x80")
    with pytest.raises(RuntimeError):
        dec2.arena_view(_Arenas())             # fed bytes would be skipped
    dec3 = RecordDecoder()
    v = dec3.arena_view(_Arenas())
    v[:2] = b"\x80\x00"
    dec3.arena_filled(2)
    with pytest.raises(RuntimeError):
        dec3.feed(b"\x00")                     # bytes would go around the arena


@settings(max_examples=120, deadline=None)
@given(st.lists(st.integers(0, 140_000), min_size=1, max_size=8),
       st.sampled_from([65536, 1 << 20]),
       st.lists(st.integers(1, 70_000), min_size=1, max_size=8), st.sampled_from([0, 65536, 100]))
def test_arena_receive_large_records_any_sizes(sizes, arena_size, cuts, most):
    """Large and small records, arenas smaller and larger than them, any
    receive sizes: the records come out whole, in order, read-only."""
    messages = [bytes([n % 251]) * size for n, size in enumerate(sizes)]
    wire = b"".join(record_bytes([m]) for m in messages)
    dec = RecordDecoder(arena_size=arena_size)
    got = receive_into_arenas(dec, wire, cuts, _Arenas(), most)
    assert [bytes(r) for r in got] == messages
    assert dec.at_record_boundary() and dec.buffered == 0
