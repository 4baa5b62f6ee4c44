"""Boot the test guest under QEMU (TCG) with a disk from a gluster:// URL,
and follow its serial console.

`running_guest(...)` starts qemu-system-x86_64 with `-accel tcg` (on these
machines /dev/kvm exists but a KVM guest hangs after "Probing EDD"), the
kernel and initramfs from `guest.initramfs`, `-nographic` (the serial
console on QEMU's stdio) and one virtio disk.  A thread copies everything
QEMU prints to a log file and a buffer; `wait_for(marker, timeout)` waits
for a line of the console, `send(line)` types into it, `wait_exit(timeout)`
waits for the guest's `poweroff -f` to end QEMU.  Every wait is bounded;
on the way out QEMU is killed if it still runs, and failures quote the end
of the console log.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import threading
import time
from pathlib import Path

from .initramfs import GuestUnavailable, Kernel

QEMU = "qemu-system-x86_64"


def qemu_binary() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise GuestUnavailable(f"{QEMU} is not installed: Debian's qemu-system-x86 "
                               "(make installs it)")
    return path


class Guest:
    def __init__(self, proc: subprocess.Popen, log: Path):
        self.proc = proc
        self.log = log
        self._text = ""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        with open(self.log, "w", errors="replace") as out:
            while True:
                chunk = self.proc.stdout.read1(4096)
                if not chunk:
                    break
                text = chunk.decode(errors="replace")
                out.write(text)
                out.flush()
                with self._changed:
                    self._text += text
                    self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    @property
    def console(self) -> str:
        with self._lock:
            return self._text

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.console.replace("\r", "").splitlines()[-lines:])

    def wait_for(self, marker: str, timeout: float) -> str:
        """Wait until the console shows `marker`; returns the console so far."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while marker not in self._text:
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and not self._reader.is_alive()):
                    state = ("QEMU exited with status %s" % self.proc.returncode
                             if self.proc.poll() is not None else f"after {timeout:g}s")
                    raise AssertionError(f"guest console never showed {marker!r} ({state}); "
                                         f"its last lines ({self.log}):\n{self.tail_locked()}")
                self._changed.wait(min(left, 0.5))
            return self._text

    def tail_locked(self, lines: int = 40) -> str:
        return "\n".join(self._text.replace("\r", "").splitlines()[-lines:])

    def send(self, line: str) -> None:
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()

    def wait_exit(self, timeout: float) -> int:
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"QEMU still runs {timeout:g}s after the guest's job; "
                                 f"console ({self.log}):\n{self.tail()}") from None
        self._reader.join(10)
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self._reader.join(10)


@contextlib.contextmanager
def running_guest(kernel: Kernel, initrd: Path, drive: str, log: Path, *,
                  memory_mib: int = 256, stderr_log: Path | None = None):
    """QEMU booting `kernel` + `initrd` with `drive` (a -drive argument) as
    its virtio disk; yields a Guest and kills QEMU on the way out."""
    cmd = [qemu_binary(), "-accel", "tcg", "-m", str(memory_mib), "-smp", "1",
           "-nographic", "-no-reboot", "-nic", "none",
           "-kernel", str(kernel.image), "-initrd", str(initrd),
           "-append", "console=ttyS0 panic=-1",
           "-drive", drive]
    err = open(stderr_log or log.with_suffix(".stderr"), "wb")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=err)
    except BaseException:
        err.close()
        raise
    guest = Guest(proc, log)
    try:
        yield guest
    finally:
        guest.kill()
        err.close()
