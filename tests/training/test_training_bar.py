"""The training progress bar: steps out of the planned total, or seconds out of a time budget."""

from __future__ import annotations

from medseg.training.run_log import TrainingBar


def test_budgeted_run_counts_seconds_of_the_budget_and_shows_the_step(capsys):
    bar = TrainingBar(total_steps=87_000, step=0, max_time=600, elapsed=0.0, enabled=True)
    for step, elapsed in [(1, 0.5), (2, 1.25), (3, 2.0)]:
        bar.update(step, elapsed, loss="0.500")
    assert (bar.bar.n, bar.bar.total) == (2.0, 600)
    text = str(bar.bar)
    bar.close()
    assert "of the time budget" in text and "step=3" in text and "loss=0.500" in text
    assert "87000" not in text  # the step total a budgeted run never reaches
    assert "train" in capsys.readouterr().err


def test_budget_bar_stops_at_the_budget_and_resumes_from_the_elapsed_time():
    bar = TrainingBar(total_steps=100, step=40, max_time=60, elapsed=30.0, enabled=True)
    assert bar.bar.n == 30.0
    bar.update(41, 75.0)  # the last step may end past the budget
    assert bar.bar.n == 60
    bar.close()


def test_run_without_budget_counts_steps_from_where_it_resumed():
    bar = TrainingBar(total_steps=100, step=40, max_time=None, elapsed=123.0, enabled=True)
    for step in (41, 42):
        bar.update(step, 0.0, epoch=3)
    assert (bar.bar.n, bar.bar.total) == (42, 100)
    bar.close()
