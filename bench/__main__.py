"""`make bench` = `python -m bench`: run every benchmark and write bench/RESULTS.md.

See bench/README.md for what each scenario is and how to read the numbers.
"""

from __future__ import annotations

import argparse
import os
import secrets
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import egress, imports, profiling, report
from bench.load import Load, LoadResult, run_load
from bench.nginx import Nginx, start_nginx
from bench.procs import (
    REPO,
    CpuMeter,
    RssSampler,
    SystemCpuMeter,
    children,
    ensure_tools,
    free_port,
    rss_mb,
    start,
    stop_process,
    which,
)

OUT = REPO / "bench" / "out"
INFOBIP = "custom-connectors/Infobip"  # basic auth + two setqueryparameter policies on CheckCurrentBalance
OPERATION = "CheckCurrentBalance"  # GET /account/1/balance
STREAM_BYTES = 100 * 1024 * 1024


@dataclass
class Scenario:
    name: str
    group: str
    target: str
    result: LoadResult
    server_cpu_percent: float | None = None
    rss_idle_mb: float | None = None
    rss_load_mb: float | None = None  # mean under load, per worker
    rss_peak_mb: float | None = None
    workers: int = 1
    server_pids: list[int] = field(default_factory=list)
    machine_cpu_percent: float | None = None

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu_percent is None or not self.result.rps:
            return None
        return self.server_cpu_percent / 100 / self.result.rps * 1e6


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.notes: list[str] = []
        self.scenarios: list[Scenario] = []
        self.extra: dict[str, Any] = {}
        OUT.mkdir(parents=True, exist_ok=True)
        for pattern in ("gateway-*.log", "passthrough-*.log", "nginx.log", "upstream.log"):
            for old in OUT.glob(pattern):
                old.unlink()

    # ---------------------------------------------------------------- helpers

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.t0:6.1f}s] {message}", flush=True)

    def load(self, load: Load, duration: float | None = None) -> LoadResult:
        return run_load(load, tool=self.tool, connections=self.args.connections,
                        duration=duration or self.args.duration)

    def scenario(self, name: str, group: str, target: str, load: Load, pids: list[int], *,
                 workers: int = 1) -> Scenario:
        """Warm up, then measure in one go (used where nothing is compared side by side)."""
        return self.interleaved([(name, group, target, load, pids, workers)], rounds=1)[0]

    def interleaved(self, specs: list[tuple[str, str, str, Load, list[int], int]], rounds: int) -> list[Scenario]:
        """Warm every spec up, then measure them in `rounds` alternating slices of
        duration/rounds seconds each, so that a slow spell of the machine (other work on
        it) falls on all of them alike. req/s = all requests / all measured seconds;
        p50 and p99 = the mean of the slices' percentiles."""
        for spec in specs:
            self.load(spec[3], self.args.warmup)  # warm-up (caches, pools), discarded
        slices: dict[str, list[tuple[LoadResult, float, float, float, dict[int, float], RssSampler]]] = {s[0]: [] for s in specs}
        seconds = self.args.duration / rounds
        for _ in range(rounds):
            for name, _group, _target, load, pids, _workers in specs:
                idle = {pid: rss_mb(pid) for pid in pids}
                meters = [CpuMeter(pid) for pid in pids]
                machine = SystemCpuMeter()
                with RssSampler(pids, interval=0.1) as sampler:
                    result = self.load(load, seconds)
                cpu = sum(m.percent() for m in meters)
                slices[name].append((result, cpu, machine.percent(), seconds, idle, sampler))
        out = []
        for name, group, target, load, pids, workers in specs:
            parts = slices[name]
            requests = sum(p[0].requests for p in parts)
            total = sum(p[3] for p in parts)
            merged = LoadResult(
                rps=sum(p[0].rps * p[3] for p in parts) / total,
                p50_ms=statistics.mean(p[0].p50_ms for p in parts),
                p99_ms=statistics.mean(p[0].p99_ms for p in parts),
                requests=requests, errors=sum(p[0].errors for p in parts), non2xx=sum(p[0].non2xx for p in parts),
                tool=parts[0][0].tool,
                loadgen_cpu_percent=statistics.mean(p[0].loadgen_cpu_percent or 0 for p in parts),
            )
            cpu = statistics.mean(p[1] for p in parts) if pids else None
            sc = Scenario(name, group, target, merged, cpu, workers=workers, server_pids=pids)
            sc.machine_cpu_percent = statistics.mean(p[2] for p in parts)
            if pids:
                sc.rss_idle_mb = statistics.mean(statistics.mean(p[4].values()) for p in parts)
                sc.rss_load_mb = statistics.mean(statistics.mean(p[5].mean(x) for x in pids) for p in parts)
                sc.rss_peak_mb = max(max(p[5].peak(x) for x in pids) for p in parts)
            if merged.errors + merged.non2xx:
                self.notes.append(f"{name}: {merged.non2xx} non-2xx responses and {merged.errors} socket errors "
                                  f"out of {merged.requests}")
            self.scenarios.append(sc)
            out.append(sc)
            self.log(f"{name:52s} {merged.rps:8.0f} req/s  p50 {merged.p50_ms:7.2f} ms  p99 {merged.p99_ms:7.2f} ms"
                     + (f"  server CPU {cpu:4.0f}%" if cpu is not None else "")
                     + f"  machine CPU {sc.machine_cpu_percent:4.0f}%")
        return out

    def gateway_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
        env.update({
            "GATEWAY_ENVIRONMENT": "development",
            "GATEWAY_STORAGE_CONNECTION_STRING": self.azurite_ports.connection_string(),
            "GATEWAY_TABLE_PREFIX": self.table_prefix,
            "GATEWAY_SECRET_STORE": "keyvault",
            "GATEWAY_KEY_VAULT_URL": self.kv.url,
            "GATEWAY_KEY_VAULT_CA_FILE": self.kv.ca_file,
            "GATEWAY_DEV_ISSUER_PRIVATE_KEY": self.dev_key,
            "GATEWAY_PUBLIC_BASE_URL": "http://127.0.0.1:7071",
            # The bench upstreams listen on loopback; the load is far above a real
            # connection's per-minute limit (the limits are measured, not the subject).
            "GATEWAY_EGRESS_ALLOW_LOOPBACK": "true",
            "GATEWAY_CONNECTION_CALLS_PER_MINUTE": "100000000",
            "GATEWAY_CONNECTION_MAX_CONCURRENT": "100000",
            "PYTHONDONTWRITEBYTECODE": "1",
        })
        return env

    def start_gateway(self, workers: int, server: str = "uvicorn") -> tuple[subprocess.Popen[bytes], int, list[int]]:
        """`server`: "uvicorn" (the same uvicorn command line as every other Python
        server here), "asyncio-h11" (that command with the asyncio loop and h11: what
        `make run` served with before requirements-serve.txt), or "serve" (the production
        server, `python -m functions serve`)."""
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", "functions.app:create_app", "--factory",
                "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning", "--no-access-log"]
        if server == "asyncio-h11":
            args += ["--loop", "asyncio", "--http", "h11"]
        if server == "serve":
            args = [sys.executable, "-m", "functions", "serve", "--host", "127.0.0.1", "--port", str(port),
                    "--workers", str(workers), "--log-level", "warning"]
        elif workers > 1:  # one socket per worker: bench/workers.py says why
            args = [sys.executable, "-m", "bench.workers", "functions.app:create_app", "--factory",
                    "--port", str(port), "--workers", str(workers)]
        process = start(args, env=self.gateway_env(), ports=[port], log=OUT / f"gateway-{server}-{workers}w.log")
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        ok = 0
        while ok < 2 * workers:  # every worker answers once its lifespan has run
            try:
                ok += httpx.get(url + "/api/health", timeout=5).status_code == 200
            except httpx.HTTPError:
                time.sleep(0.1)
            if time.monotonic() > deadline:
                raise RuntimeError("gateway did not become healthy")
        pids = [process.pid] if workers == 1 else children(process.pid)
        if workers > 1:
            deadline = time.monotonic() + 30
            while len(pids) < workers and time.monotonic() < deadline:
                time.sleep(0.1)
                pids = children(process.pid)
        return process, port, pids

    def start_aiohttp_proxy(self, upstream: str) -> tuple[subprocess.Popen[bytes], int, list[int]]:
        port = free_port()
        env = {**os.environ, "BENCH_UPSTREAM_URL": upstream}
        process = start([sys.executable, "-m", "bench.aiohttp_proxy", "--port", str(port)], env=env,
                        ports=[port], log=OUT / f"aiohttp-proxy-{port}.log")
        for _ in range(4):
            httpx.get(f"http://127.0.0.1:{port}/v1/items/1", timeout=10).raise_for_status()
        return process, port, [process.pid]

    def start_passthrough(self, upstream: str, workers: int = 1, transport: str = "",
                          app: str = "bench.passthrough:app") -> tuple[subprocess.Popen[bytes], int, list[int]]:
        port = free_port()
        args = [sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1",
                "--port", str(port), "--log-level", "warning", "--no-access-log"]
        if workers > 1:
            args = [sys.executable, "-m", "bench.workers", "bench.passthrough:app",
                    "--port", str(port), "--workers", str(workers)]
        env = {**os.environ, "BENCH_UPSTREAM_URL": upstream, "BENCH_PASSTHROUGH_TRANSPORT": transport}
        process = start(args, env=env, ports=[port], log=OUT / f"passthrough-{port}.log")
        url = f"http://127.0.0.1:{port}/v1/items/1"
        for _ in range(4 * workers):
            httpx.get(url, timeout=10).raise_for_status()
        pids = [process.pid] if workers == 1 else children(process.pid)
        return process, port, pids

    # ---------------------------------------------------------------- gateway data

    def setup_gateway_data(self, gateway_url: str) -> None:
        from functions.identity.dev_issuer import mint_token

        def import_folder(client: httpx.Client, folder: Path, base_url: str) -> dict[str, Any]:
            """`POST /api/connectors/import`, as tests/api/test_import.py does."""
            files = {"apiDefinition": ("apiDefinition.swagger.json", (folder / "apiDefinition.swagger.json").read_bytes()),
                     "apiProperties": ("apiProperties.json", (folder / "apiProperties.json").read_bytes())}
            response = client.post("/api/connectors/import", files=files, data={"baseUrl": base_url})
            if response.status_code != 201:
                raise RuntimeError(f"import of {folder.name} failed: {response.status_code} {response.text[:500]}")
            result: dict[str, Any] = response.json()
            return result

        connectors_dir = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "connectors"
        self.token = mint_token(self.dev_key, user="bench", lifetime_seconds=4 * 3600)
        self.auth = {"Authorization": f"Bearer {self.token}"}
        ids: dict[str, str] = {}
        with httpx.Client(base_url=gateway_url, headers=self.auth, timeout=30, trust_env=False) as client:
            def native(name: str, base: str) -> str:
                connector = client.post("/api/connectors", json={
                    "name": name, "baseUrl": base,
                    "auth": {"type": "apiKey", "in": "header", "name": "X-API-Key"}})
                connector.raise_for_status()
                connection = client.post(f"/api/connectors/{connector.json()['id']}/connections",
                                         json={"displayName": name, "parameters": {"api_key": "bench-key-" + name}})
                connection.raise_for_status()
                return str(connection.json()["id"])

            def imported(base: str) -> str:
                connector = import_folder(client, connectors_dir / INFOBIP, base)
                connection = client.post(f"/api/connectors/{connector['id']}/connections", json={
                    "displayName": "infobip", "parameters": {"username": "bench", "password": "bench-pw"}})
                connection.raise_for_status()
                return str(connection.json()["id"])

            ids["native_primary"] = native("primary", self.primary_url)
            # A second connection of the same connector: what a connection costs cold on
            # an instance that has already seen its connector.
            connector_id = client.get(f"/api/connections/{ids['native_primary']}").json()["connectorId"]
            second = client.post(
                f"/api/connectors/{connector_id}/connections",
                json={"displayName": "primary 2", "parameters": {"api_key": "bench-key-primary-2"}})
            second.raise_for_status()
            ids["native_primary_2"] = str(second.json()["id"])
            ids["native_asgi"] = native("asgi", self.asgi_url)
            ids["imported_primary"] = imported(self.primary_url)
            ids["imported_echo"] = imported(self.asgi_url + "/echo")
            self.ids = ids
            # Sanity: what the upstream receives (credential and both policies applied).
            echo = client.get(f"/api/connections/{ids['native_asgi']}/invoke/echo/v1/items/1?x=1").json()
            headers = {k.lower(): v for k, v in echo["headers"]}
            assert echo["path"] == "/echo/v1/items/1" and headers.get("x-api-key") == "bench-key-asgi", echo
            assert "authorization" not in headers, echo
            op = client.post(f"/api/connections/{ids['imported_echo']}/operations/{OPERATION}",
                             json={"parameters": {}}).json()
            query = dict(httpx.QueryParams(op["query"]))
            headers = {k.lower(): v for k, v in op["headers"]}
            assert op["path"] == "/echo/account/1/balance", op
            assert query == {"piIntegrator": "89", "piPlatform": "5vqd"}, op
            assert headers["authorization"].startswith("Basic "), op
            raw = client.get(f"/api/connections/{ids['imported_echo']}/invoke/account/1/balance").json()
            assert dict(httpx.QueryParams(raw["query"])) == query, raw
        self.notes.append(
            "sanity (via the echo path of the ASGI upstream): the native connection sends `X-API-Key` and no "
            f"`Authorization`; the imported {INFOBIP} operation `{OPERATION}` sends Basic auth and both "
            "setqueryparameter policies (`piIntegrator=89`, `piPlatform=5vqd`), through the operation route "
            "and through the raw invoke route")

    # ---------------------------------------------------------------- sections

    def run(self) -> int:
        self.t0 = time.monotonic()
        started = datetime.now(UTC)
        args = self.args
        ensure_tools(install=not args.no_install, log=self.notes)
        wrk, nginx_bin, pyspy = which("wrk"), which("nginx"), which("py-spy")
        self.tool = "wrk" if wrk and args.loadgen != "python" else "python"
        self.log(f"load generator: {self.tool}; nginx: {nginx_bin or 'missing'}; py-spy: {pyspy or 'missing'}")

        from functions.devtools.azurite import AzuritePorts, start_azurite
        from functions.identity.dev_issuer import generate_private_key_pem
        from tests.doubles.keyvault import KeyVaultDouble

        with ExitStack() as stack:
            self.azurite_ports = AzuritePorts.free()
            azurite = start_azurite(self.azurite_ports)
            stack.callback(stop_process, azurite)
            self.kv = KeyVaultDouble().start()
            stack.callback(self.kv.stop)
            self.dev_key = generate_private_key_pem()
            self.table_prefix = "bench" + secrets.token_hex(4)

            asgi_port = free_port()
            asgi = start([sys.executable, "-m", "bench.upstream", str(asgi_port)], ports=[asgi_port],
                         log=OUT / "upstream.log")
            stack.callback(stop_process, asgi)
            self.asgi_url = f"http://127.0.0.1:{asgi_port}"
            nginx: Nginx | None = None
            if nginx_bin:
                try:
                    nginx = start_nginx(nginx_bin, OUT)
                    stack.callback(nginx.stop)
                except Exception as exc:  # noqa: BLE001 - fall back to the ASGI upstream
                    self.notes.append(f"nginx did not start ({exc}); ASGI upstream only")
            self.primary_url = nginx.fixed_url if nginx else self.asgi_url
            self.primary_name = "nginx (fixed response)" if nginx else "ASGI upstream"
            self.log(f"Azurite, Key Vault double, upstream(s) up; primary upstream: {self.primary_name}")

            if self.tool == "python":
                self.calibrate_loadgen(nginx)

            # Every server of the side-by-side comparison runs at once (idle when not
            # loaded); the scenarios are measured in alternating rounds.
            path = "/v1/items/1?x=1"
            pt, pt_port, pt_pids = self.start_passthrough(self.primary_url)
            stack.callback(stop_process, pt)
            if nginx:
                pt2, pt2_port, pt2_pids = self.start_passthrough(self.asgi_url)
                stack.callback(stop_process, pt2)
            # The same floor with httpx's default transport (httpcore's pool): what the
            # gateway's choice of transport is worth (functions/upstream/client.py).
            pt3, pt3_port, pt3_pids = self.start_passthrough(self.primary_url, transport="httpcore")
            stack.callback(stop_process, pt3)
            # ... and with the gateway's two hot-path shortcuts (plain route, small
            # answers whole): the ratio against it is the cost of the gateway's own work.
            pt4, pt4_port, pt4_pids = self.start_passthrough(self.primary_url, app="bench.passthrough:lean_app")
            stack.callback(stop_process, pt4)
            pt5, pt5_port, pt5_pids = self.start_aiohttp_proxy(self.primary_url)
            stack.callback(stop_process, pt5)
            gw, gw_port, gw_pids = self.start_gateway(1)
            stack.callback(stop_process, gw)
            # The gateway served the way `make run` served before (asyncio loop, h11), and
            # by the production server (`python -m functions serve`), one worker each.
            gwo, gwo_port, gwo_pids = self.start_gateway(1, server="asyncio-h11")
            stack.callback(stop_process, gwo)
            gws, gws_port, gws_pids = self.start_gateway(1, server="serve")
            stack.callback(stop_process, gws)
            gw_url = f"http://127.0.0.1:{gw_port}"
            self.setup_gateway_data(gw_url)
            self.extra["gateway_rss_fresh_mb"] = rss_mb(gw_pids[0])
            self.extra["loadavg_start"] = Path("/proc/loadavg").read_text().split()[:3]
            kv_before = self.kv.count()
            conn = f"{gw_url}/api/connections"
            native_load = Load(f"{conn}/{self.ids['native_primary']}/invoke{path}", headers=self.auth)
            operation_load = Load(f"{conn}/{self.ids['imported_primary']}/operations/{OPERATION}", method="POST",
                                  headers={**self.auth, "Content-Type": "application/json"}, body='{"parameters": {}}')
            raw_imported_load = Load(f"{conn}/{self.ids['imported_primary']}/invoke/account/1/balance", headers=self.auth)
            specs: list[tuple[str, str, str, Load, list[int], int]] = []
            nginx_pids = (children(nginx.process.pid) or [nginx.process.pid]) if nginx else []
            if nginx:  # 1. direct
                specs.append(("direct: nginx fixed response", "direct", "nginx", Load(nginx.fixed_url + path), nginx_pids, 1))
            specs.append(("direct: ASGI upstream (uvicorn)", "direct", "asgi", Load(self.asgi_url + path), [asgi.pid], 1))
            # 2. passthrough
            specs.append(("passthrough -> primary", "passthrough", "primary", Load(f"http://127.0.0.1:{pt_port}{path}"), pt_pids, 1))
            if nginx:
                specs.append(("passthrough -> ASGI upstream", "passthrough", "asgi", Load(f"http://127.0.0.1:{pt2_port}{path}"), pt2_pids, 1))
            specs.append(("passthrough, httpx default transport -> primary", "passthrough-httpcore", "primary",
                          Load(f"http://127.0.0.1:{pt3_port}{path}"), pt3_pids, 1))
            specs.append(("passthrough, lean (plain route, small answers whole) -> primary", "passthrough-lean",
                          "primary", Load(f"http://127.0.0.1:{pt4_port}{path}"), pt4_pids, 1))
            specs.append(("aiohttp proxy (aiohttp server and client, for information) -> primary", "aiohttp",
                          "primary", Load(f"http://127.0.0.1:{pt5_port}{path}"), pt5_pids, 1))
            # 3. gateway, one worker
            specs.append(("gateway invoke (API key) -> primary", "gateway", "primary", native_load, gw_pids, 1))
            specs.append(("gateway invoke, asyncio loop + h11 (make run before) -> primary", "gateway-asyncio-h11",
                          "primary", Load(f"http://127.0.0.1:{gwo_port}/api/connections/{self.ids['native_primary']}/invoke{path}",
                                          headers=self.auth), gwo_pids, 1))
            specs.append(("gateway invoke, python -m functions serve (1 worker) -> primary", "gateway-serve",
                          "primary", Load(f"http://127.0.0.1:{gws_port}/api/connections/{self.ids['native_primary']}/invoke{path}",
                                          headers=self.auth), gws_pids, 1))
            if nginx:
                specs.append(("gateway invoke (API key) -> ASGI upstream", "gateway", "asgi",
                              Load(f"{conn}/{self.ids['native_asgi']}/invoke{path}", headers=self.auth), gw_pids, 1))
            specs.append((f"gateway operation {OPERATION} (2 policies) -> primary", "gateway-op", "primary", operation_load, gw_pids, 1))
            specs.append(("gateway raw invoke of that operation -> primary", "gateway-op", "primary", raw_imported_load, gw_pids, 1))
            if nginx:  # 4. nginx proxy
                specs.append(("nginx proxy_pass + header -> primary", "nginx", "primary", Load(nginx.proxy_url + path), nginx_pids, 1))
            self.interleaved(specs, rounds=self.args.rounds)
            self.extra["kv_calls_during_load"] = self.kv.count() - kv_before
            if nginx:
                stop_process(pt2)
            stop_process(pt3)
            stop_process(pt4)
            stop_process(pt5)
            stop_process(gwo)
            stop_process(gws)

            # -- profile (separate runs: py-spy must not perturb the figures above)
            if pyspy:
                self.profiles = {}
                for label, load in (("invoke", native_load), ("operation", operation_load)):
                    try:
                        self.profiles[label] = self.profile(pyspy, gw_pids[0], load, label)
                    except Exception as exc:  # noqa: BLE001
                        self.notes.append(f"profile of {label} failed: {exc}")
            else:
                self.notes.append("py-spy missing: no profile")

            # -- streaming 100 MB
            self.extra["streaming"] = self.streaming(gw_url, gw_pids[0], pt_port, pt_pids[0])

            # -- scaling: 2 workers, measured in the same alternating rounds as one worker
            # (the ratio would otherwise compare runs minutes apart on a shared machine).
            gw2, gw2_port, gw2_pids = self.start_gateway(2)
            stack.callback(stop_process, gw2)
            pt2w, pt2w_port, pt2w_pids = self.start_passthrough(self.primary_url, workers=2)
            stack.callback(stop_process, pt2w)
            kv_before = self.kv.count()
            self.interleaved([
                ("gateway invoke, 1 worker (scaling rounds) -> primary", "scaling-1", "primary", native_load, gw_pids, 1),
                ("gateway invoke, 2 workers -> primary", "scaling", "primary",
                 Load(f"http://127.0.0.1:{gw2_port}/api/connections/{self.ids['native_primary']}/invoke{path}",
                      headers=self.auth), gw2_pids, 2),
                ("passthrough, 1 worker (scaling rounds) -> primary", "scaling-1", "primary",
                 Load(f"http://127.0.0.1:{pt_port}{path}"), pt_pids, 1),
                ("passthrough, 2 workers -> primary", "scaling", "primary",
                 Load(f"http://127.0.0.1:{pt2w_port}{path}"), pt2w_pids, 2),
            ], rounds=self.args.rounds)
            self.extra["kv_calls_2_workers"] = self.kv.count() - kv_before
            for process in (gw2, pt2w, gw, pt):
                stop_process(process)

            # -- Table and Key Vault calls, counted in the gateway's own stores (in process)
            self.extra["counters"] = self.count_calls()

        # -- the outbound address policy's own cost (issue 12), in process
        self.log("outbound address policy cost")
        self.extra["egress"] = egress.measure()

        # -- cold start imports (nothing else running)
        self.log("import times (fresh interpreters)")
        self.extra["imports"] = imports.measure(args.import_reps)
        self.extra["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        elapsed = time.monotonic() - self.t0
        command = "make bench" if os.environ.get("MAKELEVEL") else " ".join([".venv/bin/python -m bench", *sys.argv[1:]])
        text = report.render(self, started, elapsed, command)
        out = Path(args.output)
        text = report.keep_hand_notes(out, text)
        out.write_text(text)
        self.log(f"wrote {out} ({elapsed:.0f} s)")
        return 0

    def calibrate_loadgen(self, nginx: Nginx | None) -> None:
        url = (nginx.fixed_url if nginx else self.asgi_url) + "/v1/items/1"
        result = self.load(Load(url), 5)
        self.extra["loadgen_ceiling"] = (url, result)
        self.log(f"python load generator ceiling: {result.rps:.0f} req/s at {result.loadgen_cpu_percent:.0f}% CPU")

    def profile(self, pyspy: str, pid: int, load: Load, label: str) -> profiling.Profile:
        seconds = self.args.profile_seconds
        raw = OUT / f"profile-{label}.txt"
        self.load(load, 1)
        recorder = profiling.record(pyspy, pid, seconds, raw)
        time.sleep(0.3)
        self.load(load, seconds + 1)
        _, err = recorder.communicate(timeout=60)
        if recorder.returncode != 0 or not raw.exists():
            raise RuntimeError(err.decode(errors="replace")[-500:])
        summary = profiling.summarise(raw)
        self.log(f"profile {label}: {summary.samples} samples -> {raw.relative_to(REPO)}")
        return summary

    def streaming(self, gw_url: str, gw_pid: int, pt_port: int, pt_pid: int) -> dict[str, Any]:
        results: dict[str, Any] = {}
        gw = f"{gw_url}/api/connections/{self.ids['native_asgi']}/invoke/bytes/{STREAM_BYTES}"
        pt = f"http://127.0.0.1:{pt_port}/bytes/{STREAM_BYTES}"
        pt_proc = None
        if not self.primary_url == self.asgi_url:  # passthrough for streaming must target the ASGI upstream
            pt_proc, port, pids = self.start_passthrough(self.asgi_url)
            pt, pt_pid = f"http://127.0.0.1:{port}/bytes/{STREAM_BYTES}", pids[0]
        cases = [("gateway, fast reader", gw, gw_pid, None, self.auth),
                 ("gateway, slow reader (~40 MB/s)", gw, gw_pid, 40.0, self.auth),
                 ("passthrough, fast reader", pt, pt_pid, None, {})]
        for label, url, pid, rate, headers in cases:
            before = rss_mb(pid)
            received = 0
            start = time.monotonic()
            with RssSampler([pid], interval=0.01) as sampler, \
                    httpx.Client(timeout=60, trust_env=False) as client, \
                    client.stream("GET", url, headers=headers) as response:
                response.raise_for_status()
                for chunk in response.iter_raw(65536):
                    received += len(chunk)
                    if rate:
                        expected = received / (rate * 1024 * 1024)
                        lag = expected - (time.monotonic() - start)
                        if lag > 0:
                            time.sleep(lag)
            elapsed = time.monotonic() - start
            after = rss_mb(pid)
            results[label] = {"bytes": received, "seconds": elapsed, "rss_before_mb": before,
                              "rss_peak_mb": sampler.peak(pid), "rss_after_mb": after,
                              "growth_mb": sampler.peak(pid) - before}
            self.log(f"stream {label}: {received / 2**20:.0f} MiB in {elapsed:.1f} s, RSS {before:.1f} -> "
                     f"peak {sampler.peak(pid):.1f} MB")
            assert received == STREAM_BYTES, received
        if pt_proc is not None:
            stop_process(pt_proc)
        return results

    def count_calls(self, n: int = 1000) -> dict[str, Any]:
        """A fresh gateway instance in this process (uvicorn in a thread, same storage and
        Key Vault double), so its stores' own counters can be read between calls."""
        from functions.app import create_app
        from functions.settings import Settings
        from tests.servers import ThreadedServer

        settings = Settings.from_env(self.gateway_env())
        server = ThreadedServer(create_app(settings)).start()
        try:
            gateway = server.config.app.state.gateway
            # The audit trail writes Table inserts off the request path; count them by
            # wrapping this instance's audit table client here.
            from functions.stores.audit import FLUSH_SECONDS

            audit = gateway.audit
            audit_calls = [0]
            original = audit._table.create_entity

            def counted(*a: Any, **k: Any) -> Any:
                audit_calls[0] += 1
                return original(*a, **k)

            audit._table.create_entity = counted  # type: ignore[method-assign]

            def snapshot() -> dict[str, int]:
                time.sleep(FLUSH_SECONDS + 0.5)  # let the audit writer's interval go out
                c = gateway.metadata.counters
                return {"table_reads": c.reads, "table_queries": c.queries, "table_writes": c.writes,
                        "share_queries": gateway.shares.reads,
                        "definition_reads": getattr(getattr(gateway.connectors, "_definitions", None), "reads", 0),
                        "secret_reads": gateway.secrets.reads, "secret_hits": gateway.secrets.hits,
                        "kv_requests": self.kv.count(), "kv_gets": self.kv.count("GET"),
                        "audit_transactions": audit_calls[0],
                        "audit_entities": getattr(audit, "written", 0)}

            def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
                return {k: b[k] - a[k] for k in a}

            phases: dict[str, Any] = {}
            with httpx.Client(base_url=server.url, headers=self.auth, timeout=30, trust_env=False) as client:
                calls = {
                    "invoke/{path}, API-key connection": lambda: client.get(
                        f"/api/connections/{self.ids['native_primary']}/invoke/v1/items/1?x=1"),
                    f"operation {OPERATION} (imported, 2 policies)": lambda: client.post(
                        f"/api/connections/{self.ids['imported_primary']}/operations/{OPERATION}",
                        json={"parameters": {}}),
                }
                for label, call in calls.items():
                    s0 = snapshot()
                    call().raise_for_status()
                    s1 = snapshot()
                    start = time.monotonic()
                    for _ in range(n):
                        call().raise_for_status()
                    s2 = snapshot()
                    phases[label] = {"cold": diff(s0, s1), "warm": diff(s1, s2), "warm_seconds": time.monotonic() - start}
                    if label.startswith("invoke/"):
                        client.get(f"/api/connections/{self.ids['native_primary_2']}/invoke/v1/items/1?x=1").raise_for_status()
                        phases[label]["cold2"] = diff(s2, snapshot())
            phases["_n"] = n
            phases["_cache_seconds"] = settings.metadata_cache_seconds
            self.log(f"counters: {phases}")
            return phases
        finally:
            server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--duration", type=float, default=12.0, help="seconds per measured scenario")
    parser.add_argument("--warmup", type=float, default=5.0, help="seconds of discarded warm-up per scenario")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=4, help="alternating slices per side-by-side scenario")
    parser.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument("--profile-seconds", type=float, default=8.0)
    parser.add_argument("--import-reps", type=int, default=7)
    parser.add_argument("--no-install", action="store_true", help="do not apt-get/pip install missing tools")
    parser.add_argument("--output", default=str(REPO / "bench" / "RESULTS.md"))
    args = parser.parse_args(argv)
    os.chdir(REPO)
    sys.path.insert(0, str(REPO))
    return Bench(args).run()


if __name__ == "__main__":
    sys.exit(main())
