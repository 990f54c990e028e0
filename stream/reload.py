"""Hot reload of rule files (after Prometheus' rule manager): on a change
seen by polling, or on SIGHUP, load the rule set again; if it is clean, swap
it into the processor; if not, log every located diagnostic, keep the running
rule set, and say so in `forewarn_rules_last_reload_success`.

Per-key state survives a reload: the engine keys its state by rule id and
resets a rule's state only when the rule's state shape changed.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from rules.loader import load_rule_set, rule_files
from rules.ruleset import RuleSet
from stream.metrics import Metrics

log = logging.getLogger("forewarn.rules")

Fingerprint = tuple[tuple[str, int, int], ...]


def fingerprint(paths: tuple[Path, ...]) -> Fingerprint:
    files, _ = rule_files(paths)
    out = []
    for f in files:
        try:
            st = f.stat()
        except OSError:
            continue
        out.append((str(f), st.st_mtime_ns, st.st_size))
    return tuple(out)


class RuleReloader:
    def __init__(self, paths: tuple[Path, ...], metrics: Metrics) -> None:
        self.paths = paths
        self.metrics = metrics
        self.seen: Fingerprint = ()

    def initial(self) -> RuleSet | None:
        """The first load; None (after logging why) if the files are invalid."""
        return self._load("start")

    def poll(self) -> RuleSet | None:
        """A new rule set if the files changed and are valid."""
        if fingerprint(self.paths) == self.seen:
            return None
        return self._load("change")

    def reload(self) -> RuleSet | None:
        return self._load("sighup")

    def _load(self, trigger: str) -> RuleSet | None:
        self.seen = fingerprint(self.paths)
        result = load_rule_set(list(self.paths))
        m = self.metrics
        m.reload_timestamp.set(time.time())
        if result.rule_set is None:
            for diagnostic in result.diagnostics:
                log.error("rule diagnostic: %s", diagnostic, extra={"diagnostic": str(diagnostic)})
            log.error(
                "rule %s rejected: %d problem(s); the previous rules keep running",
                "load" if trigger == "start" else "reload",
                len(result.diagnostics),
                extra={"trigger": trigger},
            )
            m.reload_success.set(0)
            m.reloads.labels("failure").inc()
            return None
        rules = result.rule_set
        m.reload_success.set(1)
        m.reloads.labels("success").inc()
        m.rules_loaded.set(len(rules.rules))
        m.rule_series.set(len(rules.series_ids))
        m.rule_info.clear()
        m.rule_info.labels(rules.version).set(1)
        log.info(
            "rules loaded: %d rule(s), version %s",
            len(rules.rules),
            rules.version,
            extra={"trigger": trigger, "version": rules.version, "files": result.files},
        )
        return rules
