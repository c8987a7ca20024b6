"""Aggregation over seeds: mean, standard error, paired differences, against hand sums."""

import math

import pytest

from coldtune.errors import ParameterError
from coldtune.eval.seeds import estimate, paired_differences, seeds_markdown, summarise_seeds

# {seed: {model: (mAP, AUC)}}
PER_SEED = {
    0: {"random": (0.03, 0.50), "bow-linear": (0.06, 0.63), "cnn": (0.09, 0.66)},
    1: {"random": (0.03, 0.51), "bow-linear": (0.07, 0.62), "cnn": (0.10, 0.66)},
    2: {"random": (0.04, 0.52), "bow-linear": (0.08, 0.64), "cnn": (0.08, 0.67)},
}
T_975_2 = 4.302652729911275  # Student's t, 97.5th percentile, 2 degrees of freedom


def test_mean_and_standard_error_per_row():
    summary = summarise_seeds(PER_SEED)
    assert list(summary) == ["random", "bow-linear", "cnn"]
    bow = summary["bow-linear"]
    # mAP 0.06, 0.07, 0.08: mean 0.07, sample std 0.01, SE 0.01 / sqrt(3)
    assert bow.map.mean == pytest.approx(0.07)
    assert bow.map.se == pytest.approx(0.01 / math.sqrt(3))
    assert bow.map.n == 3
    # AUC 0.63, 0.62, 0.64: the same spread
    assert bow.auc.mean == pytest.approx(0.63)
    assert bow.auc.se == pytest.approx(0.01 / math.sqrt(3))
    assert summary["random"].map.mean == pytest.approx(0.1 / 3)


def test_paired_difference_against_the_reference_row():
    differences = paired_differences(PER_SEED, reference="bow-linear")
    assert set(differences) == {"random", "cnn"}
    cnn = differences["cnn"]
    # mAP differences 0.03, 0.03, 0.00: mean 0.02; deviations 0.01, 0.01, -0.02 give a
    # sample variance 0.0006 / 2 = 0.0003, so SE = sqrt(0.0003 / 3) = 0.01
    assert cnn.map.mean == pytest.approx(0.02)
    assert cnn.map.se == pytest.approx(0.01)
    assert (cnn.map.low, cnn.map.high) == pytest.approx(
        (0.02 - T_975_2 * 0.01, 0.02 + T_975_2 * 0.01)
    )
    # AUC differences 0.03, 0.04, 0.03: mean 0.1 / 3; deviations -1/300, 2/300, -1/300
    # give a sample variance (6 / 300^2) / 2, and SE = sqrt(that / 3)
    se = math.sqrt(6 / 300**2 / 2 / 3)
    assert cnn.auc.mean == pytest.approx(0.1 / 3)
    assert cnn.auc.se == pytest.approx(se)
    assert cnn.auc.low == pytest.approx(0.1 / 3 - T_975_2 * se)
    assert cnn.auc.low > 0  # the interval excludes 0: cnn's AUC is above bow-linear's
    # random - bow-linear, AUC: -0.13, -0.11, -0.12: mean -0.12, sample std 0.01
    assert differences["random"].auc.mean == pytest.approx(-0.12)
    assert differences["random"].auc.se == pytest.approx(0.01 / math.sqrt(3))


def test_one_seed_has_no_spread_and_bad_input_says_what_is_wrong():
    single = estimate([0.5])
    assert single.mean == 0.5 and math.isnan(single.se) and math.isnan(single.low)
    with pytest.raises(ParameterError, match="reference row 'mlr'"):
        paired_differences(PER_SEED, reference="mlr")
    ragged = {**PER_SEED, 3: {"random": (0.03, 0.5), "bow-linear": (0.06, 0.6)}}
    with pytest.raises(ParameterError, match="seed 3 has rows"):
        summarise_seeds(ragged)
    with pytest.raises(ParameterError, match="no seeds"):
        summarise_seeds({})


def test_markdown_table():
    table = seeds_markdown(PER_SEED, reference="bow-linear", digits=3)
    lines = table.splitlines()
    assert lines[0].startswith("Mean ± standard error over 3 seeds (0, 1, 2).")
    assert "95% interval" in lines[0] and "2 degrees of freedom" in lines[0]
    assert lines[2] == "| Model | mAP@500 | AUC | mAP - bow-linear | AUC - bow-linear |"
    assert lines[4] == (
        "| random | 0.033 ± 0.003 | 0.510 ± 0.006 "
        "| -0.037 [-0.051, -0.022] | -0.120 [-0.145, -0.095] |"
    )
    assert lines[5] == "| bow-linear | 0.070 ± 0.006 | 0.630 ± 0.006 |  |  |"
    assert lines[6].startswith("| cnn | 0.090 ± 0.006 | 0.663 ± 0.003 | +0.020 [-0.023, +0.063] |")
    # without a reference row: the two metric columns only
    plain = seeds_markdown({0: {"random": (0.03, 0.5)}}, reference="bow-linear")
    assert "| random | 0.0300 | 0.5000 |" in plain and "bow-linear" not in plain
