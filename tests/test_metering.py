"""The stage cache charges every reuse of a trained stage its full cost."""

from __future__ import annotations

from shoptransfer.metering import StageCache, measure


def test_a_reused_stage_is_charged_to_the_fit_that_reuses_it() -> None:
    stages = StageCache(limit=2)
    with measure() as meter:
        assert stages.get("a") is None  # nothing kept yet: nothing charged
        stages.put("a", "weights", seconds=3.0, flops=5.0)
    assert meter.reused_seconds == 0.0 and meter.flops == 0.0
    for _ in range(2):  # each reuse pays again
        with measure() as meter:
            assert stages.get("a") == "weights"
        assert meter.reused_seconds == 3.0 and meter.flops == 5.0
    stages.put("b", 1, seconds=1.0)
    stages.put("c", 2, seconds=1.0)
    assert len(stages) == 2 and stages.get("a") is None  # the oldest went first
