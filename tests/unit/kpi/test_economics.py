"""Unit economics from summed partials (revmon/kpi/economics.py, SPEC §3.6 v2)."""

from __future__ import annotations

from functools import cache

import pytest

from revmon.kpi import economics
from revmon.settings import Settings, load_settings

NOW = 1_767_225_600.0


@cache
def _settings() -> Settings:
    return load_settings(None, windows=["30d"])


def partials(
    new: float = 0, expansion: float = 0, contraction: float = 0, churn: float = 0, **spend: float
) -> dict[str, float]:
    """MRR movements and expenses of the 30d window, as the account and finance books key them."""
    out = {
        f"revmon_mrr_movement_amount|{movement}|30d": value
        for movement, value in (
            ("new", new),
            ("expansion", expansion),
            ("contraction", contraction),
            ("churn", churn),
        )
    }
    out.update({f"revmon_expense_amount|{c}|30d": v for c, v in spend.items()})
    return out


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param(
            partials(
                new=1000, expansion=500, contraction=100, churn=200, sales=6000, marketing=3000
            ),
            {
                "revmon_quick_ratio": 1500 / 300,
                "revmon_cac_payback_months": 9000 / 1500,
                "revmon_magic_number": (1500 - 300) * 12 / 9000,
            },
            id="all-three-by-hand",
        ),
        pytest.param(
            partials(new=1000, tools=500, customer_success=800),
            {"revmon_cac_payback_months": 0.0},
            id="no-loss-no-quick-ratio-and-other-categories-are-not-s-and-m",
        ),
        pytest.param(
            partials(churn=100, marketing=400),
            {"revmon_quick_ratio": 0.0, "revmon_magic_number": -100 * 12 / 400},
            id="nothing-gained-no-payback-and-a-negative-magic-number",
        ),
        pytest.param(partials(), {}, id="no-denominator-no-series"),
        pytest.param(
            partials(new=0.1 + 0.2 - 0.3, contraction=0.1 + 0.2 - 0.3),
            {},
            id="float-dust-is-no-denominator",
        ),
    ],
)
def test_unit_economics(parts: dict[str, float], expected: dict[str, float]) -> None:
    """Each ratio is the SPEC formula, exported only where its denominator is positive."""
    got = {s.name: s.value for s in economics.samples(_settings(), parts, NOW)}

    assert got == pytest.approx(expected)
    assert all(s.labels == (("window", "30d"),) for s in economics.samples(_settings(), parts, NOW))
