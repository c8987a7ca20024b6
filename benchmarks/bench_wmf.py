"""WMF seconds per iteration: our backends vs implicit called directly on the same matrix.

    python benchmarks/bench_wmf.py --size large --factors 50 --iterations 5 --repeats 3

The wrapper's overhead (confidence of eq. 2, the initial factors, and with tracking on
the exact objective of eq. 3 after every iteration) is the ratio of its time to
implicit's own on the same confidence matrix.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from common import command, interleaved_medians, machine
from threadpoolctl import threadpool_limits

from coldtune import WeightedMatrixFactorization
from coldtune.cf.algebra import confidence
from coldtune.data.synth import SYNTH_SIZES, synth_config, synth_plays


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", default="large", choices=list(SYNTH_SIZES))
    parser.add_argument("--factors", type=int, default=50)
    parser.add_argument("--iterations", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--backends", default="implicit,torch")
    args = parser.parse_args()
    plays = synth_plays(synth_config(args.size)).matrix
    k, n = args.factors, args.iterations
    print(
        f"# {command()}\n# {machine()}; torch device: "
        f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'cpu'}"
    )
    print(
        f"matrix: {plays.shape[0]:,} users x {plays.shape[1]:,} songs, {plays.nnz:,} plays;"
        f" {k} factors, {n} iterations, median of {args.repeats} interleaved runs"
    )

    def implicit_direct():
        from implicit.cpu.als import AlternatingLeastSquares

        conf = confidence(plays, alpha=2.0, epsilon=1.0)
        with threadpool_limits(1, "blas"):
            model = AlternatingLeastSquares(factors=k, regularization=1.0, iterations=n)
            # the same starting point as coldtune's: CG's early exit makes the time per
            # iteration depend on it
            rng = np.random.default_rng(0)
            model.user_factors = rng.standard_normal((plays.shape[0], k), dtype=np.float32) * 0.01
            model.item_factors = rng.standard_normal((plays.shape[1], k), dtype=np.float32) * 0.01
            model.fit(conf, show_progress=False)

    runs = {"implicit directly": implicit_direct}
    for backend in args.backends.split(","):
        for track in (False, True):

            def ours(backend=backend, track=track):
                WeightedMatrixFactorization(
                    k, iterations=n, backend=backend, track_objective=track
                ).fit(plays)

            runs[f"coldtune {backend}, objective {'tracked' if track else 'off'}"] = ours
    medians = interleaved_medians(runs, args.repeats)
    reference = medians["implicit directly"][0]
    for label, (seconds, _) in medians.items():
        print(
            f"{label:<40} {seconds / n:7.3f} s/iteration  "
            f"({seconds / reference:.2f}x implicit directly)"
        )


if __name__ == "__main__":
    main()
