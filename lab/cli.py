"""`l2lab`: the embedded lab's command line.

``l2lab up`` builds a LAN of network namespaces with nodes running the real agent and datapath, a
client and the API server (lab/lab.py; docs/lab.md); the other commands look into it, disturb it
and take it down. ``l2lab apiserver`` runs the in-memory Kubernetes API server alone (for kubectl,
the agent, or a manual session).

Every lab command takes the lab's name from ``--name`` or ``L2LAB_NAME`` (default ``l2lab``), so
tests can run their own lab beside a user's.
"""

from __future__ import annotations

import signal
import ssl
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from lab.kubeapi.server import KubeApiServer, ServerOptions
from lab.state import DEFAULT_NAME, check_name

_selected = {"name": DEFAULT_NAME}

app = typer.Typer(help="The l2announcer lab.", no_args_is_help=True, add_completion=False)


@app.callback()
def _root(
    name: Annotated[
        str,
        typer.Option(
            "--name", envvar="L2LAB_NAME", help="The lab's name (prefix of its namespaces)."
        ),
    ] = DEFAULT_NAME,
) -> None:
    """The l2announcer lab."""
    try:
        _selected["name"] = check_name(name)
    except ValueError as e:
        raise typer.BadParameter(str(e), param_hint="--name") from None


def _split_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise typer.BadParameter(f"{listen!r}: expected host:port, e.g. 127.0.0.1:6443")
    return host.strip("[]") or "127.0.0.1", int(port)


def _tls_context(
    tls_dir: Path | None, cert: Path | None, key: Path | None
) -> ssl.SSLContext | None:
    if tls_dir is not None:
        cert, key = tls_dir / "tls.crt", tls_dir / "tls.key"
    if cert is None and key is None:
        return None
    if cert is None or key is None:
        raise typer.BadParameter("--tls-cert and --tls-key go together")
    from lab.kubeapi.tls import server_context  # deferred: cryptography is slow to import

    return server_context(cert, key)  # the same TLS settings as the lab's server


@app.command()
def apiserver(
    listen: Annotated[
        str, typer.Option(help="host:port to listen on (port 0 picks one)")
    ] = "127.0.0.1:6443",
    tls_dir: Annotated[
        Path | None, typer.Option(help="directory holding tls.crt and tls.key; serves HTTPS")
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="server certificate (PEM)")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="server private key (PEM)")] = None,
    state_file: Annotated[
        Path | None, typer.Option(help="snapshot file: objects survive restarts")
    ] = None,
) -> None:
    """Run the in-memory Kubernetes API server until SIGTERM or SIGINT."""
    host, port = _split_listen(listen)
    options = ServerOptions(
        host=host,
        port=port,
        ssl_context=_tls_context(tls_dir, tls_cert, tls_key),
        state_file=state_file,
    )
    server = KubeApiServer(options=options).start()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    typer.echo(server.url, err=False)
    try:
        stop.wait()
    finally:
        server.stop()


from lab import commands  # noqa: E402  (registers the lab commands on `app`)

commands.register(app, _selected)


def main() -> None:
    app()
