"""`coldtune experiment`: the protocol end to end and Table 2's layout."""

import json
from dataclasses import replace

import pytest
from typer.testing import CliRunner

from coldtune import content, steps
from coldtune.cf.wmf import WMFConfig
from coldtune.cli import app
from coldtune.data.synth import synth_config, synth_plays, write_plays
from coldtune.errors import ParameterError
from coldtune.steps.demo import DEMO_ROWS, DemoConfig
from coldtune.steps.experiment import (
    EXPERIMENTS,
    ModelRun,
    Stages,
    experiment_config,
    experiment_markdown,
    run_experiment,
)
from coldtune.workspace import Workspace

# the CNN rows are named by the registry from the preset's settings (cnn-<net>-<loss>)
CNN_MSE, CNN_WPE, CNN_UNIT = (run.row for run in EXPERIMENTS["demo"].models if run.model == "cnn")


def test_presets_are_the_papers_settings():
    subset, full = EXPERIMENTS["paper-subset"], EXPERIMENTS["paper-full"]
    assert (subset.split.n_top_songs, subset.split.n_users, subset.split.n_cold_songs) == (
        9_330,
        20_000,
        1_881,
    )
    assert (full.split.n_top_songs, full.split.n_users, full.split.n_cold_songs) == (
        None,
        None,
        46_728,
    )
    assert (subset.wmf.factors, full.wmf.factors) == (50, 400)
    assert subset.words == 4000
    rows = [run.row for run in subset.models]
    assert rows == [
        "bow-linear",
        "bow-mlp-mse",
        "bow-mlp-wpe",
        "mlr",
        CNN_MSE,
        CNN_WPE,
        "bow-linear-unit",
        CNN_UNIT,
        "metadata",
    ]
    assert [run.row for run in full.models] == rows
    # at paper size the CNN may train for 60 epochs (the validation songs stop it)
    for preset in (subset, full):
        cnn = [dict(run.options) for run in preset.models if run.model == "cnn"]
        assert [(c["max_epochs"], c["patience"]) for c in cnn] == [(60, 10)] * 3
    seeded = experiment_config("paper-subset", seed=3, backend="torch")
    assert (seeded.split.seed, seeded.wmf.seed, seeded.wmf.backend) == (3, 3, "torch")
    with pytest.raises(ParameterError, match="preset must be one of"):
        experiment_config("table-9")
    # the demo preset adds bow-linear and the MSE CNN with unit-norm targets
    assert CNN_UNIT == "cnn-small-mse-unit-avg"
    demo_rows = [run.row for run in EXPERIMENTS["demo"].models]
    assert demo_rows[-3:] == ["bow-linear-unit", CNN_UNIT, "metadata"]
    unit = dict(EXPERIMENTS["demo"].models[-2].options)
    assert unit["target"] == "unit" and unit["average"] == 0.99
    assert unit["max_epochs"] == 30 and unit["patience"] == 10
    # --row: those rows, and bow-linear's, which the paired differences need
    only = experiment_config("demo", rows=[CNN_MSE])
    assert [run.row for run in only.models] == ["bow-linear", CNN_MSE]
    with pytest.raises(ParameterError, match="has no row 'cnn-huge'.*bow-mlp-mse"):
        experiment_config("demo", rows=["cnn-huge"])


def test_make_demo_trains_the_rows_that_answer_the_question():
    """`coldtune demo` (make demo) trains bow-linear, the CNN that the demo preset settled
    on and its control, and Table 2's quick rows; --all-rows every row of the preset."""
    assert DemoConfig().rows == DEMO_ROWS
    rows = [run.row for run in experiment_config("demo", rows=DEMO_ROWS).models]
    assert rows == ["bow-linear", "bow-mlp-mse", "mlr", "bow-linear-unit", CNN_UNIT, "metadata"]
    assert CNN_MSE not in rows and CNN_WPE not in rows and "bow-mlp-wpe" not in rows


def test_rows_without_their_data_are_listed_not_run(tmp_path):
    write_plays(synth_plays(synth_config("tiny")), tmp_path / "plays.txt")
    workspace = Workspace(tmp_path / "W")
    steps.plays.ingest(tmp_path / "plays.txt", workspace)
    config = replace(EXPERIMENTS["demo"], wmf=WMFConfig(factors=8, iterations=3))
    events = []
    stages = Stages(on_stage=lambda event, name: events.append((event, name)))
    results = run_experiment(workspace, config, stages=stages)
    assert [row["model"] for row in results["rows"]] == ["random", "upper bound"]
    skipped = {row["model"]: row["why"] for row in results["skipped"]}
    assert set(skipped) == {run.row for run in config.models}
    assert "coldtune audio extract" in skipped[CNN_MSE]
    assert "coldtune tags ingest" in skipped["metadata"]
    assert [name for event, name in events if event == "done"] == list(results["stages"])
    assert list(results["stages"]) == ["split", "WMF, 8 factors (implicit)", "evaluate"]
    saved = json.loads((workspace.results_dir / "experiment.json").read_text())
    assert saved["rows"] == results["rows"] and saved["config"]["wmf"]["factors"] == 8
    table = (workspace.results_dir / "experiment.md").read_text()
    assert "| metadata | not run: no tags in the workspace" in table
    assert table == experiment_markdown(results)


def test_markdown_has_table_2s_layout():
    results = {
        "title": "Cold-start recommendation (section 5.2)",
        "k": 500,
        "n_users": 20_000,
        "n_users_evaluated": 19_000,
        "n_songs": 9_330,
        "n_cold_songs": 1_881,
        "factors": 50,
        "rows": [
            {"model": "random", "map": 0.00327, "auc": 0.49674},
            {"model": "mlr", "map": 0.01801, "auc": 0.60642},
        ],
        "labels": {"mlr": "metric learning to rank"},
        "stages": {"split": 1.5},
    }
    lines = experiment_markdown(results).splitlines()
    assert (
        "19,000 users evaluated (of 20,000), 9,330 songs of which 1,881 cold, 50 factors." in lines
    )
    assert "| random | random | 0.00327 | 0.49674 |" in lines
    assert "| mlr | metric learning to rank | 0.01801 | 0.60642 |" in lines
    assert "| split | 1.5 |" in lines


def test_cli_names_a_bad_preset(tmp_path):
    result = CliRunner().invoke(app, ["experiment", "-w", str(tmp_path), "--preset", "nope"])
    assert result.exit_code == 2 and "preset must be one of demo, paper-subset" in result.output


def test_model_run_rows_are_the_folders_the_trainer_writes(small_demo):
    """Rows are named by the registry alone: the experiment's row of each run is the
    W/models/ folder `steps.train.run` wrote for it, and the label the registry gives."""
    workspace, results = small_demo
    runs = EXPERIMENTS["demo"].models
    folders = {p.parent.name for p in workspace.models_root.glob("*/predictions.npz")}
    assert {run.row for run in runs} == folders
    for run in runs:
        report = json.loads((workspace.models_dir(run.row) / "report.json").read_text())
        assert (report["model"], report["row"]) == (run.model, run.row)
        spec = content.spec(run.model)
        assert results["labels"][run.row] == spec.row_label(run.config()) == run.label
    wpe = ModelRun("cnn", (("architecture", "global-pooling"), ("objective", "wpe")))
    assert wpe.row == content.spec("cnn").row(wpe.config())


def test_rows_come_in_table_2s_order(small_demo):
    _, results = small_demo
    rows = [row["model"] for row in results["rows"]]
    assert rows == [
        "random",
        "bow-linear",
        "bow-mlp-mse",
        "bow-mlp-wpe",
        "mlr",
        CNN_MSE,
        CNN_WPE,
        "bow-linear-unit",
        CNN_UNIT,
        "metadata",
        "timbre ceiling",
        "audible ceiling",
        "upper bound",
    ]
    # the demo world's reference rows are marked, labelled and come from its records
    marked = [row["model"] for row in results["rows"] if row.get("reference")]
    assert marked == ["timbre ceiling", "audible ceiling"]
    assert "world's records" in experiment_markdown(results)


def test_seeds_are_repeated_summarised_and_resumed(tmp_path, monkeypatch):
    """Two seeds: each row's mean and SE are those of its two figures, by hand; a second
    run finds both seeds done and trains nothing."""
    import coldtune.steps.experiment as experiment

    write_plays(synth_plays(synth_config("tiny")), tmp_path / "plays.txt")
    workspace = Workspace(tmp_path / "W")
    steps.plays.ingest(tmp_path / "plays.txt", workspace)
    small = replace(EXPERIMENTS["demo"], wmf=WMFConfig(factors=4, iterations=2))
    monkeypatch.setitem(EXPERIMENTS, "demo", small)
    results = experiment.run_seeds(workspace, "demo", seeds=[3, 4])
    assert results["seeds"] == [3, 4]
    for row in results["rows"]:
        a, b = (next(r for r in results["per_seed"][s] if r["model"] == row["model"]) for s in "34")
        assert row["auc"] == pytest.approx((a["auc"] + b["auc"]) / 2)
        assert row["auc_se"] == pytest.approx(abs(a["auc"] - b["auc"]) / 2)  # sd/sqrt(2)
    # each seed made its own split
    splits = [
        json.loads(p.read_text())["config"]["split"]["seed"]
        for p in sorted((workspace.results_dir / "seeds").glob("*.json"))
    ]
    assert splits == [3, 4]
    assert "Mean ± standard error over 2 seeds (3, 4)" in experiment_markdown(results)

    def refuse(*args, **kwargs):
        raise AssertionError("a finished seed was run again")

    monkeypatch.setattr(experiment, "run_experiment", refuse)
    again = experiment.run_seeds(workspace, "demo", seeds=[3, 4])
    assert again["rows"] == results["rows"]


def test_every_model_trains_from_the_repetitions_seed(tmp_path, monkeypatch):
    """The seed of a repetition reaches every content model's config, not only the split
    and WMF: seeds 0 and 1 train each model from seeds 0 and 1."""
    import coldtune.steps.experiment as experiment

    write_plays(synth_plays(synth_config("tiny")), tmp_path / "plays.txt")
    workspace = Workspace(tmp_path / "W")
    steps.plays.ingest(tmp_path / "plays.txt", workspace)
    for path in (workspace.features_dir / "config.json", workspace.tags_path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")  # present: no row is skipped (training is replaced below)
    trained = []
    monkeypatch.setattr(
        experiment.train_step,
        "run",
        lambda workspace, model, config: trained.append((model, config.seed)) or {},
    )
    for seed in (0, 1):
        config = experiment_config("demo", seed=seed)
        config = replace(config, wmf=replace(config.wmf, factors=4, iterations=2))
        run_experiment(workspace, config)
    models = [run.model for run in EXPERIMENTS["demo"].models]
    assert trained == [(m, 0) for m in models] + [(m, 1) for m in models]
