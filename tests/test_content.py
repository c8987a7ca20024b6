"""Content models as estimators: fit on warm songs, save, load in another process,
predict a new clip's factors; configs round-trip through JSON; loading runs no pickle."""

import json
import pickle
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import scipy.sparse as sp

from coldtune import content
from coldtune.cf.algebra import confidence
from coldtune.content.base import TrainingSet
from coldtune.content.bow import PCA, BagOfWords, PCARidge, _ridge
from coldtune.content.configs import BowConfig
from coldtune.errors import ParameterError, WorkspaceError

N_MELS, N_MFCC3, FRAMES = 16, 39, 300


class Store:
    """A feature store in memory: every song's log-mel and MFCC frames."""

    def __init__(self, rng, song_ids, factors):
        self.mel, self.mfcc = {}, {}
        for song, y in zip(song_ids, factors, strict=True):
            # frames whose level follows the song's first factor, so audio tells something
            self.mel[song] = (rng.standard_normal((FRAMES, N_MELS)) + 3 * y[0]).astype(np.float16)
            self.mfcc[song] = (rng.standard_normal((FRAMES, N_MFCC3)) + 3 * y[0]).astype(np.float32)

    def song(self, song_id, kind="mel"):
        return (self.mel if kind == "mel" else self.mfcc)[song_id]

    def width(self, kind="mel"):
        return N_MELS if kind == "mel" else N_MFCC3

    def random_windows(self, song_ids, *, frames, rng):
        starts = rng.integers(0, FRAMES - frames + 1, len(song_ids))
        return np.stack(
            [self.mel[s][a : a + frames] for s, a in zip(song_ids, starts, strict=True)]
        )


@pytest.fixture(scope="module")
def world():
    rng = np.random.default_rng(0)
    n_songs, n_users, k = 40, 30, 3
    songs = np.array([f"SO{i:04d}" for i in range(n_songs)])
    factors = rng.standard_normal((n_songs, k)).astype(np.float32)
    users = rng.standard_normal((n_users, k)).astype(np.float32)
    plays = sp.random(n_users, n_songs, density=0.3, random_state=1, format="csr")
    plays.data[:] = 1 + np.floor(5 * plays.data)
    # each song's tags: two of six, by the sign of its factors
    tags = {
        song: {f"tag{int(y[0] > 0)}": 100.0, f"tag{2 + int(y[1] > 0)}": 50.0}
        for song, y in zip(songs, factors, strict=True)
    }
    store = Store(rng, songs, factors)
    data = TrainingSet(
        song_ids=songs,
        factors=factors,
        user_factors=users,
        confidence=confidence(plays, alpha=2.0, epsilon=1.0),
        features=store,
        tags=tags,
    )
    return data, store


SMALL = {
    "bow-linear": {"words": 8, "kmeans_iterations": 5},
    "bow-mlp": {"words": 8, "kmeans_iterations": 5, "hidden": 16, "max_epochs": 3},
    "mlr": {"words": 8, "kmeans_iterations": 5, "dims": 4, "neighbours": 3, "max_epochs": 3},
    "cnn": {"max_epochs": 1, "batch_size": 8, "precision": "fp32"},
    "metadata": {"vocabulary": 10},
}


@pytest.mark.parametrize("name", list(content.CONTENT_MODELS))
def test_fit_save_load_in_another_process_and_predict_a_new_clip(world, tmp_path, name):
    data, store = world
    model = content.make(name, **SMALL[name]).fit(data)
    rng = np.random.default_rng(5)
    clip = {
        "mel": rng.standard_normal((FRAMES, N_MELS)).astype(np.float16),
        "mfcc": rng.standard_normal((FRAMES, N_MFCC3)).astype(np.float32),
        "tags": {"tag1": 100.0, "tag3": 50.0},
    }
    here = model.predict([clip])
    k = 4 if name == "mlr" else data.factors.shape[1]  # mlr predicts L x in its own space
    assert here.shape == (1, k) and np.isfinite(here).all()
    model.save(tmp_path / name)
    saved = json.loads((tmp_path / name / "config.json").read_text())
    assert saved["model"] == name
    assert (tmp_path / name / "weights.safetensors").exists()
    assert not list((tmp_path / name).glob("*.pt")) and not list((tmp_path / name).glob("*.pkl"))
    np.save(tmp_path / "clip_mel.npy", clip["mel"])
    np.save(tmp_path / "clip_mfcc.npy", clip["mfcc"])
    script = textwrap.dedent(
        f"""
        import numpy as np
        from coldtune import content
        folder = {str(tmp_path)!r}
        clip = {{"mel": np.load(folder + "/clip_mel.npy"),
                 "mfcc": np.load(folder + "/clip_mfcc.npy"),
                 "tags": {{"tag1": 100.0, "tag3": 50.0}}}}
        model = content.load(folder + "/{name}")
        np.save(folder + "/there.npy", model.predict([clip]))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True)
    there = np.load(tmp_path / "there.npy")
    np.testing.assert_allclose(there, here, rtol=1e-5, atol=1e-6)


def test_every_config_round_trips_through_json():
    for spec in content.CONTENT_MODELS.values():
        config = spec.config().validate()
        again = spec.config.from_dict(json.loads(json.dumps(config.to_dict())))
        assert again == config, spec.name
    with pytest.raises(ParameterError, match="has no setting 'hidden'"):
        content.spec("cnn").config.from_dict({"hidden": 3})


def test_the_registry_names_each_row_and_its_label():
    bow_mlp, cnn = content.spec("bow-mlp"), content.spec("cnn")
    assert bow_mlp.row(bow_mlp.config(objective="wpe")) == "bow-mlp-wpe"
    assert cnn.row(cnn.config(architecture="global-pooling")) == "cnn-global-pooling-mse"
    assert cnn.row_label(cnn.config(objective="wpe")) == "convolutional net (WPE)"
    assert [content.table_order(r)[0] for r in ("bow-linear", "cnn-paper-mse", "zzz")] == [0, 3, 5]
    # a variant is named by what differs from the defaults
    bow = content.spec("bow-linear")
    assert bow.row(bow.config(target="unit")) == "bow-linear-unit"
    assert bow.row_label(bow.config(target="unit")) == "linear regression, unit-norm targets"
    assert cnn.row(cnn.config(target="unit", tag_weight=0.5)) == "cnn-small-mse-unit-tags"
    assert cnn.row(cnn.config(target="unit", average=0.99)) == "cnn-small-mse-unit-avg"
    assert content.table_order("bow-linear-unit")[0] == 0
    with pytest.raises(
        ParameterError, match="--hidden does not apply to cnn; it takes .*--architecture"
    ):
        content.make_config("cnn", hidden=5)


def test_word_frequencies_are_each_frames_nearest_word_by_hand(rng):
    """Songs are searched in batches of frames (one longer than a batch alone, batches
    that end at a song's end): each song's frequencies are still those of its own
    frames' nearest codewords, counted by brute force."""
    bag = BagOfWords(BowConfig(words=16, frames_per_song=64))
    songs = [rng.standard_normal((n, 13)) for n in (70_000, 300, 1, 40_000, 30_000, 9)]
    bag.fit(songs)
    got = bag.transform(songs)
    for frames, row in zip(songs, got, strict=True):
        x = (frames.astype(np.float32) - bag.mean_) / bag.scale_
        nearest = ((x[:, None, :] - bag.codebook_[None]) ** 2).sum(2).argmin(1)
        np.testing.assert_allclose(row, np.bincount(nearest, minlength=16) / len(frames), atol=1e-7)


def test_bow_linear_with_unit_targets_regresses_onto_the_unit_factors(world):
    from coldtune.content.base import unit_rows
    from coldtune.content.bow import PCARidge

    data, _ = world
    options = {**SMALL["bow-linear"], "target": "unit"}
    model = content.make("bow-linear", **options).fit(data)
    words = model.bag_.transform([data.features.song(s, "mfcc") for s in data.song_ids])
    direct = PCARidge(model.config).fit(words, unit_rows(data.factors))
    np.testing.assert_allclose(model.regression_.predict(words), direct.predict(words), rtol=1e-5)
    plain = content.make("bow-linear", **SMALL["bow-linear"]).fit(data)
    assert not np.allclose(plain.regression_.predict(words), direct.predict(words))
    np.testing.assert_allclose(np.linalg.norm(unit_rows(data.factors), axis=1), 1, rtol=1e-6)
    with pytest.raises(ParameterError, match="target must be one of"):
        content.make_config("bow-linear", target="length").validate()


def test_the_metadata_model_recovers_factors_linear_in_its_tags(world):
    data, _ = world
    rng = np.random.default_rng(2)
    weights = {f"tag{j}": rng.standard_normal(3) for j in range(4)}
    factors = np.array(
        [sum(w / 100 * weights[t] for t, w in data.tags[s].items()) for s in data.song_ids]
    ).astype(np.float32)
    exact = TrainingSet(song_ids=data.song_ids, factors=factors, tags=data.tags)
    model = content.make("metadata", alphas=(1e-6,)).fit(exact)
    predicted = model.predict([{"tags": data.tags[s]} for s in data.song_ids])
    np.testing.assert_allclose(predicted, factors, atol=1e-3)
    assert model.predict([{"tags": {}}]).shape == (1, 3)  # no tags: the bias, the mean


def test_loading_never_runs_a_pickle(world, tmp_path):
    data, _ = world
    folder = tmp_path / "m"
    content.make("bow-linear", **SMALL["bow-linear"]).fit(data).save(folder)

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    (folder / "weights.safetensors").write_bytes(pickle.dumps(Boom()))
    from safetensors import SafetensorError

    with pytest.raises(SafetensorError):  # not a safetensors header: refused, never unpickled
        content.load(folder)
    assert not (tmp_path / "ran").exists()
    (folder / "config.json").write_text(json.dumps({"model": "evil", "config": {}}))
    with pytest.raises(WorkspaceError, match="not a content model's config"):
        content.load(folder)


def test_a_checkpoint_is_read_without_running_code(tmp_path):
    import torch

    from coldtune.content.training import TrainConfig, train_loop

    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "ran"), "w"))

    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"stamp": Boom()}, checkpoint)
    net = torch.nn.Linear(2, 1)
    features = torch.randn(20, 2)
    result = train_loop(
        net,
        n_items=20,
        make_batch=lambda rows, _rng: features[rows],
        objective=lambda predicted, rows: predicted.square().mean(),
        config=TrainConfig(max_epochs=1),
        checkpoint=checkpoint,
    )
    assert result.resumed_from_epoch == 0 and not (tmp_path / "ran").exists()


@pytest.mark.parametrize(
    "songs, words, part",
    # more songs than words: the scatter matrix's eigh, in one part or summed over parts
    # of 16 songs (the last one short); fewer songs than words: the SVD
    [(80, 12, 8192), (90, 12, 16), (20, 30, 8192)],
)
def test_pca_equals_scikit_learns(rng, monkeypatch, songs, words, part):
    from sklearn.decomposition import PCA as SkPCA

    monkeypatch.setattr("coldtune.content.bow.SCATTER_ROWS", part)

    # a spectrum that falls off, as word frequencies' does, offset from the origin
    X = rng.standard_normal((songs, words)) * np.geomspace(3.0, 0.05, words) + 2.0
    X = X @ np.linalg.qr(rng.standard_normal((words, words)))[0]
    ours = PCA(0.9).fit(X)
    theirs = SkPCA(n_components=0.9, svd_solver="full").fit(X)
    assert 1 < ours.components_.shape[0] < min(songs, words)
    assert ours.components_.shape == theirs.components_.shape
    # the same components, signs included (each one's largest entry positive)
    np.testing.assert_allclose(ours.components_, theirs.components_, atol=1e-8)
    np.testing.assert_allclose(ours.transform(X), theirs.transform(X), atol=1e-8)


def test_pca_of_float32_frequencies_is_as_close_as_the_svd(rng):
    # word frequencies are float32; a scatter matrix squares their condition number, so
    # it is summed in float64, and the components keep the accuracy of float32's SVD
    X = rng.standard_normal((400, 40)) * np.geomspace(1.0, 1e-3, 40)
    X = (X @ np.linalg.qr(rng.standard_normal((40, 40)))[0]).astype(np.float32)
    exact = PCA(1.0 - 1e-9).fit(X.astype(np.float64))
    ours = PCA(1.0 - 1e-9).fit(X)
    assert ours.components_.dtype == np.float32 and len(ours.components_) == 40
    truth, got = exact.transform(X.astype(np.float64)), ours.transform(X)
    signs = np.sign(np.sum(truth * got, axis=0))
    error = np.abs(got * signs - truth).max(axis=0) / np.abs(truth).max(axis=0)
    svd = np.linalg.svd(X - X.mean(axis=0), full_matrices=False)[2]  # float32's own SVD
    svd_got = (X - X.mean(axis=0)) @ svd.T
    svd_error = np.abs(svd_got * np.sign(np.sum(truth * svd_got, axis=0)) - truth).max(
        axis=0
    ) / np.abs(truth).max(axis=0)
    assert error.max() < max(10 * svd_error.max(), 1e-5), (error.max(), svd_error.max())


def test_pca_and_ridge_equal_scikit_learns(rng):
    from sklearn.linear_model import Ridge

    X = rng.standard_normal((80, 12)) @ rng.standard_normal((12, 12))
    Y = rng.standard_normal((80, 3))
    W = _ridge(X, Y, 3.0)
    sk = Ridge(alpha=3.0).fit(X, Y)
    np.testing.assert_allclose(W[:-1], sk.coef_.T, atol=1e-8)
    np.testing.assert_allclose(W[-1], sk.intercept_, atol=1e-8)
    regression = PCARidge(BowConfig(variance=1.0, alphas=(3.0,))).fit(X, Y)
    np.testing.assert_allclose(regression.predict(X), sk.predict(X), atol=1e-4)
