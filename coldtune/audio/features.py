"""Log-mel spectrograms and MFCCs in torch, equal to librosa's defaults (section 4).

The paper's input representation: 22,050 Hz mono, windows of 1,024 samples, hop 512,
128 mel bands, log-compressed (section 4.2); and 13 MFCCs with first and second
differences for the bag-of-words baselines (section 4.1).

Everything here is one pipeline: STFT -> power -> mel filterbank -> compression -> DCT,
so `mel_and_mfcc` computes both features from one STFT. Every function takes a 1-D
signal or a batch (..., n_samples), as a numpy array or a torch tensor (on any device),
and returns the same kind: numpy in, numpy out. Output layout is librosa's:
(..., bands, frames).

Equal to librosa (tests/test_features.py holds them to it):

    log_mel(y=y, sr=sr)  ==  librosa.power_to_db(librosa.feature.melspectrogram(
                                 y=y, sr=sr, n_fft=1024, hop_length=512, n_mels=128))
    mfcc(y=y, sr=sr)[:13] == librosa.feature.mfcc(y=y, sr=sr, n_mfcc=13,
                                 n_fft=1024, hop_length=512)
    mfcc(y=y, sr=sr)[13:26] == librosa.feature.delta(that), [26:39] with order=2

i.e. centred frames with zero padding, a periodic Hann window, Slaney's mel scale with
area-normalised filters, 10 log10(max(S, 1e-10)) clipped at 80 dB below the clip's
maximum, an orthonormal DCT-II, and Savitzky-Golay differences of width 9 with
polynomial fits at the edges.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch

from coldtune.audio.configs import COMPRESSION_NAMES, FeatureConfig
from coldtune.errors import ParameterError

Array = np.ndarray | torch.Tensor


# --------------------------------------------------------------------------- mel filterbank


# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, log above
_F_SP = 200.0 / 3  # Hz per mel in the linear part
_MIN_LOG_HZ = 1000.0
_MIN_LOG_MEL = _MIN_LOG_HZ / _F_SP
_LOGSTEP = np.log(6.4) / 27.0


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    log = _MIN_LOG_MEL + np.log(np.maximum(hz, _MIN_LOG_HZ) / _MIN_LOG_HZ) / _LOGSTEP
    return np.where(hz >= _MIN_LOG_HZ, log, hz / _F_SP)


def mel_to_hz(mels: np.ndarray | float) -> np.ndarray:
    """Inverse of `hz_to_mel`."""
    mels = np.asarray(mels, dtype=np.float64)
    log = _MIN_LOG_HZ * np.exp(_LOGSTEP * (mels - _MIN_LOG_MEL))
    return np.where(mels >= _MIN_LOG_MEL, log, _F_SP * mels)


@lru_cache(maxsize=16)
def _mel_filterbank(sr: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> np.ndarray:
    fft_freqs = np.linspace(0, sr / 2, 1 + n_fft // 2)
    mel_freqs = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(mel_freqs)
    ramps = mel_freqs[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0, np.minimum(lower, upper))
    # Slaney's area normalisation: every filter integrates to the same energy
    weights *= (2.0 / (mel_freqs[2:] - mel_freqs[:-2]))[:, None]
    weights = weights.astype(np.float32)
    weights.setflags(write=False)
    return weights


def mel_filterbank(
    *, sr: int, n_fft: int, n_mels: int = 128, fmin: float = 0.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular mel filters [shape=(n_mels, 1 + n_fft // 2)], float32; librosa.filters.mel."""
    return _mel_filterbank(int(sr), int(n_fft), int(n_mels), float(fmin), float(fmax or sr / 2))


class _Banded:
    """The mel filterbank applied as a banded product instead of a dense matrix product.

    Each triangular filter spans few FFT bins (one or two at the bottom, a few dozen at
    the top), so the 128 x 513 matrix is 97% zeros. Filters are grouped by the width of
    their support; one dense product per group over only the bins it covers does ~10x
    fewer multiply-adds than the full product, with the same sums in the same order per
    band up to float rounding.
    """

    def __init__(self, weights: np.ndarray, device: torch.device, n_groups: int = 8):
        support = weights > 0
        first = support.argmax(axis=1)
        last = weights.shape[1] - support[:, ::-1].argmax(axis=1)
        empty = ~support.any(axis=1)
        first[empty], last[empty] = 0, 1
        self.n_mels = weights.shape[0]
        self.groups: list[tuple[int, int, int, int, torch.Tensor]] = []
        bands = np.array_split(np.arange(self.n_mels), min(n_groups, self.n_mels))
        for group in bands:
            lo, hi = int(first[group].min()), int(last[group].max())
            block = torch.as_tensor(weights[group, lo:hi].T.copy(), device=device)
            self.groups.append((int(group[0]), int(group[-1]) + 1, lo, hi, block))

    def __call__(self, power: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        """power [shape=(..., frames, bins)] -> [shape=(..., frames, n_mels)]"""
        if out is None:
            out = power.new_empty((*power.shape[:-1], self.n_mels))
        for band_lo, band_hi, lo, hi, block in self.groups:
            torch.matmul(power[..., lo:hi], block, out=out[..., band_lo:band_hi])
        return out


@lru_cache(maxsize=32)
def _banded(sr: int, n_fft: int, n_mels: int, device: torch.device) -> _Banded:
    return _Banded(mel_filterbank(sr=sr, n_fft=n_fft, n_mels=n_mels), device)


@lru_cache(maxsize=32)
def _window(n_fft: int, device: torch.device) -> torch.Tensor:
    return torch.hann_window(n_fft, periodic=True, dtype=torch.float32, device=device)


@lru_cache(maxsize=32)
def _dct_matrix(n_mels: int, n_mfcc: int, device: torch.device) -> torch.Tensor:
    """Orthonormal DCT-II rows as scipy.fft.dct(norm='ortho') [shape=(n_mels, n_mfcc)],
    then zero columns up to a multiple of 16 [shape=(n_mels, 16 ceil(n_mfcc / 16))]:
    MKL's product with 16 columns measured 2.3x faster than with 13 (its kernels for
    narrow matrices come in widths of 16)."""
    n = np.arange(n_mels)
    k = np.arange(n_mfcc)
    basis = np.cos(np.pi / n_mels * (n[:, None] + 0.5) * k[None, :]) * np.sqrt(2.0 / n_mels)
    basis[:, 0] /= np.sqrt(2.0)
    padded = np.zeros((n_mels, -(-n_mfcc // 16) * 16), np.float32)
    padded[:, :n_mfcc] = basis
    return torch.as_tensor(padded, device=device)


# --------------------------------------------------------------------------- compression


def _db(mel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """librosa.power_to_db(S, ref=1.0, amin=1e-10, top_db), in place: the clip's max sets
    the floor."""
    floor: float | torch.Tensor = 1e-10
    if config.top_db is not None:
        # max(10 log10 S, max(10 log10 S) - top_db) == 10 log10 max(S, max(S) 10^(-top_db/10)):
        # the floor applied to the power, in the same pass as amin, instead of a pass after
        peak = mel.amax(dim=(-2, -1), keepdim=True)
        floor = peak.mul_(10.0 ** (-config.top_db / 10)).clamp_(min=1e-10)
    return mel.clamp_(min=floor).log10_().mul_(10.0)


def _log1p(mel: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """log(1 + C x): no per-clip floor, so loud and quiet clips stay comparable."""
    return torch.log1p(config.log1p_scale * mel)


COMPRESSIONS: dict[str, Callable[[torch.Tensor, FeatureConfig], torch.Tensor]] = {
    "db": _db,
    "log1p": _log1p,
}
assert tuple(COMPRESSIONS) == COMPRESSION_NAMES


# --------------------------------------------------------------------------- the pipeline


def _as_tensor(y: Array) -> tuple[torch.Tensor, bool]:
    if isinstance(y, torch.Tensor):
        return y.to(torch.float32), False
    y = np.asarray(y)
    if y.ndim == 0 or y.shape[-1] == 0:
        raise ParameterError(f"y must be a signal (..., n_samples), got shape {y.shape}")
    return torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32)), True


def _back(x: torch.Tensor, to_numpy: bool) -> Array:
    return x.cpu().numpy() if to_numpy else x


CPU_FRAME_BLOCK = 256
"""Frames per block on a CPU: a block's frames and spectrum (1 MB each at n_fft 1,024)
stay in the core's cache between the window, the FFT and the power; one pass over a
whole 30 s clip at a time spills to memory and measured 2-3x slower."""


def _frames(y: torch.Tensor, n_fft: int, hop: int) -> list[torch.Tensor]:
    """The centred frames of y [shape=(..., n)], zero-padded at both ends as librosa's
    center=True, as strided views [shape=(..., frames, n_fft)] in order: the frames that
    reach into the padding come from short padded copies of the ends, all the others
    straight from y. Padding the whole signal would copy all of it (2.6 MB for a 30 s
    clip, measured 0.3 ms) for one or two frames at each end."""
    half = n_fft // 2
    n = y.shape[-1]
    n_frames = 1 + (n + 2 * half - n_fft) // hop
    # frame t covers y[t * hop - half : t * hop - half + n_fft]
    first = -(-half // hop)  # the first frame that starts inside y
    last = (n + half - n_fft) // hop  # the last frame that ends inside y
    if last < first:  # a signal of a frame or two
        return [torch.nn.functional.pad(y, (half, half)).unfold(-1, n_fft, hop)]
    pieces = []
    if first > 0:
        head = torch.nn.functional.pad(y[..., : (first - 1) * hop - half + n_fft], (half, 0))
        pieces.append(head.unfold(-1, n_fft, hop))
    inside = y[..., first * hop - half :].unfold(-1, n_fft, hop)
    pieces.append(inside[..., : last - first + 1, :])
    if last + 1 < n_frames:
        tail = torch.nn.functional.pad(y[..., (last + 1) * hop - half :], (0, half))
        pieces.append(tail.unfold(-1, n_fft, hop))
    return pieces


def _mel_power_frames(y: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    """Mel power [shape=(..., frames, n_mels)], frames-major.

    The STFT is written out (overlapping frames as strided views, a real FFT) rather
    than called as torch.stft: that returns (bins, frames), and every step after it
    wants frames-major rows, so its transpose would cost a strided pass over the
    spectrum. On a CPU the frames go through the window, the FFT and the power in
    cache-sized blocks; the filterbank then runs once over the clip's power, 8 products
    in all instead of 8 per block (each product has a fixed cost that small blocks pay
    again and again).
    """
    n_fft, hop = config.n_fft, config.hop_length
    window = _window(n_fft, y.device)
    filterbank = _banded(config.sr, n_fft, config.n_mels, y.device)
    pieces = _frames(y, n_fft, hop)
    n_frames = sum(frames.shape[-2] for frames in pieces)
    power = y.new_empty((*y.shape[:-1], n_frames, n_fft // 2 + 1))
    block = n_frames if y.device.type != "cpu" else CPU_FRAME_BLOCK
    row = 0
    for frames in pieces:
        for lo in range(0, frames.shape[-2], block):
            spectrum = torch.fft.rfft(frames[..., lo : lo + block, :] * window, dim=-1)
            squares = torch.view_as_real(spectrum).square_()  # (..., block, bins, 2)
            # |X|^2 = re^2 + im^2: one contiguous square, then a strided add, is 2-7x
            # faster on a CPU than abs() (a square root) or a sum over a last axis of 2
            m = squares.shape[-3]
            torch.add(squares[..., 0], squares[..., 1], out=power[..., row : row + m, :])
            row += m
    return filterbank(power)


def _config(sr: int, **overrides) -> FeatureConfig:
    return FeatureConfig(sr=int(sr), **overrides).validate()


def _log_mel_frames(y: torch.Tensor, config: FeatureConfig) -> torch.Tensor:
    mel = _mel_power_frames(y, config)
    return COMPRESSIONS[config.compression](mel, config)


def _mfcc_frames(log_mel_frames: torch.Tensor, config: FeatureConfig, deltas: bool):
    """MFCCs [shape=(..., frames, n_mfcc)], with first and second differences after them
    on each frame [shape=(..., frames, 3 n_mfcc)] when `deltas`."""
    n = config.n_mfcc
    dct = _dct_matrix(config.n_mels, n, log_mel_frames.device)  # (n_mels, n rounded up)
    padded = log_mel_frames @ dct  # (..., frames, n rounded up), zeros after n
    if not deltas:
        return padded[..., :n].contiguous()
    out = log_mel_frames.new_empty((*log_mel_frames.shape[:-1], 3 * n))
    # the differences of the padded columns too: contiguous rows are faster to add than
    # the 13 of every 16 a slice would leave
    for i, part in enumerate([padded, *_deltas_frames(padded, orders=(1, 2))]):
        out[..., i * n : (i + 1) * n] = part[..., :n]
    return out


def log_mel(
    *,
    y: Array,
    sr: int,
    n_fft: int = 1024,
    hop_length: int = 512,
    n_mels: int = 128,
    compression: str = "db",
    top_db: float = 80.0,
) -> Array:
    """Log-compressed mel spectrogram [shape=(..., n_mels, frames)] of y [shape=(..., n)]."""
    config = _config(
        sr,
        n_fft=n_fft,
        hop_length=hop_length,
        n_mels=n_mels,
        compression=compression,
        top_db=top_db,
    )
    tensor, to_numpy = _as_tensor(y)
    with torch.inference_mode():
        out = _log_mel_frames(tensor, config).transpose(-1, -2)
    return _back(out.contiguous(), to_numpy)


def mfcc(
    *,
    y: Array,
    sr: int,
    n_mfcc: int = 13,
    deltas: bool = True,
    n_fft: int = 1024,
    hop_length: int = 512,
    n_mels: int = 128,
) -> Array:
    """MFCCs [shape=(..., 3 * n_mfcc or n_mfcc, frames)]: coefficients, then first and
    second differences (librosa.feature.delta, width 9) when `deltas`."""
    config = _config(sr, n_fft=n_fft, hop_length=hop_length, n_mels=n_mels, n_mfcc=n_mfcc)
    tensor, to_numpy = _as_tensor(y)
    with torch.inference_mode():
        out = _mfcc_frames(_log_mel_frames(tensor, config), config, deltas).transpose(-1, -2)
    return _back(out.contiguous(), to_numpy)


def mel_and_mfcc(*, y: Array, config: FeatureConfig) -> tuple[Array, Array]:
    """Both features from one STFT, frames-major as the feature store keeps them:
    log-mel [shape=(..., frames, n_mels)] and MFCC + deltas [shape=(..., frames, 3 n_mfcc)].

    The MFCCs always use decibels (librosa's definition), whatever `config.compression`.
    """
    tensor, to_numpy = _as_tensor(y)
    with torch.inference_mode():
        mel = _mel_power_frames(tensor, config)
        compressed = None
        if config.compression != "db":  # before _db turns the power into decibels in place
            compressed = COMPRESSIONS[config.compression](mel, config)
        db = _db(mel, config)
        coefficients = _mfcc_frames(db, config, deltas=True)
        compressed = db if compressed is None else compressed
    return _back(compressed.contiguous(), to_numpy), _back(coefficients.contiguous(), to_numpy)


# --------------------------------------------------------------------------- deltas


@lru_cache(maxsize=16)
def _savgol(width: int, order: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Savitzky-Golay derivative filters of polynomial order `order` (librosa.feature.delta).

    Returns the interior kernel [shape=(width,)] and, for the first and last width // 2
    frames, the matrices [shape=(width // 2, width)] that evaluate the derivative of the
    polynomial fitted to the first (last) `width` frames, which is scipy's mode='interp'.
    """
    half = width // 2
    positions = np.arange(width, dtype=np.float64)
    vander = positions[:, None] ** np.arange(order + 1)[None, :]  # (width, order + 1)
    fit = np.linalg.pinv(vander)  # polynomial coefficients from the window's values
    # d^order/dt^order of t^m at every position in the window
    powers = np.arange(order + 1)
    falling = np.array(
        [np.prod(np.arange(m - order + 1, m + 1)) if m >= order else 0.0 for m in powers]
    )
    derivative = falling[None, :] * positions[:, None] ** np.maximum(powers - order, 0)[None, :]
    at_positions = derivative @ fit  # (width, width): derivative at each position
    interior = at_positions[half]  # the centre row: the ordinary Savitzky-Golay kernel
    return interior, at_positions[:half], at_positions[half + 1 :]


@lru_cache(maxsize=32)
def _delta_kernels(width: int, orders: tuple[int, ...], device: torch.device, dtype: torch.dtype):
    """The `_savgol` filters of several orders stacked: interior [shape=(width, K)],
    head and tail [shape=(K, width // 2, width)]."""
    filters = [_savgol(width, order) for order in orders]
    interior = np.stack([f[0] for f in filters], axis=1)
    head = np.stack([f[1] for f in filters])
    tail = np.stack([f[2] for f in filters])
    return tuple(torch.as_tensor(a, dtype=dtype, device=device) for a in (interior, head, tail))


def _deltas_frames(data: torch.Tensor, *, orders: tuple[int, ...], width: int = 9):
    """Differences of `orders` along the frames of data [shape=(..., frames, n)], one
    tensor [shape=(..., frames, n)] per order."""
    frames = data.shape[-2]
    if frames < width:
        raise ParameterError(f"need at least width={width} frames for deltas, got {frames}")
    half = width // 2
    middle = frames - width + 1
    _, head, tail = _delta_kernels(width, orders, data.device, data.dtype)
    data = data.contiguous()  # so every shifted copy below is one contiguous run
    out = []
    for k, order in enumerate(orders):
        kernel = _savgol(width, order)[0].tolist()  # Python floats: no device round trip
        differences = torch.empty_like(data)
        # the interior: a weighted sum of `width` shifted copies of the data, one fused
        # multiply-add each (a product over an unfolded view would copy the data first)
        interior = differences[..., half : frames - half, :]
        torch.mul(data[..., :middle, :], kernel[0], out=interior)
        for j in range(1, width):
            if kernel[j] != 0.0:
                interior.add_(data[..., j : j + middle, :], alpha=kernel[j])
        differences[..., :half, :] = head[k] @ data[..., :width, :]
        differences[..., frames - half :, :] = tail[k] @ data[..., frames - width :, :]
        out.append(differences)
    return out


def delta(*, data: Array, order: int = 1, width: int = 9) -> Array:
    """Local derivative along the last axis, as librosa.feature.delta(data, width, order)."""
    if width < 3 or width % 2 != 1:
        raise ParameterError(f"width must be an odd integer >= 3, got {width!r}")
    if not (isinstance(order, int) and order >= 1):
        raise ParameterError(f"order must be a positive integer, got {order!r}")
    tensor, to_numpy = _as_tensor(data)
    frames_major = tensor.unsqueeze(-1) if tensor.ndim == 1 else tensor.transpose(-1, -2)
    (out,) = _deltas_frames(frames_major, orders=(order,), width=width)
    out = out[..., 0] if tensor.ndim == 1 else out.transpose(-1, -2)
    return _back(out.contiguous(), to_numpy)
