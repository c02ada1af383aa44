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


def decline_reasons(terms: LoanTerms, *, settings: Settings, now: int) -> list[str]:
    """Reasons to decline `terms` at Unix second `now`; empty when the loan passes the policy."""
    reasons: list[str] = []
    total, guarantee = terms.total_amount, terms.guarantee_amount
    if total < settings.min_loan_stroops:
        reasons.append(f"total_amount {total} is below the minimum {settings.min_loan_stroops}")
    if total > settings.max_loan_stroops:
        reasons.append(f"total_amount {total} is above the maximum {settings.max_loan_stroops}")
    if guarantee <= 0:
        reasons.append("guarantee_amount must be positive (the creditline escrows it)")
    if guarantee >= total:
        reasons.append("guarantee_amount must be less than total_amount (nothing to fund)")
    if guarantee * 10_000 < total * settings.min_guarantee_ratio_bps:
        reasons.append(
            f"guarantee covers less than {settings.min_guarantee_ratio_bps} bps of total_amount"
        )
    schedule = terms.repayment_schedule
    if not schedule:
        reasons.append("repayment_schedule is empty")
        return reasons
    if any(item.amount <= 0 for item in schedule):
        reasons.append("every installment amount must be positive")
    if sum(item.amount for item in schedule) != total:
        reasons.append("repayment_schedule amounts do not sum to total_amount")
    if schedule[0].due_date <= now:
        reasons.append("the first installment is not due in the future")
    if any(b.due_date <= a.due_date for a, b in pairwise(schedule)):
        reasons.append("installment due dates must be strictly increasing")
    return reasons
