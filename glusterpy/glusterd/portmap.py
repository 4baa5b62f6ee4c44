"""The portmap registry: which port each brick listens on.

glusterd keeps it (xlators/mgmt/glusterd/src/glusterd-pmap.c) and answers
the PORTMAP program from it: a brick process signs in every subvolume its
protocol/server exports (`PMAP SIGNIN brick port`, glusterfsd-mgmt.c) and
signs out when it stops; a client's protocol/client asks PORTBYBRICK for
its `remote-subvolume` before connecting.  This module is the registry
alone - no I/O - so the volfile server and the management daemon share it.

Behaviour followed: brick names are matched whole; a sign-in binds a name
to a port (a later sign-in of the same name wins, as glusterd's newest
entry does); several names may share a port (brick multiplexing); a sign-out
removes the name.  Bricks signed in over a connection that closes are
dropped (`drop_owner`), as glusterd drops a brick whose RPC disconnects.
`alloc_port` picks a free port from base-port..max-port the way
pmap_port_alloc does: a random start, then the first port that binds.

Departure: a sign-out that names a port other than the one the brick is
registered on is ignored, so the late sign-out of a brick's previous
process cannot erase the registration of its new one (glusterd removes by
name alone).
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass
from typing import Any, Callable, Iterable

#: glusterd's defaults (glusterd.vol: base-port, max-port)
BASE_PORT = 49152
MAX_PORT = 60999


@dataclass(frozen=True)
class Registration:
    brick: str
    port: int
    owner: Any = None  # who signed it in (e.g. the connection), for drop_owner
    pid: int = 0


class PortmapRegistry:
    """Brick name -> port, with change notification."""

    def __init__(self, base_port: int = BASE_PORT, max_port: int = MAX_PORT):
        if not 0 < base_port <= max_port <= 65535:
            raise ValueError(f"bad port range {base_port}..{max_port}")
        self.base_port = base_port
        self.max_port = max_port
        self._bricks: dict[str, Registration] = {}
        #: called with no arguments after every change
        self.listeners: list[Callable[[], None]] = []

    def signin(self, brick: str, port: int, owner: Any = None, pid: int = 0) -> None:
        if not brick or any(c.isspace() for c in brick):
            # glusterd keeps names space-separated: a blank cannot be in one
            raise ValueError(f"brick name {brick!r} is empty or holds blanks")
        if not 0 < port <= 65535:
            raise ValueError(f"port {port} is out of range")
        old = self._bricks.get(brick)
        self._bricks[brick] = Registration(brick, port, owner, pid)
        if old is None or old.port != port:
            self._changed()

    def signout(self, brick: str, port: int = 0) -> bool:
        """Remove a brick; `port` (when not 0) must be the one it holds.
        True if something was removed."""
        reg = self._bricks.get(brick)
        if reg is None or (port and reg.port != port):
            return False
        del self._bricks[brick]
        self._changed()
        return True

    def drop_owner(self, owner: Any) -> list[str]:
        """Forget every brick `owner` signed in (its connection closed)."""
        gone = [name for name, reg in self._bricks.items() if reg.owner is owner]
        for name in gone:
            del self._bricks[name]
        if gone:
            self._changed()
        return gone

    def port_by_brick(self, brick: str) -> int | None:
        reg = self._bricks.get(brick)
        return reg.port if reg is not None else None

    def registration(self, brick: str) -> Registration | None:
        return self._bricks.get(brick)

    def bricks_by_port(self, port: int) -> list[str]:
        return [name for name, reg in self._bricks.items() if reg.port == port]

    def ports(self) -> dict[str, int]:
        """Every registered brick and its port."""
        return {name: reg.port for name, reg in self._bricks.items()}

    def __len__(self) -> int:
        return len(self._bricks)

    def alloc_port(self, host: str = "", taken: Iterable[int] = ()) -> int:
        """A port in base..max that nothing listens on now, starting the scan
        at a random place; 0 if every port is taken."""
        taken = set(taken) | {reg.port for reg in self._bricks.values()}
        span = self.max_port - self.base_port + 1
        start = random.randrange(span)
        for i in range(span):
            port = self.base_port + (start + i) % span
            if port not in taken and _port_is_free(host, port):
                return port
        return 0

    def _changed(self) -> None:
        for listener in list(self.listeners):
            listener()


def _port_is_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


__all__ = ["PortmapRegistry", "Registration", "BASE_PORT", "MAX_PORT"]
