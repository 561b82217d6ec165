"""The three patch formats: JSON merge (RFC 7386), JSON patch (RFC 6902), strategic merge.

Strategic merge is the Kubernetes extension for built-in kinds: lists that carry a merge key
(Service `spec.ports` by `port`, conditions by `type`, ...) are merged element-wise instead of
replaced. The resource registry supplies the merge keys by dotted path (list items do not add a
path step). Errors come back as ApiError with the status the real server uses (400 decode,
422 failed operation).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from lab.kubeapi.errors import ApiError, bad_request

JSON = Any

# merge key per dotted path; the special value "" marks a primitive list merged as a set
MergeKeys = Mapping[str, str]


def merge_patch(target: JSON, patch: JSON) -> JSON:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise _patch_failed(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _patch_failed(message: str) -> ApiError:
    return ApiError(422, "Invalid", message)


def _index(container: list[Any], token: str, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return len(container)
    if not token.isdigit():
        raise _patch_failed(f"invalid array index {token!r}")
    idx = int(token)
    if idx > len(container) or (idx == len(container) and not allow_end):
        raise _patch_failed(f"array index out of bounds: {idx}")
    return idx


def _parent(doc: JSON, tokens: list[str], op: str, path: str) -> JSON:
    current = doc
    for token in tokens[:-1]:
        if isinstance(current, dict):
            if token not in current:
                raise _patch_failed(
                    f"jsonpatch {op} operation does not apply: doc is missing path: {path}"
                )
            current = current[token]
        elif isinstance(current, list):
            current = current[_index(current, token, False)]
        else:
            raise _patch_failed(
                f"jsonpatch {op} operation does not apply: doc is missing path: {path}"
            )
    return current


def _existing(doc: JSON, tokens: list[str], op: str, path: str) -> tuple[Any, Any]:
    """The container and key/index of the value `path` points at; 422 if there is none."""
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _patch_failed(
                f"jsonpatch {op} operation does not apply: doc is missing key: {path}"
            )
        return parent, last
    if isinstance(parent, list):
        return parent, _index(parent, last, False)
    raise _patch_failed(f"jsonpatch {op} operation does not apply: doc is missing path: {path}")


def _get(doc: JSON, path: str, op: str) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return doc
    parent, key = _existing(doc, tokens, op, path)
    return parent[key]


def _remove(doc: JSON, path: str, op: str) -> JSON:
    parent, key = _existing(doc, _pointer(path), op, path)
    return parent.pop(key)


def _add(doc: JSON, path: str, value: JSON, op: str, replace: bool = False) -> JSON:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(doc, tokens, op, path)
    last = tokens[-1]
    if isinstance(parent, dict):
        if replace and last not in parent:
            raise _patch_failed(
                f"jsonpatch {op} operation does not apply: doc is missing key: {path}"
            )
        parent[last] = value
    elif isinstance(parent, list):
        if replace:
            parent[_index(parent, last, False)] = value
        else:
            parent.insert(_index(parent, last, True), value)
    else:
        raise _patch_failed(f"jsonpatch {op} operation does not apply: doc is missing path: {path}")
    return doc


def json_patch(target: JSON, operations: JSON) -> JSON:
    if not isinstance(operations, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    if len(operations) > 10000:
        raise ApiError(
            413,
            "RequestEntityTooLarge",
            f"The allowed maximum operations in a JSON patch is 10000, got {len(operations)}",
        )
    doc = copy.deepcopy(target)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation:
            raise bad_request("the server rejected our request due to an error in our request")
        op = operation["op"]
        path = operation.get("path")
        if not isinstance(path, str):
            raise _patch_failed(f"jsonpatch {op} operation does not apply: missing path")
        if op == "add":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")), op)
        elif op == "remove":
            _remove(doc, path, op)
        elif op == "replace":
            doc = _add(doc, path, copy.deepcopy(operation.get("value")), op, replace=True)
        elif op in ("move", "copy"):
            source = operation.get("from")
            if not isinstance(source, str):
                raise _patch_failed(f"jsonpatch {op} operation does not apply: missing from")
            value = (
                _remove(doc, source, op) if op == "move" else copy.deepcopy(_get(doc, source, op))
            )
            doc = _add(doc, path, value, op)
        elif op == "test":
            if _get(doc, path, op) != operation.get("value"):
                raise _patch_failed(f"testing value {path} failed: test failed")
        else:
            raise bad_request(f"Unexpected kind: {op}")
    return doc


def strategic_merge_patch(target: JSON, patch: JSON, merge_keys: MergeKeys) -> JSON:
    if not isinstance(patch, dict):
        raise bad_request(
            "error decoding patch: json: cannot unmarshal array into Go value of type map[string]interface {}"
        )
    return _smp_map(target if isinstance(target, dict) else {}, patch, "", merge_keys)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _smp_map(
    target: dict[str, Any], patch: dict[str, Any], path: str, keys: MergeKeys
) -> dict[str, Any]:
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return {}
    result = dict(target)
    retain = patch.get("$retainKeys")
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            if isinstance(result.get(field), list) and isinstance(value, list):
                result[field] = [v for v in result[field] if v not in value]
            continue
        child_path = _join(path, key)
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            current = result.get(key)
            result[key] = _smp_map(
                current if isinstance(current, dict) else {}, value, child_path, keys
            )
        elif isinstance(value, list) and child_path in keys:
            current = result.get(key)
            result[key] = _smp_list(
                current if isinstance(current, list) else [], value, child_path, keys
            )
        else:
            result[key] = copy.deepcopy(value)
    if isinstance(retain, list):
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _smp_list(target: list[Any], patch: list[Any], path: str, keys: MergeKeys) -> list[Any]:
    merge_key = keys[path]
    if merge_key == "":
        result = list(target)
        for item in patch:
            if item not in result:
                result.append(item)
        return result
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    result = [copy.deepcopy(i) for i in target]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            result.append(copy.deepcopy(item))
            continue
        position = next(
            (
                n
                for n, have in enumerate(result)
                if isinstance(have, dict) and have.get(merge_key) == item[merge_key]
            ),
            -1,
        )
        if item.get("$patch") == "delete":
            if position >= 0:
                result.pop(position)
            continue
        if position >= 0:
            result[position] = _smp_map(result[position], item, path, keys)
        else:
            result.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
    return result
