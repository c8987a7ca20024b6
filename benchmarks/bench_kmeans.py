"""k-means for the bag-of-words baselines (section 4.1): 4,000 words on 1M MFCC frames.

    python benchmarks/bench_kmeans.py --workspace .cache/demo --frames 1000000 --words 4000

Frames are drawn at random from the workspace's feature store (39-dimensional MFCCs with
deltas, standardised as BagOfWords does); without --workspace they are Gaussian noise.
Times faiss's k-means as `BagOfWords.fit` runs it (the paper's setting: 20 iterations),
and assigning 1M frames to their nearest word (`BagOfWords.transform`'s search).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from common import command, machine


def main() -> None:
    import faiss

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace")
    parser.add_argument("--frames", type=int, default=1_000_000)
    parser.add_argument("--words", type=int, default=4000)
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(
        f"# {command()}\n# {machine()}, faiss {faiss.__version__}, "
        f"{faiss.omp_get_max_threads()} threads"
    )
    rng = np.random.default_rng(0)
    if args.workspace:
        from coldtune.audio.store import FeatureStore
        from coldtune.workspace import Workspace

        store = FeatureStore(Workspace(args.workspace).features_dir)
        per_song = -(-args.frames // len(store))
        parts = []
        for song in store.song_ids:
            frames = store.song(song, "mfcc")
            parts.append(frames[rng.choice(len(frames), min(per_song, len(frames)), replace=False)])
        data = np.concatenate(parts)[: args.frames].astype(np.float32)
        source = f"{len(store):,} songs of {args.workspace}"
    else:
        data = rng.standard_normal((args.frames, 39)).astype(np.float32)
        source = "Gaussian noise"
    data = np.ascontiguousarray((data - data.mean(axis=0)) / (data.std(axis=0) + 1e-6))
    print(f"{len(data):,} frames x {data.shape[1]} from {source}")
    fits, searches = [], []
    for repeat in range(args.repeats):
        kmeans = faiss.Kmeans(
            data.shape[1],
            args.words,
            niter=args.iterations,
            seed=repeat,
            max_points_per_centroid=10_000,
        )
        start = time.perf_counter()
        kmeans.train(data)
        fits.append(time.perf_counter() - start)
        index = faiss.IndexFlatL2(data.shape[1])
        index.add(kmeans.centroids)
        start = time.perf_counter()
        index.search(data, 1)
        searches.append(time.perf_counter() - start)
    fit, search = float(np.median(fits)), float(np.median(searches))
    print(
        f"k-means {args.words:,} words, {args.iterations} iterations: {fit:.1f} s "
        f"(median of {args.repeats}: {', '.join(f'{t:.1f}' for t in fits)}), "
        f"{fit / args.iterations:.2f} s/iteration"
    )
    print(
        f"assign {len(data):,} frames to words: {search:.1f} s "
        f"({len(data) / search / 1e6:.2f} M frames/s)"
    )


if __name__ == "__main__":
    main()
