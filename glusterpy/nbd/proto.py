"""The Network Block Device protocol's numbers and wire layouts.

Values are the ones the protocol document (NetworkBlockDevice/nbd,
doc/proto.md) assigns; everything is big-endian.  Only what the server
uses is here: the fixed newstyle handshake, option haggling with
NBD_OPT_GO/INFO/LIST/STRUCTURED_REPLY/{LIST,SET}_META_CONTEXT, and the
transmission phase with simple and structured replies.
"""

from __future__ import annotations

import errno
import struct

NBDMAGIC = 0x4E42444D41474943          # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054          # "IHAVEOPT"
OPTION_REPLY_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

# handshake flags (server) and client flags
FLAG_FIXED_NEWSTYLE = 1 << 0
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0
FLAG_C_NO_ZEROES = 1 << 1

# transmission flags
FLAG_HAS_FLAGS = 1 << 0
FLAG_READ_ONLY = 1 << 1
FLAG_SEND_FLUSH = 1 << 2
FLAG_SEND_FUA = 1 << 3
FLAG_ROTATIONAL = 1 << 4
FLAG_SEND_TRIM = 1 << 5
FLAG_SEND_WRITE_ZEROES = 1 << 6
FLAG_SEND_DF = 1 << 7
FLAG_CAN_MULTI_CONN = 1 << 8

# options
OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

# option replies
REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
_ERR = 1 << 31
REP_ERR_UNSUP = _ERR + 1
REP_ERR_POLICY = _ERR + 2
REP_ERR_INVALID = _ERR + 3
REP_ERR_PLATFORM = _ERR + 4
REP_ERR_TLS_REQD = _ERR + 5
REP_ERR_UNKNOWN = _ERR + 6
REP_ERR_SHUTDOWN = _ERR + 7
REP_ERR_BLOCK_SIZE_REQD = _ERR + 8
REP_ERR_TOO_BIG = _ERR + 9

# NBD_REP_INFO types
INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# commands and their flags
CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7
CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

# structured reply chunks
REPLY_FLAG_DONE = 1 << 0
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = (1 << 15) + 1
REPLY_TYPE_ERROR_OFFSET = (1 << 15) + 2

# base:allocation
STATE_HOLE = 1 << 0
STATE_ZERO = 1 << 1
BASE_ALLOCATION = "base:allocation"

# errors on the wire
EPERM, EIO, ENOMEM, EINVAL, ENOSPC, EOVERFLOW, ENOTSUP, ESHUTDOWN = 1, 5, 12, 22, 28, 75, 95, 108

HANDSHAKE = struct.Struct(">QQH")        # NBDMAGIC, IHAVEOPT, handshake flags
OPTION_HEADER = struct.Struct(">QII")    # IHAVEOPT, option, length
OPTION_REPLY = struct.Struct(">QIII")    # magic, option, reply type, length
REQUEST = struct.Struct(">IHHQQI")       # magic, flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")     # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")          # magic, flags, type, cookie, length

NAMES = {CMD_READ: "READ", CMD_WRITE: "WRITE", CMD_DISC: "DISC", CMD_FLUSH: "FLUSH",
         CMD_TRIM: "TRIM", CMD_CACHE: "CACHE", CMD_WRITE_ZEROES: "WRITE_ZEROES",
         CMD_BLOCK_STATUS: "BLOCK_STATUS"}

#: the protocol's error values are Linux's numbers, and only these eight
_WIRE_ERRORS = {errno.EPERM: EPERM, errno.EROFS: EPERM, errno.EACCES: EPERM,
                errno.EIO: EIO, errno.ENOMEM: ENOMEM, errno.EINVAL: EINVAL,
                errno.ENOSPC: ENOSPC, errno.EDQUOT: ENOSPC, errno.EFBIG: ENOSPC,
                errno.EOVERFLOW: EOVERFLOW, errno.ENOTSUP: ENOTSUP,
                errno.ESHUTDOWN: ESHUTDOWN}


def wire_errno(e: int | None) -> int:
    """An errno as the protocol may carry it: unknown ones become EIO."""
    return _WIRE_ERRORS.get(e or errno.EIO, EIO)


def option_reply(option: int, reply: int, data: bytes = b"") -> bytes:
    return OPTION_REPLY.pack(OPTION_REPLY_MAGIC, option, reply, len(data)) + data


def simple_reply(cookie: int, error: int = 0, data: bytes = b"") -> bytes:
    return SIMPLE_REPLY.pack(SIMPLE_REPLY_MAGIC, error, cookie) + data


def chunk(cookie: int, type_: int, payload: bytes = b"", *, done: bool = True) -> bytes:
    return CHUNK.pack(STRUCTURED_REPLY_MAGIC, REPLY_FLAG_DONE if done else 0, type_, cookie,
                      len(payload)) + payload


def error_chunk(cookie: int, error: int, message: str = "") -> bytes:
    msg = message.encode()[:4096]
    return chunk(cookie, REPLY_TYPE_ERROR, struct.pack(">IH", error, len(msg)) + msg)
