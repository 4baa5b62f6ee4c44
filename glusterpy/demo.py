"""`make run`: the embedded default - glusterpyd with a volume `demo`, shown working.

Starts one glusterpyd on ./run/glusterpyd (port 24007, or the next free
port from 24017 when something - a GlusterFS glusterd - holds 24007),
creates the volume `demo` the first time - replica 3 on three local
directories - starts it, writes a file through gfapi, mounts it
with FUSE on ./run/mnt when FUSE is available, prints how to reach it
(gfapi, qemu-img, the glusterfs FUSE client, the CLI), and serves in the
foreground until Ctrl-C; then it unmounts, stops the volume (its bricks
stop cleanly) and stops the daemon.  Everything is driven through the
glusterpy CLI's commands, as an administrator would; the state stays
between runs.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path("run")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cli(remote: str, *args: str) -> tuple[int, str]:
    """Run a glusterpy CLI command in this process; (status, output)."""
    from glusterpy.cli.main import main
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = main([args[0], "--remote-host", remote, *args[1:]])
    return rc, out.getvalue()


def must(remote: str, *args: str) -> str:
    rc, text = cli(remote, *args)
    print(f"$ glusterpy {' '.join(args)}\n{text.rstrip()}")
    if rc:
        raise SystemExit(f"demo: 'glusterpy {' '.join(args)}' failed")
    return text


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m glusterpy.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=str(ROOT), help="where the demo keeps everything")
    parser.add_argument("--port", type=int, default=0,
                        help="glusterpyd's port (default: 24007 if free, else from 24017)")
    parser.add_argument("--no-wait", action="store_true",
                        help="show it working, then stop (no foreground serving)")
    args = parser.parse_args(argv)
    root = Path(args.root).resolve()
    workdir, bricks, mnt = root / "glusterpyd", root / "bricks", root / "mnt"
    for d in (workdir, bricks, mnt):
        d.mkdir(parents=True, exist_ok=True)
    port = args.port or next(p for p in [24007, *range(24017, 24100)] if port_free(p))
    remote = f"127.0.0.1:{port}"
    log = root / "glusterpyd.log"
    daemon = subprocess.Popen([sys.executable, "-m", "glusterpy.glusterd.main", "--workdir",
                               str(workdir), "--port", str(port), "--address", "127.0.0.1",
                               "--brick-root", str(bricks), "--log-file", str(log)],
                              stdin=subprocess.DEVNULL,
                              # Ctrl-C is ours to handle: the daemon must live until
                              # it has stopped the volume's bricks
                              start_new_session=True)
    mounted = False
    try:
        deadline = time.monotonic() + 30
        while cli(remote, "volume", "list")[0]:
            if daemon.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"demo: glusterpyd did not start; see {log}")
            time.sleep(0.2)
        print(f"glusterpyd is up on {remote} (working directory {workdir}, log {log})\n")
        mounted = show(remote, port, bricks, mnt)
        if args.no_wait:
            return 0
        print("\nserving in the foreground; Ctrl-C stops it (unmount, volume stop, daemon stop)")
        # Ctrl-C and SIGTERM end the wait, even when started in the background
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        while daemon.poll() is None:
            time.sleep(1)
        print(f"demo: glusterpyd exited ({daemon.returncode}); see {log}")
        return 1
    except KeyboardInterrupt:
        print("\nstopping ...")
        return 0
    finally:
        if mounted or os.path.ismount(mnt):
            subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "umount", str(mnt)])
        if daemon.poll() is None:
            cli(remote, "--mode=script", "volume", "stop", "demo")
            daemon.terminate()
            try:
                daemon.wait(20)
            except subprocess.TimeoutExpired:
                daemon.kill()


def show(remote: str, port: int, bricks: Path, mnt: Path) -> bool:
    from glusterpy.gfapi import Volume
    vols = json.loads(cli(remote, "volume", "info", "--json")[1])["volumes"]
    demo = next((v for v in vols if v["name"] == "demo"), None)
    if demo is None:
        dirs = [f"127.0.0.1:{bricks / f'brick{i}'}" for i in (1, 2, 3)]
        must(remote, "volume", "create", "demo", "replica", "3", *dirs)
        demo = json.loads(cli(remote, "volume", "info", "demo", "--json")[1])["volumes"][0]
    if demo["status"] != "Started":
        must(remote, "volume", "start", "demo")
    must(remote, "volume", "info", "demo")
    must(remote, "volume", "status", "demo")

    with Volume("127.0.0.1", "demo", port=port) as vol:
        vol.makedirs("/docs", exist_ok=True)
        with vol.fopen("/docs/hello.txt", "w") as f:
            f.write(b"hello from glusterpy\n")
        print("\nthrough gfapi: /docs holds", vol.listdir("/docs"),
              "->", vol.open("/docs/hello.txt").read())
    for b in demo["bricks"]:
        if os.path.exists(os.path.join(b["path"], "docs", "hello.txt")):
            print(f"  on brick {b['name']}: docs/hello.txt")

    mounted = False
    if shutil.which("fusermount3") and os.path.exists("/dev/fuse"):
        if not os.path.ismount(mnt):
            done = subprocess.run([sys.executable, "-m", "glusterpy.cli.main", "mount",
                                   "-o", f"log-file={mnt.parent / 'mount.log'}",
                                   f"{remote}:/demo", str(mnt)], capture_output=True, text=True)
            mounted = done.returncode == 0
            if not mounted:
                print(f"(FUSE mount failed: {done.stderr.strip()})")
        else:
            mounted = True
        if mounted:
            print(f"\nmounted with FUSE on {mnt}: {sorted(os.listdir(mnt))}")
    else:
        print("\n(FUSE is not available here: no mount)")

    print(f"""
Reach the volume:
  gfapi:     from glusterpy.gfapi import Volume
             with Volume("127.0.0.1", "demo", port={port}) as vol: print(vol.listdir("/"))
             (volfile-id "demo.noperf" gives the graph without performance translators)
  qemu-img:  qemu-img create -f qcow2 gluster://127.0.0.1:{port}/demo/disk.qcow2 1G
  glusterfs: glusterfs --volfile-server=127.0.0.1 --volfile-server-port={port} \\
                 --volfile-id=demo /mnt/demo
  the CLI:   export GLUSTERPY_REMOTE_HOST={remote}
             .venv/bin/glusterpy volume info demo
             .venv/bin/glusterpy volume set demo performance.io-cache off
             (root on this machine needs nothing: the daemon's unix socket)
  REST:      curl --unix-socket {bricks.parent / "glusterpyd/run/glusterpyd.socket"} \\
                 http://localhost/api/v1/volumes/demo
             from elsewhere: .venv/bin/glusterpy token create me --role read-only, then
             curl -k -H "Authorization: Bearer TOKEN" https://{remote}/api/v1/volumes/demo
             (API: /api/v1/openapi.json)""")
    return mounted


if __name__ == "__main__":
    sys.exit(main())
