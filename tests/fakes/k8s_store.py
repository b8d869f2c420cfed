"""The fake API server's object store: API machinery semantics, validated like a real apiserver.

What a client can observe of the real store is modelled, nothing more:

- ``metadata.uid``, ``creationTimestamp`` and ``resourceVersion`` from one global counter (an
  opaque string to clients); ``generation`` on Deployments, bumped only when ``spec`` changes;
- ``409 AlreadyExists`` on a duplicate create, ``409 Conflict`` on a stale ``resourceVersion``,
  ``404 NotFound``, ``422 Invalid`` with ``details.causes``; every error is a ``Status`` body;
- the three patch types (JSON patch, merge patch, and the strategic merge patch limited to maps
  and lists merged by ``name``; directives are refused loudly rather than guessed);
- the status of a Deployment is a subresource: client writes to the main resource keep it.

Every object is validated before it is stored: the official schemas shipped in
``kubernetes-validate`` (strict), then the apiserver rules those schemas cannot express (DNS-1123
names, label syntax, selector matching the template, non-empty unique containers, quantities,
immutable selector). A fake that would store what a real server refuses fails the test instead.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from functools import cache
from typing import Any

import kubernetes_validate
import referencing
import referencing.jsonschema
from jsonschema import Draft202012Validator, ValidationError  # type: ignore[import-untyped]
from kubernetes_validate.utils import schema_contents

from backends.base import parse_quantity
from backends.errors import InvalidSpec
from tests.fakes.k8s_api import (
    KINDS,
    ApiError,
    Obj,
    apply_patch,
    parse_field_selector,
    parse_label_selector,
    selector_string,
)

K8S_VERSION = "1.37.0"

# Kinds whose PUT must carry a resourceVersion (their strategy refuses unconditional updates).
CONDITIONAL_UPDATES = {"Lease"}
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def resource_name(kind: str) -> str:
    """``deployments.apps`` / ``pods``: how messages name a resource."""
    group, plural, _ = KINDS[kind]
    return f"{plural}.{group}" if group else plural


def not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{resource_name(kind)} "{name}" not found', kind=kind, name=name)


def now_rfc3339() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """Objects keyed by (kind, namespace, name). ``on_change`` runs after every write."""

    def __init__(self, namespaces: Iterable[str], on_change: Callable[[], None]) -> None:
        self.namespaces = set(namespaces)
        self._objects: dict[tuple[str, str, str], Obj] = {}
        self._version = 0
        self._on_change = on_change

    @property
    def resource_version(self) -> str:
        return str(self._version)

    # -- reads ----------------------------------------------------------------------------------

    def get(self, kind: str, namespace: str, name: str) -> Obj:
        try:
            return copy.deepcopy(self._objects[(kind, namespace, name)])
        except KeyError:
            raise not_found(kind, name) from None

    def list(self, kind: str, namespace: str | None, label_selector: str | None = None,
             field_selector: str | None = None) -> list[Obj]:
        match = parse_label_selector(label_selector or "")
        wanted_name = parse_field_selector(field_selector or "")
        return [copy.deepcopy(obj) for (k, ns, name), obj in sorted(self._objects.items())
                if k == kind and (namespace is None or ns == namespace)
                and (wanted_name is None or name == wanted_name)
                and match(obj["metadata"].get("labels") or {})]

    # -- writes ---------------------------------------------------------------------------------

    def create(self, kind: str, namespace: str, obj: Obj) -> Obj:
        self._check_body(kind, namespace, obj)
        name = obj.get("metadata", {}).get("name")
        if not name:
            raise ApiError(422, "Invalid", f"{kind} is invalid: metadata.name: Required value", kind=kind,
                           causes=[{"reason": "FieldValueRequired", "message": "Required value",
                                    "field": "metadata.name"}])
        if namespace not in self.namespaces:
            raise ApiError(404, "NotFound", f'namespaces "{namespace}" not found', name=namespace)
        if (kind, namespace, name) in self._objects:
            raise ApiError(409, "AlreadyExists", f'{resource_name(kind)} "{name}" already exists',
                           kind=kind, name=name)
        obj = copy.deepcopy(obj)
        if kind == "Deployment":
            obj.pop("status", None)  # a subresource: ignored on create
        meta = obj["metadata"]
        for server_field in ("resourceVersion", "uid", "creationTimestamp", "generation"):
            meta.pop(server_field, None)
        meta.update(namespace=namespace, uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
        if kind == "Deployment":
            meta["generation"] = 1
        _apply_defaults(kind, obj)
        return self._store(kind, namespace, obj, None)

    def replace(self, kind: str, namespace: str, name: str, obj: Obj) -> Obj:
        """PUT: optimistic concurrency when the body carries a resourceVersion."""
        self._check_body(kind, namespace, obj)
        current = self.get(kind, namespace, name)
        if obj.get("metadata", {}).get("name") != name:
            raise ApiError(400, "BadRequest", "the name of the object does not match the name in the URL")
        if kind in CONDITIONAL_UPDATES and not obj["metadata"].get("resourceVersion"):
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource_name(kind)} "{name}": '
                                            "metadata.resourceVersion: Invalid value: 0x0: must be specified for "
                                            "an update", kind=kind, name=name)
        return self._update(kind, namespace, current, copy.deepcopy(obj))

    def patch(self, kind: str, namespace: str, name: str, content_type: str, patch: Any) -> Obj:
        current = self.get(kind, namespace, name)
        patched = apply_patch(current, content_type, patch)
        if isinstance(patch, Mapping) and "resourceVersion" not in (patch.get("metadata") or {}):
            patched["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        return self._update(kind, namespace, current, patched)

    def write_status(self, kind: str, namespace: str, name: str, status: Obj) -> None:
        """What a controller or the kubelet does; a no-op when nothing changed."""
        current = self._objects.get((kind, namespace, name))
        if current is None or current.get("status") == status:
            return
        updated = copy.deepcopy(current)
        updated["status"] = copy.deepcopy(status)
        self._store(kind, namespace, updated, current)

    def delete(self, kind: str, namespace: str, name: str, preconditions: Mapping[str, str] | None = None) -> Obj:
        """Remove an object; ``preconditions`` (uid, resourceVersion) must match, else 409."""
        current = self.get(kind, namespace, name)
        for key, wanted in (preconditions or {}).items():
            if current["metadata"].get(key) != wanted:
                raise ApiError(409, "Conflict", f"Precondition failed: {key} in precondition: {wanted}, {key} in "
                                                f"object meta: {current['metadata'].get(key)}", kind=kind, name=name)
        del self._objects[(kind, namespace, name)]
        self._version += 1
        self._on_change()
        return current

    # -- internals ------------------------------------------------------------------------------

    def _update(self, kind: str, namespace: str, current: Obj, obj: Obj) -> Obj:
        meta, old_meta = obj.setdefault("metadata", {}), current["metadata"]
        if meta.get("resourceVersion") not in (None, old_meta["resourceVersion"]):
            raise ApiError(409, "Conflict", f'Operation cannot be fulfilled on {resource_name(kind)} '
                                            f'"{old_meta["name"]}": the object has been modified; please apply '
                                            "your changes to the latest version and try again",
                           kind=kind, name=old_meta["name"])
        for immutable in ("uid", "creationTimestamp", "namespace", "name"):
            meta[immutable] = old_meta[immutable]
        if kind == "Deployment":
            if "status" in current:
                obj["status"] = current["status"]
            else:
                obj.pop("status", None)
            changed = obj.get("spec") != current.get("spec")
            meta["generation"] = old_meta["generation"] + (1 if changed else 0)
            if obj.get("spec", {}).get("selector") != current["spec"]["selector"]:
                raise _invalid(kind, old_meta["name"], "spec.selector", "field is immutable")
        _apply_defaults(kind, obj)
        return self._store(kind, namespace, obj, current)

    def _store(self, kind: str, namespace: str, obj: Obj, current: Obj | None) -> Obj:
        obj["apiVersion"], obj["kind"] = KINDS[kind][2], kind
        validate_object(kind, obj)
        self._version += 1
        obj["metadata"]["resourceVersion"] = str(self._version)
        self._objects[(kind, namespace, obj["metadata"]["name"])] = obj
        self._on_change()
        return copy.deepcopy(obj)

    def _check_body(self, kind: str, namespace: str, obj: Any) -> None:
        if not isinstance(obj, dict):
            raise ApiError(400, "BadRequest", "the body of the request is not a JSON object")
        if obj.get("kind", kind) != kind or obj.get("apiVersion", KINDS[kind][2]) != KINDS[kind][2]:
            raise ApiError(400, "BadRequest", f"the API version in the data ({obj.get('apiVersion')}) does not "
                                              f"match the expected API version ({KINDS[kind][2]})")
        body_namespace = obj.get("metadata", {}).get("namespace")
        if body_namespace not in (None, namespace):
            raise ApiError(400, "BadRequest", "the namespace of the provided object does not match the namespace "
                                              "sent on the request")


def _apply_defaults(kind: str, obj: Obj) -> None:
    """The defaults a real apiserver fills in, for the fields the backend reads back."""
    if kind == "Deployment":
        spec = obj.setdefault("spec", {})
        spec.setdefault("replicas", 1)
        spec.setdefault("strategy", {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        _default_pod_spec(spec.get("template", {}).get("spec", {}))
    elif kind == "Pod":
        _default_pod_spec(obj.get("spec", {}))
    elif kind == "Secret":
        obj.setdefault("type", "Opaque")
        string_data = obj.pop("stringData", None) or {}
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def _default_pod_spec(spec: Obj) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    for container in spec.get("containers", []):
        image = str(container.get("image", ""))
        tagged = ":" in image.rsplit("/", 1)[-1] and not image.endswith(":latest")
        container.setdefault("imagePullPolicy", "IfNotPresent" if tagged else "Always")
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")


# -- validation -------------------------------------------------------------------------------


def _invalid(kind: str, name: str, field: str, message: str, reason: str = "FieldValueInvalid") -> ApiError:
    return ApiError(422, "Invalid", f'{kind}.{KINDS[kind][0] or "core"} "{name}" is invalid: {field}: {message}',
                    kind=kind, name=name, causes=[{"reason": reason, "message": message, "field": field}])


def validate_object(kind: str, obj: Obj) -> None:
    """The official schema (strict), then the apiserver rules the schema cannot express."""
    name = str(obj.get("metadata", {}).get("name", ""))
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        field = ".".join(str(part) for part in exc.absolute_path) or "<root>"
        raise _invalid(kind, name, field, exc.message) from None
    if len(name) > 253 or not _DNS_SUBDOMAIN.fullmatch(name):
        raise _invalid(kind, name, "metadata.name", f'Invalid value: "{name}": a lowercase RFC 1123 subdomain '
                                                    "must consist of lower case alphanumeric characters, '-' or '.'")
    _check_labels(kind, name, "metadata.labels", obj["metadata"].get("labels") or {})
    if kind == "Deployment":
        _check_deployment(name, obj["spec"])
    elif kind == "Pod":
        _check_pod_spec("Pod", name, "spec", obj["spec"])
    elif kind == "Lease":
        _check_lease(name, obj.get("spec") or {})
    elif kind == "Secret":
        for key, value in (obj.get("data") or {}).items():
            if not _SECRET_KEY.fullmatch(key):
                raise _invalid(kind, name, f"data[{key}]", "a valid config key must consist of alphanumeric "
                                                           "characters, '-', '_' or '.'")
            try:
                base64.b64decode(value, validate=True)
            except binascii.Error:
                raise _invalid(kind, name, f"data[{key}]", "illegal base64 data") from None


def _check_labels(kind: str, name: str, field: str, labels: Mapping[str, str]) -> None:
    for key, value in labels.items():
        prefix, _, label_name = key.rpartition("/")
        if (prefix and not _DNS_SUBDOMAIN.fullmatch(prefix)) or len(label_name) > 63 \
                or not _LABEL_NAME.fullmatch(label_name):
            raise _invalid(kind, name, field, f'Invalid value: "{key}": name part must consist of '
                                                   "alphanumeric characters, '-', '_' or '.'")
        if len(value) > 63 or not _LABEL_VALUE.fullmatch(value):
            raise _invalid(kind, name, field, f'Invalid value: "{value}": a valid label must be an empty '
                                                   "string or consist of alphanumeric characters, '-', '_' or '.'")


def _check_deployment(name: str, spec: Obj) -> None:
    if spec.get("replicas", 0) < 0:
        raise _invalid("Deployment", name, "spec.replicas", "must be greater than or equal to 0")
    selector = spec["selector"]
    template_labels = spec["template"].get("metadata", {}).get("labels") or {}
    _check_labels("Deployment", name, "spec.template.metadata.labels", template_labels)
    match_labels = selector.get("matchLabels") or {}
    if not match_labels and not selector.get("matchExpressions"):
        raise _invalid("Deployment", name, "spec.selector", "empty selector is invalid for deployment")
    if not parse_label_selector(selector_string(selector))(template_labels):
        raise _invalid("Deployment", name, "spec.template.metadata.labels",
                       "`selector` does not match template `labels`")
    pod_spec = spec["template"]["spec"]
    if pod_spec.get("restartPolicy", "Always") != "Always":
        raise _invalid("Deployment", name, "spec.template.spec.restartPolicy", 'Unsupported value: only "Always"',
                       "FieldValueNotSupported")
    _check_pod_spec("Deployment", name, "spec.template.spec", pod_spec)


def _check_lease(name: str, spec: Obj) -> None:
    """``ValidateLeaseSpec``: a positive duration, non-negative transitions."""
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        raise _invalid("Lease", name, "spec.leaseDurationSeconds", "must be greater than 0")
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        raise _invalid("Lease", name, "spec.leaseTransitions", "must be greater than or equal to 0")


def _check_pod_spec(kind: str, name: str, field: str, spec: Obj) -> None:
    seen: set[str] = set()
    for index, container in enumerate(spec["containers"]):
        where = f"{field}.containers[{index}]"
        if not _DNS_LABEL.fullmatch(container["name"]) or len(container["name"]) > 63:
            raise _invalid(kind, name, f"{where}.name", "must be a DNS-1123 label")
        if container["name"] in seen:
            raise _invalid(kind, name, f"{where}.name", f'Duplicate value: "{container["name"]}"',
                           "FieldValueDuplicate")
        seen.add(container["name"])
        if not str(container.get("image") or "").strip():
            raise _invalid(kind, name, f"{where}.image", "Required value", "FieldValueRequired")
        for part in ("requests", "limits"):
            for resource, quantity in (container.get("resources", {}).get(part) or {}).items():
                try:
                    parse_quantity(str(quantity))
                except InvalidSpec:
                    raise _invalid(kind, name, f"{where}.resources.{part}[{resource}]",
                                   f'Invalid value: "{quantity}": quantities must match the regular expression '
                                   "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'") from None


@cache
def _status_validator() -> Draft202012Validator:
    """``kubernetes-validate`` finds schemas by ``apiVersion``; ``Status`` lives under ``meta``."""
    folder = f"kubernetes-json-schema/v{K8S_VERSION}-local-strict"
    schema = schema_contents(f"{folder}/status-meta-v1.json", K8S_VERSION)
    definitions = schema_contents(f"{folder}/_definitions.json", K8S_VERSION)
    registry: referencing.Registry[Any] = referencing.jsonschema.DRAFT202012.create_resource(schema) @ \
        referencing.Registry()
    registry = referencing.jsonschema.DRAFT202012.create_resource(definitions) @ registry
    return Draft202012Validator(schema, registry=registry)


def validate_status(body: Obj) -> None:
    """Check a ``Status`` body against the official schema (used on every error the fake sends)."""
    try:
        _status_validator().validate(body)
    except ValidationError as exc:
        raise AssertionError(f"the fake produced an invalid Status: {exc.message}") from None


# -- selectors and patches --------------------------------------------------------------------
