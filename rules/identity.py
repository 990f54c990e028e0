"""Deterministic ids: the same detection always gets the same id, so a
redelivered or replayed output de-duplicates downstream."""

from __future__ import annotations

import hashlib


def stable_id(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:32]


def detection_id(rule_id: str, tier: str, key: str, trigger_event_id: str) -> str:
    return stable_id("detection", rule_id, tier, key, trigger_event_id)


def resolution_id(detection: str) -> str:
    return stable_id("resolved", detection)


def task_id(detection: str) -> str:
    return stable_id("task", detection)


def notice_id(detection: str, subscriber_id: str) -> str:
    return stable_id("notice", detection, subscriber_id)
