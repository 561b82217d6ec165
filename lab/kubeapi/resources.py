"""What the server serves: one ResourceType per resource, built-in or defined by a CRD.

A ResourceType carries everything the generic handlers need to behave like the real registry
strategy of that kind: scope, status subresource, whether PUT may create, whether an update
must carry a resourceVersion, what DELETE returns, field selectors, strategic-merge keys,
printer columns for server-side Table output, and (for CRDs) the per-version structural schema.
The Registry is the live set, changed when CRDs are created or deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from lab.kubeapi.selectors import FieldGetter, field_getter


@dataclass(frozen=True, slots=True)
class PrinterColumn:
    name: str
    type: str  # string, integer, number, boolean, date (shown as age), timestamp (as is)
    json_path: str = ""  # ".spec.holderIdentity"; ignored when compute is set
    format: str = ""
    description: str = ""
    priority: int = 0
    compute: Callable[[Mapping[str, Any]], Any] | None = None


@dataclass(frozen=True, slots=True)
class ResourceType:
    group: str
    versions: tuple[str, ...]  # served versions, preferred (storage) first
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    has_status: bool = False
    custom: bool = False
    create_on_update: bool = False
    unconditional_update: bool = True
    delete_returns_object: bool = False
    keep_status_on_create: bool = False
    field_selectors: Mapping[str, FieldGetter] = field(default_factory=dict)
    merge_keys: Mapping[str, str] = field(default_factory=dict)
    columns: Mapping[str, tuple[PrinterColumn, ...]] = field(default_factory=dict)
    schemas: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    model: str = ""  # the kubernetes client model used to type-check bodies, e.g. "V1Lease"
    name_rule: str = "subdomain"  # subdomain | label1035 | label1123 | path
    verbs: tuple[str, ...] = (
        "create",
        "delete",
        "deletecollection",
        "get",
        "list",
        "patch",
        "update",
        "watch",
    )

    @property
    def selectable_fields(self) -> Mapping[str, FieldGetter]:
        """Field-selector paths: metadata.name/namespace everywhere, plus per-kind extras."""
        return {**_METADATA_FIELDS, **self.field_selectors}

    @property
    def key(self) -> str:
        """Storage bucket: versions of one resource share it."""
        return f"{self.group}/{self.plural}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"

    def api_version(self, version: str) -> str:
        return f"{self.group}/{version}" if self.group else version

    @property
    def storage_version(self) -> str:
        return self.versions[0]


_METADATA_FIELDS: dict[str, FieldGetter] = {
    "metadata.name": field_getter("metadata.name"),
    "metadata.namespace": field_getter("metadata.namespace"),
}


def _paths(*paths: str) -> dict[str, FieldGetter]:
    """A kind's extra field selectors (selectable_fields adds the metadata ones)."""
    return {path: field_getter(path) for path in paths}


_NAME = PrinterColumn(
    "Name", "string", ".metadata.name", "name", "Name must be unique within a namespace."
)
_AGE = PrinterColumn(
    "Age", "date", ".metadata.creationTimestamp", "", "CreationTimestamp is a timestamp."
)
_CREATED_AT = PrinterColumn("Created At", "timestamp", ".metadata.creationTimestamp", "", "")


def _cols(*columns: PrinterColumn) -> dict[str, tuple[PrinterColumn, ...]]:
    return {"*": (_NAME, *columns)}


def _configmap_data(obj: Mapping[str, Any]) -> str:
    return str(len(obj.get("data") or {}) + len(obj.get("binaryData") or {}))


def _node_status(obj: Mapping[str, Any]) -> str:
    for cond in obj.get("status", {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return "Ready" if cond.get("status") == "True" else "NotReady"
    return "Unknown"


def _node_roles(obj: Mapping[str, Any]) -> str:
    prefix = "node-role.kubernetes.io/"
    labels = obj.get("metadata", {}).get("labels") or {}
    roles = sorted(k[len(prefix) :] for k in labels if k.startswith(prefix))
    return ",".join(roles) or "<none>"


def _service_external_ip(obj: Mapping[str, Any]) -> str:
    spec = obj.get("spec", {})
    ips = list(spec.get("externalIPs") or [])
    for ingress in obj.get("status", {}).get("loadBalancer", {}).get("ingress") or []:
        ips.append(ingress.get("ip") or ingress.get("hostname", ""))
    if ips:
        return ",".join(ips)
    if spec.get("type") == "LoadBalancer":
        return "<pending>"
    if spec.get("type") == "ExternalName":
        return str(spec.get("externalName", ""))
    return "<none>"


def _service_ports(obj: Mapping[str, Any]) -> str:
    parts = []
    for port in obj.get("spec", {}).get("ports") or []:
        text = f"{port.get('port')}"
        if port.get("nodePort"):
            text += f":{port['nodePort']}"
        parts.append(f"{text}/{port.get('protocol', 'TCP')}")
    return ",".join(parts) or "<none>"


def _or_none(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for step in path.split("."):
        value = value.get(step) if isinstance(value, Mapping) else None
    return str(value) if value else "<none>"


def _readiness_gates(obj: Mapping[str, Any]) -> str:
    gates = obj.get("spec", {}).get("readinessGates") or []
    if not gates:
        return "<none>"
    conditions = {
        c.get("type"): c.get("status") for c in obj.get("status", {}).get("conditions") or []
    }
    ready = sum(1 for g in gates if conditions.get(g.get("conditionType")) == "True")
    return f"{ready}/{len(gates)}"


def _node_address(kind: str) -> Callable[[Mapping[str, Any]], str]:
    def address(obj: Mapping[str, Any]) -> str:
        for entry in obj.get("status", {}).get("addresses") or []:
            if entry.get("type") == kind:
                return str(entry.get("address", ""))
        return "<none>"

    return address


def _service_selector(obj: Mapping[str, Any]) -> str:
    selector = obj.get("spec", {}).get("selector") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(selector.items())) or "<none>"


def _pod_ready(obj: Mapping[str, Any]) -> str:
    containers = obj.get("spec", {}).get("containers") or []
    statuses = obj.get("status", {}).get("containerStatuses") or []
    ready = sum(1 for s in statuses if s.get("ready"))
    return f"{ready}/{len(containers)}"


def _pod_status(obj: Mapping[str, Any]) -> str:
    if obj.get("metadata", {}).get("deletionTimestamp"):
        return "Terminating"
    return str(obj.get("status", {}).get("phase") or "Pending")


def _pod_restarts(obj: Mapping[str, Any]) -> int:
    return sum(
        int(s.get("restartCount", 0)) for s in obj.get("status", {}).get("containerStatuses") or []
    )


def _slice_ports(obj: Mapping[str, Any]) -> str:
    ports = [str(p.get("port")) for p in obj.get("ports") or [] if p.get("port") is not None]
    return ",".join(ports) or "<unset>"


def _slice_endpoints(obj: Mapping[str, Any]) -> str:
    addresses = [a for e in obj.get("endpoints") or [] for a in e.get("addresses") or []]
    if not addresses:
        return "<unset>"
    shown = ",".join(addresses[:3])
    return shown + (f" + {len(addresses) - 3} more..." if len(addresses) > 3 else "")


def _role_ref(obj: Mapping[str, Any]) -> str:
    ref = obj.get("roleRef", {})
    return f"{ref.get('kind', '')}/{ref.get('name', '')}"


def _event_object(obj: Mapping[str, Any]) -> str:
    ref = obj.get("involvedObject", {})
    return f"{str(ref.get('kind', '')).lower()}/{ref.get('name', '')}"


_CORE_POD_SELECTORS = _paths(
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.nominatedNodeName",
)

_CONDITIONS = {
    "status.conditions": "type",
    "metadata.ownerReferences": "uid",
    "metadata.finalizers": "",
}

BUILTINS: tuple[ResourceType, ...] = (
    ResourceType(
        group="",
        versions=("v1",),
        plural="namespaces",
        singular="namespace",
        kind="Namespace",
        namespaced=False,
        short_names=("ns",),
        has_status=True,
        delete_returns_object=True,
        field_selectors=_paths("status.phase"),
        merge_keys={**_CONDITIONS, "spec.finalizers": ""},
        columns=_cols(PrinterColumn("Status", "string", ".status.phase"), _AGE),
        model="V1Namespace",
        name_rule="label1123",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="nodes",
        singular="node",
        kind="Node",
        namespaced=False,
        short_names=("no",),
        has_status=True,
        keep_status_on_create=True,
        field_selectors=_paths("spec.unschedulable"),
        merge_keys={
            **_CONDITIONS,
            "status.addresses": "type",
            "spec.taints": "key",
            "spec.podCIDRs": "",
        },
        columns=_cols(
            PrinterColumn("Status", "string", compute=_node_status),
            PrinterColumn("Roles", "string", compute=_node_roles),
            _AGE,
            PrinterColumn("Version", "string", ".status.nodeInfo.kubeletVersion"),
            PrinterColumn("Internal-IP", "string", compute=_node_address("InternalIP"), priority=1),
            PrinterColumn("External-IP", "string", compute=_node_address("ExternalIP"), priority=1),
            PrinterColumn("OS-Image", "string", ".status.nodeInfo.osImage", priority=1),
            PrinterColumn("Kernel-Version", "string", ".status.nodeInfo.kernelVersion", priority=1),
            PrinterColumn(
                "Container-Runtime",
                "string",
                ".status.nodeInfo.containerRuntimeVersion",
                priority=1,
            ),
        ),
        model="V1Node",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="services",
        singular="service",
        kind="Service",
        namespaced=True,
        short_names=("svc",),
        categories=("all",),
        has_status=True,
        create_on_update=True,
        delete_returns_object=True,
        merge_keys={**_CONDITIONS, "spec.ports": "port"},
        columns=_cols(
            PrinterColumn("Type", "string", ".spec.type"),
            PrinterColumn("Cluster-IP", "string", ".spec.clusterIP"),
            PrinterColumn("External-IP", "string", compute=_service_external_ip),
            PrinterColumn("Port(s)", "string", compute=_service_ports),
            _AGE,
            PrinterColumn("Selector", "string", compute=_service_selector, priority=1),
        ),
        model="V1Service",
        name_rule="label1035",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="pods",
        singular="pod",
        kind="Pod",
        namespaced=True,
        short_names=("po",),
        categories=("all",),
        has_status=True,
        delete_returns_object=True,
        field_selectors=_CORE_POD_SELECTORS,
        merge_keys={
            **_CONDITIONS,
            "spec.containers": "name",
            "spec.initContainers": "name",
            "spec.containers.ports": "containerPort",
            "spec.containers.env": "name",
            "spec.containers.volumeMounts": "mountPath",
            "spec.volumes": "name",
            "status.containerStatuses": "name",
        },
        columns=_cols(
            PrinterColumn("Ready", "string", compute=_pod_ready),
            PrinterColumn("Status", "string", compute=_pod_status),
            PrinterColumn("Restarts", "integer", compute=_pod_restarts),
            _AGE,
            PrinterColumn(
                "IP", "string", compute=lambda o: _or_none(o, "status.podIP"), priority=1
            ),
            PrinterColumn(
                "Node", "string", compute=lambda o: _or_none(o, "spec.nodeName"), priority=1
            ),
            PrinterColumn(
                "Nominated Node",
                "string",
                compute=lambda o: _or_none(o, "status.nominatedNodeName"),
                priority=1,
            ),
            PrinterColumn("Readiness Gates", "string", compute=_readiness_gates, priority=1),
        ),
        model="V1Pod",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="serviceaccounts",
        singular="serviceaccount",
        kind="ServiceAccount",
        namespaced=True,
        short_names=("sa",),
        create_on_update=False,
        merge_keys={
            "secrets": "name",
            "metadata.ownerReferences": "uid",
            "metadata.finalizers": "",
        },
        columns=_cols(
            PrinterColumn("Secrets", "integer", compute=lambda o: len(o.get("secrets") or [])), _AGE
        ),
        model="V1ServiceAccount",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="events",
        singular="event",
        kind="Event",
        namespaced=True,
        short_names=("ev",),
        field_selectors=_paths(
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
        ),
        columns=_cols(
            PrinterColumn("Type", "string", ".type"),
            PrinterColumn("Reason", "string", ".reason"),
            PrinterColumn("Object", "string", compute=_event_object),
            PrinterColumn("Message", "string", ".message"),
        ),
        model="CoreV1Event",
    ),
    ResourceType(
        group="discovery.k8s.io",
        versions=("v1",),
        plural="endpointslices",
        singular="endpointslice",
        kind="EndpointSlice",
        namespaced=True,
        columns=_cols(
            PrinterColumn("AddressType", "string", ".addressType"),
            PrinterColumn("Ports", "string", compute=_slice_ports),
            PrinterColumn("Endpoints", "string", compute=_slice_endpoints),
            _AGE,
        ),
        model="V1EndpointSlice",
    ),
    ResourceType(
        group="",
        versions=("v1",),
        plural="configmaps",
        singular="configmap",
        kind="ConfigMap",
        namespaced=True,
        short_names=("cm",),
        create_on_update=True,
        columns=_cols(PrinterColumn("Data", "integer", compute=_configmap_data), _AGE),
        model="V1ConfigMap",
    ),
    ResourceType(
        group="apps",
        versions=("v1",),
        plural="daemonsets",
        singular="daemonset",
        kind="DaemonSet",
        namespaced=True,
        short_names=("ds",),
        categories=("all",),
        has_status=True,
        create_on_update=True,
        merge_keys={**_CONDITIONS},
        columns=_cols(
            PrinterColumn("Desired", "integer", ".status.desiredNumberScheduled"),
            PrinterColumn("Current", "integer", ".status.currentNumberScheduled"),
            PrinterColumn("Ready", "integer", ".status.numberReady"),
            _AGE,
        ),
        model="V1DaemonSet",
    ),
    ResourceType(
        group="coordination.k8s.io",
        versions=("v1",),
        plural="leases",
        singular="lease",
        kind="Lease",
        namespaced=True,
        create_on_update=True,
        unconditional_update=False,
        columns=_cols(PrinterColumn("Holder", "string", ".spec.holderIdentity"), _AGE),
        model="V1Lease",
    ),
    ResourceType(
        group="rbac.authorization.k8s.io",
        versions=("v1",),
        plural="roles",
        singular="role",
        kind="Role",
        namespaced=True,
        create_on_update=True,
        columns=_cols(_CREATED_AT),
        model="V1Role",
        name_rule="path",
    ),
    ResourceType(
        group="rbac.authorization.k8s.io",
        versions=("v1",),
        plural="rolebindings",
        singular="rolebinding",
        kind="RoleBinding",
        namespaced=True,
        create_on_update=True,
        columns=_cols(PrinterColumn("Role", "string", compute=_role_ref), _AGE),
        model="V1RoleBinding",
        name_rule="path",
    ),
    ResourceType(
        group="rbac.authorization.k8s.io",
        versions=("v1",),
        plural="clusterroles",
        singular="clusterrole",
        kind="ClusterRole",
        namespaced=False,
        create_on_update=True,
        columns=_cols(_CREATED_AT),
        model="V1ClusterRole",
        name_rule="path",
    ),
    ResourceType(
        group="rbac.authorization.k8s.io",
        versions=("v1",),
        plural="clusterrolebindings",
        singular="clusterrolebinding",
        kind="ClusterRoleBinding",
        namespaced=False,
        create_on_update=True,
        columns=_cols(PrinterColumn("Role", "string", compute=_role_ref), _AGE),
        model="V1ClusterRoleBinding",
        name_rule="path",
    ),
    ResourceType(
        group="apiextensions.k8s.io",
        versions=("v1",),
        plural="customresourcedefinitions",
        singular="customresourcedefinition",
        kind="CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        has_status=True,
        columns=_cols(_CREATED_AT),
        model="V1CustomResourceDefinition",
    ),
)


def from_crd(crd: Mapping[str, Any]) -> ResourceType:
    """The ResourceType a (validated) CustomResourceDefinition object defines."""
    spec = crd["spec"]
    names = spec["names"]
    served = [v for v in spec.get("versions", []) if v.get("served", True)]
    served.sort(key=lambda v: not v.get("storage", False))
    versions = tuple(v["name"] for v in served)
    schemas: dict[str, Mapping[str, Any]] = {}
    columns: dict[str, tuple[PrinterColumn, ...]] = {}
    has_status = False
    for version in served:
        schemas[version["name"]] = (version.get("schema") or {}).get("openAPIV3Schema") or {}
        has_status = has_status or "status" in (version.get("subresources") or {})
        printer = version.get("additionalPrinterColumns")
        if printer is None:
            columns[version["name"]] = (_NAME, _AGE)
        else:
            columns[version["name"]] = (
                _NAME,
                *(
                    PrinterColumn(
                        c["name"],
                        c.get("type", "string"),
                        c.get("jsonPath", ""),
                        c.get("format", ""),
                        c.get("description", ""),
                        int(c.get("priority", 0)),
                    )
                    for c in printer
                ),
            )
    return ResourceType(
        group=spec["group"],
        versions=versions,
        plural=names["plural"],
        singular=names.get("singular") or names["kind"].lower(),
        kind=names["kind"],
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        has_status=has_status,
        custom=True,
        unconditional_update=False,
        columns=columns,
        schemas=schemas,
    )


class Registry:
    """The served resources; CRDs come and go at runtime, so lookups take a lock."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._types: dict[str, ResourceType] = {rt.key: rt for rt in BUILTINS}

    def add(self, rt: ResourceType) -> None:
        with self._lock:
            self._types[rt.key] = rt

    def remove(self, key: str) -> None:
        with self._lock:
            self._types.pop(key, None)

    def by_key(self, key: str) -> ResourceType | None:
        with self._lock:
            return self._types.get(key)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            rt = self._types.get(f"{group}/{plural}")
        if rt is None or version not in rt.versions:
            return None
        return rt

    def __iter__(self) -> Iterator[ResourceType]:
        with self._lock:
            types = list(self._types.values())
        return iter(types)

    def group_versions(self) -> dict[str, list[str]]:
        """group -> served versions (preferred first), core excluded, in registration order."""
        groups: dict[str, list[str]] = {}
        for rt in self:
            if not rt.group:
                continue
            versions = groups.setdefault(rt.group, [])
            for version in rt.versions:
                if version not in versions:
                    versions.append(version)
        return groups
