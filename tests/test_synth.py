import numpy as np
import pytest

from coldtune import read_plays
from coldtune.data.synth import SYNTH_SIZES, synth_config, synth_plays, write_plays
from coldtune.errors import ParameterError


def test_shapes_like_the_taste_profile():
    generated = synth_plays(synth_config("medium"))
    m = generated.matrix
    assert m.shape == (20_000, 9_330)
    assert 0.8 * 800_000 < m.nnz <= 800_000
    listeners = np.sort(np.diff(m.tocsc().indptr))[::-1]
    activity = np.diff(m.indptr)
    # power-law popularity: the top song has far more listeners than the median song
    assert listeners[0] > 50 * np.median(listeners)
    # the 10% most popular songs hold most of the plays
    assert listeners[: len(listeners) // 10].sum() > 0.4 * listeners.sum()
    assert activity.max() > 10 * np.median(activity)
    # heavy-tailed counts: median 1, mean near the Taste Profile's 2.9, maximum in thousands
    assert np.median(m.data) == 1 and 2.0 < m.data.mean() < 3.5 and m.data.max() > 1000


def test_deterministic_for_a_seed():
    a = synth_plays(synth_config("tiny", seed=7))
    b = synth_plays(synth_config("tiny", seed=7))
    c = synth_plays(synth_config("tiny", seed=8))
    assert (a.matrix != b.matrix).nnz == 0 and list(a.user_ids) == list(b.user_ids)
    assert (a.matrix != c.matrix).nnz > 0


@pytest.mark.parametrize("name", ["train_triplets.txt", "plays.csv", "plays.parquet"])
def test_written_file_reads_back(tmp_path, name):
    generated = synth_plays(synth_config("tiny"))
    path = write_plays(generated, tmp_path / name)  # the format follows the suffix
    plays = read_plays(path)  # and is read back from the file itself
    written = {".txt": "triplets", ".csv": "csv", ".parquet": "parquet"}[path.suffix]
    assert plays.report.format.split(":")[0] == written

    def triplets(matrix, user_ids, song_ids):
        coo = matrix.tocoo()
        return {
            (user_ids[u], song_ids[s]): int(c)
            for u, s, c in zip(coo.row, coo.col, coo.data, strict=True)
        }

    # every (user, song, count) as generated: a permutation of ids would not pass
    assert triplets(plays.matrix, plays.user_ids, plays.song_ids) == triplets(
        generated.matrix, generated.user_ids, generated.song_ids
    )
    assert len(plays.user_ids[0]) == 40 and plays.song_ids[0].startswith("SO")


def test_taste_profile_preset_and_bad_sizes():
    full = SYNTH_SIZES["taste-profile"]
    assert (full.users, full.songs, full.plays) == (1_019_318, 384_546, 48_373_586)
    with pytest.raises(ParameterError, match="size must be one of"):
        synth_config("huge")
    with pytest.raises(ParameterError, match="more than half"):
        synth_config("tiny", plays=10**9)
