#!/usr/bin/env python3
"""A stand-in for OpenBao's KV v2 engine, for `make demo` when no `bao`
binary is on PATH: with a valid X-Vault-Token, GET /v1/secret/data/<name>
reads, POST or PUT writes a new version ({"data": {...}}), DELETE
soft-deletes, each answered the way OpenBao does (tests/kv_v2.py), and
`Expect: 100-continue` gets its 100 Continue; GET /v1/sys/health says
"active" (200), as the bridge's health probe expects; anything else is
403/404 like the real thing. Each answer is one write on a TCP_NODELAY
socket, so keep-alive clients see no Nagle/delayed-ACK stall of ~40 ms.

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
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import kv_v2  # noqa: E402
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
    seeded = {}
    for s in args.secret:
        name, key, value = s.split("=", 2)
        seeded.setdefault(name, {})[key] = value
    store = kv_v2.KvStore()
    for name, data in seeded.items():
        store.seed(name, data)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "openbao-standin"
        disable_nagle_algorithm = True  # TCP_NODELAY (and reply() writes once)

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
            body = b"" if obj is None else json.dumps(obj).encode()
            self.wfile.write(kv_v2.whole_answer(code, self.responses.get(code, ("",))[0], body,
                                                close=self.close_connection))
            self.log_request(code, len(body))

        def authorised(self):
            if self.headers.get("X-Vault-Token") == args.token:
                return True
            self.reply(403, {"errors": ["permission denied"]})
            return False

        def do_GET(self):
            # Unauthenticated, as in OpenBao: an active, unsealed node.
            if self.path.split("?", 1)[0] == "/v1/sys/health":
                return self.reply(200, {"initialized": True, "sealed": False, "standby": False})
            if not self.authorised():
                return
            found = store.read(self.path) if store.name_of(self.path) else None
            self.reply(*(found or (404, {"errors": []})))

        def write(self):
            try:
                body = kv_v2.read_body(self.headers, self.rfile)
            except kv_v2.BodyError as e:
                self.close_connection = True
                return self.reply(e.code, {"errors": [str(e)]})
            if not self.authorised():
                return
            name = store.name_of(self.path)
            if name is None:
                return self.reply(404, {"errors": []})
            self.reply(*store.write(name, body))

        do_POST = write
        do_PUT = write

        def do_DELETE(self):
            if not self.authorised():
                return
            name = store.name_of(self.path)
            self.reply(*(store.delete(name) if name else (404, {"errors": []})))

    host, port = args.listen.rsplit(":", 1)
    ThreadingHTTPServer.daemon_threads = True
    srv = ThreadingHTTPServer((host, int(port)), Handler)
    print(f"upstream: OpenBao stand-in listening on {args.listen}", file=sys.stderr, flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
