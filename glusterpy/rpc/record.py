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

A transport that receives into buffers of a pool (the brick: its WRITE
calls) asks `arena_view(alloc)` instead, every time: the decoder keeps one
large buffer, an *arena*, and hands out where the next bytes go in it; the
records received there come out as read-only views of it, one after the
other, none copied.  Only a record cut by the arena's end is moved to the
next arena (what of it arrived so far: `copied` counts those bytes).  The
view handed out stops at the end of a large fragment (one of at least
`LARGE_FRAGMENT` bytes), so the record after it starts a receive of its
own, and that record is placed so that its *end* falls on a page boundary
when it is as long as the last large one (a WRITE call's payload is its
record's tail: a 64 or 128 KiB payload is then page-aligned, and an
O_DIRECT write can hand it to the disk as it is, bench/notes/qemu.md
(14)).  A large fragment whose placement missed (the first one, another
size) is moved to a page-aligned end while little of it has arrived
(`REALIGN_MAX`).  The arena is left for a new one once all of it is
used; the pool reuses it when every record view of it is gone.

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

#: the arena's size: a pool's largest pooled buffer (aligned.MAX_POOLED),
#: eight 128 KiB WRITEs
ARENA_SIZE = 1 << 20
#: a fragment this long is received on its own and placed page-aligned
LARGE_FRAGMENT = 32 * 1024
#: room below which the arena is left for a new one at a record boundary
ARENA_MIN_ROOM = 16 * 1024
#: bytes of a large fragment still moved to align its end
REALIGN_MAX = 8 * 1024
PAGE = 4096


class RecordDecoder:
    """Reassembles records from a byte stream (sans-IO)."""

    __slots__ = ("max_record_size", "_chunks", "_avail", "_frags", "_record_len",
                 "_frag_len", "_last", "_direct", "_direct_pos", "_arena", "_ro",
                 "_start", "_end", "_frag_end", "_hint", "copied", "arena_size")

    def __init__(self, max_record_size: int = DEFAULT_MAX_RECORD_SIZE,
                 arena_size: int = ARENA_SIZE) -> None:
        self.max_record_size = max_record_size
        #: what arena_view() asks its alloc for (more for a larger record)
        self.arena_size = arena_size
        self._chunks: deque[memoryview] = deque()  # views of immutable bytes
        self._avail = 0          # bytes in _chunks
        self._frags: list[memoryview] = []  # finished fragments of this record
        self._record_len = 0     # bytes in _frags
        self._frag_len = -1      # length of the fragment being read; -1: header next
        self._last = False
        self._direct: bytearray | memoryview | None = None  # the fragment_buffer() being filled
        self._direct_pos = 0                    # bytes of it filled
        # arena mode (arena_view): the arena, its read-only twin the
        # records are cut from, the first byte not yet cut, the first not
        # yet received, the end of the fragment being read (-1: unknown)
        self._arena: memoryview | None = None
        self._ro: memoryview | None = None
        self._start = self._end = 0
        self._frag_end = -1
        #: the length of the last large fragment: where the next record goes
        self._hint = 0
        #: bytes received into an arena and then moved (to the next arena, or
        #: to align a large fragment's end): a count for tests and benches
        self.copied = 0

    def feed(self, data: Buffer) -> None:
        """Add received bytes.  A bytearray or memoryview is copied (the
        caller may reuse its buffer); bytes are kept by reference."""
        if not data:
            return
        if self._direct is not None:
            raise RuntimeError("feed() while a fragment_buffer() is being filled")
        if self._end > self._start:
            raise RuntimeError("feed() while an arena_view() holds a partial record")
        if not isinstance(data, bytes):
            data = bytes(data)
        self._chunks.append(memoryview(data))
        self._avail += len(data)

    @property
    def buffered(self) -> int:
        """Bytes received but not yet returned as part of a record."""
        return self._avail + self._record_len + self._direct_pos + self._end - self._start

    def at_record_boundary(self) -> bool:
        """True when no partial record is buffered (a clean place for EOF)."""
        return (self._avail == 0 and self._frag_len < 0 and not self._frags
                and self._direct is None and self._end == self._start)

    def bytes_needed(self) -> int:
        """How many more bytes complete the current fragment (or header):
        a receive-size hint for the transport."""
        if self._frag_len < 0:
            return max(4 - self._avail - (self._end - self._start), 1)
        if self._frag_end >= 0:
            return max(self._frag_end - self._end, 1)
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

    def arena_view(self, alloc: Callable[[int], memoryview], most: int = 0) -> memoryview:
        """Where to receive next in arena mode (module docstring): a
        writable view into the arena, up to the end of the large fragment
        being read or else of the arena, but no more than `most` bytes
        (when not 0) or one record as long as the last large one, at a
        record boundary where one is expected; receive into it, then
        call `arena_filled(n)` and take the records out.  (`most` is what
        a transport reads ahead of the calls it has served: a receive adds
        at most that, or one large fragment, to its backlog.)  `alloc(n)` gives a
        new arena: a writable view of exactly n bytes nobody else uses,
        page-aligned for the placement to mean anything (a pool's)."""
        if self._avail or self._direct is not None:
            raise RuntimeError("arena_view() while bytes were fed or a fragment_buffer() is filled")
        arena = self._arena
        start, end, frag_end = self._start, self._end, self._frag_end
        if frag_end >= 0:
            # the fragment's header is read: all of it must fit, and a
            # large one should end on a page boundary
            length = frag_end - start               # what is left of it, received or not
            large = self._frag_len >= LARGE_FRAGMENT
            if arena is None or frag_end > len(arena) or (
                    large and frag_end % PAGE and end - start <= REALIGN_MAX):
                target = (-length) % PAGE if large else 0
                if arena is not None and large:
                    # later in this arena when it has room
                    later = -(-frag_end // PAGE) * PAGE - length
                    if later + length <= len(arena):
                        self._move(arena, later)
                        return self._view(most)
                self._move(alloc(max(self.arena_size, target + length)), target)
            return self._view(most)
        if start == end and self._hint and self._hint + 4 + PAGE <= self.arena_size:
            # a record boundary: place a record as long as the last large
            # one so that it ends page-aligned
            size = 4 + self._hint
            target = -(-(end + size) // PAGE) * PAGE - size
            if arena is None or target + size > len(arena):
                self._move(alloc(self.arena_size), (-size) % PAGE)
            else:
                self._start = self._end = target
            # and receive just that record: when it is one, it comes whole
            # in one receive if the socket has it, and the next one starts
            # a receive of its own, to be placed the same way
            return self._view(size)
        elif arena is None or len(arena) - end < ARENA_MIN_ROOM:
            self._move(alloc(self.arena_size), 0)
        return self._view(most)

    def _move(self, arena: memoryview, at: int) -> None:
        """Make `arena` (maybe the current one) hold what is received of the
        unit being read from offset `at` on."""
        old = self._arena
        n = self._end - self._start
        if n:
            assert old is not None
            if arena is old and at < self._end:
                part = bytes(old[self._start:self._end])   # overlapping: through a copy
                arena[at:at + n] = part
            else:
                arena[at:at + n] = old[self._start:self._end]
            self.copied += n
        if arena is not old:
            self._arena, self._ro = arena, arena.toreadonly()
        if self._frag_end >= 0:
            self._frag_end += at - self._start
        self._start, self._end = at, at + n

    def _view(self, most: int) -> memoryview:
        arena = self._arena
        assert arena is not None
        end = self._end
        if self._frag_len >= LARGE_FRAGMENT and self._frag_end > end:
            return arena[end:self._frag_end]
        stop = len(arena)
        if most and end + most < stop:
            stop = end + most
        return arena[end:stop]

    def arena_filled(self, n: int) -> None:
        """`n` more bytes were received into the arena_view()."""
        arena = self._arena
        if arena is None or not 0 <= n <= len(arena) - self._end:
            raise RuntimeError(f"arena_filled({n}) without room for it")
        self._end += n

    def drop_arena(self) -> bool:
        """Let go of the arena when nothing of a record is in it (a transport
        about to wait for the peer: its pool may lend it to another
        connection meanwhile); whether it was."""
        if self._arena is None or self._end != self._start:
            return False
        if self._frag_end >= 0:
            # a fragment's mark was read and none of its bytes yet: its end
            # is an offset into this arena, and becomes one from the start
            # of the next (_move adds where that places it); kept as it
            # was, the next arena waited for this one's offset in extra
            # bytes and swallowed the calls after it as the fragment's
            self._frag_end -= self._start
        self._arena = self._ro = None
        self._start = self._end = 0
        return True

    def _next_fragment_in_arena(self) -> memoryview | None:
        """next_record's cut in arena mode: the next complete fragment."""
        ro = self._ro
        assert ro is not None
        if self._frag_len < 0:
            start = self._start
            if self._end - start < 4:
                return None
            length = self._fragment_header(U32.unpack(ro[start:start + 4])[0])
            self._start = start + 4
            self._frag_end = start + 4 + length
        frag_end = self._frag_end
        if self._end < frag_end:
            return None
        fragment = ro[self._start:frag_end]
        if self._frag_len >= LARGE_FRAGMENT:
            self._hint = self._frag_len
        self._start = frag_end
        self._frag_end = -1
        self._frag_len = -1
        return fragment

    def _fragment_header(self, header: int) -> int:
        """A fragment's record mark read: its length (returned) and whether
        it ends the record, refused when the record would outgrow the
        maximum."""
        length = header & MAX_FRAGMENT_SIZE
        if self._record_len + length > self.max_record_size:
            raise RpcProtocolError(
                f"record of at least {self._record_len + length} bytes exceeds "
                f"the maximum of {self.max_record_size}")
        self._frag_len = length
        self._last = bool(header & LAST_FRAGMENT)
        return length

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
            if self._ro is not None:
                arena_fragment = self._next_fragment_in_arena()
                if arena_fragment is None:
                    return None
                if not self._last or self._frags:
                    # a record of several fragments: joined, as in chunk mode
                    self._frags.append(arena_fragment)
                    self._record_len += len(arena_fragment)
                    if not self._last:
                        continue
                    record = memoryview(b"".join(self._frags))
                    self._frags = []
                    self._record_len = 0
                    return record
                return arena_fragment
            if self._frag_len < 0:
                if self._avail < 4:
                    return None
                self._fragment_header(U32.unpack(self._take(4))[0])
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
