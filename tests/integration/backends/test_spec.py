"""The values that cross the backend contract: specs, their hash, names, quantities and errors."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest

from backends import errors
from backends.base import Resources, WorkerSpec, check_name, parse_quantity
from backends.policy import image_registry

COMMAND = ["sh", "-c", "sleep 1"]


def spec(**changes: object) -> WorkerSpec:
    values: dict[str, object] = {"name": "alice", "image": "worker:1", "command": COMMAND,
                                 "env": {"TOKEN": "s3cret-value", "MODE": "x"}, "labels": {"team": "a"}}
    values.update(changes)
    return WorkerSpec(**values)  # type: ignore[arg-type]


def test_spec_hash_is_deterministic_and_covers_what_runs() -> None:
    base = spec()
    assert base.spec_hash == spec(env={"MODE": "x", "TOKEN": "s3cret-value"}).spec_hash
    assert re.fullmatch(r"[0-9a-f]{16}", base.spec_hash)
    variants = [spec(image="worker:2"), spec(command=["sh"]), spec(command=None), spec(env={"TOKEN": "other"}),
                spec(labels={"team": "b"}), spec(resources=Resources(cpu_limit="500m"))]
    assert len({base.spec_hash, *(v.spec_hash for v in variants)}) == len(variants) + 1


def test_spec_repr_masks_env_values() -> None:
    text = repr(spec()) + str(spec()) + f"{spec()}"
    assert "s3cret-value" not in text
    assert "'TOKEN': '***'" in text


def test_spec_is_immutable() -> None:
    value = spec()
    with pytest.raises(TypeError):
        value.env["TOKEN"] = "changed"  # type: ignore[index]
    assert value.command == tuple(COMMAND)


@pytest.mark.parametrize("changes", [
    {"name": "Alice"}, {"name": "-alice"}, {"name": "a" * 64}, {"image": ""}, {"image": "a b"},
    {"command": []}, {"env": {"1BAD": "x"}}, {"env": {"A": "nul\0"}}, {"labels": {"hiclaw.io/worker": "x"}},
    {"labels": {"bad key": "x"}}, {"labels": {"k": "bad value"}},
])
def test_invalid_specs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(errors.InvalidSpec):
        spec(**changes)


def test_worker_names() -> None:
    for good in ("a", "a-1", "0worker", "a" * 63):
        check_name("test", good)
    for bad in ("", "A", "a_b", "a.b", "-a", "a" * 64, "é"):
        with pytest.raises(errors.InvalidSpec):
            check_name("test", bad)


@pytest.mark.parametrize(("text", "value"), [
    ("1", Decimal(1)), ("500m", Decimal("0.5")), ("1.5", Decimal("1.5")), ("512Mi", Decimal(512 * 2**20)),
    ("1Gi", Decimal(2**30)), ("2k", Decimal(2000)), ("1e3", Decimal(1000)), (".5", Decimal("0.5")),
])
def test_quantities(text: str, value: Decimal) -> None:
    assert parse_quantity(text) == value


@pytest.mark.parametrize("text", ["", "1.2.3", "5 Mi", "-1", "1x", "Mi"])
def test_bad_quantities(text: str) -> None:
    with pytest.raises(errors.InvalidSpec):
        Resources(memory_limit=text)


@pytest.mark.parametrize(("image", "registry"), [
    ("busybox", None), ("busybox:1.36", None), ("library/busybox", None), ("hiclaw-test/busybox:1", None),
    ("localhost/x", "localhost"), ("localhost:5000/x:1", "localhost:5000"), ("127.0.0.1:5000/x", "127.0.0.1:5000"),
    ("ghcr.io/acme/worker:1", "ghcr.io"), ("myregistry:5000/x", "myregistry:5000"),
])
def test_image_registry(image: str, registry: str | None) -> None:
    assert image_registry(image) == registry


def test_error_classification_attributes() -> None:
    """The engine classifies by these attribute names, without importing the backends."""
    assert errors.NotFound("docker", "x").not_found
    assert not errors.NotFound("docker", "x").transient
    assert errors.Unavailable("docker", "x").transient
    assert errors.TransientBackendError("k", "x", retry_after=2.0).retry_after == 2.0
    for permanent in (errors.Conflict, errors.InvalidSpec, errors.UpdateFailed, errors.ExecTimeout):
        assert (permanent.transient, permanent.not_found) == (False, False)
    violation = errors.PolicyViolation("docker", "privileged containers are not allowed")
    assert violation.rule in str(violation)
    assert not violation.transient
