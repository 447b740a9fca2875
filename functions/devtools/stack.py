"""This checkout's local stack: its own Azurite on remembered ports, its data in the checkout.

`python -m functions dev` (`make run`) keeps its state in `<data dir>/stack.json`
(`.localdata/` at the checkout's root by default):

* the Azurite ports it chose (free ports, kept across restarts so the data and the
  connection string stay valid) and the process ids it started;
* the environment overrides it computed (connection string, public URL, ...), so that
  `python -m functions refresh-due` or `cleanup` reach the same storage.

Azurite's data lives in `<data dir>/azurite`, so two checkouts never share data. A port
that something else listens on is never silently reused: the stack says so on stderr and
moves to new ports. An Azurite left behind by an earlier run of this same checkout (its
command line names this checkout's data folder) is stopped and started afresh.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from functions.devtools.azurite import REPO_ROOT, AzuritePorts, start_azurite
from functions.devtools.processes import port_open

DEFAULT_DATA_DIR = REPO_ROOT / ".localdata"
STATE_FILE = "stack.json"


class StackError(Exception):
    """The local stack cannot start; the message says why and what to do."""


@dataclass
class StackState:
    """What `stack.json` remembers."""

    azurite_ports: AzuritePorts | None = None
    azurite_pid: int | None = None
    dev_pid: int | None = None
    gateway_url: str | None = None
    environment: dict[str, str] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, data_dir: Path) -> StackState:
        try:
            document = json.loads((data_dir / STATE_FILE).read_text("utf-8"))
        except (OSError, ValueError):
            return cls()
        if not isinstance(document, dict):
            return cls()
        ports = document.get("azurite")
        azurite_ports = None
        if isinstance(ports, dict) and all(
            isinstance(ports.get(k), int) for k in ("blob", "queue", "table")
        ):
            azurite_ports = AzuritePorts(ports["blob"], ports["queue"], ports["table"])
        environment = document.get("environment")
        extra = document.get("extra")
        return cls(
            azurite_ports=azurite_ports,
            azurite_pid=_int_or_none(document.get("azuritePid")),
            dev_pid=_int_or_none(document.get("devPid")),
            gateway_url=document.get("gatewayUrl")
            if isinstance(document.get("gatewayUrl"), str)
            else None,
            environment={str(k): str(v) for k, v in environment.items()}
            if isinstance(environment, dict)
            else {},
            extra=dict(extra) if isinstance(extra, dict) else {},
        )

    def save(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        document = {
            "azurite": None
            if self.azurite_ports is None
            else {
                "blob": self.azurite_ports.blob,
                "queue": self.azurite_ports.queue,
                "table": self.azurite_ports.table,
            },
            "azuritePid": self.azurite_pid,
            "devPid": self.dev_pid,
            "gatewayUrl": self.gateway_url,
            "environment": self.environment,
            "extra": self.extra,
        }
        path = data_dir / STATE_FILE
        temporary = path.with_suffix(".tmp")
        temporary.write_text(json.dumps(document, indent=2) + "\n", "utf-8")
        os.chmod(temporary, 0o600)
        temporary.replace(path)


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def command_line(pid: int) -> str | None:
    """The process's command line (arguments joined by spaces), None when not running."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except FileNotFoundError:
        return None
    except OSError:
        raw = b""
    if raw:
        return raw.replace(b"\0", b" ").decode("utf-8", "replace").strip()
    # No /proc (macOS) or an unreadable entry: ask ps.
    try:
        result = subprocess.run(  # noqa: S603 - fixed arguments
            ["ps", "-o", "command=", "-p", str(pid)],  # noqa: S607 - ps from PATH
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.strip() or None


def is_our_azurite(pid: int | None, location: Path) -> bool:
    """True when `pid` is an Azurite whose data folder is `location` (this checkout's)."""
    if pid is None:
        return False
    line = command_line(pid)
    return line is not None and "azurite" in line and f"--location {location}" in line


def is_dev_process(pid: int | None, data_dir: Path) -> bool:
    """True when `pid` is another running `python -m functions dev` of this stack (its
    command line names `data_dir`, or it runs in the checkout that holds it): a recycled
    pid of another checkout's `make run` is not mistaken for ours."""
    if pid is None or pid == os.getpid():
        return False
    line = command_line(pid)
    if line is None or "functions dev" not in line:
        return False
    if str(data_dir) in line:
        return True
    try:
        return Path(f"/proc/{pid}/cwd").resolve() == data_dir.parent.resolve()
    except OSError:
        return True  # cannot tell (no /proc): refusing to start is the safe side


def _terminate(pid: int, timeout: float = 10.0) -> None:
    """Stop a process this checkout's stack started earlier (checked by the caller)."""
    try:
        os.killpg(pid, signal.SIGTERM)  # Azurite runs in its own process group
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if command_line(pid) is None:
            return
        time.sleep(0.1)


def warn(message: str) -> None:
    """A loud line on stderr: the user must not miss it."""
    print(f"\n*** WARNING: {message}\n", file=sys.stderr, flush=True)


@dataclass
class LocalAzurite:
    process: subprocess.Popen[bytes]
    ports: AzuritePorts
    location: Path
    notes: list[str]


def start_local_azurite(data_dir: Path, state: StackState) -> LocalAzurite:
    """Start this checkout's Azurite with its data in `data_dir/azurite`.

    Uses the remembered ports when they are free; updates `state` (not saved here).
    """
    location = (data_dir / "azurite").resolve()
    notes: list[str] = []
    if is_our_azurite(state.azurite_pid, location):
        assert state.azurite_pid is not None
        notes.append(
            f"stopped the Azurite an earlier run of this checkout left running "
            f"(pid {state.azurite_pid})"
        )
        _terminate(state.azurite_pid)
    ports = state.azurite_ports
    if ports is not None:
        busy = [p for p in (ports.blob, ports.queue, ports.table) if port_open(p)]
        if busy:
            new_ports = AzuritePorts.free()
            warn(
                f"port(s) {', '.join(map(str, busy))} remembered for this checkout's Azurite "
                "are in use by a program this checkout did not start (another checkout's "
                "Azurite?). It is left alone and NOT used: this checkout's Azurite moves to "
                f"ports {new_ports.blob}, {new_ports.queue}, {new_ports.table} "
                f"(data unchanged, in {location})."
            )
            ports = new_ports
    if ports is None:
        ports = AzuritePorts.free()
    try:
        process = start_azurite(ports, location=location)
    except Exception as exc:  # noqa: BLE001 - one clear line instead of a traceback
        raise StackError(f"Azurite did not start on ports {ports} ({exc})") from None
    state.azurite_ports = ports
    state.azurite_pid = process.pid
    return LocalAzurite(process, ports, location, notes)


def check_not_running_twice(state: StackState, data_dir: Path) -> None:
    if is_dev_process(state.dev_pid, data_dir):
        raise StackError(
            f"another `make run` of this checkout is running (pid {state.dev_pid}, "
            f"{state.gateway_url or 'gateway URL unknown'}); stop it first (Ctrl-C in its "
            "terminal), or use another checkout"
        )


def apply_stack_environment(data_dir: Path = DEFAULT_DATA_DIR) -> dict[str, str]:
    """Put the running stack's overrides (storage, public URL, ...) into os.environ,
    where not set already; for command-line jobs run beside `make run`."""
    applied: dict[str, str] = {}
    for name, value in StackState.load(data_dir).environment.items():
        if name not in os.environ:
            os.environ[name] = value
            applied[name] = value
    return applied
