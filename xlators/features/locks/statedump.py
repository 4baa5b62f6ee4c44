"""features/locks: every lock by inode, as GlusterFS's statedump lists
them (pl_dump_inode, posix.c).
"""

from __future__ import annotations

from .common import LLONG_MAX, EntryLock, InodeLock, Lock, lock_type_name


class LockStateDump:
    """dump_state."""

    def dump_state(self) -> dict:
        """Every lock by inode, as GlusterFS's statedump lists them."""
        state = {}
        for gfid, pinode in self._inodes.items():
            state[str(gfid)] = {
                "domains": {name: {
                    "inodelk": [_describe(lk) for lk in dom.inodelks],
                    "inodelk-blocked": [_describe(lk) for lk in dom.blocked_inodelks],
                    "entrylk": [_describe(lk) for lk in dom.entrylks],
                    "entrylk-blocked": [_describe(lk) for lk in dom.blocked_entrylks],
                } for name, dom in pinode.domains.items()},
                "posixlk": [_describe(lk) for lk in pinode.posixlks],
                "posixlk-blocked": [_describe(lk) for lk in pinode.blocked_posixlks],
                "removals-running": pinode.remove_running,
                "removals-waiting": len(pinode.remove_waiters),
            }
        return state


def _describe(lock: Lock) -> dict:
    """One statedump line."""
    out = {"owner": lock.owner.hex(), "client": repr(lock.client), "pid": lock.pid,
           "granted-at": lock.granted_at, "blocked-at": lock.blocked_at}
    if isinstance(lock, EntryLock):
        out.update(type=lock_type_name(lock.type), basename=lock.basename,
                   connection_id=lock.conn_id)
    else:
        length = 0 if lock.end == LLONG_MAX else lock.end - lock.start + 1
        out.update(type=lock_type_name(lock.type), start=lock.start, len=length)
        if isinstance(lock, InodeLock):
            out["connection_id"] = lock.conn_id
    return out
