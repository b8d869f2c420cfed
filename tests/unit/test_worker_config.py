"""Worker config rendering: golden files byte for byte, and properties of byte-stability.

To accept an intended change of the output, run with ``HICLAW_UPDATE_GOLDEN=1`` and review the diff
of ``tests/unit/golden/`` like any other change.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiclaw_bot.flows.worker_config import (
    AGENTS_MD,
    MCPORTER_JSON,
    OPENCLAW_JSON,
    SOUL_MD,
    McpServer,
    TeamMember,
    WorkerConfigSpec,
    gateway_auth_token,
    render_worker_config,
)
from hiclaw_bot.types import RoomId, TeamName, UserId, WorkerName

GOLDEN = Path(__file__).parent / "golden" / "openclaw-2026.9.6"
"""Per runtime version: the files as OpenClaw 2026.9.6 reads them (the reference agent reads the
same ``openclaw.json``, and ``test_openclaw_validates`` has OpenClaw itself check each one)."""
ACCESS_TOKEN = "syt_YWxpY2U_matrix-access-token"
GATEWAY_KEY = "gw-key-alice-5c1f0e9d8b7a6"

WORKER = WorkerConfigSpec(
    worker=WorkerName("alice"),
    homeserver_url="http://127.0.0.1:8008/",
    user_id=UserId("@alice:hiclaw.test"),
    access_token=ACCESS_TOKEN,
    room_id=RoomId("!worker-alice:hiclaw.test"),
    allowed_senders=(UserId("@lead:hiclaw.test"), UserId("@admin:hiclaw.test")),
    model="qwen3.5-plus",
    gateway_url="http://127.0.0.1:8080/",
    gateway_key=GATEWAY_KEY,
    mcp_servers=(McpServer("search"), McpServer("github", "https://mcp.example.test/github")),
    team=TeamName("research"),
    skills=("web-research", "file-sync"),
)
LEADER = WorkerConfigSpec(
    worker=WorkerName("lead"),
    homeserver_url="http://127.0.0.1:8008",
    user_id=UserId("@lead:hiclaw.test"),
    access_token="syt_bGVhZA_leader-access-token",
    room_id=RoomId("!leader-dm:hiclaw.test"),
    allowed_senders=(UserId("@admin:hiclaw.test"),),
    model="claude-sonnet-4-6",
    gateway_url="http://127.0.0.1:8080",
    gateway_key="gw-key-lead-0a1b2c3d4e5f",
    role="team_leader",
    team=TeamName("research"),
    team_members=(
        TeamMember(WorkerName("bob"), UserId("@bob:hiclaw.test"), RoomId("!worker-bob:hiclaw.test")),
        TeamMember(WorkerName("alice"), UserId("@alice:hiclaw.test"), RoomId("!worker-alice:hiclaw.test")),
    ),
)


LOCAL_WORKER = dataclasses.replace(WORKER, gateway_port=31234)
"""As on the process backend, where workers share the host's ports and each has its own."""
CASES = [("worker", WORKER), ("team_leader", LEADER), ("worker_local_port", LOCAL_WORKER)]


@pytest.mark.parametrize(("case", "spec"), CASES)
def test_golden_files(case: str, spec: WorkerConfigSpec) -> None:
    rendered = render_worker_config(spec)
    directory = GOLDEN / case
    if os.environ.get("HICLAW_UPDATE_GOLDEN"):
        for path, data in rendered.files.items():
            (directory / path).parent.mkdir(parents=True, exist_ok=True)
            (directory / path).write_bytes(data)
    on_disk = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
    assert on_disk == set(rendered.files)
    for path, data in rendered.files.items():
        assert data == (directory / path).read_bytes(), f"{case}/{path} differs from its golden file"


def test_what_the_files_say() -> None:
    rendered = render_worker_config(WORKER)
    assert set(rendered.files) == {OPENCLAW_JSON, MCPORTER_JSON, AGENTS_MD, SOUL_MD}
    assert rendered.seed_only == frozenset({SOUL_MD})
    config = json.loads(rendered.files[OPENCLAW_JSON])
    matrix = config["channels"]["matrix"]
    assert matrix["groups"]["*"]["requireMention"] is True
    assert matrix["dm"]["allowFrom"] == matrix["groupAllowFrom"] == ["@admin:hiclaw.test", "@lead:hiclaw.test"]
    assert matrix["homeserver"] == "http://127.0.0.1:8008"
    provider = config["models"]["providers"]["hiclaw-gateway"]
    assert provider["baseUrl"] == "http://127.0.0.1:8080/v1"
    assert config["agents"]["defaults"]["model"]["primary"] == "hiclaw-gateway/qwen3.5-plus"
    assert config["gateway"]["auth"]["token"] == gateway_auth_token(GATEWAY_KEY) != GATEWAY_KEY
    servers = json.loads(rendered.files[MCPORTER_JSON])["mcpServers"]
    assert servers["search"]["url"] == "http://127.0.0.1:8080/mcp-servers/search/mcp"
    assert servers["github"]["url"] == "https://mcp.example.test/github"
    assert servers["search"]["headers"] == {"Authorization": f"Bearer {GATEWAY_KEY}"}
    leader = json.loads(render_worker_config(LEADER).files[OPENCLAW_JSON])["channels"]["matrix"]
    assert leader["groupAllowFrom"] == ["@admin:hiclaw.test", "@alice:hiclaw.test", "@bob:hiclaw.test"]
    assert leader["dm"]["allowFrom"] == ["@admin:hiclaw.test"]


def test_secrets_stay_out_of_reprs_and_prose() -> None:
    rendered = render_worker_config(WORKER)
    for text in (repr(WORKER), repr(rendered), rendered.files[AGENTS_MD].decode(), rendered.files[SOUL_MD].decode()):
        assert GATEWAY_KEY not in text
        assert ACCESS_TOKEN not in text


@pytest.mark.parametrize("change", [
    {"worker": WorkerName("Alice")},
    {"allowed_senders": ()},
    {"model": ""},
    {"role": "team_leader", "team": None},
    {"skills": ("../escape",)},
    {"mcp_servers": (McpServer("github"), McpServer("github", "https://elsewhere.test/mcp"))},
])
def test_invalid_specs_are_refused(change: dict[str, object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        dataclasses.replace(WORKER, **change)  # type: ignore[arg-type]


def test_members_only_for_leaders() -> None:
    with pytest.raises(ValueError, match="only a team leader"):
        dataclasses.replace(WORKER, team_members=LEADER.team_members)


def test_digest_follows_content() -> None:
    assert render_worker_config(WORKER).digest() == render_worker_config(WORKER).digest()
    assert render_worker_config(WORKER).digest() != render_worker_config(
        dataclasses.replace(WORKER, model="glm-5")).digest()


# ---- properties

names = st.from_regex(r"[a-z0-9][a-z0-9-]{0,12}", fullmatch=True)
users = names.map(lambda n: UserId(f"@{n}:hiclaw.test"))
secrets = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=40)
specs = st.builds(
    WorkerConfigSpec,
    worker=names.map(WorkerName),
    homeserver_url=st.sampled_from(["http://127.0.0.1:8008", "https://matrix.example.test/"]),
    user_id=users,
    access_token=secrets,
    room_id=names.map(lambda n: RoomId(f"!{n}:hiclaw.test")),
    allowed_senders=st.lists(users, min_size=1, max_size=5).map(tuple),
    model=st.sampled_from(["qwen3.5-plus", "gpt-5-mini", "deepseek-chat"]),
    gateway_url=st.sampled_from(["http://127.0.0.1:8080", "https://gw.example.test/"]),
    gateway_key=secrets,
    mcp_servers=st.lists(names.map(McpServer), max_size=4).map(tuple),
    team=st.none() | names.map(TeamName),
    skills=st.lists(names, max_size=4).map(tuple),
)


@given(specs)
def test_rendering_is_byte_stable(spec: WorkerConfigSpec) -> None:
    first, second = render_worker_config(spec), render_worker_config(dataclasses.replace(spec))
    assert first.files == second.files
    for path in (OPENCLAW_JSON, MCPORTER_JSON):
        data = first.files[path]
        assert data.endswith(b"\n")
        assert data == (json.dumps(json.loads(data), sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode()


@given(specs)
def test_order_of_unordered_inputs_does_not_matter(spec: WorkerConfigSpec) -> None:
    shuffled = dataclasses.replace(
        spec,
        allowed_senders=tuple(reversed(spec.allowed_senders)) + spec.allowed_senders[:1],
        mcp_servers=tuple(reversed(spec.mcp_servers)),
        skills=tuple(reversed(spec.skills)),
    )
    assert render_worker_config(shuffled).files == render_worker_config(spec).files


@given(specs)
def test_the_gateway_token_is_derived_from_the_key(spec: WorkerConfigSpec) -> None:
    config = json.loads(render_worker_config(spec).files[OPENCLAW_JSON])
    token = config["gateway"]["auth"]["token"]
    assert token == config["gateway"]["remote"]["token"] == gateway_auth_token(spec.gateway_key)
    assert token != spec.gateway_key
    rotated = dataclasses.replace(spec, gateway_key=spec.gateway_key + "x")
    assert json.loads(render_worker_config(rotated).files[OPENCLAW_JSON])["gateway"]["auth"]["token"] != token
