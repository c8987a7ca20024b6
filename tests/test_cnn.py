"""CNN architectures of section 4.2: shapes, clip prediction as a mean over windows."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from coldtune.content.cnn import (
    CNN_ARCHITECTURES,
    WINDOW_FRAMES,
    NetworkConfig,
    build_cnn,
    frames_major,
    predict_clip,
)
from coldtune.errors import ParameterError


@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_a_batch_of_windows_gives_factors(architecture):
    torch.manual_seed(0)
    model = build_cnn(NetworkConfig(architecture=architecture, factors=7))
    windows = torch.randn(5, WINDOW_FRAMES, 128)
    out = model(windows)
    assert out.shape == (5, 7)
    out.sum().backward()  # every parameter is reached
    assert all(p.grad is not None for p in model.parameters())


def _channels_first_reference(model, windows):
    """The network as the Conv1d modules compute it on (B, n_mels, frames): what the
    frames-major path must equal."""
    x = ((windows - model.input_mean) / model.input_std).transpose(1, 2)
    h = model.features(x)  # (B, channels, frames')
    if isinstance(model.head[0], torch.nn.Flatten):  # the paper's net: channel by channel
        return model.head(h)
    return model.head(torch.cat([h.mean(2), h.amax(2), h.square().mean(2).sqrt()], 1))


@pytest.mark.parametrize("batch_norm", [False, True])
@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_the_frames_major_convolutions_are_the_conv1d_modules(architecture, batch_norm):
    """On a CPU the convolutions run as matrix products in the windows' frames-major
    layout; values, gradients and batch norm's running statistics are those of the
    Conv1d, BatchNorm1d and MaxPool1d modules the weights belong to. 133 frames leave a
    tail at each pooling (129 -> 32 -> 29 -> 14 -> 11 -> 5 -> 2)."""
    import copy

    torch.manual_seed(0)
    config = NetworkConfig(
        architecture=architecture, factors=6, window_frames=133, batch_norm=batch_norm
    )
    model = build_cnn(config).train()
    model.set_input_scale(np.full(128, 0.5), np.full(128, 2.0))
    reference = copy.deepcopy(model)
    windows = torch.randn(6, 133, 128)
    upstream = torch.randn(6, 6)

    out = model(windows)
    expected = _channels_first_reference(reference, windows)
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)
    (out * upstream).sum().backward()
    (expected * upstream).sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=name)
    for (name, b), c in zip(model.named_buffers(), reference.buffers(), strict=True):
        torch.testing.assert_close(b, c, msg=name)

    x = torch.randn(3, 133, 128)
    torch.testing.assert_close(
        frames_major(model.features.eval(), x),
        model.features(x.transpose(1, 2)).transpose(1, 2),
        rtol=1e-4,
        atol=1e-5,
    )


def test_frames_major_names_a_layer_it_cannot_run():
    with pytest.raises(TypeError, match="not Tanh"):
        frames_major(torch.nn.Sequential(torch.nn.Tanh()), torch.randn(1, 8, 3))


@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_a_window_is_the_features_of_three_seconds_and_the_network_takes_it(architecture):
    """The feature store's frames of the shortest clip it keeps (3 s) are one window,
    and the network maps exactly such windows to the factors."""
    from coldtune.audio.decode import ClipConfig
    from coldtune.audio.features import FeatureConfig, mel_and_mfcc

    seconds = ClipConfig().min_seconds
    y = np.random.default_rng(0).standard_normal(int(seconds * 22050)).astype(np.float32)
    mel, _ = mel_and_mfcc(y=y, config=FeatureConfig())
    assert mel.shape == (WINDOW_FRAMES, 128)
    model = build_cnn(NetworkConfig(architecture=architecture, factors=5)).eval()
    with torch.no_grad():
        assert model(torch.as_tensor(mel[None].astype(np.float32))).shape == (1, 5)


@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_a_clip_is_the_mean_of_its_consecutive_windows(architecture, rng):
    torch.manual_seed(0)
    model = build_cnn(NetworkConfig(architecture=architecture, factors=4))
    frames = rng.standard_normal((3 * WINDOW_FRAMES + 20, 128)).astype(np.float32)
    model.eval()
    with torch.no_grad():
        each = [
            model(torch.as_tensor(frames[None, i * WINDOW_FRAMES : (i + 1) * WINDOW_FRAMES]))
            for i in range(3)
        ]
    expected = torch.cat(each).mean(dim=0).numpy()
    np.testing.assert_allclose(predict_clip(model, frames, batch=2), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ParameterError, match="shorter than one window"):
        predict_clip(model, frames[:50])


def test_input_scale_is_part_of_the_saved_state():
    model = build_cnn(NetworkConfig())
    model.set_input_scale(np.full(128, -40.0), np.full(128, 10.0))
    state = model.state_dict()
    assert float(state["input_mean"][0]) == -40.0 and float(state["input_std"][0]) == 10.0
    # standardised input: a window at the mean gives what a zero window gives unscaled
    fresh = build_cnn(NetworkConfig())
    fresh.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("input_")}, strict=False
    )
    at_mean = torch.full((1, WINDOW_FRAMES, 128), -40.0)
    torch.testing.assert_close(model(at_mean), fresh(torch.zeros(1, WINDOW_FRAMES, 128)))


def test_bad_configs_are_named():
    with pytest.raises(ParameterError, match="architecture"):
        NetworkConfig(architecture="resnet").validate()
    with pytest.raises(ParameterError, match="window_frames"):
        NetworkConfig(window_frames=10).validate()


@pytest.fixture(scope="module")
def small_world():
    from test_content import Store

    from coldtune.cf.algebra import confidence
    from coldtune.content.base import TrainingSet

    rng = np.random.default_rng(0)
    n_songs, n_users, k = 60, 50, 3
    songs = np.array([f"SO{i:04d}" for i in range(n_songs)])
    factors = rng.standard_normal((n_songs, k)).astype(np.float32)
    users = rng.standard_normal((n_users, k)).astype(np.float32)
    # users play the songs they score highest: the factors decide the plays
    scores = users @ factors.T
    plays = sp.csr_matrix((scores > np.quantile(scores, 0.8)).astype(np.float32))
    data = TrainingSet(
        song_ids=songs,
        factors=factors,
        user_factors=users,
        confidence=confidence(plays, alpha=2.0, epsilon=1.0),
        features=Store(rng, songs, factors),
    )
    return data


SMALL_CNN = {"max_epochs": 3, "batch_size": 8, "precision": "fp32", "windows_per_song": 2}


def test_a_ranking_score_of_validation_songs_chooses_the_epoch(small_world):
    from coldtune import content

    model = content.make("cnn", selection="auc", min_ranking_songs=1, **SMALL_CNN)
    model = model.fit(small_world)
    assert model.fit_report_["selection"] == "auc"
    scores = [r["validation_score"] for r in model.history_]
    assert len(scores) == 3 and all(0 <= s <= 1 for s in scores)
    assert model.fit_report_["best_epoch"] == int(np.argmax(scores)) + 1
    assert model.fit_report_["best_validation_score"] == max(scores)
    # the score is the validation songs' ranking AUC of the network's predictions
    val_rows, ranking = model.validation_
    assert len(val_rows) == 6
    clips = [small_world.features.song(s) for s in small_world.song_ids[val_rows]]
    predicted = np.stack([predict_clip(model.network_, c) for c in clips])
    assert ranking(predicted)["auc"] == pytest.approx(max(scores), abs=1e-5)


def test_too_few_validation_songs_keep_the_epoch_by_the_validation_loss(small_world):
    from coldtune import content

    model = content.make("cnn", selection="auc", **SMALL_CNN).fit(small_world)
    assert len(model.validation_[0]) == 6 < model.config.min_ranking_songs
    assert model.fit_report_["selection"] == "loss"
    losses = [r["validation_loss"] for r in model.history_]
    assert "validation_score" not in model.history_[0]
    assert model.fit_report_["best_epoch"] == int(np.argmin(losses)) + 1


def test_a_ridge_readout_is_fitted_on_warm_songs_and_saved_with_the_model(small_world, tmp_path):
    from coldtune import content
    from coldtune.content.cnn import clip_embeddings

    model = content.make(
        "cnn", readout="ridge", selection="auc", min_ranking_songs=1, **SMALL_CNN
    ).fit(small_world)
    report = model.fit_report_["readout"]
    assert report["alpha"] in model.config.readout_alphas
    assert set(report["validation"]) == {str(a) for a in model.config.readout_alphas}
    chosen = report["validation"][str(report["alpha"])]["auc"]
    assert chosen == max(f["auc"] for f in report["validation"].values())
    store = small_world.features
    clips = [store.song(s) for s in small_world.song_ids]
    predicted = model.predict([{"mel": c} for c in clips])
    np.testing.assert_allclose(
        predicted, model.readout_.predict(clip_embeddings(model.network_, clips)), rtol=1e-5
    )
    # not the network's own output layer
    assert not np.allclose(predicted, model._outputs(clip_embeddings(model.network_, clips)))
    # the read-out learned the audible factor (the clips' level follows factor 0)
    assert np.corrcoef(predicted[:, 0], small_world.factors[:, 0])[0, 1] > 0.8
    model.save(tmp_path / "cnn")
    loaded = content.load(tmp_path / "cnn")
    assert loaded.config.readout == "ridge" and loaded.readout_.alpha_ == report["alpha"]
    np.testing.assert_allclose(
        loaded.predict([{"mel": c} for c in clips[:4]]), predicted[:4], rtol=1e-5, atol=1e-6
    )


def test_unit_targets_are_the_factors_scaled_to_unit_norm(small_world, monkeypatch):
    from coldtune import content
    from coldtune.content import cnn

    seen = []

    def spy(predicted, target):
        seen.append(target.norm(dim=1))
        return cnn.objectives_mse(predicted, target)

    monkeypatch.setattr(cnn, "objectives_mse", cnn.mse_loss, raising=False)
    monkeypatch.setattr(cnn, "mse_loss", spy)
    content.make("cnn", target="unit", **{**SMALL_CNN, "max_epochs": 1}).fit(small_world)
    norms = torch.cat(seen)
    torch.testing.assert_close(norms, torch.ones_like(norms))
    seen.clear()
    content.make("cnn", **{**SMALL_CNN, "max_epochs": 1}).fit(small_world)
    assert torch.cat(seen).std() > 0.1  # the factors themselves: norms vary
    with pytest.raises(ParameterError, match="target 'unit'"):
        content.make_config("cnn", target="unit", objective="wpe").validate()


def test_song_pooling_trains_on_the_mean_embedding_of_each_songs_windows(small_world, monkeypatch):
    from coldtune import content
    from coldtune.content import cnn

    torch.manual_seed(0)
    network = build_cnn(NetworkConfig(architecture="small", n_mels=16, factors=3)).eval()
    windows = torch.randn(6, WINDOW_FRAMES, 16)
    pooled = cnn.SongPooling(network, 3)(windows)
    assert pooled.shape == (2, 3)
    expected = network.head[-1](network.embed(windows).reshape(2, 3, -1).mean(dim=1))
    torch.testing.assert_close(pooled, expected)
    # and the mean embedding is what prediction maps: one clip of those 3 windows
    clip = windows[:3].reshape(-1, 16).numpy()
    np.testing.assert_allclose(
        predict_clip(network, clip), pooled[0].detach().numpy(), rtol=1e-4, atol=1e-5
    )
    shapes = []

    def spy(predicted, target):
        shapes.append((predicted.shape[0], target.shape[0]))
        return cnn.objectives_mse(predicted, target)

    monkeypatch.setattr(cnn, "objectives_mse", cnn.mse_loss, raising=False)
    monkeypatch.setattr(cnn, "mse_loss", spy)
    config = {**SMALL_CNN, "max_epochs": 1, "windows_per_song": 3}
    content.make("cnn", song_pooling=True, **config).fit(small_world)
    assert shapes[0] == (8, 8)  # a batch of 8 songs: 8 predictions, one per song
    shapes.clear()
    content.make("cnn", **config).fit(small_world)
    assert shapes[0] == (24, 24)  # without: one per window


def test_tag_targets_keep_tags_held_by_enough_songs():
    from coldtune.content.cnn import tag_targets

    tags = {"a": {"reel": 90, "fiddle": 30}, "b": {"reel": 60}, "c": {"air": 100}}
    vocabulary, Y = tag_targets(tags, ["a", "b", "c", "d"], min_songs=2)
    assert vocabulary == ["reel"]
    np.testing.assert_array_equal(Y, [[1], [1], [0], [0]])  # d has no tags: all 0
    vocabulary, Y = tag_targets(tags, ["a", "b", "c"], min_songs=1)
    assert vocabulary == ["air", "fiddle", "reel"]
    np.testing.assert_array_equal(Y, [[0, 1, 1], [0, 0, 1], [1, 0, 0]])


def test_the_tag_loss_trains_a_head_of_its_own_and_needs_tags(small_world, monkeypatch):
    import dataclasses

    from coldtune import content
    from coldtune.content import cnn

    torch.manual_seed(0)
    network = build_cnn(NetworkConfig(architecture="small", n_mels=16, factors=3)).eval()
    wrapped = cnn.WithTags(network, network.head[-1], 5).eval()
    windows = torch.randn(4, WINDOW_FRAMES, 16)
    out = wrapped(windows)
    assert out.shape == (4, 3 + 5)
    torch.testing.assert_close(out[:, :3], network(windows))  # the factors are the network's

    with pytest.raises(ParameterError, match="tag_weight > 0 trains on the warm songs' tags"):
        content.make("cnn", tag_weight=1.0, **SMALL_CNN).fit(small_world)
    with pytest.raises(ParameterError, match="tag_weight must be >= 0"):
        content.make_config("cnn", tag_weight=-1.0).validate()
    # tags that follow the songs' first factor: the tag loss falls as the network learns it
    songs = small_world.song_ids
    factors = small_world.factors
    tagged = {s: {"high" if y[0] > 0 else "low": 80} for s, y in zip(songs, factors, strict=True)}
    data = dataclasses.replace(small_world, tags=tagged)
    seen, cross_entropy = [], torch.nn.functional.binary_cross_entropy_with_logits

    def spy(logits, target):
        value = cross_entropy(logits, target)
        seen.append(float(value.detach()))
        return value

    monkeypatch.setattr(cnn.nn.functional, "binary_cross_entropy_with_logits", spy)
    model = content.make("cnn", tag_weight=1.0, **{**SMALL_CNN, "max_epochs": 8}).fit(data)
    assert model.tags_ == ["high", "low"]
    assert model.fit_report_["tags"] == 2
    assert np.mean(seen[-3:]) < np.mean(seen[:3]) - 0.05
    predicted = model.predict([{"mel": data.features.song(s)} for s in songs[:4]])
    assert predicted.shape == (4, 3)  # prediction is the factors alone, from audio


def test_batch_normalisation_is_saved_with_the_network(rng, tmp_path):
    torch.manual_seed(0)
    config = NetworkConfig(architecture="small", n_mels=16, factors=3, batch_norm=True)
    network = build_cnn(config)
    norms = [m for m in network.modules() if isinstance(m, torch.nn.BatchNorm1d)]
    assert len(norms) == 4  # one per convolution
    network.train()
    network(torch.randn(8, WINDOW_FRAMES, 16) * 3 + 1)  # moves the running statistics
    network.eval()
    state = {k: v.clone() for k, v in network.state_dict().items()}
    again = build_cnn(config)
    again.load_state_dict(state)
    again.eval()
    windows = torch.randn(2, WINDOW_FRAMES, 16)
    torch.testing.assert_close(again(windows), network(windows))
    assert not any(
        isinstance(m, torch.nn.BatchNorm1d) for m in build_cnn(NetworkConfig()).modules()
    )
