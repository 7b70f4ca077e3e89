"""An opportunity as the pipeline book stores it, and what its expiry would change (SPEC §2)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from revmon.kpi.stages import Position


@dataclass(slots=True)
class Opportunity:
    """What the book knows of one opportunity; stored as a JSON-able list (`to_record`).

    While closed, `stage`, `entered_at` and `amount` are the close's stage, time and amount
    (a closed opportunity's amount does not change), which is what a re-open retracts.
    """

    kind: str
    amount: Decimal
    stage: str
    entered_at: float
    created_at: float  # creation, or first entry for one first seen through a stage change
    close_date: str | None  # expected_close_date as an ISO date
    reached: list[str]  # open stages it was ever in, in the order first reached
    created: bool  # counted in revmon_pipeline_created
    channel: str | None = None  # the channel label of its lead source (v2), if it has one
    expires: bool = True  # False once an event held it in its stage (SPEC §2)

    def to_record(self) -> list[Any]:
        """The JSON-able record kept in `Records` (v1 records have the first eight)."""
        return [
            self.kind,
            str(self.amount),
            self.stage,
            self.entered_at,
            self.created_at,
            self.close_date,
            list(self.reached),
            self.created,
            self.channel,
            self.expires,
        ]

    @classmethod
    def from_record(cls, value: Any) -> Opportunity:
        """The opportunity of a stored record."""
        kind, amount, stage, entered_at, created_at, close_date, reached, created = value[:8]
        channel, expires = (value[8], value[9]) if len(value) > 8 else (None, True)
        return cls(
            kind,
            Decimal(amount),
            stage,
            entered_at,
            created_at,
            close_date,
            list(reached),
            created,
            channel,
            expires,
        )

    @staticmethod
    def position_of(value: Any) -> Position:
        """The position of a stored record, without decoding the rest of it."""
        return Position(value[2], value[3], value[9] if len(value) > 9 else True)

    @property
    def position(self) -> Position:
        """Where it is, as the funnel sees it."""
        return Position(self.stage, self.entered_at, self.expires)


def expiry_contribution(opp: Opportunity) -> dict[str, Decimal]:
    """What an open opportunity's expiry takes from the open totals and adds to the losses."""
    kind, stage, one = opp.kind, opp.stage, Decimal(1)
    out = {
        f"open|{kind}|{stage}": one,
        f"amount|{kind}|{stage}": opp.amount,
        f"closing|{kind}|{opp.close_date or ''}": opp.amount,
        f"lost|{kind}": one,
        f"amount|{kind}": opp.amount,
    }
    for reached in opp.reached:
        out[f"reached|{kind}|{reached}"] = one
    return out
