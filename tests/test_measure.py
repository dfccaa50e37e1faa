"""labkit.lab.measure: sample shapes, units and argument checks (no timing asserts)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from labkit.lab.measure import compare_rates, rate, summarize, time_calls


def test_time_calls_returns_one_sample_per_call() -> None:
    """n timed calls give n non-negative durations, after the warm-up calls."""
    calls = []
    samples = time_calls(lambda: calls.append(1), n=50, warmup=5)
    assert samples.shape == (50,) and (samples >= 0).all()
    assert len(calls) == 55


def test_summarize_reports_milliseconds() -> None:
    """Percentiles come out in milliseconds from samples in seconds."""
    s = summarize(np.array([0.001, 0.002, 0.003, 0.004]))
    assert s.n == 4
    assert s.p50_ms == pytest.approx(2.5)
    assert s.mean_ms == pytest.approx(2.5)
    assert "p99=" in str(s)


def test_rate_and_compare_rates_count_ops_per_call() -> None:
    """ops_per_call scales the rate; compare_rates returns one rate per label."""
    assert rate(lambda: None, seconds=0.01) > 0
    rates = compare_rates(
        {"one": lambda: None, "ten": (lambda: None, 10)}, seconds=0.02, rounds=2
    )
    assert set(rates) == {"one", "ten"} and all(v > 0 for v in rates.values())


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: time_calls(lambda: None, n=0), "n=0"),
        (lambda: time_calls(lambda: None, warmup=-1), "warmup=-1"),
        (lambda: summarize([]), "empty"),
        (lambda: rate(lambda: None, seconds=0), "seconds=0"),
        (lambda: compare_rates({}, rounds=0), "rounds=0"),
    ],
)
def test_bad_arguments(call: Callable[[], object], match: str) -> None:
    """Bad arguments raise ValueError naming the argument."""
    with pytest.raises(ValueError, match=match):
        call()
