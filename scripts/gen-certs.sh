#!/usr/bin/env bash
# Makes the mutual-TLS material of the State Transfer Protocol with the openssl CLI: a CA (reused if
# OUT_DIR already has one) and, per node, a key and a certificate whose CN is the node name, with
# DNS:<name>, IP:127.0.0.1 and the node's addresses as subject alternative names.
#   scripts/gen-certs.sh OUT_DIR NODE[=IP[,IP...]] ...
# e.g. scripts/gen-certs.sh /var/lib/nomad-chain/tls node-a=198.18.0.2 node-b=198.18.0.3
# For local mode and tests; production nodes should get certificates from the operator's own PKI.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR NODE[=IP[,IP...]] ..." >&2; exit 2; }
command -v openssl >/dev/null || { echo "gen-certs: openssl not found" >&2; exit 1; }
out=$1
shift
mkdir -p "$out"
chmod 700 "$out"
umask 077
days=${GEN_CERTS_DAYS:-825}

if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/ca.key"
  openssl req -x509 -new -key "$out/ca.key" -sha256 -days "$days" -subj "/CN=${GEN_CERTS_CA_NAME:-nomad-chain transfer CA}" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out "$out/ca.crt" 2>/dev/null
fi

for spec in "$@"; do
  name=${spec%%=*}
  ips=""
  [ "$spec" != "$name" ] && ips=${spec#*=}
  [[ "$name" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || { echo "gen-certs: bad node name: $name" >&2; exit 2; }
  san="DNS:$name,IP:127.0.0.1"
  IFS=',' read -r -a extra <<<"$ips"
  for ip in "${extra[@]}"; do [ -n "$ip" ] && san="$san,IP:$ip"; done
  ext=$(mktemp)
  trap 'rm -f "$ext"' EXIT
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=%s\n' "$san" >"$ext"
  openssl ecparam -name prime256v1 -genkey -noout -out "$out/$name.key.ec"
  # PKCS#8, the form every TLS stack reads.
  openssl pkcs8 -topk8 -nocrypt -in "$out/$name.key.ec" -out "$out/$name.key"
  rm -f "$out/$name.key.ec"
  openssl req -new -key "$out/$name.key" -subj "/CN=$name" -out "$out/$name.csr"
  openssl x509 -req -in "$out/$name.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial -sha256 -days "$days" \
    -extfile "$ext" -out "$out/$name.crt" 2>/dev/null
  rm -f "$out/$name.csr" "$ext"
done
