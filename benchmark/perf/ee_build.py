"""Build throughput against a loopback Earth Engine with a fixed latency per request, and build memory.

    python -m benchmark.perf.ee_build [--latency 0.2] [--concurrency 1,4,16,40] [--memory 100,1000,3000]
                                      [--full 32] [--json out.json]
    python -m benchmark.perf.ee_build --baseline REV [--runs 2]

The loopback server (noldo/testing/earthengine.py, the one the tests use) runs in its own process and
answers every listImages and computePixels after ``--latency`` seconds. With small pixel payloads
(64×64 tiles) the request rate measures scheduling, against the ideal concurrency ÷ latency (``--ee-rate``
is set high enough not to bind), with the client's CPU per request: the whole build process's, and the
request path's alone (building, sending and decoding one request, from the build summary); the process's CPU is given
whole and without the interpreter's start and the imports (about a second, whatever the build's size). Then
the byte-bound rate with full 264×264 tiles, and the peak memory (RSS) of whole `noldo build`
processes at 100, 1,000 and 3,000 samples, which must not grow with the sample count, with their CPU
per request and what each further request costs between the last two (the set-up paid once left out).

With ``--baseline`` (another version: a git revision, or a folder holding a checkout), only the build at
the last concurrency (200 samples at 40) is run, by both versions in turn, each against its own
loopback server: requests per sample change between versions, so the client's CPU is compared per
sample as well as per request.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from benchmark.perf.common import report

REGION = "10.0,47.5,12.0,48.5"  # room for over 3,000 samples 1.98 km apart


SERVE = """
import json, sys
from pathlib import Path
from noldo.testing.earthengine import Catalogue, FakeEarthEngine
catalogue = Catalogue((10.0, 47.5, 12.0, 48.5), "2019-11-01", "2021-11-01", 32632)
fake = FakeEarthEngine(catalogue, latency=float(sys.argv[1]))
print(json.dumps([fake.url, str(fake.service_account_key(Path(sys.argv[2])))]), flush=True)
fake.server.serve_forever()
"""


HERE = Path(__file__).resolve().parents[2]  # this checkout


def _child(code: Path | None) -> dict[str, Any]:
    """How a child process runs this checkout's noldo, or the one at ``code`` (``python -c`` looks in its
    working directory first)."""
    return {"cwd": str(code or HERE), "env": {**os.environ, "PYTHONPATH": str(code or HERE)}}


class Server:
    """The loopback Earth Engine in a child process (of the checkout at ``code``, or of this one)."""

    def __init__(self, latency: float, folder: str, code: Path | None = None) -> None:
        self.code = code
        self.process = subprocess.Popen([sys.executable, "-c", SERVE, str(latency), folder], stdout=subprocess.PIPE,
                                        text=True, **_child(code))
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the loopback Earth Engine did not start (exit code {self.process.wait()})")
        self.url, self.key = json.loads(line)

    def cpu_seconds(self) -> float:
        import psutil

        times = psutil.Process(self.process.pid).cpu_times()
        return times.user + times.system

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


BUILD = """
import inspect, json, resource, sys
from pathlib import Path
from noldo.build import BuildSpec, build
from noldo.sources.ee_source import EarthEngineSource
imported = resource.getrusage(resource.RUSAGE_SELF)
samples, tile, concurrency, url, out = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
runtime = {{"ee_url": url, "ee_project": "perf", "ee_concurrency": concurrency}}
if "ee_rate" in inspect.signature(EarthEngineSource).parameters:  # a baseline may predate the rate limit
    runtime["ee_rate"] = 100000
spec = BuildSpec({region!r}, "earthengine", samples=samples, tile_size=tile, runtime=runtime)
summary = build(spec, Path(out))
usage = resource.getrusage(resource.RUSAGE_SELF)
summary["peak_rss_mb"] = usage.ru_maxrss / 1024
summary["cpu_seconds"] = usage.ru_utime + usage.ru_stime
summary["import_cpu_seconds"] = imported.ru_utime + imported.ru_stime
print(json.dumps(summary))
"""


def run_build(server: Server, samples: int, tile: int, concurrency: int, folder: str) -> dict:
    """A whole ``noldo build`` process (of the server's checkout) and its summary, with its CPU and peak RSS."""
    child = _child(server.code)
    child["env"]["NOLDO_EE_SERVICE_ACCOUNT_KEY"] = server.key
    out = tempfile.mkdtemp(dir=folder)
    proc = subprocess.run([sys.executable, "-c", BUILD.format(region=REGION), str(samples), str(tile),
                           str(concurrency), server.url, out], capture_output=True, text=True, **child)
    if proc.returncode:
        raise RuntimeError(proc.stderr[-2000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


@contextlib.contextmanager
def checkout(revision: str, folder: str) -> Iterator[Path]:
    """The code of ``revision``: a folder holding another checkout, or a git revision of this repository
    (checked out in a temporary worktree under ``folder``, removed afterwards)."""
    if Path(revision).is_dir():
        yield Path(revision).resolve()
        return
    tree = Path(folder) / "baseline"
    git = ["git", "-C", str(HERE)]
    done = subprocess.run([*git, "worktree", "add", "--detach", str(tree), revision], capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"--baseline {revision}: neither a folder nor a revision of {HERE} "
                         f"({done.stderr.strip().splitlines()[-1] if done.stderr.strip() else 'git failed'})")
    try:
        yield tree
    finally:
        subprocess.run([*git, "worktree", "remove", "--force", str(tree)], capture_output=True)


def compare(baseline: Path, folder: str, latency: float, runs: int, samples: int, concurrency: int) -> list[tuple]:
    """The build of ``samples`` at ``concurrency`` by the checkout at ``baseline`` and by this one, each against
    its own loopback server, in alternating runs: what a sample costs, whatever the requests it takes."""
    rows = []
    for run in range(runs):
        for name, code in (("baseline", baseline), ("this checkout", None)):
            server = Server(latency, folder, code)
            served = server.cpu_seconds()
            s = run_build(server, samples, 64, concurrency, folder)
            served = server.cpu_seconds() - served
            server.stop()
            requests = s["requests"].get("listImages", 0) + s["requests"].get("computePixels", 0)
            rows.append((name, run + 1, s["samples"], requests, f"{requests / s['samples']:.2f}", f"{s['seconds']:.1f}",
                         f"{s['samples'] / s['seconds']:.1f}", f"{requests / s['seconds']:.1f}",
                         f"{1000 * s['cpu_seconds'] / s['samples']:.1f}", f"{1000 * s['cpu_seconds'] / requests:.1f}",
                         f"{1000 * served / requests:.1f}"))
    return rows


def scheduling_samples(concurrency: int) -> int:
    """Samples of a scheduling build: five per request slot (200 at concurrency 40), at least 10."""
    return max(10, 5 * concurrency)


def _counts(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split(","))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.2, help="seconds per request [0.2]")
    parser.add_argument("--concurrency", type=_counts, default=(1, 4, 16, 40), help="request concurrencies to time")
    parser.add_argument("--memory", type=_counts, default=(100, 1000, 3000),
                        help="sample counts of the memory builds")
    parser.add_argument("--full", type=int, default=32, help="samples of the byte-bound build (264×264 tiles)")
    parser.add_argument("--baseline", default=None, metavar="REV",
                        help="another version (a git revision of this repository, or a folder holding a checkout): "
                             "compare only the build at the last concurrency (200 samples at 40), each version "
                             "against its own loopback server")
    parser.add_argument("--runs", type=int, default=2, help="alternating runs of each version with --baseline [2]")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        if args.baseline is not None:
            concurrency = args.concurrency[-1]
            with checkout(args.baseline, folder) as code:
                rows = compare(code, folder, args.latency, args.runs, scheduling_samples(concurrency), concurrency)
            report("ee_build_baseline", ("version", "run", "samples", "requests", "requests/sample", "seconds",
                                         "samples/s", "requests/s", "client CPU ms/sample (process)",
                                         "client CPU ms/request (process)", "server CPU ms/request"),
                   rows, args.json, baseline=args.baseline, latency=args.latency)
            return
        rows, cpu = [], []
        for latency, concurrencies in ((args.latency, args.concurrency), (10 * args.latency, args.concurrency[-1:])):
            server = Server(latency, folder)
            for concurrency in concurrencies:
                samples = scheduling_samples(concurrency) if latency == args.latency else 6 * concurrency
                server_cpu = server.cpu_seconds()
                s = run_build(server, samples, 64, concurrency, folder)
                requests = s["requests"].get("listImages", 0) + s["requests"].get("computePixels", 0)
                rate, ideal = requests / s["seconds"], concurrency / latency
                process_ms = 1000 * s["cpu_seconds"] / requests
                build_ms = 1000 * (s["cpu_seconds"] - s["import_cpu_seconds"]) / requests
                rows.append((f"{latency:g}", concurrency, samples, requests, f"{s['requests_per_sample']:.2f}",
                             f"{s['seconds']:.1f}", f"{rate:.1f}", f"{ideal:.0f}", f"{rate / ideal:.0%}",
                             f"{s['samples'] / s['seconds']:.2f}", f"{process_ms:.1f}", f"{build_ms:.1f}",
                             f"{1000 * s['cpu_seconds'] / s['samples']:.1f}",
                             f"{s['request_cpu_ms'].get('computePixels', 0):.2f}",
                             f"{s['request_cpu_ms'].get('listImages', 0):.2f}"))
                cpu.append((build_ms / 1000, (server.cpu_seconds() - server_cpu) / requests))
            server.stop()
        client, served = (sum(c[i] for c in cpu) / len(cpu) for i in (0, 1))
        ceiling = (os.cpu_count() or 1) / (client + served)
        results["scheduling"] = rows
        report("ee_build_scheduling", ("latency s", "concurrency", "samples", "requests", "requests/sample",
                                        "seconds", "requests/s", "ideal requests/s", "of ideal", "samples/s",
                                        "client CPU ms/request (process)", "(after imports)",
                                        "client CPU ms/sample (process)",
                                        "request path ms: computePixels",
                                        "request path ms: listImages page"),
               rows, None)
        print(f"\nCPU per request: {client * 1000:.1f} ms in noldo + earthengine-api, {served * 1000:.1f} ms in the "
              f"loopback server; with {os.cpu_count()} cores that caps the rate at about {ceiling:.0f} requests/s "
              "on this machine, whatever the concurrency.\n")
        server = Server(0.0, folder)
        full = run_build(server, args.full, 264, 16, folder)
        mb = full["bytes_received"] / 1e6
        byte_rows = [(args.full, "264×264", f"{full['seconds']:.1f}", f"{mb:.0f}", f"{mb / full['seconds']:.1f}",
                      f"{full['samples'] / full['seconds']:.2f}")]
        print()
        report("ee_build_bytes", ("samples", "tile", "seconds", "MB received", "MB/s", "samples/s"), byte_rows, None)
        memory, spent = [], []
        for samples in args.memory:
            s = run_build(server, samples, 64, 16, folder)
            requests = s["requests"].get("listImages", 0) + s["requests"].get("computePixels", 0)
            spent.append((s["samples"], requests, s["cpu_seconds"]))
            memory.append((s["samples"], requests, f"{s['seconds']:.1f}", f"{1000 * s['cpu_seconds'] / requests:.1f}",
                           f"{s['peak_rss_mb']:.0f}"))
        server.stop()
        (n0, r0, c0), (n1, r1, c1) = spent[-2:] if len(spent) > 1 else (spent[0], spent[0])
        further = {"sample_ms": 1000 * (c1 - c0) / (n1 - n0), "request_ms": 1000 * (c1 - c0) / (r1 - r0),
                   "requests_per_sample": (r1 - r0) / (n1 - n0)} if n1 > n0 and r1 > r0 else None
        print()
        report("ee_build_memory", ("samples", "requests", "seconds", "client CPU ms/request (process)",
                                   "peak RSS (MB)"), memory, args.json, scheduling=rows, bytes=byte_rows,
               latency=args.latency, further=further)
        if further is not None:
            print(f"\nEach further sample from {n0} to {n1}: {further['sample_ms']:.1f} ms of client CPU for "
                  f"{further['requests_per_sample']:.2f} requests, {further['request_ms']:.1f} ms per request (the "
                  "set-up paid once left out).")


if __name__ == "__main__":
    main()
