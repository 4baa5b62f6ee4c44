"""A small blocking NBD client for the tests that need to say what real
clients never say (malformed options, requests past the end, oversized
writes, a reader that stops reading) or to count acknowledgements exactly
(the kill-the-server test).  It speaks the protocol from its document
(NetworkBlockDevice/nbd doc/proto.md), independently of glusterpy/nbd -
the numbers are written out here again on purpose, so a wrong constant in
the server is not hidden by the same constant in the client.
"""

from __future__ import annotations

import socket
import struct

NBDMAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
OPT_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_MAGIC = 0x67446698
STRUCTURED_MAGIC = 0x668E33EF

OPT_EXPORT_NAME, OPT_ABORT, OPT_LIST, OPT_STARTTLS, OPT_INFO, OPT_GO = 1, 2, 3, 5, 6, 7
OPT_STRUCTURED_REPLY, OPT_LIST_META_CONTEXT, OPT_SET_META_CONTEXT = 8, 9, 10
REP_ACK, REP_SERVER, REP_INFO, REP_META_CONTEXT = 1, 2, 3, 4
REP_ERR_UNSUP, REP_ERR_POLICY, REP_ERR_INVALID = 2**31 + 1, 2**31 + 2, 2**31 + 3
REP_ERR_PLATFORM, REP_ERR_UNKNOWN, REP_ERR_TOO_BIG = 2**31 + 4, 2**31 + 6, 2**31 + 9
CMD_READ, CMD_WRITE, CMD_DISC, CMD_FLUSH, CMD_TRIM = 0, 1, 2, 3, 4
CMD_WRITE_ZEROES, CMD_BLOCK_STATUS = 6, 7
FLAG_FUA, FLAG_NO_HOLE, FLAG_REQ_ONE = 1, 2, 8
EPERM, EIO, EINVAL, ENOSPC, ENOTSUP = 1, 5, 22, 28, 95


class Closed(Exception):
    """The server closed the connection."""


class Client:
    def __init__(self, host: str, port: int, timeout: float = 20.0, source: str | None = None):
        self.sock = socket.create_connection((host, port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        self.buf = b""
        self.handshake_flags = None
        self.structured = False
        self.size = None
        self.tflags = None
        self.cookie = 0

    # -- raw bytes ------------------------------------------------------------

    def recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(max(65536, n - len(self.buf)))
            if not chunk:
                raise Closed(f"closed with {len(self.buf)} of {n} bytes read")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def closed(self, timeout: float = 10.0) -> bool:
        """True when the server has closed the connection (EOF or reset)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except socket.timeout:
            return False

    def close(self) -> None:
        self.sock.close()

    # -- handshake ------------------------------------------------------------

    def greet(self, client_flags: int = 3) -> None:
        magic, opt, flags = struct.unpack(">QQH", self.recv(18))
        assert (magic, opt) == (NBDMAGIC, IHAVEOPT), (hex(magic), hex(opt))
        self.handshake_flags = flags
        self.send(struct.pack(">I", client_flags))

    def option(self, opt: int, data: bytes = b"") -> None:
        self.send(struct.pack(">QII", IHAVEOPT, opt, len(data)) + data)

    def reply(self) -> tuple[int, int, bytes]:
        magic, opt, rtype, length = struct.unpack(">QIII", self.recv(20))
        assert magic == OPT_REPLY_MAGIC, hex(magic)
        return opt, rtype, self.recv(length)

    def replies(self) -> list[tuple[int, bytes]]:
        """Option replies up to the final ACK or error."""
        out = []
        while True:
            _, rtype, data = self.reply()
            out.append((rtype, data))
            if rtype == REP_ACK or rtype >= 2**31:
                return out

    def structured_reply(self) -> int:
        self.option(OPT_STRUCTURED_REPLY)
        rtype = self.replies()[-1][0]
        self.structured = rtype == REP_ACK
        return rtype

    def set_meta_context(self, export: str, queries=("base:allocation",)) -> list:
        name = export.encode()
        body = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
        for q in queries:
            body += struct.pack(">I", len(q.encode())) + q.encode()
        self.option(OPT_SET_META_CONTEXT, body)
        return self.replies()

    def go(self, export: str, infos=(), opt: int = OPT_GO) -> list[tuple[int, bytes]]:
        name = export.encode()
        self.option(opt, struct.pack(">I", len(name)) + name
                    + struct.pack(">H", len(infos)) + b"".join(struct.pack(">H", i)
                                                             for i in infos))
        out = self.replies()
        for rtype, data in out:
            if rtype == REP_INFO and struct.unpack_from(">H", data)[0] == 0:
                self.size, self.tflags = struct.unpack_from(">QH", data, 2)
        return out

    def list(self) -> list[str]:
        self.option(OPT_LIST)
        names = []
        for rtype, data in self.replies():
            if rtype == REP_SERVER:
                (n,) = struct.unpack_from(">I", data)
                names.append(data[4:4 + n].decode())
        return names

    @classmethod
    def connect(cls, host: str, port: int, export: str, *, structured: bool = True,
                meta: bool = False, source: str | None = None) -> "Client":
        c = cls(host, port, source=source)
        c.greet()
        if structured:
            c.structured_reply()
        if meta:
            c.set_meta_context(export)
        last = c.go(export)[-1]
        if last[0] != REP_ACK:
            c.close()
            raise AssertionError(f"GO {export}: {last[0]:#x} {last[1]!r}")
        return c

    # -- transmission ---------------------------------------------------------

    def request(self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"",
                flags: int = 0) -> int:
        self.cookie += 1
        self.send(struct.pack(">IHHQQI", REQUEST_MAGIC, flags, cmd, self.cookie, offset,
                              length) + data)
        return self.cookie

    def response(self) -> tuple[int, int, list[tuple[int, bytes]]]:
        """(cookie, error, chunks) of one reply; a simple reply's read data is
        not taken here (see read)."""
        (magic,) = struct.unpack(">I", self.recv(4))
        if magic == SIMPLE_MAGIC:
            error, cookie = struct.unpack(">IQ", self.recv(12))
            return cookie, error, []
        assert magic == STRUCTURED_MAGIC, hex(magic)
        chunks, error = [], 0
        while True:
            flags, ctype, cookie, length = struct.unpack(">HHQI", self.recv(16))
            payload = self.recv(length)
            chunks.append((ctype, payload))
            if ctype >= 2**15:
                error = struct.unpack_from(">I", payload)[0]
            if flags & 1:
                return cookie, error, chunks
            (magic,) = struct.unpack(">I", self.recv(4))
            assert magic == STRUCTURED_MAGIC

    def read(self, offset: int, length: int) -> tuple[int, bytes]:
        self.request(CMD_READ, offset, length)
        if not self.structured:
            cookie, error, _ = self.response()
            return error, b"" if error else self.recv(length)
        _, error, chunks = self.response()
        data = bytearray(length)
        for ctype, payload in chunks:
            if ctype == 1:
                (off,) = struct.unpack_from(">Q", payload)
                data[off - offset:off - offset + len(payload) - 8] = payload[8:]
        return error, bytes(data)

    def command(self, cmd: int, offset: int = 0, length: int = 0, data: bytes = b"",
                flags: int = 0) -> int:
        self.request(cmd, offset, length, data, flags)
        return self.response()[1]

    def write(self, offset: int, data: bytes, flags: int = 0) -> int:
        return self.command(CMD_WRITE, offset, len(data), data, flags)

    def block_status(self, offset: int, length: int, flags: int = 0):
        self.request(CMD_BLOCK_STATUS, offset, length, flags=flags)
        _, error, chunks = self.response()
        extents = []
        for ctype, payload in chunks:
            if ctype == 5:
                for i in range(4, len(payload), 8):
                    extents.append(struct.unpack_from(">II", payload, i))
        return error, extents

    def disconnect(self) -> None:
        try:
            self.request(CMD_DISC)
        finally:
            self.close()
