"""The WPE objective, eq. (5), for one training batch: forward and backward of
`coldtune.content.objectives.WPELoss` (every listener of the batch's songs, flat)
against the padded version it replaced (each song's listeners padded to the batch's
most-played song), on the same batches.

    python benchmarks/bench_wpe.py --triplets W/world/train_triplets.txt --batch 128 --windows 4
    python benchmarks/bench_wpe.py --synth medium --batch 128

The plays are a Taste Profile triplets file (a demo world's) or `coldtune.data.synth`'s
generator; the user factors are random (the cost does not depend on their values). A
batch is `--batch` rows: `--batch / --windows` songs drawn uniformly from those with
listeners, as the training loops draw them, each repeated `--windows` times (the CNN's
32 songs x 4 windows are 128 rows, each window with its song's listeners; bow-mlp's
batch is 64 songs, one row each). Prints the medians of interleaved runs and checks
the two agree.
"""

from __future__ import annotations

import argparse

import numpy as np
import scipy.sparse as sp
import torch
from common import command, interleaved_medians, machine

from coldtune.cf.algebra import confidence
from coldtune.content.objectives import WPELoss
from coldtune.data.plays import read_plays
from coldtune.data.synth import synth_config, synth_plays
from coldtune.padded import padded_rows


class PaddedWPELoss(WPELoss):
    """eq. (5) as it was before: listeners padded to the batch's longest column."""

    def per_song(self, predicted: torch.Tensor, songs: np.ndarray) -> torch.Tensor:
        rows, conf, _ = padded_rows(self.by_song[:, songs].T.tocsr())
        rows, conf = torch.as_tensor(rows), torch.as_tensor(conf)
        dense = ((predicted @ self.gram) * predicted).sum(dim=1)
        scores = (self.X[rows] * predicted[:, None, :]).sum(dim=-1)
        listened = conf * (1.0 - scores) ** 2 - scores**2
        return dense + (listened * (conf > 0)).sum(dim=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--triplets", help="a Taste Profile triplets file")
    parser.add_argument("--synth", default="medium", help="else coldtune.data.synth's size")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--windows", type=int, default=1, help="rows per song")
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--batches", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    plays = (
        read_plays(args.triplets).matrix
        if args.triplets
        else synth_plays(synth_config(args.synth)).matrix
    )
    conf = confidence(sp.csr_matrix(plays, dtype=np.float64), alpha=2.0, epsilon=1.0)
    listeners = np.diff(sp.csc_matrix(plays).indptr)
    rng = np.random.default_rng(0)
    X = (0.1 * rng.standard_normal((plays.shape[0], args.factors))).astype(np.float32)
    flat, padded = WPELoss(X, conf), PaddedWPELoss(X, conf)
    played = np.flatnonzero(listeners)
    per_batch = max(1, args.batch // args.windows)
    batches = [
        np.repeat(rng.choice(played, size=per_batch), args.windows) for _ in range(args.batches)
    ]
    args.batch = len(batches[0])
    predicted = [torch.randn(args.batch, args.factors) for _ in batches]

    def run(loss):
        def step():
            for songs, y in zip(batches, predicted, strict=True):
                y = y.clone().requires_grad_(True)
                loss(y, songs).backward()

        return step

    for songs, y in zip(batches[:5], predicted[:5], strict=True):
        a, b = flat.per_song(y, songs), padded.per_song(y, songs)
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-4)
    widths = [int(listeners[songs].max()) for songs in batches]
    threads = torch.get_num_threads()
    print(f"# {command()}\n# {machine()}, torch {torch.__version__}, {threads} threads")
    print(
        f"# {plays.shape[0]:,} users x {plays.shape[1]:,} songs, {plays.nnz:,} pairs; "
        f"listeners per song: median {int(np.median(listeners[played]))}, "
        f"most {listeners.max():,}; "
        f"a batch of {args.batch} rows ({per_batch} songs): "
        f"{int(np.median([listeners[s].sum() for s in batches])):,} "
        f"listeners, padded to {int(np.median(widths)):,} each (medians)"
    )
    medians = interleaved_medians({"flat": run(flat), "padded": run(padded)}, args.repeats)
    per = {name: 1000 * seconds / args.batches for name, (seconds, _) in medians.items()}
    for name, ms in per.items():
        runs = ", ".join(f"{1000 * t / args.batches:.2f}" for t in medians[name][1])
        print(f"{name:7s} {ms:8.2f} ms a batch, forward and backward (runs: {runs})")
    print(f"flat against padded: {per['padded'] / per['flat']:.1f}x")


if __name__ == "__main__":
    main()
