"""Numbers and dates as people read them: currency, percentages, thousands separators."""

from __future__ import annotations

from datetime import datetime, timedelta

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥"}


def money(value: float | None, currency: str) -> str:
    """`$1,234,567` (whole units; `1.2M` style is for charts, not for a tile people quote)."""
    if value is None:
        return "–"
    symbol = _SYMBOLS.get(currency)
    sign = "−" if value < 0 else ""
    amount = f"{abs(value):,.0f}"
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {currency}"


def short_money(value: float, currency: str) -> str:
    """`$1.2M`, `$350k`: an axis label."""
    symbol = _SYMBOLS.get(currency, "")
    size = abs(value)
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if size >= limit:
            return f"{'−' if value < 0 else ''}{symbol}{size / limit:.3g}{suffix}"
    return f"{'−' if value < 0 else ''}{symbol}{size:.0f}"


def percent(value: float | None, digits: int = 1) -> str:
    """`12.5%`."""
    return "–" if value is None else f"{value * 100:,.{digits}f}%"


def ratio(value: float | None) -> str:
    """`0.62`; large ratios keep thousands separators."""
    return "–" if value is None else f"{value:,.2f}"


def count(value: float | None) -> str:
    """`1,234`."""
    return "–" if value is None else f"{value:,.0f}"


def months(value: float | None) -> str:
    """`14.2 months`."""
    return "–" if value is None else f"{value:,.1f} months"


def day(moment: datetime) -> str:
    """`Mon 6 Oct 2025` in the moment's own zone."""
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def week_label(end: datetime) -> str:
    """The ISO week a week end closes, `2025-W40`, from its last day."""
    year, week, _ = (end.date() - timedelta(days=1)).isocalendar()
    return f"{year}-W{week:02d}"


def duration(seconds: float) -> str:
    """`30d`, `12h`, `90s`: the config's own spelling of a duration."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds / size:.0f}{unit}"
    return f"{seconds:g}s"
