"""CNN architectures of section 4.2: shapes, clip prediction as a mean over windows."""

import numpy as np
import pytest
import torch

from coldtune.errors import ParameterError
from coldtune.models.cnn import CNN_ARCHITECTURES, WINDOW_FRAMES, CNNConfig, build_cnn, predict_clip


@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_a_batch_of_windows_gives_factors(architecture):
    torch.manual_seed(0)
    model = build_cnn(CNNConfig(architecture=architecture, factors=7))
    windows = torch.randn(5, WINDOW_FRAMES, 128)
    out = model(windows)
    assert out.shape == (5, 7)
    out.sum().backward()  # every parameter is reached
    assert all(p.grad is not None for p in model.parameters())


def test_three_seconds_is_130_frames():
    assert WINDOW_FRAMES == 1 + 3 * 22050 // 512


@pytest.mark.parametrize("architecture", list(CNN_ARCHITECTURES))
def test_a_clip_is_the_mean_of_its_consecutive_windows(architecture, rng):
    torch.manual_seed(0)
    model = build_cnn(CNNConfig(architecture=architecture, factors=4))
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
    model = build_cnn(CNNConfig())
    model.set_input_scale(np.full(128, -40.0), np.full(128, 10.0))
    state = model.state_dict()
    assert float(state["input_mean"][0]) == -40.0 and float(state["input_std"][0]) == 10.0
    # standardised input: a window at the mean gives what a zero window gives unscaled
    fresh = build_cnn(CNNConfig())
    fresh.load_state_dict(
        {k: v for k, v in state.items() if not k.startswith("input_")}, strict=False
    )
    at_mean = torch.full((1, WINDOW_FRAMES, 128), -40.0)
    torch.testing.assert_close(model(at_mean), fresh(torch.zeros(1, WINDOW_FRAMES, 128)))


def test_bad_configs_are_named():
    with pytest.raises(ParameterError, match="architecture"):
        CNNConfig(architecture="resnet").validate()
    with pytest.raises(ParameterError, match="window_frames"):
        CNNConfig(window_frames=10).validate()
