"""The log-mel front end against librosa (an independent implementation)."""

import librosa
import numpy as np
import pytest
import scipy.signal

from vtlearn.data import audio


@pytest.mark.parametrize("rate", [16000, 8000])
def test_log_mel_matches_librosa(rate):
    rng = np.random.default_rng(0)
    t = np.arange(int(2.37 * rate)) / rate
    wave = (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.normal(size=t.shape)
            + 0.1).astype(np.float32)  # with a DC offset to remove
    n_fft, hop = audio.frame_sizes(rate)
    assert (n_fft, hop) == (rate // 40, rate // 100)
    y = wave.astype(np.float64) - wave.mean()
    y = np.append(y[0], y[1:] - 0.97 * y[:-1])
    power = np.abs(librosa.stft(y, n_fft=n_fft, hop_length=hop, win_length=n_fft,
                                window=scipy.signal.windows.hamming(n_fft, sym=True),
                                center=True, pad_mode="constant")) ** 2
    bank = librosa.filters.mel(sr=rate, n_fft=n_fft, n_mels=40, fmin=20.0)
    np.testing.assert_allclose(audio.mel_filterbank(float(rate), n_fft, 40), bank.T,
                               atol=1e-7)
    expected = librosa.power_to_db(bank @ power, ref=np.max).T
    got = audio.log_mel(wave, rate).numpy()
    assert got.shape == expected.shape == (1 + len(wave) // hop, 40)
    np.testing.assert_allclose(got, expected, atol=2e-3)  # dB; float32 vs float64


def test_silence_is_finite():
    assert np.all(audio.log_mel(np.zeros(4000, np.float32), 8000).numpy() == 0.0)


def test_clip_frames_cuts_pads_and_counts_valid_frames():
    spec = np.arange(50 * 2, dtype=np.float32).reshape(50, 2)  # 50 frames at 10 ms
    frames, valid = audio.clip_frames(spec, 10.0, np.array([10.1, 10.4, 9.0], np.float32),
                                      np.array([10.3, 11.4, 9.5], np.float32), 30, 8000)
    frames, valid = frames.numpy(), valid.numpy()
    np.testing.assert_array_equal(valid, [20, 10, 0])  # 20 frames; 100 cut at 50 -> 10; none
    np.testing.assert_array_equal(frames[0, :20], spec[10:30])
    assert np.all(frames[0, 20:] == 0) and np.all(frames[2] == 0)
    np.testing.assert_array_equal(frames[1, :10], spec[40:50])
