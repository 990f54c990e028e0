"""JSON Schema documents generated from the contract models, one file per
topic payload under `schemas/json/`, for producers and consumers in other
languages. They are generated, never edited: `forewarn schemas export`
writes them and `make test` fails when they are out of date.

Input schemas describe what we validate (JSON mode: timestamps are RFC 3339
strings with an offset). Output schemas describe what we write.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel

from schemas.deadletter import DeadLetter
from schemas.events import BillingEvent, NetworkQualityEvent, UsageEvent
from schemas.feedback import TaskUpdate
from schemas.intents import CellMembership, CoverMark, NoticeIntent
from schemas.maintenance import MaintenanceWindow
from schemas.outputs import CustomerNotice, InterventionTask
from schemas.profile import CustomerProfile

JSON_DIR = Path(__file__).parent / "json"

# file stem -> (model, "validation" for inputs / "serialization" for outputs)
CONTRACT: dict[str, tuple[type[BaseModel], str]] = {
    "usage-event": (UsageEvent, "validation"),
    "billing-event": (BillingEvent, "validation"),
    "network-quality-event": (NetworkQualityEvent, "validation"),
    "customer-profile": (CustomerProfile, "validation"),
    "task-update": (TaskUpdate, "validation"),
    "maintenance-window": (MaintenanceWindow, "validation"),
    "customer-notice": (CustomerNotice, "serialization"),
    "intervention-task": (InterventionTask, "serialization"),
    "dead-letter": (DeadLetter, "serialization"),
    "notice-intent": (NoticeIntent, "serialization"),
    "cell-membership": (CellMembership, "serialization"),
    "cover-mark": (CoverMark, "serialization"),
}


def render(models: Mapping[str, tuple[type[BaseModel], str]]) -> dict[str, str]:
    """File name -> JSON text, deterministic (sorted keys, trailing newline)."""
    out: dict[str, str] = {}
    for stem, (model, mode) in sorted(models.items()):
        schema = model.model_json_schema(mode=mode)  # type: ignore[arg-type]
        schema = {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}
        out[f"{stem}.json"] = (
            json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
        )
    return out


def stale_files(rendered: Mapping[str, str], directory: Path = JSON_DIR) -> list[str]:
    """Files that are missing, different, or no longer generated."""
    stale = [
        name
        for name, text in rendered.items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != text
    ]
    if directory.is_dir():
        stale += sorted(p.name for p in directory.glob("*.json") if p.name not in rendered)
    return stale


def write(rendered: Mapping[str, str], directory: Path = JSON_DIR) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for path in directory.glob("*.json"):
        if path.name not in rendered:
            path.unlink()
    for name, text in rendered.items():
        (directory / name).write_text(text, encoding="utf-8")
