#!/usr/bin/env bash
# Regenerates the TLS test fixtures in test/fixtures/tls/ (certificates valid ~27 years).
# Run with: bash scripts/gen-test-certs.sh   (needs openssl)
#
#   ca.pem / ca.key                the test CA: signs the server and client certificates
#   a.pem / a.key                  EC P-256; a.test, localhost, 127.0.0.1, ::1
#   b.pem / b.key                  RSA 2048; b.test
#   a-encrypted.key                a.key as encrypted PKCS#8 (AES-256-CBC), passphrase "secret"
#   client.pem / client.key        a client certificate the CA signed (mTLS)
#   untrusted-client.pem / .key    a client certificate from another CA
#   other-ca.pem                   that other CA
set -euo pipefail
cd "$(dirname "$0")/../test/fixtures/tls"
days=10000
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

ca() { # name subject
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$1.key" -out "$1.pem" \
    -days $days -subj "$2" -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
leaf() { # name keyalg subject ext ca
  if [ "$2" = rsa ]; then
    openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$1.key" 2>/dev/null
  else
    openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1.key" 2>/dev/null
  fi
  openssl req -new -key "$1.key" -subj "$3" -out "$tmp/$1.csr"
  printf '%s\n' "$4" > "$tmp/$1.ext"
  openssl x509 -req -in "$tmp/$1.csr" -CA "$5.pem" -CAkey "$5.key" -CAcreateserial -days $days \
    -extfile "$tmp/$1.ext" -out "$1.pem" 2>/dev/null
}

ca ca "/O=fetch-rs tests/CN=fetch-rs test CA"
ca other-ca "/O=somebody else/CN=untrusted CA"
server_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth'
leaf a ec "/O=fetch-rs tests/CN=a.test" "$server_ext
subjectAltName=DNS:a.test,DNS:localhost,IP:127.0.0.1,IP:::1" ca
leaf b rsa "/O=fetch-rs tests/CN=b.test" "$server_ext
subjectAltName=DNS:b.test" ca
client_ext='basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=clientAuth'
leaf client ec "/O=fetch-rs tests/CN=test client" "$client_ext" ca
leaf untrusted-client ec "/O=somebody else/CN=untrusted client" "$client_ext" other-ca
openssl pkcs8 -topk8 -v2 aes-256-cbc -in a.key -passout pass:secret -out a-encrypted.key
rm -f ca.srl other-ca.srl other-ca.key
echo "wrote $(pwd)"
