"""libgfapi-python's exceptions, for `from gluster.gfapi.exceptions import ...`.

`LibgfapiException` and `VolumeNotMounted` are glusterpy.gfapi's own classes
(re-exported, not copies), so an error raised anywhere in glusterpy's client
is caught by the name a libgfapi-python program uses.  `Error` is what
copyfile() and copytree() raise, an EnvironmentError (OSError) as in
libgfapi-python.
"""

from glusterpy.gfapi.exceptions import LibgfapiException, VolumeNotMounted


class Error(EnvironmentError):
    """copyfile() of a file onto itself; copytree()'s list of failures."""


__all__ = ["LibgfapiException", "VolumeNotMounted", "Error"]
