"""What glusterpyd's services and routes share without importing the
daemon: its version and the failure every operation reports.

Defined here, not in daemon.py, so that the route modules and the services
the daemon imports (heal, clients, tls_setup) need not import the daemon
back (tests/test_glusterd_layout.py checks there is no import cycle).
"""

from __future__ import annotations

VERSION = "glusterpy 0.1.0"


class OpFailed(Exception):
    """An operation refused or failed; the message is the CLI's reason."""


__all__ = ["VERSION", "OpFailed"]
