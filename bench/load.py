"""One interface over the two load generators: wrk (if installed) or bench.loadgen."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field

from bench.procs import CpuMeter


@dataclass
class Load:
    url: str
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""


@dataclass
class LoadResult:
    rps: float
    p50_ms: float
    p99_ms: float
    requests: int
    errors: int
    non2xx: int
    tool: str
    loadgen_cpu_percent: float | None = None


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if match is None:
        raise ValueError(f"cannot parse wrk latency {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(output: str) -> LoadResult:
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"^\s+50%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"^\s+99%\s+(\S+)", output, re.M).group(1))  # type: ignore[union-attr]
    requests = int(re.search(r"(\d+) requests in", output).group(1))  # type: ignore[union-attr]
    errors = 0
    socket = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket:
        errors = sum(int(g) for g in socket.groups())
    non2xx_match = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    non2xx = int(non2xx_match.group(1)) if non2xx_match else 0
    return LoadResult(rps, p50, p99, requests, errors, non2xx, "wrk")


def _lua(load: Load) -> str:
    body = json.dumps(load.body)  # a valid Lua string literal for ASCII bodies
    return f'wrk.method = "{load.method}"\nwrk.body = {body}\n'


def run_load(load: Load, *, tool: str, connections: int, duration: float, threads: int = 2) -> LoadResult:
    meter = None
    if tool == "wrk":
        # wrk takes whole seconds only.
        args = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{max(1, round(duration))}s", "--latency", "--timeout", "10s"]
        for name, value in load.headers.items():
            args += ["-H", f"{name}: {value}"]
        script = None
        if load.method != "GET" or load.body:
            script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
            script.write(_lua(load))
            script.close()
            args += ["-s", script.name]
        args.append(load.url)
        try:
            process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            meter = CpuMeter(process.pid)
            output, _ = process.communicate(timeout=duration + 30)
            cpu = meter.percent()
        finally:
            if script is not None:
                os.unlink(script.name)
        if process.returncode != 0:
            raise RuntimeError(f"wrk failed: {output}")
        result = parse_wrk(output)
        result.loadgen_cpu_percent = cpu
        return result
    args = [sys.executable, "-m", "bench.loadgen", load.url, "--connections", str(connections),
            "--duration", str(duration), "--method", load.method, "--body", load.body]
    for name, value in load.headers.items():
        args += ["-H", f"{name}: {value}"]
    if load.body:
        args += ["-H", "Content-Type: application/json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=duration + 60, check=True)
    data = json.loads(done.stdout)
    return LoadResult(data["rps"], data["p50_ms"], data["p99_ms"], data["requests"], data["errors"],
                      data["non2xx"], "python", data["loadgen_cpu_percent"])
