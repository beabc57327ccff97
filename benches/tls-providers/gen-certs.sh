#!/usr/bin/env bash
# Makes the test PKI in certs/: a CA (ECDSA P-256), an ECDSA P-256 and an RSA-2048 server
# certificate for "localhost", and an ECDSA P-256 client certificate. Needs only `openssl`.
set -euo pipefail
cd "$(dirname "$0")/certs"
days=3650
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out ca.key
openssl req -x509 -new -key ca.key -sha256 -days $days -subj "/CN=ws2api bench CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" -out ca.pem
leaf() { # name keyfile cn eku san
  openssl req -new -key "$2" -subj "/CN=$3" -out "$1.csr"
  printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=%s\n%s\n' "$4" "$5" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days $days -sha256 -extfile "$1.ext" -out "$1.pem"
  rm -f "$1.csr" "$1.ext"
}
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out server-ecdsa.key
leaf server-ecdsa server-ecdsa.key localhost serverAuth "subjectAltName=DNS:localhost"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out server-rsa.key
leaf server-rsa server-rsa.key localhost serverAuth "subjectAltName=DNS:localhost"
openssl ecparam -name prime256v1 -genkey -noout | openssl pkcs8 -topk8 -nocrypt -out client.key
leaf client client.key "ws2api bench client" clientAuth "subjectAltName=DNS:client"
rm -f ca.srl
ls -l
