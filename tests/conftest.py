"""Fixtures shared by every test topic.

Fixtures that start real services live in ``tests/fixtures/`` and are registered here.
"""

pytest_plugins: list[str] = [
    "tests.fixtures.common",
    "tests.fixtures.synapse",
    "tests.fixtures.s3",
    "tests.fixtures.smtp",
    "tests.fixtures.dockerd",
    "tests.fixtures.k8s",
]
