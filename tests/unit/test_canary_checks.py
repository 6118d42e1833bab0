"""Golden-item checkers and the similarity measures."""

from __future__ import annotations

import pytest
from vigil.alerting.canary.checks import char_ngram, check, token_f1


@pytest.mark.parametrize(
    ("expect", "answer", "ok"),
    [
        ({"equals": 3}, [3], True),  # a one-element tensor compares as its element
        ({"equals": 3}, 3.0, True),
        ({"equals": 3}, [7], False),
        ({"equals": "Paris"}, "Paris", True),
        ({"equals": {"a": 1}}, {"a": 1}, True),
        ({"equals": True}, 1, False),  # a bool is not a number
        ({"number": 3.14, "tolerance": 0.01}, 3.141, True),
        ({"number": 3.14, "tolerance": 0.01}, "3.2", False),
        ({"number": 100.0, "rel_tolerance": 0.05}, [104.0], True),
        ({"number": 1.0, "tolerance": 1.0}, "NaN", False),
        ({"number": 1.0}, "one", False),
        ({"regex": "^Par"}, "Paris", True),
        ({"regex": "^par", "ignore_case": True}, "Paris", True),
        ({"regex": "^par"}, "Paris", False),
        ({"contains": ["Paris", "France"]}, "Paris is in France", True),
        ({"contains": "berlin", "ignore_case": True}, "Berlin", True),
        ({"contains": ["Paris", "Spain"]}, "Paris is in France", False),
        ({"json_schema": {"type": "object", "required": ["city"]}}, '{"city": "Rome"}', True),
        ({"json_schema": {"type": "object", "required": ["city"]}}, '{"town": "Rome"}', False),
        ({"json_schema": {"type": "object"}}, '{"city": ', False),
        ({"reference": "the capital of France is Paris", "min_similarity": 0.6}, "Paris is France's capital", True),
        ({"reference": "Paris", "similarity": "char_ngram", "min_similarity": 0.7}, "Pariss", True),
        ({"reference": "Paris", "min_similarity": 0.5}, "London", False),
        ({"equals": "Rome", "regex": "^R"}, "Rome", True),
        ({"equals": "Rome", "regex": "^X"}, "Rome", False),
    ],
)
def test_checkers(expect: dict[str, object], answer: object, ok: bool) -> None:
    outcome = check(expect, answer)
    assert outcome.ok is ok
    assert bool(outcome.reason) is not ok


def test_reasons_say_what_was_expected_and_what_came() -> None:
    assert check({"equals": 3}, [7]).reason == "expected 3, got '7'"
    assert "expected 3.14 ± 0.01, got 3.2" in check({"number": 3.14, "tolerance": 0.01}, 3.2).reason
    assert check({"json_schema": {"type": "object", "required": ["city"]}}, "{}").reason.startswith("schema: ")
    assert check({"reference": "Paris"}, "London").score == 0.0


def test_similarity_measures() -> None:
    assert token_f1("Paris", "paris") == 1.0
    assert token_f1("the cat sat", "the cat") == pytest.approx(0.8)
    assert token_f1("", "") == 1.0 and token_f1("x", "") == 0.0
    assert char_ngram("colour", "color") > 0.5 > char_ngram("colour", "banana")
    assert char_ngram("same  text", "same text") == 1.0
