"""The process that frees unlinked files' inodes for a brick (storage/posix's
DeferredEviction): run as a script by the brick, stdlib only, so it starts in
milliseconds and carries nothing of the brick's state.

It reads messages from the unix socket whose descriptor number is its one
argument; each carries descriptors (SCM_RIGHTS), which it closes - the last
reference to an unlinked inode, so the kernel evicts it here, in this
process.  A message b"S" is answered b"S" once everything sent before it is
closed (the brick's drain).  End of file (the brick closed its end, or died)
ends it.
"""

import os
import socket
import sys

#: descriptors one message may carry (the kernel's SCM_MAX_FD)
MAX_FDS = 253
SYNC = b"S"


def main() -> int:
    sock = socket.socket(fileno=int(sys.argv[1]))
    while True:
        try:
            msg, fds, _, _ = socket.recv_fds(sock, 16, MAX_FDS)
        except InterruptedError:
            continue
        except OSError:
            return 1
        for fd in fds:
            try:
                os.close(fd)
            except OSError:
                pass
        if msg == SYNC:
            sock.sendall(SYNC)
        elif not msg and not fds:
            return 0


if __name__ == "__main__":
    sys.exit(main())
