"""Progress: rates count training steps only; durations past a day."""

from vtlearn import metric_writers


def test_durations_keep_their_days():
    assert metric_writers.format_duration(0) == "0:00:00"
    assert metric_writers.format_duration(3 * 3600 + 5 * 60 + 7.4) == "3:05:07"
    # A 4-day run used to print "15:05:00" (strftime wrapped at 24 h).
    assert metric_writers.format_duration(4 * 86_400 + 15 * 3600 + 300) == "4d 15:05:00"


def test_rates_count_only_the_steps_and_seconds_since_a_restart():
    """Arithmetic on given instants (seconds), no clock: what a restart leaves out."""
    progress = metric_writers.Progress(total_steps=1_000, clips_per_step=32, start_step=0,
                                       now=100.0)
    progress.restart(1, now=220.0)  # 120 s compiling the first step: left out
    assert progress.update(10, now=229.0) == {"steps_per_second": 1.0, "clips_per_second": 32.0}
    progress.restart(10, now=829.0)  # 600 s of evaluation: left out
    assert progress.update(20, now=834.0)["steps_per_second"] == 2.0
    assert progress.update(20, now=900.0) == {}  # no step since: nothing to report
