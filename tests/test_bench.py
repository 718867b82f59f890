"""The bench's quick mode runs every measurement end to end, so the script cannot rot between real runs."""

from __future__ import annotations

import subprocess
import sys

from bench.load import Outcome, Summary, percentile
from bench.scenarios import climb
from whatsapp.testing.service import ROOT


def test_quick_bench_runs_every_measurement_and_prints_the_table():
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--quick"], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    assert "| Measurement | Result | Target | Verdict |" in lines
    for row in ("| 1. Ack latency", "| 2. Intake ceiling", "| 3. Pipeline overhead", "| 4. Outbound", "| 5. Cost"):
        assert any(line.startswith(row) for line in lines), row
    assert any(line.startswith("| 6. RSS per gunicorn worker") for line in lines)
    ack = next(line for line in lines if line.startswith("| 1. Ack latency"))
    assert "0 errors" in ack and "50/50 answered exactly once" in ack and "bare Flask on the same load" in ack
    answers = next(line for line in lines if line.startswith("| 7. Answer time"))
    assert "50/50 answered exactly once" in answers
    first = next(line for line in lines if line.startswith("| 8. First requests after a start"))
    assert "0 errors" in first and "bare Flask" in first
    in_flight = next(line for line in lines if line.startswith("| 9. Conversations in flight"))
    assert "100/100 answered exactly once" in in_flight


def test_latency_counts_from_the_scheduled_time_not_from_the_send():
    # A request that waited 900 ms for a free connection and was then answered in 1 ms took 901 ms for its sender.
    waited = Outcome("m1", scheduled=10.0, sent=10.9, done=10.901, status=200)
    summary = Summary.of(1.0, [waited])
    assert round(summary.p99, 3) == 0.901
    assert round(summary.send_lag_p99, 3) == 0.9


def test_percentile_is_nearest_rank():
    values = [float(n) for n in range(1, 1001)]
    assert percentile(values, 50) == 500.0
    assert percentile(values, 99) == 990.0
    assert percentile(values, 100) == 1000.0


def test_ceiling_is_the_highest_passing_rate_after_bisection():
    def step(rate: float) -> Summary:
        p99 = 0.01 if rate <= 250 else 0.5
        return Summary(rate, 10, 0, p99, p99, p99, p99, 0.0)

    result = climb(step, (100, 200, 400, 800), refine=2)
    assert [s.rate for s in result.runs] == [100, 200, 400, 400, 280, 280, 240]  # a failing rate is tried twice
    assert (result.ceiling, result.stopped) == (240, None)


def test_one_stalled_run_does_not_end_the_climb():
    stalls = {200}  # the first run at 200/s meets a stall; the second does not

    def step(rate: float) -> Summary:
        p99 = 0.5 if rate in stalls or rate > 300 else 0.01
        stalls.discard(rate)
        return Summary(rate, 10, 0, p99, p99, p99, p99, 0.0)

    result = climb(step, (100, 200, 400), refine=0)
    assert [s.rate for s in result.runs] == [100, 200, 200, 400, 400]
    assert result.ceiling == 200


def test_a_generator_that_falls_behind_ends_the_climb_with_a_lower_bound():
    def step(rate: float) -> Summary:
        lag = 0.4 if rate >= 400 else 0.001  # the client could not send 400/s on time
        return Summary(rate, 10, 0, 0.01, 0.01, 0.01, 0.02, lag)

    result = climb(step, (100, 200, 400, 800), refine=2)
    assert [s.rate for s in result.runs] == [100, 200, 400]
    assert (result.ceiling, result.stopped) == (200, "generator limit")
