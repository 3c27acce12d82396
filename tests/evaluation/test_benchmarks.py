"""The benchmark evaluators on their official file formats.

Parsers read hand-written files (awkward cases included); metrics are checked
on hand-computed cases and against brute force; each evaluator runs end to
end on the lab's export of its benchmark with the feature tower (initialised,
not trained: the check is the plumbing, against a NumPy reference computed
from the exported files), and the pixel path's windows are compared with the
lab's own frames.
"""

import itertools
import json
import pathlib
import shutil

import numpy as np
import pytest

from vtlearn import sharding, train
from vtlearn.config_defaults import load_config, use_lab_features
from vtlearn.data import lab, lab_exports, pipeline, sources
from vtlearn.evaluation import (action_recognition, benchmark, build_evaluators, coin,
                                crosstask, mining_youtube, msrvtt, segments, youcook2,
                                youtube8m_segments)
from vtlearn.evaluation.base import section
from vtlearn.evaluation.retrieval import correct_item_ranks, paired_retrieval_metrics

ROOT = pathlib.Path(__file__).parents[2]


# Parsers -------------------------------------------------------------------------


def test_youcook2_json_and_csv_give_the_same_clips(tmp_path):
    (tmp_path / "a.csv").write_text("end,start,task,text,video_id\n5.5,1,101,cut the onion,v1\n"
                                    "9,6,101,fry it,v1\n4,0,102,boil water,v2\n")
    (tmp_path / "a.json").write_text(json.dumps({"database": {
        "v1": {"subset": "validation", "recipe_type": "101", "annotations": [
            {"segment": [1, 5.5], "sentence": "cut the onion"},
            {"segment": [6, 9], "sentence": "fry it"}]},
        "v2": {"subset": "validation", "recipe_type": "102", "annotations": [
            {"segment": [0, 4], "sentence": "boil water"}]},
        "v3": {"subset": "training", "recipe_type": "102", "annotations": [
            {"segment": [0, 4], "sentence": "not a validation clip"}]}}}))
    from_csv = youcook2.read_clips(tmp_path / "a.csv")
    assert from_csv == youcook2.read_clips(tmp_path / "a.json")
    assert [c.video_id for c in from_csv] == ["v1", "v1", "v2"]
    assert from_csv[0] == youcook2.Clip("v1", 1.0, 5.5, "cut the onion", "101")
    assert len(youcook2.read_clips(tmp_path / "a.json", subset="training")) == 1


@pytest.mark.parametrize("text, message", [
    ("end,start,task,text\n1,0,1,a\n", "line 1 lacks column(s) ['video_id']"),
    ("end,start,task,text,video_id\n5,1,1,a,v\n5,x,1,b,v\n", "line 3: could not convert"),
    ("end,start,task,text,video_id\n5,1,1,a,v\n4,4,1,b,v\n", "line 3: segment [4.0, 4.0]"),
])
def test_a_bad_youcook2_csv_names_the_line(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ValueError, match=f"bad.csv: {message}".replace("[", r"\[")
                       .replace("]", r"\]").replace("(", r"\(").replace(")", r"\)")):
        youcook2.read_clips(tmp_path / "bad.csv")


def test_a_bad_youcook2_json_entry_is_named(tmp_path):
    (tmp_path / "a.json").write_text(json.dumps({"database": {"v1": {
        "subset": "validation", "annotations": [{"segment": [1, 2], "sentence": "ok"},
                                                {"sentence": "no segment"}]}}}))
    with pytest.raises(ValueError, match=r"database\['v1'\]\.annotations\[1\]: needs segment"):
        youcook2.read_clips(tmp_path / "a.json")


def test_msrvtt_pairs_and_a_missing_column(tmp_path):
    (tmp_path / "t.csv").write_text("key,vid_key,video_id,sentence\nret0,msr7,video7,a dog runs\n"
                                    "ret1,msr8,video8,\n")
    assert msrvtt.read_pairs(tmp_path / "t.csv") == [("video7", "a dog runs"), ("video8", "")]
    (tmp_path / "u.csv").write_text("key,vid_key,sentence\nret0,msr7,a\n")
    with pytest.raises(ValueError, match=r"u.csv: line 1 lacks column\(s\) \['video_id'\]"):
        msrvtt.read_pairs(tmp_path / "u.csv")


def test_crosstask_files_parse_and_bad_lines_are_named(tmp_path):
    (tmp_path / "tasks.txt").write_text("16815\nMake Pancakes\nhttp://a\n3\nadd flour,add egg,"
                                        "flip pancake\n\n23521\nJello Shots\nhttp://b\n2\n"
                                        "pour water,stir mixture\n\n")
    tasks = crosstask.read_tasks(tmp_path / "tasks.txt")
    assert list(tasks) == ["16815", "23521"]
    assert tasks["16815"].steps == ("add flour", "add egg", "flip pancake")
    (tmp_path / "bad.txt").write_text("1\nT\nu\n3\na,b\n\n")
    with pytest.raises(ValueError, match="bad.txt: line 5: task 1 declares 3 steps but lists 2"):
        crosstask.read_tasks(tmp_path / "bad.txt")
    (tmp_path / "v.csv").write_text("16815,vidA,https://y/vidA\n\n23521,vidB,u\n")
    assert crosstask.read_videos(tmp_path / "v.csv") == [("16815", "vidA"), ("23521", "vidB")]
    (tmp_path / "a.csv").write_text("1,0.5,3.2\n4,5,6\n")
    with pytest.raises(ValueError, match=r"a.csv: line 2: step 4 outside 1..3"):
        crosstask.read_annotation(tmp_path / "a.csv", 3)
    (tmp_path / "b.csv").write_text("1,5,3\n")
    with pytest.raises(ValueError, match=r"b.csv: line 1: interval \[5.0, 3.0\]"):
        crosstask.read_annotation(tmp_path / "b.csv", 3)


def test_hmdb_splits_leave_out_videos_listed_only_as_unused(tmp_path):
    for name, lines in (("brush_hair", "a.avi 1\nb.avi 2\nz.avi 0\n"),
                        ("cartwheel", "c.avi 2\nd.avi 1\n")):
        for split in (1, 2, 3):
            (tmp_path / f"{name}_test_split{split}.txt").write_text(lines)
    splits = action_recognition.read_hmdb_splits(tmp_path)
    assert splits.classes == ("brush_hair", "cartwheel")
    assert splits.labels == {"a": 0, "b": 0, "c": 1, "d": 1}
    assert splits.train[0] == ("a", "d") and splits.test[2] == ("b", "c")
    assert splits.unused == ("z",)
    (tmp_path / "cartwheel_test_split2.txt").write_text("c.avi 2\nd.avi 3\n")
    with pytest.raises(ValueError, match=r"cartwheel_test_split2.txt: line 2: expected"):
        action_recognition.read_hmdb_splits(tmp_path)


def test_ucf_lists_and_a_class_missing_from_classind(tmp_path):
    (tmp_path / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 YoYo\n")
    for split in (1, 2, 3):
        (tmp_path / f"trainlist0{split}.txt").write_text(
            "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\nYoYo/v_YoYo_g01_c01.avi 2\n")
        (tmp_path / f"testlist0{split}.txt").write_text("YoYo/v_YoYo_g02_c01.avi\n")
    splits = action_recognition.read_ucf_splits(tmp_path)
    assert splits.labels == {"v_ApplyEyeMakeup_g08_c01": 0, "v_YoYo_g01_c01": 1,
                             "v_YoYo_g02_c01": 1}
    assert splits.test[1] == ("v_YoYo_g02_c01",)
    (tmp_path / "testlist03.txt").write_text("YoYo/a.avi\nSkiing/v_Skiing_g01_c01.avi\n")
    with pytest.raises(ValueError, match=r"testlist03.txt: line 2: class 'Skiing'"):
        action_recognition.read_ucf_splits(tmp_path)


def test_class_names_become_words():
    assert benchmark.label_text("brush_hair") == "brush hair"
    assert benchmark.label_text("ApplyEyeMakeup") == "apply eye makeup"
    assert benchmark.label_text("YoYo") == "yo yo"


# Metrics -------------------------------------------------------------------------


def test_missing_pairs_are_misses_with_the_benchmarks_denominator():
    similarity = np.array([[0.9, 0.1, 0.5],
                           [0.2, 0.3, 0.8],
                           [0.1, 0.7, 0.6]])
    # t2v ranks: query 0 -> 1, query 1 -> 2 (0.8 beats it), query 2 -> 2; one missing pair -> 4.
    # v2t ranks (columns): video 0 -> 1, video 1 -> 2 (0.7), video 2 -> 2 (0.8); missing -> 4.
    m = paired_retrieval_metrics(similarity, num_pairs=4, recall_at=(1, 2))
    assert m["t2v/R@1"] == 25.0 and m["t2v/R@2"] == 75.0 and m["t2v/MedR"] == 2.0
    assert m["t2v/MeanR"] == pytest.approx((1 + 2 + 2 + 4) / 4)
    assert m["v2t/R@1"] == 25.0 and m["v2t/R@2"] == 75.0
    without = paired_retrieval_metrics(similarity, recall_at=(1,))
    assert without["t2v/R@1"] == pytest.approx(100 / 3)


def test_the_ordering_dp_matches_brute_force():
    rng = np.random.default_rng(0)
    for t_count, k_count in [(1, 1), (3, 3), (5, 2), (7, 3), (8, 4), (6, 1)]:
        scores = rng.normal(size=(t_count, k_count))
        y = crosstask.order_constrained_assignment(scores)
        best = max(itertools.combinations(range(t_count), k_count),
                   key=lambda ts: sum(scores[t, k] for k, t in enumerate(ts)))
        assert y.sum(axis=0).tolist() == [1] * k_count
        assert tuple(int(np.argmax(y[:, k])) for k in range(k_count)) == best
    with pytest.raises(ValueError, match="2 seconds cannot hold 3 ordered steps"):
        crosstask.order_constrained_assignment(np.zeros((2, 3)))


def test_step_recall_by_task_and_by_video():
    rows = [(0, 0.5, 2.2), (1, 4, 5), (0, 6, 6.5)]  # step 0 twice, step 2 never
    y = crosstask.ground_truth(rows, 8, 3)
    assert y[:, 0].tolist() == [1, 1, 1, 0, 0, 0, 1, 0] and y[:, 1].tolist() == [0] * 4 + [1] + [0] * 3
    hit_one = np.zeros((8, 3), np.uint8)
    hit_one[[0, 3, 7], [0, 1, 2]] = 1  # step 0 hit, step 1 missed
    other = np.zeros((4, 2), np.uint8)
    other[0, 0] = other[1, 1] = 1
    truth_other = np.zeros((4, 2), np.uint8)
    truth_other[0, 0] = truth_other[3, 1] = 1  # 1 of 2
    truth = {"a": [y, truth_other], "b": [truth_other]}
    predicted = {"a": [hit_one, other], "b": [other]}
    by_task = crosstask.step_recall(truth, predicted, "task")
    assert by_task["a"] == pytest.approx(100 * 2 / 4) and by_task["b"] == 50.0
    by_video = crosstask.step_recall({"a": [y, truth_other, truth_other * 0]},
                                     {"a": [hit_one, other, other]}, "video")
    assert by_video["a"] == pytest.approx(100 * (1 / 2 + 1 / 2) / 2)  # no-step video left out
    assert crosstask.uniform_assignment(10, 3).argmax(axis=0).tolist() == [1, 5, 8]


def test_crosstask_frame_labels_and_overlaps_by_hand():
    # Step 0 in [0.5, 2.2) -> seconds 0-2, step 1 in [4, 5) -> second 4, step 2 in
    # [4, 6) overlaps it: second 4 takes the first (step 1), second 5 step 2.
    y = crosstask.ground_truth([(0, 0.5, 2.2), (1, 4, 5), (2, 4, 6)], 8, 3)
    labels = crosstask.frame_labels(y)
    assert labels.tolist() == [0, 0, 0, 3, 1, 2, 3, 3]
    # Every second gets a step, so background seconds are false positives.
    predicted = np.array([0, 0, 1, 1, 1, 2, 2, 0])
    iou, iod = segments.segment_overlaps(labels, predicted, background=3)
    # Step 0: G [0,3), best D [0,2): 2/3 and 2/2. Step 1: G [4,5), D [2,5): 1/3, 1/3.
    # Step 2: G [5,6), D [5,7): 1/2, 1/2.
    assert iou == pytest.approx((2 / 3 + 1 / 3 + 1 / 2) / 3)
    assert iod == pytest.approx((1 + 1 / 3 + 1 / 2) / 3)
    assert crosstask.uniform_segmentation(8, 3).tolist() == [0, 0, 0, 1, 1, 1, 2, 2]


def test_the_window_svm_sums_decision_functions_over_windows():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 5)) * 4
    labels = np.repeat(np.arange(3), 6)
    windows = centres[labels][:, None] + rng.normal(size=(18, 4, 5))
    assert action_recognition.svm_accuracy(windows, labels, windows, labels) == 100.0
    # Two classes (one decision function): a test video whose windows mostly look
    # like class 1 but with one far window of class 0 is class 0 by the summed
    # decision, class 1 by a majority vote.
    two = labels < 2
    test = np.stack([centres[1] * 1.0, centres[1] * 1.0, centres[1] * 1.0, centres[0] * 12.0])
    predicted = action_recognition.svm_accuracy(windows[two], labels[two], test[None],
                                                np.array([0]))
    assert predicted == 100.0


# End to end on the lab's exports ---------------------------------------------------


@pytest.fixture(scope="module")
def setup(feature_run, tmp_path_factory):
    config, trainer, state = feature_run
    lab_config = lab.LabConfig(**config.lab.to_dict())
    exports = tmp_path_factory.mktemp("exports")
    data_dirs = {f: lab_exports.export(lab_config, f, exports / f)
                 for f in lab_exports.FORMATS}
    return config, trainer, state, data_dirs, tmp_path_factory.mktemp("cache")


def _evaluator(setup, name, type_, **settings):
    config, trainer, state, data_dirs, cache = setup
    config = config.copy_and_resolve_references()
    data_dir = data_dirs[settings.pop("export", type_)]
    features = data_dir.parent / "features" if type_ == "crosstask" else data_dir / "features"
    if type_ == "youtube8m_segments":
        features = ""
    settings = dict(dict(data_dir=str(data_dir), features_dir=str(features),
                         cache_dir=str(cache)), **settings)
    config.evals[name] = section(type_, every=0, **settings)
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None, [name]).values()
    return evaluator


def _window_features(path, start, end):
    """The reference window input: feature rows overlapping [start, end) averaged."""
    with np.load(path) as f:
        out = {}
        for stream in ("2d", "3d"):
            t = np.arange(len(f[stream]))
            inside = (t < end) & (t + 1 > start)
            out[f"features_{stream}"] = f[stream][inside].mean(axis=0)
    return out


def _embed(setup, windows):
    import jax

    _, trainer, state, _, _ = setup
    inputs = {k: np.stack([w[k] for w in windows]) for k in windows[0]}
    return np.asarray(jax.jit(trainer.method.embed_video)(state.params, state.model_state,
                                                          inputs)["embedding"])


def _ranks_reference(similarity):
    """1-based rank of the diagonal, ties pessimistic, by explicit loops."""
    ranks = []
    for i, row in enumerate(similarity):
        ranks.append(1 + sum(1 for j, v in enumerate(row) if j != i and v >= row[i]))
    return np.array(ranks)


def test_youcook2_end_to_end_matches_a_reference_from_the_files(setup):
    evaluator = _evaluator(setup, "yc", "youcook2", num_clips=2)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    clips = youcook2.read_clips(data_dirs["youcook2"] / "validation_youcook.csv")
    windows = [_window_features(data_dirs["youcook2"] / "features" / f"{c.video_id}.npz",
                                c.start, c.end) for c in clips]
    video = _embed(setup, windows)
    text = evaluator.embed_texts(state, [c.text for c in clips])
    ranks = _ranks_reference(text @ video.T)
    assert metrics["clips"] == len(clips) == metrics["clips_embedded"]
    assert metrics["t2v/R@1"] == pytest.approx(100 * np.mean(ranks <= 1))
    assert metrics["t2v/MedR"] == pytest.approx(np.median(ranks))
    np.testing.assert_array_equal(correct_item_ranks(text @ video.T), ranks)


def test_msrvtt_counts_a_missing_video_as_a_miss(setup, tmp_path):
    import shutil

    _, _, state, data_dirs, _ = setup
    data_dir = tmp_path / "msrvtt"
    shutil.copytree(data_dirs["msrvtt"], data_dir)
    pairs = msrvtt.read_pairs(data_dir / "MSRVTT_JSFUSION_test.csv")
    (data_dir / "features" / f"{pairs[0][0]}.npz").unlink()
    config, trainer = setup[0].copy_and_resolve_references(), setup[1]
    config.evals.mv = section("msrvtt", every=0, data_dir=str(data_dir),
                              features_dir=str(data_dir / "features"), cache_dir=str(tmp_path))
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None, ["mv"]).values()
    metrics = evaluator.run(state, 0)
    assert metrics["videos_missing"] == 1 and metrics["pairs"] == len(pairs)
    present = pairs[1:]
    video = _embed(setup, [_window_features(data_dir / "features" / f"{v}.npz", 0, 1e9)
                           for v, _ in present])
    text = evaluator.embed_texts(state, [t for _, t in present])
    ranks = np.concatenate([_ranks_reference(text @ video.T), [len(pairs)]])
    assert metrics["t2v/R@5"] == pytest.approx(100 * np.mean(ranks <= 5))
    assert metrics["t2v/MeanR"] == pytest.approx(ranks.mean())


def test_crosstask_end_to_end_matches_a_reference_from_the_files(setup):
    evaluator = _evaluator(setup, "ct", "crosstask")
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    root = data_dirs["crosstask"]
    tasks = crosstask.read_tasks(root / "tasks_primary.txt")
    truth, predicted, ious, iods = {}, {}, {}, {}
    for task, vid in crosstask.read_videos(root / "videos_val.csv"):
        with np.load(root.parent / "features" / f"{vid}.npz") as f:
            seconds = len(f["2d"])
        video = _embed(setup, [_window_features(root.parent / "features" / f"{vid}.npz", t, t + 1)
                               for t in range(seconds)])
        steps = evaluator.embed_texts(state, list(tasks[task].steps))
        rows = crosstask.read_annotation(root / "annotations" / f"{task}_{vid}.csv",
                                         len(tasks[task].steps))
        truth.setdefault(task, []).append(crosstask.ground_truth(rows, seconds, len(steps)))
        predicted.setdefault(task, []).append(
            crosstask.order_constrained_assignment(video @ steps.T))
        # IoU/IoD from a per-second loop: each second's best step against its label.
        best = [max(range(len(steps)), key=lambda k: float(video[t] @ steps[k]))
                for t in range(seconds)]
        iou, iod = segments.segment_overlaps(crosstask.frame_labels(truth[task][-1]),
                                             np.array(best), background=len(steps))
        if not np.isnan(iou):
            ious.setdefault(task, []).append(iou)
            iods.setdefault(task, []).append(iod)
    assert metrics["recall"] == pytest.approx(crosstask.step_recall(truth, predicted)["mean"])
    assert metrics["IoU"] == pytest.approx(100 * np.mean([np.mean(v) for v in ious.values()]))
    assert metrics["IoD"] == pytest.approx(100 * np.mean([np.mean(v) for v in iods.values()]))
    assert 0 <= metrics["uniform/IoU"] <= metrics["uniform/IoD"] <= 100
    assert metrics["videos"] == sum(map(len, truth.values()))
    assert 0 <= metrics["recall_uniform"] <= 100


@pytest.mark.parametrize("export", ["hmdb51", "ucf101"])
def test_action_recognition_end_to_end_on_both_layouts(setup, export):
    evaluator = _evaluator(setup, export, "action_recognition", dataset=export, num_clips=3,
                           export=export)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    assert set(metrics) >= {"top1/split1", "top1/split3", "top1", "zero_shot_top1", "chance"}
    assert metrics["chance"] == pytest.approx(100 / len(evaluator.splits.classes))
    # Zero-shot from the files: the class name's text against the clip's mean window.
    split = evaluator.splits
    features = data_dirs[export] / "features"
    test = split.test[0]
    video = _embed(setup, [_window_features(features / f"{v}.npz", 0, 1e9) for v in test])
    names = evaluator.embed_texts(state, [benchmark.label_text(c)
                                          for c in split.classes])
    expected = np.argmax(video @ names.T, axis=1) == np.array([split.labels[v] for v in test])
    assert metrics["zero_shot_top1/split1"] == pytest.approx(100 * expected.mean())


def test_a_second_evaluation_reads_the_converted_records(setup, monkeypatch):
    """The second run loads no video: the loader is counted, not timed."""
    from vtlearn.data import convert

    evaluator = _evaluator(setup, "yc2", "youcook2")
    _, _, state, _, cache = setup
    loaded = []
    original = convert.FeatureLoader.__call__
    monkeypatch.setattr(convert.FeatureLoader, "__call__",
                        lambda self, source: loaded.append(source.video_id) or
                        original(self, source))
    first = evaluator.run(state, 0)
    assert sorted(cache.rglob("youcook2-*/*.tfrecord"))
    converted_first = len(loaded)
    assert evaluator.run(state, 1) == first
    assert len(loaded) == converted_first  # nothing converted again


def test_benchmark_settings_fail_before_any_work(setup, tmp_path):
    with pytest.raises(ValueError, match="config.evals.yc.data_dir is empty"):
        _evaluator(setup, "yc", "youcook2", data_dir="")
    config, trainer = setup[0].copy_and_resolve_references(), setup[1]
    config.evals.ct = section("crosstask", every=0, data_dir=str(tmp_path),
                              features_dir=str(tmp_path))
    with pytest.raises(FileNotFoundError, match="tasks_primary.txt"):
        build_evaluators(trainer.method, trainer.mesh, config, None, ["ct"])
    config.evals.ct.data_dir = str(setup[3]["crosstask"])
    config.evals.ct.features_dir = ""
    with pytest.raises(ValueError, match="features_dir is empty"):
        build_evaluators(trainer.method, trainer.mesh, config, None, ["ct"])
    with pytest.raises(ValueError, match=r"config.evals.ct.split must be one of \['all', "
                                         r"'val'\], got 'test'"):
        _evaluator(setup, "ct", "crosstask", split="test")


# The pixel path ------------------------------------------------------------------


def test_benchmark_windows_hold_the_exported_videos_frames(setup, tmp_path):
    """Decoded, resized and centre-cropped windows of an exported video against the
    lab's frames at the same times (MPEG-4 is lossy: close, and closer than the
    frames one step later)."""
    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = setup[0].data.lab_dir
    config = sources.resolve_data(config)
    data_dir = setup[3]["youcook2"]
    config.evals.yc = section("youcook2", every=0, data_dir=str(data_dir),
                              cache_dir=str(tmp_path), num_clips=2)
    evaluator = youcook2.Evaluator(None, setup[1].mesh, config, "yc")
    converted = evaluator.convert(evaluator.video_sources, evaluator.missing)
    cfg = config.data.copy_and_resolve_references()
    cfg.eval_text_key = ""
    batch = next(pipeline.iterate_eval(cfg, 64, evaluator.units, files=converted.files))
    lab_config = lab.LabConfig(**config.lab.to_dict())
    span = cfg.num_frames / cfg.fps
    checked = 0
    for i in np.flatnonzero(batch["valid"]):
        vid = batch["video_id"][i].decode()
        video = lab.make_video(lab_config, "test", int(vid.split("-")[-1]))
        frames, stored = video.frames, round(video.duration * cfg.fps)
        pad = max(0.0, span - (batch["end"][i] - batch["start"][i])) / 2
        lo = max(batch["start"][i] - pad, 0.0)
        hi = min(batch["end"][i] + pad, video.duration)
        for c in range(2):
            start = lo + (c + 0.5) / 2 * max(hi - lo - span, 0)
            times = start + np.arange(cfg.num_frames) / cfg.fps
            # Stored frames are at data.fps, each the lab frame nearest to its time.
            kept = np.clip(np.round(times * cfg.fps).astype(int), 0, stored - 1)
            idx = np.clip(np.round(kept / cfg.fps * lab_config.fps).astype(int), 0,
                          len(frames) - 1)
            got = batch["video"][i, c].astype(float)
            error = np.abs(got - frames[idx]).mean()
            later = np.abs(got - frames[np.minimum(idx + 3, len(frames) - 1)]).mean()
            assert error < 6 and error < later, (vid, c, error, later)
            checked += 1
    assert checked >= 4


def test_coin_json_parses_and_a_bad_entry_is_named(tmp_path):
    (tmp_path / "COIN.json").write_text(json.dumps({"database": {
        "a": {"subset": "training", "recipe_type": 3, "class": "Make Tea", "annotation": [
            {"id": "12", "segment": [1.0, 4.5], "label": "boil water"}]},
        "b": {"subset": "testing", "recipe_type": 3, "class": "Make Tea", "annotation": []}}}))
    videos = coin.read_coin(tmp_path / "COIN.json")
    assert videos["a"] == dict(subset="training", task=3, task_name="Make Tea",
                               steps=[(12, 1.0, 4.5)])
    (tmp_path / "bad.json").write_text(json.dumps({"database": {"a": {
        "subset": "training", "annotation": [{"id": "x", "segment": [1, 2]}]}}}))
    with pytest.raises(ValueError, match=r"bad.json: database\['a'\].annotation\[0\]: needs"):
        coin.read_coin(tmp_path / "bad.json")


def test_coin_clip_representation_is_features_video_mean_and_position():
    features = np.array([[1.0, 0.0], [3.0, 2.0], [5.0, 5.0]])
    out = coin.clip_representations(features, np.array(["a", "a", "b"]),
                                    np.array([0.75, 2.25, 0.75]), {"a": 3.0, "b": 1.5}, 2)
    np.testing.assert_allclose(out[:, :2], features)
    np.testing.assert_allclose(out[:, 2:4], [[2, 1], [2, 1], [5, 5]])
    p = np.array([0.25, 0.75, 0.5])
    np.testing.assert_allclose(out[:, 4:], np.stack(
        [np.sin(np.pi * p), np.sin(2 * np.pi * p), np.cos(np.pi * p), np.cos(2 * np.pi * p)], 1))


def test_coin_end_to_end_on_the_lab_export(setup):
    evaluator = _evaluator(setup, "coin", "coin", c_grid=(1.0,))
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    videos = coin.read_coin(data_dirs["coin"] / "COIN.json")
    # Every clip whose centre lies inside its video is embedded (feature files
    # hold one row per second: the video lasts as many seconds as rows).
    expected = {"training": 0, "testing": 0}
    for vid, video in videos.items():
        with np.load(data_dirs["coin"] / "features" / f"{vid}.npz") as f:
            seconds = len(f["2d"])
        expected[video["subset"]] += int(np.sum(np.arange(0, seconds, 1.5) + 0.75 < seconds))
    assert metrics["clips_train"] == expected["training"]
    assert metrics["clips_test"] == expected["testing"]
    assert 0 <= metrics["chance"] <= 100 and 0 <= metrics["frame_accuracy"] <= 100


def test_average_precision_at_k_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    positives = np.array([1, 0, 1, 0, 1], bool)
    # Precision at the positives: 1/1, 2/3, 3/5.
    assert youtube8m_segments.average_precision_at_k(scores, positives, 10) == pytest.approx(
        (1 + 2 / 3 + 3 / 5) / 3)
    # Cut at K=3: the third positive is not retrieved; the denominator stays P=3.
    assert youtube8m_segments.average_precision_at_k(scores, positives, 3) == pytest.approx(
        (1 + 2 / 3) / 3)
    # Ties rank negatives first.
    assert youtube8m_segments.average_precision_at_k(np.zeros(2), np.array([1, 0], bool),
                                                     10) == pytest.approx(0.5)


def test_youtube8m_ratings_of_unequal_lengths_are_named():
    import tensorflow as tf

    example = tf.train.SequenceExample()
    context = example.context.feature
    context["id"].bytes_list.value.append(b"abcd")
    context["segment_labels"].int64_list.value.extend([3, 4])
    context["segment_start_times"].int64_list.value.extend([0])
    context["segment_scores"].float_list.value.extend([1.0, 0.0])
    with pytest.raises(ValueError, match=r"f.tfrecord@0: segment_labels \(2\), segment_start"):
        youtube8m_segments.read_ratings(example, "f.tfrecord@0")


@pytest.mark.parametrize("scoring", ["zero_shot", "linear"])
def test_youtube8m_segments_end_to_end_on_the_lab_export(setup, scoring):
    evaluator = _evaluator(setup, f"yt8m_{scoring}", "youtube8m_segments", scoring=scoring,
                           export="youtube8m", train_fraction=0.5)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    if scoring == "linear":
        assert metrics["segments"] < len(evaluator.ratings)
        return
    # Zero-shot reference from the records: dequantised rows of each segment
    # averaged, embedded, scored against the class names.
    from vtlearn.data import youtube8m

    names = youtube8m_segments.read_class_names(data_dirs["youtube8m"] / "vocabulary.csv")
    scores = []
    for r in evaluator.ratings:
        example = youtube8m.read_record(evaluator.where[r.video_id])
        rows = {s: youtube8m.dequantize(np.stack([
            np.frombuffer(f.bytes_list.value[0], np.uint8)
            for f in example.feature_lists.feature_list[s].feature]))
            for s in ("rgb", "audio")}
        window = slice(int(r.start), int(r.start) + 5)
        video = _embed(setup, [{"features_2d": rows["rgb"][window].mean(0),
                                "features_3d": rows["audio"][window].mean(0)}])
        scores.append(float(evaluator.embed_texts(state, [names[r.label]])[0] @ video[0]))
    expected, classes = youtube8m_segments.mean_average_precision(
        evaluator.ratings, np.array(scores), 100_000)
    assert metrics["segments"] == len(evaluator.ratings) and metrics["classes"] == classes
    assert metrics["MAP"] == pytest.approx(100 * expected, rel=1e-4)


def test_crosstask_clustering_of_the_annotated_seconds(setup):
    from vtlearn.evaluation.clustering import cluster_by_task

    evaluator = _evaluator(setup, "ctc", "crosstask", clustering=True)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    root = data_dirs["crosstask"]
    tasks = crosstask.read_tasks(root / "tasks_primary.txt")
    points, labels, owners = [], [], []
    for task, vid in crosstask.read_videos(root / "videos_val.csv"):
        rows = crosstask.read_annotation(root / "annotations" / f"{task}_{vid}.csv",
                                         len(tasks[task].steps))
        with np.load(root.parent / "features" / f"{vid}.npz") as f:
            seconds = len(f["2d"])
        for t in range(seconds):  # the step holding the window's centre
            step = next((r[0] for r in rows if r[1] <= t + 0.5 < r[2]), -1)
            if step >= 0:
                points.append(_window_features(root.parent / "features" / f"{vid}.npz", t, t + 1))
                labels.append(step)
                owners.append(task)
    expected = cluster_by_task(_embed(setup, points), np.array(labels), np.array(owners))
    for key in ("NMI", "ARI", "Acc", "num_tasks", "random/NMI"):
        assert metrics[f"clustering/{key}"] == pytest.approx(expected[key], rel=1e-4), key


def test_full_video_retrieval_by_hand():
    # Clips 0, 1 belong to video 0, clip 2 to video 1, clip 3 to video 2.
    similarity = np.array([[0.9, 0.1, 0.8, 0.0],
                           [0.2, 0.3, 0.1, 0.6],
                           [0.1, 0.2, 0.5, 0.4],
                           [0.7, 0.0, 0.2, 0.3]])
    video_of = np.array([0, 0, 1, 2])
    # Best per (caption, video): rows [0.9, 0.8, 0.0], [0.3, 0.1, 0.6], [0.2, 0.5, 0.4],
    # [0.7, 0.2, 0.3]. Caption averages: video 0 [0.6, 0.45, 0.3], video 1 [0.2, 0.5,
    # 0.4], video 2 [0.7, 0.2, 0.3]: ranks 1, 1, 2.
    m = youcook2.full_video_retrieval(similarity, video_of, (1, 2))
    assert m["caption_avg/R@1"] == pytest.approx(200 / 3)
    assert m["caption_avg/R@2"] == 100.0
    # Top-1 votes by video: video 0's captions vote 0 and 2 (tie 1:1, pessimistic:
    # a miss at K=1), video 1 votes 1, video 2 votes 0.
    assert m["mv_video/R@1"] == pytest.approx(100 / 3)
    # Top-1 clips: caption 0 -> clip 0 (video 0), caption 1 -> clip 3 (video 2),
    # caption 2 -> clip 2 (video 1), caption 3 -> clip 0 (video 0): the same votes.
    assert m["mv_clip/R@1"] == pytest.approx(100 / 3)
    # At K=2, video 0's captions vote {0, 1} and {2, 0}: 0 has 2 votes, a hit; video 2's
    # caption votes {0, 2}: a hit.
    assert m["mv_video/R@2"] == 100.0


def test_youcook2_full_video_metrics_run_on_the_export(setup):
    evaluator = _evaluator(setup, "ycf", "youcook2", full_video=True)
    metrics = evaluator.run(setup[2], 0)
    assert {"full_video/caption_avg/R@1", "full_video/mv_clip/R@10"} <= set(metrics)


def test_a_feature_and_audio_run_reads_waveforms_beside_the_features(tmp_path):
    """MCN (features + audio, T→VA similarity) on the YouCook2 export of its own lab."""
    config = load_config(f"{ROOT}/configs/mcn.py:tiny")
    config.data.lab_dir = str(tmp_path / "lab")
    config = sources.resolve_data(config)
    data_dir = lab_exports.export(lab.LabConfig(**config.lab.to_dict()), "youcook2",
                                  tmp_path / "youcook2")
    trainer = train.Trainer(config, sharding.make_mesh())
    config.evals.yc = section("youcook2", every=0, data_dir=str(data_dir),
                              features_dir=str(data_dir / "features"), cache_dir=str(tmp_path))
    with pytest.raises(ValueError, match="config.evals.yc.waveform_dir is empty"):
        build_evaluators(trainer.method, trainer.mesh, config, None, ["yc"])
    config.evals.yc.waveform_dir = str(data_dir / "waveforms")
    (evaluator,) = build_evaluators(trainer.method, trainer.mesh, config, None, ["yc"]).values()
    metrics = evaluator.run(trainer.init_state(), 0)
    assert metrics["clips_embedded"] == metrics["clips"] > 0
    assert metrics["videos_failed"] == 0


def test_a_video_that_does_not_decode_is_counted_not_fatal(setup, tmp_path):
    import shutil

    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = setup[0].data.lab_dir
    config = sources.resolve_data(config)
    data_dir = tmp_path / "yc2"
    shutil.copytree(setup[3]["youcook2"], data_dir)
    broken = sorted(data_dir.rglob("*.mp4"))[0]
    broken.write_bytes(b"not a video" * 100)
    config.evals.yc = section("youcook2", every=0, data_dir=str(data_dir),
                              cache_dir=str(tmp_path / "cache"))
    evaluator = youcook2.Evaluator(None, setup[1].mesh, config, "yc")
    converted = evaluator.convert(evaluator.video_sources, evaluator.missing)
    assert list(converted.failed) == [broken.stem]
    assert converted.counts() == {"videos_missing": 0.0, "videos_failed": 1.0}
    assert broken.stem not in converted.converted and len(converted.converted) >= 2


def test_a_benchmark_evaluates_during_training(setup, tmp_path):
    """A benchmark section with `every` runs at its steps, from the run's config."""
    from vtlearn.train import train_and_evaluate

    config = load_config(f"{ROOT}/configs/milnce_s3d.py:tiny")
    config.data.lab_dir = setup[0].data.lab_dir
    use_lab_features(config)
    config.evals.probe.every = 0
    config.evals.retrieval.every = 0
    data_dir = setup[3]["crosstask"]
    config.evals.ct = section("crosstask", every=2, data_dir=str(data_dir),
                              features_dir=str(data_dir.parent / "features"),
                              cache_dir=str(tmp_path / "cache"))
    train_and_evaluate(config, str(tmp_path / "run"))
    rows = [json.loads(line) for line in (tmp_path / "run/metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "ct/recall" in r]
    assert steps == [2, 4]


def test_mining_youtube_alignment_matches_brute_force():
    rng = np.random.default_rng(1)

    def compositions(t, n):  # the ends of n ordered non-empty segments of t windows
        for cuts in itertools.combinations(range(1, t), n - 1):
            yield (0,) + cuts + (t,)

    for t_count, transcript in [(5, [0, 1]), (6, [2, 0, 1]), (7, [1, 0, 1, 2]), (4, [0]),
                                (6, [0, 0, 1])]:
        log_probs = rng.normal(size=(t_count, 3))
        mean = t_count / len(transcript)
        best, best_labels = -np.inf, None
        for bounds in compositions(t_count, len(transcript)):
            labels = np.concatenate([np.full(b - a, c) for a, b, c in
                                     zip(bounds[:-1], bounds[1:], transcript)])
            score = log_probs[np.arange(t_count), labels].sum() + sum(
                mining_youtube.poisson_log_pmf(b - a, mean) for a, b in zip(bounds[:-1],
                                                                            bounds[1:]))
            if score > best:
                best, best_labels = score, labels
        np.testing.assert_array_equal(mining_youtube.align(log_probs, transcript, mean),
                                      best_labels)


def test_mining_youtube_overlaps_by_hand():
    background = 9
    truth = np.array([9, 1, 1, 1, 1, 9, 2, 2, 9, 9])
    predicted = np.array([9, 9, 1, 1, 1, 1, 1, 2, 2, 9])
    # Action 1: G=[1,5), D=[2,7): ∩ 3, ∪ 6, |D| 5. Action 2: G=[6,8), D=[7,9): ∩ 1, ∪ 3, |D| 2.
    iou, iod = segments.segment_overlaps(truth, predicted, background)
    assert iou == pytest.approx((3 / 6 + 1 / 3) / 2) and iod == pytest.approx((3 / 5 + 1 / 2) / 2)
    assert segments.runs(["a", "a", "b", "a"]) == [("a", 0, 2), ("b", 2, 3), ("a", 3, 4)]


def test_mining_youtube_files_and_their_errors(tmp_path):
    (tmp_path / "t.txt").write_text("\n")
    with pytest.raises(ValueError, match="t.txt: line 1: empty transcript"):
        mining_youtube.read_transcript(tmp_path / "t.txt")
    (tmp_path / "g.gt").write_text("background\ncrack_egg\n\ncrack_egg\n")
    with pytest.raises(ValueError, match="g.gt: line 3: empty label"):
        mining_youtube.read_frame_labels(tmp_path / "g.gt")


def test_mining_youtube_end_to_end_on_the_lab_export(setup, tmp_path):
    with pytest.raises(ValueError, match="label_rate must be set"):
        _evaluator(setup, "myt", "mining_youtube", export="miningyoutube")
    evaluator = _evaluator(setup, "myt", "mining_youtube", export="miningyoutube",
                           label_rate=1.0)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    root = data_dirs["miningyoutube"]
    ids = (root / "videos_test.txt").read_text().split()
    assert metrics["videos"] == len(ids) and 0 <= metrics["frame_accuracy"] <= 100
    # The reference from the files: per-second features, the class names' text.
    classes = evaluator.classes
    text = evaluator.embed_texts(state, [benchmark.label_text(c) for c in classes[:-1]])
    accuracies, recalls, flat_accuracies = [], [], []
    for vid in ids:
        with np.load(root / "features" / f"{vid}.npz") as f:
            seconds = len(f["2d"])
        video = _embed(setup, [_window_features(root / "features" / f"{vid}.npz", t, t + 1)
                               for t in range(seconds)])
        scores = video @ text.T
        scores = np.concatenate([scores, np.full((seconds, 1), scores.mean())], 1)
        transcript = [classes.index(c) for c in
                      mining_youtube.read_transcript(root / "transcripts" / f"{vid}.txt")]
        present = sorted(set(transcript))
        log_probs = np.full(scores.shape, -np.inf)
        shifted = scores[:, present] - scores[:, present].max(1, keepdims=True)
        log_probs[:, present] = shifted - np.log(np.exp(shifted).sum(1, keepdims=True))
        predicted = mining_youtube.align(log_probs, transcript, seconds / len(transcript))
        truth = [classes.index(c) for c in
                 mining_youtube.read_frame_labels(root / "groundTruth" / f"{vid}.gt")]
        accuracies.append(np.mean(np.array(truth[:seconds]) == predicted))
        flat = mining_youtube.align(np.where(np.isfinite(log_probs), 0.0, -np.inf), transcript,
                                    seconds / len(transcript))
        flat_accuracies.append(np.mean(np.array(truth[:seconds]) == flat))
        # MCN's recall: each action (transcript order) gets one second by the ordering DP.
        actions = list(dict.fromkeys(c for c in transcript if c != len(classes) - 1))
        shifted = scores[:, actions] - scores[:, actions].max(1, keepdims=True)
        assigned = crosstask.order_constrained_assignment(
            shifted - np.log(np.exp(shifted).sum(1, keepdims=True)))
        recalls.append(np.mean([truth[int(np.argmax(assigned[:, k]))] == c
                                for k, c in enumerate(actions)]))
    assert metrics["frame_accuracy"] == pytest.approx(100 * np.mean(accuracies), abs=1e-6)
    assert metrics["recall"] == pytest.approx(100 * np.mean(recalls), abs=1e-6)
    assert metrics["uniform/frame_accuracy"] == pytest.approx(100 * np.mean(flat_accuracies))


def test_mining_youtube_reads_srt_ground_truth_as_the_frame_labels(setup, tmp_path):
    """The same annotations written as subtitles give the same metrics, with no
    label_rate; a bad entry is named by file and line."""
    _, _, state, data_dirs, _ = setup
    root = tmp_path / "myt"
    shutil.copytree(data_dirs["miningyoutube"], root)

    def stamp(t):
        return f"{int(t // 3600):02d}:{int(t % 3600 // 60):02d}:{t % 60:06.3f}".replace(".", ",")

    for gt in sorted((root / "groundTruth").glob("*.gt")):
        entries = [f"{i}\n{stamp(a)} --> {stamp(b)}\n{label.replace('_', ' ')}\n" for i, (
            label, a, b) in enumerate(segments.runs(mining_youtube.read_frame_labels(gt)), 1)]
        gt.with_suffix(".srt").write_text("\n".join(entries))
        gt.unlink()
    frames = _evaluator(setup, "myt", "mining_youtube", export="miningyoutube", label_rate=1.0)
    subtitles = _evaluator(setup, "myts", "mining_youtube", export="miningyoutube",
                           data_dir=str(root))
    expected, metrics = frames.run(state, 0), subtitles.run(state, 0)
    for key in ("frame_accuracy", "IoU", "IoD", "recall", "uniform/IoU"):
        assert metrics[key] == pytest.approx(expected[key]), key
    bad = root / "bad.srt"
    bad.write_text("1\n00:00:01,000 -> 00:00:02,000\ncrack egg\n")
    with pytest.raises(ValueError, match="bad.srt: line 2: expected 'HH:MM:SS,mmm"):
        mining_youtube.read_srt(bad)
    bad.write_text("1\n00:00:01,000 --> 00:00:02,000\n\n")
    with pytest.raises(ValueError, match="bad.srt: line 1: an entry needs"):
        mining_youtube.read_srt(bad)


def test_mining_youtube_clustering_of_the_action_seconds(setup):
    from vtlearn.evaluation.clustering import cluster_by_task

    evaluator = _evaluator(setup, "mytc", "mining_youtube", export="miningyoutube",
                           label_rate=1.0, clustering=True)
    _, _, state, data_dirs, _ = setup
    metrics = evaluator.run(state, 0)
    root = data_dirs["miningyoutube"]
    points, labels, owners = [], [], []
    for vid in (root / "videos_test.txt").read_text().split():
        truth = mining_youtube.read_frame_labels(root / "groundTruth" / f"{vid}.gt")
        for t, label in enumerate(truth):
            if label != "background":
                points.append(_window_features(root / "features" / f"{vid}.npz", t, t + 1))
                labels.append(evaluator.classes.index(label))
                owners.append(vid)
    expected = cluster_by_task(_embed(setup, points), np.array(labels), np.array(owners))
    for key in ("NMI", "ARI", "Acc", "H", "p_max", "num_tasks"):
        assert metrics[f"clustering/{key}"] == pytest.approx(expected[key], rel=1e-4), key


def test_without_pyav_evaluators_load_and_decoding_says_what_to_install():
    """PyAV is the `video` extra: a base install lists every evaluator (feature runs
    need no decoder) and decoding a video names the extra."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['av'] = None\n"
            "from vtlearn.registry import builtin_plugins\n"
            "print(' '.join(builtin_plugins('vtlearn.evaluation', 'Evaluator')))\n"
            "from vtlearn.data import convert\n"
            "try:\n"
            "    convert.VideoFileLoader()(convert.SourceVideo('v', {'video': 'v.mp4'}, None))\n"
            "except ModuleNotFoundError as e:\n"
            "    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    listed, message = done.stdout.strip().splitlines()[-2:]
    assert {"youcook2", "crosstask", "mining_youtube", "youtube8m_segments"} <= set(listed.split())
    assert message == "decoding or writing video files needs PyAV: pip install 'vtlearn[video]'"


def test_clustering_names_an_output_the_method_lacks(setup):
    evaluator = _evaluator(setup, "ctn", "crosstask", clustering=True, outputs=("audio",))
    with pytest.raises(ValueError, match=r"config.evals.ctn.outputs: the method's outputs have "
                                         r"no \['audio'\]; they have \['embedding'"):
        evaluator.run(setup[2], 0)
