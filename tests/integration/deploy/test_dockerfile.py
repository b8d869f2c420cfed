"""The bot's ``Dockerfile``, checked without building it (no registry is reachable here, so no
base image can be pulled): a pinned base, every COPY source present and not ignored, the
extra it installs pinned, an unprivileged user, the data volume the configuration points at,
and an entrypoint the CLI really has."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import tomllib

from click.testing import CliRunner

from hiclaw_bot.cli import main
from hiclaw_bot.config import ApiConfig
from tests.integration.deploy.manifests import ROOT

Instruction = tuple[str, str]


def instructions() -> list[Instruction]:
    """``(KEYWORD, arguments)`` pairs, with continuation lines joined and comments dropped."""
    joined: list[Instruction] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        keyword, _, rest = (pending + line).partition(" ")
        joined.append((keyword.upper(), rest.strip()))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continuation line"
    return joined


def arguments(keyword: str) -> list[str]:
    return [rest for key, rest in instructions() if key == keyword]


def dockerignored(path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes."""
    ignored = False
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = raw.strip()
        if not pattern or pattern.startswith("#"):
            continue
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        if fnmatch.fnmatch(path, pattern) or fnmatch.fnmatch(path.split("/")[0], pattern):
            ignored = not negate
    return ignored


def test_the_base_image_is_pinned_to_a_patch_release() -> None:
    bases = arguments("FROM")
    assert len(bases) == 1
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm(@sha256:[0-9a-f]{64})?", bases[0]), bases[0]


def test_every_copy_source_exists_and_reaches_the_build_context() -> None:
    copies = arguments("COPY")
    assert copies
    for copy in copies:
        *sources, _ = shlex.split(copy)
        for source in sources:
            assert not source.startswith("--"), "no COPY --from: the build has one stage"
            assert (ROOT / source).exists(), source
            assert not dockerignored(source), f"{source} is excluded by .dockerignore"
    assert dockerignored(".venv")
    assert dockerignored("tests")


def test_it_installs_the_kubernetes_extra_with_pinned_versions() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installs = [run for run in arguments("RUN") if "pip install" in run]
    assert len(installs) == 1
    assert '".[kubernetes]"' in installs[0]
    for requirement in (*project["dependencies"], *project["optional-dependencies"]["kubernetes"]):
        assert "==" in requirement, f"{requirement} is not pinned"


def test_it_runs_unprivileged_with_the_data_volume() -> None:
    (user,) = arguments("USER")
    uid, _, gid = user.partition(":")
    assert int(uid) != 0
    assert int(gid) != 0
    assert json.loads(arguments("VOLUME")[0]) == ["/data"]
    env = " ".join(arguments("ENV"))
    assert "HICLAW_DATA_DIR=/data" in env
    assert "HICLAW_CONFIG=/etc/hiclaw/config.yaml" in env


def test_the_entrypoint_is_a_real_cli_command() -> None:
    entrypoint = json.loads(arguments("ENTRYPOINT")[0])
    command = json.loads(arguments("CMD")[0])
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert entrypoint == ["hiclaw-bot"]
    assert project["scripts"]["hiclaw-bot"] == "hiclaw_bot.cli:main"
    assert command[0] in main.commands
    # The arguments parse: --help after them succeeds only when everything before it is valid.
    result = CliRunner().invoke(main, [*command, "--help"])
    assert result.exit_code == 0, result.output
    assert "--config" in result.output


def test_the_healthcheck_asks_the_api_for_healthz() -> None:
    (healthcheck,) = arguments("HEALTHCHECK")
    assert "/healthz" in healthcheck
    assert f"'{ApiConfig().listen}'" in healthcheck  # the API's default address
    exposed = arguments("EXPOSE")
    assert exposed == [ApiConfig().listen.rpartition(":")[2]]
