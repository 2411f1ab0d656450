"""Real servers on loopback for the tests: PostgreSQL, `mlflow server`, `optuna-dashboard`.

PostgreSQL comes from Debian's `postgresql` package (`.ci/run` installs it). The fixture makes
a throw-away cluster in a temporary folder, listening on 127.0.0.1 only, and removes it after.
"""

from __future__ import annotations

import base64
import glob
import json
import os
import pwd
import secrets
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg
import pytest


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(
    url: str, body: dict | None = None, wait: float = 60.0, login: tuple[str, str] | None = None
) -> dict:
    """GET (or POST `body`) as JSON, retrying while the server starts; `login`: HTTP basic
    authentication (user, password)."""
    deadline = time.monotonic() + wait
    headers = {"Content-Type": "application/json"}
    if login is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(login).encode()).decode()
    while True:
        request = urllib.request.Request(
            url, data=json.dumps(body).encode() if body is not None else None, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.load(response)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


@pytest.fixture
def server():
    """Start server processes for one test; they are stopped when it ends."""
    started: list[subprocess.Popen] = []

    def start(*command: str, env: dict[str, str] | None = None) -> subprocess.Popen:
        process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env
        )
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
        process.wait(timeout=30)


def start_mlflow_server(
    start, backend_store_uri: str, artifacts: Path, login: tuple[str, str] | None = None
) -> str:
    """`mlflow server` on a free loopback port, proxying artifacts; returns its URL once up.

    With `login` (user, password) it is MLflow's basic-auth app, as the README's multi-machine
    set-up runs it: that user is its admin, and every request must carry the login.
    """
    port = free_port()
    options, environment = [], None
    if login is not None:
        config = artifacts.parent / "mlflow-auth.ini"
        config.write_text(
            "[mlflow]\ndefault_permission = READ\n"
            f"database_uri = sqlite:///{artifacts.parent / 'mlflow-auth.db'}\n"
            f"admin_username = {login[0]}\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            "auth_cache_ttl_seconds = 300\n"  # one password hash check, not one per request
        )
        options = ["--app-name", "basic-auth"]
        environment = {
            **os.environ,
            "MLFLOW_AUTH_CONFIG_PATH": str(config),
            "MLFLOW_AUTH_ADMIN_PASSWORD": login[1],
            "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        }
    start(
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        *options,
        "--backend-store-uri",
        backend_store_uri,
        "--artifacts-destination",
        str(artifacts),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        env=environment,
    )
    url = f"http://127.0.0.1:{port}"
    get_json(f"{url}/api/2.0/mlflow/experiments/search", {"max_results": 1}, 120, login)
    return url


# The test server asks for this password over TCP (scram-sha-256), as a shared database would;
# tests check that it never reaches a file, a log or the tracking store.
POSTGRES_PASSWORD = "pg-secret-7f3a9c"


@dataclass(frozen=True)
class Postgres:
    port: int
    user: str = "bench"
    password: str = POSTGRES_PASSWORD
    control: Callable[[str], None] | None = None  # pg_ctl "stop" (immediate) or "start"

    def stop(self) -> None:
        """Take the server away, as a crash or a network partition would."""
        assert self.control is not None
        self.control("stop")

    def start(self) -> None:
        assert self.control is not None
        self.control("start")

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def _postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server on loopback, for the whole test session."""
    bin_dir = _postgres_bin()
    if bin_dir is None:
        message = "PostgreSQL is not installed (Debian: apt-get install postgresql)"
        if os.environ.get("RNNBENCH_REQUIRE_POSTGRES"):
            pytest.fail(message)  # CI installs it: a missing server there is a failure
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="rnnbench-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:  # PostgreSQL refuses to run as root: run it as Debian's postgres user
        account = pwd.getpwnam("postgres")
        os.chown(folder, account.pw_uid, account.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()

    def pg(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    password_file = folder / "password"
    password_file.write_text(POSTGRES_PASSWORD)
    if as_user:
        os.chown(password_file, account.pw_uid, account.pw_gid)
    pg(
        str(bin_dir / "initdb"),
        *("-D", str(data), "-U", "bench", "--pwfile", str(password_file), "--no-sync"),
        *("--auth-host", "scram-sha-256", "--auth-local", "trust"),
    )
    options = f"-h 127.0.0.1 -p {port} -k {folder} -c fsync=off -c max_connections=200"
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]

    def control(action: str) -> None:
        if action == "stop":
            pg(*pg_ctl, "-m", "immediate", "stop")
        else:
            pg(*pg_ctl, "-l", str(folder / "log"), "-o", options, "-w", "start")

    control("start")
    try:
        yield Postgres(port, control=control)
    finally:
        control("stop")
        shutil.rmtree(folder, ignore_errors=True)
