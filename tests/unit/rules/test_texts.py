"""A notice text that cannot render (a missing value given to `num`) costs
that rule's notice only: it is reported with the rule's id, and the other
rules of the same event still deliver theirs."""

from __future__ import annotations

import json
from pathlib import Path

from rules.loader import load_rule_set
from rules.session import Session
from schemas import BillingEvent, CustomerNotice

RULES = """
rules:
  - id: careless
    description: Prints a baseline that new subscribers do not have.
    source: billing
    category: charges
    measures: {charged: "amount"}
    baseline: {of: "amount", per: 1h, lookback: 30d, min_history: 7d}
    tiers:
      - name: big
        when: "charged >= 100"
        severity: critical
        dedup: {scope: episode}
        notice:
          title: {en: "Charge", zh-CN: "扣费"}
          message: {en: "Usually {{ baseline | num }} CNY", zh-CN: "通常{{ baseline | num }}元"}
  - id: careful
    description: Says in words that there is no baseline yet.
    source: billing
    category: charges
    measures: {charged: "amount"}
    baseline: {of: "amount", per: 1h, lookback: 30d, min_history: 7d}
    tiers:
      - name: big
        when: "charged >= 100"
        severity: critical
        dedup: {scope: episode}
        notice:
          title: {en: "Charge", zh-CN: "扣费"}
          message:
            en: "{% if baseline is not none %}Usually {{ baseline | num }} CNY{% else %}No history yet{% endif %}"
            zh-CN: "{% if baseline is not none %}通常{{ baseline | num }}元{% else %}暂无历史{% endif %}"
"""


def test_a_failing_notice_text_costs_only_its_rule(tmp_path: Path) -> None:
    (tmp_path / "r.yaml").write_text(RULES, encoding="utf-8")
    rules = load_rule_set([tmp_path]).rule_set
    assert rules is not None
    event = BillingEvent.model_validate_json(
        json.dumps(
            {
                "event_id": "b1",
                "subscriber_id": "s1",
                "event_time": "2026-11-20T10:00:00+08:00",
                "charge_type": "other",
                "amount": 150,
            }
        )
    )
    step = Session(rules).process(event)
    notices = [o for o in step.outputs if isinstance(o, CustomerNotice)]
    assert [(n.rule_id, n.message) for n in notices] == [("careful", "暂无历史")]
    assert [rule for rule, _ in step.failures] == ["careless"]
    assert "'num' got no value" in step.failures[0][1]
