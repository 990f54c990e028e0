"""Build the compiled engine: Forewarn's per-event modules compiled to C
extensions by mypyc (mypy's own compiler; mypy is a pinned dev dependency),
about 1.5x less CPU per event than the same modules interpreted.

The build is a snapshot, never the working tree: the four packages are
copied to `var/compiled/` (their `.py` files, rule files and schemas) and
the modules in `MODULES` are compiled there, so that

- the working tree stays pure Python: editing a module and running
  `pytest` runs the edit, never an older compiled copy of it;
- the snapshot is consistent by construction (every compiled module, and
  the shared library they call each other through, from one source);
- a process runs compiled only when `var/compiled` is first on its
  `PYTHONPATH`, as `make run`, `make test` and `make bench` put it after
  running this script (which does nothing when the sources are unchanged:
  `var/compiled/BUILD` holds the sources' hash).

The image build (docker/Dockerfile) runs it with `--install SITE_PACKAGES`
to copy the extensions next to the installed modules.

Modules are compiled only where that is safe and pays: the engine and what
the worker's processor runs per event. Modules that tests or benchmarks
subclass or patch (`rules.session`, the loader, the offline tools, the
Faust adapter) stay interpreted; compiled classes cannot be subclassed by
interpreted ones. `rules.ruleset` stays interpreted too: its frozen
dataclasses cache their plans in `functools.cached_property`, which a
compiled class (no instance `__dict__`) does not keep, and compiled it
changes what the rules decide (a unit test of data-usage tiers fails).
Classes the compiled modules make per event or per output are
`dataclass(init=False)` with their `__init__` written out, never frozen:
a frozen dataclass's `__init__` is generated, interpreted code that sets
each field through `object.__setattr__`.

    python dev/compile.py [--out var/compiled] [--install DIR] [--force]
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("schemas", "rules", "sinks", "stream")
MODULES = (
    "rules/agenda.py",
    "rules/durations.py",
    "rules/engine.py",
    "rules/expr.py",
    "rules/guard.py",
    "rules/identity.py",
    "rules/maintenance.py",
    "rules/names.py",
    "rules/places.py",
    "rules/policy.py",
    "rules/records.py",
    "rules/state.py",
    "rules/tasks.py",
    "rules/templates.py",
    "rules/windows.py",
    "sinks/codec.py",
    "sinks/destinations.py",
    "sinks/routing.py",
    "stream/decoding.py",
    "stream/metrics.py",
    "stream/processor.py",
)
SKIP = shutil.ignore_patterns("__pycache__", "*.so", "*.pyc")


def source_id(root: Path) -> str:
    """The hash of everything the snapshot is built from."""
    h = hashlib.sha256()
    h.update(f"{sys.version} {platform.machine()} mypy {version('mypy')}\n".encode())
    h.update("\n".join(MODULES).encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".so":
                h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return h.hexdigest()


def build(out: Path, force: bool) -> bool:
    """Build the snapshot at `out`; False when mypyc failed (message printed)."""
    wanted = source_id(ROOT)
    stamp = out / "BUILD"
    if not force and stamp.is_file() and stamp.read_text().strip() == wanted:
        print(f"compiled engine up to date: {out}")
        return True
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp / package, ignore=SKIP)
    shutil.copy2(ROOT / "pyproject.toml", tmp / "pyproject.toml")  # mypy's settings
    print(f"compiling {len(MODULES)} modules with mypyc into {out} (about a minute)...")
    done = subprocess.run(
        [sys.executable, "-m", "mypyc", *MODULES],
        cwd=tmp,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        lines = (done.stdout + done.stderr).splitlines()
        print("\n".join(line for line in lines if not line.startswith("gcc "))[-4000:])
        print(f"dev/compile: mypyc failed (exit {done.returncode}); {out} left as it was")
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    for scratch in ("build", ".mypy_cache", "pyproject.toml"):
        target = tmp / scratch
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    missing = [m for m in MODULES if not list(tmp.glob(m.removesuffix(".py") + ".*.so"))]
    if missing:
        print(f"dev/compile: no extension built for {', '.join(missing)}")
        shutil.rmtree(tmp, ignore_errors=True)
        return False
    (tmp / "BUILD").write_text(wanted + "\n")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"compiled engine built: {out}")
    return True


def install(out: Path, site: Path) -> None:
    """Copy the snapshot's extensions next to the modules installed in `site`
    (built from the same sources: the image build does both from one copy)."""
    for so in sorted(out.rglob("*.so")):
        target = site / so.relative_to(out)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(so, target)
        print(f"installed {target}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "var" / "compiled")
    parser.add_argument("--install", type=Path, help="copy the extensions into this site-packages")
    parser.add_argument("--force", action="store_true", help="rebuild even if up to date")
    args = parser.parse_args()
    if not build(args.out.resolve(), args.force):
        return 1
    if args.install:
        install(args.out.resolve(), args.install)
    return 0


if __name__ == "__main__":
    sys.exit(main())
