"""Amount parsing: what the API accepts is exactly what the chain could hold, with no rounding."""

import pytest

from core.money import I128_MAX, AmountError, format_stroops, to_stroops


@pytest.mark.parametrize(
    ("text", "stroops"),
    [
        ("12.5", 125_000_000),
        ("0.0000001", 1),
        ("1E+2", 1_000_000_000),
        (" 3 ", 30_000_000),
        ("17014118346046923173168730371588.4105727", I128_MAX),
    ],
)
def test_parses_exactly(text: str, stroops: int) -> None:
    assert to_stroops(text) == stroops


@pytest.mark.parametrize(
    "text",
    [
        "0",
        "-0.0",
        "-1",
        "1e-8",
        "0.00000001",
        "17014118346046923173168730371588.4105728",
        "1e999999999",
        "NaN",
        "Infinity",
        "abc",
        "",
    ],
)
def test_refuses(text: str) -> None:
    with pytest.raises(AmountError):
        to_stroops(text)


def test_refuses_non_strings() -> None:
    with pytest.raises(AmountError):
        to_stroops(12.5)  # type: ignore[arg-type]


@pytest.mark.parametrize("stroops", [1, 10_000_000, 125_000_000, 123_456_789_012, I128_MAX])
def test_format_round_trips(stroops: int) -> None:
    assert to_stroops(format_stroops(stroops)) == stroops
