#!/usr/bin/env bash
# make check-static: a static daemon (cloudtaser-broker, vault-bridge or
# cloudtaser-beacon) and its forwarding executable have no loader, the forwarding executable holds no
# OpenSSL code, and the two run as 65532 in an empty read-only root with only
# their certificates (daemon-in-empty-root.sh says what else each gets).
#   check-static.sh NAME BINARY FORWARD VERSION
set -euo pipefail
name="$1" binary="$2" forward="$3" version="$4"
here="$(cd "$(dirname "$0")" && pwd)"
for f in "$binary" "$forward"; do
  if ldd "$f" >/dev/null 2>&1; then
    echo "FAIL $f is dynamically linked:"; ldd "$f"; exit 1
  fi
  echo "ok   ldd $(basename "$f"): $(ldd "$f" 2>&1 | tr -d '\t')"
  if readelf -lW "$f" | grep -q 'INTERP'; then
    echo "FAIL $f asks for a program interpreter"; exit 1
  fi
  echo "ok   $(basename "$f"): no PT_INTERP program header"
done

# OpenSSL in a static binary: its API symbols (SSL_*, EVP_*, OPENSSL_*) in
# the symbol table, and their names among the strings (which a stripped
# binary keeps in its debug or dynamic data). The daemon itself has both, so
# the search can find them.
openssl_syms() { nm "$1" | grep -cE ' [TtDdBbRr] (SSL_|EVP_|OPENSSL_)' || true; }
openssl_strings() { strings -a "$1" | grep -cE '^(SSL|EVP)_[A-Za-z]' || true; }
b_syms="$(openssl_syms "$binary")" b_strings="$(openssl_strings "$binary")"
[ "$b_syms" -gt 100 ] && [ "$b_strings" -gt 100 ] ||
  { echo "FAIL the search finds no OpenSSL in $name itself ($b_syms symbols, $b_strings strings)"; exit 1; }
echo "ok   control: the static $name holds OpenSSL ($b_syms SSL_/EVP_/OPENSSL_ symbols, $b_strings SSL_/EVP_ strings)"
nsyms="$(nm "$forward" | wc -l)"
[ "$nsyms" -gt 100 ] || { echo "FAIL $forward has no symbol table to search ($nsyms symbols)"; exit 1; }
f_syms="$(openssl_syms "$forward")" f_strings="$(openssl_strings "$forward")"
if [ "$f_syms" != 0 ] || [ "$f_strings" != 0 ]; then
  echo "FAIL $forward holds OpenSSL: $f_syms symbols, $f_strings strings"
  nm "$forward" | grep -E ' [TtDdBbRr] (SSL_|EVP_|OPENSSL_)' | head -5
  exit 1
fi
echo "ok   the static forwarding executable holds no OpenSSL ($nsyms symbols, no SSL_/EVP_/OPENSSL_ symbol or SSL_/EVP_ string)"

bash "$here/daemon-in-empty-root.sh" "$name" "$version" --binary "$binary" --forward "$forward"
