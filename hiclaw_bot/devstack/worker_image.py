"""Build the worker image ``hiclaw/worker-agent:<hash>`` on a machine with no image registry.

Only two sources are reachable everywhere this project runs: Debian's archive and PyPI. So the
image is made in two layers, each cached by the hash of what goes into it:

1. **base** ``hiclaw/worker-base:<hash>``: a Debian rootfs with Python from ``mmdebstrap
   --variant=minbase`` (installed through apt when missing), ``docker import``-ed. The rootfs
   tarball is kept in the cache directory, so a new engine imports it in seconds.
2. **agent** ``hiclaw/worker-agent:<hash>``: the project's wheel and its pinned dependencies
   (``pip download``, binary wheels for the image's Python), installed offline into a venv by
   ``docker/worker-agent/Dockerfile.debian``. The finished image is saved to the cache directory
   too (``docker save``; the two newest are kept), so a second build, even on a fresh engine, is
   a ``docker load``.

The tag is a content hash of the sources, the pins and the recipe: a changed file is a new tag,
an unchanged tree is the same tag and no work. Errors say what is missing and how to get it
(:class:`ImageBuildError`); they never carry a secret, since nothing here has one.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors

__all__ = ["CONTRACT", "REPOSITORY", "BuildResult", "ImageBuildError", "build_worker_image", "image_tag"]

REPOSITORY = "hiclaw/worker-agent"
BASE_REPOSITORY = "hiclaw/worker-base"
SUITE = "bookworm"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
PYTHON = "3.11"
"""bookworm's python3; the wheels are downloaded for it, whatever Python runs the build."""
DOCKERFILE = Path("docker/worker-agent/Dockerfile.debian")
SOURCES = ("pyproject.toml", "README.md", "hiclaw_bot", "backends", "storage", str(DOCKERFILE))
CONTRACT = {"User": "10001:10001", "Cmd": ["python", "-m", "hiclaw_bot.agent"], "StopSignal": "SIGTERM",
            "WorkingDir": "/home/worker", "HOME": "/home/worker"}
"""What every worker image promises the backends (both Dockerfiles; checked by the tests)."""
STEPS = ("hash", "base", "wheels", "build", "save")
SAVED_IMAGES = 2

Progress = Callable[[str, str], None]
"""``(step, message)``: called as each step starts (or is found cached)."""


class ImageBuildError(RuntimeError):
    """The image cannot be built here; the message says exactly why and what to install."""


@dataclass(frozen=True)
class BuildResult:
    tag: str
    cached: str | None
    """``"engine"`` (the tag was there), ``"saved"`` (loaded from the cache directory) or None (built)."""


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(os.environ.get("HICLAW_IMAGE_CACHE", Path(root) / "hiclaw-bot" / "worker-image"))


def _files(root: Path) -> Iterator[Path]:
    for source in SOURCES:
        path = root / source
        if path.is_file():
            yield path
            continue
        if not path.is_dir():
            raise ImageBuildError(f"{path} is missing: build from a checkout of hiclaw-bot")
        for found in sorted(path.rglob("*")):
            if found.is_file() and "__pycache__" not in found.parts and found.suffix != ".pyc":
                yield found


def base_tag() -> str:
    recipe = f"{SUITE}|minbase|{','.join(PACKAGES)}|{platform.machine()}"
    return f"{BASE_REPOSITORY}:{hashlib.sha256(recipe.encode()).hexdigest()[:12]}"


def image_tag(root: Path) -> str:
    """``hiclaw/worker-agent:<12 hex>``: the hash of the base recipe and every file the image holds."""
    digest = hashlib.sha256(base_tag().encode())
    for path in _files(root):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return f"{REPOSITORY}:{digest.hexdigest()[:12]}"


def _has(client: docker.DockerClient, tag: str) -> bool:
    try:
        client.images.get(tag)
    except docker.errors.ImageNotFound:
        return False
    return True


def _run(argv: list[str], what: str) -> None:
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-8:])
        raise ImageBuildError(f"{what} failed (exit {result.returncode}):\n{tail}")


def _mmdebstrap() -> str:
    found = shutil.which("mmdebstrap")
    if found:
        return found
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        raise ImageBuildError("mmdebstrap is not installed and cannot be installed here (needs apt-get and "
                              "root): install the Debian package mmdebstrap, then build again")
    _run(["apt-get", "install", "-y", "-qq", "mmdebstrap"], "apt-get install mmdebstrap")
    return shutil.which("mmdebstrap") or "mmdebstrap"


def _ensure_base(client: docker.DockerClient, cache: Path, progress: Progress) -> str:
    tag = base_tag()
    if _has(client, tag):
        progress("base", f"{tag} (in the engine)")
        return tag
    rootfs = cache / f"rootfs-{tag.rpartition(':')[2]}.tar"
    if not rootfs.exists():
        progress("base", f"mmdebstrap {SUITE} (Debian rootfs with Python, about 30 s)")
        partial = rootfs.with_suffix(f".{os.getpid()}.partial.tar")  # two builds at once never share one
        try:
            _run([_mmdebstrap(), "--variant=minbase", f"--include={','.join(PACKAGES)}", "--quiet", SUITE,
                  str(partial)], "mmdebstrap")
            partial.replace(rootfs)
        finally:
            partial.unlink(missing_ok=True)
    progress("base", f"docker import {rootfs.name}")
    repository, _, version = tag.rpartition(":")
    client.api.import_image_from_file(str(rootfs), repository=repository, tag=version,
                                      changes=["ENV PATH=/usr/local/bin:/usr/bin:/bin", 'CMD ["/bin/sh"]'])
    return tag


def _download_wheels(root: Path, into: Path, progress: Progress) -> None:
    progress("wheels", "the project's wheel")
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    _run([*pip, "wheel", "--no-deps", "--wheel-dir", str(into), str(root)], "pip wheel (the project)")
    wheel = next(into.glob("hiclaw_bot-*.whl"), None)
    if wheel is None:
        raise ImageBuildError("pip wheel made no hiclaw_bot wheel")
    progress("wheels", "pinned dependencies from PyPI")
    machine = {"aarch64": "aarch64", "arm64": "aarch64"}.get(platform.machine(), "x86_64")
    # pip does not widen an explicit --platform to older glibc tags: list every one bookworm
    # (glibc 2.36) runs, newest first.
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 16, -1)] + [f"manylinux2014_{machine}"]
    _run([*pip, "download", "--dest", str(into), "--only-binary=:all:", "--implementation", "cp",
          "--python-version", PYTHON, *(arg for tag in tags for arg in ("--platform", tag)), str(wheel)],
         "pip download (the pinned dependencies, from PyPI)")


def build_worker_image(root: Path, *, base_url: str | None = None, cache_dir: Path | None = None,
                       progress: Progress | None = None) -> BuildResult:
    """Build (or find) the worker image of the checkout at ``root`` in the engine at ``base_url``."""
    report = progress or (lambda step, message: None)
    root = root.resolve()
    if not (root / DOCKERFILE).exists():
        raise ImageBuildError(f"{root} is not a hiclaw-bot checkout ({DOCKERFILE} is missing)")
    cache = cache_dir or default_cache_dir()
    report("hash", "hashing the sources")
    tag = image_tag(root)
    try:
        client = docker.DockerClient(base_url=base_url, timeout=600) if base_url else docker.from_env(timeout=600)
        client.ping()
    except (docker.errors.DockerException, OSError) as exc:
        raise ImageBuildError(f"no Docker engine answers at {base_url or 'DOCKER_HOST'}: {exc}") from None
    with closing(client):
        if _has(client, tag):
            report("save", f"{tag} is already in the engine")
            return BuildResult(tag, "engine")
        cache.mkdir(parents=True, exist_ok=True)
        saved = cache / f"{tag.rpartition(':')[2]}.image.tar"
        if saved.exists():
            report("save", f"docker load {saved.name}")
            with saved.open("rb") as handle:
                client.images.load(handle)
            if _has(client, tag):
                return BuildResult(tag, "saved")
        base = _ensure_base(client, cache, report)
        with tempfile.TemporaryDirectory(prefix="hiclaw-image-") as workdir:
            context = Path(workdir)
            shutil.copy(root / DOCKERFILE, context / "Dockerfile")
            _download_wheels(root, context / "wheels", report)
            report("build", f"docker build {tag}")
            try:
                client.images.build(path=str(context), tag=tag, buildargs={"BASE": base}, rm=True,
                                    forcerm=True, network_mode="none", labels={"io.hiclaw.source": tag})
            except docker.errors.BuildError as exc:
                tail = "\n".join(str(line.get("stream", line.get("error", ""))).rstrip()
                                 for line in list(exc.build_log)[-8:])
                raise ImageBuildError(f"docker build failed: {exc.msg}\n{tail}") from None
        report("save", f"docker save to {cache}")
        partial = saved.with_suffix(f".{os.getpid()}.partial")
        try:
            with partial.open("wb") as handle:
                for chunk in client.images.get(tag).save(named=True):
                    handle.write(chunk)
            partial.replace(saved)
        finally:
            partial.unlink(missing_ok=True)
    _prune(cache, keep=SAVED_IMAGES)
    return BuildResult(tag, None)


def _prune(cache: Path, *, keep: int) -> None:
    """Keep the ``keep`` newest saved images: each is a few hundred MB, and every edit makes one."""
    saved = sorted(cache.glob("*.image.tar"), key=lambda path: path.stat().st_mtime, reverse=True)
    for old in saved[keep:]:
        old.unlink(missing_ok=True)
