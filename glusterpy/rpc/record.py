"""ONC RPC record marking over TCP (RFC 5531 §11).

A record is one or more fragments; each fragment starts with a 4-byte
big-endian header whose top bit marks the last fragment and whose other 31
bits give the fragment's length.  GlusterFS always sends a whole message as
one fragment (socket.c, __socket_ioq_new) but reads multi-fragment records;
so do we.

Receiving - `RecordDecoder`: feed it whatever the socket returned, take
complete records out::

    dec = RecordDecoder(max_record_size=16 << 20)
    dec.feed(data)
    while (record := dec.next_record()) is not None:
        ...  # record is a memoryview of one complete RPC message

A fragment header is checked against `max_record_size` as soon as its four
bytes arrive, before any byte of the fragment is buffered, so a peer that
announces a 2 GiB fragment gets `RpcProtocolError` at once and costs no
memory.  Records that arrive whole in one `feed()` are handed out as
memoryviews of that chunk without copying; records split over several
chunks or fragments are joined once.  A transport that can receive into a
buffer asks `fragment_buffer()` for one the size of the fragment being
read (what is already buffered of it is moved in) and fills the rest
straight from the socket: a large WRITE or READ record is then never
joined.

Sending - `frame_record(parts)` prefixes the buffers of one message with
fragment headers and returns the list of buffers to write (with
``socket.sendmsg`` or by joining them); payload buffers are never copied
unless a record has to be split into several fragments.
"""

from __future__ import annotations

from collections import deque
from typing import Callable, Sequence

from .errors import RpcProtocolError
from .xdr import U32

LAST_FRAGMENT = 0x80000000
MAX_FRAGMENT_SIZE = 0x7FFFFFFF  # 31 bits; GlusterFS's RPC_MAX_FRAGMENT_SIZE

# The largest record we accept by default.  GlusterFS's biggest messages are
# READ replies and WRITE calls (128 KiB from FUSE and qemu in the captures,
# larger from gfapi applications that ask for it) and READDIRP replies
# sized by the client's request; 16 MiB leaves ample room and bounds what a
# peer can make us buffer per connection.  RpcConnection takes another.
DEFAULT_MAX_RECORD_SIZE = 16 * 1024 * 1024

Buffer = bytes | bytearray | memoryview


class RecordDecoder:
    """Reassembles records from a byte stream (sans-IO)."""

    __slots__ = ("max_record_size", "_chunks", "_avail", "_frags", "_record_len",
                 "_frag_len", "_last", "_direct", "_direct_pos")

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE) -> None:
        self.max_record_size = max_record_size
        self._chunks: deque[memoryview] = deque()  # views of immutable bytes
        self._avail = 0          # bytes in _chunks
        self._frags: list[memoryview] = []  # finished fragments of this record
        self._record_len = 0     # bytes in _frags
        self._frag_len = -1      # length of the fragment being read; -1: header next
        self._last = False
        self._direct: bytearray | memoryview | None = None  # the fragment_buffer() being filled
        self._direct_pos = 0                    # bytes of it filled

    def feed(self, data: Buffer) -> None:
        """Add received bytes.  A bytearray or memoryview is copied (the
        caller may reuse its buffer); bytes are kept by reference."""
        if not data:
            return
        if self._direct is not None:
            raise RuntimeError("feed() while a fragment_buffer() is being filled")
        if not isinstance(data, bytes):
            data = bytes(data)
        self._chunks.append(memoryview(data))
        self._avail += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a record."""
        return self._avail + self._record_len + self._direct_pos

    def at_record_boundary(self) -> bool:
        """True when no partial record is buffered (a clean place for EOF)."""
        return (self._avail == 0 and self._frag_len < 0 and not self._frags
                and self._direct is None)

    def bytes_needed(self) -> int:
        """How many more bytes complete the current fragment (or header):
        a receive-size hint for the transport."""
        if self._frag_len < 0:
            return max(4 - self._avail, 1)
        if self._direct is not None:
            return self._frag_len - self._direct_pos
        return max(self._frag_len - self._avail, 1)

    def fragment_buffer(self, min_size: int,
                        alloc: Callable[[int], memoryview] | None = None) -> memoryview | None:
        """Where to receive the rest of the fragment being read, when at
        least `min_size` bytes of it are still to come (else None: feed()
        as usual).  The fragment's header must have been read: ask after
        next_record() returned None, as a transport does anyway.  Receive into the view, then call `fragment_filled(n)`;
        ask again until `bytes_needed()` is covered (the view shrinks).
        `alloc(n)`, when given, supplies the fragment's buffer: a writable
        view of exactly n bytes nobody else uses (a pool's, reused once
        every view of the record is gone) instead of a new zeroed
        bytearray."""
        if self._direct is None:
            if self._frag_len < 0 or self._frag_len - self._avail < min_size:
                return None
            buf = bytearray(self._frag_len) if alloc is None else alloc(self._frag_len)
            if len(buf) != self._frag_len:
                raise RuntimeError(f"fragment buffer of {len(buf)} bytes for a fragment "
                                   f"of {self._frag_len}")
            pos = 0
            while self._chunks:
                chunk = self._chunks.popleft()
                buf[pos:pos + len(chunk)] = chunk
                pos += len(chunk)
            self._avail = 0
            self._direct, self._direct_pos = buf, pos
        return memoryview(self._direct)[self._direct_pos:]

    def fragment_filled(self, n: int) -> None:
        """`n` more bytes of the fragment_buffer() were received."""
        if self._direct is None or not 0 <= n <= len(self._direct) - self._direct_pos:
            raise RuntimeError(f"fragment_filled({n}) without room for it")
        self._direct_pos += n

    def _take(self, n: int) -> memoryview:
        """Remove and return the first n buffered bytes (n <= _avail)."""
        self._avail -= n
        first = self._chunks[0]
        if len(first) > n:
            self._chunks[0] = first[n:]
            return first[:n]
        if len(first) == n:
            self._chunks.popleft()
            return first
        out = bytearray()
        while n:
            chunk = self._chunks[0]
            if len(chunk) <= n:
                out += chunk
                n -= len(chunk)
                self._chunks.popleft()
            else:
                out += chunk[:n]
                self._chunks[0] = chunk[n:]
                n = 0
        return memoryview(bytes(out))

    def next_record(self) -> memoryview | None:
        """The next complete record, or None until more data is fed."""
        while True:
            if self._frag_len < 0:
                if self._avail < 4:
                    return None
                header = U32.unpack(self._take(4))[0]
                length = header & MAX_FRAGMENT_SIZE
                if self._record_len + length > self.max_record_size:
                    raise RpcProtocolError(
                        f"record of at least {self._record_len + length} bytes exceeds "
                        f"the maximum of {self.max_record_size}")
                self._frag_len = length
                self._last = bool(header & LAST_FRAGMENT)
            if self._direct is not None:
                if self._direct_pos < self._frag_len:
                    return None
                # read-only, as views of received bytes are: hashable, and
                # nobody downstream can scribble on a WRITE's payload
                fragment = memoryview(self._direct).toreadonly()
                self._direct, self._direct_pos = None, 0
            elif self._avail < self._frag_len:
                return None
            else:
                fragment = self._take(self._frag_len) if self._frag_len else memoryview(b"")
            self._frag_len = -1
            if not self._last:
                self._frags.append(fragment)
                self._record_len += len(fragment)
                continue
            if self._frags:
                self._frags.append(fragment)
                fragment = memoryview(b"".join(self._frags))
                self._frags = []
                self._record_len = 0
            return fragment


def frame_record(parts: Sequence[Buffer], max_fragment: int = MAX_FRAGMENT_SIZE) -> list[Buffer]:
    """Buffers that send `parts` (one message) as one record.

    One fragment (GlusterFS's way) unless the message is longer than
    `max_fragment`; then it is cut into fragments of that size.
    """
    if not 0 < max_fragment <= MAX_FRAGMENT_SIZE:
        raise ValueError(f"max_fragment must be in 1..{MAX_FRAGMENT_SIZE}")
    total = sum(len(p) for p in parts)
    if total <= max_fragment:
        return [U32.pack(LAST_FRAGMENT | total), *parts]
    out: list[Buffer] = []
    sent = 0
    frag_left = 0
    for part in parts:
        view = memoryview(part).cast("B") if not isinstance(part, bytes) else memoryview(part)
        while len(view):
            if frag_left == 0:
                frag_left = min(max_fragment, total - sent)
                last = sent + frag_left == total
                out.append(U32.pack((LAST_FRAGMENT if last else 0) | frag_left))
            piece = view[:frag_left]
            out.append(piece)
            view = view[len(piece):]
            frag_left -= len(piece)
            sent += len(piece)
    return out


def record_bytes(parts: Sequence[Buffer], max_fragment: int = MAX_FRAGMENT_SIZE) -> bytes:
    """`frame_record` joined into one bytes object (copies; for tests and
    small messages)."""
    return b"".join(frame_record(parts, max_fragment))
