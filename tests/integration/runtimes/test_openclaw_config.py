"""OpenClaw itself accepts the ``openclaw.json`` we render: its own ``openclaw config validate``,
run on every golden file of its version (the golden tests pin those files to the renderer)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hiclaw_bot.flows.runtimes.openclaw import OPENCLAW_VERSION
from tests.fixtures.openclaw import openclaw, openclaw_install

GOLDEN = Path(__file__).parents[2] / "unit" / "golden" / f"openclaw-{OPENCLAW_VERSION}"
CASES = sorted(p.parent.name for p in GOLDEN.glob("*/openclaw.json"))


def test_the_golden_files_exist() -> None:
    assert CASES == ["team_leader", "worker", "worker_local_port"]


@pytest.mark.parametrize("case", CASES)
def test_openclaw_validates_our_config(case: str, tmp_path: Path) -> None:
    install = openclaw_install()
    (tmp_path / "openclaw.json").write_bytes((GOLDEN / case / "openclaw.json").read_bytes())
    result = openclaw(install, tmp_path, "config", "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Config valid" in result.stdout


def test_openclaw_rejects_what_upstreams_template_had(tmp_path: Path) -> None:
    """The check has teeth: upstream's ``groups."*".allow`` is refused by this version."""
    install = openclaw_install()
    document = json.loads((GOLDEN / "worker" / "openclaw.json").read_bytes())
    document["channels"]["matrix"]["groups"]["*"]["allow"] = True
    (tmp_path / "openclaw.json").write_text(json.dumps(document))
    result = openclaw(install, tmp_path, "config", "validate")
    assert result.returncode != 0
    assert 'additional properties: "allow"' in result.stdout + result.stderr
