"""Load on `coldtune serve` over loopback: requests/s and latency percentiles.

    python benchmarks/bench_serve.py --workspace .cache/demo --seconds 20 --rounds 3

Starts `coldtune serve` in a subprocess on 127.0.0.1, then for each scenario keeps
`--clients` connections busy (one thread each, keep-alive, a new request as soon as the
last is answered) for `--seconds`, and records every request's latency:

- similar: GET /api/songs/{a random song}/similar?n=10 (both columns of Table 4);
- upload: POST /api/clips with a 30 s ogg clip of the world (decode, log-mel, CNN,
  nearest songs, likely listeners, map position).

Rounds alternate the scenarios; each figure is the median over rounds. The reference
is the same work done by the library in this process, without HTTP (one thread):
catalogue.similar and catalogue.embed_file, so the ratio is what the service costs on
top. The server and the clients share the machine's cores.
"""

from __future__ import annotations

import argparse
import http.client
import json
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
from common import command, machine

BOUNDARY = "coldtunebenchboundary"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def multipart(path: Path) -> bytes:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: audio/ogg\r\n\r\n'
    ).encode()
    return head + path.read_bytes() + f"\r\n--{BOUNDARY}--\r\n".encode()


def run_clients(port: int, make_request, clients: int, seconds: float) -> list[float]:
    """Latencies (s) of every request answered 200 within `seconds`, from `clients`
    threads each with its own keep-alive connection."""
    latencies: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def client(seed: int) -> None:
        rng = np.random.default_rng(seed)
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        mine = []
        while time.perf_counter() < stop:
            method, url, body, headers = make_request(rng)
            start = time.perf_counter()
            connection.request(method, url, body=body, headers=headers)
            response = connection.getresponse()
            response.read()
            if response.status != 200:
                failures.append(f"{response.status} {url}")
                break
            mine.append(time.perf_counter() - start)
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise SystemExit(f"requests failed: {failures[:3]}")
    return latencies


def summary(latencies: list[float], seconds: float) -> dict:
    ms = np.array(latencies) * 1000
    return {
        "requests_per_s": len(latencies) / seconds,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "requests": len(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--workspace", default=".cache/demo")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4])
    args = parser.parse_args()
    print(f"# {command()}\n# {machine()}")

    from coldtune.steps.catalogue import load_catalogue
    from coldtune.threads import one_thread
    from coldtune.workspace import Workspace

    workspace = Workspace(args.workspace)
    catalogue = load_catalogue(workspace)
    song_ids = [str(s) for s in catalogue.song_ids]
    clip = next(p for s, p in catalogue.clips.items() if catalogue.cold[catalogue.song_row(s)])
    body = multipart(clip)
    print(f"# {len(catalogue):,} songs, {catalogue.n_users:,} users, model {catalogue.model_name}")
    print(f"# upload: {clip.name}, {len(body):,} bytes")

    # the reference: the library in this process, no HTTP
    with one_thread():
        rng = np.random.default_rng(0)
        similar_s = statistics.median(
            _timed(lambda: catalogue.similar(song_ids[rng.integers(len(song_ids))], n=10))
            for _ in range(200)
        )
        embed_s = statistics.median(_timed(lambda: catalogue.embed_file(clip)) for _ in range(15))
    print(f"library, in process: similar {similar_s * 1000:.2f} ms, embed a clip "
          f"{embed_s * 1000:.1f} ms (medians)")  # fmt: skip

    scenarios = {
        "similar": lambda rng: (
            "GET",
            f"/api/songs/{song_ids[rng.integers(len(song_ids))]}/similar?n=10",
            None,
            {},
        ),
        "upload": lambda rng: (
            "POST",
            "/api/clips?n=10",
            body,
            {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
        ),
    }
    reference = {"similar": similar_s, "upload": embed_s}
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "coldtune.cli", "serve", "-w", args.workspace,
         "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        _wait_until_up(port, server)
        results: dict[tuple[str, int], list[dict]] = {}
        for _ in range(args.rounds):
            for clients in args.clients:
                for name, make in scenarios.items():
                    latencies = run_clients(port, make, clients, args.seconds)
                    results.setdefault((name, clients), []).append(summary(latencies, args.seconds))
        print("\n| scenario | clients | requests/s | p50 ms | p99 ms | p50 / library |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for (name, clients), rounds in results.items():
            med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
            print(
                f"| {name} | {clients} | {med['requests_per_s']:.1f} | {med['p50_ms']:.1f} | "
                f"{med['p99_ms']:.1f} | {med['p50_ms'] / 1000 / reference[name]:.1f}x |"
            )
        print(f"\n# medians over {args.rounds} rounds of {args.seconds:g} s each")
        print("# rounds:", json.dumps({f"{n}/{c}": r for (n, c), r in results.items()}))
    finally:
        server.terminate()
        server.wait(timeout=30)


def _timed(work) -> float:
    start = time.perf_counter()
    work()
    return time.perf_counter() - start


def _wait_until_up(port: int, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the service exited: {server.stderr.read().decode()[-2000:]}")
        try:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            connection.request("GET", "/api/health")
            if connection.getresponse().status == 200:
                return
        except OSError:
            time.sleep(0.5)
    raise SystemExit("the service did not start in 10 minutes")


if __name__ == "__main__":
    main()
