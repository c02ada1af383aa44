"""The loan's view as recorded in its workflow memo, so the API can read a loan with no worker.

A query needs a live worker to run it; `DescribeWorkflowExecution` does not: the server answers
it from the execution's mutable state, which holds the memo. So the starter puts the view in
the memo with the start request (state `assessing`) and the workflow upserts what changed at
every state change. The memo rather than search attributes because it carries the whole
`LoanView` as it is (a funding XDR of about 1 KB, a refusal's details, the history), is
read consistently by describe (search attributes are too, but visibility *lists* lag), needs
no registration on the server and no size-bounded keyword fields; and rather than a read model
(Redis, a database) because it is written in the same workflow-task completion as the state
change itself, so it can never disagree with the workflow or lag behind it.

Two keys: `view` (everything but the funding) and `funding` (written once, with the offer), so
the XDR is not copied into the history again at every later state change.

Pure data, no Temporal import: the workflow (in its sandbox) and the clients share it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from core.models import LoanInput, LoanState, LoanView

VIEW = "view"
FUNDING = "funding"


def initial_view(loan: LoanInput) -> LoanView:
    """The view of a loan that has started and done nothing yet."""
    terms = loan.terms
    return LoanView(
        loan_id=loan.loan_id,
        pool_id=loan.pool_id,
        state=LoanState.ASSESSING,
        borrower=terms.borrower,
        vendor=terms.vendor,
        total_amount=terms.total_amount,
        guarantee_amount=terms.guarantee_amount,
        reserved_amount=0,
        fingerprint=loan.fingerprint,
    )


def memo_fields(view: LoanView) -> dict[str, Any]:
    """The memo's keys for `view`, as JSON values (any data converter writes them alike)."""
    fields: dict[str, Any] = {VIEW: view.model_dump(mode="json", exclude={"funding"})}
    if view.funding is not None:
        fields[FUNDING] = view.funding.model_dump(mode="json")
    return fields


def view_from_memo(memo: Mapping[str, Any]) -> LoanView | None:
    """The recorded view, or None for a run started before the memo existed."""
    recorded = memo.get(VIEW)
    if not isinstance(recorded, dict):
        return None
    return LoanView.model_validate({**recorded, "funding": memo.get(FUNDING)})
