#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Verifies, with PyJWT, tokens that RealtimeJWT's JWTSigner made (one per algorithm).

The tokens are signed with the keys of pyjwt-fixtures.json. To make a fresh set and check it:

    pip install pyjwt cryptography
    REALTIMEHUB_JWT_INTEROP_OUT=/tmp/swift-signed.json swift test --filter InteropTests/signsTokensForPyJWT
    python3 Tests/RealtimeJWTTests/Fixtures/verify_with_pyjwt.py /tmp/swift-signed.json

Without an argument it checks the committed swift-signed.json (made the same way). Exits non-zero if any
token fails to verify or decodes to other claims than the ones our signer was given.
"""

import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "swift-signed.json")
    with open(os.path.join(HERE, "pyjwt-fixtures.json")) as f:
        fixtures = json.load(f)
    with open(path) as f:
        signed = json.load(f)

    passed = failed = 0
    for entry in signed["tokens"]:
        alg, key_name, token = entry["alg"], entry["key"], entry["token"]
        material = fixtures["keys"][key_name]
        if key_name == "hmac":
            key = bytes.fromhex(material["secret_hex"])
        else:
            key = serialization.load_pem_public_key(material["public_pem"].encode())
        try:
            header = jwt.get_unverified_header(token)
            claims = jwt.decode(
                token, key, algorithms=[alg], audience="realtime-hub", issuer="https://auth.example.com"
            )
            assert header["alg"] == alg, "header alg %r" % header["alg"]
            assert claims == entry["claims"], "claims differ: %r" % claims
            passed += 1
            print("ok    %-6s kid=%s" % (alg, header.get("kid")))
        except Exception as error:  # report every failure, then fail
            failed += 1
            print("FAIL  %-6s %s: %s" % (alg, type(error).__name__, error))
    print("PyJWT %s verified tokens from %s" % (jwt.__version__, signed.get("generator", path)))
    print("%d passed, %d failed" % (passed, failed))
    return 1 if failed or not passed else 0


if __name__ == "__main__":
    sys.exit(main())
