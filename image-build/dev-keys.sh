#!/usr/bin/env bash
# Makes development keys for update bundles: a CA (dev-ca.*) that the image trusts and a
# signing certificate (dev-signing.*) issued by it. For tests and a workbench only: whoever
# holds this directory can sign updates every image built with it will install. For the
# real keys see image-build/README.md, "Signing keys".
#
#   image-build/dev-keys.sh DIR
set -euo pipefail
dir="$1"
mkdir -p "$dir"
chmod 700 "$dir"
cd "$dir"
umask 077
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout dev-ca.key.pem -out dev-ca.cert.pem -days 3650 \
    -subj "/O=Photo PACS development/CN=Photo PACS development update CA" \
    -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
    -keyout dev-signing.key.pem -out dev-signing.csr.pem \
    -subj "/O=Photo PACS development/CN=Photo PACS development bundle signer" 2>/dev/null
printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n' > dev-signing.ext
openssl x509 -req -in dev-signing.csr.pem -CA dev-ca.cert.pem -CAkey dev-ca.key.pem \
    -CAcreateserial -days 1825 -extfile dev-signing.ext -out dev-signing.cert.pem 2>/dev/null
rm -f dev-signing.csr.pem dev-signing.ext dev-ca.cert.srl
chmod 644 dev-ca.cert.pem dev-signing.cert.pem
echo "development update keys in $dir: dev-ca.cert.pem (trusted by the image), dev-signing.{cert,key}.pem (signs bundles)"
