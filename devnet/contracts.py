"""Python models of the contracts the saga talks to: a SEP-41 style token, StepFi's
LiquidityPool and CreditLine. Names, arguments, error codes and events follow
StepFi-app/StepFi-Contracts; the arithmetic that matters to the reservation problem
(available = total - locked) is exact.

Each function has the contract's signature `(host, self_id, *args: SCVal) -> SCVal`."""

from __future__ import annotations

import itertools
from typing import Any

from stellar_sdk import scval
from stellar_sdk import xdr as sx

from devnet import addresses
from devnet.host import (
    ContractFn,
    Host,
    HostError,
    arg_address,
    arg_i128,
    arg_u32,
    arg_u64,
    contract_error,
)

# --- token (SEP-41 subset; errors as the Stellar Asset Contract numbers them) -------------------
TOKEN_NEGATIVE_AMOUNT = 8
TOKEN_INSUFFICIENT_BALANCE = 10


def _sym(name: str) -> sx.SCVal:
    return scval.to_symbol(name)


def to_struct(fields: dict[str, sx.SCVal]) -> sx.SCVal:
    """`scval.to_struct(fields)`, the entries in the same (byte-wise) key order.

    The SDK builds the map through a dict keyed by SCVal, whose hash walks every field of
    the value, then sorts it with a generic comparator: that cost more than the rest of
    `get_pool_stats`. Struct keys are distinct symbols, which order like their UTF-8 bytes."""
    entries = [
        sx.SCMapEntry(key=scval.to_symbol(name), val=value)
        for name, value in sorted(fields.items(), key=lambda item: item[0].encode())
    ]
    return sx.SCVal(sx.SCValType.SCV_MAP, map=sx.SCMap(sc_map=entries))


def token_balance_of(host: Host, token: str, who: str) -> int:
    value = host.storage.get(token, ("Balance", who), 0)
    assert isinstance(value, int)
    return value


def _token_move(host: Host, token: str, src: str, dst: str, amount: int) -> None:
    if amount < 0:
        raise contract_error(TOKEN_NEGATIVE_AMOUNT, token, "negative amount is not allowed")
    have = token_balance_of(host, token, src)
    if have < amount:
        raise contract_error(
            TOKEN_INSUFFICIENT_BALANCE,
            token,
            f"balance is not sufficient to spend: {have} < {amount}",
        )
    host.storage.put(token, ("Balance", src), have - amount)
    host.storage.put(token, ("Balance", dst), token_balance_of(host, token, dst) + amount)


def token_transfer(
    host: Host, me: str, from_: sx.SCVal, to: sx.SCVal, amount: sx.SCVal
) -> sx.SCVal:
    src, dst, value = arg_address(host, from_), arg_address(host, to), arg_i128(host, amount)
    host.require_auth(src)
    _token_move(host, me, src, dst, value)
    host.emit(
        [_sym("transfer"), addresses.to_address(src), addresses.to_address(dst)],
        scval.to_int128(value),
    )
    return scval.to_void()


def token_balance(host: Host, me: str, id_: sx.SCVal) -> sx.SCVal:
    return scval.to_int128(token_balance_of(host, me, arg_address(host, id_)))


def token_mint(host: Host, me: str, to: sx.SCVal, amount: sx.SCVal) -> sx.SCVal:
    admin = host.storage.get(me, ("Admin",))
    host.require_auth(admin)
    dst, value = arg_address(host, to), arg_i128(host, amount)
    if value < 0:
        raise contract_error(TOKEN_NEGATIVE_AMOUNT, me, "negative amount is not allowed")
    host.storage.put(me, ("Balance", dst), token_balance_of(host, me, dst) + value)
    host.emit(
        [_sym("mint"), addresses.to_address(admin), addresses.to_address(dst)],
        scval.to_int128(value),
    )
    return scval.to_void()


def token_decimals(host: Host, me: str) -> sx.SCVal:
    return scval.to_uint32(host.storage.get(me, ("Decimals",), 7))


def token_symbol(host: Host, me: str) -> sx.SCVal:
    return scval.to_string(host.storage.get(me, ("Symbol",), "USDC"))


def call_transfer(host: Host, token: str, src: str, dst: str, amount: int) -> None:
    host.invoke(
        token,
        "transfer",
        [addresses.to_address(src), addresses.to_address(dst), scval.to_int128(amount)],
    )


# --- LiquidityPool -------------------------------------------------------------------------------
POOL_NOT_ADMIN = 1
POOL_INVALID_AMOUNT = 4
POOL_INSUFFICIENT_SHARES = 5
POOL_INSUFFICIENT_LIQUIDITY = 6
POOL_NOT_CREDITLINE = 9
SHARE_PRICE_PRECISION = 10_000  # share price in basis points, 10000 = 1.0
DEAD_SHARES = 1_000  # minted to nobody on the first deposit, backed by virtual liquidity


def _int(host: Host, contract: str, name: str) -> int:
    value = host.storage.get(contract, (name,), 0)
    assert isinstance(value, int)
    return value


def _share_price(host: Host, me: str) -> int:
    shares = _int(host, me, "TotalShares")
    if shares == 0:
        return SHARE_PRICE_PRECISION
    return (_int(host, me, "TotalLiquidity") + DEAD_SHARES) * SHARE_PRICE_PRECISION // shares


def pool_stats_of(host: Host, me: str) -> dict[str, int]:
    total, locked = _int(host, me, "TotalLiquidity"), _int(host, me, "LockedLiquidity")
    return {
        "total_liquidity": total,
        "locked_liquidity": locked,
        "available_liquidity": max(0, total - locked),
        "total_shares": _int(host, me, "TotalShares"),
        "share_price": _share_price(host, me),
    }


def pool_get_pool_stats(host: Host, me: str) -> sx.SCVal:
    return to_struct({k: scval.to_int128(v) for k, v in pool_stats_of(host, me).items()})


def pool_deposit(host: Host, me: str, provider: sx.SCVal, amount: sx.SCVal) -> sx.SCVal:
    who, value = arg_address(host, provider), arg_i128(host, amount)
    host.require_auth(who)
    if value <= 0:
        raise contract_error(POOL_INVALID_AMOUNT, me)
    if _int(host, me, "TotalShares") == 0:
        host.storage.put(me, ("TotalShares",), DEAD_SHARES)
    shares = value * SHARE_PRICE_PRECISION // _share_price(host, me)
    if shares <= 0:
        raise contract_error(POOL_INVALID_AMOUNT, me)
    host.storage.put(me, ("LpShares", who), host.storage.get(me, ("LpShares", who), 0) + shares)
    host.storage.put(me, ("TotalShares",), _int(host, me, "TotalShares") + shares)
    host.storage.put(me, ("TotalLiquidity",), _int(host, me, "TotalLiquidity") + value)
    call_transfer(host, host.storage.get(me, ("Token",)), who, me, value)
    host.emit(
        [_sym("LQDEPST"), addresses.to_address(who)],
        scval.to_vec([scval.to_int128(value), scval.to_int128(shares)]),
    )
    return scval.to_int128(shares)


def pool_withdraw(host: Host, me: str, provider: sx.SCVal, shares: sx.SCVal) -> sx.SCVal:
    who, burn = arg_address(host, provider), arg_i128(host, shares)
    host.require_auth(who)
    if burn <= 0:
        raise contract_error(POOL_INVALID_AMOUNT, me)
    held = host.storage.get(me, ("LpShares", who), 0)
    if held < burn:
        raise contract_error(POOL_INSUFFICIENT_SHARES, me)
    amount = burn * _share_price(host, me) // SHARE_PRICE_PRECISION
    total, locked = _int(host, me, "TotalLiquidity"), _int(host, me, "LockedLiquidity")
    if amount > total - locked:
        raise contract_error(POOL_INSUFFICIENT_LIQUIDITY, me, "withdrawal exceeds available")
    host.storage.put(me, ("LpShares", who), held - burn)
    host.storage.put(me, ("TotalShares",), _int(host, me, "TotalShares") - burn)
    host.storage.put(me, ("TotalLiquidity",), total - amount)
    host.emit(
        [_sym("LQWTHDR"), addresses.to_address(who)],
        scval.to_vec([scval.to_int128(burn), scval.to_int128(amount)]),
    )
    call_transfer(host, host.storage.get(me, ("Token",)), me, who, amount)
    return scval.to_int128(amount)


def _require_creditline(host: Host, me: str, creditline: str) -> None:
    if host.storage.get(me, ("CreditLine",)) != creditline:
        raise contract_error(POOL_NOT_CREDITLINE, me, "caller is not the registered creditline")


def pool_fund_loan(
    host: Host, me: str, creditline: sx.SCVal, merchant: sx.SCVal, amount: sx.SCVal
) -> sx.SCVal:
    cl, vendor, value = (
        arg_address(host, creditline),
        arg_address(host, merchant),
        arg_i128(host, amount),
    )
    host.require_auth(cl)
    _require_creditline(host, me, cl)
    if value <= 0:
        raise contract_error(POOL_INVALID_AMOUNT, me)
    total, locked = _int(host, me, "TotalLiquidity"), _int(host, me, "LockedLiquidity")
    if value > total - locked:
        raise contract_error(POOL_INSUFFICIENT_LIQUIDITY, me, "fund_loan exceeds available")
    host.storage.put(me, ("LockedLiquidity",), locked + value)
    call_transfer(host, host.storage.get(me, ("Token",)), me, vendor, value)
    host.emit(
        [_sym("LQFUND"), addresses.to_address(cl)],
        scval.to_vec(
            [
                addresses.to_address(vendor),
                scval.to_int128(value),
                scval.to_int128(0),
                scval.to_int128(0),
            ]
        ),
    )
    return scval.to_void()


def pool_receive_repayment(
    host: Host, me: str, creditline: sx.SCVal, principal: sx.SCVal, interest: sx.SCVal
) -> sx.SCVal:
    cl, p, i = arg_address(host, creditline), arg_i128(host, principal), arg_i128(host, interest)
    host.require_auth(cl)
    _require_creditline(host, me, cl)
    if p < 0 or i < 0 or p + i <= 0:
        raise contract_error(POOL_INVALID_AMOUNT, me)
    locked = _int(host, me, "LockedLiquidity")
    host.storage.put(me, ("LockedLiquidity",), max(0, locked - p))
    call_transfer(host, host.storage.get(me, ("Token",)), cl, me, p + i)
    host.emit(
        [_sym("LQREPAY"), addresses.to_address(cl)],
        scval.to_vec([scval.to_int128(p), scval.to_int128(i)]),
    )
    if i > 0:  # all interest stays with LPs here (no treasury / merchant fund split)
        host.storage.put(me, ("TotalLiquidity",), _int(host, me, "TotalLiquidity") + i)
    return scval.to_void()


def pool_set_creditline(host: Host, me: str, admin: sx.SCVal, creditline: sx.SCVal) -> sx.SCVal:
    who = arg_address(host, admin)
    host.require_auth(who)
    if host.storage.get(me, ("Admin",)) != who:
        raise contract_error(POOL_NOT_ADMIN, me)
    host.storage.put(me, ("CreditLine",), arg_address(host, creditline))
    return scval.to_void()


def pool_get_lp_shares(host: Host, me: str, provider: sx.SCVal) -> sx.SCVal:
    return scval.to_int128(host.storage.get(me, ("LpShares", arg_address(host, provider)), 0))


# --- VendorRegistry and Reputation (the two contracts create_loan consults) ----------------------
# One of each per devnet, shared by every creditline (devnet_setVendor / devnet_setReputation
# write them). Unregistered means what it means in StepFi's contracts: `is_active` is false and
# `get_score` is 0, unless the devnet was started with permissive defaults (test suites that do
# not exercise these checks).
REPUTATION_MAX_SCORE = 100  # StepFi's reputation contract refuses a higher score (OutOfBounds)


def registry_is_active(host: Host, me: str, vendor: sx.SCVal) -> sx.SCVal:
    who = arg_address(host, vendor)
    default = bool(host.storage.get(me, ("DefaultActive",), False))
    return scval.to_bool(bool(host.storage.get(me, ("Vendor", who), default)))


def reputation_get_score(host: Host, me: str, user: sx.SCVal) -> sx.SCVal:
    who = arg_address(host, user)
    default = host.storage.get(me, ("DefaultScore",), 0)
    return scval.to_uint32(int(host.storage.get(me, ("Score", who), default)))


# --- CreditLine ----------------------------------------------------------------------------------
CL_INSUFFICIENT_GUARANTEE = 2
CL_VENDOR_NOT_ACTIVE = 3
CL_INSUFFICIENT_REPUTATION = 4
CL_INSUFFICIENT_LIQUIDITY = 5
CL_LOAN_NOT_FOUND = 6
CL_LOAN_NOT_ACTIVE = 7
CL_INVALID_AMOUNT = 9
CL_INVALID_REPAYMENT_AMOUNT = 13
CL_UNAUTHORIZED_REPAYER = 14
CL_INVALID_VENDOR = 16
CL_VENDOR_VALIDATION_FAILED = 17
CL_EXPOSURE_LIMIT_EXCEEDED = 18
CL_PARAMETERS_UNAVAILABLE = 20
CL_INVALID_DUE_DATE = 27
# StepFi's default protocol parameters: min_guarantee_percent 20, min_reputation_threshold 50.
DEFAULT_MIN_GUARANTEE_BPS = 2_000
DEFAULT_MIN_REPUTATION = 50
SERVICE_FEE_BPS = 100  # StepFi: a flat 1 % service fee, part of the debt the exposure cap counts
# StepFi's `credit_limit(score)` tiers compare the raw i128 debt with 10_000 / 5_000 / 2_500 /
# 1_000; with a 7-decimal token that would be a thousandth of a unit. The devnet reads the tiers
# in whole token units (`CreditLimitUnit`, default 10^7 stroops): a documented deviation.
DEFAULT_CREDIT_LIMIT_UNIT = 10_000_000


def credit_limit_tier(score: int) -> int:
    """StepFi's `credit_limit(score)`, in token units."""
    if score >= 90:
        return 10_000
    if score >= 75:
        return 5_000
    if score >= 60:
        return 2_500
    return 1_000


def interest_rate_bps(score: int) -> int:
    """StepFi's `interest_rate_bps` with `base_interest_bps == 0` (its default parameters)."""
    if score >= 90:
        return 400
    if score >= 75:
        return 600
    if score >= 60:
        return 800
    return 1_000


def loan_debt(total: int, score: int) -> int:
    """What `build_loan` adds to the borrower's active debt: total + interest + service fee."""
    return total + total * interest_rate_bps(score) // 10_000 + total * SERVICE_FEE_BPS // 10_000


def _validate_vendor(host: Host, me: str, vendor: str) -> None:
    """StepFi's validate_vendor: no registry configured #16, the registry call failing #17,
    an inactive (or unregistered) vendor #3."""
    registry = host.storage.get(me, ("VendorRegistry",))
    if not registry:
        raise contract_error(CL_INVALID_VENDOR, me, "no vendor registry configured")
    try:
        active = host.invoke(registry, "is_active", [addresses.to_address(vendor)])
    except HostError as exc:
        raise contract_error(
            CL_VENDOR_VALIDATION_FAILED, me, f"vendor registry call failed: {exc.rendered}"
        ) from exc
    if active.type != sx.SCValType.SCV_BOOL:
        raise contract_error(CL_VENDOR_VALIDATION_FAILED, me, "is_active did not return a bool")
    if not active.b:
        raise contract_error(CL_VENDOR_NOT_ACTIVE, me, f"vendor {vendor} is not active")


def _validate_reputation(host: Host, me: str, user: str) -> int:
    reputation = host.storage.get(me, ("Reputation",))
    if not reputation:
        raise contract_error(CL_PARAMETERS_UNAVAILABLE, me, "no reputation contract configured")
    answer = host.invoke(reputation, "get_score", [addresses.to_address(user)])
    score = arg_u32(host, answer)
    threshold = host.storage.get(me, ("MinReputation",), DEFAULT_MIN_REPUTATION)
    if score < threshold:
        raise contract_error(
            CL_INSUFFICIENT_REPUTATION, me, f"reputation {score} < threshold {threshold}"
        )
    return score


def active_debt_of(host: Host, me: str, user: str) -> int:
    value = host.storage.get(me, ("ActiveDebt", user), 0)
    assert isinstance(value, int)
    return value


def _schedule(host: Host, me: str, val: sx.SCVal) -> list[dict[str, int]]:
    if val.type != sx.SCValType.SCV_VEC or val.vec is None:
        raise HostError("Value", "UnexpectedType", me, "repayment_schedule must be a vec")
    out: list[dict[str, int]] = []
    for item in val.vec.sc_vec:
        native: Any = scval.to_native(item)
        if not isinstance(native, dict) or set(native) != {"amount", "due_date"}:
            raise HostError("Value", "UnexpectedType", me, "installment is {amount, due_date}")
        out.append({"amount": int(native["amount"]), "due_date": int(native["due_date"])})
    return out


def _schedule_scval(schedule: list[dict[str, int]]) -> sx.SCVal:
    return scval.to_vec(
        [
            to_struct(
                {"amount": scval.to_int128(i["amount"]), "due_date": scval.to_uint64(i["due_date"])}
            )
            for i in schedule
        ]
    )


def cl_create_loan(
    host: Host,
    me: str,
    user: sx.SCVal,
    vendor: sx.SCVal,
    total_amount: sx.SCVal,
    guarantee_amount: sx.SCVal,
    repayment_schedule: sx.SCVal,
    loan_type: sx.SCVal,
) -> sx.SCVal:
    borrower, merchant = arg_address(host, user), arg_address(host, vendor)
    total, guarantee = arg_i128(host, total_amount), arg_i128(host, guarantee_amount)
    kind = arg_u32(host, loan_type)
    schedule = _schedule(host, me, repayment_schedule)
    host.require_auth(borrower)
    # validate_guarantee
    if total <= 0 or guarantee <= 0 or guarantee > total:
        raise contract_error(CL_INVALID_AMOUNT, me)
    min_bps = host.storage.get(me, ("MinGuaranteeBps",), DEFAULT_MIN_GUARANTEE_BPS)
    # StepFi: min_guarantee = total * min_guarantee_percent / 100, integer division
    if guarantee < total * min_bps // 10_000:
        raise contract_error(CL_INSUFFICIENT_GUARANTEE, me)
    if not schedule or any(i["amount"] <= 0 for i in schedule):
        raise contract_error(CL_INVALID_AMOUNT, me, "empty schedule or non-positive installment")
    if any(b["due_date"] < a["due_date"] for a, b in itertools.pairwise(schedule)):
        raise contract_error(CL_INVALID_DUE_DATE, me, "due dates must not decrease")
    _validate_vendor(host, me, merchant)
    score = _validate_reputation(host, me, borrower)
    # validate_liquidity: the check whose answer goes stale between assessment and settlement
    pool = host.storage.get(me, ("Pool",))
    required = total - guarantee
    stats: Any = scval.to_native(host.invoke(pool, "get_pool_stats", []))
    if required > 0 and stats["available_liquidity"] < required:
        raise contract_error(
            CL_INSUFFICIENT_LIQUIDITY,
            me,
            f"available {stats['available_liquidity']} < required {required}",
        )
    # build_loan's exposure cap (after validate_liquidity, as in StepFi's create_loan)
    debt = loan_debt(total, score)
    active = active_debt_of(host, me, borrower)
    unit = host.storage.get(me, ("CreditLimitUnit",), DEFAULT_CREDIT_LIMIT_UNIT)
    limit = credit_limit_tier(score) * unit
    if active + debt > limit:
        raise contract_error(
            CL_EXPOSURE_LIMIT_EXCEEDED,
            me,
            f"active debt {active} + {debt} > credit limit {limit} (score {score})",
        )
    host.storage.put(me, ("ActiveDebt", borrower), active + debt)
    loan_id = _int(host, me, "LoanCounter") + 1
    host.storage.put(me, ("LoanCounter",), loan_id)
    # fund_loan_from_pool: escrow the guarantee, then the pool pays the vendor
    call_transfer(host, host.storage.get(me, ("Token",)), borrower, me, guarantee)
    if required > 0:
        host.invoke(
            pool,
            "fund_loan",
            [addresses.to_address(me), addresses.to_address(merchant), scval.to_int128(required)],
        )
    host.storage.put(
        me,
        ("Loan", loan_id),
        {
            "loan_id": loan_id,
            "borrower": borrower,
            "merchant": merchant,
            "total_amount": total,
            "guarantee_amount": guarantee,
            "remaining_balance": required,  # what the pool is owed
            "repayment_schedule": schedule,
            "loan_type": kind,
            "debt_outstanding": debt,  # StepFi's remaining_balance: what the exposure cap counts
            "status": "Active",
            "created_at": host.timestamp,
        },
    )
    host.emit(
        [_sym("LOANCRTD"), addresses.to_address(borrower), addresses.to_address(merchant)],
        scval.to_vec(
            [
                scval.to_uint64(loan_id),
                scval.to_int128(total),
                scval.to_int128(guarantee),
                _schedule_scval(schedule),
            ]
        ),
    )
    return scval.to_uint64(loan_id)


def cl_repay_loan(
    host: Host, me: str, user: sx.SCVal, loan_id: sx.SCVal, amount: sx.SCVal
) -> sx.SCVal:
    borrower, lid, value = arg_address(host, user), arg_u64(host, loan_id), arg_i128(host, amount)
    host.require_auth(borrower)
    loan = host.storage.get(me, ("Loan", lid))
    if loan is None:
        raise contract_error(CL_LOAN_NOT_FOUND, me)
    if loan["borrower"] != borrower:
        raise contract_error(CL_UNAUTHORIZED_REPAYER, me)
    if loan["status"] != "Active":
        raise contract_error(CL_LOAN_NOT_ACTIVE, me)
    if value <= 0 or value > loan["remaining_balance"]:
        raise contract_error(CL_INVALID_REPAYMENT_AMOUNT, me)
    remaining = loan["remaining_balance"] - value
    # the borrower's active debt goes down by what is paid, and by the rest of the loan's debt
    # (interest and fee included) once it is paid off
    owed = loan.get("debt_outstanding", 0)
    paid_debt = owed if remaining == 0 else min(value, owed)
    loan = {**loan, "remaining_balance": remaining, "debt_outstanding": owed - paid_debt}
    host.storage.put(
        me, ("ActiveDebt", borrower), max(0, active_debt_of(host, me, borrower) - paid_debt)
    )
    token, pool = host.storage.get(me, ("Token",)), host.storage.get(me, ("Pool",))
    call_transfer(host, token, borrower, me, value)
    host.invoke(
        pool,
        "receive_repayment",
        [addresses.to_address(me), scval.to_int128(value), scval.to_int128(0)],
    )
    if remaining == 0:
        loan["status"] = "Paid"
        call_transfer(host, token, me, borrower, loan["guarantee_amount"])  # guarantee released
    host.storage.put(me, ("Loan", lid), loan)
    host.emit(
        [_sym("LOANRPD"), addresses.to_address(borrower), scval.to_uint64(lid)],
        scval.to_vec(
            [
                scval.to_int128(value),
                scval.to_int128(remaining),
                scval.to_bool(remaining == 0),
                scval.to_uint64(host.timestamp),
            ]
        ),
    )
    return scval.to_int128(remaining)


def cl_get_user_active_debt(host: Host, me: str, borrower: sx.SCVal) -> sx.SCVal:
    return scval.to_int128(active_debt_of(host, me, arg_address(host, borrower)))


def cl_get_loan(host: Host, me: str, loan_id: sx.SCVal) -> sx.SCVal:
    lid = arg_u64(host, loan_id)
    loan = host.storage.get(me, ("Loan", lid))
    if loan is None:
        raise contract_error(CL_LOAN_NOT_FOUND, me)
    return native_to_scval(loan)


def native_to_scval(value: Any) -> sx.SCVal:
    """Storage values to SCVal for reads (getLedgerEntries, get_loan)."""
    if isinstance(value, bool):
        return scval.to_bool(value)
    if isinstance(value, int):
        return scval.to_int128(value)
    if isinstance(value, str):
        if len(value) == 56 and value[0] in "GC":
            return addresses.to_address(value)
        return scval.to_symbol(value) if value.isidentifier() else scval.to_string(value)
    if isinstance(value, dict):
        return to_struct({str(k): native_to_scval(v) for k, v in sorted(value.items())})
    if isinstance(value, list | tuple):
        return scval.to_vec([native_to_scval(v) for v in value])
    if value is None:
        return scval.to_void()
    raise TypeError(f"cannot convert {type(value)}")


REGISTRY: dict[str, dict[str, ContractFn]] = {
    "token": {
        "transfer": token_transfer,
        "balance": token_balance,
        "mint": token_mint,
        "decimals": token_decimals,
        "symbol": token_symbol,
    },
    "pool": {
        "get_pool_stats": pool_get_pool_stats,
        "deposit": pool_deposit,
        "withdraw": pool_withdraw,
        "fund_loan": pool_fund_loan,
        "receive_repayment": pool_receive_repayment,
        "set_creditline": pool_set_creditline,
        "get_lp_shares": pool_get_lp_shares,
    },
    "creditline": {
        "create_loan": cl_create_loan,
        "repay_loan": cl_repay_loan,
        "get_loan": cl_get_loan,
        "get_user_active_debt": cl_get_user_active_debt,
    },
    "vendor_registry": {"is_active": registry_is_active},
    "reputation": {"get_score": reputation_get_score},
}
