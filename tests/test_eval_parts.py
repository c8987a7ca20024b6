"""Evaluation by user ranges (`--users i/n`) merges into the one-process table."""

import itertools
import json

import numpy as np
import pytest
from test_protocol import build_workspace
from typer.testing import CliRunner

from coldtune import steps
from coldtune.cf.wmf import WMFConfig
from coldtune.cli import app
from coldtune.data.plays import load_interactions
from coldtune.data.splits import load_split
from coldtune.data.synth import synth_config, synth_plays
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.eval.parts import UserPart, merge_figures, part_figures


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """Plays, split, WMF and one content model's predictions (fold-in plus noise)."""
    workspace = build_workspace(tmp_path_factory.mktemp("w"), synth_plays(synth_config("small")))
    steps.wmf.fit(workspace, WMFConfig(factors=8, iterations=3))
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    factors = steps.wmf.load_wmf(workspace).fold_in_songs(split.cold_plays(interactions.matrix))
    factors += np.random.default_rng(0).normal(0, factors.std(), factors.shape)
    folder = workspace.models_dir("noisy")
    folder.mkdir(parents=True)
    ids = interactions.song_ids[split.cold_songs].astype(str)
    np.savez(folder / "predictions.npz", song_ids=ids, factors=factors.astype(np.float32))
    return workspace


def test_user_parts_cover_every_user_once():
    users = np.arange(10) * 3
    parts = [UserPart(i, 4).select(users) for i in (1, 2, 3, 4)]
    np.testing.assert_array_equal(np.concatenate(parts), users)
    assert [len(p) for p in parts] == [2, 3, 2, 3]
    assert UserPart.parse("3/4") == UserPart(3, 4) and UserPart.parse(None) is None
    with pytest.raises(ParameterError, match="--users must be i/n"):
        UserPart.parse("0/4")


def test_weighted_means_of_parts_equal_the_mean_over_all_users(rng):
    values = {"map": rng.random(101), "auc": rng.random(101)}
    values["auc"][[3, 50, 51]] = np.nan  # users who played every cold song
    cuts = [0, 7, 50, 52, 101]
    parts = [
        part_figures({m: v[a:b] for m, v in values.items()}) for a, b in itertools.pairwise(cuts)
    ]
    assert parts[2]["n_auc"] == 0 and np.isnan(parts[2]["auc"])
    merged = merge_figures(parts)
    assert merged["map"] == pytest.approx(values["map"].mean(), rel=1e-14)
    assert merged["auc"] == pytest.approx(np.nanmean(values["auc"]), rel=1e-14)
    assert (merged["n_map"], merged["n_auc"]) == (101, 98)


def test_merged_parts_equal_the_one_process_table(workspace):
    whole = steps.evaluate.evaluate(workspace)
    parts = [steps.evaluate.evaluate(workspace, users=UserPart(i, 3)) for i in (1, 2, 3)]
    assert sum(p["n_users_evaluated"] for p in parts) == whole["n_users_evaluated"] > 1000
    # a part's figures are its own users' means, not the whole table's
    assert parts[0]["rows"][2]["map"] != pytest.approx(whole["rows"][2]["map"], rel=1e-6)
    merged = steps.evaluate.merge_evaluation(workspace)
    assert [row["model"] for row in merged["rows"]] == ["random", "noisy", "upper bound"]
    assert merged["n_users_evaluated"] == whole["n_users_evaluated"] and merged["parts"] == 3
    for row, one in zip(merged["rows"], whole["rows"], strict=True):
        assert row["map"] == pytest.approx(one["map"], rel=1e-12, abs=0)
        assert row["auc"] == pytest.approx(one["auc"], rel=1e-12, abs=0)
        assert (row["n_map"], row["n_auc"]) == (one["n_map"], one["n_auc"])
    written = json.loads((workspace.results_dir / "evaluation.json").read_text())
    assert written["rows"] == merged["rows"]
    assert "Merged from 3 parts" in (workspace.results_dir / "evaluation.md").read_text()


def test_merge_refuses_missing_and_stale_parts(workspace, tmp_path):
    folder = workspace.results_dir / "parts"
    for path in folder.glob("*.json"):
        path.unlink()
    steps.evaluate.evaluate(workspace, users=UserPart(1, 2))
    with pytest.raises(WorkspaceError, match="parts 2/2 are missing"):
        steps.evaluate.merge_evaluation(workspace)
    steps.evaluate.evaluate(workspace, users=UserPart(2, 2))
    steps.evaluate.merge_evaluation(workspace)
    steps.evaluate.evaluate(workspace, users=UserPart(1, 3))  # a run with another n begins
    with pytest.raises(WorkspaceError, match="2 different runs"):
        steps.evaluate.merge_evaluation(workspace)
    (folder / "evaluation-part1of3.json").unlink()
    # new predictions: the parts no longer describe what the workspace holds
    predictions = workspace.models_dir("noisy") / "predictions.npz"
    saved = dict(np.load(predictions))
    np.savez(predictions, song_ids=saved["song_ids"], factors=saved["factors"] * 2 + 1)
    with pytest.raises(WorkspaceError, match="computed from other factors"):
        steps.evaluate.merge_evaluation(workspace)


def test_cli_evaluates_parts_and_merges(workspace):
    runner = CliRunner()
    for part in ("1/2", "2/2"):
        result = runner.invoke(app, ["evaluate", "-w", str(workspace.root), "--users", part])
        assert result.exit_code == 0, result.output
        assert f"evaluation-part{part[0]}of2.json" in result.output
    result = runner.invoke(app, ["evaluate", "-w", str(workspace.root), "--merge"])
    assert result.exit_code == 0, result.output
    assert "Merged from 2 parts" in result.output and "| noisy |" in result.output
    result = runner.invoke(app, ["evaluate", "-w", str(workspace.root), "--users", "3/2"])
    assert result.exit_code == 2 and "--users must be i/n" in result.output
