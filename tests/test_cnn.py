"""CNN architectures of section 4.2: shapes, clip prediction as a mean over windows."""

import numpy as np
import pytest
import torch

from coldtune.content.cnn import (
    CNN_ARCHITECTURES,
    WINDOW_FRAMES,
    NetworkConfig,
    build_cnn,
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
