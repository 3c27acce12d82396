"""Progress: rates and the ETA count training steps only; durations past a day."""

from vtlearn import metric_writers


def test_durations_keep_their_days():
    assert metric_writers.format_duration(0) == "0:00:00"
    assert metric_writers.format_duration(3 * 3600 + 5 * 60 + 7.4) == "3:05:07"
    # A 4-day run used to print "15:05:00" (strftime wrapped at 24 h).
    assert metric_writers.format_duration(4 * 86_400 + 15 * 3600 + 300) == "4d 15:05:00"


def test_rates_exclude_time_before_a_restart(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr(metric_writers.time, "perf_counter", lambda: clock[0])
    progress = metric_writers.Progress(total_steps=1_000, clips_per_step=32, start_step=0)
    clock[0] += 120.0  # compiling the first step
    progress.restart(1)
    clock[0] += 9.0  # 9 training steps at 1 step/s
    assert progress.update(10) == {"steps_per_second": 1.0, "clips_per_second": 32.0}
    clock[0] += 600.0  # an evaluation
    progress.restart(10)
    clock[0] += 5.0
    assert progress.update(20)["steps_per_second"] == 2.0
    assert progress.update(20) == {}  # no step since: nothing to report
