"""Tests of vtlearn.data.convert on small real video, caption and feature files."""

import fractions
import io
import json
import math
import os
import posixpath
import shutil
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from vtlearn import fs
from vtlearn.data import convert, records, schema

FPS = 10.0
SHORT_SIDE = 48
RATE = 16000
CHUNK = 1.0
NUM_SHARDS = 3
LEVEL_STEP = 5  # gray level of source frame i is LEVEL_STEP * i (mod 250)
# Variable frame rate: gaps cycle through these (s), 47 frames over 2.45 s.
VFR_TIMES = np.round(np.cumsum(np.r_[0, np.resize([0.037, 0.071, 0.053], 46)]), 3)
VIDEO_CODEC = "libx264" if "libx264" in av.codecs_available else "mpeg4"
ROOT = Path(__file__).parents[2]
CAPTIONS = {
    "vfr": {"start": [1.5, 0.0], "end": [2.4, 1.2],
            "text": ["then stir, slowly", "first, add the flour"]},
    "portrait": {"start": [0.2], "end": [1.9], "text": ["hold the camera upright"]},
    "trunc": {"start": [0.0], "end": [2.5], "text": ["this file was cut"]},
    "ghost": {"start": [0.0], "end": [1.0], "text": ["no video file for me"]},
}


def _write_video(path, times, size, audio=None, codec=VIDEO_CODEC,
                 audio_start=0.0, amplitude=0.5):
    """Writes gray frames (level 5i mod 250 at times[i]) and a 440 Hz tone.

    Args:
        path: output file; the extension picks the container.
        times: [F] presentation times, seconds (millisecond precision).
        size: (width, height).
        audio: None or (codec, rate, layout) of a 440 Hz sine track.
        codec: video codec.
        audio_start: time of the first audio sample, seconds.
        amplitude: of the tone (0: a silent, all-zero audio track).
    """
    width, height = size
    with av.open(str(path), "w") as container:
        video = container.add_stream(codec, rate=30)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.bit_rate = 4_000_000
        video.codec_context.time_base = fractions.Fraction(1, 1000)
        sound = None if audio is None else container.add_stream(
            audio[0], rate=audio[1], layout=audio[2])
        for i, t in enumerate(times):
            gray = np.full((height, width, 3), LEVEL_STEP * i % 250, np.uint8)
            frame = av.VideoFrame.from_ndarray(gray, format="rgb24")
            frame.pts, frame.time_base = round(t * 1000), fractions.Fraction(1, 1000)
            container.mux(video.encode(frame))
        container.mux(video.encode())
        if sound is not None:
            _write_tone(container, sound, times[-1] + 0.05, audio_start, amplitude)


def _write_tone(container, stream, seconds, start_seconds, amplitude=0.5):
    """Encodes an `amplitude` 440 Hz sine of `seconds` from `start_seconds`."""
    rate, layout = stream.codec_context.sample_rate, stream.codec_context.layout.name
    channels = stream.codec_context.layout.nb_channels
    n = round(seconds * rate)
    tone = amplitude * np.sin(2 * np.pi * 440 * np.arange(n) / rate)
    block, offset = 1024, round(start_seconds * rate)
    for start in range(0, n, block):
        part = np.tile(tone[start:start + block], (channels, 1))
        if stream.codec_context.name == "aac":
            frame = av.AudioFrame.from_ndarray(part.astype(np.float32),
                                               format="fltp", layout=layout)
        else:
            frame = av.AudioFrame.from_ndarray(
                (part.T.reshape(1, -1) * 32767).astype(np.int16), format="s16",
                layout=layout)
        frame.sample_rate, frame.pts = rate, offset + start
        frame.time_base = fractions.Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


@pytest.fixture(scope="module")
def inputs(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("inputs")
    videos = root / "videos"
    (videos / "sub").mkdir(parents=True)
    _write_video(videos / "vfr.mp4", VFR_TIMES, (160, 96), ("aac", 44100, "stereo"),
                 codec="mpeg4")
    _write_video(videos / "sub" / "portrait.mkv", np.arange(55) / 25, (96, 160),
                 ("pcm_s16le", 8000, "mono"), audio_start=0.5)
    _write_video(videos / "silent.mp4", np.arange(10) / 10, (160, 96))
    _write_video(root / "long.mkv", np.arange(90) / 30, (160, 96))
    data = (root / "long.mkv").read_bytes()
    (videos / "trunc.mkv").write_bytes(data[:len(data) // 2])
    (videos / "corrupt.mp4").write_bytes(np.random.default_rng(0).bytes(4000))
    (videos / "notes.txt").write_text("not a video")
    (root / "captions.json").write_text(json.dumps(CAPTIONS))
    (root / "segments.csv").write_text(
        "video_id,label,start,end\nportrait,7,1.0,2.0\nportrait,3,0.0,0.5\n")
    return root


def _convert_cli(inputs: Path, prefix: Path, *extra: str) -> dict:
    return convert.main([
        "videos", "--video_dir", str(inputs / "videos"),
        "--captions", str(inputs / "captions.json"),
        "--segments", str(inputs / "segments.csv"),
        "--out_prefix", str(prefix), "--num_shards", str(NUM_SHARDS),
        "--fps", str(FPS), "--short_side", str(SHORT_SIDE),
        "--sample_rate", str(RATE), "--chunk_seconds", str(CHUNK), *extra])


@pytest.fixture(scope="module")
def converted(inputs, tmp_path_factory) -> tuple[Path, dict]:
    prefix = tmp_path_factory.mktemp("out") / "videos"
    return prefix, _convert_cli(inputs, prefix)


def _read(prefix: Path, **parse_kwargs) -> dict[str, list[dict]]:
    """Chunks per video id over all shards, in record order."""
    out = {}
    for path in records.shard_paths(prefix, NUM_SHARDS):
        for chunk in records.read_chunks(path, **parse_kwargs):
            out.setdefault(chunk["video/id"].decode(), []).append(chunk)
    return out


def _frames(chunks: list[dict]) -> np.ndarray:
    """uint8 [F, H, W, 3] decoded frames of all chunks."""
    return np.stack([np.asarray(Image.open(io.BytesIO(jpeg)))
                     for c in chunks for jpeg in c["image/encoded"]])


def _canonical_records(path: str) -> list[bytes]:
    """The records of a shard, re-serialized with sorted map keys."""
    return [tf.train.SequenceExample.FromString(raw.numpy()).SerializeToString(
        deterministic=True) for raw in tf.data.TFRecordDataset(path)]


def _peak_hz(waveform: np.ndarray, rate: float) -> float:
    spectrum = np.abs(np.fft.rfft(waveform))
    return float(np.fft.rfftfreq(len(waveform), 1 / rate)[np.argmax(spectrum)])


def test_summary_counts_every_outcome(converted):
    prefix, summary = converted
    c = summary["counts"]
    assert (c["videos"], c["converted"], c["failed"]) == (5, 4, 1)
    assert list(summary["failed"]) == ["corrupt"]
    assert "InvalidDataError" in summary["failed"]["corrupt"]
    assert summary["uncaptioned"] == ["corrupt", "silent"]
    assert c["skipped_uncaptioned"] == 0
    assert summary["missing"] == ["ghost"]
    assert sorted(summary["warnings"]) == ["silent", "trunc"]  # both lack audio
    assert summary["no_audio"] == ["silent", "trunc"]
    assert (c["warned"], c["no_audio"]) == (2, 2)
    assert (c["shards_written"], c["shards_skipped_done"]) == (NUM_SHARDS, 0)
    assert c["records"] == c["records_written"] == sum(
        len(v) for v in _read(prefix).values())
    saved = json.loads(Path(f"{prefix}.summary.json").read_text())
    assert saved["counts"] == c and saved["failed"] == summary["failed"]
    for path in records.shard_paths(prefix, NUM_SHARDS):
        assert json.loads(Path(path + ".done.json").read_text())["records"] > 0


def test_frames_are_nearest_source_frames_at_target_fps(converted):
    chunks = _read(converted[0])["vfr"]
    duration = float(chunks[0]["video/duration"])
    assert VFR_TIMES[-1] < duration <= VFR_TIMES[-1] + 0.1
    frames = _frames(chunks)
    assert len(frames) == math.ceil(duration * FPS - 1e-6)
    assert frames.shape[1:] == (SHORT_SIDE, 80, 3)
    targets = np.arange(len(frames)) / FPS
    nearest = np.argmin(np.abs(VFR_TIMES[None, :] - targets[:, None]), axis=1)
    shown = np.round(frames.mean(axis=(1, 2, 3)) / LEVEL_STEP)
    np.testing.assert_array_equal(shown, nearest)
    constant_rate_guess = np.round(targets * len(VFR_TIMES) / duration)
    assert not np.array_equal(constant_rate_guess, nearest)


def test_chunks_split_frames_by_time(converted):
    chunks = _read(converted[0])["vfr"]
    duration = float(chunks[0]["video/duration"])
    starts = [float(c["clip/start/timestamp"]) for c in chunks]
    ends = [float(c["clip/end/timestamp"]) for c in chunks]
    assert starts == [0.0, 1.0, 2.0]
    assert ends == pytest.approx([1.0, 2.0, duration])
    assert [len(c["image/encoded"]) for c in chunks] == [10, 10, len(
        _frames(chunks)) - 20]
    assert all(float(c["image/frame_rate"]) == FPS for c in chunks)


def test_audio_is_mono_resampled_and_as_long_as_video(converted):
    videos = _read(converted[0], waveform=True)
    for video_id in ("vfr", "portrait"):  # aac stereo 44.1 kHz, pcm mono 8 kHz
        chunks = videos[video_id]
        wave = np.concatenate([c["WAVEFORM/feature/floats"] for c in chunks])
        assert float(chunks[0]["WAVEFORM/sample_rate"]) == RATE
        assert len(wave) == round(float(chunks[0]["video/duration"]) * RATE)
        assert np.abs(wave).max() <= 1.0 and np.abs(wave).max() > 0.2
        assert abs(_peak_hz(wave, RATE) - 440) < 5
        assert [len(c["WAVEFORM/feature/floats"]) for c in chunks[:-1]] == [
            CHUNK * RATE] * (len(chunks) - 1)
    portrait = np.concatenate(
        [c["WAVEFORM/feature/floats"] for c in videos["portrait"]])
    assert np.abs(portrait[:round(0.45 * RATE)]).max() == 0  # audio starts at 0.5 s
    assert np.abs(portrait[round(0.55 * RATE):RATE]).max() > 0.3
    silent = videos["silent"][0]
    assert float(silent["WAVEFORM/sample_rate"]) == 0
    assert len(silent["WAVEFORM/feature/floats"]) == 0


def test_portrait_short_side_and_annotations(converted):
    chunks = _read(converted[0])["portrait"]
    assert _frames(chunks).shape[1:] == (80, SHORT_SIDE, 3)
    assert float(chunks[0]["video/duration"]) == pytest.approx(55 / 25, abs=0.05)
    for chunk in chunks:
        assert list(chunk["caption/string"]) == [b"hold the camera upright"]
        np.testing.assert_array_equal(chunk["segment/label"], [3, 7])
        np.testing.assert_allclose(chunk["segment/start"], [0.0, 1.0])


def test_captions_attached_sorted_with_commas(converted):
    videos = _read(converted[0])
    for chunk in videos["vfr"]:
        assert list(chunk["caption/string"]) == [
            b"first, add the flour", b"then stir, slowly"]
        np.testing.assert_allclose(chunk["caption/start"], [0.0, 1.5])
        np.testing.assert_allclose(chunk["caption/end"], [1.2, 2.4])
    assert len(videos["silent"][0]["caption/string"]) == 0


def test_truncated_file_keeps_decodable_part(converted):
    prefix, summary = converted
    chunks = _read(prefix)["trunc"]
    duration = float(chunks[0]["video/duration"])
    assert 0.5 < duration < 2.5
    assert len(_frames(chunks)) == math.ceil(duration * FPS - 1e-6)
    assert "truncated" in " ".join(summary["warnings"]["trunc"])


def test_skip_uncaptioned(inputs, tmp_path):
    summary = _convert_cli(inputs, tmp_path / "captioned", "--skip_uncaptioned")
    c = summary["counts"]
    assert (c["videos"], c["skipped_uncaptioned"], c["converted"], c["failed"]) == (
        5, 2, 3, 0)
    assert "silent" not in _read(tmp_path / "captioned")


def test_resume_skips_done_shards_and_redoes_missing_ones(inputs, tmp_path):
    prefix = tmp_path / "resume"
    first = _convert_cli(inputs, prefix)
    paths = records.shard_paths(prefix, NUM_SHARDS)
    contents = [_canonical_records(p) for p in paths]
    inodes = [os.stat(p).st_ino for p in paths]  # a rewrite (tmp + rename) changes it

    again = _convert_cli(inputs, prefix)
    c = again["counts"]
    assert (c["shards_skipped_done"], c["shards_written"], c["records_written"]) == (
        NUM_SHARDS, 0, 0)
    assert c["records"] == first["counts"]["records"]
    assert again["failed"] == first["failed"] and c["converted"] == 4
    assert again["no_audio"] == first["no_audio"] == ["silent", "trunc"]
    assert again["warnings"] == first["warnings"]
    assert [os.stat(p).st_ino for p in paths] == inodes

    os.remove(paths[1])
    os.remove(paths[2] + ".done.json")
    redone = _convert_cli(inputs, prefix)
    assert (redone["counts"]["shards_skipped_done"],
            redone["counts"]["shards_written"]) == (1, 2)
    assert os.stat(paths[0]).st_ino == inodes[0]
    assert os.stat(paths[2]).st_ino != inodes[2]  # redone: the check sees a rewrite
    assert [_canonical_records(p) for p in paths] == contents

    changed = _convert_cli(inputs, prefix, "--fps", "5")
    assert changed["counts"]["shards_written"] == NUM_SHARDS


def test_rerun_redoes_the_shards_whose_inputs_changed(inputs, tmp_path):
    """Corrected captions, or a replaced video file, redo exactly the shards of
    those videos; a rerun on unchanged inputs writes nothing."""
    own = tmp_path / "inputs"
    shutil.copytree(inputs, own)
    prefix = tmp_path / "out"
    _convert_cli(own, prefix)
    holder = {v: i for i, p in enumerate(records.shard_paths(prefix, NUM_SHARDS))
              for v in {c["video/id"].decode() for c in records.read_chunks(p)}}
    fixed = json.loads(json.dumps(CAPTIONS))
    fixed["portrait"]["text"] = ["hold the camera level"]
    (own / "captions.json").write_text(json.dumps(fixed))
    redone = _convert_cli(own, prefix)
    assert redone["counts"]["shards_written"] == 1
    assert {c["video/id"].decode(): list(c["caption/string"])
            for c in records.read_chunks(records.shard_paths(prefix, NUM_SHARDS)[
                holder["portrait"]])}["portrait"] == [b"hold the camera level"]
    assert _convert_cli(own, prefix)["counts"]["shards_written"] == 0
    video = own / "videos" / "silent.mp4"
    video.write_bytes(video.read_bytes() + b"\0")  # a new copy of the file
    again = _convert_cli(own, prefix)
    assert again["counts"]["shards_written"] == 1
    assert again["counts"]["shards_skipped_done"] == NUM_SHARDS - 1


class _Crash(BaseException):
    """Stands in for a kill in the middle of a shard."""


def test_crash_mid_shard_leaves_only_tmp_and_resumes(inputs, tmp_path, monkeypatch):
    prefix = tmp_path / "crash"
    decode = convert.VideoFileLoader.__call__

    def crash_on_vfr(self, source):
        if source.video_id == "vfr":
            raise _Crash()
        return decode(self, source)

    monkeypatch.setattr(convert.VideoFileLoader, "__call__", crash_on_vfr)
    with pytest.raises(_Crash):
        _convert_cli(inputs, prefix)
    paths = records.shard_paths(prefix, NUM_SHARDS)  # vfr is in shard 1
    assert os.path.exists(paths[0] + ".done.json")
    assert os.path.exists(paths[1] + ".tmp")
    assert not os.path.exists(paths[1]) and not os.path.exists(paths[1] + ".done.json")

    monkeypatch.setattr(convert.VideoFileLoader, "__call__", decode)
    resumed = _convert_cli(inputs, prefix)
    assert resumed["counts"]["shards_skipped_done"] == 1
    assert resumed["counts"]["converted"] == 4
    assert "vfr" in _read(prefix)


_SLOW_LOADER = """
import dataclasses, time
import numpy as np
from vtlearn.data import schema

@dataclasses.dataclass(frozen=True)
class SlowLoader:
    seconds: float = 1.0

    def __call__(self, source):
        time.sleep(self.seconds)
        return schema.Video(video_id=source.video_id, duration=2.0, captions=source.captions,
                            features_2d=np.zeros((2, 4), np.float32), feature_rate=1.0), []
"""

_CONVERT_SLOWLY = """
import sys
import numpy as np
from vtlearn.data import convert, schema
from slow_loader import SlowLoader

if __name__ == "__main__":  # the spawned workers import this file
    empty = schema.Captions(text=[], start=np.zeros(0, np.float32),
                            end=np.zeros(0, np.float32))
    sources = [convert.SourceVideo(f"v{i:02d}", {}, empty) for i in range(16)]
    convert.convert(sources, SlowLoader(), sys.argv[1], num_shards=8, workers=2)
"""


def _children(pid: int) -> set[int]:
    """Live (not zombie) processes whose parent is `pid`, from /proc."""
    out = set()
    for entry in os.listdir("/proc"):
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if entry.isdigit() and int(fields[1]) == pid and fields[0] != "Z":
            out.add(int(entry))
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads processes from /proc")
def test_workers_die_with_a_killed_parent_and_shards_stay_whole(tmp_path):
    """kill -9 of the converter while its 2 workers convert: the workers end
    (they used to go on converting the queued shards), and every shard on disk
    is complete."""
    (tmp_path / "slow_loader.py").write_text(_SLOW_LOADER)
    script = tmp_path / "convert_slowly.py"
    script.write_text(_CONVERT_SLOWLY)
    prefix = tmp_path / "out" / "shard"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")]))
    parent = subprocess.Popen([sys.executable, str(script), str(prefix)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while not list(prefix.parent.glob("*.tmp")):  # a worker is writing a shard
            assert parent.poll() is None, "the converter ended before it was killed"
            time.sleep(0.1)
        children = _children(parent.pid)
        assert children
        started = len([p for p in prefix.parent.iterdir()  # written or in progress
                       if p.name.endswith((".tfrecord", ".tfrecord.tmp"))])
    finally:
        parent.kill()
        parent.wait()
    # Counted work, not time: wait until the workers are gone, or have finished
    # a shard they had not started at the kill, as orphans went on to do.
    while (any(map(_alive, children))
           and len(list(prefix.parent.glob("*.tfrecord"))) <= started):
        time.sleep(0.1)
    assert not [pid for pid in children if _alive(pid)], "orphaned workers live on"
    finished = sorted(prefix.parent.glob("*.tfrecord"))
    assert len(finished) <= started < 8, (len(finished), started)
    for path in finished:
        assert (path.parent / (path.name + ".done.json")).exists()
        assert len(list(records.read_chunks(str(path)))) == 2  # 2 videos of 1 chunk each


def test_two_workers_write_the_same_shards(inputs, converted, tmp_path):
    prefix, serial = converted
    parallel = _convert_cli(inputs, tmp_path / "parallel", "--workers", "2")
    for a, b in zip(records.shard_paths(prefix, NUM_SHARDS),
                    records.shard_paths(tmp_path / "parallel", NUM_SHARDS)):
        assert _canonical_records(a) == _canonical_records(b)
    for key in ("failed", "warnings", "no_audio", "uncaptioned", "missing"):
        assert parallel[key] == serial[key]
    assert parallel["counts"] == serial["counts"]


def test_beam_direct_runner_writes_the_same_records_and_resumes(inputs, converted, tmp_path):
    prefix, local = converted
    beam_prefix = tmp_path / "beam"
    on_beam = _convert_cli(inputs, beam_prefix, "--runner", "DirectRunner", "--",
                           "--direct_num_workers=1")
    paths = records.shard_paths(beam_prefix, NUM_SHARDS)
    for a, b in zip(records.shard_paths(prefix, NUM_SHARDS), paths):
        assert _canonical_records(a) == _canonical_records(b)
    for key in ("failed", "warnings", "no_audio", "uncaptioned", "missing", "counts"):
        assert on_beam[key] == local[key], key
    assert not Path(f"{beam_prefix}.tasks").exists()  # the task files are cleaned up

    # Resumable as the local converter: only the shard without a sidecar is redone.
    os.remove(paths[1] + ".done.json")
    inode = os.stat(paths[0]).st_ino  # a rewrite (tmp + rename) changes it
    again = _convert_cli(inputs, beam_prefix, "--runner", "DirectRunner")
    c = again["counts"]
    assert (c["shards_skipped_done"], c["shards_written"]) == (NUM_SHARDS - 1, 1)
    assert os.stat(paths[0]).st_ino == inode
    assert [_canonical_records(p) for p in paths] == [
        _canonical_records(p) for p in records.shard_paths(prefix, NUM_SHARDS)]
    assert again["failed"] == local["failed"]


def test_beam_without_its_install_fails_first_naming_the_extra(inputs, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "apache_beam", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'vtlearn\[beam\]'"):
        _convert_cli(inputs, tmp_path / "out" / "videos", "--runner", "DirectRunner")
    assert not (tmp_path / "out").exists()  # nothing was started


def test_inputs_and_outputs_on_a_non_local_filesystem(inputs, converted, tmp_path):
    """Videos, captions and segments on TensorFlow's in-memory filesystem (a
    stand-in for gs://, which a Dataflow run reads) convert to the same records."""
    remote = "ram://convert-inputs"
    for name in fs.walk_files(inputs):
        fs.makedirs(posixpath.dirname(fs.join(remote, name)))
        fs.copy(inputs / name, fs.join(remote, name))
    try:
        summary = convert.main([
            "videos", "--video_dir", f"{remote}/videos",
            "--captions", f"{remote}/captions.json", "--segments", f"{remote}/segments.csv",
            "--out_prefix", f"{remote}/out/videos", "--num_shards", str(NUM_SHARDS),
            "--fps", str(FPS), "--short_side", str(SHORT_SIDE), "--sample_rate", str(RATE),
            "--chunk_seconds", str(CHUNK)])
        prefix, local = converted
        for a, b in zip(records.shard_paths(prefix, NUM_SHARDS),
                        records.shard_paths(f"{remote}/out/videos", NUM_SHARDS)):
            assert _canonical_records(a) == _canonical_records(b)
        assert summary["counts"] == local["counts"]
        assert summary["failed"]["corrupt"] == local["failed"]["corrupt"].replace(
            str(inputs), remote)  # names the input, not a local copy
    finally:
        fs.rmtree(remote)


def _audio_videos(directory: Path, **silent_track) -> Path:
    """`directory`/videos with `tone.mkv` (8 kHz PCM 440 Hz tone) and `mute.mp4`:
    no audio stream, or (with `silent_track`) an audio track of those
    `_write_video` options."""
    videos = directory / "videos"
    videos.mkdir(parents=True)
    times = np.arange(15) / 10
    _write_video(videos / "tone.mkv", times, (64, 48), ("pcm_s16le", 8000, "mono"))
    if silent_track:
        _write_video(videos / "mute.mkv", times, (64, 48),
                     ("pcm_s16le", 8000, "mono"), **silent_track)
    else:
        _write_video(videos / "mute.mp4", times, (64, 48))
    return videos


def _chunks_by_video(prefix: Path, num_shards: int = 1) -> dict[str, list[dict]]:
    out = {}
    for path in records.shard_paths(prefix, num_shards):
        for chunk in records.read_chunks(path, waveform=True):
            out.setdefault(chunk["video/id"].decode(), []).append(chunk)
    return out


def test_video_without_audio_stream_is_converted_counted_and_warned(tmp_path,
                                                                    capsys):
    videos = _audio_videos(tmp_path)
    prefix = tmp_path / "out" / "audio"
    summary = convert.main([
        "videos", "--video_dir", str(videos), "--out_prefix", str(prefix),
        "--num_shards", "1", "--fps", str(FPS), "--short_side", "32",
        "--sample_rate", str(RATE), "--chunk_seconds", str(CHUNK)])
    c = summary["counts"]
    assert (c["videos"], c["converted"], c["failed"]) == (2, 2, 0)
    assert (c["no_audio"], c["warned"]) == (1, 1)
    assert summary["no_audio"] == ["mute"]
    [message] = summary["warnings"]["mute"]
    assert str(videos / "mute.mp4") in message and "no audio stream" in message
    saved = json.loads(Path(f"{prefix}.summary.json").read_text())
    assert saved["no_audio"] == ["mute"] and saved["counts"]["no_audio"] == 1
    printed = capsys.readouterr().out
    assert "converted without audio (audio requested): 1" in printed
    assert "mute.mp4" in printed

    chunks = _chunks_by_video(prefix)
    assert len(chunks["mute"]) == 2 and len(_frames(chunks["mute"])) == 15
    for chunk in chunks["mute"]:
        assert float(chunk["WAVEFORM/sample_rate"]) == 0
        assert len(chunk["WAVEFORM/feature/floats"]) == 0
    tone = np.concatenate([c["WAVEFORM/feature/floats"] for c in chunks["tone"]])
    assert float(chunks["tone"][0]["WAVEFORM/sample_rate"]) == RATE
    assert len(tone) == round(float(chunks["tone"][0]["video/duration"]) * RATE)
    assert np.abs(tone).max() > 0.2

    no_audio_requested = convert.main([
        "videos", "--video_dir", str(videos), "--out_prefix",
        str(tmp_path / "out" / "no_audio"), "--num_shards", "1", "--fps",
        str(FPS), "--short_side", "32", "--sample_rate", "0"])
    assert no_audio_requested["counts"]["no_audio"] == 0
    assert no_audio_requested["no_audio"] == [] and not no_audio_requested["warnings"]


def test_video_with_all_zero_audio_keeps_zeros_and_is_counted(tmp_path):
    videos = _audio_videos(tmp_path, amplitude=0.0)
    summary = convert.convert_videos(
        videos, tmp_path / "out", 1,
        loader=convert.VideoFileLoader(fps=FPS, short_side=32, sample_rate=RATE),
        chunk_seconds=CHUNK)
    assert summary["no_audio"] == ["mute"] and summary["counts"]["warned"] == 1
    [message] = summary["warnings"]["mute"]
    assert str(videos / "mute.mkv") in message and "all zeros" in message
    chunks = _chunks_by_video(tmp_path / "out")["mute"]
    wave = np.concatenate([c["WAVEFORM/feature/floats"] for c in chunks])
    assert float(chunks[0]["WAVEFORM/sample_rate"]) == RATE
    assert len(wave) == round(float(chunks[0]["video/duration"]) * RATE)
    assert not np.any(wave)


# Feature sets ------------------------------------------------------------------


def _write_csv_captions(directory: Path, video_ids):
    directory.mkdir()
    for video_id in video_ids:
        (directory / f"{video_id}.csv").write_text(
            'start,end,text\n0.5,2.0,"chop the onion, finely"\n3.0,4.0,fry it\n')


def test_npz_features_with_waveforms_and_durations(tmp_path):
    rng = np.random.default_rng(0)
    feats = {"a": (rng.normal(size=(5, 8)), rng.normal(size=(5, 4))),
             "b": (rng.normal(size=(3, 8)), rng.normal(size=(3, 4)))}
    (tmp_path / "feats").mkdir()
    (tmp_path / "wav").mkdir()
    for video_id, (f2, f3) in feats.items():
        np.savez(tmp_path / "feats" / f"{video_id}.npz", resnet=f2, resnext=f3)
    wave_a = rng.uniform(-1, 1, 5 * 100).astype(np.float32)
    np.save(tmp_path / "wav" / "a.npy", wave_a)
    np.save(tmp_path / "wav" / "b.npy", (rng.uniform(-1, 1, 350) * 32767).astype(
        np.int16))
    _write_csv_captions(tmp_path / "captions", ["a", "b", "c"])
    (tmp_path / "durations.csv").write_text("video_id,duration\nb,3.5\n")
    prefix = tmp_path / "out" / "feats"
    summary = convert.main([
        "features", "--features_dir", str(tmp_path / "feats"),
        "--feature_keys", "2d=resnet,3d=resnext", "--feature_rate", "1",
        "--waveform_dir", str(tmp_path / "wav"), "--waveform_rate", "100",
        "--durations", str(tmp_path / "durations.csv"),
        "--captions", str(tmp_path / "captions"),
        "--out_prefix", str(prefix), "--num_shards", "2", "--chunk_seconds", "2"])
    assert summary["counts"]["converted"] == 2 and summary["missing"] == ["c"]

    videos = {}
    for path in records.shard_paths(prefix, 2):
        for chunk in records.read_chunks(path, frames=False, waveform=True,
                                         features_2d=8, features_3d=4):
            videos.setdefault(chunk["video/id"].decode(), []).append(chunk)
    assert [float(c["video/duration"]) for c in videos["a"]] == [5.0] * 3
    assert float(videos["b"][0]["video/duration"]) == 3.5
    for video_id, (f2, f3) in feats.items():
        chunks = videos[video_id]
        assert [float(c["clip/start/timestamp"]) for c in chunks] == [0.0, 2.0, 4.0][
            :len(chunks)]
        assert all(float(c["FEATURES/frame_rate"]) == 1.0 for c in chunks)
        np.testing.assert_allclose(
            np.concatenate([c["FEATURES/2d/floats"] for c in chunks]), f2, rtol=1e-6)
        np.testing.assert_allclose(
            np.concatenate([c["FEATURES/3d/floats"] for c in chunks]), f3, rtol=1e-6)
        assert list(chunks[0]["caption/string"]) == [b"chop the onion, finely",
                                                     b"fry it"]
    wave = np.concatenate([c["WAVEFORM/feature/floats"] for c in videos["a"]])
    np.testing.assert_array_equal(wave, wave_a)
    wave_b = np.concatenate([c["WAVEFORM/feature/floats"] for c in videos["b"]])
    assert len(wave_b) == 350 and np.abs(wave_b).max() <= 1.0


def test_features_without_waveform_file_are_converted_and_counted(tmp_path):
    (tmp_path / "feats").mkdir()
    (tmp_path / "wav").mkdir()
    for video_id in ("heard", "unheard", "zeros"):
        np.save(tmp_path / "feats" / f"{video_id}.npy", np.ones((4, 3), np.float32))
    np.save(tmp_path / "wav" / "heard.npy", np.full(400, 0.25, np.float32))
    np.save(tmp_path / "wav" / "zeros.npy", np.zeros(400, np.int16))
    summary = convert.convert_features(
        tmp_path / "feats", tmp_path / "out", 1, waveform_dir=tmp_path / "wav",
        waveform_rate=100, chunk_seconds=2.0)
    c = summary["counts"]
    assert (c["converted"], c["failed"], c["no_audio"], c["warned"]) == (3, 0, 2, 2)
    assert summary["no_audio"] == ["unheard", "zeros"]
    assert "no waveform file unheard.npy" in summary["warnings"]["unheard"][0]
    assert str(tmp_path / "wav" / "zeros.npy") in summary["warnings"]["zeros"][0]
    chunks = {}
    for chunk in records.read_chunks(f"{tmp_path}/out-00000-of-00001.tfrecord",
                                     frames=False, waveform=True, features_2d=3):
        chunks.setdefault(chunk["video/id"].decode(), []).append(chunk)
    for chunk in chunks["unheard"]:
        assert float(chunk["WAVEFORM/sample_rate"]) == 0
        assert len(chunk["WAVEFORM/feature/floats"]) == 0
        assert chunk["FEATURES/2d/floats"].shape == (2, 3)
    assert float(chunks["zeros"][0]["WAVEFORM/sample_rate"]) == 100
    assert len(chunks["zeros"][0]["WAVEFORM/feature/floats"]) == 200
    assert not np.any(chunks["zeros"][0]["WAVEFORM/feature/floats"])
    assert float(chunks["heard"][0]["WAVEFORM/sample_rate"]) == 100


def test_npy_feature_dirs_cut_or_reject_length_mismatch(tmp_path):
    (tmp_path / "2d").mkdir()
    (tmp_path / "3d").mkdir()
    lengths = {"even": (6, 6), "off_by_one": (6, 5), "off_by_three": (6, 3)}
    for video_id, (n2, n3) in lengths.items():
        np.save(tmp_path / "2d" / f"{video_id}.npy", np.ones((n2, 3), np.float32))
        np.save(tmp_path / "3d" / f"{video_id}.npy", np.ones((n3, 2), np.float32))
    np.save(tmp_path / "2d" / "no_3d.npy", np.ones((4, 3), np.float32))
    summary = convert.convert_features(
        tmp_path / "2d", tmp_path / "out", 1, features_3d_dir=tmp_path / "3d",
        feature_rate=2.0)
    assert sorted(summary["failed"]) == ["no_3d", "off_by_three"]
    assert "differ in length" in summary["failed"]["off_by_three"]
    assert list(summary["warnings"]) == ["off_by_one"]
    assert summary["uncaptioned"] == ["even", "no_3d", "off_by_one", "off_by_three"]
    chunks = {c["video/id"].decode(): c for c in records.read_chunks(
        f"{tmp_path}/out-00000-of-00001.tfrecord", frames=False, features_2d=3,
        features_3d=2)}
    assert float(chunks["off_by_one"]["video/duration"]) == 2.5
    assert chunks["off_by_one"]["FEATURES/2d/floats"].shape == (5, 3)
    assert chunks["even"]["FEATURES/3d/floats"].shape == (6, 2)


# Helpers -----------------------------------------------------------------------


def test_resize_and_crop_geometry():
    assert convert.resized_size((640, 360), 256) == (455, 256)
    assert convert.resized_size((360, 640), 256) == (256, 455)
    assert convert.resized_size((100, 50), 100) == (200, 100)
    assert convert.center_crop_box((640, 200), 2.0) == (120, 0, 520, 200)
    assert convert.center_crop_box((200, 640), 2.0) == (0, 120, 200, 520)
    assert convert.center_crop_box((640, 360), 2.0) == (0, 0, 640, 360)


def test_find_files_rejects_two_files_for_one_video(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x.mp4").write_bytes(b"")
    (tmp_path / "x" / "x.webm").write_bytes(b"")
    assert convert.find_files(tmp_path, convert.VIDEO_EXTENSIONS) == {
        "x": str(tmp_path / "x.mp4")}
    with pytest.raises(ValueError, match="two inputs for video 'x'"):
        convert.find_files(tmp_path, convert.VIDEO_EXTENSIONS, recursive=True)


def test_max_aspect_crops_before_resizing(inputs, tmp_path):
    loader = convert.VideoFileLoader(fps=2, short_side=32, max_aspect=1.25,
                                     sample_rate=0)
    source = convert.SourceVideo(
        "silent", {"video": str(inputs / "videos" / "silent.mp4")},
        schema.Captions([], [], []))
    video, warnings = loader(source)
    assert warnings == [] and video.waveform is None
    sizes = {Image.open(io.BytesIO(jpeg)).size for jpeg in video.frames}
    assert sizes == {(40, 32)} and len(video.frames) == 2


def test_cli_rejects_malformed_feature_keys(tmp_path, capsys):
    with pytest.raises(SystemExit):
        convert.main(["features", "--features_dir", str(tmp_path), "--feature_keys",
                      "resnet", "--out_prefix", str(tmp_path / "x"),
                      "--num_shards", "1"])
    assert "stream=key pairs" in capsys.readouterr().err


def test_a_directory_without_inputs_fails_naming_it_and_what_it_holds(tmp_path):
    """npz features without --feature_keys used to convert "0 of 0 videos" and exit 0."""
    feats = tmp_path / "feats"
    feats.mkdir()
    np.savez(feats / "v1.npz", resnet=np.zeros((4, 3), np.float32),
             resnext=np.zeros((4, 2), np.float32))
    with pytest.raises(ValueError, match=r"feats: no \.npy file \(it holds \.npz\); .*"
                                         r"--feature_keys .*v1\.npz holds: resnet, resnext"):
        convert.main(["features", "--features_dir", str(feats), "--out_prefix",
                      str(tmp_path / "out"), "--num_shards", "1"])
    assert not list(tmp_path.glob("out*"))  # no empty shards written
    empty = tmp_path / "videos"
    empty.mkdir()
    (empty / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"videos: no \.mp4/.* file under it \(it holds \.txt\)"):
        convert.main(["videos", "--video_dir", str(empty), "--out_prefix",
                      str(tmp_path / "out"), "--num_shards", "1"])


def test_vocab_command_counts_each_videos_captions_once(tmp_path):
    """Chunks repeat their video's captions; the vocabulary counts a video once."""
    (tmp_path / "f").mkdir()
    captions = {"a": ["Cut the onion", "cut it again"], "b": ["Fry the onion"],
                "c": ["the end"]}
    for video_id in captions:
        np.save(tmp_path / "f" / f"{video_id}.npy", np.ones((6, 2), np.float32))
    summary = convert.convert_features(
        tmp_path / "f", tmp_path / "rec", 2, captions={
            v: schema.Captions([f"{t}" for t in texts], [0.0] * len(texts),
                               [1.0] * len(texts)) for v, texts in captions.items()},
        chunk_seconds=2.0)
    assert summary["counts"]["records"] == 9  # 3 chunks per video
    out = tmp_path / "vocab.txt"
    result = convert.main(["vocab", "--records", f"{tmp_path}/rec-*.tfrecord",
                           "--out", str(out), "--min_count", "2"])
    # counts: the 3, onion 2, cut 2; every other word once
    assert out.read_text().split() == ["the", "cut", "onion"]
    assert result == {"out": str(out), "words": 3, "videos": 3, "captions": 4}
    convert.main(["vocab", "--records", f"{tmp_path}/rec-00000-of-00002.tfrecord,"
                  f"{tmp_path}/rec-00001-of-00002.tfrecord", "--out", str(out),
                  "--max_size", "4"])
    assert out.read_text().split() == ["the", "cut", "onion", "again"]  # ties: a-z
    with pytest.raises(ValueError, match="seen --min_count=9 times: .*none.txt not written"):
        convert.build_vocabulary(f"{tmp_path}/rec-*.tfrecord", tmp_path / "none.txt", 9)
    assert not (tmp_path / "none.txt").exists()
    np.save(tmp_path / "f" / "d.npy", np.ones((2, 2), np.float32))
    convert.convert_features(tmp_path / "f", tmp_path / "bare", 1)
    with pytest.raises(ValueError, match="hold no captions"):
        convert.build_vocabulary(f"{tmp_path}/bare-*.tfrecord", out)
