"""Exceptions of glusterpy.gfapi, named as libgfapi-python names them.

File operations raise OSError with the errno the volume gave; these are for
mounting and for using a volume that is not mounted.
"""


class LibgfapiException(Exception):
    """The volume could not be mounted or unmounted."""


class VolumeNotMounted(LibgfapiException):
    """An operation on a volume that is not mounted."""
