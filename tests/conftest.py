"""Fixtures shared by every test topic.

Fixtures that start real services live in ``tests/fixtures/`` and are registered here.
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fixtures.processes import processes_under, stop

pytest_plugins: list[str] = [
    "tests.fixtures.common",
    "tests.fixtures.synapse",
    "tests.fixtures.s3",
    "tests.fixtures.smtp",
    "tests.fixtures.dockerd",
    "tests.fixtures.k8s",
    "tests.fixtures.backends",
    "tests.fixtures.worker_image",
]


@pytest.fixture(autouse=True)
def _workers_may_pass_through_tmp_path(request: pytest.FixtureRequest) -> None:
    """Let confined workers reach their directories under ``tmp_path``.

    Run as root, the process backend starts each worker under a uid of its own, which cannot pass
    through pytest's private (0700) temporary folders. Passable (0711) is enough: listing them
    stays refused, as a real data directory's parents would allow.
    """
    if "tmp_path" not in request.fixturenames or os.geteuid() != 0:
        return
    path: Path = request.getfixturevalue("tmp_path")
    for level in (path, *path.parents):
        if level in (Path("/"), Path(tempfile.gettempdir())):
            break
        level.chmod(level.stat().st_mode | 0o111)


def stop_processes_under(root: Path) -> None:
    """Stop what still runs with its working directory under ``root``: workers a test left behind
    (their runtimes outlive the bot by design), whichever way they were started, and only those."""
    stop(processes_under(root))


@pytest.fixture(autouse=True)
def _no_worker_outlives_its_test(request: pytest.FixtureRequest) -> Iterator[None]:
    path: Path | None = request.getfixturevalue("tmp_path") if "tmp_path" in request.fixturenames else None
    yield
    if path is not None:
        stop_processes_under(path)


def pytest_configure(config: pytest.Config) -> None:
    """Run as root, keep this session's temporary folders under a root of its own.

    pytest makes ``<tmp>/pytest-of-<user>`` private (0700) again whenever a session starts, which
    would shut confined workers of a concurrent session out of their directories mid-test.
    """
    if os.geteuid() == 0 and "PYTEST_DEBUG_TEMPROOT" not in os.environ:
        root = tempfile.mkdtemp(prefix="hiclaw-tests-")
        os.chmod(root, 0o711)  # noqa: S103 -- passable for confined workers, not listable
        os.environ["PYTEST_DEBUG_TEMPROOT"] = root
        config.add_cleanup(lambda: shutil.rmtree(root, ignore_errors=True))
        config.add_cleanup(lambda: stop_processes_under(Path(root)))  # cleanups run last-in first-out
