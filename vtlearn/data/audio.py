"""Log-mel spectrograms in tf.data (DAVEnet's front end, as MCN uses it).

The recipe of DAVEnet's `LoadAudio` (Harwath et al.), which the MCN release
ships: remove the DC offset, pre-emphasis 0.97, a 25-ms symmetric Hamming
window (n_fft = window length, 400 at 16 kHz), 10-ms hop, power spectrum, 40
Slaney mel bands from 20 Hz to the Nyquist frequency, then decibels relative
to the maximum (librosa's `power_to_db(ref=np.max)`: amin 1e-10, top_db 80).
Frames are centred on multiples of the hop (librosa's `center=True`) with
zero padding (librosa >= 0.10's default `pad_mode="constant"`; the release's
older librosa padded by reflection, which changes only the first and last
frame). Window and hop are given in seconds so other sample rates (the lab's
8 kHz) keep the same time resolution.

Computed once per chunk record (the release normalises by the maximum over
a whole video's spectrogram; here it is a chunk's), then sliced per clip.
"""

from __future__ import annotations

import functools

import numpy as np
import tensorflow as tf

WINDOW_SECONDS = 0.025
HOP_SECONDS = 0.01
PREEMPHASIS = 0.97
FMIN = 20.0
AMIN = 1e-10
TOP_DB = 80.0


def frame_sizes(rate: float) -> tuple[int, int]:
    """(window = n_fft, hop) in samples at `rate` Hz."""
    return int(round(WINDOW_SECONDS * rate)), int(round(HOP_SECONDS * rate))


def _hz_to_mel(hz: np.ndarray) -> np.ndarray:
    """Slaney's mel scale: linear below 1 kHz, logarithmic above."""
    hz = np.asarray(hz, np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(hz < 1000.0, hz * 3.0 / 200.0,
                    15.0 + np.log(np.maximum(hz, 1e-10) / 1000.0) / log_step)


def _mel_to_hz(mel: np.ndarray) -> np.ndarray:
    mel = np.asarray(mel, np.float64)
    log_step = np.log(6.4) / 27.0
    return np.where(mel < 15.0, mel * 200.0 / 3.0, 1000.0 * np.exp(log_step * (mel - 15.0)))


@functools.lru_cache(maxsize=16)
def mel_filterbank(rate: float, n_fft: int, num_bands: int, fmin: float = FMIN) -> np.ndarray:
    """float32 [n_fft // 2 + 1, num_bands]: triangular Slaney-normalised filters.

    Band m rises from mel point m to m + 1 and falls to m + 2 (num_bands + 2
    points evenly spaced in mel from `fmin` to rate / 2), scaled by
    2 / (width in Hz) so each has unit area. Bands narrower than an FFT bin
    are all zero (librosa warns about the same).
    """
    bins = np.linspace(0.0, rate / 2.0, n_fft // 2 + 1)
    edges = _mel_to_hz(np.linspace(_hz_to_mel(fmin), _hz_to_mel(rate / 2.0), num_bands + 2))
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lo) / (mid - lo)
    falling = (hi - bins[None]) / (hi - mid)
    weights = np.maximum(0.0, np.minimum(rising, falling)) * (2.0 / (hi - lo))
    return weights.T.astype(np.float32)


def log_mel(wave: tf.Tensor, rate: float, num_bands: int = 40) -> tf.Tensor:
    """float32 [1 + S // hop, num_bands] log-mel spectrogram (dB, max 0) of wave [S].

    A silent (all-zero) wave gives all zeros (every frame equals the maximum).
    """
    n_fft, hop = frame_sizes(rate)
    wave = tf.convert_to_tensor(wave, tf.float32)
    wave = wave - tf.reduce_mean(wave)
    wave = tf.concat([wave[:1], wave[1:] - PREEMPHASIS * wave[:-1]], 0)
    wave = tf.pad(wave, [[n_fft // 2, n_fft // 2]])
    hamming = (0.54 - 0.46 * np.cos(2 * np.pi * np.arange(n_fft) / (n_fft - 1))).astype(
        np.float32)  # symmetric, as scipy.signal.hamming(n_fft)
    frames = tf.signal.frame(wave, n_fft, hop) * hamming  # [F, n_fft]
    power = tf.abs(tf.signal.rfft(frames, [n_fft])) ** 2
    mel = power @ mel_filterbank(float(rate), n_fft, num_bands)
    db = 10.0 * tf.math.log(tf.maximum(mel, AMIN)) / np.log(10.0)
    db = db - tf.reduce_max(db)
    return tf.maximum(db, -TOP_DB)


def clip_frames(spectrogram: tf.Tensor, chunk_start: tf.Tensor, lo: tf.Tensor, hi: tf.Tensor,
                num_frames: int, rate: float) -> tuple[tf.Tensor, tf.Tensor]:
    """The frames of windows [lo, hi) [W], zero-padded or cut to `num_frames`.

    Args:
      spectrogram: [F, M] of the chunk starting at `chunk_start` seconds.
      lo, hi: [W] window bounds, seconds.
      num_frames: frames per window (MCN: 1,000 = 10 s).
      rate: the waveform's sample rate.

    Returns:
      (float32 [W, num_frames, M] frames, int32 [W] valid frames of each
      window: those of the spectrogram inside it, at most `num_frames`).
    """
    _, hop = frame_sizes(rate)
    total = tf.shape(spectrogram)[0]
    first = tf.maximum(tf.cast(tf.round((lo - chunk_start) * rate / hop), tf.int32), 0)
    last = tf.cast(tf.round((hi - chunk_start) * rate / hop), tf.int32)
    valid = tf.clip_by_value(tf.minimum(last, total) - first, 0, num_frames)
    idx = first[:, None] + tf.range(num_frames)[None]
    inside = tf.range(num_frames)[None] < valid[:, None]
    frames = tf.gather(spectrogram, tf.clip_by_value(idx, 0, tf.maximum(total - 1, 0)))
    return tf.where(inside[..., None], frames, 0.0), valid
