"""Where the gateway's time goes: py-spy samples the gateway process from outside, the
raw stacks are summarised here. py-spy pauses the process for each sample (blocking
mode: `--nonblocking` gives torn stacks on this machine), so profiles are taken in
separate runs from the throughput figures.

Idle samples (the event loop waiting in epoll) are excluded by py-spy, so shares are of
the CPU time the worker spends on requests.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

# Leaf frames of a thread that is waiting, not working. py-spy's own idle detection misses
# threads parked on a lock here (the default executor's workers), so they are dropped.
IDLE_LEAVES = ("Condition.wait (threading.py", "_worker (concurrent/futures/thread.py",
               "select (selectors.py", "EpollSelector.select (selectors.py", "Event.wait (threading.py",
               "_wait_for_tstate_lock (threading.py")

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^():]+?)(?::(?P<line>\d+))?\)$")


@dataclass
class Profile:
    samples: int
    self_by_area: list[tuple[str, float]]
    self_by_function: list[tuple[str, float]]
    inclusive_gateway: list[tuple[str, float]]
    inclusive_library: list[tuple[str, float]]
    raw_file: Path
    import_callers: list[tuple[str, float]]


def record(pyspy: str, pid: int, seconds: float, out: Path, *, subprocesses: bool = False) -> subprocess.Popen[bytes]:
    args = [pyspy, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
            "--format", "raw", "--output", str(out)]
    if subprocesses:
        args.append("--subprocesses")
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)  # noqa: S603


_REPO = str(Path(__file__).resolve().parents[1])


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3.11/", f"{_REPO}/"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def area(path: str) -> str:
    """A coarse owner for a source file: gateway module, or the library's top package."""
    short = _short(path)
    if short.startswith("functions/"):
        parts = short.split("/")
        return "gateway: " + "/".join(parts[:2] if len(parts) > 2 else parts).removesuffix(".py")
    if short.startswith("<frozen importlib"):
        return "importlib (import statements run per request)"
    top = short.split("/", 1)[0].removesuffix(".py")
    if top.startswith("<frozen ") or top in sys.stdlib_module_names:
        return "stdlib " + top.removeprefix("<frozen ").rstrip(">")
    return top


def _parse(line: str) -> tuple[list[tuple[str, str]], int] | None:
    line = line.rstrip()
    if not line or " " not in line:
        return None
    stack, count = line.rsplit(" ", 1)
    frames = []
    for frame in stack.split(";"):
        match = _FRAME.match(frame)
        if match is None:
            frames.append((frame, "?"))
        else:
            frames.append((match.group("func"), match.group("file")))
    return frames, int(count)


def summarise(raw: Path, top: int = 15) -> Profile:
    total = 0
    by_area: Counter[str] = Counter()
    by_function: Counter[str] = Counter()
    inc_gateway: Counter[str] = Counter()
    inc_library: Counter[str] = Counter()
    importers: Counter[str] = Counter()
    for line in raw.read_text().splitlines():
        parsed = _parse(line)
        if parsed is None:
            continue
        frames, count = parsed
        frames = [f for f in frames if not f[0].startswith(("process ", "thread "))]
        if not frames or line.rsplit(" ", 1)[0].split(";")[-1].startswith(IDLE_LEAVES):
            continue
        total += count
        func, path = frames[-1]
        by_area[area(path)] += count
        by_function[f"{func} ({_short(path)})"] += count
        for index, (func, path) in enumerate(frames):
            if path.startswith("<frozen importlib") and index > 0:
                caller, caller_path = frames[index - 1]
                importers[f"{caller} ({_short(caller_path)})"] += count
                break
        seen_g: set[str] = set()
        seen_l: set[str] = set()
        for func, path in frames:
            short = _short(path)
            name = f"{func} ({short})"
            if short.startswith("functions/"):
                seen_g.add(name)
            elif not area(path).startswith(("stdlib", "importlib", "uvicorn", "starlette", "fastapi", "click")):
                seen_l.add(f"{func} ({short.split('/', 1)[0]})")
        for name in seen_g:
            inc_gateway[name] += count
        for name in seen_l:
            inc_library[name] += count

    def shares(counter: Counter[str], limit: int = top) -> list[tuple[str, float]]:
        return [(name, 100 * n / total) for name, n in counter.most_common(limit)] if total else []

    return Profile(total, shares(by_area), shares(by_function), shares(inc_gateway), shares(inc_library), raw, shares(importers))
