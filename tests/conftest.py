"""Suite-wide rules: under CI=true, a skipped test is a failed run."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if not IN_CI or reporter is None:
        return
    skipped = len(reporter.stats.get("skipped", []))
    if skipped:
        reporter.write_line(f"CI=true: {skipped} test(s) skipped; skipped tests fail CI", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
