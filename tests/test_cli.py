"""The tidings command as a user runs it: token, serve, settings precedence, shutdown."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import jwt
import pytest
import websockets

from tidings.auth import mint
from tidings.cli import main, parse_duration

from .conftest import (
    API_KEY,
    SECRET,
    TIMEOUT,
    Harness,
    ServerFactory,
    closed_with,
    recv,
    serve_process,
    token,
    wait_for,
)

ENV = {
    "PATH": os.environ.get("PATH", "/usr/bin"),
    "TIDINGS_JWT_SECRET": SECRET,
    "TIDINGS_STORE_URL": ":memory:",
    "TIDINGS_API_KEYS": API_KEY,
}


def test_token_command(capsys: pytest.CaptureFixture[str]) -> None:
    """tidings token prints a JWT with the user, roles and lifetime asked for."""
    assert (
        main(
            [
                "token",
                "--user",
                "alice",
                "--role",
                "LIBRARIAN",
                "--ttl",
                "1h",
                "--secret",
                SECRET,
                "--claim",
                "tier=3",
            ]
        )
        == 0
    )
    raw = capsys.readouterr().out.strip()
    claims = jwt.decode(raw, SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["userId"], claims["roles"]) == ("alice", "alice", ["LIBRARIAN"])
    assert claims["tier"] == 3
    assert abs(claims["exp"] - time.time() - 3600) < 5


@pytest.mark.parametrize(
    ("text", "seconds"), [("90", 90), ("30s", 30), ("15m", 900), ("1h", 3600), ("7d", 604800)]
)
def test_durations(text: str, seconds: float) -> None:
    """--ttl takes plain seconds or s/m/h/d suffixes."""
    assert parse_duration(text) == seconds


def running(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> AbstractAsyncContextManager[tuple[asyncio.subprocess.Process, int]]:
    """`python -m tidings serve` on a free port, killed at the end if still running."""
    return serve_process(*args, env=env or ENV, cwd=cwd, stop=signal.SIGKILL)


async def serve_fails(*args: str, env: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Run `tidings serve` expecting it to refuse to start; its exit status and stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        "serve",
        *args,
        env=env or ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT * 3):
        _, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, err


async def test_sigterm_closes_1001_and_exits_0() -> None:
    """SIGTERM closes every WebSocket with 1001 and the process exits 0."""
    async with running() as (proc, port):
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={token()}") as ws:
            assert (await recv(ws))["type"] == "welcome"
            proc.send_signal(signal.SIGTERM)
            assert await closed_with(ws) == (1001, "server shutting down")
        async with asyncio.timeout(TIMEOUT * 2):
            assert await proc.wait() == 0


async def test_refuses_to_start_without_secret() -> None:
    """Without a JWT secret and without --dev, serve exits 2 and says what to set."""
    code, err = await serve_fails("--port", "0", env={"PATH": ENV["PATH"]})
    assert code == 2
    assert b"TIDINGS_JWT_SECRET" in err


async def test_dev_mode_generates_secret_and_token_uses_it(tmp_path: Path) -> None:
    """--dev generates a secret (and API key) that `tidings token` in the same folder uses."""
    env = {"PATH": ENV["PATH"]}
    async with running("--dev", env=env, cwd=tmp_path) as (_, port):
        state = json.loads((tmp_path / ".tidings-dev.json").read_text())
        tok = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tidings",
            "token",
            "--user",
            "dev",
            cwd=tmp_path,
            env=env,
            stdout=asyncio.subprocess.PIPE,
        )
        out, _ = await tok.communicate()
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws?token={out.decode().strip()}"
        ) as ws:
            assert (await recv(ws))["data"]["userId"] == "dev"
        assert state["api_key"]
        assert state["jwt_secret"]
        assert oct((tmp_path / ".tidings-dev.json").stat().st_mode)[-3:] == "600"


async def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    """A flag beats TIDINGS_* which beats the TOML file (shown with max_connections_per_user)."""
    cfg = tmp_path / "tidings.toml"
    cfg.write_text("max_connections_per_user = 1\nheartbeat_interval = 5\n")
    env = dict(ENV, TIDINGS_CONFIG=str(cfg), TIDINGS_MAX_CONNECTIONS_PER_USER="2")
    async with running("--max-connections-per-user", "3", env=env) as (_, port):
        url = f"ws://127.0.0.1:{port}/ws?token={token()}"
        async with (
            websockets.connect(url) as a,
            websockets.connect(url) as b,
            websockets.connect(url) as c,
            websockets.connect(url) as d,
        ):
            for ws in (a, b, c):
                assert (await recv(ws))["data"]["heartbeatInterval"] == 5
            assert (await closed_with(d))[0] == 4009


async def test_invalid_config_names_the_setting(tmp_path: Path) -> None:
    """A bad setting stops the server with a message naming it."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('max_connections = "lots"\n')
    code, err = await serve_fails("--config", str(cfg))
    assert code == 2
    assert b"max_connections" in err


async def test_port_taken_is_a_clear_error() -> None:
    """A port already in use stops serve with exit 1 and says which address."""
    async with running() as (_, port):
        code, err = await serve_fails("--port", str(port))
        assert code == 1
        assert f"cannot listen on 127.0.0.1:{port}".encode() in err


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:1/none", "/nonexistent-dir/x.db"])
async def test_unopenable_store_is_a_clear_error(url: str) -> None:
    """A store that cannot be opened stops serve with a message naming store_url."""
    code, err = await serve_fails("--port", "0", env=dict(ENV, TIDINGS_STORE_URL=url))
    assert code == 1
    assert b"cannot open the store" in err
    assert b"store_url" in err
    assert b"Traceback" not in err


def test_check_config_prints_sources_and_hides_secrets(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """check-config prints every setting with its source, secrets and passwords hidden."""
    cfg = tmp_path / "t.toml"
    cfg.write_text(
        'store_url = "postgresql://app:hunter2@db:5432/inbox"\n'
        '[namespaces.activities]\nallowed_roles = ["LIBRARIAN"]\n'
    )
    monkeypatch.setenv("TIDINGS_JWT_SECRET", SECRET)
    monkeypatch.setenv("TIDINGS_API_KEYS", API_KEY)
    assert main(["check-config", "--config", str(cfg), "--max-connections", "7"]) == 0
    out = capsys.readouterr().out
    assert SECRET not in out
    assert API_KEY not in out
    assert "hunter2" not in out
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert lines["max_connections"].split()[1:] == ["7", "flag"]
    assert lines["jwt_secret"].endswith("env TIDINGS_JWT_SECRET")
    assert "postgresql://app:***@db:5432/inbox" in lines["store_url"]
    assert "namespace activities" in out


def test_check_config_names_a_bad_setting(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """An invalid file exits 2 naming the setting; a missing key file is named too."""
    cfg = tmp_path / "bad.toml"
    cfg.write_text('jwt_algorithms = ["RS256"]\njwt_public_key_file = "/nope.pem"\n')
    assert main(["check-config", "--config", str(cfg)]) == 2
    assert "jwt_public_key_file" in capsys.readouterr().err


# --- the companions: listen, publish, notify, stats -------------------------------------


async def tidings(*args: str, cwd: Path | None = None) -> tuple[int, str, str]:
    """Run a `tidings` command to its end: exit status, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        *args,
        env=CLIENT_ENV,
        cwd=cwd,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(TIMEOUT * 3):
        out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


# No TIDINGS_* variables: what the commands need comes from flags or .tidings-dev.json.
CLIENT_ENV = {k: v for k, v in os.environ.items() if not k.startswith(("TIDINGS_", "JWT_"))}


async def next_line(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    """The next JSON line `tidings listen` prints."""
    assert proc.stdout is not None
    async with asyncio.timeout(TIMEOUT):
        line = await proc.stdout.readline()
    assert line, "listen ended"
    msg = json.loads(line)
    assert isinstance(msg, dict)
    return msg


async def test_listen_prints_messages_and_exits_on_terminal_close(harness: Harness) -> None:
    """listen mints a token, subscribes, prints JSON lines, and exits 1 after a 4010 close."""
    h = harness
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        "listen",
        "--url",
        h.url,
        "--user",
        "alice",
        "--secret",
        SECRET,
        "--channel",
        "news",
        env=CLIENT_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        welcome = await next_line(proc)
        assert (welcome["type"], welcome["data"]["userId"]) == ("welcome", "alice")
        await wait_for(lambda: h.server.node.hub.channel_counts().get("news") == 1)
        await h.api("POST", "/api/publish", {"channel": "news", "type": "headline", "data": 1})
        assert (await next_line(proc))["type"] == "headline"
        await h.api("POST", "/api/notifications", {"userId": "alice", "title": "hi"})
        note = await next_line(proc)
        assert (note["type"], note["data"]["title"]) == ("notification", "hi")
        status, _ = await h.api("POST", "/api/users/alice/disconnect", {"reason": "banned"})
        assert status == 200
        assert proc.stderr is not None
        async with asyncio.timeout(TIMEOUT):
            assert await proc.wait() == 1
            err = (await proc.stderr.read()).decode()
        assert "closed 4010: banned; giving up" in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def test_listen_with_a_bad_token_fails(harness: Harness) -> None:
    """listen with a refused token exits 1 naming the close code; no token at all exits 2."""
    code, out, err = await tidings("listen", "--url", harness.url, "--token", "nope")
    assert (code, out) == (1, "")
    assert "closed 4002" in err
    code, _, err = await tidings("listen", "--url", harness.url)
    assert code == 2
    assert "--token" in err


async def test_publish_notify_and_stats(harness: Harness) -> None:
    """publish and notify reach a connected client; stats prints the counts."""
    h = harness
    key = ("--url", h.url, "--api-key", API_KEY)
    async with h.client("bob") as ws:
        await ws.send(json.dumps({"type": "subscribe", "channel": "news", "id": "s"}))
        assert (await recv(ws))["type"] == "subscribed"
        code, out, _ = await tidings(
            "publish", "news", "--type", "tick", "--data", '{"n": 1}', *key
        )
        assert code == 0
        assert json.loads(out)["delivered"] == 1
        msg = await recv(ws)
        assert (msg["type"], msg["channel"], msg["data"]) == ("tick", "news", {"n": 1})
        code, out, _ = await tidings(
            "notify", "bob", "--title", "Due", "--body", "Return it", "--priority", "high", *key
        )
        assert code == 0
        note = await recv(ws)
        assert note["type"] == "notification"
        assert (note["data"]["title"], note["data"]["message"]) == ("Due", "Return it")
        assert note["data"]["priority"] == "HIGH"
        code, out, _ = await tidings("stats", *key)
        assert code == 0
        stats = json.loads(out)
        assert (stats["totalConnections"], stats["channelCounts"]) == (1, {"news": 1})


async def test_api_errors_and_dev_defaults(make_server: ServerFactory, tmp_path: Path) -> None:
    """A wrong key exits 1 with the API's message; the dev file's key is the default."""
    dev_key = "dev-key-0123456789-abcdef"
    (tmp_path / ".tidings-dev.json").write_text(
        json.dumps({"jwt_secret": SECRET, "api_key": dev_key})
    )
    h = await make_server(api_keys=[dev_key])
    code, _, err = await tidings("stats", "--url", h.url, "--api-key", "wrong")
    assert code == 1
    assert "401" in err
    code, out, _ = await tidings("stats", "--url", h.url, cwd=tmp_path)
    assert code == 0
    assert json.loads(out)["totalConnections"] == 0
    code, _, err = await tidings("publish", "bad channel!", "--url", h.url, cwd=tmp_path)
    assert code == 1
    assert "422" in err or "400" in err
    code, _, err = await tidings("stats", "--url", "http://127.0.0.1:1", cwd=tmp_path)
    assert code == 1
    assert "cannot reach" in err


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


async def test_listen_stops_on_ctrl_c(harness: Harness) -> None:
    """Ctrl-C (SIGINT) ends listen with status 130 and no traceback."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tidings",
        "listen",
        "--url",
        harness.url,
        "--token",
        token("alice"),
        env=CLIENT_ENV,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # A shell that ignores SIGINT (a background job, some CI runners) passes that on,
        # and Python then installs no KeyboardInterrupt handler: give the child a terminal's
        # default, whatever this process inherited.
        preexec_fn=_default_sigint,
    )
    try:
        assert (await next_line(proc))["type"] == "welcome"
        proc.send_signal(signal.SIGINT)
        async with asyncio.timeout(TIMEOUT):
            _, err = await proc.communicate()
        assert proc.returncode == 130
        assert b"Traceback" not in err
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


# --- the newcomer's first hour (issue 11) -------------------------------------------------


def test_broker_flag_is_the_documented_name(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--broker redis://…` sets broker_url (it was ambiguous with --broker-prefix)."""
    monkeypatch.setenv("TIDINGS_JWT_SECRET", SECRET)
    url = "redis://127.0.0.1:6379/3"
    assert main(["check-config", "--broker", url]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert lines["broker_url"].split()[1:] == [json.dumps(url), "flag"]
    assert main(["check-config", "--broker-url", url, "--broker-prefix", "x:"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line}
    assert lines["broker_url"].split()[1] == json.dumps(url)
    assert lines["broker_prefix"].split()[1] == '"x:"'


def test_help_is_plain_text(capsys: pytest.CaptureFixture[str]) -> None:
    """`tidings --help` prints no reStructuredText markup."""
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "``" not in out
    assert "usage: tidings" in out


def test_token_finds_the_dev_file_from_a_subfolder_or_by_variable(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """token reads .tidings-dev.json in a parent folder, or at $TIDINGS_DEV_FILE."""
    for name in [n for n in os.environ if n.startswith(("TIDINGS_", "JWT_"))]:
        monkeypatch.delenv(name)
    checkout = tmp_path / "checkout"
    (checkout / "src" / "deep").mkdir(parents=True)
    (checkout / ".tidings-dev.json").write_text(json.dumps({"jwt_secret": SECRET, "api_key": "k"}))
    monkeypatch.chdir(checkout / "src" / "deep")
    assert main(["token", "--user", "alice"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "alice"

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["token", "--user", "alice"]) == 2
    err = capsys.readouterr().err
    assert "TIDINGS_DEV_FILE" in err
    assert str(elsewhere) in err

    monkeypatch.setenv("TIDINGS_DEV_FILE", str(checkout / ".tidings-dev.json"))
    assert main(["token", "--user", "bob"]) == 0
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert claims["sub"] == "bob"


async def test_dev_serve_writes_the_dev_file_named_by_the_variable(tmp_path: Path) -> None:
    """serve --dev keeps its secrets at $TIDINGS_DEV_FILE when set."""
    dev_file = tmp_path / "state" / "dev.json"
    dev_file.parent.mkdir()
    env = {**ENV, "TIDINGS_DEV_FILE": str(dev_file)}
    del env["TIDINGS_JWT_SECRET"]
    async with running("--dev", env=env, cwd=tmp_path) as (_, port):
        state = json.loads(dev_file.read_text())
        dev_token = mint(state["jwt_secret"], "dev", now=time.time(), ttl=600)
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws?token={dev_token}") as ws:
            assert (await recv(ws))["data"]["userId"] == "dev"
    assert not (tmp_path / ".tidings-dev.json").exists()


def test_make_clean_starts_over(tmp_path: Path) -> None:
    """`make clean` removes the environments, the dev database and the dev secrets."""
    import shutil
    import subprocess

    if shutil.which("make") is None:
        pytest.fail("make is needed: the README's two commands are make targets")
    root = Path(__file__).resolve().parent.parent
    shutil.copy(root / "Makefile", tmp_path / "Makefile")
    made = [".venv/bin", ".uv/bin", ".pytest_cache", "tidings.db", "tidings.db-wal"]
    made += ["tidings.db-shm", ".tidings-dev.json"]
    for name in made:
        path = tmp_path / name
        if "." in name.lstrip(".") and not name.endswith("cache"):
            path.write_text("x")
        else:
            path.mkdir(parents=True)
    (tmp_path / "keep.txt").write_text("mine")
    subprocess.run(["make", "-s", "clean"], cwd=tmp_path, check=True, timeout=TIMEOUT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["Makefile", "keep.txt"]
