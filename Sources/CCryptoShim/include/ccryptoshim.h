#ifndef CCRYPTOSHIM_H
#define CCRYPTOSHIM_H

#include <openssl/types.h>
#include <stddef.h>

// Swift-friendly entry points over OpenSSL 3's libcrypto: `const void *` instead of `const unsigned char *`,
// functions instead of macros, one call instead of an OpenSSL call sequence. Only OpenSSL 3.0 APIs that are not
// deprecated are used. This header declares functions only; the bodies are in ccryptoshim.c. OpenSSL's types
// appear here as incomplete types (`openssl/types.h`), so Swift sees them as `OpaquePointer`.
//
// The only Swift importer is the RealtimeCrypto target (`internal import CCryptoShim`), which keeps every C type
// out of its API.
//
// Error-queue discipline: OpenSSL records why a call failed in a per-thread error queue, and an entry left there
// is found by whatever next asks that thread for an error (another OpenSSL user's `ERR_get_error`), which would
// then report a stale failure. Every function here whose OpenSSL calls failed clears the calling thread's queue
// with `ERR_clear_error()` before it returns, whether it then fails or carries on without the failed call
// (`ccryptoshim_pkey_kind`, and `ccryptoshim_pkey_has_private`, whose probes for absent private parts fail by
// design and which therefore always clears). A failure is reported by the return value only (NULL, 0 or -1, as
// each function documents); the queue's entries are not read, because no caller reports OpenSSL's reasons (a key
// or a signature is refused without naming the OpenSSL check that refused it). `ccryptoshim_error_queue_is_empty`
// lets tests check the discipline.

// MARK: - Errors and comparison

/// 1 when the calling thread's OpenSSL error queue is empty (tests check that every failure cleared it).
int ccryptoshim_error_queue_is_empty(void);

/// Constant-time comparison; 0 when equal.
int ccryptoshim_memcmp(const void *a, const void *b, size_t len);

// MARK: - Digests

/// Fetches a message digest by name ("SHA256", "SHA384", "SHA512"). Free with `ccryptoshim_md_free`.
EVP_MD *ccryptoshim_md_fetch(const char *name);

void ccryptoshim_md_free(EVP_MD *md);

// MARK: - HMAC

/// A keyed HMAC context to be duplicated per message (the key is hashed into the inner and outer pads once).
/// Returns NULL on failure. Free with `ccryptoshim_mac_ctx_free`.
EVP_MAC_CTX *ccryptoshim_hmac_ctx_new(const char *digest_name, const void *key, size_t key_len);

void ccryptoshim_mac_ctx_free(EVP_MAC_CTX *ctx);

/// HMAC of `data` with a copy of the keyed template `tmpl` (which is only read, so many threads may share it).
/// Writes at most `out_cap` bytes to `out` and the length to `out_len`. Returns 1 on success.
int ccryptoshim_hmac_compute(const EVP_MAC_CTX *tmpl, const void *data, size_t data_len, unsigned char *out,
                             size_t out_cap, size_t *out_len);

/// Verifies an HMAC in constant time. Returns 1 when `mac` (exactly `mac_len` bytes) is the HMAC of `data`.
int ccryptoshim_hmac_verify(const EVP_MAC_CTX *tmpl, const void *data, size_t data_len, const void *mac,
                            size_t mac_len);

// MARK: - Keys

#define CCRYPTOSHIM_KEY_OTHER 0
#define CCRYPTOSHIM_KEY_RSA 1
#define CCRYPTOSHIM_KEY_RSA_PSS 2
#define CCRYPTOSHIM_KEY_EC_P256 3
#define CCRYPTOSHIM_KEY_EC_P384 4
#define CCRYPTOSHIM_KEY_EC_P521 5
#define CCRYPTOSHIM_KEY_ED25519 6

void ccryptoshim_pkey_free(EVP_PKEY *pkey);

/// The kind of key (one of the `CCRYPTOSHIM_KEY_*` values).
int ccryptoshim_pkey_kind(const EVP_PKEY *pkey);

int ccryptoshim_pkey_bits(const EVP_PKEY *pkey);

/// The largest signature the key makes, in bytes.
int ccryptoshim_pkey_size(const EVP_PKEY *pkey);

/// Whether the key holds private material (it can sign).
int ccryptoshim_pkey_has_private(const EVP_PKEY *pkey);

/// Runs OpenSSL's consistency checks on a key (public part, and the pair when it is private). 1 when sound.
int ccryptoshim_pkey_check(EVP_PKEY *pkey, int is_private);

/// Reads the first PEM block of `pem` as a key. With `want_private` 0 it accepts `PUBLIC KEY`
/// (SubjectPublicKeyInfo), `RSA PUBLIC KEY` (PKCS#1) and `CERTIFICATE` (the certificate's key, unchecked);
/// with 1 it accepts `PRIVATE KEY` (PKCS#8), `RSA PRIVATE KEY` (PKCS#1) and `EC PRIVATE KEY` (SEC 1).
/// Encrypted PEM is refused. Returns NULL on failure.
EVP_PKEY *ccryptoshim_pem_read_key(const void *pem, int pem_len, int want_private);

/// An RSA key from big-endian components laid end to end in `buf`, `lens` giving each length, in JWK order:
/// n, e (count 2: public key) or n, e, d, p, q, dp, dq, qi (count 8: private key). NULL on failure.
EVP_PKEY *ccryptoshim_rsa_from_components(const void *buf, const size_t *lens, int count);

/// An EC key on `group` ("P-256", "P-384", "P-521") from the uncompressed point `pub` (0x04 || x || y) and,
/// for a private key, the big-endian scalar `priv` (`priv_len` 0 for a public key). NULL on failure.
EVP_PKEY *ccryptoshim_ec_from_components(const char *group, const void *pub, size_t pub_len, const void *priv,
                                         size_t priv_len);

/// An Ed25519 key from its 32-byte raw public (`is_private` 0) or private (`is_private` 1) form.
EVP_PKEY *ccryptoshim_ed25519_from_raw(const void *raw, size_t len, int is_private);

/// The raw public key of an Ed25519 key (32 bytes). Returns 1 on success.
int ccryptoshim_ed25519_public_raw(const EVP_PKEY *pkey, unsigned char *out, size_t *len);

// MARK: - Signatures

/// Verifies `sig` over `msg` with `pkey`. `md` is the digest (NULL for Ed25519); `pss` 1 selects RSASSA-PSS
/// with MGF1 on the same digest and a salt as long as the digest (RFC 7518 §3.5). ECDSA signatures must be DER.
/// Returns 1 when the signature verifies, 0 when it does not, -1 when OpenSSL failed to set up the check.
int ccryptoshim_verify(EVP_PKEY *pkey, const EVP_MD *md, int pss, const void *msg, size_t msg_len, const void *sig,
                       size_t sig_len);

/// A verification context for `pkey` with `md` (and PSS when `pss` is 1), initialised once so that each
/// verification only copies it (`ccryptoshim_verify_copy`) instead of fetching the algorithm again. NULL on
/// failure. Free with `ccryptoshim_md_ctx_free`.
EVP_MD_CTX *ccryptoshim_verify_ctx_new(EVP_PKEY *pkey, const EVP_MD *md, int pss);

void ccryptoshim_md_ctx_free(EVP_MD_CTX *ctx);

/// Verifies `sig` over `msg` with a copy of the template `tmpl` (only read, so threads may share it).
/// Returns 1 when the signature verifies, 0 when it does not, -1 when the copy failed.
int ccryptoshim_verify_copy(const EVP_MD_CTX *tmpl, const void *msg, size_t msg_len, const void *sig,
                            size_t sig_len);

/// A verifier of signatures over a digest, for RSA PKCS#1 v1.5, RSA-PSS and ECDSA (not Ed25519): an
/// `EVP_PKEY_verify` context and an `EVP_MD_CTX` for hashing, both reused across verifications by one thread at
/// a time (duplicate a template with `ccryptoshim_digest_verifier_dup`). Opaque; see ccryptoshim.c.
typedef struct ccryptoshim_digest_verifier ccryptoshim_digest_verifier;

void ccryptoshim_digest_verifier_free(ccryptoshim_digest_verifier *verifier);

/// A digest verifier for `pkey` with `md`. `scheme`: 0 RSA PKCS#1 v1.5 (`md` SHA-256, SHA-384 or SHA-512),
/// 1 RSA-PSS (MGF1 with `md`, salt as long as the digest, RFC 7518 §3.5), 2 ECDSA. NULL on failure.
/// Free with `ccryptoshim_digest_verifier_free`.
ccryptoshim_digest_verifier *ccryptoshim_digest_verifier_new(EVP_PKEY *pkey, const EVP_MD *md, int scheme);

/// A copy of `verifier` with its own contexts (it only reads `verifier`, so threads may share the template).
/// NULL on failure.
ccryptoshim_digest_verifier *ccryptoshim_digest_verifier_dup(const ccryptoshim_digest_verifier *verifier);

/// Hashes `msg` and verifies `sig` over the digest with `verifier` (used by one thread at a time). Returns 1
/// when the signature verifies, 0 when it does not, -1 when the digest could not be computed.
int ccryptoshim_digest_verifier_verify(ccryptoshim_digest_verifier *verifier, const void *msg, size_t msg_len,
                                       const void *sig, size_t sig_len);

/// Signs `msg` with the private key `pkey` (see `ccryptoshim_verify` for `md` and `pss`). Writes at most
/// `*sig_len` bytes to `sig` and sets `*sig_len` to the signature's length. ECDSA signatures come out as DER.
/// Returns 1 on success.
int ccryptoshim_sign(EVP_PKEY *pkey, const EVP_MD *md, int pss, const void *msg, size_t msg_len,
                     unsigned char *sig, size_t *sig_len);

/// Converts a JWS ECDSA signature (`raw`: r || s, each `raw_len / 2` bytes) to DER: SEQUENCE { INTEGER r,
/// INTEGER s } in the minimal form `i2d_ECDSA_SIG` writes, built directly rather than through two BIGNUMs.
/// Returns the DER length, or -1 on failure (including a DER form longer than `cap`).
int ccryptoshim_ecdsa_raw_to_der(const void *raw, size_t raw_len, unsigned char *out, size_t cap);

/// Converts a DER ECDSA signature to the JWS form r || s, each `half` bytes, into `out` (2 * `half` bytes).
/// Returns 1 on success.
int ccryptoshim_ecdsa_der_to_raw(const void *der, size_t der_len, unsigned char *out, int half);

#endif
