"""A deterministic simulator of a B2B SaaS revenue engine's event history (SPEC §1).

The model, one module per domain:

- `marketing`: the daily clock. Paid channels spend daily on a campaign per month;
  leads arrive as a Poisson count per day (weekday-heavy, yearly wave, growth) over a
  channel mix; a `tv` channel outside the list and channel-less rows appear now and then.
- `leads`: names move through the configured lead stages with lognormal delays and
  ~35-40% advance per step; some skip a stage, regress, stall for weeks, or drop.
- `sales`: a converted lead opens a new-business opportunity sized by the account's tier
  that carries the lead's channel (v2); a fifth of new-business deals have no account
  (lognormal, 5k-5M a year); deals move through the stages (about a quarter win, in
  30-120 days), are re-valued, sometimes regress, stall or are re-opened after a loss.
- `billing`: wins become 12-month subscriptions billed monthly or annually, with
  renewals (opportunities ~75 days ahead), expansions (a bigger plan or a second
  product), contractions, mid-term cancellations, one-off invoices and refunds. The
  history opens with a book of existing customers and open deals, so revenue and costs
  are in proportion from the first day. Open deals and leads of that book arrive as
  snapshot loads (v2, `snapshot_load`), as when a CRM is connected today.
- `accounts`: size tiers and sales touches: deal activities while an opportunity is
  open, a care cadence for customers, and a share of neglected accounts.
- `expenses`: monthly costs by category, sized to the lead volume and the MRR.

`world` holds the clock: a heap of pending actions and one `random.Random(seed)`, so a
seed always gives the same bytes, and events come out in time order without the history
ever being held in memory.
"""

from revmon.simulate.config import DEFAULT_START, SimulationConfig
from revmon.simulate.history import simulate, write_jsonl

__all__ = ["DEFAULT_START", "SimulationConfig", "simulate", "write_jsonl"]
