"""PCA of the bag-of-words word frequencies (section 4.1's "PCA, keeping 95% of the
variance"): the scatter matrix's eigendecomposition (`coldtune.content.bow.PCA`)
against the SVD of the songs x words matrix that it replaced, and scikit-learn's PCA.

    python benchmarks/bench_pca.py --songs 7385 --words 4000 --repeats 3

The word frequencies are drawn the way a codebook makes them: each song a mixture of a
few of `--topics` word distributions, `--frames` frames counted into words, divided by
the frames; float32, as `BagOfWords.transform` gives them. 7,385 x 4,000 is the
paper-size world's warm songs and Table 2's codebook; bow-linear fits the PCA twice (the
training part, then every warm song), bow-mlp and mlr once. Prints the medians of
interleaved runs, the components kept, and each one's accuracy: the largest error of the
projections onto each component (up to its sign), relative to that component's largest
value, against an SVD in float64; then, on `--memory-songs` songs (more than the 8,192
the scatter matrix sums at a time), each PCA's peak of numpy's allocations beyond the
frequencies themselves (tracemalloc).
"""

from __future__ import annotations

import argparse
import tracemalloc

import numpy as np
from common import command, interleaved_medians, machine
from threadpoolctl import threadpool_info

from coldtune.content.bow import PCA


class SvdPCA(PCA):
    """The PCA as it was before: the SVD of the centred songs x words matrix."""

    def fit(self, X: np.ndarray) -> SvdPCA:
        self.mean_ = X.mean(axis=0)
        _, singular, components = np.linalg.svd(X - self.mean_, full_matrices=False)
        explained = np.cumsum(singular**2) / max(float(np.sum(singular**2)), 1e-12)
        keep = int(np.searchsorted(explained, self.variance) + 1)
        self.components_ = components[: min(keep, len(components))]
        return self


def word_frequencies(songs: int, words: int, topics: int, frames: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    topic_words = rng.dirichlet(np.full(words, 0.05), size=topics)
    mixtures = rng.dirichlet(np.full(topics, 0.3), size=songs)
    chances = mixtures @ topic_words
    counts = np.stack([rng.multinomial(frames, p / p.sum()) for p in chances])
    return (counts / frames).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--songs", type=int, default=7385)
    parser.add_argument("--words", type=int, default=4000)
    parser.add_argument("--topics", type=int, default=60)
    parser.add_argument("--frames", type=int, default=1292, help="frames of a 30 s clip")
    parser.add_argument("--variance", type=float, default=0.95)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--memory-songs", type=int, default=30000)
    parser.add_argument("--memory-words", type=int, default=1000)
    args = parser.parse_args()
    blas = ", ".join(f"{b['internal_api']} {b['num_threads']} threads" for b in threadpool_info())
    print(f"# {command()}\n# {machine()}; {blas}")
    X = word_frequencies(args.songs, args.words, args.topics, args.frames, seed=0)
    print(
        f"word frequencies: {args.songs:,} songs x {args.words:,} words, "
        f"{np.count_nonzero(X) / X.size:.1%} nonzero; median of {args.repeats} interleaved runs"
    )
    fitted: dict[str, object] = {}

    def contender(name, make):
        def run():
            fitted[name] = make().fit(X)

        return run

    runs = {
        "coldtune: eigh of the scatter matrix": contender("eigh", lambda: PCA(args.variance)),
        "before: SVD of songs x words": contender("svd", lambda: SvdPCA(args.variance)),
    }
    if not args.skip_sklearn:
        from sklearn.decomposition import PCA as SkPCA

        runs["scikit-learn PCA(svd_solver='full')"] = contender(
            "sklearn", lambda: SkPCA(n_components=args.variance, svd_solver="full")
        )
    medians = interleaved_medians(runs, args.repeats)
    base = medians["before: SVD of songs x words"][0]
    for name, (seconds, times) in medians.items():
        spread = f"runs {min(times):.2f}-{max(times):.2f} s"
        print(f"  {name:40s} {seconds:7.2f} s  ({base / seconds:5.2f}x the SVD; {spread})")
    ours, svd = fitted["eigh"], fitted["svd"]
    kept = (ours.components_.shape[0], svd.components_.shape[0])
    print(f"components kept for {args.variance:.0%} of the variance: {kept[0]} (SVD: {kept[1]})")
    exact = SvdPCA(args.variance).fit(X.astype(np.float64))
    n = min(*kept, exact.components_.shape[0])
    truth = exact.transform(X.astype(np.float64))[:, :n]
    for name, pca in [("coldtune", ours), ("before (SVD)", svd)]:
        got = pca.transform(X)[:, :n].astype(np.float64)
        signs = np.sign(np.sum(got * truth, axis=0))
        error = np.abs(got * signs - truth).max(axis=0) / np.abs(truth).max(axis=0)
        print(
            f"  {name:14s} against float64's SVD, {n} components: relative error "
            f"median {np.median(error):.1e}, largest {error.max():.1e}"
        )
    X = word_frequencies(args.memory_songs, args.memory_words, args.topics, args.frames, seed=1)
    print(
        f"peak memory of a fit beyond the {X.nbytes / 1e6:,.0f} MB of frequencies "
        f"({args.memory_songs:,} songs x {args.memory_words:,} words, float32):"
    )
    for name, make in [("coldtune (scatter matrix)", PCA), ("before (SVD)", SvdPCA)]:
        tracemalloc.start()
        make(args.variance).fit(X)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(f"  {name:28s} {peak / 1e6:8,.0f} MB ({peak / X.nbytes:.2f}x the frequencies)")


if __name__ == "__main__":
    main()
