"""XDR (RFC 4506) primitives: a bounded `Unpacker` and an appending `Packer`.

Everything GlusterFS puts on the wire is XDR: 4-byte big-endian units,
64-bit "hyper" values, variable opaques and strings carried as a length
followed by the bytes padded with zeros to a multiple of four.

Why hand-written `struct` code and not xdrlib3 or construct: decoding one
`gfx_iattx` (the 4.x iatt, present in almost every fop reply) measured, on
the development machine, 0.29 µs with one precompiled `struct.Struct`,
13.3 µs with xdrlib3's Unpacker and 8.7 µs with a *compiled* construct
Struct.  The READ/WRITE path decodes a header, an iatt and a dict per call,
so the 30-45x difference decides it.  Structures decode with one
`Struct.unpack_from` over a fixed run of fields wherever the layout allows.

Bounds: every length read from the wire is compared with the bytes that
remain *before* anything is sliced or allocated, so a length of 2**32-1 in
a 40-byte message costs nothing but an `RpcProtocolError`.  Padding bytes
must be zero (every XDR encoder, GlusterFS's included, writes zeros); this
strictness is what makes decode-then-encode reproduce the input exactly.

`Unpacker` works on `bytes`, `bytearray` or `memoryview` without copying the
underlying buffer; `Unpacker.rest()` hands out the undecoded tail as a
memoryview (the READ/WRITE payload that GlusterFS carries after the XDR).
"""

from __future__ import annotations

import struct
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from .errors import RpcProtocolError

if TYPE_CHECKING:
    import builtins

    from _typeshed import ReadableBuffer, WriteableBuffer

_T = TypeVar("_T")
_T_co = TypeVar("_T_co", covariant=True)


class Fmt(Protocol[_T_co]):
    """A `struct.Struct` as the type checker sees it, with the tuple its
    unpack methods return (typeshed types them `tuple[Any, ...]`).  Only an
    annotation: the objects are plain `struct.Struct`s."""

    @property
    def size(self) -> int: ...
    @property
    def format(self) -> str: ...
    def unpack_from(self, buffer: ReadableBuffer, offset: int = 0) -> _T_co: ...
    def unpack(self, buffer: ReadableBuffer) -> _T_co: ...
    def pack(self, *v: Any) -> bytes: ...
    def pack_into(self, buffer: WriteableBuffer, offset: int, *v: Any) -> None: ...


U32: Fmt[tuple[int]] = struct.Struct(">I")
I32: Fmt[tuple[int]] = struct.Struct(">i")
U64: Fmt[tuple[int]] = struct.Struct(">Q")
I64: Fmt[tuple[int]] = struct.Struct(">q")
F64: Fmt[tuple[float]] = struct.Struct(">d")
U32X2: Fmt[tuple[int, int]] = struct.Struct(">II")
U32X3: Fmt[tuple[int, int, int]] = struct.Struct(">III")

_PAD = (b"", b"\0\0\0", b"\0\0", b"\0")

U32_MAX = 0xFFFFFFFF
U64_MAX = 0xFFFFFFFFFFFFFFFF


def pad_len(n: int) -> int:
    """Bytes of zero padding that follow an n-byte opaque."""
    return -n & 3


class Unpacker:
    """Reads XDR items from `data[pos:end]`, raising `RpcProtocolError` on
    anything short or malformed.  `pos` is public: structure decoders that
    use one precompiled `struct.Struct` for a run of fixed fields read at
    `pos` (after `need()`) and advance it themselves."""

    __slots__ = ("data", "pos", "end")

    def __init__(self, data: bytes | bytearray | memoryview, pos: int = 0,
                 end: int | None = None) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end

    # -- bookkeeping --------------------------------------------------------

    def remaining(self) -> int:
        return self.end - self.pos

    def need(self, n: int) -> int:
        """Check that n more bytes exist; return the current position."""
        p = self.pos
        if n > self.end - p:
            raise RpcProtocolError(
                f"truncated XDR: need {n} bytes at offset {p}, have {self.end - p}")
        return p

    def done(self) -> None:
        """Require that everything was consumed (no trailing garbage)."""
        if self.pos != self.end:
            raise RpcProtocolError(
                f"{self.end - self.pos} unexpected trailing bytes at offset {self.pos}")

    def rest(self) -> memoryview:
        """The undecoded tail, without copying; consumes it."""
        view = memoryview(self.data)[self.pos:self.end]
        self.pos = self.end
        return view

    # -- fixed-size items ---------------------------------------------------

    def unpack(self, st: Fmt[_T]) -> _T:
        p = self.pos
        if st.size > self.end - p:
            raise RpcProtocolError(
                f"truncated XDR: need {st.size} bytes at offset {p}, have {self.end - p}")
        self.pos = p + st.size
        return st.unpack_from(self.data, p)

    def u32(self) -> int:
        p = self.pos
        if self.end - p < 4:
            raise RpcProtocolError(f"truncated XDR: no room for an int at offset {p}")
        self.pos = p + 4
        return U32.unpack_from(self.data, p)[0]

    def i32(self) -> int:
        p = self.pos
        if self.end - p < 4:
            raise RpcProtocolError(f"truncated XDR: no room for an int at offset {p}")
        self.pos = p + 4
        return I32.unpack_from(self.data, p)[0]

    def u64(self) -> int:
        p = self.pos
        if self.end - p < 8:
            raise RpcProtocolError(f"truncated XDR: no room for a hyper at offset {p}")
        self.pos = p + 8
        return U64.unpack_from(self.data, p)[0]

    def i64(self) -> int:
        p = self.pos
        if self.end - p < 8:
            raise RpcProtocolError(f"truncated XDR: no room for a hyper at offset {p}")
        self.pos = p + 8
        return I64.unpack_from(self.data, p)[0]

    def f64(self) -> float:
        p = self.pos
        if self.end - p < 8:
            raise RpcProtocolError(f"truncated XDR: no room for a double at offset {p}")
        self.pos = p + 8
        return F64.unpack_from(self.data, p)[0]

    def u32_array(self, n: int) -> tuple[int, ...]:
        """n unsigned ints (the body of an `unsigned int x<>` array whose
        length was already read)."""
        p = self.pos
        if n * 4 > self.end - p:
            raise RpcProtocolError(f"truncated XDR: {n} ints at offset {p}")
        self.pos = p + 4 * n
        return struct.unpack_from(f">{n}I", self.data, p)

    def bool(self) -> bool:
        v = self.u32()
        if v > 1:
            raise RpcProtocolError(f"XDR bool must be 0 or 1, not {v}")
        return v == 1

    # -- opaques and strings -----------------------------------------------

    def fixed(self, n: int) -> bytes:
        """Fixed-length opaque[n] (padded to four bytes)."""
        p = self.pos
        padded = n + (-n & 3)
        if padded > self.end - p:
            raise RpcProtocolError(
                f"truncated XDR: opaque[{n}] at offset {p}, have {self.end - p}")
        data = self.data
        if padded != n and any(data[p + n:p + padded]):
            raise RpcProtocolError(f"non-zero XDR padding at offset {p + n}")
        self.pos = p + padded
        return bytes(data[p:p + n])

    def opaque(self, maxlen: int | None = None) -> bytes:
        """Variable-length opaque<maxlen>: a u32 length, the bytes, padding."""
        n = self.u32()
        if maxlen is not None and n > maxlen:
            raise RpcProtocolError(f"opaque of {n} bytes exceeds its limit of {maxlen}")
        return self.fixed(n)

    def opaque_view(self, maxlen: int | None = None) -> memoryview:
        """Like `opaque`, but a memoryview into the buffer (no copy)."""
        n = self.u32()
        if maxlen is not None and n > maxlen:
            raise RpcProtocolError(f"opaque of {n} bytes exceeds its limit of {maxlen}")
        p = self.pos
        padded = n + (-n & 3)
        if padded > self.end - p:
            raise RpcProtocolError(
                f"truncated XDR: opaque<{n}> at offset {p}, have {self.end - p}")
        if padded != n and any(self.data[p + n:p + padded]):
            raise RpcProtocolError(f"non-zero XDR padding at offset {p + n}")
        self.pos = p + padded
        return memoryview(self.data)[p:p + n]

    def string(self, maxlen: int | None = None) -> str:
        """string<maxlen> as text.  Bytes that are not UTF-8 survive as
        surrogate escapes, so `Packer.string` gives back the same bytes."""
        return self.opaque(maxlen).decode("utf-8", "surrogateescape")

    def optional(self) -> builtins.bool:
        """The discriminant of an XDR optional-data pointer (`*next`)."""
        return self.bool()


class Packer:
    """Appends XDR items to a bytearray; `bytes()`/`getvalue()` ends it.

    Values out of range for their XDR type raise `ValueError`: encoding takes
    our own objects, so a bad value is a bug on this side, not the peer's.
    """

    __slots__ = ("buf",)

    def __init__(self, buf: bytearray | None = None) -> None:
        self.buf = bytearray() if buf is None else buf

    def getvalue(self) -> bytes:
        return bytes(self.buf)

    def __len__(self) -> int:
        return len(self.buf)

    def pack(self, st: Fmt[Any], *values: Any) -> None:
        try:
            self.buf += st.pack(*values)
        except struct.error as e:
            raise ValueError(f"cannot XDR-encode {values!r}: {e}") from None

    def u32(self, v: int) -> None:
        self.pack(U32, v)

    def i32(self, v: int) -> None:
        self.pack(I32, v)

    def u64(self, v: int) -> None:
        self.pack(U64, v)

    def i64(self, v: int) -> None:
        self.pack(I64, v)

    def f64(self, v: float) -> None:
        self.pack(F64, v)

    def bool(self, v: bool) -> None:
        self.buf += U32.pack(1 if v else 0)

    def fixed(self, data: bytes, n: int) -> None:
        if len(data) != n:
            raise ValueError(f"fixed opaque[{n}] given {len(data)} bytes")
        self.buf += data
        self.buf += _PAD[n & 3]

    def opaque(self, data: bytes | bytearray | memoryview) -> None:
        n = len(data)
        if n > U32_MAX:
            raise ValueError("opaque longer than 2**32-1 bytes")
        self.buf += U32.pack(n)
        self.buf += data
        self.buf += _PAD[n & 3]

    def string(self, s: str | bytes) -> None:
        if isinstance(s, str):
            s = s.encode("utf-8", "surrogateescape")
        self.opaque(s)

    def optional(self, present: builtins.bool) -> None:
        self.buf += U32.pack(1 if present else 0)
