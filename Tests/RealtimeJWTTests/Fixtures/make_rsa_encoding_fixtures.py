#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Makes rsa-encoding-fixtures.json: RS256/RS384/RS512 tokens signed with the RSA key of pyjwt-fixtures.json,
with the PKCS#1 v1.5 encoded message (RFC 8017 §9.2) built here by hand, so that some of them carry a
well-padded signature over the wrong encoding. Only "valid" ones must verify; every other one must be refused
as bad_signature.

    python3 Tests/RealtimeJWTTests/Fixtures/make_rsa_encoding_fixtures.py   # standard library only

The signatures are deterministic (PKCS#1 v1.5), so a re-run writes the same file.
"""

import base64
import hashlib
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ISSUED_AT = 1_767_225_600  # 2026-01-01T00:00:00Z
EXPIRES_AT = 4_102_444_800  # 2100-01-01T00:00:00Z

# DER DigestInfo prefixes, RFC 8017 §9.2 note 1.
PREFIX = {
    "sha256": bytes.fromhex("3031300d060960864801650304020105000420"),
    "sha384": bytes.fromhex("3041300d060960864801650304020205000430"),
    "sha512": bytes.fromhex("3051300d060960864801650304020305000440"),
}
# The same DigestInfo without the NULL parameters (an encoding OpenSSL's RSA_verify refuses too).
PREFIX_NO_NULL = {
    "sha256": bytes.fromhex("302f300b0609608648016503040201" "0420"),
}


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_int(text):
    return int.from_bytes(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)), "big")


def main():
    fixtures = json.load(open(os.path.join(HERE, "pyjwt-fixtures.json")))
    jwk = fixtures["keys"]["rsa"]["private_jwk"]
    n, d = b64url_int(jwk["n"]), b64url_int(jwk["d"])
    k = (n.bit_length() + 7) // 8

    def sign(t):
        """The signature whose type 1 encoding is well formed and carries `t`: 00 01 FF..FF 00 t."""
        em = b"\x00\x01" + b"\xff" * (k - len(t) - 3) + b"\x00" + t
        return pow(int.from_bytes(em, "big"), d, n).to_bytes(k, "big")

    claims = {"sub": "user-1", "iat": ISSUED_AT, "exp": EXPIRES_AT}
    tokens = []

    def add(name, alg, hash_name, encode, valid):
        header = {"alg": alg, "typ": "JWT"}
        signing_input = b64url(json.dumps(header, separators=(",", ":")).encode()) + "." + b64url(
            json.dumps(claims, separators=(",", ":")).encode()
        )
        digest = hashlib.new(hash_name, signing_input.encode()).digest()
        signature = sign(encode(digest, hash_name))
        tokens.append({"name": name, "alg": alg, "valid": valid, "token": signing_input + "." + b64url(signature)})

    for alg, hash_name in [("RS256", "sha256"), ("RS384", "sha384"), ("RS512", "sha512")]:
        add(f"{alg} DigestInfo", alg, hash_name, lambda digest, h: PREFIX[h] + digest, True)
        add(f"{alg} bare digest", alg, hash_name, lambda digest, h: digest, False)
    add("RS256 DigestInfo without NULL", "RS256", "sha256", lambda digest, h: PREFIX_NO_NULL[h] + digest, False)
    add("RS256 SHA-384 OID on a SHA-256 digest", "RS256", "sha256", lambda digest, h: PREFIX["sha384"][:-1]
        + b"\x20" + digest, False)
    add("RS256 DigestInfo of the SHA-384 digest", "RS256", "sha384", lambda digest, h: PREFIX[h] + digest, False)
    add("RS256 DigestInfo with a byte after it", "RS256", "sha256", lambda digest, h: PREFIX[h] + digest + b"\x00",
        False)
    add("RS256 truncated digest", "RS256", "sha256", lambda digest, h: PREFIX[h][:-1] + b"\x1f" + digest[:31], False)

    with open(os.path.join(HERE, "rsa-encoding-fixtures.json"), "w") as out:
        json.dump({"generator": "make_rsa_encoding_fixtures.py", "tokens": tokens}, out, indent=1)
        out.write("\n")


if __name__ == "__main__":
    main()
