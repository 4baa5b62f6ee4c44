"""libgfapi-python's two method guards, for programs that decorate their
own subclasses with them: a Volume method needs a mounted volume
(VolumeNotMounted), a File method an open fd (OSError EBADF)."""

import errno
import functools
import os

from .exceptions import VolumeNotMounted


def validate_mount(func):
    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        if not (self.fs and self.mounted):
            raise VolumeNotMounted(f'Volume "{self.volname}" not mounted.')
        return func(self, *args, **kwargs)
    wrapper.__wrapped__ = func
    return wrapper


def validate_glfd(func):
    @functools.wraps(func)
    def wrapper(self, *args, **kwargs):
        if not self.fd:
            raise OSError(errno.EBADF, os.strerror(errno.EBADF))
        return func(self, *args, **kwargs)
    wrapper.__wrapped__ = func
    return wrapper
