"""bench/peers.py's figures: rates and CPU per action, ratios run by run, and the suite's table."""

from __future__ import annotations

import pytest

from bench import suite
from bench.peer_figures import JOBS, RATIOS, figures, measure, rotated, table


def test_measure_counts_outputs_over_first_to_last_timestamp() -> None:
    stamps = [1_000, 1_500, 2_000, 3_000]  # 4 outputs over 2 s
    m = measure(stamps, cpu_seconds=0.0002)
    assert m["per_s"] == pytest.approx(2.0)
    assert m["cpu_us"] == pytest.approx(50.0)
    assert m["seconds"] == pytest.approx(2.0)


def test_measure_of_one_instant_is_infinite_not_an_error() -> None:
    assert measure([5, 5], 0.0)["per_s"] == float("inf")


def test_rotated_starts_each_run_one_job_later() -> None:
    jobs = ["a", "b", "c"]
    assert [rotated(jobs, run) for run in range(4)] == [
        ["a", "b", "c"],
        ["b", "c", "a"],
        ["c", "a", "b"],
        ["a", "b", "c"],
    ]
    assert rotated([], 2) == []


def _run(worker: float, quix: float, cpu_worker: float = 50.0, cpu_quix: float = 40.0) -> dict:
    return {
        "worker": {"per_s": worker, "cpu_us": cpu_worker},
        "quix": {"per_s": quix, "cpu_us": cpu_quix},
    }


def test_ratios_are_taken_run_by_run() -> None:
    # Run by run: 2.0, 0.5, 1.0 -> median 1.0; the ratio of the medians would be 20/10 = 2.0.
    runs = [_run(20, 10), _run(10, 20), _run(30, 30)]
    result = figures(runs)
    ratio = result["ratios"]["worker/quix"]
    assert ratio["per_s"] == {"median": 1.0, "min": 0.5, "max": 2.0, "n": 3}
    assert ratio["cpu_us"]["median"] == pytest.approx(50 / 40)
    assert result["jobs"]["worker"]["per_s"]["median"] == 20


def test_jobs_and_ratios_not_measured_are_left_out() -> None:
    result = figures([_run(20, 10)])
    assert set(result["jobs"]) == {"worker", "quix"}
    assert set(result["ratios"]) == {"worker/quix"}  # no pass-through, no exactly-once Quix


def test_table_has_a_line_per_job_and_ratio() -> None:
    runs = [{job: {"per_s": 1000.0 * (i + 1), "cpu_us": 10.0 * (i + 1)} for i, job in enumerate(JOBS)}]
    lines = table(figures(runs))
    assert len(lines) == 1 + len(JOBS) + 1 + len(RATIOS)
    assert lines[1].startswith(JOBS["worker"]) and "1,000 (1,000-1,000)" in lines[1]
    assert any(line.startswith("worker (exactly once) / pass-through") and "0.20" in line for line in lines)


def test_suite_rows_of_the_peers_step() -> None:
    runs = [_run(20_000, 25_000, 40, 50), _run(22_000, 20_000, 44, 50)]
    rows = suite.peer_rows({"events": 40_000, **figures(runs)})
    assert [figure for figure, _, _ in rows] == [
        JOBS["worker"],
        JOBS["quix"],
        "**worker / Quix, each with its default guarantee**",
    ]
    assert rows[0][1] == "21,000 actions/s (20,000-22,000); CPU per action 42 µs (40-44)"
    assert rows[0][2] == "bench/peers.py, 40,000 actions, rollups off"
    assert rows[2][1] == "**0.95 (0.80-1.10)**"
    assert rows[2][2].endswith("CPU per action, worker / peer: 0.84 (0.80-0.88)")
