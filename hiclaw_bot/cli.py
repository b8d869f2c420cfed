"""The ``hiclaw-bot`` command: run the bot, start the local stack, talk to it, inspect it.

Each subcommand is a thin shell over the library: parsing and printing here, behaviour elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hiclaw_bot import console as views
from hiclaw_bot.app import running, serve
from hiclaw_bot.config import Config, ConfigError, load_config
from hiclaw_bot.flows.services import StrandedWorkers
from hiclaw_bot.leadership import EXIT_LEADERSHIP_LOST, LeadershipLost
from storage import Store

console = Console()
errors = Console(stderr=True)

CONFIG_OPTION = click.option(
    "--config", "-c", "config_path", type=click.Path(path_type=Path), default=Path("config.yaml"),
    show_default=True, envvar="HICLAW_CONFIG", help="The YAML configuration file.",
)


def _load(config_path: Path) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        errors.print(f"[red]invalid configuration[/red] {exc.source}:")
        for issue in exc.issues:
            errors.print(f"  • {issue}", markup=False)
        raise SystemExit(2) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="hiclaw-bot")
def main() -> None:
    """Provision and run AI worker agents, teams and humans from Matrix chat."""


@main.command("check-config")
@click.argument("config_path", type=click.Path(path_type=Path))
def check_config(config_path: Path) -> None:
    """Validate CONFIG_PATH and print every problem with its field and line."""
    config = _load(config_path)
    console.print(f"[green]ok[/green]: {config_path} (backend {config.backend.kind}, "
                  f"storage {config.storage.kind}, gateway {config.gateway.kind})")
    for warning in config_warnings(config):
        console.print(f"[yellow]warning[/yellow]: {warning}")


def config_warnings(config: Config) -> list[str]:
    """What a valid configuration still leaves open, in words for the operator."""
    from backends.confinement import unconfined_reasons

    warnings = list(unconfined_reasons(config.backend.kind))
    if config.backend.kind == "process" and not config.backend.process.confine and not warnings:
        warnings.append("backend.process.confine is off: workers run as the bot's own user and can read its "
                        "database and each other's directories")
    if config.mail.enabled and config.mail.security == "none":
        warnings.append("mail.security is none: welcome mails (with their passwords) travel in plaintext")
    return warnings


@main.command()
@CONFIG_OPTION
def migrate(config_path: Path) -> None:
    """Create or upgrade the database."""
    config = _load(config_path)

    async def go() -> int:
        store = await Store.open(config.database_path)
        try:
            return await store.db.schema_version()
        finally:
            await store.close()

    version = asyncio.run(go())
    console.print(f"database {config.database_path} at schema version {version}")


DATA_DIR_OPTION = click.option(
    "--data-dir", type=click.Path(path_type=Path), default=None,
    help="Read the database of `hiclaw-bot dev` in this directory (its config.yaml).",
)


def _database(config_path: Path, data_dir: Path | None) -> Path:
    """The database path of the configuration (or of a dev stack), checked to exist."""
    path = _load(data_dir / "config.yaml" if data_dir is not None else config_path).database_path
    try:
        views.check_database(path)
    except views.NoDatabase as exc:
        errors.print(str(exc), markup=False)
        raise SystemExit(2) from None
    return path


@main.command()
@CONFIG_OPTION
@DATA_DIR_OPTION
@click.option("--state", "states", multiple=True, help="Only operations in this state (repeatable).")
@click.option("--limit", default=30, show_default=True)
def ops(config_path: Path, data_dir: Path | None, states: tuple[str, ...], limit: int) -> None:
    """List recent operations and where they stand (read-only; fine while the bot runs)."""
    path = _database(config_path, data_dir)

    async def go() -> None:
        async with views.open_existing(path) as store:
            console.print(views.ops_table(await store.ops.find(states=list(states) or None, limit=limit)))

    asyncio.run(go())


@main.command()
@CONFIG_OPTION
@DATA_DIR_OPTION
@click.option("--state", help="Only workers in this state (Running, Sleeping, …).")
def workers(config_path: Path, data_dir: Path | None, state: str | None) -> None:
    """List the workers with their state and current operation (read-only)."""
    path = _database(config_path, data_dir)

    async def go() -> None:
        async with views.open_existing(path) as store:
            console.print(await views.workers_table(store, state=state))

    asyncio.run(go())


@main.command()
@CONFIG_OPTION
@DATA_DIR_OPTION
@click.argument("op_id", type=int)
@click.option("--timeout", default=None, type=float, help="Stop following after this many seconds.")
def watch(config_path: Path, data_dir: Path | None, op_id: int, timeout: float | None) -> None:
    """Follow operation OP_ID step by step with a progress bar; exit 0 once it has succeeded."""
    path = _database(config_path, data_dir)

    async def go() -> str | None:
        async with views.open_existing(path) as store:
            op = await views.watch(store, op_id, console, within=timeout)
            if op is not None:
                console.print(views.steps_table(op, await store.steps.of(op_id)))
            return None if op is None else op.state

    state = asyncio.run(go())
    if state is None:
        errors.print(f"there is no operation {op_id}")
        sys.exit(2)
    if state != "succeeded":
        sys.exit(1)


@main.command()
@CONFIG_OPTION
def run(config_path: Path) -> None:
    """Run the bot with CONFIG_PATH until interrupted."""
    config = _load(config_path)
    _logging(config.log_level)
    try:
        _until_interrupted(serve(config))
    except LeadershipLost as exc:  # another replica leads now: exit, to be restarted as a standby
        errors.print(f"[red]stopped[/red]: {exc}", markup=True, highlight=False)
        sys.exit(EXIT_LEADERSHIP_LOST)
    except StrandedWorkers as exc:  # a configuration problem, named; never a traceback
        errors.print(f"[red]not starting[/red]: {escape(str(exc))}", markup=True, highlight=False)
        sys.exit(2)


@main.command()
@CONFIG_OPTION
@click.option("--data-dir", type=click.Path(path_type=Path), default=None,
              help="Talk to the bot of `hiclaw-bot dev` in this directory (its config and admin login).")
@click.argument("text")
@click.option("--user", "user_id", help="Send as this Matrix user (default: the first admin of the config).")
@click.option("--password", envvar="HICLAW_SAY_PASSWORD", help="Its password (default: matrix.admin_password).")
@click.option("--timeout", default=120.0, show_default=True, help="Seconds to wait for the final answer.")
@click.option("--room", help="Send TEXT in this room (id or alias) instead, and print the first reply to it "
                             "(a worker's, when TEXT mentions it).")
def say(config_path: Path, data_dir: Path | None, text: str, user_id: str | None, password: str | None,
        timeout: float, room: str | None) -> None:
    """Send TEXT to the bot in a direct message and print its answers until the final one."""
    # Imported here: the Matrix client library is slow to import, and only this command needs it.
    from hiclaw_bot.chat.say import BotMessage, SayError
    from hiclaw_bot.chat.say import say as talk

    if data_dir is not None:
        from hiclaw_bot.devstack.stack import read_admin_login

        login = read_admin_login(data_dir)
        config_path = data_dir / "config.yaml"
        user_id = user_id or login.user_id
        password = password or login.password
    config = _load(config_path)

    def show(message: BotMessage) -> None:
        label = "[dim]updated[/dim]" if message.edited else ("[bold]bot[/bold]" if message.final else "[dim]bot[/dim]")
        if room is not None:
            label = f"[bold]{message.sender}[/bold]"
        console.print(label)
        console.print(message.text, markup=False, highlight=False)

    try:
        finished = asyncio.run(talk(config, text, user_id=user_id, password=password, within=timeout, show=show,
                                    room=room))
    except SayError as exc:
        errors.print(f"[red]say failed[/red]: {exc}")
        sys.exit(1)
    if not finished:
        errors.print(f"no final answer within {timeout:.0f} s")
        sys.exit(1)


@main.group()
def image() -> None:
    """The worker image, built here from Debian and PyPI (no image registry needed)."""


@image.command("build")
@click.option("--root", type=click.Path(path_type=Path, file_okay=False), default=Path("."), show_default=True,
              help="The hiclaw-bot checkout to build from.")
@click.option("--docker-host", default=None, help="The engine to build in; unset: DOCKER_HOST or the default socket.")
@click.option("--cache-dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Where the rootfs and built images are kept (default: ~/.cache/hiclaw-bot/worker-image).")
def image_build(root: Path, docker_host: str | None, cache_dir: Path | None) -> None:
    """Build hiclaw/worker-agent:<content hash> and print its tag (seconds when nothing changed)."""
    tag = _build_image(root, docker_host, cache_dir)
    console.print(tag, markup=False, highlight=False)


def _build_image(root: Path, docker_host: str | None, cache_dir: Path | None) -> str:
    """Build the worker image with a progress bar on stderr; exit 1 saying why it cannot be built."""
    from rich.progress import Progress

    from hiclaw_bot.devstack.worker_image import STEPS, ImageBuildError, build_worker_image

    with Progress(console=errors, transient=True) as progress:
        task = progress.add_task("worker image", total=len(STEPS))

        def report(step: str, message: str) -> None:
            progress.update(task, completed=STEPS.index(step), description=message)

        try:
            result = build_worker_image(root, base_url=docker_host, cache_dir=cache_dir, progress=report)
        except ImageBuildError as exc:
            progress.stop()
            errors.print(f"[red]cannot build the worker image[/red]: {exc}", highlight=False)
            sys.exit(1)
        progress.update(task, completed=len(STEPS))
    how = {"engine": "already built", "saved": "loaded from the cache"}.get(result.cached or "", "built")
    errors.print(f"worker image {result.tag} ({how})", markup=False, highlight=False)
    return result.tag


@main.command()
@click.option("--data-dir", type=click.Path(path_type=Path), default=Path(".dev"), show_default=True)
@click.option("--backend", type=click.Choice(["process", "docker"]), default="process", show_default=True,
              help="Run workers as local processes, or as containers of the worker image (built when missing).")
def dev(data_dir: Path, backend: str) -> None:
    """Start the embedded local stack (Synapse, object store, gateway simulator) and the bot."""
    from hiclaw_bot.devstack.stack import LocalStack, StackError, docker_host
    from hiclaw_bot.devstack.workers import park, unpark

    image_tag: str | None = None
    if backend == "docker":
        host = asyncio.run(docker_host())
        if host is None:
            errors.print("[red]--backend docker[/red]: no Docker engine answers at $DOCKER_HOST or "
                         "/var/run/docker.sock; start dockerd (see README, 'Workers on Docker') or use "
                         "--backend process", highlight=False)
            sys.exit(1)
        image_tag = _build_image(Path("."), host, None)
    _logging("INFO")

    refused: list[StackError] = []

    async def go() -> None:
        try:
            async with LocalStack(data_dir, worker_image=image_tag) as stack:
                await unpark(stack.config)
                try:
                    async with running(stack.config):
                        console.print(stack.describe(), markup=False)
                        hint = f"hiclaw-bot say --data-dir {data_dir} '!help'"
                        console.print(f"The bot is up. In another terminal: {hint}", markup=False)
                        await asyncio.Event().wait()
                finally:  # the process workers stop with the stack, and the next start brings them back
                    await park(stack.config)
        except StackError as exc:
            refused.append(exc)

    _until_interrupted(go())
    if refused:
        errors.print(f"[red]cannot start the local stack[/red]: {refused[0]}", highlight=False)
        sys.exit(1)


@main.command()
@CONFIG_OPTION
@click.option("--dry-run", is_flag=True, help="Only list the orphans (required: deleting is `!gc` in chat).")
def gc(config_path: Path, dry_run: bool) -> None:
    """List what no worker or team owns under our names in every system (the orphan sweep's proposal)."""
    from rich.progress import Progress

    from hiclaw_bot.app import bot_token, open_services
    from hiclaw_bot.flows.inventory import SYSTEMS, Inventory, inventory

    if not dry_run:
        errors.print("deleting orphans needs a confirmation: send `!gc` to the bot; here only `gc --dry-run`")
        sys.exit(2)
    config = _load(config_path)

    async def go() -> Inventory:
        store = await Store.open(config.database_path)
        try:
            token = await bot_token(config, store)
            async with open_services(config, store, bot_token=token) as services:
                with Progress(console=errors, transient=True) as progress:
                    task = progress.add_task("inventory", total=len(SYSTEMS))
                    return await inventory(services, progress=lambda system: progress.update(
                        task, advance=1, description=f"listed {system}"))
        finally:
            await store.close()

    found = asyncio.run(go())
    table = Table("system", "object", "route", title=f"{len(found.orphans)} orphan(s)")
    for orphan in found.orphans:
        table.add_row(orphan.system, orphan.name, orphan.where or "")
    console.print(table)
    console.print(", ".join(f"{count} {system}" for system, count in found.seen.items()) + " under our names")


def _logging(level: str) -> None:
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aiohttp.access", "nio", "botocore", "aiobotocore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def _until_interrupted(coro: Coroutine[Any, Any, None]) -> None:
    """Run ``coro``; SIGINT or SIGTERM cancels it, so every ``finally`` runs and the exit is clean."""

    async def main_task() -> None:
        task = asyncio.ensure_future(coro)
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(main_task())
