"""Small builders shared by the chain tests."""

from __future__ import annotations

import time

from stellar_sdk import Keypair

from core.models import Installment, LoanTerms


def loan_terms(
    borrower: str, *, total: int, guarantee: int, vendor: str | None = None
) -> LoanTerms:
    return LoanTerms(
        borrower=borrower,
        vendor=vendor or Keypair.random().public_key,
        total_amount=total,
        guarantee_amount=guarantee,
        repayment_schedule=[
            Installment(amount=total - guarantee, due_date=int(time.time()) + 30 * 86400)
        ],
        loan_type=0,
    )


def expiry(seconds: int = 120) -> int:
    return int(time.time()) + seconds
