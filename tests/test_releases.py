"""New releases (`coldtune add`): clips with no plays join the catalogue as cold songs,
once each, predicted by the clip model, without touching the split, WMF or evaluation."""

import csv
import os
import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from coldtune.catalogue import ClipModel
from coldtune.cli import app
from coldtune.steps import evaluate as evaluate_step
from coldtune.steps.catalogue import load_catalogue, read_releases
from coldtune.steps.releases import add_releases
from coldtune.workspace import Workspace

runner = CliRunner()


@pytest.fixture()
def workspace(small_workspace, tmp_path):
    root = tmp_path / "W"
    shutil.copytree(small_workspace.root, root, copy_function=os.link)
    return Workspace(root)


def new_clips(workspace, folder, catalogue):
    """Two cold songs' clips under new ids, a text file and an empty file."""
    folder.mkdir()
    originals = [str(s) for s in catalogue.song_ids[catalogue.cold][:2]]
    for i, song in enumerate(originals):
        shutil.copy(catalogue.clips[song], folder / f"SONEWRELEASE0000{i}.ogg")
    (folder / "SONEWNOTAUDIO00000.ogg").write_text("not audio")
    (folder / "SONEWEMPTY00000000.ogg").write_bytes(b"")
    return originals


def test_added_clips_become_cold_songs_once_and_answer_like_any_other(workspace, tmp_path):
    before = load_catalogue(workspace)
    originals = new_clips(workspace, tmp_path / "new", before)
    manifest = tmp_path / "new.csv"
    with open(manifest, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "path", "artist", "title"])
        for name in sorted(os.listdir(tmp_path / "new")):
            artist = "New Artist" if "RELEASE00000" in name else ""
            writer.writerow([name.split(".")[0], f"new/{name}", artist, f"Title {name[:16]}"])
    result = runner.invoke(app, ["add", "--manifest", str(manifest), "-w", str(workspace.root)])
    assert result.exit_code == 1, result.output  # two files rejected
    assert "2 new songs added, 0 already in the catalogue; 2 releases" in result.output
    assert [r["song_id"] for r in read_releases(workspace)] == [
        "SONEWRELEASE00000", "SONEWRELEASE00001"
    ]  # fmt: skip

    catalogue = load_catalogue(workspace)
    assert len(catalogue) == len(before) + 2 and catalogue.cold[-2:].all()
    np.testing.assert_array_equal(catalogue.song_ids[: len(before)], before.song_ids)
    np.testing.assert_array_equal(catalogue.user_factors, before.user_factors)
    assert catalogue.label(len(before)) == "New Artist - Title SONEWRELEASE0000"
    for i, original in enumerate(originals):
        new = f"SONEWRELEASE0000{i}"
        row = catalogue.song_row(new)
        # the same audio: the same predicted factors, so the original is its nearest song
        np.testing.assert_allclose(
            catalogue.predicted_factors[row],
            catalogue.predicted_factors[catalogue.song_row(original)],
            atol=1e-5,
        )
        found = catalogue.similar(new, n=3)
        assert found["usage"] == []  # no plays: no usage pattern
        assert str(catalogue.song_ids[found["predicted"][0].index]) == original
        assert found["predicted"][0].similarity == pytest.approx(1.0, abs=1e-5)
        assert catalogue.training_plays[:, row].nnz == catalogue.held_out_plays[:, row].nnz == 0
    assert catalogue.search("title sonewrelease00001") == [len(before) + 1]
    user = str(catalogue.user_ids[0])
    picks = catalogue.recommend(user, n=len(catalogue), cold_only=True)
    assert {"SONEWRELEASE00000", "SONEWRELEASE00001"} <= {
        str(catalogue.song_ids[p["row"]]) for p in picks
    }
    shown = runner.invoke(app, ["similar", "SONEWRELEASE00000", "-w", str(workspace.root)])
    assert shown.exit_code == 0 and "(no plays yet)" in shown.output

    again = runner.invoke(app, ["add", "--manifest", str(manifest), "-w", str(workspace.root)])
    assert "0 new songs added, 2 already in the catalogue; 2 releases" in again.output
    assert len(read_releases(workspace)) == 2 and len(load_catalogue(workspace)) == len(before) + 2


def test_only_new_songs_are_predicted_and_evaluation_does_not_change(
    workspace, tmp_path, monkeypatch
):
    results = evaluate_step.evaluate(workspace)
    catalogue = load_catalogue(workspace)  # fills the clip model's cache
    new_clips(workspace, tmp_path / "new", catalogue)
    predicted = []
    original = ClipModel.predict_songs

    def counted(self, songs):
        predicted.extend(song.song_id for song in songs)
        return original(self, songs)

    monkeypatch.setattr(ClipModel, "predict_songs", counted)
    summary = add_releases(workspace, tmp_path / "new")
    assert summary.added == 2 and summary.extract.rejected_total == 2
    assert sorted(predicted) == ["SONEWRELEASE00000", "SONEWRELEASE00001"]
    load_catalogue(workspace)
    assert len(predicted) == 2  # from the cache now
    after = evaluate_step.evaluate(workspace)
    assert [(r["model"], r["map"], r["auc"]) for r in after["rows"]] == [
        (r["model"], r["map"], r["auc"]) for r in results["rows"]
    ]
