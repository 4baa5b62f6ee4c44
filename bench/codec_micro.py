"""The RPC codec alone, per 4 KiB READ (issue 15's mypyc step).

    python -m bench.codec_micro                           # whatever the build gives
    GLUSTERPY_PURE_PYTHON=1 python -m bench.codec_micro   # the .py sources

Two numbers, best of 5 passes of 20,000 requests, no IO: the brick's side
(RpcConnection decoding a READ call with an AUTH_GLUSTERFS_v3 credential,
then encoding its 4 KiB reply with an iatt), and a whole round trip (the
client's call encoded, the brick's side, the client decoding the reply).
"""

from __future__ import annotations

import os
import time
import uuid

from glusterpy import fops as F
from glusterpy.rpc import (FOP_PROCEDURES, AuthGlusterfsV3, FopRequest, RemoteFd,
                           RpcConnection, compiled)

N = 20000


def main() -> None:
    gfid = F.GFID(uuid.uuid4().bytes)
    proc = FOP_PROCEDURES["readv"]
    cred = AuthGlusterfsV3(pid=1, uid=0, gid=0, lk_owner=b"\1" * 8)
    req = FopRequest(F.BY_NAME["readv"],
                     {"fd": RemoteFd(gfid, 3), "size": 4096, "offset": 0, "flags": 0})
    reply = F.ReadReply(data=os.urandom(4096), iatt=F.Iatt(gfid=gfid))
    client = RpcConnection()
    calls = b"".join(b"".join(client.send_call(proc, req, cred=cred)[1]) for _ in range(N))
    brick = round_trip = float("inf")
    for _ in range(5):
        server = RpcConnection()
        start = time.perf_counter()
        server.receive_data(calls)
        for _ in range(N):
            server.send_reply(server.next_event(), reply)
        brick = min(brick, (time.perf_counter() - start) / N * 1e6)
        client, server = RpcConnection(), RpcConnection()
        start = time.perf_counter()
        for _ in range(N):
            server.receive_data(b"".join(client.send_call(proc, req, cred=cred)[1]))
            client.receive_data(b"".join(server.send_reply(server.next_event(), reply)))
            client.next_event()
        round_trip = min(round_trip, (time.perf_counter() - start) / N * 1e6)
    print(f"codec {compiled.MODE}: brick side {brick:.1f} us per READ (call decoded, "
          f"4 KiB reply encoded), round trip {round_trip:.1f} us")


if __name__ == "__main__":
    main()
