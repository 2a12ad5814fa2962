#!/bin/sh
# Makes the example certificates config/examples/full.yaml names when MOAT_CERT_DIR is not set:
# self-signed ECDSA P-256 and RSA 2048 pairs for example.com. Their private keys are public (they
# are in the repository): they exist so the example passes `moat -t` as shipped. Never serve them.
set -eu
cd "$(dirname "$0")"
subj="/CN=moat example certificate - never serve it"
san="subjectAltName=DNS:example.com,DNS:*.example.com,DNS:localhost"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ec.key -out ec.pem \
    -days 36500 -subj "$subj" -addext "$san" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -keyout rsa.key -out rsa.pem \
    -days 36500 -subj "$subj" -addext "$san" 2>/dev/null
