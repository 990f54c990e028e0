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
    "processor": "processor.json",
    "processor_interpreted": "processor-interpreted.json",
    "instructions": "instructions.json",
    "service": "service.json",
    "compare": "compare.json",
    "rules_scale": "rules-scale.json",
    "scale_out": "scale-out.json",
    "state_scale": "state-scale.json",
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
            ("W >= 0.5 F, one event per message", f"W/F = {runs[1]['W/F']}", runs[1]["W/F"] >= 0.5)
        )
    batched = [r for b, r in runs.items() if b > 1]
    if batched and 1 in runs and "Q" in runs[1]:
        r, q = batched[0], runs[1]["Q"]
        ratio = round(r["W"] / q, 2)
        out.append(
            (
                f"W with {r['batch']} events per message >= 0.75 Q (one per message)",
                f"{r['W']:,} / {q:,} = {ratio}",
                ratio >= 0.75,
            )
        )
        # what bounds that target: any Faust agent, even one doing nothing,
        # does F per message (the product's consumers are Faust agents)
        ceiling = round(r["F"] / q, 2)
        out.append(
            (
                f"(bound: a trivial Faust agent, {r['batch']} events per message, vs 0.75 Q)",
                f"F {r['F']:,} / {q:,} = {ceiling}",
                ceiling >= 0.75,
            )
        )
    for r in parts.get("processor", {}).get("runs", []):
        out.append(
            (
                f"processor alone <= 20 µs per event, {r['batch']} event(s) per record",
                f"{r['us_per_event']} µs",
                r["us_per_event"] <= 20,
            )
        )
    service = parts.get("service", {})
    if "latency_80" in service:
        p99 = service["latency_80"]["p99_ms"]
        out.append(("detection latency p99 <= 1 s at 80% load", f"{p99:,.0f} ms", p99 <= 1000))
    scale = parts.get("rules_scale", {}).get("runs", [])
    shared = [x for x in scale if x.get("shared", True)]
    if len(shared) > 1:
        last, first = shared[-1], shared[0]
        target = f"W at {last['rules']:,} rules >= 0.5 W at {first['rules']} rules"
        out.append((target, f"{last['relative']}", last["relative"] >= 0.5))
        for x in scale:
            if not x.get("shared", True):
                out.append(
                    (f"{target}, no series shared", f"{x['relative']}", x["relative"] >= 0.5)
                )
    return out


def table(title: str, header: list[str], rows: list[list[Any]]) -> list[str]:
    """A titled markdown table, numbers with thousands separators."""

    def cell(v: Any) -> str:
        return f"{v:,}" if isinstance(v, int) else str(v)

    return [
        title,
        "",
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(cell(v) for v in row) + " |" for row in rows),
        "",
    ]


def processor_table(p: dict[str, Any]) -> list[str]:
    rows = [
        [r["batch"], r["events"], r["us_per_event"], f"{round(1e6 / r['us_per_event']):,}"]
        for r in p["runs"]
    ]
    engine = p.get("engine", "interpreted")
    title = (
        f"The processor alone, no Kafka ({p['subscribers']:,} subscribers, default rules,"
        f" {engine} engine):"
    )
    return table(title, ["events per record", "events", "µs per event", "events/s"], rows)


def instructions_table(p: dict[str, Any]) -> list[str]:
    r = p["run"]
    title = (
        f"The processor's instructions per event (callgrind, compiled engine,"
        f" {p['subscribers']:,} subscribers; compares versions of the code, not a time):"
    )
    header = ["events per record", "events", "records", "instructions per event"]
    return table(title, header, [[r["batch"], r["events"], r["records"], r["per_event"]]])


def service_table(s: dict[str, Any]) -> list[str]:
    rows: list[list[Any]] = [
        ["events/s, one worker draining a backlog", s["events_per_second"]],
        ["profiles/s (initial load)", s["profiles_per_second"]],
    ]
    for share in (50, 70, 80, 90):
        if lat := s.get(f"latency_{share}"):
            rows.append(
                [
                    f"detection latency at {share}% load ({lat['events_per_second']:,} events/s),"
                    " p50 / p95 / p99",
                    f"{lat['p50_ms']:,.0f} / {lat['p95_ms']:,.0f} / {lat['p99_ms']:,.0f} ms",
                ]
            )
            if every := lat.get("all_outputs"):
                rows.append(
                    [
                        f"every output at {share}% load, held notices and later task changes"
                        " included (from their source event), p50 / p95 / p99",
                        f"{every['p50_ms']:,.0f} / {every['p95_ms']:,.0f}"
                        f" / {every['p99_ms']:,.0f} ms",
                    ]
                )
    rows += [
        ["restart to first event, local state kept", f"{s['restart_warm_seconds']} s"],
        ["restart to first event, state from changelogs", f"{s['restart_cold_seconds']} s"],
        ["SIGTERM to exit", f"{s['sigterm_seconds']} s"],
        ["peak RSS", f"{s['peak_rss_mb']} MB"],
    ]
    title = f"Service ({s['subscribers']:,} subscribers of state, {s['events']:,} events):"
    return table(title, ["measure", "value"], rows)


def compare_table(c: dict[str, Any]) -> list[str]:
    header = [
        "events per message", "L", "F", "T", "Q", "W", "W0 (no-op processor)", "W/F", "W0/F",
        "W/T", "W/Q", "W/L", "processor in W, µs/event", "W / W0 polled from outside",
    ]  # fmt: skip
    rows = [
        [
            r["batch"],
            r["L"],
            r["F"],
            r.get("T", "-"),
            r.get("Q", "-"),
            r["W"],
            r.get("W0", "-"),
            r["W/F"],
            r.get("W0/F", "-"),
            r.get("W/T", "-"),
            r.get("W/Q", "-"),
            r["W/L"],
            r.get("processor_in_worker_us", "-"),
            f"{r.get('W polled', '-')} / {r.get('W0 polled', '-')}",
        ]
        for r in c["runs"]
    ]
    title = (
        f"Events/s against the limit ({c['events']:,} events, {c['subscribers']:,} subscribers;"
        " W0 is the worker with a no-op processor, the ceiling its plumbing sets; every"
        " consumer timed from inside, from the first event it took to the last record it"
        " finished; the last column is W and W0 seen from outside, through metrics polled"
        " every 0.5 s and offsets committed every second):"
    )
    return table(title, header, rows)


def rules_table(r: dict[str, Any]) -> list[str]:
    rows = [
        [
            x["rules"],
            "yes" if x.get("shared", True) else "no (each copy its own)",
            x["events_per_second"],
            x["relative"],
            x["peak_rss_mb"],
        ]
        for x in r["runs"]
    ]
    title = f"Rule count ({r['events']:,} events, {r['subscribers']:,} subscribers):"
    header = ["rules", "series shared", "events/s", "relative", "peak RSS MB"]
    return table(title, header, rows)


def scale_out_table(o: dict[str, Any]) -> list[str]:
    rows = [
        [x["workers"], x["events_per_second"], x.get("events_per_second_polled", "-")]
        for x in o["runs"]
    ]
    title = (
        f"Scale-out ({o['events']:,} events, {o['subscribers']:,} subscribers,"
        f" {o['partitions']} partitions; timed from inside, from the first event taken to the"
        " last record finished, and as polled from outside):"
    )
    return table(title, ["workers", "events/s", "events/s polled"], rows)


def state_table(st: dict[str, Any]) -> list[str]:
    rows = [
        [
            x["subscribers"],
            x["profiles_per_second"],
            x.get("profiles_peak_rss_mb", "-"),
            x["events_per_second"],
            x["peak_rss_mb"],
            x["state_mb"],
        ]
        for x in st["runs"]
    ]
    title = f"Subscribers of state ({st['events']:,} events each):"
    header = [
        "subscribers",
        "profiles/s",
        "RSS loading MB",
        "events/s",
        "RSS draining MB",
        "state MB",
    ]
    return table(title, header, rows)


def markdown(parts: dict[str, Any]) -> str:
    sections = {
        "processor": processor_table,
        "processor_interpreted": processor_table,
        "instructions": instructions_table,
        "service": service_table,
        "compare": compare_table,
        "rules_scale": rules_table,
        "scale_out": scale_out_table,
        "state_scale": state_table,
    }
    lines: list[str] = []
    for name, render in sections.items():
        if name in parts:
            lines += render(parts[name])
    goals = targets(parts)
    if goals:
        lines += table(
            "Targets:",
            ["target", "measured", "met"],
            [[t, m, "yes" if ok else "no"] for t, m, ok in goals],
        )
    return "\n".join(lines)


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
