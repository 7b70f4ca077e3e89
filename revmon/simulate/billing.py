"""Billing: subscriptions of won deals, invoices, refunds, renewals, expansions and churn.

A won new-business deal starts a 12-month subscription (mrr = contract value / 12), billed
monthly or a year up front; its first invoice is `new_business`. Monthly subscriptions
bill `recurring` on their anniversary day and may cancel mid-term. A renewal opportunity
opens about 75 days before each term ends: won renews (`renewal` invoice, maybe a price
change), lost cancels at term end, undecided auto-renews. Customers are reviewed monthly
for expansion deals (a bigger subscription or a second product), one-off invoices and
contractions. The history opens with a book of existing customers and open deals.
"""

from __future__ import annotations

from revmon.simulate import accounts, sales
from revmon.simulate.model import Account, Opportunity, Subscription
from revmon.simulate.world import DAY, HOUR, World, add_months, money

_SOURCE = "stripe"
_RENEWAL_LEAD_DAYS = 75
_REFUND = 0.02  # chance per invoice
_SETUP_FEE = 0.25  # chance that a new customer pays a one-time onboarding fee
_ONE_OFF = 0.02  # chance per customer per month of a one-time invoice (services, training)
_CONTRACTION = 0.005  # chance per customer per month of a downgrade
_SECOND_PRODUCT = 0.4  # share of won expansions that start a new subscription
_NO_INVOICE_ID = 0.05


def open_book(world: World) -> None:
    """The customers and open deals already there at the start, loaded on the first morning."""
    opening = world.config.opening
    for _ in range(opening):
        world.at(world.start + world.rng.randrange(6 * HOUR), _opening_customer)
    for _ in range(opening // 3):
        world.at(world.start + world.rng.randrange(8 * HOUR), _opening_deal)

    if opening:
        world.at(world.start + world.rng.randrange(6 * HOUR), _opening_notice)


def _opening_customer(world: World) -> None:
    account = accounts.new_account(world)
    began = world.now - world.rng.randrange(360) * DAY - world.rng.randrange(DAY)
    start_subscription(world, account, accounts.deal_size(world, account), None, began)


def _opening_notice(world: World) -> None:
    """A customer that lost its renewal before the history began: it leaves within weeks."""
    account = accounts.new_account(world)
    ends_in = world.rng.randrange(3 * DAY, 20 * DAY)
    began = add_months(world.now + ends_in, -12)
    subscription = start_subscription(
        world, account, accounts.deal_size(world, account), None, began
    )
    subscription.renewal_won = False
    world.at(world.now + world.rng.randrange(DAY, ends_in // 2), _downgrade, subscription)
    credit = subscription.mrr * world.rng.uniform(0.2, 1.0)  # a disputed pre-history invoice
    world.at(world.later(5.0), _refund, account, credit, world.new_id("inv"))


def _downgrade(world: World, subscription: Subscription) -> None:
    if subscription.active:
        _change(world, subscription, round(subscription.mrr * world.rng.uniform(0.5, 0.9), 2))


def _opening_deal(world: World) -> None:
    account = accounts.new_account(world)
    stage = world.rng.randrange(len(world.config.opportunity_stages))
    amount = accounts.deal_size(world, account)
    channels = world.config.channels
    channel = world.pick(channels) if channels and world.chance(0.6) else None
    # A CRM connected today: its open deals load as snapshots, in stage for weeks already.
    since = world.now - world.rng.randrange(60 * DAY) if world.config.snapshot_load else None
    sales.open_opportunity(
        world,
        account,
        "new_business",
        amount,
        new_business_closed,
        stage=stage,
        channel=channel,
        since=since,
    )


def new_business_closed(world: World, opportunity: Opportunity, won: bool) -> None:
    """A won new-business deal becomes a customer (or another subscription of one)."""
    if not won:
        return
    account = opportunity.account
    start_subscription(world, account, opportunity.amount, "new_business")
    if world.chance(_SETUP_FEE):
        fee = round(opportunity.amount * world.rng.uniform(0.05, 0.15), -1)
        world.at(world.later(14.0), _one_off, account, fee)


def start_subscription(
    world: World, account: Account, acv: float, first_invoice: str | None, began: int | None = None
) -> Subscription:
    """Start a subscription now (or take over one that `began` earlier, without an invoice)."""
    term_start = world.now if began is None else began
    subscription = Subscription(
        world.new_id("sub"),
        account,
        round(acv / 12, 2),
        world.chance(world.config.annual_billing),
        term_start,
        add_months(term_start, 12),
    )
    account.subscriptions.append(subscription)
    world.mrr += subscription.mrr
    world.emit(
        "subscription.started",
        _SOURCE,
        subscription_id=subscription.id,
        account_id=account.id,
        mrr=money(subscription.mrr),
    )
    if first_invoice is not None:
        _invoice(world, account, _term_amount(subscription), first_invoice)
    _schedule_term(world, subscription)
    accounts.start_care(world, account)
    if not account.reviewed:
        account.reviewed = True
        world.at(world.working(world.now + 30 * DAY), _review, account)
    return subscription


def _term_amount(subscription: Subscription) -> float:
    return subscription.mrr * 12 if subscription.annual else subscription.mrr


def _schedule_term(world: World, subscription: Subscription) -> None:
    if not subscription.annual:
        month = 1
        while add_months(subscription.term_start, month) <= world.now:
            month += 1
        if month < 12:
            due = add_months(subscription.term_start, month)
            world.at(due, _bill, subscription, subscription.term, month)
    lead = _RENEWAL_LEAD_DAYS + world.rng.randrange(-10, 10)
    renewal_at = world.working(subscription.term_end - lead * DAY)
    world.at(renewal_at, _open_renewal, subscription, subscription.term)
    world.at(subscription.term_end, _term_end, subscription)


def _bill(world: World, subscription: Subscription, term: int, month: int) -> None:
    if not subscription.active or subscription.term != term:
        return
    if world.chance(world.config.monthly_cancel):
        _cancel(world, subscription)
        return
    _invoice(world, subscription.account, subscription.mrr, "recurring")
    if month + 1 < 12:
        due = add_months(subscription.term_start, month + 1)
        world.at(due, _bill, subscription, term, month + 1)


def _open_renewal(world: World, subscription: Subscription, term: int) -> None:
    if not subscription.active or subscription.term != term or subscription.renewal_won is not None:
        return
    stage = max(0, len(world.config.opportunity_stages) - 2)
    amount = round(subscription.mrr * 12 * world.rng.lognormvariate(0.03, 0.08), -2)
    subscription.renewal = sales.open_opportunity(
        world,
        subscription.account,
        "renewal",
        amount,
        renewal_closed,
        stage=stage,
        subscription=subscription,
    )


def renewal_closed(world: World, opportunity: Opportunity, won: bool) -> None:
    """Record the renewal decision; it takes effect when the term ends."""
    subscription = opportunity.subscription
    if subscription is None or subscription.renewal is not opportunity:
        return  # decided after its term already auto-renewed
    subscription.renewal_won = won
    subscription.renewal_acv = opportunity.amount


def _term_end(world: World, subscription: Subscription) -> None:
    if not subscription.active:
        return
    decided, acv = subscription.renewal_won, subscription.renewal_acv
    subscription.renewal, subscription.renewal_won = None, None
    if decided is False:
        _cancel(world, subscription)
        return
    if decided and abs(acv / 12 - subscription.mrr) >= 0.01:
        _change(world, subscription, round(acv / 12, 2))
    subscription.term += 1
    subscription.term_start = subscription.term_end
    subscription.term_end = add_months(subscription.term_start, 12)
    _invoice(world, subscription.account, _term_amount(subscription), "renewal")
    _schedule_term(world, subscription)


def _review(world: World, account: Account) -> None:
    if not account.subscriptions:
        account.reviewed = False
        return
    config = world.config
    if world.chance(config.expansions_per_month):
        acv = sum(s.mrr for s in account.subscriptions) * 12
        amount = max(5_000.0, round(acv * world.rng.uniform(0.15, 0.5), -2))
        sales.open_opportunity(world, account, "expansion", amount, expansion_closed, stage=1)
    if world.chance(_ONE_OFF):
        _one_off(world, account, round(world.rng.lognormvariate(8.0, 0.6), -1))
    if world.chance(_CONTRACTION):
        subscription: Subscription = world.pick(account.subscriptions)
        _change(world, subscription, round(subscription.mrr * world.rng.uniform(0.6, 0.9), 2))
    world.at(world.working(world.now + 30 * DAY), _review, account)


def expansion_closed(world: World, opportunity: Opportunity, won: bool) -> None:
    """A won expansion grows a subscription or starts another one (a second product)."""
    if not won:
        return
    account = opportunity.account
    if not account.subscriptions:
        start_subscription(world, account, opportunity.amount, "new_business")
    elif world.chance(_SECOND_PRODUCT):
        start_subscription(world, account, opportunity.amount, "expansion")
    else:
        subscription: Subscription = world.pick(account.subscriptions)
        added = round(opportunity.amount / 12, 2)
        _change(world, subscription, subscription.mrr + added)
        months = 1
        if subscription.annual:
            months = max(1, -(-(subscription.term_end - world.now) // (30 * DAY)))
        _invoice(world, account, added * months, "expansion")


def _change(world: World, subscription: Subscription, mrr: float) -> None:
    world.mrr += mrr - subscription.mrr
    subscription.mrr = mrr
    world.emit("subscription.changed", _SOURCE, subscription_id=subscription.id, mrr=money(mrr))


def _cancel(world: World, subscription: Subscription) -> None:
    subscription.active = False
    subscription.account.subscriptions.remove(subscription)
    world.mrr -= subscription.mrr
    world.emit("subscription.canceled", _SOURCE, subscription_id=subscription.id)


def _one_off(world: World, account: Account, amount: float) -> None:
    _invoice(world, account, amount, "one_time")


def _invoice(world: World, account: Account, amount: float, kind: str) -> None:
    invoice_id = world.new_id("inv")
    world.emit(
        "invoice.paid",
        _SOURCE,
        account_id=account.id,
        amount=money(amount),
        kind=kind,
        invoice_id=None if world.chance(_NO_INVOICE_ID) else invoice_id,
    )
    if world.chance(_REFUND):
        refund = amount if world.chance(0.4) else amount * world.rng.uniform(0.1, 0.5)
        world.at(world.later(7.0), _refund, account, refund, invoice_id)


def _refund(world: World, account: Account, amount: float, invoice_id: str) -> None:
    world.emit(
        "refund.issued",
        _SOURCE,
        account_id=account.id,
        amount=money(amount),
        invoice_id=invoice_id,
    )
