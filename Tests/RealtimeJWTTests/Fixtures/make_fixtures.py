#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Makes pyjwt-fixtures.json: keys and tokens for every JWS algorithm, made by another implementation
(PyJWT with the `cryptography` package), which RealtimeJWTTests verifies with our verifier.

    pip install pyjwt cryptography
    python3 Tests/RealtimeJWTTests/Fixtures/make_fixtures.py   # rewrites pyjwt-fixtures.json beside this file

Keys are fresh on every run (these are test keys: never use them for anything else). Tokens expire in 2100,
so the committed fixtures stay valid; the tests also verify them at a fixed time.
"""

import json
import os
import secrets
import sys

import cryptography
import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, HMACAlgorithm, OKPAlgorithm, RSAAlgorithm

ISSUED_AT = 1_767_225_600  # 2026-01-01T00:00:00Z
EXPIRES_AT = 4_102_444_800  # 2100-01-01T00:00:00Z


def pem_private(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key, fmt=serialization.PublicFormat.SubjectPublicKeyInfo):
    return key.public_key().public_bytes(serialization.Encoding.PEM, fmt).decode()


def main():
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_keys = {
        "P-256": ec.generate_private_key(ec.SECP256R1()),
        "P-384": ec.generate_private_key(ec.SECP384R1()),
        "P-521": ec.generate_private_key(ec.SECP521R1()),
    }
    ed_key = ed25519.Ed25519PrivateKey.generate()
    hmac_secret = secrets.token_bytes(64)

    keys = {
        "hmac": {
            "secret_hex": hmac_secret.hex(),
            "jwk": json.loads(HMACAlgorithm.to_jwk(hmac_secret)),
        },
        "rsa": {
            "private_pem": pem_private(rsa_key),
            "public_pem": pem_public(rsa_key),
            "public_pem_pkcs1": pem_public(rsa_key, serialization.PublicFormat.PKCS1),
            "private_pem_pkcs1": rsa_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "public_jwk": json.loads(RSAAlgorithm.to_jwk(rsa_key.public_key())),
            "private_jwk": json.loads(RSAAlgorithm.to_jwk(rsa_key)),
        },
        "ed25519": {
            "private_pem": pem_private(ed_key),
            "public_pem": pem_public(ed_key),
            "public_jwk": json.loads(OKPAlgorithm.to_jwk(ed_key.public_key())),
            "private_jwk": json.loads(OKPAlgorithm.to_jwk(ed_key)),
        },
    }
    for curve, key in ec_keys.items():
        keys["ec-" + curve] = {
            "private_pem": pem_private(key),
            "private_pem_sec1": key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.TraditionalOpenSSL,
                serialization.NoEncryption(),
            ).decode(),
            "public_pem": pem_public(key),
            "public_jwk": json.loads(ECAlgorithm.to_jwk(key.public_key())),
            "private_jwk": json.loads(ECAlgorithm.to_jwk(key)),
        }

    signing = {
        "HS256": ("hmac", hmac_secret), "HS384": ("hmac", hmac_secret), "HS512": ("hmac", hmac_secret),
        "RS256": ("rsa", rsa_key), "RS384": ("rsa", rsa_key), "RS512": ("rsa", rsa_key),
        "PS256": ("rsa", rsa_key), "PS384": ("rsa", rsa_key), "PS512": ("rsa", rsa_key),
        "ES256": ("ec-P-256", ec_keys["P-256"]), "ES384": ("ec-P-384", ec_keys["P-384"]),
        "ES512": ("ec-P-521", ec_keys["P-521"]),
        "EdDSA": ("ed25519", ed_key),
    }
    tokens = []
    for alg, (key_name, key) in signing.items():
        claims = {
            "sub": "user-" + alg.lower(),
            "sid": "session-" + alg.lower(),
            "iss": "https://auth.example.com",
            "aud": ["realtime-hub", "other-service"],
            "iat": ISSUED_AT,
            "nbf": ISSUED_AT,
            "exp": EXPIRES_AT,
            "typ": "access",
            "roles": ["user", "admin"] if alg.startswith("ES") else ["user"],
            "scope": "events:read realtime:admin" if alg.startswith("PS") else "events:read",
            "jti": secrets.token_hex(8),
        }
        kid = key_name + "-" + alg.lower()
        token = jwt.encode(claims, key, algorithm=alg, headers={"kid": kid})
        # Check what we write with PyJWT itself before committing it.
        public = key if isinstance(key, bytes) else key.public_key()
        jwt.decode(token, public, algorithms=[alg], audience="realtime-hub", issuer="https://auth.example.com")
        tokens.append({"alg": alg, "key": key_name, "kid": kid, "token": token, "claims": claims})

    document = {
        "generator": "PyJWT %s, cryptography %s, Python %s" % (
            jwt.__version__, cryptography.__version__, sys.version.split()[0]
        ),
        "issuer": "https://auth.example.com",
        "audience": "realtime-hub",
        "keys": keys,
        "tokens": tokens,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pyjwt-fixtures.json")
    with open(path, "w") as out:
        json.dump(document, out, indent=2, sort_keys=True)
        out.write("\n")
    print("wrote %d tokens to %s" % (len(tokens), path))


if __name__ == "__main__":
    main()
