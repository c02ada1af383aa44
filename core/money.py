"""Amounts are integers of the asset's smallest unit (stroops, 7 decimals, i128 on chain).

Parsing goes through Decimal from the *string* form so no float ever touches an amount."""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

DECIMALS = 7
UNIT = 10**DECIMALS  # stroops per token unit
I128_MAX = 2**127 - 1


class AmountError(ValueError):
    """An amount that the chain could not represent or that makes no sense for a loan."""


def to_stroops(text: str, *, allow_zero: bool = False) -> int:
    """Parse a decimal string like "12.5" into stroops, refusing what the chain would refuse."""
    if not isinstance(text, str):
        raise AmountError('amount must be a decimal string, e.g. "12.5"')
    stripped = text.strip()
    try:
        value = Decimal(stripped)
    except InvalidOperation as exc:
        raise AmountError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise AmountError(f"not a finite number: {text!r}")
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -DECIMALS:
        raise AmountError(f"at most {DECIMALS} decimal places: {text!r}")
    # Checked on the exponent before scaling: "1e999999999" must not build a billion-digit int.
    if value.adjusted() + DECIMALS > len(str(I128_MAX)):
        raise AmountError(f"amount exceeds i128: {text!r}")
    # Exact integer arithmetic on the digits: Decimal's default 28-digit context would round i128s.
    sign, digits, exp = value.as_tuple()
    assert isinstance(exp, int)
    magnitude = int("".join(map(str, digits)) or "0") * 10 ** (exp + DECIMALS)
    stroops = -magnitude if sign else magnitude
    if stroops < 0:
        raise AmountError(f"amount must not be negative: {text!r}")
    if stroops == 0 and not allow_zero:
        raise AmountError(f"amount must be greater than zero: {text!r}")
    if stroops > I128_MAX:
        raise AmountError(f"amount exceeds i128: {text!r}")
    return stroops


def format_stroops(stroops: int) -> str:
    """Render stroops as the canonical decimal string (no trailing zeros, no exponent)."""
    sign = "-" if stroops < 0 else ""
    whole, frac = divmod(abs(stroops), UNIT)
    if frac == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{frac:07d}".rstrip("0")
