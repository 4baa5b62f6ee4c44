"""A small pcap reader and TCP stream reassembler for the codec tests.

The GlusterFS 10 captures in ../shared/glusterfs10-samples/captures are
classic libpcap files (Ethernet link type, loopback traffic).  This module
reads them without tshark, so the tests check our codecs against the bytes
and not against Wireshark's dissector:

* `read_pcap(path)` yields (timestamp, link-layer frame bytes).
* `tcp_streams(path)` returns one `TcpStream` per TCP connection, each holding
  the reassembled byte stream of both directions (client→server, i.e. from
  the side that sent the SYN, and server→client).  Segments are placed by
  sequence number, so retransmissions and reordering do no harm; a gap (a
  segment the capture missed) ends the usable part of that direction.
* `split_records(data)` cuts a reassembled direction into ONC RPC records
  by record marking (RFC 5531 §11), returning each record's full bytes
  including its fragment headers.

Only what the captures need is implemented: Ethernet II (and Linux cooked
capture v1), IPv4 and IPv6 without extension headers, TCP.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from pathlib import Path

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113


def read_pcap(path: str | Path):
    """Yield (timestamp, frame bytes, link type) for each captured packet."""
    data = Path(path).read_bytes()
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        endian = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        endian = ">"
    else:
        raise ValueError(f"{path}: not a classic pcap file")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(endian + "I", data, 20)[0]
    pos = 24
    record = struct.Struct(endian + "IIII")
    while pos + 16 <= len(data):
        sec, frac, caplen, _origlen = record.unpack_from(data, pos)
        pos += 16
        frame = data[pos:pos + caplen]
        pos += caplen
        yield sec + frac / (1e9 if nano else 1e6), frame, linktype


def _ip_payload(frame: bytes, linktype: int):
    """Return (src, dst, protocol, ip payload) or None for non-IP frames."""
    if linktype == LINKTYPE_ETHERNET:
        ethertype = struct.unpack_from(">H", frame, 12)[0]
        offset = 14
        while ethertype == 0x8100:  # VLAN tag
            ethertype = struct.unpack_from(">H", frame, offset + 2)[0]
            offset += 4
    elif linktype == LINKTYPE_LINUX_SLL:
        ethertype = struct.unpack_from(">H", frame, 14)[0]
        offset = 16
    else:
        raise ValueError(f"unsupported link type {linktype}")
    if ethertype == 0x0800:
        ihl = (frame[offset] & 0x0F) * 4
        total = struct.unpack_from(">H", frame, offset + 2)[0]
        proto = frame[offset + 9]
        src = frame[offset + 12:offset + 16]
        dst = frame[offset + 16:offset + 20]
        return src, dst, proto, frame[offset + ihl:offset + total]
    if ethertype == 0x86DD:
        plen = struct.unpack_from(">H", frame, offset + 4)[0]
        proto = frame[offset + 6]
        src = frame[offset + 8:offset + 24]
        dst = frame[offset + 24:offset + 40]
        return src, dst, proto, frame[offset + 40:offset + 40 + plen]
    return None


@dataclass
class _Direction:
    isn: int | None = None          # sequence number of the first data byte
    segments: dict[int, bytes] = field(default_factory=dict)

    def add(self, seq: int, payload: bytes) -> None:
        if self.isn is None:
            self.isn = seq
        rel = (seq - self.isn) & 0xFFFFFFFF
        if rel > 0x7FFFFFFF:        # before the first byte we know of
            return
        if len(payload) > len(self.segments.get(rel, b"")):
            self.segments[rel] = payload

    def assemble(self) -> tuple[bytes, bool]:
        """The contiguous bytes from the start, and whether a gap cut them."""
        out = bytearray()
        for rel in sorted(self.segments):
            seg = self.segments[rel]
            if rel > len(out):
                return bytes(out), True
            out += seg[len(out) - rel:]
        return bytes(out), False


@dataclass
class TcpStream:
    """One TCP connection: `client` sent the first SYN (if seen)."""

    index: int
    client: tuple[bytes, int]
    server: tuple[bytes, int]
    saw_syn: bool
    to_server: bytes = b""
    to_client: bytes = b""
    gap: bool = False

    @property
    def server_port(self) -> int:
        return self.server[1]


def tcp_streams(path: str | Path) -> list[TcpStream]:
    """Reassemble every TCP connection in a pcap file, in order of first packet."""
    conns: list[dict] = []
    current: dict[frozenset, int] = {}  # endpoint pair -> index in conns
    for _ts, frame, linktype in read_pcap(path):
        ip = _ip_payload(frame, linktype)
        if ip is None or ip[2] != 6:
            continue
        src, dst, _proto, tcp = ip
        sport, dport, seq, _ack, offflags = struct.unpack_from(">HHIIH", tcp, 0)
        doff = (offflags >> 12) * 4
        flags = offflags & 0x3F
        syn, ack = bool(flags & 0x02), bool(flags & 0x10)
        a, b = (src, sport), (dst, dport)
        pair = frozenset((a, b))
        idx = current.get(pair)
        if idx is None or (syn and not ack and conns[idx]["closed"]):
            # A new connection (or the 4-tuple reused after a close).  The
            # client is whoever sent the SYN; without one, guess the sender.
            client = b if (syn and ack) else a
            conns.append({"dirs": {a: _Direction(), b: _Direction()},
                          "client": client, "saw_syn": syn, "closed": False})
            idx = current[pair] = len(conns) - 1
        conn = conns[idx]
        direction = conn["dirs"][a]
        if syn:
            direction.isn = (seq + 1) & 0xFFFFFFFF
            continue
        if flags & 0x05:  # FIN or RST
            conn["closed"] = True
        payload = tcp[doff:]
        if payload:
            direction.add(seq, payload)
    streams = []
    for i, conn in enumerate(conns):
        client = conn["client"]
        server = next(ep for ep in conn["dirs"] if ep != client)
        up, gap_up = conn["dirs"][client].assemble()
        down, gap_down = conn["dirs"][server].assemble()
        streams.append(TcpStream(i, client, server, conn["saw_syn"], up, down,
                                 gap_up or gap_down))
    return streams


def split_records(data: bytes) -> tuple[list[bytes], bytes]:
    """Cut a byte stream into whole RPC records (fragment headers included).

    Returns the records and the incomplete tail (empty for a clean stream).
    """
    records = []
    pos = 0
    while True:
        start = pos
        while True:
            if pos + 4 > len(data):
                return records, data[start:]
            header = struct.unpack_from(">I", data, pos)[0]
            pos += 4 + (header & 0x7FFFFFFF)
            if pos > len(data):
                return records, data[start:]
            if header & 0x80000000:
                break
        records.append(data[start:pos])


CAPTURES = Path(__file__).resolve().parents[2] / "shared" / "glusterfs10-samples" / "captures"


def capture_path(name: str) -> Path:
    """A capture from the shared GlusterFS 10 samples (e.g. "qemu-img.pcap")."""
    return CAPTURES / name


def rpc_records(path: str | Path):
    """Every complete RPC record of every TCP stream in a capture, as
    (stream, direction, record bytes with fragment headers); direction is
    "to_server" or "to_client".  A stream direction that does not split
    into whole records raises ValueError (the captures have none)."""
    for stream in tcp_streams(path):
        for direction in ("to_server", "to_client"):
            records, tail = split_records(getattr(stream, direction))
            if tail:
                raise ValueError(f"{path}: stream {stream.index} {direction} ends "
                                 f"inside a record ({len(tail)} bytes)")
            for record in records:
                yield stream, direction, record
