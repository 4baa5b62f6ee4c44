"""Geo-replication: the worker (`glusterpy gsyncd`, worker.py) that mirrors
one brick's part of a primary volume to a secondary volume.  The sessions,
their supervision and status are glusterpyd's (glusterpy/glusterd/georep.py).
"""
