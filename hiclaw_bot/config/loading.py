"""Reading ``config.yaml``: environment overrides, validation, and every problem named with its line.

Why pydantic and not a dict: a bad config must never start the bot, and every error must name
the field (``matrix.registration.token``) and, where the YAML tells us, its line. Any field can be
overridden from the environment as ``HICLAW_<SECTION>__<FIELD>`` (``HICLAW_MATRIX__BOT__PASSWORD=…``),
which is how containers and CI inject credentials without writing them to a file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hiclaw_bot.config._base import ENV_PREFIX
from hiclaw_bot.config.model import Config


@dataclass(frozen=True)
class ConfigIssue:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f" (line {self.line})" if self.line is not None else ""
        return f"{self.path or '<root>'}: {self.message}{where}"


class ConfigError(Exception):
    """The configuration is invalid; ``issues`` lists every problem, each naming its field."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        super().__init__(f"{source}: {len(issues)} problem(s)\n" + "\n".join(f"  {i}" for i in issues))
        self.source = source
        self.issues = issues


def _lines(node: yaml.Node, prefix: tuple[str, ...], into: dict[tuple[str, ...], int]) -> None:
    into[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            _lines(value, (*prefix, str(key.value)), into)
            into.setdefault((*prefix, str(key.value)), key.start_mark.line + 1)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _lines(item, (*prefix, str(index)), into)


def _set_path(data: dict[str, Any], path: list[str], value: str) -> None:
    cursor = data
    for key in path[:-1]:
        nxt = cursor.get(key)
        if not isinstance(nxt, dict):
            nxt = {}
            cursor[key] = nxt
        cursor = nxt
    cursor[path[-1]] = yaml.safe_load(value) if value.strip().startswith(("[", "{")) else value


def apply_env(data: dict[str, Any], environ: Mapping[str, str]) -> list[str]:
    """Overlay ``HICLAW_A__B=value`` onto ``data['a']['b']``; return the dotted paths changed."""
    changed: list[str] = []
    for key, value in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX):
            continue
        path = [part.lower() for part in key[len(ENV_PREFIX):].split("__")]
        if path[0] not in Config.model_fields:
            continue
        _set_path(data, path, value)
        changed.append(".".join(path))
    return changed


def load_config(path: Path | str, *, environ: Mapping[str, str] | None = None) -> Config:
    """Read, overlay the environment, validate; raise :class:`ConfigError` listing every problem."""
    path = Path(path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(source, [ConfigIssue("", f"cannot read the file: {exc.strerror}")]) from None
    return parse_config(text, source=source, environ=os.environ if environ is None else environ,
                        base_dir=path.parent)


def parse_config(text: str, *, source: str = "<config>", environ: Mapping[str, str] | None = None,
                 base_dir: Path | None = None) -> Config:
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError(source, [ConfigIssue("", f"invalid YAML: {problem}", line)]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(source, [ConfigIssue("", "the top level must be a mapping of sections", 1)])
    lines: dict[tuple[str, ...], int] = {}
    if node is not None:
        _lines(node, (), lines)
    apply_env(data, environ or {})
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        issues = []
        for error in exc.errors(include_url=False):
            loc = tuple(str(p) for p in error["loc"] if not _is_union_tag(p))
            line = _nearest_line(lines, loc)
            issues.append(ConfigIssue(".".join(loc), error["msg"].removeprefix("Value error, "), line))
        raise ConfigError(source, issues) from None
    issues = [ConfigIssue(path, message, _nearest_line(lines, tuple(path.split("."))))
              for path, message in cross_checks(config)]
    if issues:
        raise ConfigError(source, issues)
    if base_dir is not None and not config.data_dir.is_absolute():
        config = config.model_copy(update={"data_dir": (base_dir / config.data_dir).resolve()})
    return config


def cross_checks(config: Config) -> list[tuple[str, str]]:
    """Settings that are each valid but cannot work together, as ``(field, why)``."""
    problems = []
    kind = config.backend.kind
    if kind in ("docker", "kubernetes") and config.storage.kind == "local":
        problems.append(("storage.kind", f"a {kind} worker cannot read a local directory of the bot's: "
                                         "use an S3 object store (storage.kind: s3)"))
    if kind == "docker" and config.backend.ready_check == "agent" and config.backend.docker.network == "none":
        problems.append(("backend.docker.network", "with network none the agent reaches no homeserver and "
                                                   "never becomes ready: name a network (or host), or set "
                                                   "backend.ready_check: running"))
    return problems


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and part in {"higress", "none", "s3", "local"}


def _nearest_line(lines: Mapping[tuple[str, ...], int], loc: tuple[str, ...]) -> int | None:
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None
