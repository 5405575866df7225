"""Discover and run every ``bench.bench_*`` module's ``main() -> None``, in name order.

``python -m bench [NAME ...]`` runs only the named modules (``parse`` or ``bench_parse``). A module that
raises is reported and the others still run; the exit status is 1 when any failed.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
import traceback
from collections.abc import Sequence

import bench


def discover() -> list[str]:
    """Names of the benchmark modules in the package (``bench_*``), sorted."""
    return sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected (default: all) benchmark modules and print their results."""
    wanted = {n if n.startswith("bench_") else f"bench_{n}" for n in (sys.argv[1:] if argv is None else argv)}
    names = [n for n in discover() if not wanted or n in wanted]
    if wanted - set(names):
        print(f"unknown benchmark(s): {', '.join(sorted(wanted - set(names)))}", file=sys.stderr)
        return 2
    failed: list[str] = []
    for name in names:
        print(f"== {name} ==", flush=True)
        started = time.perf_counter()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception:
            traceback.print_exc()
            failed.append(name)
        print(f"-- {name}: {time.perf_counter() - started:.1f} s\n", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
