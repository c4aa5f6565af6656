#!/usr/bin/env bash
# make check-certs: what an operator relies on from deploy/cloudtaser-certs.
# The mTLS handshakes run in a private network namespace (loopback only).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
certs="$here/../../deploy/cloudtaser-certs"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
passed=0 failed=0
ok() { passed=$((passed + 1)); echo "ok   $*"; }
bad() { failed=$((failed + 1)); echo "FAIL $*"; }
expect() { local what="$1"; shift; if "$@"; then ok "$what"; else bad "$what"; fi; }
quiet() { "$@" >/dev/null 2>&1; }
pin_of() { echo "sha256//$(openssl x509 -in "$1" -pubkey -noout | openssl pkey -pubin -outform DER | openssl dgst -sha256 -binary | base64)"; }
ext() { openssl x509 -in "$1" -noout -ext "$2" 2>/dev/null | tail -n +2 | tr -d ' ' | tr '\n' ' '; }

host=broker.prod.example.com
pki="$work/pki"
"$certs" --out "$pki" --external-host "$host" --namespace cloudtaser-system > "$work/stdout"

for d in broker bridge service; do
  for f in tls.crt tls.key ca.crt; do
    expect "$d/$f exists (the seed's file names)" test -s "$pki/$d/$f"
  done
  expect "$d/tls.key is mode 0600" test "$(stat -c %a "$pki/$d/tls.key")" = 600
  expect "$d/ca.crt is the CA" cmp -s "$pki/$d/ca.crt" "$pki/ca/ca.crt"
  expect "$d/tls.key belongs to $d/tls.crt" test "$(openssl pkey -in "$pki/$d/tls.key" -pubout)" = "$(openssl x509 -in "$pki/$d/tls.crt" -noout -pubkey)"
  expect "$d/tls.crt is not a CA" grep -q 'CA:FALSE' <<< "$(ext "$pki/$d/tls.crt" basicConstraints)"
done
expect "ca/ca.key is mode 0600" test "$(stat -c %a "$pki/ca/ca.key")" = 600
expect "the CA may sign leaves only (pathlen 0)" grep -q 'CA:TRUE,pathlen:0' <<< "$(ext "$pki/ca/ca.crt" basicConstraints)"
expect "broker certificate verifies as a TLS server" quiet openssl verify -purpose sslserver -CAfile "$pki/ca/ca.crt" "$pki/broker/tls.crt"
expect "bridge certificate verifies as a TLS client" quiet openssl verify -purpose sslclient -CAfile "$pki/ca/ca.crt" "$pki/bridge/tls.crt"
expect "bridge certificate is not usable as a server" bash -c "! openssl verify -purpose sslserver -CAfile '$pki/ca/ca.crt' '$pki/bridge/tls.crt' >/dev/null 2>&1"
expect "service certificate verifies as a TLS server" quiet openssl verify -purpose sslserver -CAfile "$pki/ca/ca.crt" "$pki/service/tls.crt"
expect "broker certificate names the external host" test "$(ext "$pki/broker/tls.crt" subjectAltName)" = "DNS:$host "
expect "service certificate names cloudtaser-broker.cloudtaser-system.svc" grep -q 'DNS:cloudtaser-broker.cloudtaser-system.svc,' <<< "$(ext "$pki/service/tls.crt" subjectAltName)"
expect "the broker host name check passes" quiet openssl x509 -in "$pki/broker/tls.crt" -noout -checkhost "$host"

for d in broker bridge service; do
  p="$(pin_of "$pki/$d/tls.crt")"
  expect "$d pin is printed as the contract computes it ($p)" grep -qF "$p" "$work/stdout"
  expect "$d pin is in pins.txt" grep -qxF "$(printf '%-7s %s' "$d" "$p")" "$pki/pins.txt"
done

expect "broker/bridge.pin holds the bridge's pin (the broker's default pin file)" grep -qxF "$(pin_of "$pki/bridge/tls.crt")" "$pki/broker/bridge.pin"
expect "bridge/broker.pin holds the broker's pin (the bridge's default pin file)" grep -qxF "$(pin_of "$pki/broker/tls.crt")" "$pki/bridge/broker.pin"
"$certs" --out "$work/ip" --external-host 192.0.2.7 >/dev/null
expect "an IP --external-host is written as an IP SAN" test "$(ext "$work/ip/broker/tls.crt" subjectAltName)" = "IPAddress:192.0.2.7 "

# Refusals and rotation.
s=0; "$certs" --out "$pki" --external-host "$host" >/dev/null 2>&1 || s=$?
expect "an existing output is not overwritten without --force (exit $s)" test "$s" = 1
s=0; "$certs" --out "$work/x" >/dev/null 2>&1 || s=$?
expect "a missing --external-host is a usage error (exit $s)" test "$s" = 2
s=0; "$certs" --out "$work/x" --external-host 'Bad_Host' >/dev/null 2>&1 || s=$?
expect "an invalid host name is a usage error (exit $s)" test "$s" = 2
"$certs" --out "$work/rotated" --external-host "$host" --ca "$pki/ca" >/dev/null
expect "--ca keeps the trust anchor" cmp -s "$work/rotated/ca/ca.crt" "$pki/ca/ca.crt"
expect "--ca issues new keys" bash -c "! cmp -s '$work/rotated/bridge/tls.key' '$pki/bridge/tls.key'"
expect "rotated bridge certificate verifies against the old CA" quiet openssl verify -CAfile "$pki/ca/ca.crt" "$work/rotated/bridge/tls.crt"
"$certs" --out "$work/other" --external-host "$host" >/dev/null

# renew: the same key by default (the pin stays), --new-key beside it.
rn="$work/renew"
"$certs" --out "$rn" --external-host "$host" >/dev/null
old_crt="$(cat "$rn/broker/tls.crt")" old_key="$(cat "$rn/broker/tls.key")"
old_pin="$(pin_of "$rn/broker/tls.crt")"
"$certs" renew --ca "$rn/ca" "$rn/broker" --days 30 > "$work/renew.out"
expect "renew reissues the certificate" test "$(cat "$rn/broker/tls.crt")" != "$old_crt"
expect "renew keeps the key" test "$(cat "$rn/broker/tls.key")" = "$old_key"
expect "renew keeps the SPKI pin" test "$(pin_of "$rn/broker/tls.crt")" = "$old_pin"
expect "renew says the pin stays, and which" grep -qF "the pin stays: $old_pin" "$work/renew.out"
expect "the renewed certificate verifies against the CA as a server" quiet openssl verify -purpose sslserver -CAfile "$rn/ca/ca.crt" "$rn/broker/tls.crt"
expect "the renewed certificate keeps the names" test "$(ext "$rn/broker/tls.crt" subjectAltName)" = "DNS:$host "
expect "the renewed certificate keeps the subject" test "$(openssl x509 -in "$rn/broker/tls.crt" -noout -subject)" = "$(openssl x509 -noout -subject <<< "$old_crt")"
expect "renew --days sets the new not-after" quiet openssl x509 -in "$rn/broker/tls.crt" -noout -checkend $((29 * 86400))
expect "... and not beyond it" bash -c "! openssl x509 -in '$rn/broker/tls.crt' -noout -checkend $((31 * 86400)) >/dev/null"
expect "the previous certificate is kept" test "$(cat "$rn/broker/tls.crt.prev")" = "$old_crt"
"$certs" renew --ca "$rn/ca" "$rn/service" > "$work/renew-svc.out"
expect "renew keeps the service certificate's names" grep -q 'DNS:cloudtaser-broker.cloudtaser-system.svc,' <<< "$(ext "$rn/service/tls.crt" subjectAltName)"

bridge_crt="$(cat "$rn/bridge/tls.crt")" bridge_pin="$(pin_of "$rn/bridge/tls.crt")"
"$certs" renew --ca "$rn/ca" "$rn/bridge" --new-key > "$work/newkey.out"
next_pin="$(pin_of "$rn/bridge/next.crt")"
expect "--new-key leaves the current certificate in place" test "$(cat "$rn/bridge/tls.crt")" = "$bridge_crt"
expect "--new-key writes the next key beside the current one" test -s "$rn/bridge/next.key"
expect "the next key is mode 0600" test "$(stat -c %a "$rn/bridge/next.key")" = 600
expect "next.key belongs to next.crt" test "$(openssl pkey -in "$rn/bridge/next.key" -pubout)" = "$(openssl x509 -in "$rn/bridge/next.crt" -noout -pubkey)"
expect "--new-key changes the pin" test "$next_pin" != "$bridge_pin"
expect "--new-key prints the next pin" grep -qF "next     $next_pin" "$work/newkey.out"
expect "--new-key prints step 1: publish the next pin on the peer" grep -q "1. Publish the next pin on the peer" "$work/newkey.out"
expect "--new-key prints step 2: then install the certificate" grep -q "2. Then install the new certificate and key" "$work/newkey.out"
expect "the next certificate verifies as a TLS client" quiet openssl verify -purpose sslclient -CAfile "$rn/ca/ca.crt" "$rn/bridge/next.crt"
expect "the broker's pin file now admits both keys" bash -c "grep -qxF '$bridge_pin' '$rn/broker/bridge.pin' && grep -qxF '$next_pin' '$rn/broker/bridge.pin'"
s=0; "$certs" renew --ca "$rn/ca" "$rn/bridge" --new-key >/dev/null 2>&1 || s=$?
expect "a second --new-key during a rollover is refused (exit $s)" test "$s" = 1
s=0; "$certs" renew "$rn/bridge" >/dev/null 2>&1 || s=$?
expect "renew without --ca is a usage error (exit $s)" test "$s" = 2
cp "$rn/service/tls.key" "$work/wrong.key"
mkdir -p "$work/mismatch" && cp "$rn/broker/tls.crt" "$work/mismatch/" && cp "$work/wrong.key" "$work/mismatch/tls.key"
s=0; "$certs" renew --ca "$rn/ca" "$work/mismatch" >/dev/null 2>&1 || s=$?
expect "renew refuses a key that is not the certificate's (exit $s)" test "$s" = 1

# A real TLS 1.3 mutual handshake with these files, on a private loopback.
cat > "$work/mtls.sh" <<'EOF'
set -euo pipefail
pki="$1" other="$2" host="$3"
ip link set lo up
openssl s_server -quiet -accept 127.0.0.1:9443 -tls1_3 -naccept 3 \
  -cert "$pki/broker/tls.crt" -key "$pki/broker/tls.key" -CAfile "$pki/broker/ca.crt" -Verify 1 -verify_return_error \
  </dev/null >/dev/null 2>"$pki/../server.log" &
srv=$!
for _ in $(seq 1 50); do ss -ltnH | grep -q '127.0.0.1:9443 ' && break; sleep 0.1; done
client() {
  timeout 10 openssl s_client -connect 127.0.0.1:9443 -servername "$host" -verify_hostname "$host" -verify_return_error \
    -tls1_3 -CAfile "$pki/bridge/ca.crt" "$@" </dev/null 2>&1
}
r1="$(client -cert "$pki/bridge/tls.crt" -key "$pki/bridge/tls.key" || true)"
r2="$(client || true)"
r3="$(client -cert "$other/bridge/tls.crt" -key "$other/bridge/tls.key" || true)"
kill "$srv" 2>/dev/null || true
wait "$srv" 2>/dev/null || true
grep -q 'Verification: OK' <<< "$r1" && grep -q 'TLSv1.3' <<< "$r1" && echo "MTLS_OK"
grep -q 'Verification: OK' <<< "$r1" || echo "$r1" | tail -5 >&2
# In TLS 1.3 the server judges the client certificate after the client has
# finished, so the refusal shows in the server's log, not in the client's.
grep -q 'peer did not return a certificate' "$pki/../server.log" && echo "NOCERT_REFUSED"
grep -q 'certificate verify failed' "$pki/../server.log" && echo "OTHERCA_REFUSED"
exit 0
EOF
res="$(unshare --net bash "$work/mtls.sh" "$pki" "$work/other" "$host")"
expect "bridge and broker certificates complete a TLS 1.3 mutual handshake for $host" grep -q MTLS_OK <<< "$res"
expect "the broker side refuses a client without a certificate" grep -q NOCERT_REFUSED <<< "$res"
expect "the broker side refuses a bridge certificate from another CA" grep -q OTHERCA_REFUSED <<< "$res"

# Beacon relay mode: the beacon's certificate and the pairing key.
bpki="$work/beacon-pki"
"$certs" --out "$bpki" --beacon-host beacon.example.com > "$work/beacon-stdout"
expect "beacon certificate verifies as a TLS server" quiet openssl verify -purpose sslserver -CAfile "$bpki/ca/ca.crt" "$bpki/beacon/tls.crt"
expect "beacon certificate names the beacon host" test "$(ext "$bpki/beacon/tls.crt" subjectAltName)" = "DNS:beacon.example.com "
expect "without --external-host the broker certificate names cloudtaser-broker" test "$(ext "$bpki/broker/tls.crt" subjectAltName)" = "DNS:cloudtaser-broker "
for k in pairing.key broker/pairing.key bridge/pairing.key; do
  expect "$k is mode 0600" test "$(stat -c %a "$bpki/$k")" = 600
  expect "$k is the one pairing key" cmp -s "$bpki/$k" "$bpki/pairing.key"
done
expect "the pairing key is 32 random bytes in base64" test "$(base64 -d "$bpki/pairing.key" | wc -c)" = 32
expect "two runs make two pairing keys" bash -c "'$certs' --out '$work/beacon-2' --beacon-host b.example >/dev/null && ! cmp -s '$work/beacon-2/pairing.key' '$bpki/pairing.key'"
expect "the beacon never gets the pairing key" test ! -e "$bpki/beacon/pairing.key"
expect "the output tells where the beacon pin and the key go" grep -q "never to the beacon" "$work/beacon-stdout"
expect "without either host it says what is missing" bash -c "'$certs' --out '$work/none' 2>&1 | grep -q -- '--beacon-host'"

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
