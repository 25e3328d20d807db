"""The cost cap's arithmetic: each chunk's share of the cap is the bound AWS keeps alone."""

from __future__ import annotations

import math

import pytest

from vsr_desktop.backends.aws.cost_cap import (
    cap_chunk_seconds,
    checked_cap,
    chunk_time_limit,
    explain_timeout,
    over_cap,
    stopped_message,
)
from vsr_desktop.core.errors import InputError


def test_the_caps_share_per_chunk_bounds_the_gpu_jobs_cost() -> None:
    # $10 at $0.25 per GPU-hour = 40 GPU-hours; over 60 chunks, 2,400 s each.
    assert cap_chunk_seconds(10.0, 0.25, 60) == 2400
    # Whatever the chunks, their time limits × the price never pass the cap (above 60 s).
    for cap, price, chunks in ((3.0, 0.21, 7), (0.9, 0.48, 40), (50.0, 1.2, 1)):
        limit = cap_chunk_seconds(cap, price, chunks)
        assert chunks * limit * price / 3600 <= cap + 1e-9
    assert cap_chunk_seconds(0.0001, 0.5, 10) == 60  # Batch's minimum attemptDurationSeconds


def test_the_time_limit_is_the_lower_of_the_table_and_the_cap() -> None:
    assert chunk_time_limit(1000, None, 0.5, 4) == 1000  # no cap
    assert chunk_time_limit(1000, 5.0, None, 4) == 1000  # no price: nothing to reckon
    assert chunk_time_limit(1000, 0.1, 0.5, 4) == 180
    assert chunk_time_limit(100, 10.0, 0.5, 4) == 100
    assert chunk_time_limit(None, 0.1, 0.5, 4) == 180


@pytest.mark.parametrize("bad", [-1, "x", math.inf, math.nan, "-0.5"])
def test_a_bad_cap_is_refused_with_a_hint(bad: object) -> None:
    with pytest.raises(InputError, match="positive number of US dollars") as refused:
        checked_cap(bad)
    assert "--max-cost" in refused.value.hint


def test_no_cap_and_reaching_it() -> None:
    assert checked_cap(None) is None and checked_cap(0) is None and checked_cap("") is None
    assert checked_cap("2.5") == 2.5
    assert not over_cap(4.99, 5.0) and over_cap(5.0, 5.0) and not over_cap(9.0, None)
    text = stopped_message(5.01, 5.0, 3)
    assert "$5.01 so far reached the cap of $5.00" in text and "3 Batch job(s)" in text


def test_a_chunk_killed_at_the_caps_time_limit_says_so() -> None:
    reason = "UpscaleFailed: Job attempt duration exceeded timeout"
    assert "share of the $2.00 cost cap" in explain_timeout(reason, 2.0, 180)
    assert explain_timeout(reason, None, 180) == reason  # the table's limit: unchanged
    assert explain_timeout("UpscaleFailed: Essential container exited", 2.0, 180).endswith("exited")
