"""``hiclaw-bot dev --backend docker`` and ``hiclaw-bot image build`` say exactly why they cannot
go on, with exit status 1 and no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from hiclaw_bot.cli import main
from hiclaw_bot.devstack import stack


def test_dev_on_docker_without_an_engine_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"unix://{tmp_path / 'no-docker.sock'}"
    monkeypatch.setattr(stack, "_DEFAULT_DOCKER_SOCKET", missing)
    result = CliRunner().invoke(main, ["dev", "--backend", "docker", "--data-dir", str(tmp_path / "dev")],
                                env={"DOCKER_HOST": missing})
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())  # rich wraps long lines
    assert "no Docker engine answers" in said
    assert "--backend process" in said
    assert "Traceback" not in result.output
    assert not (tmp_path / "dev").exists(), "nothing was started"


def test_dev_refuses_an_unknown_backend(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["dev", "--backend", "podman", "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    assert "'podman' is not one of 'process', 'docker'" in result.output


def test_image_build_outside_a_checkout_says_so(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["image", "build", "--root", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "is not a hiclaw-bot checkout" in " ".join(result.output.split())
    assert "Traceback" not in result.output


def test_a_stack_that_cannot_start_is_explained(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: stack.LocalStack) -> None:
        raise stack.StackError("containers cannot read a local object-store directory")

    monkeypatch.setattr(stack.LocalStack, "start", refuse)
    result = CliRunner().invoke(main, ["dev", "--data-dir", str(tmp_path)])
    assert result.exit_code == 1, result.output
    said = " ".join(result.output.split())
    assert "cannot start the local stack: containers cannot read a local object-store directory" in said
    assert "Traceback" not in result.output
