"""One object that wires TLS, tokens, RBAC, fault injection and the request log into a Pipeline.

The server (server.py) takes a Pipeline and an SSLContext; the lab and the integration tests
want all the pieces at once plus credentials for clients. Typical use::

    security = Security.create(workdir / "pki")
    server = KubeApiServer(security.pipeline, ServerOptions(ssl_context=security.ssl_context()))
    security.enable_rbac(server.store)        # RBAC reads the server's live Role/Binding objects
    server.start()
    token = security.authenticator.add_service_account("kube-system", "node1")
    security.write_kubeconfig(workdir / "node1.kubeconfig", server.url, token, "node1")

Until :meth:`Security.enable_rbac` is called every authenticated user is allowed (the server's
"RBAC disabled" mode); authentication and TLS are on from the start.
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lab.kubeapi.auth import TokenAuthenticator
from lab.kubeapi.control import LabControl
from lab.kubeapi.faults import FaultInjector
from lab.kubeapi.kubeconfig import InClusterDir, write_incluster_dir, write_kubeconfig
from lab.kubeapi.pipeline import AllowAll, Pipeline
from lab.kubeapi.rbac import ObjectStore, RBACAuthorizer, StoreRBACObjects
from lab.kubeapi.requestlog import DEFAULT_CAPACITY, MemoryRequestLog
from lab.kubeapi.tls import TLSFiles, generate_tls_files, server_ssl_context

if TYPE_CHECKING:
    from lab.kubeapi.server import KubeApiServer


@dataclass
class Security:
    tls: TLSFiles
    authenticator: TokenAuthenticator
    faults: FaultInjector
    request_log: MemoryRequestLog
    pipeline: Pipeline
    control: LabControl
    admin_token: str

    @classmethod
    def create(
        cls,
        pki_dir: Path,
        extra_sans: Iterable[str] = (),
        seed: int = 0,
        log_capacity: int = DEFAULT_CAPACITY,
        admin_token: str | None = None,
    ) -> Security:
        """Generate the CA and serving certificate into `pki_dir` and an admin token."""
        tls = generate_tls_files(pki_dir, extra_sans)
        authenticator = TokenAuthenticator()
        faults = FaultInjector(seed=seed)
        request_log = MemoryRequestLog(log_capacity)
        pipeline = Pipeline(
            authenticator=authenticator,
            authorizer=AllowAll(),
            faults=faults,
            request_log=request_log,
        )
        return cls(
            tls=tls,
            authenticator=authenticator,
            faults=faults,
            request_log=request_log,
            pipeline=pipeline,
            control=LabControl(authenticator, faults, request_log),
            admin_token=authenticator.add_admin(token=admin_token),
        )

    def ssl_context(self) -> ssl.SSLContext:
        return server_ssl_context(self.tls)

    def server(self, **options: Any) -> KubeApiServer:
        """A server behind this security, not yet started: TLS, bearer tokens, the /_lab/ control
        surface and RBAC from its own store; ``options`` are further ServerOptions fields."""
        from lab.kubeapi.server import KubeApiServer, ServerOptions

        server = KubeApiServer(
            self.pipeline,
            ServerOptions(ssl_context=self.ssl_context(), control=self.control, **options),
        )
        self.enable_rbac(server.store)
        return server

    def enable_rbac(self, store: ObjectStore) -> RBACAuthorizer:
        """Authorize with RBAC from `store`'s Roles and bindings from the next request on."""
        authorizer = RBACAuthorizer(StoreRBACObjects(store))
        self.pipeline.authorizer = authorizer
        return authorizer

    def disable_rbac(self) -> None:
        self.pipeline.authorizer = AllowAll()

    def user_of(self, token: str) -> str:
        """The user name a token authenticates as: what fault rules and log queries match on."""
        user = self.authenticator.user_for_token(token)
        if user is None:
            raise KeyError("unknown token")
        return user.name

    @property
    def ca_pem(self) -> bytes:
        return self.tls.ca.read_bytes()

    def write_kubeconfig(
        self, path: Path, server: str, token: str, user: str, namespace: str | None = None
    ) -> Path:
        return write_kubeconfig(path, server, self.ca_pem, token, user, namespace=namespace)

    def write_admin_kubeconfig(self, path: Path, server: str) -> Path:
        return self.write_kubeconfig(path, server, self.admin_token, "admin")

    def write_service_account(
        self, directory: Path, server: str, namespace: str, name: str
    ) -> InClusterDir:
        """A new token for ServiceAccount namespace/name, written as an in-cluster directory."""
        token = self.authenticator.add_service_account(namespace, name)
        return write_incluster_dir(directory, server, self.ca_pem, token, namespace)
