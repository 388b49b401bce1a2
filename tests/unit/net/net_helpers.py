"""Helpers for the network layer tests (a module with a unique name, so test files in
other folders never shadow it the way a second conftest would)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from postar.config import Config, LimitsConfig, ListenAddress, ProxyProtocolConfig
from postar.net import Connection, RoleHandler, Server
from postar.net.listener import Handler


def make_config(
    tmp_path: Path,
    *,
    limits: dict[str, Any] | None = None,
    proxy_roles: tuple[str, ...] = (),
    trusted: tuple[str, ...] = ("127.0.0.0/8", "::1/128"),
    proxy_timeout: float = 2.0,
) -> Config:
    return Config(
        hostname="mail.example.test",
        data_dir=tmp_path,
        limits=LimitsConfig(**(limits or {})),
        proxy_protocol=ProxyProtocolConfig(
            roles=proxy_roles, trusted_networks=trusted, timeout=proxy_timeout
        ),
    )


@asynccontextmanager
async def running_server(
    config: Config,
    handlers: Mapping[str, RoleHandler | Handler],
    *,
    host: str = "127.0.0.1",
    grace: float = 2.0,
    **kwargs: Any,
) -> AsyncIterator[Server]:
    server = Server(
        config,
        handlers,
        listen={role: ListenAddress(host, 0) for role in handlers},
        **kwargs,
    )
    await server.start()
    try:
        yield server
    finally:
        await server.stop(grace=grace)


def port_of(server: Server, role: str) -> int:
    return server.addresses(role)[0][1]


async def read_line(conn: Connection) -> bytes:
    """Read one line from a Connection a byte at a time, so nothing past it is consumed:
    anything the peer sent after the line stays in the Connection's own buffer."""
    line = bytearray()
    while not line.endswith(b"\n"):
        data = await conn.recv(1)
        if not data:
            return bytes(line)
        line += data
    return bytes(line)


async def wait_until(predicate: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.01)
