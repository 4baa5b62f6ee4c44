"""Geo-replication: the worker (`glusterpy gsyncd`, worker.py) that mirrors
one brick's part of a primary volume to a secondary volume.  The sessions,
their supervision and status are glusterpyd's (glusterpy/glusterd/georep.py).
"""

#: the caller pid of the worker's fops that read the sync time (GlusterFS's
#: GF_CLIENT_PID_GSYNCD): the bricks hide `*.glusterfs.*.stime` from others
GF_CLIENT_PID_GSYNCD = -1
