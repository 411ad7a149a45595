"""Start/stop the servers under test and read their CPU and memory from /proc."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

BENCH_DIR = Path(__file__).resolve().parent
REPO_DIR = BENCH_DIR.parent
NODE_REF_DIR = BENCH_DIR / "node_ref"
VENV_BIN = REPO_DIR / ".venv" / "bin"

SERVER_CORE = 0
LOADGEN_CORE = 1
NOFILE = 65536

# Both readiness lines end in the port: tidings prints
# "tidings listening on http://HOST:PORT", the Node reference "listening on PORT".
_LISTEN_RE = re.compile(r"listening on (?:https?://[^\s]*:)?(\d+)\s*$")
# A server whose HTTP API is on another port (the picows reference) prints
# "publish port PORT" before its listen line.
_PUBLISH_RE = re.compile(r"publish port (\d+)\s*$")

_CLK_TCK = os.sysconf("SC_CLK_TCK")
_PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


class ServerUnavailable(RuntimeError):
    """The server cannot be started at all (not installed / crashed at boot)."""


@dataclass
class ServerSpec:
    name: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    # The guide's server insists on ?userId= matching the token's userId claim.
    wants_user_id_param: bool
    # `type` of the first message the server sends on a new connection.
    first_type: str
    api_key: str | None
    prepare: Callable[[], None] | None = None
    # How subscribers connect: "websocket" (the native /ws) or "socketio" (/socket.io/).
    transport: str = "websocket"


@dataclass
class RunningServer:
    spec: ServerSpec
    proc: asyncio.subprocess.Process
    port: int
    log_path: Path
    # Where POST /api/publish goes: the WebSocket port unless the server said otherwise.
    publish_port: int = 0
    _drain: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def pids(self) -> list[int]:
        """The server process plus any descendants (a multi-process server
        would otherwise hide most of its CPU from us). Threads are already
        included in /proc/PID/stat."""
        return [self.pid, *_descendants(self.pid)]

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += _stat_ticks(pid)
        return total / _CLK_TCK

    def wakeups(self) -> int:
        """Times the server's threads went to sleep and were woken (voluntary context
        switches, from /proc/PID/task/*/status): an event loop sleeps in epoll_wait
        whenever nothing is ready, so this counts its wake-ups. Unlike CPU time it does
        not depend on how busy the machine is."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                for task in os.listdir(f"/proc/{pid}/task"):
                    total += _voluntary_switches(f"/proc/{pid}/task/{task}/status")
        return total

    def sys_seconds(self) -> float:
        """The kernel's share of cpu_seconds() (stime): on loopback, a send also runs
        the receiver's TCP processing, so most of a delivery's cost can be here."""
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += _stat_ticks(pid, user=False)
        return total / _CLK_TCK

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                total += _vmrss_kib(pid)
        return total

    def alive(self) -> bool:
        return self.proc.returncode is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])

    async def stop(self) -> None:
        if self.proc.returncode is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
                await asyncio.wait_for(self.proc.wait(), 5)
            except (ProcessLookupError, TimeoutError):
                # Graceful shutdown may wait on thousands of sockets; the
                # measurement is over, so don't let it eat the time budget.
                with contextlib.suppress(ProcessLookupError):
                    self.proc.kill()
                await self.proc.wait()
        if self._drain is not None:
            await asyncio.wait_for(self._drain, 5)


def pids_cpu_seconds(pids: list[int]) -> dict[int, float]:
    """utime + stime of each live process in `pids` (e.g. database backends
    serving the server under test); processes that are gone are left out."""
    out: dict[int, float] = {}
    for pid in pids:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            out[pid] = _stat_ticks(pid) / _CLK_TCK
    return out


def _voluntary_switches(status: str) -> int:
    """voluntary_ctxt_switches of one thread (0 if it is gone)."""
    with contextlib.suppress(FileNotFoundError, ProcessLookupError), open(status, "rb") as f:
        for line in f:
            if line.startswith(b"voluntary_ctxt_switches:"):
                return int(line.split()[1])
    return 0


def _stat_ticks(pid: int, user: bool = True) -> int:
    """utime + stime of one process in clock ticks (stime alone if not `user`)."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        raw = f.read()
    # comm may contain spaces/parens: fields start after the last ')'.
    fields = raw[raw.rfind(b")") + 2 :].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) if user else 0) + int(fields[12])


def _vmrss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        ppid = int(raw[raw.rfind(b")") + 2 :].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    stack = list(children.get(root, []))
    while stack:
        pid = stack.pop()
        out.append(pid)
        stack.extend(children.get(pid, []))
    return out


def core_busy_seconds(core: int) -> tuple[float, float]:
    """(busy, steal) seconds of one CPU from /proc/stat. Busy minus the
    server's own CPU time is work by something else on the server's core
    (other processes, interrupts): a measurement taken while that is large
    is not trustworthy, so the harness reports it."""
    with open("/proc/stat") as f:
        for line in f:
            if line.startswith(f"cpu{core} "):
                v = [int(x) for x in line.split()[1:]]
                # user nice system idle iowait irq softirq steal ...
                busy = v[0] + v[1] + v[2] + v[5] + v[6]
                steal = v[7] if len(v) > 7 else 0
                return busy / _CLK_TCK, steal / _CLK_TCK
    return 0.0, 0.0


def kernel_work_seconds(cores: tuple[int, ...]) -> float:
    """CPU time the kernel spent on its own behalf: its threads (children of
    kthreadd: block-layer and filesystem workers that complete an fsync, for
    instance) on any core, plus the irq and softirq time of `cores`. For a
    disk- or loopback-heavy workload this is part of the workload's cost, not
    disturbance by other work."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                raw = f.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if fields[1] == b"2":  # ppid: kthreadd
            total += int(fields[11]) + int(fields[12])
    with open("/proc/stat") as f:
        for line in f:
            name = line.split(" ", 1)[0]
            if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cores:
                v = [int(x) for x in line.split()[1:]]
                total += v[5] + v[6]
    return total / _CLK_TCK


def self_cpu_seconds() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def children_cpu_seconds() -> float:
    """CPU time of this process's terminated, waited-for children."""
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def raise_nofile() -> int:
    """Raise RLIMIT_NOFILE as far as allowed (root may raise the hard limit)."""
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    for want in ((NOFILE, max(hard, NOFILE)), (hard, hard)):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, want)
            break
        except (ValueError, OSError):
            continue
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def _server_preexec() -> None:
    # Runs in the child between fork and exec: own process group (so a
    # Ctrl-C of the bench does not hit the server before we stop it) and a
    # descriptor limit that fits 10k+ sockets.
    os.setpgrp()
    raise_nofile()


def tidings_spec(
    secret: str,
    api_key: str,
    transport: str = "websocket",
    engine: str | None = None,
    front: bool = True,
) -> ServerSpec:
    """tidings as deployed. ``transport="socketio"`` (server name ``socketio``): the same
    server, its subscribers connected over Socket.IO instead of the native WebSocket;
    ``engine`` forces its ``ws_engine`` (the server is then named ``tidings-<engine>``);
    ``front=False`` turns its HTTP front off (``http_fast_path``, ``tidings-nofront``)."""
    exe = VENV_BIN / "tidings"
    argv = [str(exe)] if exe.exists() else [str(VENV_BIN / "python"), "-m", "tidings"]
    name = "tidings" if transport == "websocket" else transport
    if engine:
        name = f"tidings-{engine}"
    if not front:
        name = "tidings-nofront"
    return ServerSpec(
        name=name,
        transport=transport,
        argv=[*argv, "serve", "--host", "127.0.0.1", "--port", "0"],
        env={
            "TIDINGS_JWT_SECRET": secret,
            "TIDINGS_API_KEYS": api_key,
            "TIDINGS_MAX_CONNECTIONS": "20000",
            "TIDINGS_LOG_LEVEL": "WARNING",
            # Every protection stays on in every measured run: rate limits, the bounded
            # outbox and its slow-consumer close, the inbox's commit before the answer.
            # A fresh store per run, never the repository's tidings.db; the inbox
            # scenarios replace it with their own.
            "TIDINGS_STORE_URL": os.path.join(
                tempfile.mkdtemp(prefix="tidings-bench-"), "gateway.db"
            ),
            **({"TIDINGS_WS_ENGINE": engine} if engine else {}),
            **({} if front else {"TIDINGS_HTTP_FAST_PATH": "false"}),
        },
        cwd=REPO_DIR,
        wants_user_id_param=False,
        first_type="welcome",
        api_key=api_key,
        prepare=_check_tidings_installed,
    )


def _check_tidings_installed() -> None:
    if (VENV_BIN / "tidings").exists():
        return
    probe = subprocess.run(
        [str(VENV_BIN / "python"), "-c", "import tidings"], capture_output=True, text=True
    )
    if probe.returncode != 0:
        raise ServerUnavailable(
            "tidings is not installed in .venv (no .venv/bin/tidings, `import tidings` fails)"
        )


def ref_spec(name: str, secret: str, api_key: str) -> ServerSpec:
    """A bare reference (bench/ref_aiohttp.py or bench/ref_picows.py): authenticate,
    subscribe, fan out, nothing else; same tokens, API key and first message as tidings."""
    return ServerSpec(
        name=name,
        argv=[str(VENV_BIN / "python"), str(BENCH_DIR / f"ref_{name}.py")],
        env={"TIDINGS_JWT_SECRET": secret, "TIDINGS_API_KEYS": api_key},
        cwd=REPO_DIR,
        wants_user_id_param=False,
        first_type="welcome",
        api_key=api_key,
        prepare=_check_tidings_installed,
    )


def node_spec(secret: str) -> ServerSpec:
    return ServerSpec(
        name="node",
        argv=["node", "src/server.js"],
        env={
            "JWT_SECRET": secret,
            "WS_PORT": "0",
            "WS_HOST": "127.0.0.1",
            "NODE_ENV": "production",
        },
        cwd=NODE_REF_DIR,
        wants_user_id_param=True,
        first_type="connected",
        api_key=None,
        prepare=_ensure_node_modules,
    )


def _ensure_node_modules() -> None:
    if (NODE_REF_DIR / "node_modules").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise ServerUnavailable("node/npm not found on PATH")
    print("bench: installing Node reference dependencies (npm ci)...", file=sys.stderr)
    res = subprocess.run(
        [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_REF_DIR, capture_output=True, text=True
    )
    if res.returncode != 0:
        raise ServerUnavailable(f"npm ci failed:\n{res.stdout[-2000:]}{res.stderr[-2000:]}")


START_TIMEOUT = 30.0  # seconds from exec to the listen line


def _open_log(log_dir: Path, spec: ServerSpec, label: str) -> tuple[Path, IO[bytes]]:
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"{label}.{spec.name}.log"
    log = log_path.open("ab")  # closed by start_server's drain task / error path
    log.write(f"==== start: {' '.join(spec.argv)}\n".encode())
    log.flush()
    return log_path, log


def _tail(path: Path, lines: int = 15) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


async def start_server(
    spec: ServerSpec, log_dir: Path, label: str, core: int = SERVER_CORE
) -> RunningServer:
    """Start the server pinned to `core` (SERVER_CORE unless a scenario runs
    several servers side by side) and wait for its listen line.
    stdout is echoed into log_dir/LABEL.NAME.log; stderr goes straight to it."""
    if spec.prepare is not None:
        spec.prepare()
    log_path, log = _open_log(log_dir, spec, label)
    env = {**os.environ, **spec.env}
    try:
        proc = await asyncio.create_subprocess_exec(
            "taskset",
            "-c",
            str(core),
            *spec.argv,
            cwd=spec.cwd,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            preexec_fn=_server_preexec,
        )
    except FileNotFoundError as e:
        log.close()
        raise ServerUnavailable(f"cannot exec {spec.argv[0]}: {e}") from e
    assert proc.stdout is not None
    stdout = proc.stdout

    publish_port = 0

    async def read_until_listening() -> int:
        nonlocal publish_port
        while True:
            line = await stdout.readline()
            if not line:
                rc = await proc.wait()
                raise ServerUnavailable(
                    f"{spec.name} exited before printing its listen line (rc={rc})"
                )
            log.write(line)
            log.flush()
            text = line.decode(errors="replace")
            p = _PUBLISH_RE.search(text)
            if p:
                publish_port = int(p.group(1))
            m = _LISTEN_RE.search(text)
            if m:
                return int(m.group(1))

    try:
        async with asyncio.timeout(START_TIMEOUT):
            port = await read_until_listening()
    except BaseException as e:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        log.close()
        if isinstance(e, TimeoutError):
            raise ServerUnavailable(
                f"{spec.name} printed no listen line within {START_TIMEOUT:.0f}s\n"
                + _tail(log_path)
            ) from e
        if isinstance(e, ServerUnavailable):
            raise ServerUnavailable(f"{e}\n{_tail(log_path)}") from e
        raise

    async def drain() -> None:
        # Keep reading stdout so a chatty server never blocks on a full pipe.
        try:
            while True:
                chunk = await stdout.read(65536)
                if not chunk:
                    break
                log.write(chunk)
        finally:
            log.close()

    server = RunningServer(
        spec=spec, proc=proc, port=port, log_path=log_path, publish_port=publish_port or port
    )
    server._drain = asyncio.create_task(drain())
    return server
