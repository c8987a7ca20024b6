"""Tag prediction (5.1), the song map (Figure 1) and the report, on the small world."""

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from coldtune.cli import app
from coldtune.errors import ParameterError
from coldtune.eval.song_map import default_colour_tags, script_json, tsne
from coldtune.eval.tags import (
    TagConfig,
    cross_validated_auc,
    most_frequent_tags,
    tag_labels,
    tag_table,
)
from coldtune.steps.analyses import song_tag_sets
from coldtune.steps.train import training_set

runner = CliRunner()


# --------------------------------------------------------------------------- tags


def test_auc_is_one_for_a_separating_feature_and_near_half_for_noise(rng):
    labels = np.arange(200) % 4 == 0
    separating = np.column_stack([labels + 0.01 * rng.standard_normal(200), rng.random(200)])
    assert cross_validated_auc(separating, labels, TagConfig()) == 1.0
    noise = rng.standard_normal((200, 3))
    assert abs(cross_validated_auc(noise, labels, TagConfig()) - 0.5) < 0.15


def test_the_most_frequent_tags_and_their_labels():
    song_tags = {"a": {"rock", "pop"}, "b": {"rock"}, "c": {"jazz", "pop"}, "d": {"rock"}}
    assert most_frequent_tags(song_tags, ["a", "b", "c", "d"], 2) == ["rock", "pop"]
    assert most_frequent_tags(song_tags, ["c"], 5) == ["jazz", "pop"]
    labels = tag_labels(song_tags, ["a", "c", "zz"], ["rock", "pop"])
    assert labels.tolist() == [[True, True], [False, True], [False, False]]


def test_the_tag_table_is_the_same_in_two_processes_as_in_one(rng):
    """Each (features, songs, tag) cross-validation by hand, then the table in one
    process and in two: the same figures, every tag in its place, a column without a
    usable tag (or without its features) None."""
    labels = {"warm": rng.random((120, 3)) < 0.4, "cold": rng.random((60, 3)) < 0.4}
    features = {
        "a": {"warm": rng.standard_normal((120, 4)), "cold": rng.standard_normal((60, 4))},
        "b": {"warm": labels["warm"][:, :1] + rng.standard_normal((120, 2))},
    }
    usable = {"warm": [0, 2], "cold": []}
    tags, config = ["x", "y", "z"], TagConfig(folds=3, min_songs=3)
    seen = []
    one, per_tag = tag_table(features, labels, usable, tags, config, lambda *a: seen.append(a))
    two = tag_table(features, labels, usable, tags, config, None, workers=2)
    assert (one, per_tag) == two
    by_hand = {
        f"{r}/warm": {
            tags[j]: cross_validated_auc(features[r]["warm"], labels["warm"][:, j], config)
            for j in (0, 2)
        }
        for r in "ab"
    }
    assert per_tag == by_hand and set(per_tag["b/warm"]) == {"x", "z"}
    assert one == [
        {"features": r, "warm": np.mean(list(by_hand[f"{r}/warm"].values())), "cold": None}
        for r in "ab"
    ]
    assert seen == [
        ("a", "warm", 1, 2),
        ("a", "warm", 2, 2),
        ("b", "warm", 1, 2),
        ("b", "warm", 2, 2),
    ]


def test_bad_tag_settings_are_named():
    with pytest.raises(ParameterError, match="min_songs"):
        TagConfig(folds=10, min_songs=5).validate()
    with pytest.raises(ParameterError, match="folds"):
        TagConfig(folds=1).validate()


@pytest.fixture(scope="module")
def tags_result(small_workspace):
    result = runner.invoke(app, ["tags", "-w", str(small_workspace.root), "--folds", "5"])
    assert result.exit_code == 0, result.output
    assert "| WMF factors | 50 |" in result.output
    return json.loads((small_workspace.results_dir / "tags.json").read_text())


def test_tags_respect_the_split(small_workspace, tags_result):
    songs = training_set(small_workspace)
    warm_ids, cold_ids = songs.training.song_ids, songs.cold_ids
    song_tags = song_tag_sets(small_workspace)
    counts = Counter(t for song in warm_ids for t in song_tags.get(song, ()))
    assert tags_result["tags"] == sorted(counts, key=lambda t: (-counts[t], t))[:50]
    assert tags_result["songs"] == {"warm": len(warm_ids), "cold": len(cold_ids)}
    rows = {row["features"]: row for row in tags_result["rows"]}
    assert rows["wmf"]["cold"] is None  # cold songs have no WMF factors
    # factors learned from plays carry the tags the simulated listeners care about
    assert rows["wmf"]["warm"] > 0.7
    assert rows["bow-pca"]["warm"] > 0.6
    for key, aucs in tags_result["per_tag"].items():
        assert all(0.0 <= auc <= 1.0 for auc in aucs.values()), key
        row, column = key.split("/")
        assert rows[row][column] == pytest.approx(np.mean(list(aucs.values())))
    # every tag used in a column has at least min_songs songs with it and without it
    labels = tag_labels(song_tags, cold_ids, tags_result["tags"])
    for tag in tags_result["per_tag"].get("predicted/cold", {}):
        column = labels[:, tags_result["tags"].index(tag)]
        assert 10 <= column.sum() <= len(column) - 10


# --------------------------------------------------------------------------- map


def test_tsne_keeps_two_clusters_apart(rng):
    points = np.vstack([rng.normal(0, 0.1, (30, 5)), rng.normal(5, 0.1, (30, 5))])
    xy = tsne(points, perplexity=10)
    a, b = xy[:30], xy[30:]
    gap = np.linalg.norm(a.mean(0) - b.mean(0))
    assert gap > 3 * max(a.std(0).max(), b.std(0).max())
    with pytest.raises(ParameterError, match="at least 4 songs"):
        tsne(points[:3])


def test_default_colours_are_tags_that_split_the_songs():
    song_tags = [{"all", "x"}] * 4 + [{"all", "y"}] * 4 + [{"all", "x", "z"}] * 2
    # "all" colours everything and "z" lies within "x": neither is chosen
    assert default_colour_tags(song_tags, n=4, max_share=0.7) == ["x", "y"]


def test_script_json_cannot_close_its_script():
    assert "</script>" not in script_json({"title": "</script><script>alert(1)"})


@pytest.fixture(scope="module")
def map_result(small_workspace):
    result = runner.invoke(app, ["map", "-w", str(small_workspace.root)])
    assert result.exit_code == 0, result.output
    return json.loads((small_workspace.results_dir / "map" / "map.json").read_text())


def test_the_map_files(small_workspace, map_result):
    folder = small_workspace.results_dir / "map"
    assert len(map_result["song_ids"]) == 150 and len(map_result["colour_tags"]) >= 1
    assert (folder / "map.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (folder / "map.html").read_text()
    # self-contained: no script, style or media from anywhere but the page itself
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "http://" not in page and "https://" not in page
    data = json.loads(re.search(r'id="map-data" type="application/json">(.*?)</script>', page)[1])
    assert data["ids"] == map_result["song_ids"]
    for clip in data["clips"][:10]:  # clips are referenced relative to the page
        assert not Path(clip).is_absolute() and (folder / clip).resolve().is_file()


def test_a_chosen_tag_colours_the_map_and_an_unknown_one_is_named(small_workspace, map_result):
    tag = map_result["colour_tags"][-1]
    result = runner.invoke(app, ["map", "-w", str(small_workspace.root), "--tag", tag])
    assert result.exit_code == 0 and f"coloured by {tag}:" in result.output
    result = runner.invoke(app, ["map", "-w", str(small_workspace.root), "--tag", "no-such"])
    assert result.exit_code == 2 and "'no-such'" in result.output


# --------------------------------------------------------------------------- report


def test_the_report_shows_every_section_and_reuses_fresh_analyses(
    small_workspace, tags_result, map_result, monkeypatch
):
    import coldtune.steps.analyses

    def refuse(*args, **kwargs):
        raise AssertionError("computed again although its inputs did not change")

    monkeypatch.setattr(coldtune.steps.analyses, "tags", refuse)
    monkeypatch.setattr(coldtune.steps.analyses, "song_map", refuse)
    result = runner.invoke(app, ["report", "-w", str(small_workspace.root)])
    assert result.exit_code == 0, result.output
    page = (small_workspace.results_dir / "report.html").read_text()
    for section in ("results", "tags", "similar", "map", "timing"):
        assert f"id='{section}'" in page
    assert "| random |" not in page and "<td>upper bound</td>" in page
    assert "data:image/png;base64," in page and "href='map/map.html'" in page
    assert page.count("<ol>") == 2 * 5  # five queries, two columns of neighbours
    assert "BoW-PCA audio features" in page


def test_training_reads_the_warm_songs_plays_only(small_workspace):
    """What every content model learns from: no cold song, and exactly the training
    plays of the warm songs (a cold song's plays never reach a model)."""
    from coldtune.data.plays import load_interactions
    from coldtune.data.splits import load_split

    songs = training_set(small_workspace)
    interactions = load_interactions(small_workspace)
    split = load_split(small_workspace, interactions)
    cold = set(interactions.song_ids[split.cold_songs])
    assert not cold & set(songs.training.song_ids) and set(songs.cold_ids) == cold
    warm = list(interactions.song_ids[split.warm_songs])
    columns = [warm.index(song) for song in songs.training.song_ids]
    plays = split.training_plays(interactions.matrix)[:, columns]
    confidence = songs.training.confidence
    assert confidence.shape == plays.shape
    assert (confidence.indices == plays.indices).all() and confidence.nnz == plays.nnz
