"""The client's cost per call: glusterpy's gfapi against a glusterpy brick.

    python -m bench.client_path [--files 2000] [--reads 20000] [--count [--profile FILE]]
    python -m bench.client_path --fuse [--files 2000] [--count]

The brick (server -> locks -> posix on a fresh directory) runs as a process
of its own (`glusterpy brick`), so what is measured here is the client: this
process's CPU (utime+stime) per operation, the wall time per operation and,
with --count, the Python function calls per operation (cProfile's count of
every call, C functions included, over the whole loop).  Two loops, one
call in flight each (the latency path, not throughput):

* create: open(O_CREAT|O_WRONLY) + write 100 bytes + close per file - at the
  brick CREATE, WRITE, FLUSH, RELEASE (gfapi resolves the parent once);
* read: 4 KiB pread of one 1 MiB file, offsets walking the file.

With --fuse the client is a foreground `glusterpy mount` of the same
graph instead, and this process creates the files through it (100 bytes
each): the mount process's CPU per create from /proc, or with --count its
Python calls per create (the mount run under cProfile twice, with no files
and with --files files, the difference divided by --files).

The client graph is protocol/client alone, so what moves is the RPC path
(transport, protocol/client), not the performance translators.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import os
import pstats
import socket
import subprocess
import sys
import tempfile
import time

import trio

from glusterpy.gfapi import AsyncVolume


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _brick_volfile(directory: str, port: int) -> str:
    return (f"volume b-posix\n    type storage/posix\n    option directory {directory}\n"
            "end-volume\n"
            "volume b-locks\n    type features/locks\n    subvolumes b-posix\nend-volume\n"
            "volume b-server\n    type protocol/server\n"
            f"    option transport.socket.listen-port {port}\n"
            "    option transport.socket.bind-address 127.0.0.1\n"
            "    option auth.addr.b-locks.allow *\n"
            "    subvolumes b-locks\nend-volume\n")


def _client_volfile(port: int) -> str:
    return ("volume c-client\n    type protocol/client\n"
            "    option remote-host 127.0.0.1\n"
            f"    option remote-port {port}\n    option remote-subvolume b-locks\n"
            "end-volume\n")


@contextlib.contextmanager
def _brick(workdir: str):
    port = _free_port()
    directory = os.path.join(workdir, "brick")
    os.mkdir(directory)
    volfile = os.path.join(workdir, "brick.vol")
    with open(volfile, "w") as f:
        f.write(_brick_volfile(directory, port))
    proc = subprocess.Popen([sys.executable, "-m", "glusterpy.cli.main", "brick",
                             "--volfile", volfile], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the brick did not start")
            time.sleep(0.1)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


async def _timed(out: dict[str, float], name: str, n: int, args, work) -> None:
    """Run `work()` (n operations): wall and CPU microseconds per operation
    into `out` as NAME_wall_us/NAME_cpu_us, and with --count the Python
    calls per operation as NAME_calls."""
    profile = cProfile.Profile() if args.count else None
    cpu, wall = _cpu(), time.perf_counter()
    if profile:
        profile.enable()
    await work()
    if profile:
        profile.disable()
    out[f"{name}_wall_us"] = (time.perf_counter() - wall) / n * 1e6
    out[f"{name}_cpu_us"] = (_cpu() - cpu) / n * 1e6
    if profile:
        stats = pstats.Stats(profile)
        out[f"{name}_calls"] = stats.total_calls / n
        if args.profile:
            stats.dump_stats(f"{args.profile}.{name}")


async def _measure(vol: AsyncVolume, args) -> dict[str, float]:
    out: dict[str, float] = {}
    await vol.makedirs("/d", exist_ok=True)
    data = b"x" * 100

    async def creates(first: int, n: int) -> None:
        for i in range(first, first + n):
            f = await vol.open(f"/d/f{i}", os.O_CREAT | os.O_WRONLY, 0o644)
            await f.write(data)
            await f.close()
    await creates(0, 50)    # warm: connection, parent inode, code paths
    await _timed(out, "create", args.files, args, lambda: creates(100, args.files))

    f = await vol.open("/big", os.O_CREAT | os.O_RDWR, 0o644)
    await f.pwrite(os.urandom(1 << 20), 0)

    async def reads(n: int) -> None:
        for i in range(n):
            await f.pread(4096, (i % 256) * 4096)
    await reads(200)
    await _timed(out, "read", args.reads, args, lambda: reads(args.reads))
    await f.close()
    return out


async def _run(args) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="client-path-") as workdir, _brick(workdir) as port:
        volfile = os.path.join(workdir, "client.vol")
        with open(volfile, "w") as f:
            f.write(_client_volfile(port))
        async with AsyncVolume.from_volfile(volfile) as vol:
            return await _measure(vol, args)


def _fuse_run(workdir: str, port: int, files: int, profile: str | None) -> float:
    """Mount, create `files` files, unmount; the mount's CPU seconds over the
    creates (or 0 with `profile`, where cProfile writes its stats there)."""
    from .brick_cpu import cpu_seconds
    volfile = os.path.join(workdir, "client.vol")
    with open(volfile, "w") as f:
        f.write(_client_volfile(port))
    mountpoint = tempfile.mkdtemp(prefix="mnt-", dir=workdir)
    command = [sys.executable, "-m", "glusterpy.cli.main", "mount", "-N", "--volfile",
               volfile, mountpoint]
    if profile:
        command[1:1] = ["-m", "cProfile", "-o", profile]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not os.path.ismount(mountpoint):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the mount did not come up")
            time.sleep(0.1)
        directory = os.path.join(mountpoint, f"d{files}")
        os.mkdir(directory)
        for i in range(50 if files else 0):     # warm: the same paths as measured
            with open(os.path.join(directory, f"w{i}"), "wb") as f:
                f.write(b"x" * 100)
        cpu = cpu_seconds(proc.pid)
        for i in range(files):
            with open(os.path.join(directory, f"f{i}"), "wb") as f:
                f.write(b"x" * 100)
        return cpu_seconds(proc.pid) - cpu
    finally:
        subprocess.run(["fusermount3", "-u", mountpoint], check=False)
        proc.wait(60)
        os.rmdir(mountpoint)


def _fuse(args) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix="client-path-") as workdir, _brick(workdir) as port:
        if not args.count:
            return {"fuse_create_cpu_us": _fuse_run(workdir, port, args.files, None)
                    / args.files * 1e6}
        calls = []
        for files in (0, args.files):
            out = os.path.join(workdir, f"profile-{files}")
            _fuse_run(workdir, port, files, out)
            calls.append(pstats.Stats(out).total_calls)
        # the run with no files has the 50 warm-up creates fewer too
        return {"fuse_create_calls": (calls[1] - calls[0]) / (args.files + 50)}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=2000)
    p.add_argument("--reads", type=int, default=20000)
    p.add_argument("--count", action="store_true",
                   help="count Python calls with cProfile (slows the loops; time them "
                        "without it)")
    p.add_argument("--profile", metavar="FILE",
                   help="with --count, write the pstats to FILE.create and FILE.read")
    p.add_argument("--fuse", action="store_true",
                   help="create through a FUSE mount of the graph instead of gfapi")
    args = p.parse_args(argv)
    out = _fuse(args) if args.fuse else trio.run(_run, args)
    print(" ".join(f"{k}={v:.1f}" for k, v in out.items()), flush=True)


if __name__ == "__main__":
    main()
