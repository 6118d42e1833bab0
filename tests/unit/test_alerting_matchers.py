"""Matchers with Alertmanager's semantics: anchored regexes, a missing label reads as empty."""

from __future__ import annotations

import pytest
from vigil.alerting.matchers import Matcher, from_maps, matches_all, parse_matcher, parse_matchers


@pytest.mark.parametrize(
    ("text", "labels", "expected"),
    [
        ('severity="critical"', {"severity": "critical"}, True),
        ("severity = critical", {"severity": "critical"}, True),
        ('severity!="critical"', {"severity": "warning"}, True),
        ('severity!="critical"', {}, True),
        ('host=~"node-0[1-4]"', {"host": "node-03"}, True),
        ('host=~"node-0[1-4]"', {"host": "xnode-03"}, False),  # anchored at the start
        ('host=~"node-0[1-4]"', {"host": "node-031"}, False),  # and at the end
        ('host!~"node-.*"', {"host": "gpu-1"}, True),
        ('team=""', {}, True),  # a missing label is the empty string
        ('team!=""', {}, False),
        ('team=~".+"', {"team": "ml"}, True),
        ('msg="a \\"quoted\\" word"', {"msg": 'a "quoted" word'}, True),
        ('alertname=~"GpuXid(Fatal|Error)"', {"alertname": "GpuXidError"}, True),
    ],
)
def test_matcher_semantics(text: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_matcher(text).matches(labels) is expected


def test_the_written_forms_all_parse() -> None:
    listed = parse_matchers(['alertname="A"', 'severity=~"warning|critical"'])
    braces = parse_matchers('{alertname="A", severity=~"warning|critical"}')
    maps = from_maps({"alertname": "A"}, {"severity": "warning|critical"})
    assert [str(m) for m in listed] == [str(m) for m in braces] == [str(m) for m in maps]
    assert matches_all(listed, {"alertname": "A", "severity": "critical"})
    assert parse_matchers([m.to_json() for m in listed]) == listed


@pytest.mark.parametrize("bad", ["severity", 'severity=="x"', "9host=x", 'host=~"("'])
def test_a_bad_matcher_says_what_is_wrong(bad: str) -> None:
    with pytest.raises(ValueError, match=r"matcher|regular expression"):
        parse_matcher(bad)


def test_an_unknown_operator_in_stored_json_is_refused() -> None:
    with pytest.raises(ValueError, match="operator"):
        Matcher.from_json({"name": "a", "op": "~", "value": "b"})
