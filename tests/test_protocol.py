import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from coldtune import steps
from coldtune.cf.wmf import WMFConfig
from coldtune.data.plays import Interactions, load_interactions, save_interactions
from coldtune.data.splits import SPLIT_PRESETS, SplitConfig, load_split, save_split, split_songs
from coldtune.data.synth import synth_config, synth_plays, write_plays
from coldtune.errors import ParameterError, WorkspaceError
from coldtune.eval.protocol import evaluate_scores, factor_scores
from coldtune.workspace import Workspace


def interactions_of(generated):
    return Interactions(generated.matrix, generated.user_ids, generated.song_ids)


@pytest.fixture(scope="module")
def tiny():
    return interactions_of(synth_plays(synth_config("tiny")))


def test_split_partitions_songs_and_round_trips(tiny, tmp_path):
    split = split_songs(tiny, SplitConfig(cold_fraction=0.25, seed=1))
    assert len(np.intersect1d(split.warm_songs, split.cold_songs)) == 0
    played = np.flatnonzero(np.diff(tiny.matrix.tocsc().indptr) > 0)
    np.testing.assert_array_equal(np.union1d(split.warm_songs, split.cold_songs), played)
    assert len(split.cold_songs) == round(0.25 * len(played))
    train = split.training_plays(tiny.matrix)
    assert train.shape == (len(split.users), len(split.warm_songs))
    assert train.sum() + split.cold_plays(tiny.matrix).sum() == tiny.matrix.sum()
    workspace = Workspace(tmp_path)
    save_split(split, tiny, workspace)
    loaded = load_split(workspace, tiny)
    for name in ("users", "warm_songs", "cold_songs"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(split, name))


def test_popular_subset_keeps_the_most_listened_songs(tiny):
    split = split_songs(tiny, SplitConfig(n_cold_songs=10, n_top_songs=50, n_users=100, seed=0))
    listeners = np.diff(tiny.matrix.tocsc().indptr)
    kept = np.union1d(split.warm_songs, split.cold_songs)
    assert len(kept) == 50 and len(split.cold_songs) == 10 and len(split.users) == 100
    assert listeners[kept].min() >= np.sort(listeners)[::-1][49]
    assert SPLIT_PRESETS["paper-subset"].n_top_songs == 9_330
    assert SPLIT_PRESETS["paper-subset"].n_cold_songs == 1_881
    with pytest.raises(ParameterError, match="cold songs"):
        split_songs(tiny, SplitConfig(n_cold_songs=10_000))


def test_evaluation_equals_a_loop_over_scikit_learn(rng):
    n_users, n_cold, k = 40, 30, 3
    X = rng.standard_normal((n_users, k))
    Y = rng.standard_normal((n_cold, k))
    cold = sp.csr_matrix(
        (rng.random((n_users, n_cold)) < 0.15) * rng.integers(1, 5, (n_users, n_cold))
    )
    seen = []
    result = evaluate_scores(
        factor_scores(X, Y), cold, k=500, block_elements=90, on_progress=lambda *a: seen.append(a)
    )
    # blocks of 90 // 30 = 3 users; progress after each, ending at all of them
    n = len(result.users)
    assert seen == [(min(i + 3, n), n) for i in range(0, n, 3)]
    scores = X @ Y.T
    dense = cold.toarray() > 0
    users = [u for u in range(n_users) if dense[u].any()]
    np.testing.assert_array_equal(result.users, users)
    aps = [average_precision_score(dense[u], scores[u]) for u in users]
    aucs = [roc_auc_score(dense[u], scores[u]) for u in users if not dense[u].all()]
    assert result.mean_average_precision == pytest.approx(np.mean(aps), rel=1e-5)
    assert result.mean_auc == pytest.approx(np.mean(aucs), rel=1e-5)


def test_factor_scores_counted_by_tiles_equal_the_scores_counted_whole(rng, monkeypatch):
    """evaluate_scores counts factor_scores' product a tile at a time (several tiles and
    blocks here); any other score function's blocks whole. The figures are the same."""
    from coldtune import metrics
    from coldtune.eval import protocol

    monkeypatch.setattr(metrics, "_TILE_SONGS", 9)
    tiled_blocks = []

    def counted(users, *args, **kwargs):
        tiled_blocks.append(len(users))
        return metrics.ap_and_auc_of_factors(users, *args, **kwargs)

    monkeypatch.setattr(protocol, "ap_and_auc_of_factors", counted)
    X = rng.integers(-2, 3, (50, 3)).astype(np.float32)  # exact products, many ties
    Y = rng.integers(-2, 3, (40, 3)).astype(np.float32)
    cold = sp.csr_matrix((rng.random((50, 40)) < 0.2).astype(float))
    tiles = evaluate_scores(factor_scores(X, Y), cold, k=7, block_elements=400)
    whole = evaluate_scores(
        lambda rows: torch.as_tensor(X[rows] @ Y.T), cold, k=7, block_elements=400
    )
    assert sum(tiled_blocks) == len(tiles.users) and len(tiled_blocks) > 1
    np.testing.assert_array_equal(tiles.users, whole.users)
    np.testing.assert_array_equal(tiles.average_precision, whole.average_precision)
    np.testing.assert_array_equal(tiles.auc, whole.auc)
    assert np.isfinite(tiles.auc).sum() > 40


def build_workspace(path, generated, cold_fraction=0.2):
    workspace = Workspace(path)
    triplets = write_plays(generated, path / "train_triplets.txt")
    steps.plays.ingest(triplets, workspace)
    steps.plays.split(workspace, SplitConfig(cold_fraction=cold_fraction, seed=0))
    return workspace


def test_cold_plays_never_reach_wmf(tmp_path):
    """Two data sets that differ only in the cold songs' plays give identical factors."""
    first = build_workspace(tmp_path / "a", synth_plays(synth_config("tiny")))
    interactions = load_interactions(first)
    split = load_split(first, interactions)
    rng = np.random.default_rng(0)
    matrix = interactions.matrix.tolil()
    for song in split.cold_songs:
        # other listeners, other counts
        matrix[:, song] = 0
        listeners = rng.choice(interactions.n_users, size=15, replace=False)
        matrix[listeners, song] = rng.integers(1, 100, size=15)[:, None]
    second = Workspace(tmp_path / "b")
    save_interactions(
        Interactions(matrix.tocsr(), interactions.user_ids, interactions.song_ids), second
    )
    save_split(split, interactions, second)
    assert load_interactions(second).matrix.sum() != interactions.matrix.sum()
    config = WMFConfig(factors=8, iterations=3)
    a = steps.wmf.fit(first, config).model
    b = steps.wmf.fit(second, config).model
    np.testing.assert_array_equal(a.song_factors_, b.song_factors_)
    np.testing.assert_array_equal(a.user_factors_, b.user_factors_)


def test_split_depends_on_ids_not_on_file_order(tiny):
    order = np.random.default_rng(5).permutation(tiny.n_songs)
    shuffled = Interactions(tiny.matrix[:, order], tiny.user_ids, tiny.song_ids[order])
    config = SplitConfig(cold_fraction=0.3, seed=2)
    a = tiny.song_ids[split_songs(tiny, config).cold_songs]
    b = shuffled.song_ids[split_songs(shuffled, config).cold_songs]
    assert sorted(a) == sorted(b)


def test_evaluate_writes_the_table(tmp_path):
    workspace = build_workspace(tmp_path, synth_plays(synth_config("small")))
    steps.wmf.fit(workspace, WMFConfig(factors=16, iterations=8))
    results = steps.evaluate.evaluate(workspace)
    rows = {row["model"]: row for row in results["rows"]}
    assert set(rows) == {"random", "upper bound"}
    assert 0.45 < rows["random"]["auc"] < 0.55
    assert rows["upper bound"]["auc"] > 0.8
    assert rows["upper bound"]["map"] > 5 * rows["random"]["map"]
    assert results["n_cold_songs"] == 299 and results["n_users_evaluated"] > 1000
    table = (tmp_path / "results" / "evaluation.md").read_text()
    assert "| upper bound |" in table and "mAP@500" in table


def test_evaluate_reads_content_predictions(tmp_path):
    workspace = build_workspace(tmp_path, synth_plays(synth_config("tiny")))
    steps.wmf.fit(workspace, WMFConfig(factors=4, iterations=2))
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    folder = workspace.models_dir("oracle")
    folder.mkdir(parents=True)
    model = steps.wmf.load_wmf(workspace)
    factors = model.fold_in_songs(split.cold_plays(interactions.matrix))
    ids = interactions.song_ids[split.cold_songs].astype(str)
    np.savez(folder / "predictions.npz", song_ids=ids[::-1], factors=factors[::-1])
    rows = {row["model"]: row for row in steps.evaluate.evaluate(workspace)["rows"]}
    assert rows["oracle"]["map"] == pytest.approx(rows["upper bound"]["map"])
    np.savez(folder / "predictions.npz", song_ids=ids[1:], factors=factors[1:])
    with pytest.raises(WorkspaceError, match="no prediction for 1 cold songs"):
        steps.evaluate.evaluate(workspace)


def test_missing_steps_say_what_to_run(tmp_path):
    with pytest.raises(WorkspaceError, match="coldtune plays ingest"):
        steps.wmf.fit(Workspace(tmp_path), WMFConfig())


def test_a_split_made_again_after_wmf_is_refused(tmp_path):
    """Factors of an older split would pair users and songs wrongly; every reader refuses."""
    from coldtune.steps.catalogue import load_catalogue
    from coldtune.steps.train import training_set

    workspace = build_workspace(tmp_path, synth_plays(synth_config("tiny")))
    steps.wmf.fit(workspace, WMFConfig(factors=4, iterations=2))
    steps.plays.split(workspace, SplitConfig(cold_fraction=0.4, seed=0))
    for read in (steps.evaluate.evaluate, load_catalogue, training_set):
        with pytest.raises(WorkspaceError, match="do not match .*run `coldtune wmf fit` again"):
            read(workspace)


def test_results_rows_follow_table_2(tmp_path):
    """Rows come in Table 2's order whatever the folders' alphabetical order."""
    workspace = build_workspace(tmp_path, synth_plays(synth_config("tiny")))
    steps.wmf.fit(workspace, WMFConfig(factors=4, iterations=2))
    interactions = load_interactions(workspace)
    split = load_split(workspace, interactions)
    ids = interactions.song_ids[split.cold_songs].astype(str)
    factors = np.zeros((len(ids), 4), dtype=np.float32)
    for name in ("metadata", "cnn-paper-mse", "mine", "mlr", "bow-mlp-wpe", "bow-linear"):
        folder = workspace.models_dir(name)
        folder.mkdir(parents=True)
        np.savez(folder / "predictions.npz", song_ids=ids, factors=factors)
    rows = [row["model"] for row in steps.evaluate.evaluate(workspace)["rows"]]
    assert rows == [
        "random",
        "bow-linear",
        "bow-mlp-wpe",
        "mlr",
        "cnn-paper-mse",
        "metadata",
        "mine",
        "upper bound",
    ]
