"""Field numbers of the protobuf messages protobuf.py decodes.

Taken from the ``generated.proto`` files of k8s.io/api (core/v1, rbac/v1) and k8s.io/apimachinery
(meta/v1, runtime, util/intstr) as of Kubernetes 1.35: only the kinds ``kubectl create`` makes
and this server serves, and the messages they contain. A field is ``number: "name type"``;
``type[]`` is repeated, ``*type`` a Go pointer (its zero value is kept: ``false`` is not
"unset"), ``map<string,string>``/``map<string,bytes>`` a map. Time, IntOrString and FieldsV1
have their own JSON forms (protobuf.py).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Field:
    name: str
    type: str
    repeated: bool = False
    pointer: bool = False


_TABLE: dict[str, dict[int, str]] = {
    # meta/v1
    "ObjectMeta": {
        1: "name string", 2: "generateName string", 3: "namespace string", 4: "selfLink string",
        5: "uid string", 6: "resourceVersion string", 7: "generation int64",
        8: "creationTimestamp Time", 9: "deletionTimestamp *Time",
        10: "deletionGracePeriodSeconds *int64", 11: "labels map<string,string>",
        12: "annotations map<string,string>", 13: "ownerReferences OwnerReference[]",
        14: "finalizers string[]", 17: "managedFields ManagedFieldsEntry[]",
    },
    "OwnerReference": {
        1: "kind string", 3: "name string", 4: "uid string", 5: "apiVersion string",
        6: "controller *bool", 7: "blockOwnerDeletion *bool",
    },
    "ManagedFieldsEntry": {
        1: "manager string", 2: "operation string", 3: "apiVersion string", 4: "time *Time",
        6: "fieldsType string", 7: "fieldsV1 FieldsV1", 8: "subresource string",
    },
    "LabelSelector": {
        1: "matchLabels map<string,string>", 2: "matchExpressions LabelSelectorRequirement[]",
    },
    "LabelSelectorRequirement": {1: "key string", 2: "operator string", 3: "values string[]"},
    "Condition": {
        1: "type string", 2: "status string", 3: "observedGeneration int64",
        4: "lastTransitionTime Time", 5: "reason string", 6: "message string",
    },
    # core/v1
    "Namespace": {1: "metadata ObjectMeta", 2: "spec NamespaceSpec", 3: "status NamespaceStatus"},
    "NamespaceSpec": {1: "finalizers string[]"},
    "NamespaceStatus": {1: "phase string", 2: "conditions NamespaceCondition[]"},
    "NamespaceCondition": {
        1: "type string", 2: "status string", 4: "lastTransitionTime Time", 5: "reason string",
        6: "message string",
    },
    "ConfigMap": {
        1: "metadata ObjectMeta", 2: "data map<string,string>",
        3: "binaryData map<string,bytes>", 4: "immutable *bool",
    },
    "ServiceAccount": {
        1: "metadata ObjectMeta", 2: "secrets ObjectReference[]",
        3: "imagePullSecrets LocalObjectReference[]", 4: "automountServiceAccountToken *bool",
    },
    "ObjectReference": {
        1: "kind string", 2: "namespace string", 3: "name string", 4: "uid string",
        5: "apiVersion string", 6: "resourceVersion string", 7: "fieldPath string",
    },
    "LocalObjectReference": {1: "name string"},
    "Service": {1: "metadata ObjectMeta", 2: "spec ServiceSpec", 3: "status ServiceStatus"},
    "ServiceSpec": {
        1: "ports ServicePort[]", 2: "selector map<string,string>", 3: "clusterIP string",
        4: "type string", 5: "externalIPs string[]", 7: "sessionAffinity string",
        8: "loadBalancerIP string", 9: "loadBalancerSourceRanges string[]",
        10: "externalName string", 11: "externalTrafficPolicy string",
        12: "healthCheckNodePort int32", 13: "publishNotReadyAddresses bool",
        14: "sessionAffinityConfig *SessionAffinityConfig", 17: "ipFamilyPolicy *string",
        18: "clusterIPs string[]", 19: "ipFamilies string[]",
        20: "allocateLoadBalancerNodePorts *bool", 21: "loadBalancerClass *string",
        22: "internalTrafficPolicy *string", 23: "trafficDistribution *string",
    },
    "ServicePort": {
        1: "name string", 2: "protocol string", 3: "port int32", 4: "targetPort IntOrString",
        5: "nodePort int32", 6: "appProtocol *string",
    },
    "SessionAffinityConfig": {1: "clientIP *ClientIPConfig"},
    "ClientIPConfig": {1: "timeoutSeconds *int32"},
    "ServiceStatus": {1: "loadBalancer LoadBalancerStatus", 2: "conditions Condition[]"},
    "LoadBalancerStatus": {1: "ingress LoadBalancerIngress[]"},
    "LoadBalancerIngress": {
        1: "ip string", 2: "hostname string", 3: "ipMode *string", 4: "ports PortStatus[]",
    },
    "PortStatus": {1: "port int32", 2: "protocol string", 3: "error *string"},
    # rbac/v1
    "Role": {1: "metadata ObjectMeta", 2: "rules PolicyRule[]"},
    "ClusterRole": {
        1: "metadata ObjectMeta", 2: "rules PolicyRule[]", 3: "aggregationRule *AggregationRule",
    },
    "AggregationRule": {1: "clusterRoleSelectors LabelSelector[]"},
    "PolicyRule": {
        1: "verbs string[]", 2: "apiGroups string[]", 3: "resources string[]",
        4: "resourceNames string[]", 5: "nonResourceURLs string[]",
    },
    "RoleBinding": {1: "metadata ObjectMeta", 2: "subjects Subject[]", 3: "roleRef RoleRef"},
    "ClusterRoleBinding": {
        1: "metadata ObjectMeta", 2: "subjects Subject[]", 3: "roleRef RoleRef",
    },
    "Subject": {1: "kind string", 2: "apiGroup string", 3: "name string", 4: "namespace string"},
    "RoleRef": {1: "apiGroup string", 2: "kind string", 3: "name string"},
}  # fmt: skip


def _field(spec: str) -> Field:
    name, kind = spec.split(" ")
    pointer = kind.startswith("*")
    repeated = kind.endswith("[]")
    return Field(name, kind.strip("*").removesuffix("[]"), repeated, pointer)


MESSAGES: dict[str, dict[int, Field]] = {
    message: {number: _field(spec) for number, spec in fields.items()}
    for message, fields in _TABLE.items()
}

# (apiVersion, kind) of a request body -> its message.
ROOTS: dict[tuple[str, str], str] = {
    ("v1", "Namespace"): "Namespace",
    ("v1", "ConfigMap"): "ConfigMap",
    ("v1", "ServiceAccount"): "ServiceAccount",
    ("v1", "Service"): "Service",
    ("rbac.authorization.k8s.io/v1", "Role"): "Role",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "ClusterRole",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): "ClusterRoleBinding",
}
