"""Real servers for the service's tests and load benchmark, on 127.0.0.1 only: `vpl serve`
(uvicorn) in a subprocess, and a throwaway PostgreSQL cluster in a temporary folder (needs
PostgreSQL's own programs, `initdb` and `pg_ctl`: Debian's `postgresql` package)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin(name: str) -> str | None:
    """The path of a PostgreSQL server program (on PATH or in Debian's versioned folder)."""
    found = shutil.which(name)
    if found:
        return found
    for d in sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True):
        if (d / name).exists():
            return str(d / name)
    return None


def postgres_available() -> bool:
    """Whether `throwaway_postgres` can start a server here."""
    return postgres_bin("initdb") is not None and postgres_bin("pg_ctl") is not None


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """Start a new PostgreSQL cluster listening on 127.0.0.1 only and yield its SQLAlchemy URL
    (psycopg driver); stop it and delete its files on exit. As root, the cluster runs as the
    `postgres` user (initdb refuses root)."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        raise FileNotFoundError("PostgreSQL is not installed (no initdb / pg_ctl); on Debian: "
                                "apt-get install postgresql")
    root = Path(tempfile.mkdtemp(prefix="vpl-pg-"))  # outside private temp trees: see above
    data = root / "data"
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(root, "postgres")
    port = free_port()
    try:
        subprocess.run([*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "vpl"],
                       check=True, capture_output=True)
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-l", str(root / "log"), "-w", "-o",
                        f"-h 127.0.0.1 -p {port} -k {root}", "start"], check=True,
                       capture_output=True)
        yield f"postgresql+psycopg://vpl@127.0.0.1:{port}/postgres"
    finally:
        if data.exists():
            subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
                           capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


def vpl_command(*args: str) -> list[str]:
    """The `vpl` command line run by this interpreter."""
    return [sys.executable, "-m", "vpl.cli", *args]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll `url`/health until it answers (or the server process died)."""
    import httpx

    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(f"{url}/health", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not come up in {timeout} s")


@contextmanager
def running_server(run_dir: str | os.PathLike, db: str, *extra: str,
                   log: str | os.PathLike | None = None
                   ) -> Iterator[tuple[str, subprocess.Popen]]:
    """A real `vpl serve` on 127.0.0.1 and a free port, over the run and the database URL:
    (base URL, process), in a process group of its own (uvicorn's workers included) that is
    killed on exit. `extra`: more `vpl serve` flags."""
    port = free_port()
    out = open(log, "ab") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    proc = subprocess.Popen(vpl_command("serve", "--run", str(run_dir), "--db", db, "--host",
                                        "127.0.0.1", "--port", str(port), *extra),
                            stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, proc
    finally:
        kill_server(proc)
        proc.wait(timeout=30)
        if log is not None:
            out.close()


def kill_server(proc: subprocess.Popen) -> None:
    """SIGKILL a server started by `running_server` and all of its process group (a crash: no
    shutdown handler runs)."""
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
