#!/usr/bin/env python3
"""A stand-in for OpenBao's KV v2 read path, for `make demo` when no `bao`
binary is on PATH: GET /v1/secret/data/<name> with a valid X-Vault-Token
answers the way OpenBao does, GET /v1/sys/health says "active" (200), as the
bridge's health probe expects; anything else is 403/404 like the real thing.

    upstream_standin.py --listen 127.0.0.1:8200 --token TOKEN --secret demo=password=hunter2

With --proxy-v2 every connection must start with a PROXY protocol v2 header
(as OpenBao's listener with proxy_protocol_behavior = "use_always"; parsed
strictly by tests/proxy_v2.py): one that does not is logged and closed, and
each request is logged with the address the header gave, as OpenBao's audit
log would show it (remote_address), for vault-bridge --proxy-protocol.
"""
import argparse
import json
import sys
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proxy_v2 import ProxyV2Error, read_proxy_v2  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:8200")
    ap.add_argument("--token", required=True)
    ap.add_argument("--secret", action="append", default=[],
                    help="NAME=KEY=VALUE (repeatable)")
    ap.add_argument("--proxy-v2", action="store_true",
                    help="require a PROXY protocol v2 header on every connection")
    args = ap.parse_args()
    secrets = {}
    for s in args.secret:
        name, key, value = s.split("=", 2)
        secrets.setdefault(name, {})[key] = value

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "openbao-standin"

        proxy = None  # what the connection's PROXY v2 header said

        def setup(self):
            if args.proxy_v2:
                # Before the buffered reader exists: the header is the
                # connection's first bytes, the request follows it.
                self.request.settimeout(10)
                try:
                    self.proxy = read_proxy_v2(self.request)
                except (ProxyV2Error, OSError) as e:
                    sys.stderr.write(f"upstream: connection refused: {e}\n")
                    self.refused = True
                self.request.settimeout(None)
            super().setup()

        refused = False

        def handle(self):
            if not self.refused:
                super().handle()

        def address_string(self):
            h = self.proxy
            if h and h["command"] == "PROXY":
                tlvs = " ".join(f"{k}={v}" for k, v in sorted(h["tlvs"].items()))
                return f"{h['src']}:{h['src_port']} (via PROXY: {tlvs})"
            return super().address_string()

        def log_message(self, fmt, *a):
            sys.stderr.write(f"upstream: {self.address_string()} " + (fmt % a) + "\n")

        def reply(self, code, obj):
            body = json.dumps(obj).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            # Unauthenticated, as in OpenBao: an active, unsealed node.
            if self.path.split("?", 1)[0] == "/v1/sys/health":
                return self.reply(200, {"initialized": True, "sealed": False, "standby": False})
            if self.headers.get("X-Vault-Token") != args.token:
                return self.reply(403, {"errors": ["permission denied"]})
            prefix = "/v1/secret/data/"
            name = self.path[len(prefix):] if self.path.startswith(prefix) else None
            if name not in secrets:
                return self.reply(404, {"errors": []})
            self.reply(200, {
                "request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
                "lease_duration": 0,
                "data": {"data": secrets[name],
                         "metadata": {"created_time": "2026-01-01T00:00:00Z",
                                      "custom_metadata": None, "deletion_time": "",
                                      "destroyed": False, "version": 1}},
                "wrap_info": None, "warnings": None, "auth": None})

    host, port = args.listen.rsplit(":", 1)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"upstream: OpenBao stand-in listening on {args.listen}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
