"""The compiled engine (dev/compile.py) is the interpreted one, faster: the
same events give byte-identical outputs and suppressions either way, and
`make test` (dev/test) runs this whole suite on the compiled build, as the
worker runs it."""

from __future__ import annotations

import importlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rules import engine
from stream.worker import engine_build
from tests.conftest import IN_CI

ROOT = Path(__file__).resolve().parents[2]


def compile_script() -> Any:
    spec = importlib.util.spec_from_file_location("compile_script", ROOT / "dev" / "compile.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_suite_runs_the_engine_the_worker_runs_whole() -> None:
    # dev/test builds var/compiled and puts it first on PYTHONPATH
    if IN_CI:
        assert engine_build() == "compiled", engine.__file__
    # never a mix: every module dev/compile.py compiles is loaded compiled, or none
    names = [m.removesuffix(".py").replace("/", ".") for m in compile_script().MODULES]
    files = {name: importlib.import_module(name).__file__ or "" for name in names}
    compiled = {name for name, file in files.items() if file.endswith(".so")}
    assert compiled in (set(), set(names)), files
    assert (engine_build() == "compiled") == bool(compiled)


def replay(python_path: Path, events: Path, out: Path) -> bytes:
    env = dict(os.environ, PYTHONPATH=str(python_path), PYTHONSAFEPATH="1")
    suppressions = out.with_suffix(".suppressed")
    command = [sys.executable, "-m", "stream.cli", "replay", str(events), "--out", str(out)]
    command += [
        "--created-at",
        "event-time",
        "--simulate-work",
        "--suppressions",
        str(suppressions),
    ]
    probe = "from stream.worker import engine_build; print(engine_build())"
    engine_of = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, check=True
    )
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return (
        engine_of.stdout.strip().encode()
        + b"\n"
        + out.read_bytes()
        + b"\n--\n"
        + suppressions.read_bytes()
    )


def test_compiled_and_interpreted_replays_are_byte_identical(tmp_path: Path) -> None:
    if engine_build() != "compiled":
        if IN_CI:
            pytest.fail("the compiled engine is missing: dev/test builds it (dev/compile.py)")
        pytest.skip("run through dev/test (or PYTHONPATH=var/compiled) to compare")
    compiled = Path(engine.__file__).resolve().parents[1]
    events = tmp_path / "events.jsonl"
    simulate = [sys.executable, "-m", "stream.cli", "simulate", "--subscribers", "600"]
    simulate += ["--events", "15000", "--span", "4d", "--incidents-every", "1500"]
    env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONSAFEPATH="1")
    subprocess.run([*simulate, "--out", str(events)], env=env, check=True, capture_output=True)

    fast = replay(compiled, events, tmp_path / "compiled.jsonl")
    slow = replay(ROOT, events, tmp_path / "interpreted.jsonl")
    assert fast.startswith(b"compiled\n") and slow.startswith(b"interpreted\n")
    fast_outputs, slow_outputs = fast.split(b"\n", 1)[1], slow.split(b"\n", 1)[1]
    # a run that does something: notices, tasks, their changes and suppressions
    for kind in (b'"notice_id"', b'"task_id"', b'"reason"'):
        assert fast_outputs.count(kind) > 10, kind
    assert fast_outputs == slow_outputs
