"""The loan search attributes, defined once.

Temporal refuses to index an attribute it has not been told about, and a workflow that upserts an
unregistered key fails its workflow task and sits RUNNING forever. Every place that starts a
Temporal server (the stack launcher, the test fixtures, the benchmark) therefore registers the keys
from this one list, so the workflow and the servers cannot drift apart.
"""

from __future__ import annotations

from temporalio.common import SearchAttributeIndexedValueType, SearchAttributeKey

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
