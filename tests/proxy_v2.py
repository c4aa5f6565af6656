"""A strict reader of the PROXY protocol v2 header (the HAProxy specification,
section 2.2), written here for the tests and the OpenBao stand-in: it accepts
exactly what the spec allows and says why it refuses anything else.

    hdr = read_proxy_v2(sock)   # -> dict, or raises ProxyV2Error
"""
import socket
import struct

SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
TLV_NAMES = {0x01: "alpn", 0x02: "authority", 0x03: "crc32c", 0x04: "noop", 0x05: "unique_id",
             0x20: "ssl", 0x30: "netns", 0xE0: "cluster"}


class ProxyV2Error(Exception):
    pass


def _read_exact(sock, n):
    data = b""
    while len(data) < n:
        b = sock.recv(n - len(data))
        if not b:
            raise ProxyV2Error(f"connection ended after {len(data)} of {n} header bytes")
        data += b
    return data


def parse_tlvs(b):
    tlvs = {}
    pos = 0
    while pos < len(b):
        if len(b) - pos < 3:
            raise ProxyV2Error("truncated TLV header")
        t, n = b[pos], struct.unpack(">H", b[pos + 1:pos + 3])[0]
        if pos + 3 + n > len(b):
            raise ProxyV2Error(f"TLV 0x{t:02x} runs past the header")
        name = TLV_NAMES.get(t, f"0x{t:02x}")
        if name in tlvs:
            raise ProxyV2Error(f"TLV {name} repeated")
        tlvs[name] = b[pos + 3:pos + 3 + n].decode("ascii")
        pos += 3 + n
    return tlvs


def read_proxy_v2(sock):
    """Reads one PROXY v2 header from the front of `sock` (nothing after it)."""
    head = _read_exact(sock, 16)
    if head[:12] != SIGNATURE:
        raise ProxyV2Error(f"no PROXY v2 signature: {head[:12]!r}")
    ver, cmd = head[12] >> 4, head[12] & 0x0F
    if ver != 2:
        raise ProxyV2Error(f"version {ver}, not 2")
    fam, length = head[13], struct.unpack(">H", head[14:16])[0]
    body = _read_exact(sock, length)
    if cmd == 0x0:
        # LOCAL: the spec lets a sender add addresses, which the receiver
        # ignores; ours says it sends none.
        if fam != 0x00 or length != 0:
            raise ProxyV2Error(f"LOCAL with family 0x{fam:02x} and {length} bytes")
        return {"command": "LOCAL"}
    if cmd != 0x1:
        raise ProxyV2Error(f"command {cmd} is neither LOCAL nor PROXY")
    if fam == 0x11:
        af, alen = socket.AF_INET, 4
    elif fam == 0x21:
        af, alen = socket.AF_INET6, 16
    else:
        raise ProxyV2Error(f"family/protocol 0x{fam:02x} is neither TCP4 nor TCP6")
    if length < 2 * alen + 4:
        raise ProxyV2Error(f"{length} bytes cannot hold two addresses")
    src = socket.inet_ntop(af, body[:alen])
    dst = socket.inet_ntop(af, body[alen:2 * alen])
    sport, dport = struct.unpack(">HH", body[2 * alen:2 * alen + 4])
    return {"command": "PROXY", "family": "TCP4" if af == socket.AF_INET else "TCP6",
            "src": src, "src_port": sport, "dst": dst, "dst_port": dport,
            "tlvs": parse_tlvs(body[2 * alen + 4:])}
