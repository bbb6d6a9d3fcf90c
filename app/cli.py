"""The ``hotline`` command: serve, dispatch, migrate, seed-demo."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Sequence

from alembic import command
from alembic.config import Config

from app.config import get_settings
from app.embedded import resolve_database_url
from app.health import MIGRATIONS_DIR


def database_url() -> str:
    """The configured database, or the embedded server started for this process."""
    settings = get_settings()
    url = resolve_database_url(settings.database_url, settings.data_dir)
    os.environ["DATABASE_URL"] = url  # uvicorn workers and Alembic inherit it
    get_settings.cache_clear()
    return url


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logging"] = False
    return config


def migrate(url: str) -> None:
    command.upgrade(alembic_config(url), "head")
    print("database migrated to head")


def seed_demo() -> None:
    from app.demo import seed

    asyncio.run(seed(get_settings()))


def serve(args: argparse.Namespace) -> None:
    import uvicorn

    # uvicorn stops on SIGTERM, then raises it again: with this handler the process then
    # exits normally, so the dispatcher child and the embedded server are stopped too.
    signal.signal(signal.SIGTERM, _exit_on_signal)

    child = None
    if args.dispatcher_process:
        # The API processes leave deciding to the dispatcher process, kept running beside them.
        os.environ["HOTLINE_DISPATCHER_ENABLED"] = "false"
        get_settings.cache_clear()
        child = DispatcherProcess()
        child.start()
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=args.workers,
            log_level=get_settings().log_level.lower(),
        )
    finally:
        if child is not None:
            child.stop()


PARENT_PID_ENV = "HOTLINE_PARENT_PID"


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


class DispatcherProcess:
    """``hotline dispatch`` as a child process, started again if it ever exits."""

    RESTART_DELAY_S = 1.0

    def __init__(self) -> None:
        self._process: subprocess.Popen[bytes] | None = None
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)

    def start(self) -> None:
        self._spawn()
        self._thread.start()

    def _spawn(self) -> None:
        env = {
            **os.environ,
            "HOTLINE_DISPATCHER_ENABLED": "true",
            PARENT_PID_ENV: str(os.getpid()),
        }
        self._process = subprocess.Popen([sys.executable, "-m", "app.cli", "dispatch"], env=env)

    def _supervise(self) -> None:
        while not self._stopping.is_set():
            assert self._process is not None
            code = self._process.wait()
            if self._stopping.wait(self.RESTART_DELAY_S):
                return
            print(f"dispatcher process exited ({code}); starting it again", file=sys.stderr)
            self._spawn()

    def stop(self) -> None:
        self._stopping.set()
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()


def dispatch() -> None:
    from app.logging import configure_logging
    from app.runtime import dispatch_until_stopped

    settings = get_settings()
    configure_logging(settings.log_level)
    # Started by `serve --dispatcher-process`: end with the server, however it ends (uvicorn
    # re-raises the signal that stopped it, so the server may not get to stop this process).
    parent = int(os.environ.get(PARENT_PID_ENV, "0")) or None
    main = dispatch_until_stopped(settings, parent_pid=parent)
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
        asyncio.run(main)
    else:
        uvloop.run(main)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("serve", help="serve the API, console and wallboard")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument("--port", type=int, default=8000)
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--migrate", action="store_true", help="migrate the database first")
    run.add_argument("--seed-demo", action="store_true", help="seed the demo centre first")
    run.add_argument(
        "--dispatcher-process",
        action="store_true",
        help="run the dispatcher in a process of its own beside the API (busy centres)",
    )
    sub.add_parser("dispatch", help="run only the dispatcher, event hub and timers (no HTTP)")
    sub.add_parser("migrate", help="bring the database schema to the latest revision")
    sub.add_parser("seed-demo", help="create the demo centre (idempotent)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # Long-running server processes (and uvicorn's workers, through the environment) tune
    # their garbage collection (app/runtime.py).
    os.environ.setdefault("HOTLINE_GC_TUNED", "true")
    get_settings.cache_clear()
    url = database_url()
    if args.command == "migrate" or getattr(args, "migrate", False):
        migrate(url)
    if args.command == "seed-demo" or getattr(args, "seed_demo", False):
        seed_demo()
    if args.command == "serve":
        serve(args)
    if args.command == "dispatch":
        dispatch()
    return 0


if __name__ == "__main__":
    sys.exit(main())
