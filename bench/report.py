"""One report from the benchmarks' JSON files in a bench directory
(`service.json`, `compare.json`, `rules-scale.json`, `scale-out.json`, each
written by its module): `report.json` with all of them and the targets, and
`report.md`, the short tables the README quotes. A missing file is left out.

    python -m bench.report var/bench
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

PARTS = {
    "service": "service.json",
    "compare": "compare.json",
    "rules_scale": "rules-scale.json",
    "scale_out": "scale-out.json",
}


def load(folder: Path) -> dict[str, Any]:
    return {
        name: json.loads((folder / file).read_text())
        for name, file in PARTS.items()
        if (folder / file).exists()
    }


def targets(parts: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """(target, measured, met) for the issue's goals."""
    out: list[tuple[str, str, bool | None]] = []
    runs = {r["batch"]: r for r in parts.get("compare", {}).get("runs", [])}
    if 1 in runs:
        out.append(
            ("W >= 0.8 F, one event per message", f"W/F = {runs[1]['W/F']}", runs[1]["W/F"] >= 0.8)
        )
    batched = [r for b, r in runs.items() if b > 1]
    if batched:
        r = batched[0]
        out.append(
            (f"W >= 0.25 L, {r['batch']} events per message", f"W/L = {r['W/L']}", r["W/L"] >= 0.25)
        )
    service = parts.get("service", {})
    if "latency_80" in service:
        p99 = service["latency_80"]["p99_ms"]
        out.append(("detection latency p99 <= 1 s at 80% load", f"{p99:,.0f} ms", p99 <= 1000))
    scale = parts.get("rules_scale", {}).get("runs", [])
    if len(scale) > 1:
        last = scale[-1]
        out.append(
            (
                f"W at {last['rules']:,} rules >= 0.5 W at {scale[0]['rules']} rules",
                f"{last['relative']}",
                last["relative"] >= 0.5,
            )
        )
    return out


def markdown(parts: dict[str, Any]) -> str:
    lines: list[str] = []
    s = parts.get("service")
    if s:
        lines += [
            f"Service ({s['subscribers']:,} subscribers of state, {s['events']:,} events backlog):",
            "",
            "| measure | value |",
            "|---|---|",
            f"| events/s, one worker draining a backlog | {s['events_per_second']:,} |",
            f"| profiles/s (initial load) | {s['profiles_per_second']:,} |",
        ]
        for share in (50, 80):
            lat = s.get(f"latency_{share}")
            if lat:
                lines.append(
                    f"| detection latency at {share}% load ({lat['events_per_second']:,} events/s),"
                    f" p50 / p95 / p99 | {lat['p50_ms']:,.0f} / {lat['p95_ms']:,.0f} /"
                    f" {lat['p99_ms']:,.0f} ms |"
                )
        lines += [
            f"| restart to first event, local state kept | {s['restart_warm_seconds']} s |",
            f"| restart to first event, state restored from changelogs | {s['restart_cold_seconds']} s |",
            f"| SIGTERM to exit | {s['sigterm_seconds']} s |",
            f"| peak RSS | {s['peak_rss_mb']} MB |",
            "",
        ]
    c = parts.get("compare")
    if c:
        lines += [
            f"Against the limit ({c['events']:,} events, {c['subscribers']:,} subscribers):",
            "",
            "| events per message | L events/s | F events/s | T events/s | W events/s"
            " | W/F | W/T | W/L |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r['batch']} | {r['L']:,} | {r['F']:,} | {r.get('T', 0):,} | {r['W']:,}"
                f" | {r['W/F']} | {r.get('W/T', '-')} | {r['W/L']} |"
                for r in c["runs"]
            ),
            "",
        ]
    r = parts.get("rules_scale")
    if r:
        lines += [
            f"Rule count ({r['events']:,} events, {r['subscribers']:,} subscribers):",
            "",
            "| rules | events/s | relative | peak RSS MB |",
            "|---|---|---|---|",
            *(
                f"| {x['rules']:,} | {x['events_per_second']:,} | {x['relative']} | {x['peak_rss_mb']} |"
                for x in r["runs"]
            ),
            "",
        ]
    o = parts.get("scale_out")
    if o:
        lines += [
            f"Scale-out ({o['events']:,} events, {o['subscribers']:,} subscribers,"
            f" {o['partitions']} partitions):",
            "",
            "| workers | events/s |",
            "|---|---|",
            *(f"| {x['workers']} | {x['events_per_second']:,} |" for x in o["runs"]),
            "",
        ]
    goals = targets(parts)
    if goals:
        lines += ["| target | measured | met |", "|---|---|---|"]
        lines += [f"| {t} | {m} | {'yes' if ok else 'no'} |" for t, m, ok in goals]
    return "\n".join(lines) + "\n"


def main() -> None:
    folder = Path(sys.argv[1] if len(sys.argv) > 1 else "var/bench")
    parts = load(folder)
    goals = [{"target": t, "measured": m, "met": ok} for t, m, ok in targets(parts)]
    (folder / "report.json").write_text(json.dumps({**parts, "targets": goals}, indent=2) + "\n")
    text = markdown(parts)
    (folder / "report.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
