"""A lab node's stand-in for kube-proxy: ``python -m lab.responder <node>`` answers every HTTP
request on port 80 with the node's name and the address the request was sent to, so
``curl http://<VIP>/`` from the client shows which node the VIP's traffic reached.

Every node carries every VIP on ``lo`` (as kube-proxy's IPVS mode puts them on ``kube-ipvs0``),
so any node accepts the traffic; ARP alone decides which node it is sent to (docs/lab.md).
"""

from __future__ import annotations

import argparse
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def handler_for(node: str) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def do_GET(self) -> None:
            local = self.connection.getsockname()[0]
            body = f"{node}: hello from {local}\n".encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return None

    return Handler


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m lab.responder")
    parser.add_argument("node")
    parser.add_argument("--port", type=int, default=80)
    args = parser.parse_args(argv)
    server = ThreadingHTTPServer(("0.0.0.0", args.port), handler_for(args.node))
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
