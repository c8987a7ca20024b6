"""Ingest rate of a generated Taste Profile triplets file: coldtune vs pandas.read_csv.

python benchmarks/bench_ingest.py --size large --repeats 3
"""

from __future__ import annotations

import argparse
import resource
import tempfile
from pathlib import Path

import pandas as pd
from common import command, machine, median_seconds

from coldtune import read_plays
from coldtune.data.synth import SYNTH_SIZES, synth_config, synth_plays, write_plays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="large", choices=list(SYNTH_SIZES))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "train_triplets.txt"
        write_plays(synth_plays(synth_config(args.size)), path)
        rows = sum(1 for _ in open(path, "rb"))
        size_mb = path.stat().st_size / 1e6
        print(f"# {command()}\n# {machine()}")
        print(f"file: {rows:,} lines, {size_mb:,.0f} MB")
        ours, runs = median_seconds(lambda: read_plays(path), args.repeats)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
        print(
            f"coldtune read_plays: median {ours:.2f} s of {[round(t, 2) for t in runs]}"
            f" -> {rows / ours:,.0f} rows/s; peak RSS so far {peak:.2f} GB"
        )
        if not args.skip_pandas:

            def pandas_read():
                frame = pd.read_csv(path, sep="\t", header=None, names=["user", "song", "count"])
                # the same work: ids to rows and summed counts
                frame["u"] = frame["user"].astype("category").cat.codes
                frame["s"] = frame["song"].astype("category").cat.codes
                return frame.groupby(["u", "s"])["count"].sum()

            theirs, runs = median_seconds(pandas_read, args.repeats)
            print(
                f"pandas read_csv + codes + groupby: median {theirs:.2f} s of "
                f"{[round(t, 2) for t in runs]} -> {rows / theirs:,.0f} rows/s"
            )
            print(f"ratio: coldtune is {theirs / ours:.1f}x pandas")


if __name__ == "__main__":
    main()
