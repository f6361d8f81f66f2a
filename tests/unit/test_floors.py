"""Every smoke quality floor can fail: fed a run whose model regressed to nothing, it says so."""

import pytest

from floors import FLOORS, Floor, failures


def healthy(notebook: str) -> dict:
    """Recorded values that clear every floor of `notebook` (baselines 0.5, checked figures 0.6)."""
    metrics = {}
    for floor in FLOORS[notebook]:
        if isinstance(floor.baseline, str):
            metrics.setdefault(floor.baseline, 0.5)
        metrics[floor.key] = max(0.6, floor.baseline + 0.1) if isinstance(floor.baseline, float) else 0.6
    return metrics


@pytest.mark.parametrize("notebook", sorted(FLOORS))
def test_a_healthy_run_passes(notebook):
    assert failures(notebook, healthy(notebook)) == []


@pytest.mark.parametrize("notebook, floor", [(nb, f) for nb, floors in sorted(FLOORS.items()) for f in floors],
                         ids=lambda value: value.key if isinstance(value, Floor) else value)
def test_each_floor_fails_on_a_broken_run(notebook, floor):
    broken = {**healthy(notebook), floor.key: 0.0}  # this model regressed to NDCG ≈ 0
    failed = failures(notebook, broken)
    assert any(message.startswith(f"{floor.key} = 0.0000") for message in failed), failed
    missing = {key: value for key, value in healthy(notebook).items() if key != floor.key}
    assert f"{floor.key} was not recorded" in failures(notebook, missing)  # a figure that vanished fails too


def test_a_broken_run_fails_every_floor_that_has_a_positive_baseline():
    for notebook in FLOORS:
        everything_zero = {key: 0.0 for key in healthy(notebook)}
        expected = [f for f in FLOORS[notebook] if (0.5 if isinstance(f.baseline, str) else f.baseline) - f.margin > 0
                    and isinstance(f.baseline, float)]
        assert len(failures(notebook, everything_zero)) >= len(expected), notebook
