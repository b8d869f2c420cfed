"""The fake API server's vocabulary: the kinds it serves, its error body, selectors, and the patch types.

Kept apart from the store (:mod:`tests.fakes.k8s_store`) because none of it holds state. The
patches are JSON patch, merge patch, and the strategic merge patch limited to maps and lists
merged by ``name`` (directives are refused loudly rather than guessed).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Mapping
from typing import Any

Obj = dict[str, Any]

# kind -> (group, plural, apiVersion)
KINDS: dict[str, tuple[str, str, str]] = {
    "Deployment": ("apps", "deployments", "apps/v1"),
    "Pod": ("", "pods", "v1"),
    "Secret": ("", "secrets", "v1"),
    "Lease": ("coordination.k8s.io", "leases", "coordination.k8s.io/v1"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies", "networking.k8s.io/v1"),
}


class ApiError(Exception):
    """An error the way the apiserver reports it: an HTTP code and a ``Status`` body."""

    def __init__(self, code: int, reason: str, message: str, *, kind: str | None = None,
                 name: str | None = None, causes: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.kind, self.name, self.causes = kind, name, causes

    def status(self) -> Obj:
        details: Obj = {}
        if self.name is not None:
            details["name"] = self.name
        if self.kind is not None:
            group, plural, _ = KINDS[self.kind]
            details["kind"] = plural
            if group:
                details["group"] = group
        if self.causes:
            details["causes"] = self.causes
        body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                     "message": self.message, "reason": self.reason, "code": self.code}
        if details:
            body["details"] = details
        return body


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector object as the query-string syntax (``a=b,c in (x,y)``)."""
    parts = [f"{key}={value}" for key, value in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        if operator == "In":
            parts.append(f"{key} in ({','.join(values)})")
        elif operator == "NotIn":
            parts.append(f"{key} notin ({','.join(values)})")
        elif operator == "Exists":
            parts.append(key)
        else:
            parts.append(f"!{key}")
    return ",".join(parts)


def parse_label_selector(text: str) -> Callable[[Mapping[str, str]], bool]:
    """A predicate for ``labelSelector``: ``=``, ``==``, ``!=``, ``in``, ``notin``, ``key``, ``!key``."""
    requirements: list[tuple[str, str, frozenset[str]]] = []  # (key, operator, values)
    for raw in re.split(r",(?![^()]*\))", text):
        term = raw.strip()
        if not term:
            continue
        if match := re.fullmatch(r"([^\s!=]+)\s+(in|notin)\s+\(([^)]*)\)", term):
            requirements.append((match[1], match[2], frozenset(v.strip() for v in match[3].split(","))))
        elif match := re.fullmatch(r"([^\s!=]+)\s*(!=|==|=)\s*(\S*)", term):
            requirements.append((match[1], "notin" if match[2] == "!=" else "in", frozenset({match[3]})))
        elif match := re.fullmatch(r"!([^\s!=]+)", term):
            requirements.append((match[1], "!", frozenset()))
        elif re.fullmatch(r"[^\s!=(),]+", term):
            requirements.append((term, "exists", frozenset()))
        else:
            raise ApiError(400, "BadRequest", f"unable to parse requirement: {term!r}")

    def matches(labels: Mapping[str, str]) -> bool:
        for key, operator, values in requirements:
            present = key in labels
            ok = {"in": present and labels.get(key) in values, "notin": labels.get(key) not in values,
                  "exists": present, "!": not present}[operator]
            if not ok:
                return False
        return True

    return matches


def parse_field_selector(text: str) -> str | None:
    """Only ``metadata.name=<name>`` is supported; anything else is refused, not ignored."""
    if not text:
        return None
    match = re.fullmatch(r"metadata\.name==?(.+)", text)
    if match is None:
        raise ApiError(400, "BadRequest", f'field label not supported by the fake: "{text}"')
    return match[1]


def apply_patch(document: Obj, content_type: str, patch: Any) -> Obj:
    """Apply a PATCH body of the given media type; an unknown type is a 415, as on a real server."""
    if content_type == "application/json-patch+json":
        return json_patch(document, patch)
    if content_type == "application/merge-patch+json":
        return dict(merge_patch(document, patch))
    if content_type == "application/strategic-merge-patch+json":
        return dict(strategic_merge_patch(document, patch))
    raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format: accepted "
                                                "media types include: application/json-patch+json, application/"
                                                f"merge-patch+json, application/strategic-merge-patch+json "
                                                f"(got {content_type})")


def json_patch(document: Obj, operations: Any) -> Obj:
    """RFC 6902: add, remove, replace, test (the fake refuses move/copy rather than guess)."""
    if not isinstance(operations, list):
        raise ApiError(400, "BadRequest", "a JSON patch must be a list of operations")
    result = copy.deepcopy(document)
    for operation in operations:
        op, path = operation.get("op"), operation.get("path", "")
        parts = [p.replace("~1", "/").replace("~0", "~") for p in path.split("/")[1:]]
        parent: Any = result
        try:
            for part in parts[:-1]:
                parent = parent[int(part)] if isinstance(parent, list) else parent[part]
            if not parts:
                raise KeyError(path)  # whole-document operations are not something the backend sends
            last = parts[-1]
            if op == "test":
                current = parent[int(last)] if isinstance(parent, list) else parent[last]
                if current != operation["value"]:
                    raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our "
                                                   f"request: testing value {path} failed")
            elif op in ("add", "replace"):
                if isinstance(parent, list):
                    index = len(parent) if last == "-" else int(last)
                    if op == "add":
                        parent.insert(index, operation["value"])
                    else:
                        parent[index] = operation["value"]
                else:
                    if op == "replace" and last not in parent:
                        raise KeyError(last)
                    parent[last] = copy.deepcopy(operation["value"])
            elif op == "remove":
                del parent[int(last) if isinstance(parent, list) else last]
            else:
                raise ApiError(422, "Invalid", f"the fake apiserver does not implement JSON patch op {op!r}")
        except (KeyError, IndexError, ValueError, TypeError):
            raise ApiError(422, "Invalid", f"the server rejected our request due to an error in our request: "
                                           f"{op} operation does not apply: doc is missing path: {path}") from None
    return result


def merge_patch(document: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(document) if isinstance(document, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(document: Any, patch: Any) -> Any:
    """Merge patch, except that lists of objects with a ``name`` merge by name (containers, env)."""
    if isinstance(patch, dict):
        directives = [key for key in patch if key.startswith("$")]
        if directives:
            raise ApiError(422, "Invalid", f"the fake apiserver does not implement directives {directives}")
        result = copy.deepcopy(document) if isinstance(document, dict) else {}
        for key, value in patch.items():
            if value is None:
                result.pop(key, None)
            else:
                result[key] = strategic_merge_patch(result.get(key), value)
        return result
    if isinstance(patch, list) and patch and all(isinstance(i, dict) and "name" in i for i in patch) \
            and isinstance(document, list):
        merged = {item["name"]: item for item in copy.deepcopy(document) if isinstance(item, dict)}
        for item in patch:
            merged[item["name"]] = strategic_merge_patch(merged.get(item["name"]), item)
        return list(merged.values())
    return copy.deepcopy(patch)
