"""Benchmark: windows per second of the YouCook2 protocol, vtlearn's evaluator vs a per-clip loop.

Run: python benchmarks/youcook2_protocol.py [--clips 0] [--repeats 3] [--out_dir /tmp/vtlearn_bench_yc2]
(about 4 minutes on 2 cores; the lab and its export are made once under --out_dir)

Setting: the local lab's test split exported as YouCook2 files
(`vtlearn.data.lab_exports`, 32 videos of 30-60 s at 48x48, 10 fps, one clip
per step segment) and the MIL-NCE local preset's model (S3D-G, 8 frames at
5 fps, 32x32 centre crops), initialised (speed does not depend on the
weights); 4 windows per clip, as the protocol's default.

vtlearn: `vtlearn.evaluation.youcook2.Evaluator.run`, i.e. each video decoded
once with PyAV into one record (the conversion), then the shared evaluation
pass: tf.data cuts every window, decodes only its frames' JPEGs, and the jitted
`embed_video` runs in batches of `eval_batch_size` windows sharded over the
devices. Reported cold (conversion included) and warm (the records cached, as
every later evaluation of a run finds them); the jitted function is compiled
before timing.

Peer: the straightforward loop a user would write from the MIL-NCE release's
loader, in process: for each clip, for each of its windows, open the video,
seek to the window, decode to its end, resample to 5 fps and keep the window's
frames, resize and centre-crop them, then embed the clip's windows in
one call of the same jitted `embed_video` and average them. Both compute the
same windows; the script checks that their clip embeddings agree (cosine >
0.99: the evaluator's frames go through JPEG) before timing.

The number to read is the ratio (peer seconds / vtlearn seconds for the same
clips, measured in the same run); both run on the same cores, one after the
other, `--repeats` times each (cold runs start from an empty cache), and the
fastest of each is compared. The load average is printed: on a loaded machine
re-run.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

import av
import jax
import numpy as np

from vtlearn import cli, sharding, train
from vtlearn.config_defaults import load_config
from vtlearn.data import lab, lab_exports, sources
from vtlearn.data.convert import find_files, resized_size, VIDEO_EXTENSIONS
from vtlearn.evaluation import build_evaluators
from vtlearn.evaluation.base import section
from vtlearn.evaluation.youcook2 import read_clips

ROOT = Path(__file__).resolve().parents[1]


def window_starts(start: float, end: float, span: float, num: int) -> np.ndarray:
    """The evaluator's window starts: centres of `num` equal parts of [lo, hi - span],
    the clip widened to one window when shorter."""
    pad = max(0.0, span - (end - start)) / 2
    lo, hi = max(start - pad, 0.0), end + pad
    first = lo if hi - lo >= span else (lo + hi - span) / 2
    return first + (np.arange(num) + 0.5) / num * max(hi - lo - span, 0.0)


def decode_window(path: str, start: float, num_frames: int, fps: float, size: int) -> np.ndarray:
    """uint8 [T, size, size, 3]: the video resampled to `fps` (as ffmpeg's fps
    filter: each grid time k / fps takes the nearest frame), the T grid frames
    nearest to start + i / fps, resized (short side `size`) and centre-cropped;
    past the end the last frame repeats."""
    times = np.round((start + np.arange(num_frames) / fps) * fps) / fps
    with av.open(path) as container:
        stream = container.streams.video[0]
        container.seek(max(0, int((start - 1.0) / stream.time_base)), stream=stream,
                       backward=True)
        decoded = []
        for frame in container.decode(stream):
            decoded.append((float(frame.pts * stream.time_base), frame))
            if decoded[-1][0] > times[-1] + 0.5:
                break
    stamps = np.array([t for t, _ in decoded])
    out = []
    for t in times:
        frame = decoded[int(np.argmin(np.abs(stamps - t)))][1]
        width, height = resized_size((frame.width, frame.height), size)
        rgb = frame.reformat(width, height, "rgb24", interpolation="AREA").to_ndarray()
        top, left = (height - size) // 2, (width - size) // 2
        out.append(rgb[top:top + size, left:left + size])
    return np.stack(out)


def per_clip_loop(clips, videos, embed, cfg, num_windows: int) -> np.ndarray:
    """[N, D] clip embeddings, one clip and one window decode at a time."""
    span = cfg.num_frames / cfg.fps
    out = []
    for clip in clips:
        windows = np.stack([decode_window(videos[clip.video_id], s, cfg.num_frames, cfg.fps,
                                          cfg.eval_crop_size)
                            for s in window_starts(clip.start, clip.end, span, num_windows)])
        out.append(embed(windows).mean(axis=0))
    return np.stack(out)


def main() -> None:
    parser = cli.argument_parser(description=__doc__.splitlines()[0])
    parser.add_argument("--clips", type=int, default=0, help="clips timed (a prefix; 0: all)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out_dir", default="/tmp/vtlearn_bench_yc2")
    args = parser.parse_args()
    out = Path(args.out_dir)

    config = load_config(f"{ROOT}/configs/milnce_s3d.py:local")
    config.data.lab_dir = str(out / "lab")
    config = sources.resolve_data(config)
    data_dir = out / "youcook2"
    if not (data_dir / "validation_youcook.csv").exists():
        lab_exports.export(lab.LabConfig(**config.lab.to_dict()), "youcook2", data_dir)
    clips = read_clips(data_dir / "validation_youcook.csv")[:args.clips or None]
    (data_dir / "bench.csv").write_text("end,start,task,text,video_id\n" + "".join(
        f"{c.end},{c.start},{c.task},{c.text},{c.video_id}\n" for c in clips))
    trainer = train.Trainer(config, sharding.make_mesh())
    state = trainer.init_state()
    cfg = config.data
    windows = 4 * len(clips)

    def evaluator(cache: Path):
        config.evals.yc = section("youcook2", every=0, data_dir=str(data_dir),
                                  annotations="bench.csv", cache_dir=str(cache), num_clips=4)
        return build_evaluators(trainer.method, trainer.mesh, config, None, ["yc"])["yc"]

    import shutil

    def timed(fn) -> float:
        t0 = time.perf_counter()
        fn()
        return time.perf_counter() - t0

    cache = out / "cache"
    evaluator(out / "warmup").run(state, 0)  # compiles the embedding pass
    cold_times = []
    for _ in range(args.repeats):
        shutil.rmtree(cache, ignore_errors=True)
        cold_times.append(timed(lambda: evaluator(cache).run(state, 0)))
    cold = evaluator(cache)
    warm_times = [timed(lambda: evaluator(cache).run(state, 0)) for _ in range(args.repeats)]
    metrics = cold.run(state, 0)

    # The peer, and the check that both compute the same windows.
    videos = find_files(data_dir, VIDEO_EXTENSIONS, recursive=True)
    video_fn = jax.jit(trainer.method.embed_video)
    batch = math.ceil(4 / jax.device_count()) * jax.device_count()

    def embed(clip_windows):
        padded = np.zeros((batch,) + clip_windows.shape[1:], clip_windows.dtype)
        padded[:len(clip_windows)] = clip_windows
        out = video_fn(state.params, state.model_state, {"video": padded})["embedding"]
        return np.asarray(out)[:len(clip_windows)]

    per_clip_loop(clips[:1], videos, embed, cfg, 4)  # compiles
    peer_times = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        peer = per_clip_loop(clips, videos, embed, cfg, 4)
        peer_times.append(time.perf_counter() - t0)
    units = cold.embed_units(state, cold.convert(cold.video_sources).files, cold.units,
                             with_text=False)
    from vtlearn.evaluation.benchmark import unit_index

    rows = unit_index(units, [(c.video_id, c.start, c.end) for c in clips])
    ours = units["embedding"][rows]
    cosine = np.sum(ours * peer, 1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(peer, axis=1)
    print(f"clips {len(clips)}, windows {windows}, devices {jax.device_count()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print(f"same windows: clip-embedding cosine min {cosine.min():.4f} (t2v R@10 "
          f"{metrics['t2v/R@10']:.1f})")
    assert cosine.min() > 0.99, "the peer does not compute the evaluator's windows"
    for name, times in (("vtlearn, cold (decode + records + embed)", cold_times),
                        ("vtlearn, warm (records cached)", warm_times),
                        ("per-clip loop (peer)", peer_times)):
        print(f"{name:42s} {min(times):7.1f} s  {windows / min(times):7.1f} windows/s  "
              f"(runs: {', '.join(f'{t:.1f}' for t in times)} s)")
    t_peer = min(peer_times)
    print(f"ratio peer / vtlearn: cold {t_peer / min(cold_times):.2f}x, "
          f"warm {t_peer / min(warm_times):.2f}x")


if __name__ == "__main__":
    main()
