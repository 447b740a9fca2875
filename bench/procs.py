"""Processes, ports and /proc sampling for the benchmark."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from functions.devtools.processes import free_port, stop_process, wait_for_ports

__all__ = ["free_port", "stop_process", "wait_for_ports", "rss_mb", "children", "CpuMeter",
           "RssSampler", "start", "ensure_tools"]

REPO = Path(__file__).resolve().parents[1]
CLK = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def children(pid: int) -> list[int]:
    """Child processes of `pid`, less multiprocessing's resource tracker (not a worker)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    def is_tracker(child: int) -> bool:
        try:
            return b"resource_tracker" in Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            return False
    return [c for c in found if not is_tracker(c)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK  # utime, stime


def system_busy_seconds() -> float:
    """CPU seconds all cores spent busy since boot (from /proc/stat)."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values[:8]) - idle) / CLK


class SystemCpuMeter:
    """Busy CPU of the whole machine between construction and `percent()` (100 = one core)."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.c0 = system_busy_seconds()

    def percent(self) -> float:
        return 100 * (system_busy_seconds() - self.c0) / max(1e-9, time.monotonic() - self.t0)


class CpuMeter:
    """CPU use of a process between construction and `percent()` (100 = one core)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.t0 = time.monotonic()
        self.c0 = self._read()

    def _read(self) -> float:
        try:
            return cpu_seconds(self.pid)
        except OSError:
            return 0.0

    def percent(self) -> float:
        c1 = self._read()
        return 100 * (c1 - self.c0) / max(1e-9, time.monotonic() - self.t0)


class RssSampler:
    """Samples the RSS of some pids from /proc every `interval` seconds in a thread."""

    def __init__(self, pids: list[int], interval: float = 0.02) -> None:
        self.pids = pids
        self.interval = interval
        self.samples: dict[int, list[float]] = {pid: [] for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid in self.pids:
                try:
                    self.samples[pid].append(rss_mb(pid))
                except OSError:
                    pass
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def peak(self, pid: int) -> float:
        return max(self.samples[pid], default=float("nan"))

    def mean(self, pid: int) -> float:
        values = self.samples[pid]
        return sum(values) / len(values) if values else float("nan")


def start(args: list[str], *, env: dict[str, str] | None = None, ports: list[int], log: Path,
          timeout: float = 60.0) -> subprocess.Popen[bytes]:
    """Start a process in its own session, output to `log`, and wait for its ports."""
    handle = log.open("ab")
    process = subprocess.Popen(  # noqa: S603 - fixed argument lists built here
        args, env=env, cwd=REPO, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_for_ports(ports, timeout, process)
    except Exception:
        stop_process(process)
        raise RuntimeError(f"{args[:4]} did not start; see {log}:\n{log.read_text()[-2000:]}") from None
    return process


def stop_gracefully(process: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    """SIGINT first (lets uvicorn and profilers finish), then the usual stop."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGINT)
            process.wait(timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    stop_process(process)


def _pip_has(module: str) -> bool:
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def ensure_tools(*, install: bool, log: list[str]) -> None:
    """wrk and nginx from Debian's packages (if root with apt-get); py-spy and pyinstrument
    from requirements-bench.txt into this interpreter's environment. Never fatal."""
    missing = [tool for tool in ("wrk", "nginx") if shutil.which(tool) is None and not Path(f"/usr/sbin/{tool}").exists()]
    if missing and install and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        cmd = ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], env=env, capture_output=True)
            done = subprocess.run(cmd, env=env, capture_output=True, text=True)
        log.append(f"apt-get install {' '.join(missing)}: exit {done.returncode}")
    if not (_pip_has("pyinstrument") and shutil.which("py-spy", path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", ""))):
        if install:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                 "-r", str(REPO / "requirements-bench.txt")], capture_output=True, text=True)
            log.append(f"pip install -r requirements-bench.txt: exit {done.returncode}")


def which(tool: str) -> str | None:
    found = shutil.which(tool, path=str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "") + ":/usr/sbin")
    return found
