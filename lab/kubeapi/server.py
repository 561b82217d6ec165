"""The HTTP(S) front of the test API server: stdlib ThreadingHTTPServer, HTTP/1.1 keep-alive.

Every request goes through the pipeline (pipeline.py) in the order the real apiserver's
filters run: authenticate, fault injection, authorize, handler, request log. Resource requests
are parsed into a RequestInfo exactly like apiserver's RequestInfoFactory (so RBAC sees the same
verb/resource/namespace), then handed to api.Api; discovery and OpenAPI come from
discovery.py. Watches are streamed as chunked NDJSON, one flushed chunk per event, with the
fault injector consulted before every event and on every idle tick.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import unquote

from lab.kubeapi import discovery, errors, kinds
from lab.kubeapi.api import Api, ApiConfig, Request, Result, WatchStream
from lab.kubeapi.errors import ApiError
from lab.kubeapi.pipeline import FaultAction, Pipeline, RequestInfo, RequestRecord, UserInfo
from lab.kubeapi.resources import Registry
from lab.kubeapi.selectors import parse_field_selector
from lab.kubeapi.store import Store

_VERBS_BY_METHOD = {"POST": "create", "PUT": "update", "PATCH": "patch"}
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


class Headers(Mapping[str, str]):
    """Request headers as a case-insensitive read-only mapping (what pipeline implementations get)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._items = {k.lower(): v for k, v in pairs}
        self._names = {k.lower(): k for k, _ in pairs}

    def __getitem__(self, key: str) -> str:
        return self._items[key.lower()]

    def __iter__(self) -> Iterator[str]:
        return iter(self._names.values())

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key.lower() in self._items


def parse_query(raw: str) -> dict[str, tuple[str, ...]]:
    """Percent-decode a query string; unlike parse_qs, `+` stays a literal plus."""
    query: dict[str, list[str]] = {}
    for part in raw.split("&"):
        if not part:
            continue
        key, _, value = part.partition("=")
        query.setdefault(unquote(key), []).append(unquote(value))
    return {k: tuple(v) for k, v in query.items()}


def request_info(method: str, path: str, query: Mapping[str, tuple[str, ...]]) -> RequestInfo:
    """Classify a request as apiserver's RequestInfoFactory does."""
    parts = [unquote(p) for p in path.strip("/").split("/")] if path.strip("/") else []
    plain = RequestInfo(
        method=method, path=path, query=query, is_resource_request=False, verb=method.lower()
    )
    if not parts or parts[0] not in ("api", "apis"):
        return plain
    if parts[0] == "api":
        if len(parts) < 2:
            return plain
        group, version, rest = "", parts[1], parts[2:]
    else:
        if len(parts) < 3:
            return plain
        group, version, rest = parts[1], parts[2], parts[3:]
    if not rest:
        return plain
    verb = ""
    if rest[0] == "watch":
        verb, rest = "watch", rest[1:]
    namespace = ""
    if rest and rest[0] == "namespaces" and len(rest) > 1:
        namespace = rest[1]
        if len(rest) > 2 and rest[2] not in _NAMESPACE_SUBRESOURCES:
            rest = rest[2:]
    resource = rest[0] if rest else ""
    name = rest[1] if len(rest) > 1 else ""
    subresource = rest[2] if len(rest) > 2 else ""
    if not verb:
        if method in _VERBS_BY_METHOD:
            verb = _VERBS_BY_METHOD[method]
        elif method == "DELETE":
            verb = "delete" if name else "deletecollection"
        elif method in ("GET", "HEAD"):
            if query.get("watch", ("",))[0] in ("true", "1"):
                verb = "watch"
            elif name:
                verb = "get"
            else:
                verb = "list"
            if not name and verb in ("list", "watch"):
                name = _exact_name(query.get("fieldSelector", ("",))[0])
        else:
            verb = method.lower()
    return RequestInfo(
        method=method,
        path=path,
        query=query,
        is_resource_request=True,
        verb=verb,
        api_group=group,
        api_version=version,
        resource=resource,
        subresource=subresource,
        namespace=namespace,
        name=name,
    )


def _exact_name(field_selector: str) -> str:
    """The name a list or watch asks for with ``fieldSelector=metadata.name=<name>``, as the real
    RequestInfoFactory takes it: authorization then sees that name, so RBAC ``resourceNames``
    rules allow such a list or watch (``kubectl get lease x -w``). A selector that does not
    parse, or a name that is not a valid path segment, gives none."""
    try:
        selector = parse_field_selector(field_selector)
    except ApiError:
        return ""
    for requirement in selector:
        if requirement.path == "metadata.name" and requirement.equal:
            return requirement.value if kinds.is_path_segment(requirement.value) else ""
    return ""


def _status_for(code: int) -> dict[str, Any]:
    """A plausible Status body for a fault answer that came without one."""
    reasons = {
        500: ("InternalError", "Internal error occurred: injected"),
        503: ("ServiceUnavailable", "service unavailable"),
        504: ("Timeout", "Timeout: request did not complete within the allotted timeout"),
        429: ("TooManyRequests", "Too many requests, please try again later."),
    }
    reason, message = reasons.get(code, ("", "injected failure"))
    return ApiError(code, reason, message).status()


class ControlAnswer(Protocol):
    @property
    def status(self) -> int: ...

    @property
    def body(self) -> dict[str, Any]: ...


class ControlSurface(Protocol):
    """The lab's /_lab/ endpoints (control.LabControl): faults, tokens, request log over HTTP."""

    def handles(self, path: str) -> bool: ...

    def handle(
        self,
        user: UserInfo | None,
        method: str,
        path: str,
        query: Mapping[str, Sequence[str]] | None = None,
        body: bytes | dict[str, Any] | None = None,
    ) -> ControlAnswer: ...


@dataclass
class ServerOptions:
    host: str = "127.0.0.1"
    port: int = 0
    ssl_context: ssl.SSLContext | None = None
    state_file: Path | None = None
    save_interval: float = 1.0
    api: ApiConfig = field(default_factory=ApiConfig)
    # mounted at /_lab/; its requests skip fault injection, RBAC and the request log
    control: ControlSurface | None = None


class _Connection(Exception):
    """Abort the request: the connection was reset, refused or is gone."""


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _HTTPServer
    # per-request state for the request log
    _started: float = 0.0
    _logged: bool = False
    _user_name: str = ""
    _fault: str = ""
    _info: RequestInfo = RequestInfo(method="", path="")

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def handle_one_request(self) -> None:
        # A stopped server answers nothing more on a kept-alive connection: the client must see
        # the server gone (as when a real apiserver shuts down), not get answers from it.
        if self.server.stopping.is_set():
            self.close_connection = True
            return
        super().handle_one_request()

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def finish(self) -> None:
        with contextlib.suppress(OSError, ValueError):
            super().finish()

    # plumbing ---------------------------------------------------------------------

    def _send(
        self,
        status: int,
        body: bytes,
        content_type: str = "application/json",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self._log(status)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache, private")
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _send_json(self, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj, separators=(",", ":")).encode(), headers=headers)

    def _send_error(self, error: ApiError) -> None:
        headers = dict(error.headers)
        retry = (error.details or {}).get("retryAfterSeconds")
        if retry:
            headers.setdefault("Retry-After", str(retry))
        self._send_json(error.code, error.status(), headers)

    def _reset(self) -> None:
        """Close with a TCP RST: SO_LINGER 0 and close without shutdown."""
        self._log(0)
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            socket.socket.close(self.connection)
        except OSError:
            pass
        self.close_connection = True

    def _refuse(self) -> None:
        self._log(0)
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True

    def _client_gone(self, timeout: float) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], timeout)
            if not readable:
                return False
            return socket.socket.recv(self.connection, 1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _stall(self, action: FaultAction) -> bool:
        """Answer nothing until the client leaves, the server stops, `seconds` (if > 0) pass or
        the fault's `release` event is set. Returns True when the request should now run late
        (released with after_release "continue"); otherwise the connection has been reset."""
        started = time.monotonic()
        while not self.server.stopping.is_set():
            if self._client_gone(0.05):
                break
            if action.seconds > 0 and time.monotonic() - started >= action.seconds:
                break
            if action.release is not None and action.release.is_set():
                if action.after_release == "continue":
                    return True
                break
        self._reset()
        return False

    def _log(self, status: int) -> None:
        """Record the request once, before the answer leaves (so a client that has its answer
        can already find the request in the log)."""
        if self._logged:
            return
        self._logged = True
        self.server.pipeline.request_log.record(
            RequestRecord(
                time=self._started,
                user=self._user_name,
                info=self._info,
                status=status,
                duration=time.monotonic() - self._started,
                fault=self._fault,
            )
        )

    def _serve(self) -> None:
        self._started = time.monotonic()
        self._logged = False
        self._user_name = ""
        self._fault = ""
        raw_path, _, raw_query = self.path.partition("?")
        query = parse_query(raw_query)
        info = self._info = request_info(self.command, raw_path, query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        pipeline = self.server.pipeline
        headers = Headers(list(self.headers.items()))
        control = self.server.control
        if control is not None and control.handles(raw_path):
            self._logged = True  # control requests are not logged
            try:
                answer = control.handle(
                    pipeline.authenticator.authenticate(headers),
                    self.command,
                    raw_path,
                    query,
                    body,
                )
                self._send_json(answer.status, answer.body)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
            return
        try:
            user = pipeline.authenticator.authenticate(headers)
            if user is None:
                self._send_error(errors.unauthorized())
                return
            self._user_name = user.name
            action = pipeline.faults.before(user, info)
            if action is not None:
                self._fault = action.kind
                if action.kind == "delay":
                    time.sleep(action.seconds)
                elif action.kind == "respond":
                    if any(
                        k.lower() == "connection" and v.lower() == "close"
                        for k, v in action.headers.items()
                    ):
                        self.close_connection = True
                    self._send(action.status, action.body, action.content_type, action.headers)
                    return
                elif action.kind == "reset":
                    self._reset()
                    return
                elif action.kind == "refuse":
                    self._refuse()
                    return
                elif action.kind == "stall" and not self._stall(action):
                    return
            decision = pipeline.authorizer.authorize(user, info)
            if not decision.allowed:
                self._send_error(
                    errors.forbidden(decision.reason, info.resource, info.api_group, info.name)
                )
                return
            if action is not None and action.kind == "commit_then_fail":
                with contextlib.suppress(ApiError):
                    self._dispatch(info, body, user, discard=True)
                if action.status == 0:
                    self._reset()
                    return
                payload = action.body or json.dumps(_status_for(action.status)).encode()
                self._send(action.status, payload, action.content_type, action.headers)
                return
            if action is not None and action.kind == "commit_then_delay":
                self._dispatch(info, body, user, answer_after=action.seconds)
                return
            self._dispatch(info, body, user)
        except ApiError as error:
            self._send_error(error)
        except _Connection:
            self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as error:  # a bug in a handler must not kill the connection silently
            self._send_error(errors.internal(f"{type(error).__name__}: {error}"))
        finally:
            self._log(0)

    def _dispatch(
        self,
        info: RequestInfo,
        body: bytes,
        user: UserInfo,
        discard: bool = False,
        answer_after: float = 0.0,
    ) -> int:
        """Run the handler; send its answer unless `discard` (commit-then-fail), `answer_after`
        seconds late if asked (commit-then-delay; a watch starts streaming that late).
        Returns the status."""
        if not info.is_resource_request:
            return self._non_resource(info)
        server = self.server
        rt = server.registry.lookup(info.api_group, info.api_version, info.resource)
        if rt is None:
            raise errors.route_not_found()
        if rt.namespaced != bool(info.namespace) and info.resource != "namespaces":
            if (
                rt.namespaced
                and info.verb in ("list", "watch", "deletecollection")
                and not info.namespace
            ):
                pass  # all-namespaces list/watch
            else:
                raise errors.route_not_found()
        namespace = info.namespace if rt.namespaced else ""
        request = Request(
            verb=info.verb,
            rt=rt,
            version=info.api_version,
            namespace=namespace,
            # A list's name comes from its field selector, which does the filtering itself.
            name="" if info.verb == "list" else info.name,
            subresource=info.subresource,
            query={k: v[0] for k, v in info.query.items()},
            body=body,
            content_type=self.headers.get("Content-Type") or "",
            accept=self.headers.get("Accept") or "application/json",
        )
        try:
            result = server.api.handle(request)
        finally:
            # Late either way: an error answer too (it raises on to be sent as a Status).
            if answer_after > 0:
                time.sleep(answer_after)
        if discard:
            if isinstance(result, WatchStream):
                return 200
            return result.status
        if isinstance(result, WatchStream):
            self._stream(result, user, info)
            return 200
        self._send_result(result)
        return result.status

    def _send_result(self, result: Result) -> None:
        self._send_json(result.status, result.body, result.headers)

    def _non_resource(self, info: RequestInfo) -> int:
        registry = self.server.registry
        parts = [p for p in info.path.split("/") if p]
        answer: Any = None
        if info.method not in ("GET", "HEAD"):
            raise errors.method_not_allowed(info.method, "")
        if parts in (["healthz"], ["livez"], ["readyz"]):
            self._send(200, b"ok", "text/plain; charset=utf-8")
            return 200
        if parts == ["version"]:
            answer = discovery.VERSION_INFO
        elif parts == ["api"]:
            host, port = self.server.server_address[:2]
            answer = discovery.core_versions(f"{host!s}:{port}")
        elif parts == ["api", "v1"]:
            answer = discovery.resource_list(registry, "", "v1")
        elif parts == ["apis"]:
            answer = discovery.group_list(registry)
        elif len(parts) == 2 and parts[0] == "apis":
            answer = discovery.group(registry, parts[1])
        elif len(parts) == 3 and parts[0] == "apis":
            answer = discovery.resource_list(registry, parts[1], parts[2])
        elif parts == ["openapi", "v2"]:
            accept = self.headers.get("Accept") or ""
            if any(asked in accept for asked in discovery.OPENAPI_V2_PROTOBUF_ASKED):
                # The empty message: a valid Document with nothing set.
                self._send(200, b"", discovery.OPENAPI_V2_PROTOBUF)
                return 200
            answer = discovery.OPENAPI_V2_JSON
        elif parts == ["openapi", "v3"]:
            answer = discovery.openapi_v3_index(registry)
        elif len(parts) >= 3 and parts[:2] == ["openapi", "v3"]:
            rest = parts[2:]
            if rest[:1] == ["api"] and len(rest) == 2:
                answer = discovery.openapi_v3_document(registry, "", rest[1])
            elif rest[:1] == ["apis"] and len(rest) == 3:
                answer = discovery.openapi_v3_document(registry, rest[1], rest[2])
        if answer is None:
            raise errors.route_not_found()
        self._send_json(200, answer)
        return 200

    def _stream(self, watch: WatchStream, user: UserInfo, info: RequestInfo) -> None:
        """Chunked NDJSON until the watch ends; the request is logged with status 200 and, if a
        watch fault applied, fault "watch:<kind>"."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Cache-Control", "no-cache, private")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        faults = self.server.pipeline.faults
        stopping = self.server.stopping
        events = watch.events()
        try:
            while not stopping.is_set():
                fault = faults.watch_fault(user, info)
                if fault is not None:
                    self._fault = f"watch:{fault.kind}"
                    if fault.kind == "end":
                        break
                    if fault.kind == "reset":
                        self._log(200)
                        self._reset()
                        raise _Connection
                    if fault.kind == "expire":
                        status = errors.expired(
                            f"too old resource version: {watch.last_rv} ({watch.last_rv + 1})"
                        ).status()
                        self._chunk(watch.error_event(status))
                        break
                    if fault.kind == "stall":
                        if fault.release is None or not fault.release.is_set():
                            if self._client_gone(watch.api.config.watch_tick):
                                raise _Connection
                            continue
                        if fault.after_release == "reset":
                            self._log(200)
                            self._reset()
                            raise _Connection
                try:
                    item = next(events)
                except StopIteration:
                    break
                if item is not None:
                    self._chunk(item)
                elif self._client_gone(0):
                    raise _Connection
            self._log(200)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError) as error:
            self.close_connection = True
            raise _Connection from error
        finally:
            self._log(200)
            events.close()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        api: Api,
        registry: Registry,
        pipeline: Pipeline,
        context: ssl.SSLContext | None,
        control: ControlSurface | None = None,
    ) -> None:
        self.control = control
        self.api = api
        self.registry = registry
        self.pipeline = pipeline
        self.context = context
        self.stopping = threading.Event()
        # Open client connections, so that stopping can close them: a watch or a kept-alive
        # connection must not outlive the server.
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Runs in the connection's thread: TLS handshakes never block the accept loop."""
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.context is not None:
            # Wrapping detaches the plain socket; the handshake waits until the TLS socket is
            # tracked, so stopping drops a hanging handshake like any connection.
            try:
                request = self.context.wrap_socket(
                    request, server_side=True, do_handshake_on_connect=False
                )
            except (ssl.SSLError, OSError):
                return
        if not self._track(request):
            return
        try:
            if self.context is not None:
                try:
                    request.do_handshake()
                except (ssl.SSLError, OSError):
                    request.close()  # as wrap_socket does when its own handshake fails
                    return
            super().finish_request(request, client_address)
        finally:
            self._untrack(request)

    def _track(self, conn: socket.socket) -> bool:
        with self._connections_lock:
            if self.stopping.is_set():
                return False
            self._connections.add(conn)
            return True

    def _untrack(self, conn: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(conn)

    def drop_connections(self) -> None:
        """Shut every open connection down: blocked reads in their threads return, and clients
        see the end of their streams at once."""
        with self._connections_lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                socket.socket.shutdown(conn, socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        return None


class KubeApiServer:
    """An in-memory kube-apiserver on one listener. Construct, `start()`, use `url`, `stop()`."""

    def __init__(
        self, pipeline: Pipeline | None = None, options: ServerOptions | None = None
    ) -> None:
        self.options = options or ServerOptions()
        self.pipeline = pipeline or Pipeline()
        self.store = Store()
        if self.options.state_file is not None and self.options.state_file.exists():
            self.store.load(self.options.state_file)
        self.registry = Registry()
        self.api = Api(self.store, self.registry, self.options.api)
        self._http = _HTTPServer(
            (self.options.host, self.options.port),
            self.api,
            self.registry,
            self.pipeline,
            self.options.ssl_context,
            self.options.control,
        )
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        scheme = "https" if self.options.ssl_context is not None else "http"
        host = self.options.host
        if ":" in host:
            host = f"[{host}]"
        return f"{scheme}://{host}:{self.port}"

    def start(self) -> KubeApiServer:
        serve = threading.Thread(
            target=self._http.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="kubeapi-serve",
            daemon=True,
        )
        serve.start()
        self._threads.append(serve)
        if self.options.state_file is not None:
            saver = threading.Thread(target=self._save_loop, name="kubeapi-save", daemon=True)
            saver.start()
            self._threads.append(saver)
        return self

    def _save_loop(self) -> None:
        assert self.options.state_file is not None
        while not self._http.stopping.wait(self.options.save_interval):
            if self.store.dirty:
                self.store.save(self.options.state_file)

    def stop(self) -> None:
        self._http.stopping.set()
        self.store.close()
        self._http.shutdown()
        self._http.drop_connections()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self.options.state_file is not None:
            self.store.save(self.options.state_file)

    def __enter__(self) -> KubeApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
