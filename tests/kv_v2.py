"""OpenBao's KV v2 secrets engine as the two stand-ins need it (the demo's
tests/upstream_standin.py and the integration tests' KvUpstream): writes
store a new version, reads return the latest one (or ?version=N), a delete
soft-deletes the latest version; every answer has OpenBao's shape, so a real
client (the bao CLI, node-vault, hvac) takes it as OpenBao's.

    POST|PUT /v1/secret/data/NAME  {"data": {...}, "options": {"cas": N}}
        -> 200 {"data": {"version": N, "created_time": ...}, ...}
    GET      /v1/secret/data/NAME[?version=N]
        -> 200 {"data": {"data": {...}, "metadata": {...}}, ...}, 404 when none
    DELETE   /v1/secret/data/NAME  -> 204

Also the HTTP plumbing both need: the request body (Content-Length or
chunked, capped) and one write for a whole answer.
"""
import json
import threading
import time
import uuid
from urllib.parse import parse_qs, urlsplit

PREFIX = "/v1/secret/data/"
MAX_BODY = 32 << 20  # OpenBao's default max_request_size


class BodyError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


def read_body(headers, rfile, limit=MAX_BODY):
    """A request's body, from Content-Length or chunked transfer coding;
    BodyError(413) beyond `limit`, BodyError(400) when malformed."""
    if "chunked" in headers.get("Transfer-Encoding", "").lower():
        out = bytearray()
        for _ in range(limit + 1):  # a chunk carries at least one byte
            line = rfile.readline(1024)
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise BodyError(400, "malformed chunk size")
            if size == 0:
                for _ in range(100):  # trailers, then the empty line
                    if rfile.readline(8192) in (b"\r\n", b"\n", b""):
                        return bytes(out)
                raise BodyError(400, "too many trailers")
            if len(out) + size > limit:
                raise BodyError(413, "http: request body too large")
            out += rfile.read(size)
            rfile.readline(1024)
        raise BodyError(400, "malformed chunked body")
    try:
        n = int(headers.get("Content-Length") or 0)
    except ValueError:
        raise BodyError(400, "malformed Content-Length")
    if n < 0:
        raise BodyError(400, "malformed Content-Length")
    if n > limit:
        raise BodyError(413, "http: request body too large")
    return rfile.read(n) if n else b""


def whole_answer(code, reason, body=b"", ctype="application/json", close=False):
    """Status line, headers and body as one buffer, for one write: written
    apart, the body waits on Nagle until the peer's delayed ACK (~40 ms on
    Linux) on every keep-alive request after the first few."""
    head = f"HTTP/1.1 {code} {reason}\r\n"
    if body or code not in (204, 304):
        head += f"Content-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
    head += "Cache-Control: no-store\r\n"
    if close:
        head += "Connection: close\r\n"
    return head.encode() + b"\r\n" + body


def _now():
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000000Z", time.gmtime())


def envelope(data):
    """OpenBao's response envelope around `data`."""
    return {"request_id": str(uuid.uuid4()), "lease_id": "", "renewable": False,
            "lease_duration": 0, "data": data, "wrap_info": None, "warnings": None,
            "auth": None}


class KvStore:
    """Secrets by name, each a list of versions (1-based), thread-safe."""

    def __init__(self):
        self.lock = threading.Lock()
        self.versions = {}  # name -> [{"data": dict, "metadata": dict}]
        self.writes = 0

    @staticmethod
    def name_of(path):
        """NAME of /v1/secret/data/NAME[?...], or None for another path."""
        p = urlsplit(path).path
        if not p.startswith(PREFIX) or len(p) == len(PREFIX):
            return None
        return p[len(PREFIX):]

    def seed(self, name, data):
        with self.lock:
            self._add(name, data)

    def _add(self, name, data):
        vs = self.versions.setdefault(name, [])
        meta = {"created_time": _now(), "custom_metadata": None, "deletion_time": "",
                "destroyed": False, "version": len(vs) + 1}
        vs.append({"data": data, "metadata": meta})
        return meta

    def write(self, name, body):
        """(status, answer object) for a POST or PUT of `body` (bytes)."""
        try:
            req = json.loads(body or b"null")
        except ValueError:
            return 400, {"errors": ["failed to parse JSON input"]}
        if not isinstance(req, dict) or not isinstance(req.get("data"), dict):
            return 400, {"errors": ["no data provided"]}
        cas = (req.get("options") or {}).get("cas") if isinstance(req.get("options"), dict) \
            else None
        with self.lock:
            current = len(self.versions.get(name, []))
            if cas is not None and cas != current:
                return 400, {"errors": ["check-and-set parameter did not match the current "
                                        "version"]}
            meta = dict(self._add(name, req["data"]))
            self.writes += 1
        return 200, envelope(meta)

    def has(self, name):
        with self.lock:
            return name in self.versions

    def read(self, path):
        """(status, answer object) for a GET; None when NAME was never written."""
        name = self.name_of(path)
        q = parse_qs(urlsplit(path).query)
        with self.lock:
            vs = self.versions.get(name)
            if not vs:
                return None
            try:
                n = int(q.get("version", ["0"])[0]) or len(vs)
            except ValueError:
                return 400, {"errors": ["invalid version"]}
            if not 1 <= n <= len(vs):
                return 404, {"errors": []}
            v = vs[n - 1]
            deleted = bool(v["metadata"]["deletion_time"])
            # A deleted version reads as 404 with its metadata, as in OpenBao
            # (its data is kept: OpenBao's undelete would bring it back).
            body = envelope({"data": None if deleted else v["data"],
                             "metadata": dict(v["metadata"])})
        return (404 if deleted else 200), body

    def delete(self, name):
        """Soft-deletes the latest version (204), as OpenBao's DELETE does."""
        with self.lock:
            vs = self.versions.get(name)
            if vs and not vs[-1]["metadata"]["deletion_time"]:
                vs[-1]["metadata"]["deletion_time"] = _now()
        return 204, None
