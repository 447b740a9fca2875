"""Cold-start import cost: `function_app.py` against FastAPI + httpx alone.

Each measurement is a fresh interpreter (`python -c`), timing the import statement with
`perf_counter` (interpreter start-up excluded, the same for both). Runs alternate between
the two so drift affects both alike; the median of each is reported.
"""

from __future__ import annotations

import re
import statistics
import subprocess
import sys
from collections import defaultdict
from dataclasses import dataclass

from bench.procs import REPO

_TIMER = "import time; t = time.perf_counter(); {stmt}; print(time.perf_counter() - t)"
BASELINE = "import fastapi, httpx"
TARGET = "import function_app"


def _once(stmt: str) -> float:
    done = subprocess.run([sys.executable, "-c", _TIMER.format(stmt=stmt)], cwd=REPO,
                          capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


@dataclass
class ImportResult:
    baseline: list[float]
    target: list[float]
    top_self: list[tuple[str, float]]       # package -> self ms (summed over its modules)
    top_cumulative: list[tuple[str, float]]  # direct imports of function_app (cumulative ms)
    extra_packages: list[tuple[str, float]]  # packages imported that fastapi+httpx do not need

    @property
    def ratio(self) -> float:
        return statistics.median(self.target) / statistics.median(self.baseline)


def _importtime(stmt: str) -> list[tuple[int, int, str]]:
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", stmt], cwd=REPO,
                          capture_output=True, text=True, check=True)
    rows = []
    for line in done.stderr.splitlines():
        match = re.match(r"import time:\s+(\d+) \|\s+(\d+) \|( *)(\S+)", line)
        if match:
            rows.append((int(match.group(1)), int(match.group(2)), match.group(3) + match.group(4)))
    return rows


def _by_package(rows: list[tuple[int, int, str]]) -> dict[str, float]:
    totals: dict[str, float] = defaultdict(float)
    for self_us, _cum, name in rows:
        module = name.strip()
        parts = module.split(".")
        package = ".".join(parts[:2]) if parts[0] in ("azure", "functions") else parts[0]
        totals[package] += self_us / 1000
    return totals


def measure(repetitions: int = 7) -> ImportResult:
    _once(BASELINE), _once(TARGET)  # warm the file cache and .pyc files
    baseline, target = [], []
    for _ in range(repetitions):
        baseline.append(_once(BASELINE))
        target.append(_once(TARGET))
    rows = _importtime(TARGET)
    base_rows = _importtime(BASELINE)
    packages = _by_package(rows)
    base_packages = set(_by_package(base_rows))
    top_self = sorted(packages.items(), key=lambda kv: -kv[1])[:15]
    extra = sorted(((p, ms) for p, ms in packages.items() if p not in base_packages), key=lambda kv: -kv[1])[:15]
    # Direct children of the top-level statement: one space of indentation.
    # Children and grandchildren of `function_app` (nesting shown by two spaces a level).
    direct = [(name.strip(), cum / 1000) for _s, cum, name in rows if re.match(r"^ {3}\S|^ {5}\S", name)]
    top_cum = sorted(direct, key=lambda kv: -kv[1])[:12]
    return ImportResult(baseline, target, top_self, top_cum, extra)
