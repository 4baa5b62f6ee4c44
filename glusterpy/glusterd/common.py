"""What glusterpyd's services and routes share without importing the
daemon: its version, the failure every operation reports, and the rules
of a volume name (ops.py checks this pool's, georep.py a secondary's).

Defined here, not in daemon.py, so that the route modules and the services
the daemon imports (heal, clients, tls_setup) need not import the daemon
back (tests/test_glusterd_layout.py checks there is no import cycle).
"""

from __future__ import annotations

VERSION = "glusterpy 0.1.0"


class OpFailed(Exception):
    """An operation refused or failed; the message is the CLI's reason."""


VOLNAME_MAX = 256  # GD_VOLUME_NAME_MAX (NAME_MAX + 1)
INVALID_VOLNAMES = frozenset({
    "volume", "type", "help", "subvolumes", "option", "end-volume", "all",
    "volume_not_in_ring", "description", "force", "snap-max-hard-limit",
    "snap-max-soft-limit", "auto-delete", "activate-on-create"})


def check_volname(name: str) -> None:
    """cli_validate_volname's rules and messages."""
    if not isinstance(name, str) or not name:
        raise ValueError("a volume name is required")
    if name in INVALID_VOLNAMES:
        raise ValueError(f'"{name}" cannot be the name of a volume.')
    if name.startswith("-"):
        raise ValueError(f'Volume name "{name}" should not start with "-".')
    if len(name) > VOLNAME_MAX:
        raise ValueError(f"Volume name exceeds {VOLNAME_MAX} characters.")
    for c in name:
        if not (c.isascii() and c.isalnum()) and c not in "-_":
            raise ValueError(f'Volume name should not contain "{c}" character.\nVolume names '
                             "can only contain alphanumeric, '-' and '_' characters.")


__all__ = ["VERSION", "OpFailed", "check_volname", "INVALID_VOLNAMES", "VOLNAME_MAX"]
