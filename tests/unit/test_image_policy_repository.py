"""The default image's repository is allowed at any tag (images built here are tagged by content);
a look-alike repository, or another name in the same namespace, is not."""

from __future__ import annotations

import pytest

from backends.errors import PolicyViolation
from backends.policy import ImagePolicy

POLICY = ImagePolicy((), "hiclaw/worker-agent:abc")


@pytest.mark.parametrize("image", ["hiclaw/worker-agent:abc", "hiclaw/worker-agent:abc-next",
                                   "docker.io/hiclaw/worker-agent:1", "hiclaw/worker-agent@sha256:00"])
def test_any_tag_of_the_default_repository_is_allowed(image: str) -> None:
    POLICY.check("docker", image)


@pytest.mark.parametrize("image", ["hiclaw/other:1", "attacker/worker-agent:1", "hiclaw/worker-agent-x:1",
                                   "evil.io/hiclaw/worker-agent:abc"])
def test_other_repositories_are_refused(image: str) -> None:
    with pytest.raises(PolicyViolation):
        POLICY.check("docker", image)
