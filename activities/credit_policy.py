"""Credit policy of the assess step: plain Python, no Temporal, no I/O.

It returns every reason a loan is declined (not just the first), because the borrower fixes a
request more easily when told everything that is wrong with it at once. Borrower exposure is not
checked here: it needs the ledger's view of active reservations, and checking it apart from the
reservation would reopen the very race the ledger closes, so `Ledger.reserve` checks it atomically.
"""

from __future__ import annotations

from itertools import pairwise

from core.models import LoanTerms
from core.settings import Settings


def declines(terms: LoanTerms, *, settings: Settings, now: int) -> list[tuple[str, str]]:
    """(typed reason, explanation) of every reason to decline `terms` at Unix second `now`;
    empty when the loan passes the policy. The typed reasons are the ones the chain's own
    refusals map to where the contract checks the same (insufficient_guarantee, ...)."""
    out: list[tuple[str, str]] = []
    total, guarantee = terms.total_amount, terms.guarantee_amount
    if total < settings.min_loan_stroops:
        out.append(
            (
                "amount_below_minimum",
                f"total_amount {total} is below the minimum {settings.min_loan_stroops}",
            )
        )
    if total > settings.max_loan_stroops:
        out.append(
            (
                "amount_above_maximum",
                f"total_amount {total} is above the maximum {settings.max_loan_stroops}",
            )
        )
    if guarantee <= 0:
        out.append(
            ("invalid_amount", "guarantee_amount must be positive (the creditline escrows it)")
        )
    if guarantee >= total:
        out.append(
            ("invalid_amount", "guarantee_amount must be less than total_amount (nothing to fund)")
        )
    # StepFi's validate_guarantee: guarantee >= total * min_guarantee_percent / 100, the
    # division an integer one, so the service refuses exactly what the contract refuses (#2)
    if guarantee < total * settings.min_guarantee_ratio_bps // 10_000:
        out.append(
            (
                "insufficient_guarantee",
                f"guarantee covers less than "
                f"{settings.min_guarantee_ratio_bps} bps of total_amount",
            )
        )
    schedule = terms.repayment_schedule
    if not schedule:
        out.append(("invalid_schedule", "repayment_schedule is empty"))
        return out
    if any(item.amount <= 0 for item in schedule):
        out.append(("invalid_amount", "every installment amount must be positive"))
    if sum(item.amount for item in schedule) != total:
        out.append(("invalid_schedule", "repayment_schedule amounts do not sum to total_amount"))
    if schedule[0].due_date <= now:
        out.append(("invalid_due_date", "the first installment is not due in the future"))
    if any(b.due_date <= a.due_date for a, b in pairwise(schedule)):
        out.append(("invalid_due_date", "installment due dates must be strictly increasing"))
    return out
