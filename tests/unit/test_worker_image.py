"""The two worker Dockerfiles keep one entrypoint contract, and the image tag is a content hash.

``docker/worker-agent/Dockerfile`` (FROM a registry's python image) cannot be built here, so its
contract is read from the file; ``Dockerfile.debian`` is the one ``hiclaw-bot image build`` uses,
and the end-to-end tests check the built image's config against the same :data:`CONTRACT`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from hiclaw_bot.devstack.worker_image import CONTRACT, SOURCES, _prune, image_tag

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILES = ["docker/worker-agent/Dockerfile", "docker/worker-agent/Dockerfile.debian"]


def final_stage(path: Path) -> dict[str, object]:
    """USER, CMD, STOPSIGNAL, WORKDIR and ENV of the last stage, as the image config would hold them."""
    text = path.read_text(encoding="utf-8").replace("\\\n", " ")
    found: dict[str, object] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word = word.upper()
        if word == "FROM":
            found = {}
        elif word == "USER":
            found["User"] = rest.strip()
        elif word == "CMD":
            found["Cmd"] = json.loads(rest)
        elif word == "STOPSIGNAL":
            found["StopSignal"] = rest.strip()
        elif word == "WORKDIR":
            found["WorkingDir"] = rest.strip()
        elif word == "ENV":
            for pair in rest.split():
                key, _, value = pair.partition("=")
                if key == "HOME":
                    found["HOME"] = value
    return found


@pytest.mark.parametrize("dockerfile", DOCKERFILES)
def test_both_dockerfiles_honour_the_entrypoint_contract(dockerfile: str) -> None:
    assert final_stage(ROOT / dockerfile) == CONTRACT


def test_the_worker_user_is_not_root() -> None:
    user = str(CONTRACT["User"]).split(":")
    assert all(part.isdigit() and int(part) != 0 for part in user), "numeric, so runAsNonRoot can check it"


def test_the_tag_is_a_hash_of_what_the_image_holds(tmp_path: Path) -> None:
    for source in SOURCES:
        src, dst = ROOT / source, tmp_path / source
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            dst.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(src, dst)
    first = image_tag(tmp_path)
    assert first.startswith("hiclaw/worker-agent:")
    assert len(first.rpartition(":")[2]) == 12
    assert image_tag(tmp_path) == first
    (tmp_path / "hiclaw_bot" / "__pycache__").mkdir(exist_ok=True)
    (tmp_path / "hiclaw_bot" / "__pycache__" / "x.pyc").write_bytes(b"bytecode")
    assert image_tag(tmp_path) == first, "bytecode is not part of the image's sources"
    (tmp_path / "hiclaw_bot" / "agent" / "runner.py").write_text("changed\n")
    assert image_tag(tmp_path) != first


def test_only_the_newest_saved_images_are_kept(tmp_path: Path) -> None:
    for age, name in enumerate(["new", "mid", "old"]):
        path = tmp_path / f"{name}.image.tar"
        path.write_bytes(b"image")
        os.utime(path, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "rootfs-abc.tar").write_bytes(b"rootfs")
    _prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["mid.image.tar", "new.image.tar", "rootfs-abc.tar"]
