"""One table from several seeds: mean and standard error per row, paired differences.

A seed fixes the cold-start split and WMF's initial factors, so the rows of one seed
share their cold songs and their user factors. Comparing two models seed by seed (the
paired difference) therefore removes the part of the spread that both share, and says
more than comparing their two means. Pure functions: rows in, numbers and Markdown out.

    per_seed = {0: {"random": (0.031, 0.508), "bow-linear": (0.063, 0.631)},
                1: {"random": (0.033, 0.511), "bow-linear": (0.061, 0.629)}, ...}
    summarise_seeds(per_seed)["bow-linear"].auc.mean
    paired_differences(per_seed, reference="bow-linear")["random"].auc.high
    print(seeds_markdown(per_seed))

Standard error: the sample standard deviation (n - 1 in the denominator) over sqrt(n).
The 95% interval of a mean difference: mean +- t_{0.975, n-1} * SE, Student's t with
n - 1 degrees of freedom, as the n seeds give n differences. One seed gives no spread:
SE and interval are NaN.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy import stats

from coldtune.errors import ParameterError

Rows = Mapping[str, tuple[float, float]]  # model -> (mAP, AUC) of one seed
METRICS = ("map", "auc")


@dataclass(frozen=True)
class Estimate:
    """The mean of n values (one per seed), its standard error and a confidence interval."""

    mean: float
    se: float  # sample std / sqrt(n); NaN for n = 1
    low: float  # mean - t_{(1 + confidence) / 2, n - 1} * se
    high: float
    n: int


@dataclass(frozen=True)
class SeedRow:
    """One model over the seeds: an Estimate of each metric."""

    model: str
    map: Estimate
    auc: Estimate


def estimate(values, *, confidence: float = 0.95) -> Estimate:
    """Mean, standard error and the Student's t interval of `values` [shape=(n,)], n >= 1."""
    x = np.asarray(values, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ParameterError(f"expected a non-empty list of values, got shape {x.shape}")
    if not 0.0 < confidence < 1.0:
        raise ParameterError(f"confidence must be between 0 and 1, got {confidence!r}")
    n = x.size
    mean = float(x.mean())
    if n == 1:
        return Estimate(mean, math.nan, math.nan, math.nan, 1)
    se = float(x.std(ddof=1) / math.sqrt(n))
    half = float(stats.t.ppf((1.0 + confidence) / 2.0, df=n - 1)) * se
    return Estimate(mean, se, mean - half, mean + half, n)


def _models(per_seed: Mapping[int, Rows]) -> list[str]:
    """The models, in the first seed's order; every seed must hold every one of them."""
    if not per_seed:
        raise ParameterError("no seeds given: expected {seed: {model: (map, auc)}}")
    seeds = list(per_seed)
    models = list(per_seed[seeds[0]])
    for seed in seeds:
        missing = [m for m in models if m not in per_seed[seed]]
        extra = [m for m in per_seed[seed] if m not in models]
        if missing or extra:
            raise ParameterError(
                f"seed {seed} has rows {sorted(per_seed[seed])}, seed {seeds[0]} has "
                f"{sorted(models)}: every seed must score the same models (rerun the seeds "
                "that lack a row, or leave that row out of every seed)"
            )
    return models


def _values(per_seed: Mapping[int, Rows], model: str, metric: int) -> np.ndarray:
    return np.array([per_seed[seed][model][metric] for seed in per_seed], dtype=np.float64)


def summarise_seeds(
    per_seed: Mapping[int, Rows], *, confidence: float = 0.95
) -> dict[str, SeedRow]:
    """Per model, the mean, SE and interval of mAP and AUC over the seeds.

    per_seed : {seed: {model: (map, auc)}}; every seed holds the same models.
    Returns {model: SeedRow}, in the first seed's order of rows.
    """
    return {
        model: SeedRow(
            model,
            *(estimate(_values(per_seed, model, m), confidence=confidence) for m in (0, 1)),
        )
        for model in _models(per_seed)
    }


def paired_differences(
    per_seed: Mapping[int, Rows], *, reference: str = "bow-linear", confidence: float = 0.95
) -> dict[str, SeedRow]:
    """Per model, the seed-by-seed difference (model - reference) of mAP and AUC.

    Returns {model: SeedRow of the differences}, the reference itself left out. An
    interval that excludes 0 says the model differs from the reference at that
    confidence (over the seeds' variation: split and initial factors).
    """
    models = _models(per_seed)
    if reference not in models:
        raise ParameterError(
            f"the reference row {reference!r} is not among the rows ({', '.join(models)}); "
            "name one of them as the reference"
        )
    return {
        model: SeedRow(
            model,
            *(
                estimate(
                    _values(per_seed, model, m) - _values(per_seed, reference, m),
                    confidence=confidence,
                )
                for m in (0, 1)
            ),
        )
        for model in models
        if model != reference
    }


def _mean_se(value: Estimate, digits: int) -> str:
    if math.isnan(value.se):
        return f"{value.mean:.{digits}f}"
    return f"{value.mean:.{digits}f} ± {value.se:.{digits}f}"


def _difference(value: Estimate, digits: int) -> str:
    if math.isnan(value.se):
        return f"{value.mean:+.{digits}f}"
    return f"{value.mean:+.{digits}f} [{value.low:+.{digits}f}, {value.high:+.{digits}f}]"


def seeds_markdown(
    per_seed: Mapping[int, Rows],
    *,
    reference: str | None = "bow-linear",
    k: int = 500,
    confidence: float = 0.95,
    digits: int = 4,
) -> str:
    """The table as Markdown: mean ± SE of each metric over the seeds and, when
    `reference` names a row, each row's paired difference from it with its interval.
    A reference that is not among the rows is left out (no difference columns)."""
    summary = summarise_seeds(per_seed, confidence=confidence)
    if reference is not None and reference not in summary:
        reference = None
    differences = (
        paired_differences(per_seed, reference=reference, confidence=confidence)
        if reference is not None
        else {}
    )
    seeds = ", ".join(str(seed) for seed in per_seed)
    percent = f"{confidence:.0%}"
    lines = [f"Mean ± standard error over {len(per_seed)} seeds ({seeds})."]
    header = f"| Model | mAP@{k} | AUC |"
    rule = "| --- | ---: | ---: |"
    if reference is not None:
        lines[0] += (
            f" Differences: paired by seed, from {reference}, with their {percent} interval "
            f"(Student's t, {len(per_seed) - 1} degrees of freedom)."
        )
        header += f" mAP - {reference} | AUC - {reference} |"
        rule += " ---: | ---: |"
    lines += ["", header, rule]
    for model, row in summary.items():
        cells = [model, _mean_se(row.map, digits), _mean_se(row.auc, digits)]
        if reference is not None:
            if model == reference:
                cells += ["", ""]
            else:
                cells += [_difference(getattr(differences[model], m), digits) for m in METRICS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
