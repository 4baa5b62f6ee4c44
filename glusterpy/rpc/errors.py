"""The one error type every glusterpy RPC decoder raises.

Anything that arrives from the network and does not parse - a truncated
XDR item, a length beyond the bytes that remain, a record larger than the
configured maximum, an RPC header that is not ONC RPC v2's shape, a union
arm GlusterFS does not define - becomes `RpcProtocolError`.  Decoders raise
nothing else, so the transport needs exactly one ``except`` clause, and the
fuzz tests assert exactly that.

Encoders are different: they take values from our own code, and a value
that cannot be encoded (a negative unsigned, a 17-byte gfid) is a
programming error; they raise `ValueError` (or `TypeError`).
"""

from __future__ import annotations


class RpcProtocolError(Exception):
    """Malformed or unacceptable input from the peer.

    After an `RpcConnection` raises it, the connection is in its ERROR
    state and every further receive raises it again: the byte stream can no
    longer be trusted to be aligned on record boundaries.
    """
