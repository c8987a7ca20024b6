"""The demo world's ceiling rows: a ridge from a song's recorded attributes to its factors."""

import csv

import numpy as np
import pytest

from coldtune.errors import WorkspaceError
from coldtune.world.ceiling import AUDIBLE, TIMBRE, ceiling_factors

N_VALUES = {"style": 4, "family": 5, "tune_type": 6, "meter_class": 3, "tempo_class": 3,
            "mode": 2, "register": 3}  # fmt: skip


def tiny_world(tmp_path, rng, n_songs=300):
    """tracks.csv of a world whose songs take random values of every AUDIBLE attribute."""
    values = {name: rng.integers(0, N_VALUES[name], n_songs) for name in AUDIBLE}
    song_ids = [f"SO{i:016d}" for i in range(n_songs)]
    with open(tmp_path / "tracks.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["song_id", "title", *AUDIBLE])
        for i, song in enumerate(song_ids):
            writer.writerow([song, f"tune {i}", *(f"{name}-{values[name][i]}" for name in AUDIBLE)])
    return song_ids, values


def additive_factors(values, rng, attributes, k=8):
    """Factors that are exactly a sum of one vector per attribute value (and an offset)."""
    factors = rng.normal(size=k)
    for name in attributes:
        factors = factors + rng.normal(size=(N_VALUES[name], k))[values[name]]
    return factors


def test_the_ceiling_reproduces_factors_that_are_a_linear_function_of_the_attributes(tmp_path, rng):
    song_ids, values = tiny_world(tmp_path, rng)
    factors = additive_factors(values, rng, AUDIBLE)
    warm, cold = np.arange(240), np.arange(240, 300)
    predicted = ceiling_factors(
        tmp_path,
        warm_ids=[song_ids[i] for i in warm],
        warm_factors=factors[warm],
        cold_ids=[song_ids[i] for i in cold],
    )
    assert predicted.shape == (60, 8) and predicted.dtype == np.float32
    np.testing.assert_allclose(predicted, factors[cold], atol=0.02)

    # the timbre attributes alone cannot see a taste made of tempo and mode: the best
    # they can do is the warm songs' mean, far from the cold songs' factors
    timbre = ceiling_factors(
        tmp_path,
        warm_ids=[song_ids[i] for i in warm],
        warm_factors=factors[warm],
        cold_ids=[song_ids[i] for i in cold],
        attributes=TIMBRE,
    )
    error = np.abs(timbre - factors[cold]).mean()
    assert error > 10 * np.abs(predicted - factors[cold]).mean()


def test_only_timbre_attributes_are_recovered_by_the_timbre_ceiling(tmp_path, rng):
    song_ids, values = tiny_world(tmp_path, rng)
    factors = additive_factors(values, rng, TIMBRE)
    warm = [song_ids[i] for i in range(200)]
    cold = [song_ids[i] for i in range(200, 300)]
    for attributes in (TIMBRE, AUDIBLE):
        predicted = ceiling_factors(
            tmp_path, warm_ids=warm, warm_factors=factors[:200], cold_ids=cold,
            attributes=attributes,
        )  # fmt: skip
        np.testing.assert_allclose(predicted, factors[200:], atol=0.05)


def test_a_value_no_warm_song_has_tells_nothing(tmp_path, rng):
    song_ids, values = tiny_world(tmp_path, rng)
    factors = additive_factors(values, rng, ("style",))
    # warm songs of styles 0-2 only; the cold songs of style 3 get no style column
    warm = [i for i in range(300) if values["style"][i] != 3]
    cold = [i for i in range(300) if values["style"][i] == 3]
    predicted = ceiling_factors(
        tmp_path,
        warm_ids=[song_ids[i] for i in warm],
        warm_factors=factors[warm],
        cold_ids=[song_ids[i] for i in cold],
        attributes=("style",),
    )
    # all of them get the same factors: the intercept, which the ridge's smallest norm
    # solution puts at the mean of the three known styles' factors
    assert np.ptp(predicted, axis=0).max() < 1e-5
    known = [factors[values["style"] == style][0] for style in range(3)]
    np.testing.assert_allclose(predicted[0], np.mean(known, axis=0), atol=0.02)


def test_a_world_without_the_records_says_what_is_missing(tmp_path, rng):
    song_ids, _ = tiny_world(tmp_path, rng, n_songs=10)
    factors = np.zeros((5, 2))
    with pytest.raises(WorkspaceError, match="no column colour"):
        ceiling_factors(
            tmp_path, warm_ids=song_ids[:5], warm_factors=factors, cold_ids=song_ids[5:],
            attributes=("style", "colour"),
        )  # fmt: skip
    with pytest.raises(WorkspaceError, match="tracks.csv not found"):
        ceiling_factors(
            tmp_path / "elsewhere", warm_ids=song_ids[:5], warm_factors=factors,
            cold_ids=song_ids[5:],
        )  # fmt: skip
    with pytest.raises(Exception, match="1 songs are not in"):
        ceiling_factors(
            tmp_path, warm_ids=song_ids[:5], warm_factors=factors, cold_ids=["SOUNKNOWN"]
        )


def test_the_audible_attributes_are_those_taste_rests_on():
    from coldtune.world.listeners import TASTE_SHARES

    assert set(AUDIBLE) == set(TASTE_SHARES)
    assert set(TIMBRE) == {"style", "family"} and set(TIMBRE) <= set(AUDIBLE)


def test_the_reference_rows_read_no_audio_and_train_nothing(small_demo):
    """The ceilings' predictions equal ceiling_factors on the split's warm and cold songs
    (so nothing but the world's records and WMF's warm factors went in), and no content
    model's folder names them."""
    import numpy as np

    from coldtune.data.plays import load_ids
    from coldtune.data.splits import load_split
    from coldtune.steps.wmf import load_wmf
    from coldtune.world.ceiling import TIMBRE, ceiling_factors

    workspace, _ = small_demo
    ids = load_ids(workspace)
    split = load_split(workspace, ids)
    wmf = load_wmf(workspace, split=split)
    expected = ceiling_factors(
        workspace.root / "world",
        warm_ids=ids.song_ids[split.warm_songs],
        warm_factors=wmf.song_factors_,
        cold_ids=ids.song_ids[split.cold_songs],
        attributes=TIMBRE,
    )
    with np.load(workspace.references_root / "timbre-ceiling" / "predictions.npz") as saved:
        np.testing.assert_allclose(saved["factors"], expected, rtol=1e-6)
    assert not (workspace.models_root / "timbre-ceiling").exists()
