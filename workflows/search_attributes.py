"""The loan search attributes, defined once.

Temporal refuses to index an attribute it has not been told about, and a workflow that upserts an
unregistered key fails its workflow task and sits RUNNING forever. Every place that starts a
Temporal server (the stack launcher, the test fixtures, the benchmark) therefore registers the keys
from this one list, so the workflow and the servers cannot drift apart.
"""

from __future__ import annotations

from typing import Any

from temporalio.common import (
    SearchAttributeIndexedValueType,
    SearchAttributeKey,
    SearchAttributePair,
    TypedSearchAttributes,
)

LOAN_STATE = SearchAttributeKey.for_keyword("LoanState")
POOL_ID = SearchAttributeKey.for_keyword("PoolId")
BORROWER = SearchAttributeKey.for_keyword("Borrower")
AMOUNT_STROOPS = SearchAttributeKey.for_int("AmountStroops")
EXPIRES_AT = SearchAttributeKey.for_datetime("ExpiresAt")

LOAN_SEARCH_ATTRIBUTES: tuple[SearchAttributeKey, ...] = (
    LOAN_STATE,
    POOL_ID,
    BORROWER,
    AMOUNT_STROOPS,
    EXPIRES_AT,
)

_INT64_MAX = 2**63 - 1


def int64(value: int) -> int:
    """Clamp to the Int search attribute's range: an i128 amount beyond it would fail the start
    (or every workflow task, and wedge the loan) before the policy could decline it."""
    return max(-_INT64_MAX - 1, min(_INT64_MAX, value))


def initial_loan_attributes(
    *, pool_id: str, borrower: str, amount: int, state: str
) -> TypedSearchAttributes:
    """What a loan is indexed by from its start: set with the start request itself, so the
    workflow never spends a command (and the server a visibility update) on values that never
    change; the workflow then upserts only LoanState and ExpiresAt as they change."""
    pairs: list[SearchAttributePair[Any]] = [
        SearchAttributePair(LOAN_STATE, state),
        SearchAttributePair(POOL_ID, pool_id),
        SearchAttributePair(BORROWER, borrower),
        SearchAttributePair(AMOUNT_STROOPS, int64(amount)),
    ]
    return TypedSearchAttributes(pairs)


# Names the `temporal server start-dev --search-attribute Name=Type` flag accepts.
_CLI_TYPE_NAMES: dict[SearchAttributeIndexedValueType, str] = {
    SearchAttributeIndexedValueType.KEYWORD: "Keyword",
    SearchAttributeIndexedValueType.TEXT: "Text",
    SearchAttributeIndexedValueType.INT: "Int",
    SearchAttributeIndexedValueType.DOUBLE: "Double",
    SearchAttributeIndexedValueType.BOOL: "Bool",
    SearchAttributeIndexedValueType.DATETIME: "Datetime",
    SearchAttributeIndexedValueType.KEYWORD_LIST: "KeywordList",
}


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` arguments for `temporal server start-dev`."""
    flags: list[str] = []
    for key in LOAN_SEARCH_ATTRIBUTES:
        flags += ["--search-attribute", f"{key.name}={_CLI_TYPE_NAMES[key.indexed_value_type]}"]
    return flags
