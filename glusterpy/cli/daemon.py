"""What the long-running commands (brick, volfile-server) share: logging
as GlusterFS's processes log, pid files, and errors out of nurseries.

GlusterFS's processes take `--log-file` and `--log-level` (TRACE, DEBUG,
INFO, WARNING, ERROR, CRITICAL, NONE) and write one line per message with
the time, a one-letter level and the translator instance it comes from.
Here every translator logs through `logging.getLogger(<its volfile name>)`
(glusterpy.xlator), so the lines read as GlusterFS's do:

    [2024-01-11 10:00:00.123456 +0000] I [test-server] accepted client from ...
"""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import time

import trio

from ..process import settle_heap

LEVELS = {"TRACE": logging.DEBUG, "DEBUG": logging.DEBUG, "INFO": logging.INFO,
          "WARNING": logging.WARNING, "ERROR": logging.ERROR,
          "CRITICAL": logging.CRITICAL, "NONE": logging.CRITICAL + 10}
_LETTERS = {logging.DEBUG: "D", logging.INFO: "I", logging.WARNING: "W",
            logging.ERROR: "E", logging.CRITICAL: "C"}


class GlusterFormatter(logging.Formatter):
    def formatTime(self, record, datefmt=None):
        t = time.gmtime(record.created)
        micros = int(record.created * 1_000_000) % 1_000_000
        return time.strftime("%Y-%m-%d %H:%M:%S", t) + f".{micros:06d} +0000"

    def format(self, record):
        record.letter = _LETTERS.get(record.levelno, "?")
        return super().format(record)


def add_log_arguments(parser) -> None:
    parser.add_argument("--log-file", metavar="FILE",
                        help="write the log here (default: standard error)")
    parser.add_argument("--log-level", default="INFO", type=str.upper,
                        choices=sorted(LEVELS), metavar="LEVEL",
                        help="TRACE, DEBUG, INFO (default), WARNING, ERROR, CRITICAL or NONE")


def setup_logging(log_file: str | None, level: str) -> None:
    handler = logging.FileHandler(log_file) if log_file else logging.StreamHandler(sys.stderr)
    handler.setFormatter(GlusterFormatter("[%(asctime)s] %(letter)s [%(name)s] %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(LEVELS[level])


def sole_exception(exc: BaseException) -> BaseException:
    """The one exception inside nested one-member exception groups (trio
    wraps what fails inside a nursery), or `exc` itself."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def run_service(async_fn, *args, pidfile: str | None = None, program: str = "error",
                expected: tuple[type[BaseException], ...] = (OSError,),
                interrupt_is_success: bool = False) -> int:
    """Run a long-running process's `trio.run(async_fn, *args)` holding its
    pid file, and turn an expected failure (OSError by default) into a
    logged one-line message and exit status 1; anything else is a bug and
    propagates with its traceback."""
    held = None
    try:
        if pidfile:
            held = PidFile(pidfile)
        settle_heap()
        trio.run(async_fn, *args)
    except BaseException as e:
        error = sole_exception(e)
        if interrupt_is_success and isinstance(error, KeyboardInterrupt):
            return 0
        if not isinstance(error, expected):
            raise
        logging.getLogger("glusterpy").error("%s failed: %s", program, error)
        print(f"{program}: {error}", file=sys.stderr)
        return 1
    finally:
        if held is not None:
            held.remove()
    return 0


class PidFile:
    """A pid file held with a lock for the life of the process, as
    glusterfsd's pidfile setup does: a second process given the same file
    fails instead of overwriting it.  Removed by `remove()`."""

    def __init__(self, path: str):
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            other = os.pread(self._fd, 32, 0).decode(errors="replace").strip()
            os.close(self._fd)
            raise OSError(f"pid file {path} is locked by a running process "
                          f"(pid {other or '?'})") from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, f"{os.getpid()}\n".encode(), 0)

    def remove(self) -> None:
        if self._fd < 0:
            return
        try:
            os.unlink(self.path)
        except OSError:
            pass
        os.close(self._fd)
        self._fd = -1
