import json
import re

import numpy as np
from typer.testing import CliRunner

from coldtune.cli import app
from coldtune.data.plays import load_interactions
from coldtune.workspace import Workspace

runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_the_pipeline_from_the_command_line(tmp_path):
    triplets = tmp_path / "train_triplets.txt"
    w = tmp_path / "w"
    result = run("plays", "synth", triplets, "--size", "small", "--seed", "3")
    assert result.exit_code == 0, result.output
    assert "1,500 songs" in result.output
    result = run("plays", "ingest", triplets, "--workspace", w)
    assert result.exit_code == 0, result.output
    assert "2,000 users" in result.output
    result = run("split", "--workspace", w, "--cold-fraction", "0.25")
    assert result.exit_code == 0, result.output
    # a quarter of the songs somebody played (of the 1,500 generated, 1,488 were played)
    played = int(np.sum(np.diff(load_interactions(Workspace(w)).matrix.tocsc().indptr) > 0))
    assert played == 1_488
    assert json.loads((w / "split.json").read_text())["n_cold_songs"] == round(0.25 * played)
    result = run("wmf", "fit", "--workspace", w, "--factors", "8", "--iterations", "3")
    assert result.exit_code == 0, result.output
    assert "iteration   3/3: objective" in result.output
    history = json.loads((w / "wmf" / "history.json").read_text())
    assert len(history["objective"]) == 3
    assert json.loads((w / "wmf" / "config.json").read_text())["factors"] == 8
    result = run("evaluate", "--workspace", w)
    assert result.exit_code == 0, result.output
    assert "| upper bound |" in result.output
    assert (
        json.loads((w / "results" / "evaluation.json").read_text())["rows"][0]["model"] == "random"
    )


def test_bad_input_is_one_clear_line(tmp_path):
    bad = tmp_path / "t.txt"
    bad.write_text("a\ts\t1\nb\ts\tlots\n")
    result = run("plays", "ingest", bad, "--workspace", tmp_path / "w")
    assert result.exit_code == 2
    assert "t.txt:2: count 'lots' is not a non-negative integer" in result.output
    assert "Traceback" not in result.output
    result = run("plays", "ingest", bad, "--workspace", tmp_path / "w", "--on-bad-lines", "skip")
    assert result.exit_code == 0 and "skipped 1 bad lines" in result.output
    result = run("wmf", "fit", "--workspace", tmp_path / "w", "--backend", "magic")
    assert result.exit_code == 2 and "split" in result.output  # the split is missing first
    result = run("evaluate", "--workspace", tmp_path / "nowhere")
    assert result.exit_code == 2 and "coldtune plays ingest" in result.output


def test_train_names_a_bad_model_or_setting_before_any_work(tmp_path):
    result = runner.invoke(app, ["train", "cnn9", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "model must be one of" in result.output
    result = runner.invoke(app, ["train", "bow-mlp", "-w", str(tmp_path), "--optimizer", "adam9"])
    assert result.exit_code == 2 and "optimizer must be one of" in result.output
    result = runner.invoke(app, ["train", "bow-linear", "-w", str(tmp_path)])
    assert result.exit_code == 2 and "coldtune plays ingest" in result.output
    result = runner.invoke(app, ["train", "cnn", "-w", str(tmp_path), "--hidden", "5"])
    assert result.exit_code == 2 and "--hidden does not apply to cnn" in result.output
    assert "--architecture" in result.output  # and it says what cnn does take


def test_train_help_lists_exactly_the_options_of_the_model(tmp_path):
    import dataclasses

    from coldtune import content

    for name, spec in content.CONTENT_MODELS.items():
        result = runner.invoke(app, ["train", name, "--help"])
        assert result.exit_code == 0, result.output
        listed = re.findall(r"^  --([a-z-]+)", result.output, flags=re.M)
        assert listed == [f.name.replace("_", "-") for f in dataclasses.fields(spec.config)]
    # bow-mlp takes --batch-size (it used to be offered, then refused)
    result = runner.invoke(app, ["train", "bow-mlp", "-w", str(tmp_path), "--batch-size", "8"])
    assert result.exit_code == 2 and "coldtune plays ingest" in result.output
    result = runner.invoke(app, ["train", "bow-mlp", "-w", str(tmp_path), "--batch-size", "x"])
    assert result.exit_code == 2 and "--batch-size: 'x' is not a int" in result.output
