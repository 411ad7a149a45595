"""The shipped nginx site in front of a real tidings process, restarted underneath it."""

from __future__ import annotations

import asyncio
import shutil
import signal
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path

import aiohttp
import pytest
import websockets

from .conftest import API_KEY, TIMEOUT, closed_with, recv, serve_env, serve_process, token

SITE = Path(__file__).parent.parent / "deploy" / "nginx-tidings.conf"
NGINX = shutil.which("nginx") or "/usr/sbin/nginx"


def tidings(port: int = 0) -> AbstractAsyncContextManager[tuple[asyncio.subprocess.Process, int]]:
    """tidings behind the proxy, believing its X-Forwarded-For."""
    return serve_process(env=serve_env(TIDINGS_TRUSTED_PROXIES="127.0.0.1"), port=port)


async def _accepts(sock: Path) -> bool:
    try:
        _, writer = await asyncio.open_unix_connection(str(sock))
    except OSError:  # not there yet, or not listening yet
        return False
    writer.close()
    await writer.wait_closed()
    return True


@asynccontextmanager
async def nginx(tmp: Path, *upstream_ports: int) -> AsyncIterator[Path]:
    """nginx running the shipped site, listening on a Unix socket (no port to pick), with
    one upstream server line per tidings instance."""
    sock = tmp / "nginx.sock"
    site = SITE.read_text()
    servers = "\n    ".join(f"server 127.0.0.1:{port};" for port in upstream_ports)
    site = site.replace("server 127.0.0.1:8000;", servers)
    site = site.replace("listen 80;", f"listen unix:{sock};")
    assert all(f"127.0.0.1:{port}" in site for port in upstream_ports)
    assert str(sock) in site
    (tmp / "site.conf").write_text(site)
    (tmp / "nginx.conf").write_text(f"""
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    include {tmp}/site.conf;
}}
""")
    proc = await asyncio.create_subprocess_exec(
        NGINX,
        "-c",
        str(tmp / "nginx.conf"),
        "-p",
        str(tmp),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(TIMEOUT * 2):
            # The socket file appears at bind(), a moment before listen(): wait until a
            # connection is accepted, not until the file exists.
            while not await _accepts(sock):
                if proc.returncode is not None:
                    err = await proc.stderr.read() if proc.stderr else b""
                    raise AssertionError(f"nginx exited: {err.decode()}")
                await asyncio.sleep(0)
        yield sock
    finally:
        proc.terminate()
        await proc.wait()


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is installed by scripts/services.sh")
async def test_through_nginx_and_across_a_restart(tmp_path: Path) -> None:
    """WebSocket upgrade and API through nginx; a client reconnects after tidings restarts."""
    async with tidings() as (proc, port), nginx(tmp_path, port) as sock:
        url = f"ws://localhost/ws?token={token('nell')}"
        http = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)))
        try:
            async with websockets.unix_connect(str(sock), url, open_timeout=TIMEOUT) as ws:
                assert (await recv(ws))["type"] == "welcome"
                async with http.post(
                    "http://localhost/api/users/nell/send",
                    json={"type": "via_nginx", "data": {}},
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as r:
                    assert r.status == 200
                assert (await recv(ws))["type"] == "via_nginx"
                async with http.get(
                    "http://localhost/api/users/nell/connections",
                    headers={"Authorization": f"Bearer {API_KEY}"},
                ) as r:
                    [conn] = (await r.json())["connections"]
                    # nginx (a trusted proxy) saw a Unix-socket client and said so in
                    # X-Forwarded-For; the proxy's own 127.0.0.1 is not reported.
                    assert conn["remoteAddress"] == "unix:"
                proc.send_signal(signal.SIGTERM)
                assert (await closed_with(ws))[0] == 1001  # relayed by nginx
            await proc.wait()
            # The same address comes back (a restart, as systemd would do it).
            async with (
                tidings(port) as _,
                websockets.unix_connect(str(sock), url, open_timeout=TIMEOUT) as ws,
            ):
                assert (await recv(ws))["type"] == "welcome"
                async with http.get("http://localhost/health") as r:
                    assert r.status == 200
        finally:
            await http.close()


@pytest.mark.skipif(not Path(NGINX).exists(), reason="nginx is installed by scripts/services.sh")
async def test_nginx_balances_a_cluster_without_sticky_sessions(tmp_path: Path) -> None:
    """Two clustered instances behind the shipped nginx site (round robin, no stickiness):
    connections land on both, and a publish through nginx reaches every one of them."""
    from .processes import cluster, pg_schema

    async with (
        pg_schema() as store,
        cluster(2, tmp_path, store_url=store) as nodes,
        nginx(tmp_path, *(n.port for n in nodes)) as sock,
    ):
        http = aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=str(sock)))
        auth = {"Authorization": f"Bearer {API_KEY}"}
        try:
            clients = [
                await websockets.unix_connect(
                    str(sock), f"ws://localhost/ws?token={token(f'lb{i}')}", open_timeout=TIMEOUT
                )
                for i in range(4)
            ]
            instances = set()
            for ws in clients:
                welcome = await recv(ws)
                assert welcome["type"] == "welcome"
                await ws.send('{"type": "subscribe", "channel": "lb", "id": "s"}')
                assert (await recv(ws))["type"] == "subscribed"
            for i in range(4):
                async with http.get(
                    f"http://localhost/api/users/lb{i}/connections", headers=auth
                ) as r:
                    [conn] = (await r.json())["connections"]
                    instances.add(conn["instance"])
            assert len(instances) == 2  # round robin spread them over both instances
            async with http.post(
                "http://localhost/api/publish",
                json={"channel": "lb", "type": "everyone", "data": {}},
                headers=auth,
            ) as r:
                assert r.status == 200
            for ws in clients:
                assert (await recv(ws))["type"] == "everyone"
                await ws.close()
        finally:
            await http.close()
