"""`coldtune add`: new releases' clips per second, from files to predicted factors.

    cd benchmarks; python bench_add.py --workspace ../.cache/demo --clips 64 --repeats 3

Writes `--clips` 40 s mp3 files (44.1 kHz stereo, bench_decode.py's music-like signal),
then times `add_releases` on a fresh copy of the workspace (hard links: nothing of the
original is written) for each repeat: decoding the middle 30 s, log-mel and MFCC in
`--workers` processes, committing the shards, and the clip model's predictions for the
new songs (the workspace's default clip model). Prints the median clips/s.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_decode import write_clip
from common import command, machine

from coldtune.steps.catalogue import choose_clip_model
from coldtune.steps.releases import add_releases
from coldtune.workspace import Workspace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--clips", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"# {command()}")
    print(f"# {machine()}")
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="bench-add-") as scratch:
        folder = Path(scratch) / "clips"
        folder.mkdir()
        for i in range(args.clips):
            write_clip(folder / f"SOBENCHRELEASE{i:04d}.mp3", rng, "mp3 44.1 kHz stereo")
        model = choose_clip_model(Workspace(args.workspace))
        rates = []
        for repeat in range(args.repeats):
            copy = Path(scratch) / f"W{repeat}"
            shutil.copytree(args.workspace, copy, copy_function=os.link)
            start = time.perf_counter()
            summary = add_releases(Workspace(copy), folder, workers=args.workers)
            seconds = time.perf_counter() - start
            assert summary.added == args.clips, summary.summary()
            rates.append(args.clips / seconds)
            print(f"run {repeat + 1}: {args.clips} clips in {seconds:.1f} s")
            shutil.rmtree(copy)
    print(
        f"coldtune add, {args.clips} 30 s mp3 clips (40 s files), {args.workers} workers, "
        f"model {model}: median {statistics.median(rates):.2f} clips/s "
        f"(runs {', '.join(f'{r:.2f}' for r in rates)})"
    )


if __name__ == "__main__":
    main()
