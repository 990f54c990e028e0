"""Expressions compile to Python functions; rule text stays data."""

from __future__ import annotations

from pathlib import Path

import pytest

from rules.expr import ExpressionError, any_holds, parse_expression, values_of


def test_null_safe_semantics_survive_compilation() -> None:
    env = {"used": 90.0, "quota": 100.0, "zero": 0.0, "name": "x"}
    cases = {
        "used / quota >= 0.8": True,
        "used / zero > 1": False,  # division by zero is null, and null compares false
        "missing + 1 == null": True,
        "-missing == null": True,
        "name < 3": False,  # ordering across types is false, not an error
        "not (used > 100)": True,
        "coalesce(missing, 7) % 4": 3.0,
        "max(used, quota)": 100.0,
        "min(used, missing) == null": True,
    }
    got = {text: parse_expression(text).evaluate(env) for text in cases}
    assert got == cases


def test_rule_text_that_looks_like_python_is_only_data(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    payload = f"'); __import__('os').system('touch {marker}'); ('"
    expr = parse_expression(f'name == "{payload}"')
    assert expr.evaluate({"name": "x"}) is False
    assert expr.evaluate({"name": payload}) is True  # the payload is just a string
    with pytest.raises(ExpressionError, match="unknown function '__import__'"):
        parse_expression("__import__('os')")
    with pytest.raises(ExpressionError, match="unexpected character"):
        parse_expression(f"abs(1).system('touch {marker}')")
    assert parse_expression("e.get").evaluate({"e.get": 5}) == 5  # a name, not an attribute
    assert not marker.exists()


def test_any_holds_reports_the_groups_with_a_condition_holding() -> None:
    low, high, odd = (parse_expression(t) for t in ("x > 1", "x > 5", "x % 2 == 1"))
    check = any_holds([(10, [low]), (20, [high, odd]), (30, [])])
    assert check({"x": 2.0}) == [10]
    assert check({"x": 3.0}) == [10, 20]
    assert check({"x": 6.0}) == [10, 20]
    assert check({}) == []


def test_a_rules_measures_are_computed_in_one_call_with_numbers_as_floats() -> None:
    exprs = [parse_expression(t) for t in ("count", "used / quota", "flag", "name", "missing * 2")]
    values = values_of(exprs)
    got = values({"count": 3, "used": 50, "quota": 200, "flag": True, "name": "x"})
    assert got == [3.0, 0.25, True, "x", None]
    assert [type(v) for v in got[:3]] == [float, float, bool]  # a bool is not a number here
    with pytest.raises(TypeError):  # a failing measure fails its series, as one call
        values_of([parse_expression("abs(name)")])({"name": "x"})
