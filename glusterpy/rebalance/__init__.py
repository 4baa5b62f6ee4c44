"""Rebalance: the crawl that fixes directory layouts and moves files to
their hashed bricks, and the process that runs it for one volume on one
node (GlusterFS's `glusterfs --process-name rebalance`).

* `defrag` - the crawl itself (dht-rebalance.c's gf_defrag_*), driving a
  cluster/distribute translator through its rebalance building blocks;
* `process` - `python -m glusterpy.rebalance`: fetch the volume's
  rebalance volfile from glusterpyd, run the crawl, report progress in a
  status file, stop on SIGTERM.

glusterpyd starts and supervises these processes (glusterpy/glusterd/
rebalance.py); the CLI shows their progress (glusterpy/cli/rebalance_cmd.py).
"""
