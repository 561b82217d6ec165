"""Per-kind strategy: what the real registry does for each kind beyond generic CRUD.

Type checks of built-in bodies (with the client's own models, so a body the client could not
read back is a 400 here), name and label validation, MicroTime parsing for Leases, Service
defaulting and validation, Pod status reset, and CRD acceptance (the status the apiextensions
controller would write) together with structural-schema pruning and validation of custom
resources.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import kubernetes.client

from lab.kubeapi import schema
from lab.kubeapi.errors import ApiError, Cause, bad_request, invalid
from lab.kubeapi.resources import ResourceType

Obj = dict[str, Any]

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def name_causes(rt: ResourceType, name: str) -> list[Cause]:
    if not name:
        return [
            Cause(
                "FieldValueRequired",
                "metadata.name",
                "Required value: name or generateName is required",
            )
        ]
    problem = ""
    if rt.name_rule == "label1035":
        if len(name) > 63 or not _DNS1035_LABEL.match(name):
            problem = (
                "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an "
                "alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or "
                "'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"
            )
    elif rt.name_rule == "label1123":
        if len(name) > 63 or not _DNS1123_LABEL.match(name):
            problem = (
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and "
                "must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex "
                "used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
            )
    elif rt.name_rule == "path":
        if not is_path_segment(name):
            problem = 'may not contain "/" or "%"'
    elif len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        problem = (
            "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'example.com', regex used for "
            "validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"
        )
    if problem:
        return [Cause("FieldValueInvalid", "metadata.name", f'Invalid value: "{name}": {problem}')]
    return []


def is_path_segment(name: str) -> bool:
    """path.IsValidPathSegmentName: a name that can stand as one URL path segment."""
    return name not in (".", "..") and "/" not in name and "%" not in name


def _key_causes(key: str, field: str) -> list[Cause]:
    prefix, _, name = key.rpartition("/")
    ok = bool(name) and len(name) <= 63 and bool(_QUALIFIED_NAME.match(name))
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        ok = False
    if ok:
        return []
    return [
        Cause(
            "FieldValueInvalid",
            field,
            f"Invalid value: \"{key}\": name part must consist of alphanumeric characters, '-', '_' or '.', "
            "and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or "
            "'123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')",
        )
    ]


def metadata_causes(obj: Obj) -> list[Cause]:
    meta = obj.get("metadata") or {}
    causes: list[Cause] = []
    for key, value in (meta.get("labels") or {}).items():
        causes += _key_causes(key, "metadata.labels")
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string or consist of '
                    "alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
                    "character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                    "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
                )
            )
    for key in meta.get("annotations") or {}:
        causes += _key_causes(key, "metadata.annotations")
    return causes


def type_check(rt: ResourceType, version: str, obj: Obj) -> None:
    """400 for bodies the client's own model rejects (wrong JSON types), as the decoder would."""
    meta = obj.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise _undecodable(rt, version, "metadata must be an object")
    if not rt.model:
        return
    model = getattr(kubernetes.client, rt.model, None)
    if model is None:
        return
    try:
        model.from_dict(obj)
    except Exception as error:  # pydantic ValidationError: any type mismatch
        first = str(error).splitlines()
        detail = "; ".join(line.strip() for line in first[1:3]) if len(first) > 1 else str(error)
        raise _undecodable(rt, version, detail) from None


def _undecodable(rt: ResourceType, version: str, detail: str) -> ApiError:
    return bad_request(
        f'{rt.kind} in version "{version}" cannot be handled as a {rt.kind}: {detail}'
    )


def prune_builtin(rt: ResourceType, obj: Obj) -> list[str]:
    """Drop fields the kind does not have (per the client's models, which track the API);
    return their paths for the `Warning` header or a Strict-mode 400."""
    pruned: list[str] = []
    if rt.model:
        _prune_model(rt.model, obj, "", pruned)
    return pruned


_LIST = re.compile(r"^List\[(.+)\]$")
_DICT = re.compile(r"^Dict\[str, (.+)\]$")


def _prune_model(type_name: str, value: Any, path: str, pruned: list[str]) -> None:
    if (m := _LIST.match(type_name)) and isinstance(value, list):
        for item in value:
            _prune_model(m.group(1), item, path, pruned)
        return
    if (m := _DICT.match(type_name)) and isinstance(value, dict):
        for key, item in value.items():
            _prune_model(m.group(1), item, f"{path}.{key}" if path else key, pruned)
        return
    model = getattr(kubernetes.client, type_name, None)
    types = getattr(model, "openapi_types", None)
    names = getattr(model, "attribute_map", None)
    if not isinstance(value, dict) or not isinstance(types, dict) or not isinstance(names, dict):
        return
    known = {names[attr]: kind for attr, kind in types.items() if attr in names}
    for key in list(value):
        child = f"{path}.{key}" if path else key
        if key not in known:
            pruned.append(child)
            del value[key]
        else:
            _prune_model(known[key], value[key], child, pruned)


# MicroTime: layout 2006-01-02T15:04:05.000000Z07:00, exactly six fractional digits.
_MICROTIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}(Z|[+-]\d{2}:\d{2})$")


def parse_microtime(value: str) -> str:
    """Validate a MicroTime string and return it as UTC with six digits and `Z`."""
    if not _MICROTIME.match(value):
        raise ValueError(
            f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse as MicroTime'
        )
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
    return parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_lease(rt: ResourceType, version: str, obj: Obj) -> None:
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return
    for field in ("acquireTime", "renewTime"):
        value = spec.get(field)
        if value is None:
            spec.pop(field, None)
            continue
        try:
            spec[field] = parse_microtime(str(value))
        except ValueError as error:
            raise _undecodable(rt, version, str(error)) from None


def lease_causes(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and duration <= 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.leaseDurationSeconds",
                f"Invalid value: {duration}: must be greater than 0",
            )
        )
    transitions = spec.get("leaseTransitions")
    if transitions is not None and transitions < 0:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.leaseTransitions",
                f"Invalid value: {transitions}: must be greater than or equal to 0",
            )
        )
    if spec.get("preferredHolder") and not spec.get("strategy"):
        causes.append(
            Cause(
                "FieldValueForbidden",
                "spec.preferredHolder",
                "Forbidden: preferredHolder can only be set when strategy is set",
            )
        )
    return causes


class Allocator:
    """ClusterIPs from 10.96.0.0/12 and NodePorts from 30000-32767, never reused while in use."""

    def __init__(self) -> None:
        self._next_ip = int(ipaddress.IPv4Address("10.96.0.10"))
        self._next_port = 30000

    def cluster_ip(self, used: set[str]) -> str:
        while True:
            candidate = str(ipaddress.IPv4Address(self._next_ip))
            self._next_ip += 1
            if candidate not in used:
                return candidate

    def node_port(self, used: set[int]) -> int:
        while True:
            candidate = self._next_port
            self._next_port = 30000 if self._next_port >= 32767 else self._next_port + 1
            if candidate not in used:
                return candidate


def default_service(obj: Obj, old: Obj | None, allocator: Allocator, others: Iterable[Obj]) -> None:
    spec = obj.setdefault("spec", {})
    old_spec = (old or {}).get("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    kind = spec["type"]
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        spec.setdefault("ipFamilies", ["IPv4"])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "targetPort" not in port and "port" in port:
                port["targetPort"] = port["port"]
    if kind in ("LoadBalancer", "NodePort"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    others = list(others)
    if kind != "ExternalName" and not spec.get("clusterIP"):
        if old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        else:
            used = {o.get("spec", {}).get("clusterIP", "") for o in others}
            spec["clusterIP"] = allocator.cluster_ip(used)
    if (spec.get("clusterIP") and spec["clusterIP"] != "None") or spec.get("clusterIP") == "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    wants_node_ports = kind == "NodePort" or (
        kind == "LoadBalancer" and spec.get("allocateLoadBalancerNodePorts")
    )
    if wants_node_ports:
        old_ports = {
            (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
            for p in old_spec.get("ports") or []
        }
        used_ports = {
            int(p.get("nodePort"))
            for o in others
            for p in o.get("spec", {}).get("ports") or []
            if p.get("nodePort")
        }
        for port in spec.get("ports") or []:
            if isinstance(port, dict) and not port.get("nodePort"):
                previous = old_ports.get((port.get("port"), port.get("protocol", "TCP")))
                port["nodePort"] = previous or allocator.node_port(used_ports)
                used_ports.add(port["nodePort"])
    status = obj.setdefault("status", {})
    if kind != "LoadBalancer":
        status["loadBalancer"] = {}
    load_balancer = status.setdefault("loadBalancer", {})
    for ingress in load_balancer.get("ingress") or []:
        if isinstance(ingress, dict) and ingress.get("ip"):
            ingress.setdefault("ipMode", "VIP")


def service_causes(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    causes: list[Cause] = []
    kind = spec.get("type")
    if kind not in ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.type",
                f'Unsupported value: "{kind}": supported values: "ClusterIP", "ExternalName", "LoadBalancer", "NodePort"',
            )
        )
    if kind != "ExternalName" and spec.get("clusterIP") != "None" and not spec.get("ports"):
        causes.append(Cause("FieldValueRequired", "spec.ports", "Required value"))
    for n, port in enumerate(spec.get("ports") or []):
        number = port.get("port")
        if not isinstance(number, int) or not 1 <= number <= 65535:
            causes.append(
                Cause(
                    "FieldValueInvalid",
                    f"spec.ports[{n}].port",
                    f"Invalid value: {number}: must be between 1 and 65535, inclusive",
                )
            )
        if port.get("protocol") not in ("TCP", "UDP", "SCTP"):
            causes.append(
                Cause(
                    "FieldValueNotSupported",
                    f"spec.ports[{n}].protocol",
                    f'Unsupported value: "{port.get("protocol")}": supported values: "SCTP", "TCP", "UDP"',
                )
            )
    if len(spec.get("ports") or []) > 1:
        for n, port in enumerate(spec["ports"]):
            if not port.get("name"):
                causes.append(
                    Cause("FieldValueRequired", f"spec.ports[{n}].name", "Required value")
                )
    return causes


# CRDs -------------------------------------------------------------------------


def crd_causes(obj: Obj) -> list[Cause]:
    spec = obj.get("spec") or {}
    names = spec.get("names") or {}
    causes: list[Cause] = []
    group = spec.get("group", "")
    plural = names.get("plural", "")
    if not group or "." not in group:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.group",
                f'Invalid value: "{group}": should be a domain with at least one dot',
            )
        )
    if not plural:
        causes.append(Cause("FieldValueRequired", "spec.names.plural", "Required value"))
    if not names.get("kind"):
        causes.append(Cause("FieldValueRequired", "spec.names.kind", "Required value"))
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        causes.append(
            Cause(
                "FieldValueNotSupported",
                "spec.scope",
                f'Unsupported value: "{spec.get("scope")}": supported values: "Cluster", "Namespaced"',
            )
        )
    name = obj.get("metadata", {}).get("name", "")
    if plural and group and name != f"{plural}.{group}":
        causes.append(
            Cause(
                "FieldValueInvalid",
                "metadata.name",
                f'Invalid value: "{name}": must be spec.names.plural+"."+spec.group',
            )
        )
    versions = spec.get("versions") or []
    if not versions:
        causes.append(
            Cause(
                "FieldValueRequired",
                "spec.versions",
                "Required value: must have exactly one version marked as storage version",
            )
        )
    elif sum(1 for v in versions if v.get("storage")) != 1:
        causes.append(
            Cause(
                "FieldValueInvalid",
                "spec.versions",
                "Invalid value: must have exactly one version marked as storage version",
            )
        )
    for n, version in enumerate(versions):
        if not (version.get("schema") or {}).get("openAPIV3Schema"):
            causes.append(
                Cause(
                    "FieldValueRequired",
                    f"spec.versions[{n}].schema.openAPIV3Schema",
                    "Required value: schemas are required",
                )
            )
    return causes


def accept_crd(obj: Obj, now: str) -> None:
    """Write the status the apiextensions controllers would: names accepted, established."""
    spec = obj["spec"]
    names = dict(spec["names"])
    names.setdefault("singular", names["kind"].lower())
    names.setdefault("listKind", names["kind"] + "List")
    spec["names"] = names
    obj["status"] = {
        "acceptedNames": names,
        "conditions": [
            {
                "type": "NamesAccepted",
                "status": "True",
                "reason": "NoConflicts",
                "message": "no conflicts found",
                "lastTransitionTime": now,
            },
            {
                "type": "Established",
                "status": "True",
                "reason": "InitialNamesAccepted",
                "message": "the initial names have been accepted",
                "lastTransitionTime": now,
            },
        ],
        "storedVersions": [v["name"] for v in spec["versions"] if v.get("storage")],
    }


def prune_custom(rt: ResourceType, version: str, obj: Obj) -> list[str]:
    """Drop fields the version's schema does not declare; return their paths."""
    root = rt.schemas.get(version) or {}
    properties = root.get("properties") or {}
    pruned: list[str] = []
    if root.get("x-kubernetes-preserve-unknown-fields"):
        return pruned
    for key in list(obj):
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key not in properties:
            pruned.append(key)
            del obj[key]
            continue
        obj[key] = schema.prune(obj[key], properties[key], key, pruned)
    return pruned


def custom_causes(rt: ResourceType, version: str, obj: Obj) -> list[Cause]:
    root = rt.schemas.get(version) or {}
    causes: list[Cause] = []
    properties = root.get("properties") or {}
    for name in root.get("required") or []:
        if name != "metadata" and name not in obj:
            causes.append(Cause("FieldValueRequired", name, "Required value"))
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "metadata"):
            continue
        if key in properties:
            schema.validate(value, properties[key], key, causes)
    return causes


def raise_if(causes: list[Cause], rt: ResourceType, name: str) -> None:
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)
