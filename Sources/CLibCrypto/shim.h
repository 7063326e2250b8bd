#ifndef CLIBCRYPTO_SHIM_H
#define CLIBCRYPTO_SHIM_H

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

// Swift-friendly entry points: `const void *` instead of `const unsigned char *`, and wrappers for macros.

/// One-shot HMAC-SHA256 of `data` under `key`. Writes 32 bytes to `out`. Returns 1 on success.
static inline int clibcrypto_hmac_sha256(const void *key, int key_len, const void *data, size_t data_len,
                                         unsigned char *out) {
    unsigned int out_len = 0;
    return HMAC(EVP_sha256(), key, key_len, (const unsigned char *)data, data_len, out, &out_len) != NULL &&
           out_len == 32;
}

/// Constant-time comparison; 0 when equal.
static inline int clibcrypto_memcmp(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len); }

#endif
