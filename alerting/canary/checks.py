"""Golden-item checkers: does an answer pass, and if not, why (in words a person can act on).

An item's ``expect`` names one or more checkers; every one must pass:

- ``equals``: exact equality (a class label, a string, any JSON value); a one-element list answer
  (a tensor of one) is compared as its element;
- ``number`` with ``tolerance`` (absolute) and/or ``rel_tolerance``;
- ``regex``: ``re.search`` on the answer as text; ``contains``: each string occurs in it
  (``ignore_case`` for both);
- ``json_schema``: the answer (parsed as JSON when it is text) is valid against the schema;
- ``reference`` with ``min_similarity`` (default 0.5) by ``similarity``: ``token_f1`` (SQuAD's
  answer F1 over lower-cased word tokens) or ``char_ngram`` (Dice coefficient over character
  trigrams: robust to inflection and small typos). Both are cheap and need nothing installed.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jsonschema

_WORD = re.compile(r"\w+", re.UNICODE)


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str = ""
    score: float | None = None


def as_text(answer: Any) -> str:
    return answer if isinstance(answer, str) else json.dumps(answer, separators=(",", ":"), default=str)


def _scalar(answer: Any) -> Any:
    return answer[0] if isinstance(answer, list) and len(answer) == 1 else answer


def check(expect: Mapping[str, Any], answer: Any) -> Outcome:
    """Run every checker ``expect`` names; the first failure is the reason (the score of the last
    checker that has one is kept)."""
    score: float | None = None
    for name, fn in _CHECKERS.items():
        if name in expect:
            outcome = fn(expect, answer)
            score = outcome.score if outcome.score is not None else score
            if not outcome.ok:
                return Outcome(False, outcome.reason, score)
    return Outcome(True, "", score)


def _equals(expect: Mapping[str, Any], answer: Any) -> Outcome:
    want, got = expect["equals"], _scalar(answer)
    if isinstance(want, bool) or isinstance(got, bool):
        same = want is got
    elif isinstance(want, int | float) and isinstance(got, int | float):
        same = float(want) == float(got)  # a label 3 equals an INT64 tensor's 3 or an FP32's 3.0
    else:
        same = want == got
    return Outcome(True) if same else Outcome(False, f"expected {as_text(want)!s}, got {_short(got)}")


def _number(expect: Mapping[str, Any], answer: Any) -> Outcome:
    got = _scalar(answer)
    if isinstance(got, str):
        try:
            got = float(got.strip())
        except ValueError:
            return Outcome(False, f"expected a number, got {_short(got)}")
    if isinstance(got, bool) or not isinstance(got, int | float) or not math.isfinite(float(got)):
        return Outcome(False, f"expected a number, got {_short(got)}")
    want, error = float(expect["number"]), abs(float(got) - float(expect["number"]))
    allowed = max(float(expect.get("tolerance", 0.0)), float(expect.get("rel_tolerance", 0.0)) * abs(want))
    if error <= allowed:
        return Outcome(True, score=error)
    return Outcome(False, f"expected {want:g} ± {allowed:g}, got {float(got):g}", error)


def _regex(expect: Mapping[str, Any], answer: Any) -> Outcome:
    flags = re.IGNORECASE if expect.get("ignore_case") else 0
    if re.search(expect["regex"], as_text(answer), flags):
        return Outcome(True)
    return Outcome(False, f"no match for /{expect['regex']}/ in {_short(answer)}")


def _contains(expect: Mapping[str, Any], answer: Any) -> Outcome:
    wanted = expect["contains"]
    needles = [wanted] if isinstance(wanted, str) else list(wanted)
    text = as_text(answer)
    fold = str.casefold if expect.get("ignore_case") else str
    missing = [n for n in needles if fold(n) not in fold(text)]
    return Outcome(True) if not missing else Outcome(False, f"missing {missing[0]!r} in {_short(answer)}")


def _json_schema(expect: Mapping[str, Any], answer: Any) -> Outcome:
    value = answer
    if isinstance(answer, str):
        try:
            value = json.loads(answer)
        except ValueError as exc:
            return Outcome(False, f"not JSON ({exc.args[0][:60]}): {_short(answer)}")
    schema: Mapping[str, Any] = expect["json_schema"]
    error = jsonschema.exceptions.best_match(jsonschema.Draft202012Validator(schema).iter_errors(value))
    return Outcome(True) if error is None else Outcome(False, f"schema: {error.message[:160]}")


def _reference(expect: Mapping[str, Any], answer: Any) -> Outcome:
    method = expect.get("similarity", "token_f1")
    measure = token_f1 if method == "token_f1" else char_ngram
    score = measure(as_text(answer), expect["reference"])
    floor = float(expect.get("min_similarity", 0.5))
    if score >= floor:
        return Outcome(True, score=score)
    return Outcome(False, f"{method} {score:.2f} < {floor:.2f} against the reference, got {_short(answer)}", score)


_CHECKERS = {
    "equals": _equals,
    "number": _number,
    "regex": _regex,
    "contains": _contains,
    "json_schema": _json_schema,
    "reference": _reference,
}


def token_f1(answer: str, reference: str) -> float:
    """SQuAD's answer F1: harmonic mean of token precision and recall (lower-cased word tokens)."""
    got, want = _WORD.findall(answer.lower()), _WORD.findall(reference.lower())
    if not got or not want:
        return float(got == want)
    common = sum((Counter(got) & Counter(want)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(got), common / len(want)
    return 2 * precision * recall / (precision + recall)


def char_ngram(answer: str, reference: str, n: int = 3) -> float:
    """Dice coefficient over character ``n``-grams of the lower-cased, space-normalised texts."""
    a, b = _grams(answer, n), _grams(reference, n)
    if not a or not b:
        return float(a == b)
    return 2 * sum((a & b).values()) / (sum(a.values()) + sum(b.values()))


def _grams(text: str, n: int) -> Counter[str]:
    norm = f" {' '.join(text.lower().split())} "
    return Counter(norm[i : i + n] for i in range(max(0, len(norm) - n + 1)))


def _short(value: Any, limit: int = 80) -> str:
    text = as_text(value)
    return repr(text if len(text) <= limit else text[: limit - 1] + "…")
