"""On-premises relay fixtures: the NTLM server, registered gateways, agent processes.

Every test gets its own storage prefix, so queues, tables and blobs never mix.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from functions.devtools.azurite import AzuritePorts
from functions.devtools.processes import stop_process
from functions.onprem.agent import STORAGE_CONNECTION_STRING_ENV, AgentConfig
from functions.onprem.envelope import encrypt_for_gateway
from functions.onprem.keys import (
    fingerprint,
    generate_private_key,
    public_key_pem,
    save_private_key,
)
from functions.onprem.registry import GatewayRecord, GatewayRegistry
from functions.onprem.relay import GatewayRelay
from functions.onprem.storage import blob_service, queue_service, table_service
from tests.doubles.ntlm_server import NtlmServer, ntlm_server, write_users

REPO = Path(__file__).resolve().parents[2]
TENANT = "00000000-0000-4000-8000-0000000000aa"
OWNER = "11111111-1111-4111-8111-111111111111"
DOMAIN = "CORP"
USERS = {"alice": "Winter-2025!alice", "bob": "Summer-2024!bob"}


@pytest.fixture(scope="session")
def ntlm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NtlmServer]:
    folder = tmp_path_factory.mktemp("ntlm")
    users = write_users(folder / "users.txt", [(DOMAIN, u, p) for u, p in USERS.items()])
    with ntlm_server(users) as server:
        yield server


@pytest.fixture
def prefix() -> str:
    return "op" + secrets.token_hex(4)


@pytest.fixture
def storage(azurite: AzuritePorts) -> str:
    return azurite.connection_string()


@pytest.fixture
async def registry(storage: str, prefix: str) -> AsyncIterator[GatewayRegistry]:
    reg = GatewayRegistry(table_service(storage), prefix)
    await reg.ensure_tables()
    yield reg
    reg.close()


@pytest.fixture
async def relay(
    storage: str, prefix: str, registry: GatewayRegistry
) -> AsyncIterator[GatewayRelay]:
    r = GatewayRelay(queue_service(storage), blob_service(storage), registry, prefix)
    await r.start()
    yield r
    await r.close()


@dataclass
class Gateway:
    record: GatewayRecord
    key_file: Path
    config: AgentConfig

    def credential(
        self, connection_id: str, user: str = "alice", password: str | None = None
    ) -> str:
        secret = {"username": f"{DOMAIN}\\{user}", "password": password or USERS[user]}
        return encrypt_for_gateway(
            self.record.public_key_pem, self.record.id, connection_id, secret
        )


@pytest.fixture
def make_gateway(registry: GatewayRegistry, prefix: str, tmp_path: Path) -> Callable[..., object]:
    async def make(name: str = "corp-gw") -> Gateway:
        key = generate_private_key(2048)  # 3072 in production; 2048 keeps tests quick
        key_file = tmp_path / name / "agent-key.pem"
        save_private_key(key, key_file)
        record = await registry.register(TENANT, OWNER, name, public_key_pem(key))
        config = AgentConfig(
            gateway_id=record.id,
            tenant_id=TENANT,
            name=name,
            gateway_url="http://127.0.0.1:9",
            fingerprint=fingerprint(key),
            table_prefix=prefix,
        )
        config.save(key_file.with_suffix(".json"))
        return Gateway(record, key_file, config)

    return make


class AgentProcess:
    """`python -m functions.cli.gateway_agent gateway-agent run` as a child process."""

    def __init__(
        self,
        gateway: Gateway,
        storage: str,
        concurrency: int = 8,
        extra_args: tuple[str, ...] = (),
        extra_env: dict[str, str] | None = None,
    ) -> None:
        env = {**os.environ, STORAGE_CONNECTION_STRING_ENV: storage, "PYTHONPATH": str(REPO)}
        env.update(extra_env or {})
        env.pop("NTLM_USER_FILE", None)  # the agent is a client; it needs no user file
        self.log = gateway.key_file.parent / f"agent-{time.monotonic_ns()}.log"
        self._log = self.log.open("wb")
        self.process = subprocess.Popen(  # noqa: S603
            [
                sys.executable,
                "-m",
                "functions.cli.gateway_agent",
                "gateway-agent",
                "run",
                "--name",
                gateway.config.name,
                "--key-file",
                str(gateway.key_file),
                "--concurrency",
                str(concurrency),
                "--idle-poll",
                "0.2",
                *extra_args,
            ],
            cwd=REPO,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def kill(self) -> None:
        """SIGKILL: no cleanup, as a crash or power loss."""
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        stop_process(self.process)  # type: ignore[arg-type]
        self._log.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def start_agent(storage: str, registry: GatewayRegistry) -> Iterator[Callable[..., object]]:
    started: list[AgentProcess] = []

    async def start(
        gateway: Gateway, concurrency: int = 8, wait_online: bool = True, **options: Any
    ) -> AgentProcess:
        import asyncio

        tenant = gateway.record.tenant_id
        before = (await registry.get(tenant, gateway.record.id)).last_seen  # type: ignore[union-attr]
        agent = AgentProcess(gateway, storage, concurrency, **options)
        started.append(agent)
        deadline = time.monotonic() + 30
        while wait_online:
            record = await registry.get(tenant, gateway.record.id)
            assert record is not None
            if record.last_seen is not None and record.last_seen != before:
                break
            if agent.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"agent did not start:\n{agent.output()}")
            await asyncio.sleep(0.1)
        return agent

    yield start
    for agent in started:
        agent.stop()
