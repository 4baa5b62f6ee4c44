"""Geo-replication: the worker (`glusterpy gsyncd`, worker.py) that mirrors
one brick's part of a primary volume to a secondary volume.  The sessions,
their supervision and status are glusterpyd's (glusterpy/glusterd/georep.py).
"""

#: in the primary volume's root: the election locks of the workers
LOCK_DIR = ".glusterpy-georep"
#: names in the volume's root that are never mirrored: the brick's own
#: (.glusterfs), the trash and the workers' locks
NOT_MIRRORED = frozenset({".glusterfs", ".trashcan", LOCK_DIR})


def mirrored(path: str) -> bool:
    """Whether a path of the volume ("/a/b") is one the secondary gets."""
    return path.lstrip("/").split("/", 1)[0] not in NOT_MIRRORED
