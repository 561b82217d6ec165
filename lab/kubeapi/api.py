"""Resource handlers: the generic registry semantics of kube-apiserver over the Store.

One method per verb. Each follows the order of checks of apiserver's genericregistry.Store
(decode, name/namespace checks, preconditions, resourceVersion, strategy, validation, no-op
detection, commit), so the answers (codes, Status texts, returned shapes) are the real ones.
Watches are produced as WatchStream objects the HTTP layer pumps (it owns fault checks and
the socket). Everything here is transport-free so it can also seed objects in-process.
"""

from __future__ import annotations

import base64
import copy
import json
import random
import threading
import time
import uuid
from collections.abc import Generator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import yaml

from lab.kubeapi import errors, kinds, patch, protobuf, tables
from lab.kubeapi.errors import ApiError, Cause
from lab.kubeapi.resources import Registry, ResourceType, from_crd
from lab.kubeapi.selectors import (
    FieldSelector,
    LabelSelector,
    check_field_selector,
    fields_match,
    labels_match,
    parse_field_selector,
    parse_label_selector,
)
from lab.kubeapi.status_bodies import qualified_resource
from lab.kubeapi.store import Change, Compacted, Obj, ObjKey, Store, key_of

JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"
APPLY_PATCH = "application/apply-patch+yaml"

_METHODS = {
    "get": "GET",
    "list": "GET",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETE",
}

DEFAULT_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
CRD_KEY = "apiextensions.k8s.io/customresourcedefinitions"
NAMESPACE_KEY = "/namespaces"


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """Knobs with their reasons; times in seconds."""

    # Real servers end watches after 30-60 min; short here so reconnect paths run in every test.
    watch_timeout_min: float = 5.0
    watch_timeout_max: float = 15.0
    # Real servers bookmark about once a minute; 0 turns periodic bookmarks off.
    bookmark_period: float = 1.0
    # How long a watch/list waits for a future resourceVersion before "Too large" (real: 3 s).
    too_large_wait: float = 3.0
    # How often an idle watch wakes to let the server consult watch faults and shutdown.
    watch_tick: float = 0.1
    # Pods bound to a node are deleted gracefully; a "kubelet" completes it after this delay.
    pod_termination_seconds: float = 0.0


@dataclass(slots=True)
class Result:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class Request:
    """A resource request as the handlers see it (the server fills this from the URL)."""

    verb: str  # Kubernetes verb
    rt: ResourceType
    version: str
    namespace: str = ""
    name: str = ""
    subresource: str = ""
    query: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""
    content_type: str = ""
    accept: str = "application/json"


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _decode(body: bytes, content_type: str = "", custom: bool = False) -> Any:
    """Decode a request body. No Content-Type means JSON (the Python client sends none);
    YAML is accepted like the real server; protobuf for the built-in kinds kubectl creates
    (protobuf.py; never for custom resources, as the real server); CBOR is not (415)."""
    media = content_type.split(";")[0].strip().lower()
    if media == protobuf.MEDIA_TYPE and not custom:
        try:
            return protobuf.decode_object(body)
        except protobuf.UnknownKind:
            raise errors.unsupported_media_type(["application/json", "application/yaml"]) from None
        except protobuf.ProtobufError as error:
            raise errors.bad_request(f"unable to decode the protobuf body: {error}") from None
    if media in ("application/yaml", "application/apply-patch+yaml"):
        try:
            return yaml.safe_load(body.decode() or "null")
        except yaml.YAMLError as error:
            raise errors.bad_request(f"error converting YAML to JSON: {error}") from None
    if media not in ("", "application/json", "*/*"):
        raise errors.unsupported_media_type(["application/json", "application/yaml"])
    try:
        return json.loads(body or b"null")
    except ValueError as error:
        raise errors.bad_request(f"couldn't get version/kind; json parse error: {error}") from None


def _restamped(obj: Obj) -> Obj:
    """A copy to commit when only metadata changes (a delete's resourceVersion, deletion marks):
    stored objects are never changed in place, so the rest can be shared, not deep-copied."""
    return {**obj, "metadata": dict(obj["metadata"])}


def _strip_rv(obj: Obj) -> Obj:
    meta = dict(obj.get("metadata", {}))
    meta.pop("resourceVersion", None)
    return {**obj, "metadata": meta}


class Api:
    def __init__(self, store: Store, registry: Registry, config: ApiConfig | None = None) -> None:
        self.store = store
        self.registry = registry
        self.config = config or ApiConfig()
        self.allocator = kinds.Allocator()
        self.event_cache: dict[tuple[str, str, str, str], bytes] = {}
        self.event_cache_lock = threading.Lock()
        self._rng = random.Random()
        with store.lock:
            for crd in store.objects(CRD_KEY)[0]:  # a restored snapshot's CRDs serve again
                self.registry.add(from_crd(crd))
            for ns in DEFAULT_NAMESPACES:
                if store.get(NAMESPACE_KEY, "", ns) is None:
                    self.seed({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})

    def seed(self, obj: Obj) -> Obj:
        """Create an object in-process (no HTTP, no pipeline) with the full create semantics."""
        api_version = obj.get("apiVersion", "v1")
        group, _, version = api_version.rpartition("/")
        rt = next(
            (
                r
                for r in self.registry
                if r.group == group and r.kind == obj.get("kind") and version in r.versions
            ),
            None,
        )
        if rt is None:
            raise errors.route_not_found()
        namespace = obj.get("metadata", {}).get("namespace", "default") if rt.namespaced else ""
        request = Request("create", rt, version, namespace=namespace, body=json.dumps(obj).encode())
        result = self.create(request)
        stored: Obj = result.body
        return stored

    # shaping output ------------------------------------------------------------

    def present(self, rt: ResourceType, version: str, obj: Obj) -> Obj:
        """The object as served in `version` (custom resources: apiVersion rewritten)."""
        if rt.custom and obj.get("apiVersion") != rt.api_version(version):
            return {**obj, "apiVersion": rt.api_version(version)}
        return obj

    def _single(self, req: Request, obj: Obj, status: int = 200) -> Result:
        shown = self.present(req.rt, req.version, obj)
        if tables.wants_table(req.accept):
            return Result(status, _table(req, [shown], _rv_meta(obj)))
        return Result(status, shown)

    # entry point -----------------------------------------------------------------

    def handle(self, req: Request) -> Result | WatchStream:
        if req.subresource and (req.subresource != "status" or not req.rt.has_status):
            raise errors.route_not_found()
        verb = req.verb
        if req.name and verb in ("list", "create", "deletecollection"):
            raise errors.method_not_allowed(_METHODS[verb], req.rt.kind)
        if not req.name and verb in ("get", "update", "patch", "delete"):
            raise errors.method_not_allowed(_METHODS[verb], req.rt.kind)
        if verb == "get":
            return self.get(req)
        if verb == "list":
            return self.list_objects(req)
        if verb == "watch":
            return self.watch(req)
        if verb == "create":
            if req.subresource:
                raise errors.method_not_allowed("create", req.rt.kind)
            return self.create(req)
        if verb == "update":
            return self.update(req)
        if verb == "patch":
            return self.patch(req)
        if verb == "delete":
            if req.subresource:
                raise errors.method_not_allowed("delete", req.rt.kind)
            return self.delete(req)
        if verb == "deletecollection":
            return self.delete_collection(req)
        raise errors.method_not_allowed(verb, req.rt.kind)

    # get / list ------------------------------------------------------------------

    def get(self, req: Request) -> Result:
        obj = self.store.get(req.rt.key, req.namespace, req.name)
        if obj is None:
            raise errors.not_found(req.rt.plural, req.rt.group, req.name)
        return self._single(req, obj)

    def _selectors(self, req: Request) -> tuple[LabelSelector, FieldSelector]:
        labels = parse_label_selector(req.query.get("labelSelector", ""))
        fields = parse_field_selector(req.query.get("fieldSelector", ""))
        check_field_selector(fields, req.rt.selectable_fields, req.rt.custom)
        return labels, fields

    def _matcher(self, req: Request) -> Any:
        labels, fields = self._selectors(req)
        allowed = req.rt.selectable_fields

        def matches(obj: Obj) -> bool:
            meta = obj.get("metadata", {})
            if req.namespace and meta.get("namespace", "") != req.namespace:
                return False
            if req.name and meta.get("name") != req.name:  # a watch on one object
                return False
            return labels_match(labels, obj) and fields_match(fields, allowed, obj)

        return matches

    def _parse_rv(self, text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise errors.bad_request(
                f'Invalid value: "{text}": resourceVersion: must be a decimal integer'
            ) from None
        if value < 0:
            raise errors.bad_request(
                f'Invalid value: "{text}": resourceVersion: must be non-negative'
            )
        return value

    def _wait_for_rv(self, rv: int) -> None:
        if rv <= self.store.rv:
            return
        deadline = time.monotonic() + self.config.too_large_wait
        while self.store.rv < rv and time.monotonic() < deadline:
            self.store.wait_beyond(self.store.rv, deadline - time.monotonic())
        if self.store.rv < rv:
            raise errors.too_large_resource_version(rv, self.store.rv)

    def list_objects(self, req: Request) -> Result:
        query = req.query
        matches = self._matcher(req)
        rv_text = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        token = query.get("continue", "")
        if match:
            if match not in ("Exact", "NotOlderThan"):
                raise _options_invalid(
                    "ListOptions",
                    "resourceVersionMatch",
                    f'Unsupported value: "{match}": supported values: "Exact", "NotOlderThan"',
                )
            if not rv_text:
                raise _options_invalid(
                    "ListOptions",
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided",
                )
            if token:
                raise _options_invalid(
                    "ListOptions",
                    "resourceVersionMatch",
                    "Forbidden: resourceVersionMatch is forbidden when continue is provided",
                )
            if match == "Exact" and rv_text == "0":
                raise _options_invalid(
                    "ListOptions",
                    "resourceVersionMatch",
                    'Forbidden: resourceVersionMatch "exact" is forbidden for resourceVersion "0"',
                )
        if "sendInitialEvents" in query:
            raise _options_invalid(
                "ListOptions",
                "sendInitialEvents",
                "Forbidden: sendInitialEvents is forbidden for list",
            )
        limit = int(query.get("limit", "0") or "0")
        start_after: ObjKey | None = None
        if token:
            try:
                decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.encode()))
                snapshot_rv = int(decoded["rv"])
                namespace, _, name = str(decoded["start"]).partition("/")
                start_after = (namespace, name)
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request(
                    "continue key is not valid: incorrect encoded start resourceVersion (version meta.k8s.io/v1)"
                ) from None
            try:
                objects = self.store.list_at(req.rt.key, req.namespace, snapshot_rv)
            except Compacted:
                raise errors.expired(
                    "The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter, or use the continue token in "
                    "this response to retrieve the remainder of the results. Continuing with the provided "
                    "token results in an inconsistent list - objects that were created, modified, or deleted "
                    "between the time the first chunk was returned and now may show up in the list."
                ) from None
        elif rv_text and match == "Exact":
            snapshot_rv = self._parse_rv(rv_text)
            self._wait_for_rv(snapshot_rv)
            try:
                objects = self.store.list_at(req.rt.key, req.namespace, snapshot_rv)
            except Compacted as error:
                raise errors.expired(str(error)) from None
        else:
            if rv_text and rv_text != "0":
                self._wait_for_rv(self._parse_rv(rv_text))
            objects, snapshot_rv = self.store.objects(req.rt.key, req.namespace)
        # `objects` come in key order with unique keys, so `selected` is every match after the
        # continue key, in key order: what follows this page is exactly `selected[limit:]`.
        selected = [
            o for o in objects if matches(o) and (start_after is None or key_of(o) > start_after)
        ]
        meta: dict[str, Any] = {"resourceVersion": str(snapshot_rv)}
        if limit > 0 and len(selected) > limit:
            remaining = len(selected) - limit
            selected = selected[:limit]
            meta["continue"] = base64.urlsafe_b64encode(
                json.dumps({"rv": snapshot_rv, "start": "/".join(key_of(selected[-1]))}).encode()
            ).decode()
            meta["remainingItemCount"] = remaining
        shown = [self.present(req.rt, req.version, o) for o in selected]
        if tables.wants_table(req.accept):
            return Result(200, _table(req, shown, meta))
        if not req.rt.custom:
            shown = [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in shown]
        return Result(
            200,
            {
                "kind": req.rt.list_kind,
                "apiVersion": req.rt.api_version(req.version),
                "metadata": meta,
                "items": shown,
            },
        )

    # create ------------------------------------------------------------------------

    def _check_type_meta(self, req: Request, body: Any) -> Obj:
        rt = req.rt
        if not isinstance(body, dict):
            raise errors.bad_request(
                f'{rt.kind} in version "{req.version}" cannot be handled as a {rt.kind}: json: cannot unmarshal into Go value of type struct'
            )
        want_api = rt.api_version(req.version)
        obj: Obj = copy.deepcopy(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if rt.custom and (not api_version or not kind):
            raise errors.bad_request(f"Object 'Kind' is missing in '{json.dumps(obj)[:200]}'")
        if (api_version and api_version != want_api) or (kind and kind != rt.kind):
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API version ({want_api})"
                if api_version != want_api
                else f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
            )
        obj["apiVersion"] = rt.api_version(rt.storage_version) if rt.custom else want_api
        obj["kind"] = rt.kind
        meta = obj.get("metadata")
        if meta is None:
            obj["metadata"] = {}
        kinds.type_check(rt, req.version, obj)
        if rt.key == "coordination.k8s.io/leases":
            kinds.normalize_lease(rt, req.version, obj)
        return obj

    def _field_validation(self, req: Request, pruned: list[str]) -> dict[str, str]:
        if not pruned:
            return {}
        mode = req.query.get("fieldValidation", "Warn")
        if mode == "Strict":
            fields = ", ".join(f'unknown field "{p}"' for p in pruned)
            raise errors.bad_request(f"strict decoding error: {fields}")
        if mode == "Ignore":
            return {}
        return {"Warning": ", ".join(f'299 - "unknown field \\"{p}\\""' for p in pruned)}

    def _prune(self, req: Request, obj: Obj) -> list[str]:
        if req.rt.custom:
            return kinds.prune_custom(req.rt, req.version, obj)
        return kinds.prune_builtin(req.rt, obj)

    def _namespace_exists(self, namespace: str) -> None:
        if self.store.get(NAMESPACE_KEY, "", namespace) is None:
            raise errors.not_found("namespaces", "", namespace)

    def create(self, req: Request) -> Result:
        rt = req.rt
        obj = self._check_type_meta(req, _decode(req.body, req.content_type, req.rt.custom))
        meta = obj["metadata"]
        if rt.namespaced:
            body_ns = meta.get("namespace")
            if body_ns and body_ns != req.namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            meta["namespace"] = req.namespace
        else:
            meta.pop("namespace", None)
        if meta.get("resourceVersion"):
            raise ApiError(500, "", "resourceVersion should not be set on objects to be created")
        if not meta.get("name") and meta.get("generateName"):
            suffix = "".join(self._rng.choice("bcdfghjklmnpqrstvwxz2456789") for _ in range(5))
            meta["name"] = f"{meta['generateName']}{suffix}"
        name = meta.get("name", "")
        kinds.raise_if(kinds.name_causes(rt, name), rt, name)
        headers = self._prepare_new(req, obj)
        with self.store.lock:
            if rt.namespaced:
                self._namespace_exists(req.namespace)
            if self.store.get(rt.key, meta.get("namespace", ""), name) is not None:
                raise errors.already_exists(rt.plural, rt.group, name)
            if self._dry_run(req):
                return Result(201, self.present(rt, req.version, obj), headers)
            stored = self._commit_new(rt, obj)
        result = self._single(req, stored, 201)
        result.headers.update(headers)
        return result

    def _dry_run(self, req: Request) -> bool:
        return req.query.get("dryRun", "") == "All"

    def _prepare_new(self, req: Request, obj: Obj) -> dict[str, str]:
        """Strategy PrepareForCreate + validation; returns warning headers."""
        rt = req.rt
        meta = obj["metadata"]
        for server_owned in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "selfLink",
            "managedFields",
        ):
            meta.pop(server_owned, None)
        if rt.has_status and not rt.keep_status_on_create:
            obj.pop("status", None)
        headers: dict[str, str] = {}
        headers = self._field_validation(req, self._prune(req, obj))
        if rt.custom or rt.key == CRD_KEY:
            meta["generation"] = 1
        self._kind_defaults(rt, obj, None)
        self._validate(req, obj)
        return headers

    def _kind_defaults(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if rt.key == "/services":
            others = [o for o in self.store.objects(rt.key)[0] if key_of(o) != key_of(obj)]
            kinds.default_service(obj, old, self.allocator, others)
        elif rt.key == "/pods":
            status = obj.setdefault("status", {})
            status.setdefault("phase", "Pending")
        elif rt.key == NAMESPACE_KEY:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj.setdefault("status", {}).setdefault("phase", "Active")
            obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = obj[
                "metadata"
            ]["name"]

    def _validate(self, req: Request, obj: Obj) -> None:
        rt = req.rt
        name = obj["metadata"].get("name", "")
        causes = kinds.metadata_causes(obj)
        if rt.key == "coordination.k8s.io/leases":
            causes += kinds.lease_causes(obj)
        elif rt.key == "/services":
            causes += kinds.service_causes(obj)
        elif rt.key == CRD_KEY:
            causes += kinds.crd_causes(obj)
        elif rt.custom:
            causes += kinds.custom_causes(rt, req.version, obj)
        if causes:
            raise errors.invalid(rt.kind, rt.group, name, causes)

    def _commit_new(self, rt: ResourceType, obj: Obj) -> Obj:
        meta = obj["metadata"]
        meta["uid"] = _uuid()
        meta["creationTimestamp"] = _now()
        if rt.key == CRD_KEY:
            kinds.accept_crd(obj, meta["creationTimestamp"])
        change = self.store.commit(rt.key, "ADDED", obj, None)
        if rt.key == CRD_KEY:
            self.registry.add(from_crd(obj))
        return change.obj

    # update / patch ------------------------------------------------------------------

    def update(self, req: Request) -> Result:
        body = self._check_type_meta(req, _decode(req.body, req.content_type, req.rt.custom))
        return self._write(req, lambda old: body)

    def patch(self, req: Request) -> Result:
        rt = req.rt
        media = req.content_type.split(";")[0].strip().lower()
        accepted = (
            [JSON_PATCH, MERGE_PATCH, APPLY_PATCH]
            if rt.custom
            else [JSON_PATCH, MERGE_PATCH, STRATEGIC_PATCH, APPLY_PATCH]
        )
        if media not in accepted:
            raise errors.unsupported_media_type(accepted)
        if req.query.get("force") and media != APPLY_PATCH:
            raise _options_invalid(
                "PatchOptions", "force", "Forbidden: may not be specified for non-apply patch"
            )
        if media == APPLY_PATCH:
            if not req.query.get("fieldManager"):
                raise _options_invalid(
                    "PatchOptions", "fieldManager", "Required value: is required for apply patch"
                )
            try:
                document = yaml.safe_load(req.body.decode() or "null")
            except yaml.YAMLError as error:
                raise errors.bad_request(f"error decoding YAML: {error}") from None
            if not isinstance(document, dict):
                raise errors.bad_request("error decoding patch: the apply patch must be an object")
        else:
            try:
                document = json.loads(req.body or b"null")
            except ValueError as error:
                raise errors.bad_request(f"error decoding patch: {error}") from None
            if media in (MERGE_PATCH, STRATEGIC_PATCH) and not isinstance(document, dict):
                raise errors.bad_request(
                    "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"
                )

        def apply(old: Obj | None) -> Any:
            if old is None:
                if media == APPLY_PATCH:
                    return document
                raise errors.not_found(rt.plural, rt.group, req.name)
            current = self.present(rt, req.version, old)
            if media == JSON_PATCH:
                return patch.json_patch(current, document)
            if media == STRATEGIC_PATCH:
                return patch.strategic_merge_patch(current, document, rt.merge_keys)
            return patch.merge_patch(current, document)

        def rebuild(old: Obj | None) -> Obj:
            return self._check_type_meta(req, apply(old))

        return self._write(req, rebuild, create_allowed=media == APPLY_PATCH)

    def _write(self, req: Request, build: Any, create_allowed: bool = False) -> Result:
        rt = req.rt
        with self.store.lock:
            old = self.store.get(rt.key, req.namespace, req.name)
            obj: Obj = build(old)
            meta = obj["metadata"]
            if not meta.get("name"):
                meta["name"] = req.name
            if meta["name"] != req.name:
                raise errors.bad_request(
                    f"the name of the object ({meta['name']}) does not match the name on the URL ({req.name})"
                )
            if rt.namespaced:
                if meta.get("namespace") and meta["namespace"] != req.namespace:
                    raise errors.bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request"
                    )
                meta["namespace"] = req.namespace
            else:
                meta.pop("namespace", None)
            if old is None:
                if req.subresource or not (rt.create_on_update or create_allowed):
                    raise errors.not_found(rt.plural, rt.group, req.name)
                if rt.namespaced:
                    self._namespace_exists(req.namespace)
                meta.pop("resourceVersion", None)
                kinds.raise_if(kinds.name_causes(rt, req.name), rt, req.name)
                headers = self._prepare_new(req, obj)
                if self._dry_run(req):
                    return Result(201, obj, headers)
                result = self._single(req, self._commit_new(rt, obj), 201)
                result.headers.update(headers)
                return result
            old_meta = old["metadata"]
            # A uid in the body is a precondition, checked like DeleteOptions' one.
            self._check_preconditions(rt, old, {"uid": meta.get("uid")})
            rv = meta.get("resourceVersion")
            if not rv:
                if not rt.unconditional_update:
                    raise errors.invalid(
                        rt.plural,
                        rt.group,
                        req.name,
                        [
                            Cause(
                                "FieldValueInvalid",
                                "metadata.resourceVersion",
                                "Invalid value: 0x0: must be specified for an update",
                            )
                        ],
                        label=qualified_resource(rt.group, rt.plural),
                    )
            elif rv != old_meta["resourceVersion"]:
                raise errors.stale(rt.plural, rt.group, req.name)
            obj, headers = self._prepare_update(req, obj, old)
            if _strip_rv(obj) == _strip_rv(old):
                result = self._single(req, old)
                result.headers.update(headers)
                return result
            if self._dry_run(req):
                return Result(200, obj, headers)
            if old_meta.get("deletionTimestamp") and not obj["metadata"].get("finalizers"):
                change = self.store.commit(rt.key, "DELETED", obj, old)
                self._after_delete(rt, change.obj)
            else:
                change = self.store.commit(rt.key, "MODIFIED", obj, old)
                if rt.key == CRD_KEY:
                    self.registry.add(from_crd(change.obj))
        result = self._single(req, change.obj)
        result.headers.update(headers)
        return result

    def _prepare_update(self, req: Request, obj: Obj, old: Obj) -> tuple[Obj, dict[str, str]]:
        """Strategy PrepareForUpdate: server-owned fields, status rules, generation, validation."""
        rt = req.rt
        old_meta = old["metadata"]
        headers: dict[str, str] = {}
        if req.subresource == "status" and rt.custom:
            new = copy.deepcopy(old)
            if "status" in obj:
                new["status"] = obj["status"]
            else:
                new.pop("status", None)
            new["metadata"]["resourceVersion"] = obj["metadata"].get(
                "resourceVersion", old_meta["resourceVersion"]
            )
            obj = new
        elif req.subresource == "status":
            if "spec" in old:
                obj["spec"] = copy.deepcopy(old["spec"])
            else:
                obj.pop("spec", None)
        elif rt.has_status:
            if "status" in old:
                obj["status"] = copy.deepcopy(old["status"])
            else:
                obj.pop("status", None)
        meta = obj["metadata"]
        for owned in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
        ):
            if owned in old_meta:
                meta[owned] = old_meta[owned]
            else:
                meta.pop(owned, None)
        meta.pop("managedFields", None)
        meta.pop("selfLink", None)
        headers = self._field_validation(req, self._prune(req, obj))
        self._kind_defaults(rt, obj, old)
        if rt.key == "/services" and obj.get("spec", {}).get("type") != "LoadBalancer":
            obj.setdefault("status", {})["loadBalancer"] = {}
        if rt.custom or rt.key == CRD_KEY:
            ignored = ("metadata", "status") if rt.has_status else ("metadata",)
            before = {k: v for k, v in old.items() if k not in ignored}
            after = {k: v for k, v in obj.items() if k not in ignored}
            if before != after:
                meta["generation"] = int(old_meta.get("generation", 1)) + 1
        if rt.key == CRD_KEY:
            obj["status"] = old.get("status", {})
            causes = kinds.crd_causes(obj)
            kinds.raise_if(causes, rt, meta["name"])
            kinds.accept_crd(obj, old_meta.get("creationTimestamp", _now()))
            obj["status"]["conditions"] = old.get("status", {}).get(
                "conditions", obj["status"]["conditions"]
            )
        else:
            self._validate(req, obj)
        return obj, headers

    # delete ---------------------------------------------------------------------------

    def _delete_options(self, req: Request) -> dict[str, Any]:
        options: dict[str, Any] = {}
        if req.body.strip():
            decoded = _decode(req.body)
            if isinstance(decoded, dict):
                options = decoded
        for key in ("gracePeriodSeconds", "propagationPolicy", "dryRun"):
            if key in req.query:
                options[key] = req.query[key]
        return options

    def delete(self, req: Request) -> Result:
        rt = req.rt
        options = self._delete_options(req)
        with self.store.lock:
            old = self.store.get(rt.key, req.namespace, req.name)
            if old is None:
                raise errors.not_found(rt.plural, rt.group, req.name)
            self._check_preconditions(rt, old, options.get("preconditions") or {})
            if options.get("dryRun") in ("All", ["All"]):
                return self._delete_answer(req, old)
            meta = old["metadata"]
            if meta.get("finalizers") or self._graceful_pod(rt, old, options):
                if meta.get("deletionTimestamp"):
                    return self._single(req, old)
                marked = _restamped(old)
                grace = (
                    0 if meta.get("finalizers") else int(options.get("gracePeriodSeconds") or 30)
                )
                marked["metadata"]["deletionTimestamp"] = _now()
                marked["metadata"]["deletionGracePeriodSeconds"] = grace
                change = self.store.commit(rt.key, "MODIFIED", marked, old)
                if not meta.get("finalizers"):
                    self._schedule_kubelet(rt, change.obj)
                return self._single(req, change.obj)
            last = _restamped(old)
            change = self.store.commit(rt.key, "DELETED", last, old)
            self._after_delete(rt, change.obj)
        return self._delete_answer(req, change.obj)

    def _graceful_pod(self, rt: ResourceType, pod: Obj, options: Mapping[str, Any]) -> bool:
        if rt.key != "/pods" or self.config.pod_termination_seconds <= 0:
            return False
        if str(options.get("gracePeriodSeconds", "")) == "0":
            return False
        return bool(pod.get("spec", {}).get("nodeName")) and pod.get("status", {}).get(
            "phase"
        ) not in ("Succeeded", "Failed")

    def _schedule_kubelet(self, rt: ResourceType, pod: Obj) -> None:
        def finish() -> None:
            with self.store.lock:
                current = self.store.get(
                    rt.key, pod["metadata"].get("namespace", ""), pod["metadata"]["name"]
                )
                if current is not None and current["metadata"].get("uid") == pod["metadata"]["uid"]:
                    self.store.commit(rt.key, "DELETED", _restamped(current), current)

        timer = threading.Timer(self.config.pod_termination_seconds, finish)
        timer.daemon = True
        timer.start()

    def _check_preconditions(self, rt: ResourceType, old: Obj, pre: Mapping[str, Any]) -> None:
        meta = old["metadata"]
        if pre.get("uid") and pre["uid"] != meta["uid"]:
            raise errors.conflict(
                rt.plural,
                rt.group,
                meta["name"],
                f"Precondition failed: UID in precondition: {pre['uid']}, UID in object meta: {meta['uid']}",
            )
        if pre.get("resourceVersion") and pre["resourceVersion"] != meta["resourceVersion"]:
            raise errors.conflict(
                rt.plural,
                rt.group,
                meta["name"],
                f"Precondition failed: ResourceVersion in precondition: {pre['resourceVersion']}, ResourceVersion in object meta: {meta['resourceVersion']}",
            )

    def _delete_answer(self, req: Request, obj: Obj) -> Result:
        rt = req.rt
        if rt.delete_returns_object:
            return self._single(req, obj)
        details: dict[str, Any] = {"name": obj["metadata"]["name"]}
        if rt.group:
            details["group"] = rt.group
        details["kind"] = rt.plural
        details["uid"] = obj["metadata"]["uid"]
        return Result(
            200,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": details,
            },
        )

    def _after_delete(self, rt: ResourceType, obj: Obj) -> None:
        """Cascades the real server runs in controllers: namespace contents, CRD instances."""
        if rt.key == NAMESPACE_KEY:
            ns = obj["metadata"]["name"]
            for key in self.store.resources():
                child = self.registry.by_key(key)
                if child is None or not child.namespaced:
                    continue
                for item in self.store.objects(key, ns)[0]:
                    self.store.commit(key, "DELETED", _restamped(item), item)
        elif rt.key == CRD_KEY:
            defined = from_crd(obj)
            for item in self.store.objects(defined.key)[0]:
                self.store.commit(defined.key, "DELETED", _restamped(item), item)
            self.registry.remove(defined.key)

    def delete_collection(self, req: Request) -> Result:
        matches = self._matcher(req)
        deleted = []
        with self.store.lock:
            for obj in self.store.objects(req.rt.key, req.namespace)[0]:
                if matches(obj):
                    change = self.store.commit(req.rt.key, "DELETED", _restamped(obj), obj)
                    self._after_delete(req.rt, change.obj)
                    deleted.append(self.present(req.rt, req.version, change.obj))
            rv = self.store.rv
        return Result(
            200,
            {
                "kind": req.rt.list_kind,
                "apiVersion": req.rt.api_version(req.version),
                "metadata": {"resourceVersion": str(rv)},
                "items": deleted,
            },
        )

    # watch --------------------------------------------------------------------------------

    def watch(self, req: Request) -> WatchStream:
        query = req.query
        matches = self._matcher(req)
        rv_text = query.get("resourceVersion", "")
        match = query.get("resourceVersionMatch", "")
        send_initial = query.get("sendInitialEvents", "") == "true"
        if "sendInitialEvents" in query and match != "NotOlderThan":
            raise _options_invalid(
                "ListOptions",
                "resourceVersionMatch",
                "Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            )
        if match and "sendInitialEvents" not in query:
            raise _options_invalid(
                "ListOptions",
                "resourceVersionMatch",
                "Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
            )
        bookmarks = query.get("allowWatchBookmarks", "") == "true"
        if "timeoutSeconds" in query:
            timeout = float(query["timeoutSeconds"])
        else:
            timeout = self._rng.uniform(
                self.config.watch_timeout_min, self.config.watch_timeout_max
            )
        initial: list[Obj] = []
        too_old: Compacted | None = None
        if not rv_text or rv_text == "0" or send_initial:
            if rv_text and rv_text != "0":
                self._wait_for_rv(self._parse_rv(rv_text))
            objects, start_rv = self.store.objects(req.rt.key, req.namespace)
            initial = (
                [o for o in objects if matches(o)]
                if (send_initial or not rv_text or rv_text == "0")
                else []
            )
        else:
            start_rv = self._parse_rv(rv_text)
            self._wait_for_rv(start_rv)
            if start_rv < self.store.compacted_rv:
                too_old = Compacted(start_rv, self.store.compacted_rv + 1)
        return WatchStream(
            api=self,
            req=req,
            matches=matches,
            start_rv=start_rv,
            initial=initial,
            send_initial_bookmark=send_initial and bookmarks,
            bookmarks=bookmarks,
            timeout=timeout,
            too_old=too_old,
        )


class WatchStream:
    """Yields encoded watch events (bytes) or None on idle ticks, until the watch ends."""

    def __init__(
        self,
        api: Api,
        req: Request,
        matches: Any,
        start_rv: int,
        initial: list[Obj],
        send_initial_bookmark: bool,
        bookmarks: bool,
        timeout: float,
        too_old: Compacted | None,
    ) -> None:
        self.api = api
        self.req = req
        self.matches = matches
        self.last_rv = start_rv
        self.initial = initial
        self.send_initial_bookmark = send_initial_bookmark
        self.bookmarks = bookmarks
        self.deadline = time.monotonic() + timeout
        self.timeout = timeout
        self.too_old = too_old
        self.as_table = tables.wants_table(req.accept)

    def _encode(self, event_type: str, obj: Obj) -> bytes:
        # One revision is one stored state, so (rv, type, apiVersion) names the exact bytes:
        # fan-out to many watchers encodes each event once.
        key = (
            obj["metadata"].get("resourceVersion", ""),
            event_type,
            self.req.version,
            self.req.rt.key,
        )
        cache = self.api.event_cache
        if not self.as_table and (cached := cache.get(key)) is not None:
            return cached
        encoded = self._encode_uncached(event_type, obj)
        if not self.as_table:
            with self.api.event_cache_lock:
                cache[key] = encoded
                while len(cache) > 4096:
                    cache.pop(next(iter(cache)), None)
        return encoded

    def _encode_uncached(self, event_type: str, obj: Obj) -> bytes:
        shown = self.api.present(self.req.rt, self.req.version, obj)
        if self.as_table and event_type not in ("ERROR", "BOOKMARK"):
            shown = _table(self.req, [shown], _rv_meta(obj))
        return _event_line(event_type, shown)

    def error_event(self, status: dict[str, Any]) -> bytes:
        return _event_line("ERROR", status)

    def _bookmark(self, annotate: bool = False) -> bytes:
        meta: dict[str, Any] = {"resourceVersion": str(self.last_rv)}
        if annotate:
            meta["annotations"] = {"k8s.io/initial-events-end": "true"}
        obj = {
            "kind": self.req.rt.kind,
            "apiVersion": self.req.rt.api_version(self.req.version),
            "metadata": meta,
        }
        return _event_line("BOOKMARK", obj)

    def _convert(self, change: Change) -> bytes | None:
        new_ok = change.type != "DELETED" and self.matches(change.obj)
        old_ok = change.prev is not None and self.matches(change.prev)
        if change.type == "DELETED":
            return self._encode("DELETED", change.obj) if old_ok else None
        if new_ok:
            return self._encode("MODIFIED" if old_ok else "ADDED", change.obj)
        if old_ok and change.prev is not None:
            gone = {
                **change.prev,
                "metadata": {**change.prev["metadata"], "resourceVersion": str(change.rv)},
            }
            return self._encode("DELETED", gone)
        return None

    def events(self) -> Generator[bytes | None, None, None]:
        config = self.api.config
        store = self.api.store
        if self.too_old is not None:
            yield self.error_event(errors.expired(str(self.too_old)).status())
            return
        for obj in self.initial:
            yield self._encode("ADDED", obj)
        if self.send_initial_bookmark:
            yield self._bookmark(annotate=True)
        period = config.bookmark_period
        next_bookmark = time.monotonic() + period if period > 0 else float("inf")
        final_bookmark_at = self.deadline - min(2.0, self.timeout / 2)
        final_bookmark_sent = False
        while not store.closed:
            now = time.monotonic()
            if now >= self.deadline:
                return
            try:
                with store.lock:
                    head = store.rv
                    changes = store.changes_after(self.last_rv, self.req.rt.key)
            except Compacted as too_old:
                yield self.error_event(errors.expired(str(too_old)).status())
                return
            for change in changes:
                encoded = self._convert(change)
                self.last_rv = change.rv
                if encoded is not None:
                    yield encoded
            self.last_rv = max(self.last_rv, head)
            now = time.monotonic()
            if self.bookmarks and (
                now >= next_bookmark or (not final_bookmark_sent and now >= final_bookmark_at)
            ):
                if now >= final_bookmark_at:
                    final_bookmark_sent = True
                next_bookmark = now + period if period > 0 else float("inf")
                yield self._bookmark()
            wait = min(config.watch_tick, max(0.0, self.deadline - now))
            if not store.wait_beyond(head, wait):
                yield None


def _table(req: Request, objects: list[Obj], list_meta: Mapping[str, Any]) -> dict[str, Any]:
    """The Table a get, list or watch answers when the client asks for one."""
    return tables.table(
        req.rt, req.version, objects, req.query.get("includeObject", "Metadata"), list_meta
    )


def _rv_meta(obj: Obj) -> dict[str, str]:
    """A one-object Table's list metadata: the object's resourceVersion."""
    return {"resourceVersion": obj["metadata"].get("resourceVersion", "")}


def _event_line(event_type: str, obj: Any) -> bytes:
    """One watch event as a line of compact JSON."""
    return json.dumps({"type": event_type, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _options_invalid(options_kind: str, field_path: str, detail: str) -> ApiError:
    """422 for a bad ListOptions/PatchOptions parameter; the reason follows the detail's wording."""
    if detail.startswith("Required"):
        reason = "FieldValueRequired"
    elif "Forbidden" in detail:
        reason = "FieldValueForbidden"
    else:
        reason = "FieldValueInvalid"
    return errors.invalid(
        options_kind,
        "meta.k8s.io",
        "",
        [Cause(reason, field_path, detail)],
        label=f"{options_kind}.meta.k8s.io",
    )


def _uuid() -> str:
    return str(uuid.uuid4())
