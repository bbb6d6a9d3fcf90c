"""The ``hotline`` command: serve, dispatch, migrate, seed-demo, set-password.

Theory of operation
-------------------
Every command first finds its database: ``DATABASE_URL``, or the embedded server in the data
folder, started or reused (``app/embedded.py``: the last process using it stops it).

- **Ending.** SIGTERM and SIGHUP (a closed terminal) end every command the way Ctrl-C does,
  through a normal exit, so the dispatcher child and the embedded server are stopped too.
  SIGKILL cannot be caught; the next start adopts the server it left running.
- **Serving.** ``serve`` checks that it can listen on its port before any one-time work
  (starting the database, migrating, creating the first admin and printing its password), and
  says what to do when it cannot.
- **The demo centre** has accounts with published passwords, so it is seeded only when asked:
  ``--demo yes`` (or ``--seed-demo``) always, ``--demo auto`` (what ``make run`` passes) only
  on the embedded server, never on a configured ``DATABASE_URL``.
- **set-password** is for the operator at the server's shell, not for HTTP: it applies the
  API's password rules, revokes the user's earlier tokens and records ``agent.updated``.
"""

from __future__ import annotations

import argparse
import asyncio
import errno
import getpass
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from enum import StrEnum
from typing import TextIO

from alembic import command
from alembic.config import Config
from pydantic import ValidationError

from app.config import Settings, get_settings
from app.embedded import start_embedded
from app.health import MIGRATIONS_DIR


class OperatorError(Exception):
    """A command cannot go on; the message says why and what to do."""


def use_database() -> tuple[str, bool]:
    """The configured database, or the embedded server's; and whether it is the embedded one."""
    settings = get_settings()
    embedded = not settings.database_url
    url = start_embedded(settings.data_dir) if embedded else str(settings.database_url)
    os.environ["DATABASE_URL"] = url  # uvicorn workers, the dispatcher child and Alembic
    get_settings.cache_clear()
    return url, embedded


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


# --- the demo centre --------------------------------------------------------------------


class Demo(StrEnum):
    AUTO = "auto"
    YES = "yes"
    NO = "no"


_DEMO_WORDS = {"auto": Demo.AUTO, "yes": Demo.YES, "1": Demo.YES, "true": Demo.YES}
_DEMO_WORDS |= {"no": Demo.NO, "0": Demo.NO, "false": Demo.NO, "": Demo.NO}


def demo_choice(value: str) -> Demo:
    """``--demo``'s value: auto, yes or no (also 1/0, true/false, as ``make run DEMO=1``)."""
    try:
        return _DEMO_WORDS[value.strip().lower()]
    except KeyError:
        raise argparse.ArgumentTypeError(f"{value!r}: choose auto, yes or no") from None


def should_seed(choice: Demo, *, embedded: bool) -> bool:
    """Seed the demo when asked, or on ``auto`` when the database is the embedded one."""
    return choice is Demo.YES or (choice is Demo.AUTO and embedded)


def prepare(args: argparse.Namespace) -> str:
    """The one-time work before serving: the database, migrations, the demo if wanted."""
    url, embedded = use_database()
    if args.migrate:
        migrate(url)
    if should_seed(args.demo, embedded=embedded):
        seed_demo()
    elif args.demo is Demo.AUTO:
        print("demo centre not seeded: DATABASE_URL is set (`make run DEMO=1` seeds it)")
    return url


# --- serving ----------------------------------------------------------------------------


def port_problem(host: str, port: int) -> str | None:
    """Why ``serve`` could not listen on ``host:port`` and what to do, or None if it can."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror as error:
        return f"cannot listen on {host!r}: {error.strerror}; check --host"
    with socket.socket(family, kind, proto) as sock:
        # As uvicorn binds: a port held only by closed connections (TIME_WAIT) is free.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(address)
        except OSError as error:
            return _bind_failure(host, port, error)
    return None


def _bind_failure(host: str, port: int, error: OSError) -> str:
    other = port + 1 if port < 65535 else 8080
    hint = (
        f"choose another port: `make run PORT={other}`, `hotline serve --port {other}` "
        f"or HOTLINE_PORT={other}"
    )
    if error.errno == errno.EADDRINUSE:
        return (
            f"port {port} on {host} is already in use (another Hotline still running, or "
            f"another program); stop it, or {hint}. Nothing was started or changed."
        )
    if error.errno == errno.EACCES:
        return f"port {port} needs administrator rights; {hint}"
    return f"cannot listen on {host}:{port} ({error.strerror}); {hint}"


def _public_base_url_follows(host: str, port: int) -> None:
    # Links and webhook signatures use the public URL: unless set, it is where we serve.
    if "public_base_url" not in get_settings().model_fields_set:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::") else host
        os.environ["HOTLINE_PUBLIC_BASE_URL"] = f"http://{shown}:{port}"
        get_settings.cache_clear()


def run_serve(args: argparse.Namespace) -> None:
    port: int = args.port or get_settings().port
    problem = port_problem(args.host, port)
    if problem is not None:
        raise OperatorError(problem)
    _public_base_url_follows(args.host, port)
    prepare(args)
    serve(host=args.host, port=port, workers=args.workers, own_dispatcher=args.dispatcher_process)


def serve(*, host: str, port: int, workers: int, own_dispatcher: bool) -> None:
    import uvicorn

    from app.realtime.protocol import IMPORT_PATH

    child = None
    if own_dispatcher:
        # The API processes leave deciding to the dispatcher process, kept running beside them.
        os.environ["HOTLINE_DISPATCHER_ENABLED"] = "false"
        get_settings.cache_clear()
        child = DispatcherProcess()
        child.start()
    try:
        uvicorn.run(
            "app.main:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            log_level=get_settings().log_level.lower(),
            ws=IMPORT_PATH,
        )
    finally:
        if child is not None:
            child.stop()


PARENT_PID_ENV = "HOTLINE_PARENT_PID"


def _exit_on_signal(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _hang_up(signum: int, frame: object) -> None:
    # Whoever handles SIGTERM at this moment (uvicorn while it serves, the dispatcher's event
    # loop, or _exit_on_signal) then ends the process cleanly, as it does for SIGTERM.
    signal.raise_signal(signal.SIGTERM)


def end_cleanly_on_signals() -> None:
    """SIGTERM and SIGHUP end the process through a normal exit (atexit work runs).

    uvicorn stops on SIGTERM, then raises it again: with this handler the process then exits
    normally, so the dispatcher child and the embedded server are stopped too. (With
    ``--workers`` above 1, uvicorn's supervisor takes SIGHUP to mean "restart the workers".)
    """
    signal.signal(signal.SIGTERM, _exit_on_signal)
    signal.signal(signal.SIGHUP, _hang_up)


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


def run_dispatch(args: argparse.Namespace) -> None:
    from app.logging import configure_logging
    from app.runtime import dispatch_until_stopped

    use_database()
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


def run_migrate(args: argparse.Namespace) -> None:
    migrate(use_database()[0])


def run_seed_demo(args: argparse.Namespace) -> None:
    use_database()
    seed_demo()


# --- set-password -----------------------------------------------------------------------


def read_new_password(stdin: TextIO) -> str:
    """From the terminal, typed twice without echo; otherwise the first line of stdin."""
    if not stdin.isatty():
        return stdin.readline().rstrip("\r\n")
    first = getpass.getpass("New password: ")
    if getpass.getpass("New password again: ") != first:
        raise OperatorError("the two passwords differ; nothing changed")
    return first


def checked_password(password: str) -> str:
    """The password if the API would accept it; else an error quoting the API's rule."""
    from app.agents.schemas import AgentUpdate

    try:
        AgentUpdate(password=password)
    except ValidationError as error:
        reason = error.errors()[0]["msg"]
        raise OperatorError(f"password refused: {reason}; nothing changed") from None
    return password


def operator_name() -> str:
    """Who ran the command, for the event log: the operating-system account."""
    try:
        return f"operator:{getpass.getuser()}"
    except OSError:  # no user name in the environment or the password database
        return "operator"


async def require_user(settings: Settings, username: str) -> None:
    """Refuse an unknown username before asking for a password."""
    from app.agents import service as agents
    from app.db import create_engine, create_sessionmaker

    assert settings.database_url is not None
    engine = create_engine(
        settings.database_url,
        pool_size=1,
        idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
    )
    try:
        async with create_sessionmaker(engine)() as session:
            if await agents.get_by_username(session, username) is None:
                raise OperatorError(f"no user named {username!r}; nothing changed")
    finally:
        await engine.dispose()


async def set_password(settings: Settings, *, username: str, password: str, actor: str) -> bool:
    """Set the password, revoke earlier tokens, record ``agent.updated``; True if active."""
    from app.agents import service as agents
    from app.agents.schemas import AgentUpdate
    from app.agents.security import hash_password, make_hasher
    from app.db import create_engine, create_sessionmaker, unit_of_work

    assert settings.database_url is not None
    # Hashed before the transaction begins: the hash takes the better part of a second.
    password_hash = await hash_password(make_hasher(settings), password)
    engine = create_engine(
        settings.database_url,
        pool_size=1,
        idle_tx_timeout_ms=settings.idle_in_transaction_timeout_ms,
    )
    try:
        async with unit_of_work(create_sessionmaker(engine)) as session:
            agent = await agents.get_by_username(session, username)
            if agent is None:
                raise OperatorError(f"no user named {username!r}; nothing changed")
            await agents.update_agent(
                session,
                agent,
                changes=AgentUpdate(password=password),
                password_hash=password_hash,
                actor=actor,
            )
            return agent.active
    finally:
        await engine.dispose()


def run_set_password(args: argparse.Namespace) -> None:
    use_database()
    settings = get_settings()
    asyncio.run(require_user(settings, args.username))
    password = checked_password(read_new_password(sys.stdin))
    active = asyncio.run(
        set_password(settings, username=args.username, password=password, actor=operator_name())
    )
    print(f"password of {args.username!r} set; the tokens it had before no longer work")
    if not active:
        print(f"note: {args.username!r} is deactivated and cannot sign in until reactivated")


# --- the command line -------------------------------------------------------------------


def _serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("serve", help="serve the API, console and wallboard")
    run.add_argument("--host", default="127.0.0.1")
    run.add_argument(
        "--port", type=int, default=None, help="default: HOTLINE_PORT, or 8000 when unset"
    )
    run.add_argument("--workers", type=int, default=1)
    run.add_argument("--migrate", action="store_true", help="migrate the database first")
    run.add_argument(
        "--demo",
        type=demo_choice,
        default=Demo.NO,
        help="seed the demo centre first: yes, no (the default), or auto (only on the "
        "embedded server, never on a configured DATABASE_URL)",
    )
    run.add_argument(
        "--seed-demo", dest="demo", action="store_const", const=Demo.YES, help="--demo yes"
    )
    run.add_argument(
        "--dispatcher-process",
        action="store_true",
        help="run the dispatcher in a process of its own beside the API (busy centres)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hotline", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    _serve_parser(sub)
    sub.add_parser("dispatch", help="run only the dispatcher, event hub and timers (no HTTP)")
    sub.add_parser("migrate", help="bring the database schema to the latest revision")
    sub.add_parser("seed-demo", help="create the demo centre (idempotent)")
    password = sub.add_parser(
        "set-password",
        help="set a user's password (read twice from the terminal, or one line of stdin); "
        "their earlier tokens stop working",
    )
    password.add_argument("username")
    return parser


COMMANDS: dict[str, Callable[[argparse.Namespace], None]] = {
    "serve": run_serve,
    "dispatch": run_dispatch,
    "migrate": run_migrate,
    "seed-demo": run_seed_demo,
    "set-password": run_set_password,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    end_cleanly_on_signals()
    # Long-running server processes (and uvicorn's workers, through the environment) tune
    # their garbage collection (app/runtime.py).
    os.environ.setdefault("HOTLINE_GC_TUNED", "true")
    get_settings.cache_clear()
    try:
        COMMANDS[args.command](args)
    except OperatorError as error:
        print(f"hotline: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
