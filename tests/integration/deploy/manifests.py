"""Reading ``deploy/kubernetes`` and deciding what its RBAC rules allow, for the deploy tests."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[3]
MANIFESTS = ROOT / "deploy" / "kubernetes"
Obj = dict[str, Any]

_PATH = re.compile(r"^/(?:api/v1|apis/(?P<group>[^/]+)/[^/]+)/namespaces/[^/]+/(?P<resource>[^/]+)"
                   r"(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$")


def manifest_files() -> list[Path]:
    return sorted(path for path in MANIFESTS.glob("*.yaml") if path.name != "kustomization.yaml")


def objects() -> list[Obj]:
    return [doc for path in manifest_files() for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(kind: str, name: str | None = None) -> Obj:
    found = [obj for obj in objects() if obj["kind"] == kind and name in (None, obj["metadata"]["name"])]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


@dataclass(frozen=True)
class Access:
    """One request as RBAC sees it."""

    group: str
    resource: str  # with its subresource: ``deployments/scale``
    verb: str
    name: str | None

    def __str__(self) -> str:
        target = f"{self.group or 'core'}/{self.resource}" + (f" {self.name}" if self.name else "")
        return f"{self.verb} {target}"


def access_of(method: str, path: str, query: Mapping[str, list[str]]) -> Access:
    """The (group, resource, verb) the apiserver authorizes for a request, as its docs define it.

    Exec is a websocket upgrade sent as GET; current clusters authorize it as ``create`` on
    ``pods/exec`` (as a POST always was), so that is what it maps to here.
    """
    match = _PATH.match(path)
    assert match is not None, f"not a namespaced resource path: {path}"
    group, resource, name, sub = match["group"] or "", match["resource"], match["name"], match["sub"]
    full = f"{resource}/{sub}" if sub else resource
    if full == "pods/exec":
        return Access(group, full, "create", name)
    if method == "GET":
        verb = "get" if name else ("watch" if query.get("watch") in (["1"], ["true"]) else "list")
    else:
        verb = {"POST": "create", "PUT": "update", "PATCH": "patch",
                "DELETE": "delete" if name else "deletecollection"}[method]
    return Access(group, full, verb, name)


def allows(rules: Iterable[Obj], access: Access) -> bool:
    for rule in rules:
        if access.group not in rule["apiGroups"] and "*" not in rule["apiGroups"]:
            continue
        if access.resource not in rule["resources"] and "*" not in rule["resources"]:
            continue
        if access.verb not in rule["verbs"] and "*" not in rule["verbs"]:
            continue
        names = rule.get("resourceNames")
        if names and access.name not in names:  # create and list never carry a name: never allowed here
            continue
        return True
    return False


def granted(rules: Iterable[Obj]) -> set[tuple[str, str, str]]:
    return {(group, resource, verb) for rule in rules for group in rule["apiGroups"]
            for resource in rule["resources"] for verb in rule["verbs"]}
