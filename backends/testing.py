"""A private Docker engine for tests and benchmarks, like ``kopf.testing`` is for operators.

Tests must run against a real dockerd, yet must not touch (or depend on) a system daemon. So each
run starts its own: data root, exec root, pidfile and unix socket in a fresh temporary directory.
The four network flags are not optional: without them dockerd creates a ``docker0`` bridge, NAT
rules and sets ``ip_forward``, all of which outlive it. No registry is reachable, so images are
imported from a root filesystem holding the static ``busybox`` binary and its applet links.

On stop the engine leaves an ``nsfs`` mount under its exec root (and overlay mounts of any
container still present); they are unmounted before the directory is removed.
"""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Mapping
from contextlib import closing, suppress
from pathlib import Path

import docker
import docker.errors
import psutil
import requests.exceptions

BUSYBOX_APPLETS = ("sh", "sleep", "echo", "cat", "env", "kill", "true", "false", "ls", "ps", "grep", "head",
                   "tail", "test", "touch", "date", "id", "hostname", "wc")
NETWORK_FLAGS = ("--bridge=none", "--iptables=false", "--ip-masq=false", "--ip-forward=false")


class DockerdUnavailable(Exception):
    """The engine cannot run on this machine (missing binary, not root): a reason to skip."""


class LocalDockerd:
    """A dockerd of our own under ``root``; start it with :meth:`start`, always :meth:`stop` it."""

    def __init__(self, root: Path, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.process = process

    @property
    def base_url(self) -> str:
        return f"unix://{self.root / 'docker.sock'}"

    @classmethod
    def start(cls, timeout: float = 30.0) -> LocalDockerd:
        """Start an engine in a new temporary directory and wait until it answers a ping."""
        binary = shutil.which("dockerd")
        if binary is None:
            raise DockerdUnavailable("dockerd is not installed (Debian package docker.io)")
        if os.geteuid() != 0:
            raise DockerdUnavailable("dockerd needs root on this machine")
        root = Path(tempfile.mkdtemp(prefix="hiclaw-dockerd-"))
        argv = [binary, "--host", f"unix://{root / 'docker.sock'}", "--data-root", str(root / "root"),
                "--exec-root", str(root / "exec"), "--pidfile", str(root / "docker.pid"), *NETWORK_FLAGS]
        with open(root / "dockerd.log", "wb") as log:
            process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True)
        engine = cls(root, process)
        try:
            engine._wait_ready(timeout)
        except BaseException:
            engine.stop()
            raise
        return engine

    def client(self) -> docker.DockerClient:
        return docker.DockerClient(base_url=self.base_url, timeout=60)

    def import_busybox(self, repository: str, tag: str, env: Mapping[str, str] | None = None) -> str:
        """Import a busybox image ``repository:tag`` with ``PATH=/bin`` and ``env``; return its id."""
        busybox = shutil.which("busybox")
        if busybox is None:
            raise DockerdUnavailable("busybox is not installed (Debian package busybox-static)")
        changes = [" ".join(["ENV PATH=/bin", *(f"{key}={value}" for key, value in (env or {}).items())]),
                   'CMD ["/bin/sh"]']
        with closing(self.client()) as client:
            client.api.import_image_from_data(_busybox_rootfs(Path(busybox)), repository=repository, tag=tag,
                                              changes=changes)
            return str(client.images.get(f"{repository}:{tag}").id)

    def stop(self, timeout: float = 20.0) -> None:
        """Stop the engine (containers still present are removed first) and delete its directory."""
        if self.process.poll() is None:
            with suppress(docker.errors.DockerException, requests.exceptions.RequestException), \
                    closing(self.client()) as client:
                for container in client.containers.list(all=True):
                    container.remove(force=True)
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for leftover in _processes_under(self.root):  # the managed containerd, if dockerd was killed
            with suppress(psutil.Error):
                leftover.kill()
        for mount in _mounts_under(self.root):
            subprocess.run(["umount", "-l", mount], check=False, capture_output=True)
        shutil.rmtree(self.root, ignore_errors=True)

    def log_tail(self, lines: int = 20) -> str:
        text = (self.root / "dockerd.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"dockerd exited with code {self.process.returncode}:\n{self.log_tail()}")
            if (self.root / "docker.sock").exists():
                with suppress(docker.errors.DockerException, requests.exceptions.RequestException), \
                        closing(self.client()) as client:
                    client.ping()
                    return
            if time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not answer within {timeout:g}s:\n{self.log_tail()}")
            time.sleep(0.05)


def _busybox_rootfs(busybox: Path) -> bytes:
    """A tar of ``/bin/busybox`` plus one symlink per applet: the whole image."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        directory = tarfile.TarInfo("bin")
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        tar.add(busybox, arcname="bin/busybox")
        for applet in BUSYBOX_APPLETS:
            link = tarfile.TarInfo(f"bin/{applet}")
            link.type, link.linkname = tarfile.SYMTYPE, "busybox"
            tar.addfile(link)
    return buffer.getvalue()


def _processes_under(root: Path) -> list[psutil.Process]:
    """Processes whose command line names ``root``: only this engine's own helpers can."""
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if any(str(root) in arg for arg in process.info["cmdline"] or ()):
            found.append(process)
    return found


def _mounts_under(root: Path) -> list[str]:
    """Mount points below ``root``, deepest first."""
    prefix = str(root.resolve()) + "/"
    points = []
    with open("/proc/self/mountinfo") as mountinfo:
        for line in mountinfo:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(point)
    return sorted(points, key=len, reverse=True)
