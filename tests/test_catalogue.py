"""The catalogue and the commands over it (similar, recommend, embed, search), on a
workspace of the small demo world, held to answers computed by hand in the test."""

import numpy as np
import pytest
from typer.testing import CliRunner

from coldtune.catalogue import ClipModel, check_id
from coldtune.cli import app
from coldtune.data.plays import load_interactions
from coldtune.data.splits import load_split
from coldtune.errors import NotFoundError, ParameterError, WorkspaceError
from coldtune.steps.catalogue import load_catalogue
from coldtune.steps.wmf import load_wmf

runner = CliRunner()


@pytest.fixture(scope="module")
def catalogue(small_workspace):
    return load_catalogue(small_workspace)


def patterns(catalogue, factors):
    """Usage patterns X y of every song, formed explicitly [shape=(n_users, n_songs)]."""
    return catalogue.user_factors.astype(np.float64) @ factors.T.astype(np.float64)


def reference_neighbours(P, row, n, exclude=()):
    norms = np.linalg.norm(P, axis=0)
    cosines = (P.T @ P[:, row]) / (norms * norms[row])
    cosines[[row, *exclude]] = -np.inf
    order = sorted(range(len(cosines)), key=lambda i: (-cosines[i], i))[:n]
    return order, cosines[order]


def test_songs_are_the_split_warm_then_cold_with_artists_and_titles(small_workspace, catalogue):
    interactions = load_interactions(small_workspace)
    split = load_split(small_workspace, interactions)
    assert len(catalogue) == len(split.warm_songs) + len(split.cold_songs) == 150
    assert catalogue.cold.sum() == 30 and not catalogue.cold[: len(split.warm_songs)].any()
    assert set(catalogue.song_ids[catalogue.cold]) == set(interactions.song_ids[split.cold_songs])
    assert all(catalogue.artists) and all(catalogue.titles)
    assert catalogue.has_audio.all() and len(catalogue.clips) == 150
    wmf = load_wmf(small_workspace)
    np.testing.assert_allclose(catalogue.usage_factors[~catalogue.cold], wmf.song_factors_)
    # cold songs are scored by their predicted factors, the same ones evaluate read
    with np.load(small_workspace.models_dir(catalogue.model_name) / "predictions.npz") as saved:
        index = {song: i for i, song in enumerate(saved["song_ids"])}
        expected = saved["factors"][[index[s] for s in catalogue.song_ids[catalogue.cold]]]
    np.testing.assert_allclose(catalogue.scoring_factors[catalogue.cold], expected, atol=1e-5)


def test_similar_songs_equal_the_cosines_of_the_usage_patterns(catalogue):
    for row in (0, 7, 140):  # warm and cold queries
        song = str(catalogue.song_ids[row])
        found = catalogue.similar(song, n=6)
        for space, factors in (
            ("usage", catalogue.usage_factors),
            ("predicted", catalogue.predicted_factors),
        ):
            rows, cosines = reference_neighbours(patterns(catalogue, factors), row, 6)
            got = found[space]
            np.testing.assert_allclose([nb.similarity for nb in got], cosines, atol=1e-6)
            # a near-tie may swap places between float orders; the set and values agree
            assert [nb.index for nb in got][:3] == rows[:3] or np.allclose(cosines[:3], cosines[0])


def test_a_catalogue_clip_embedded_as_new_finds_itself(catalogue):
    row = int(np.flatnonzero(catalogue.cold)[0])
    song = str(catalogue.song_ids[row])
    factors = catalogue.embed_file(catalogue.clips[song])
    # equal up to the order of float sums (threads may differ between the two runs)
    np.testing.assert_allclose(factors, catalogue.predicted_factors[row], atol=1e-6)
    nearest = catalogue.similar_to_factors(factors, n=3)
    assert nearest[0].index == row and nearest[0].similarity == pytest.approx(1.0)


def test_recommendations_are_the_best_unplayed_scores(catalogue):
    user = str(catalogue.user_ids[11])
    u = catalogue.user_row(user)
    played = set(catalogue.training_plays[u].indices)
    scores = catalogue.scoring_factors @ catalogue.user_factors[u]
    expected = sorted(
        (i for i in range(len(catalogue)) if i not in played), key=lambda i: (-scores[i], i)
    )[:15]
    picks = catalogue.recommend(user, n=15)
    assert [p["row"] for p in picks] == expected
    assert [p["cold"] for p in picks] == [bool(catalogue.cold[i]) for i in expected]
    cold_picks = catalogue.recommend(user, n=100, cold_only=True)
    assert len(cold_picks) == 30 and all(p["cold"] for p in cold_picks)
    held = catalogue.held_out_plays[u].toarray()[0]
    assert [p["held_out_plays"] for p in cold_picks] == [int(held[p["row"]]) for p in cold_picks]


def test_likely_listeners_have_the_highest_predicted_preference(catalogue):
    y = catalogue.predicted_factors[-1]
    scores = catalogue.user_factors @ y
    got = catalogue.listeners(y, n=5)
    assert [u for u, _ in got] == list(np.argsort(-scores, kind="stable")[:5])
    np.testing.assert_allclose([s for _, s in got], np.sort(scores)[::-1][:5], rtol=1e-6)


def test_unknown_and_malformed_ids_are_named(catalogue):
    with pytest.raises(NotFoundError, match="unknown song id 'SONOPE'"):
        catalogue.similar("SONOPE")
    with pytest.raises(NotFoundError, match="unknown user id"):
        catalogue.recommend("nobody")
    for bad in ("../etc/passwd", "a/b", "..", "x y", "", "a" * 200, ".hidden"):
        with pytest.raises(ParameterError, match="is not an id"):
            check_id(bad, what="song")
    assert check_id("SOAAAGQ12A8C1420C8", what="song") == "SOAAAGQ12A8C1420C8"


def test_search_matches_every_word_of_artist_or_title(catalogue):
    row = 5
    words = f"{catalogue.artists[row]} {catalogue.titles[row]}".lower().split()[:3]
    found = catalogue.search(" ".join(words).upper())
    assert row in found
    for r in found:
        assert all(w in f"{catalogue.artists[r]} {catalogue.titles[r]}".lower() for w in words)
    with pytest.raises(ParameterError):
        catalogue.search("   ")


def test_predictions_are_cached_and_reused(small_workspace, catalogue, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("predicted again instead of reading the cache")

    monkeypatch.setattr(ClipModel, "predict_songs", refuse)
    again = load_catalogue(small_workspace)
    np.testing.assert_array_equal(again.predicted_factors, catalogue.predicted_factors)


def test_a_model_that_cannot_embed_clips_is_refused(small_workspace):
    with pytest.raises(WorkspaceError, match="no clip model named 'metadata'"):
        load_catalogue(small_workspace, model="metadata")


def test_the_commands(small_workspace, catalogue):
    w = str(small_workspace.root)
    song = str(catalogue.song_ids[3])
    result = runner.invoke(app, ["similar", song, "-w", w, "-n", "4"])
    assert result.exit_code == 0, result.output
    assert "by usage (WMF factors)" in result.output
    assert f"by audio ({catalogue.model_name})" in result.output
    assert catalogue.label(catalogue.similar(song, n=1)["usage"][0].index) in result.output

    user = str(catalogue.user_ids[0])
    result = runner.invoke(app, ["recommend", user, "-w", w, "-n", "5", "--cold-only"])
    assert result.exit_code == 0, result.output
    assert result.output.count("(cold)") == 5

    clip = catalogue.clips[song]
    result = runner.invoke(app, ["embed", str(clip), "-w", w, "-n", "3"])
    assert result.exit_code == 0, result.output
    first = result.output.split("most similar songs")[1].splitlines()[1]
    assert song in first and "1.000" in first
    assert "users most likely to enjoy it" in result.output

    result = runner.invoke(app, ["search", catalogue.titles[3], "-w", w])
    assert result.exit_code == 0 and song in result.output

    for args, message in [
        (["similar", "../x", "-w", w], "is not an id"),
        (["similar", "SONOPE", "-w", w], "unknown song id"),
        (["recommend", "nobody", "-w", w], "unknown user id"),
        (["embed", str(small_workspace.root / "split.json"), "-w", w], "not a readable audio"),
    ]:
        result = runner.invoke(app, args)
        assert result.exit_code == 2 and message in result.output, result.output
        assert "Traceback" not in result.output
