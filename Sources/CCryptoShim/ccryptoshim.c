// The bodies of the functions ccryptoshim.h declares (see there for each one's contract and for the error-queue
// discipline every one of them keeps).

#include "ccryptoshim.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <string.h>

int ccryptoshim_error_queue_is_empty(void) { return ERR_peek_error() == 0; }

int ccryptoshim_memcmp(const void *a, const void *b, size_t len) { return CRYPTO_memcmp(a, b, len); }

EVP_MD *ccryptoshim_md_fetch(const char *name) {
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    if (md == NULL) ERR_clear_error();
    return md;
}

void ccryptoshim_md_free(EVP_MD *md) { EVP_MD_free(md); }

EVP_MAC_CTX *ccryptoshim_hmac_ctx_new(const char *digest_name, const void *key, size_t key_len) {
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    if (mac == NULL) {
        ERR_clear_error();
        return NULL;
    }
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
    EVP_MAC_free(mac); // the context keeps its own reference
    if (ctx == NULL) {
        ERR_clear_error();
        return NULL;
    }
    OSSL_PARAM params[2];
    params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)digest_name, 0);
    params[1] = OSSL_PARAM_construct_end();
    if (EVP_MAC_init(ctx, (const unsigned char *)key, key_len, params) != 1) {
        EVP_MAC_CTX_free(ctx);
        ERR_clear_error();
        return NULL;
    }
    return ctx;
}

void ccryptoshim_mac_ctx_free(EVP_MAC_CTX *ctx) { EVP_MAC_CTX_free(ctx); }

int ccryptoshim_hmac_compute(const EVP_MAC_CTX *tmpl, const void *data, size_t data_len, unsigned char *out,
                             size_t out_cap, size_t *out_len) {
    EVP_MAC_CTX *ctx = EVP_MAC_CTX_dup(tmpl);
    if (ctx == NULL) {
        ERR_clear_error();
        return 0;
    }
    int ok = EVP_MAC_update(ctx, (const unsigned char *)data, data_len) == 1 &&
             EVP_MAC_final(ctx, out, out_len, out_cap) == 1;
    EVP_MAC_CTX_free(ctx);
    if (!ok) ERR_clear_error();
    return ok;
}

int ccryptoshim_hmac_verify(const EVP_MAC_CTX *tmpl, const void *data, size_t data_len, const void *mac,
                            size_t mac_len) {
    unsigned char computed[EVP_MAX_MD_SIZE];
    size_t computed_len = 0;
    if (!ccryptoshim_hmac_compute(tmpl, data, data_len, computed, sizeof(computed), &computed_len)) return 0;
    if (computed_len != mac_len) return 0;
    int equal = CRYPTO_memcmp(computed, mac, mac_len) == 0;
    OPENSSL_cleanse(computed, sizeof(computed));
    return equal;
}

void ccryptoshim_pkey_free(EVP_PKEY *pkey) { EVP_PKEY_free(pkey); }

int ccryptoshim_pkey_kind(const EVP_PKEY *pkey) {
    switch (EVP_PKEY_get_base_id(pkey)) {
    case EVP_PKEY_RSA: return CCRYPTOSHIM_KEY_RSA;
    case EVP_PKEY_RSA_PSS: return CCRYPTOSHIM_KEY_RSA_PSS;
    case EVP_PKEY_ED25519: return CCRYPTOSHIM_KEY_ED25519;
    case EVP_PKEY_EC: {
        char name[64] = {0};
        size_t len = 0;
        if (EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof(name), &len) != 1) {
            ERR_clear_error();
            return CCRYPTOSHIM_KEY_OTHER;
        }
        int nid = OBJ_txt2nid(name);
        if (nid == NID_undef) ERR_clear_error(); // a name OpenSSL does not know is also parsed as an OID, and fails
        if (nid == NID_X9_62_prime256v1) return CCRYPTOSHIM_KEY_EC_P256;
        if (nid == NID_secp384r1) return CCRYPTOSHIM_KEY_EC_P384;
        if (nid == NID_secp521r1) return CCRYPTOSHIM_KEY_EC_P521;
        return CCRYPTOSHIM_KEY_OTHER;
    }
    default: return CCRYPTOSHIM_KEY_OTHER;
    }
}

int ccryptoshim_pkey_bits(const EVP_PKEY *pkey) { return EVP_PKEY_get_bits(pkey); }

int ccryptoshim_pkey_size(const EVP_PKEY *pkey) { return EVP_PKEY_get_size(pkey); }

int ccryptoshim_pkey_has_private(const EVP_PKEY *pkey) {
    int kind = EVP_PKEY_get_base_id(pkey);
    int result = 0;
    if (kind == EVP_PKEY_ED25519) {
        size_t len = 0;
        result = EVP_PKEY_get_raw_private_key(pkey, NULL, &len) == 1 && len > 0;
    } else if (kind == EVP_PKEY_RSA || kind == EVP_PKEY_RSA_PSS) {
        BIGNUM *d = NULL;
        result = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_RSA_D, &d) == 1 && d != NULL;
        BN_clear_free(d);
    } else if (kind == EVP_PKEY_EC) {
        BIGNUM *d = NULL;
        result = EVP_PKEY_get_bn_param(pkey, OSSL_PKEY_PARAM_PRIV_KEY, &d) == 1 && d != NULL;
        BN_clear_free(d);
    }
    ERR_clear_error();
    return result;
}

int ccryptoshim_pkey_check(EVP_PKEY *pkey, int is_private) {
    EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (ctx == NULL) {
        ERR_clear_error();
        return 0;
    }
    int ok = is_private ? EVP_PKEY_pairwise_check(ctx) == 1 : EVP_PKEY_public_check(ctx) == 1;
    EVP_PKEY_CTX_free(ctx);
    if (!ok) ERR_clear_error();
    return ok;
}

EVP_PKEY *ccryptoshim_pem_read_key(const void *pem, int pem_len, int want_private) {
    BIO *bio = BIO_new_mem_buf(pem, pem_len);
    if (bio == NULL) {
        ERR_clear_error();
        return NULL;
    }
    char *name = NULL;
    char *header = NULL;
    unsigned char *data = NULL;
    long len = 0;
    EVP_PKEY *key = NULL;
    if (PEM_read_bio(bio, &name, &header, &data, &len) != 1) goto done;
    if (header != NULL && header[0] != 0) goto done; // "Proc-Type: 4,ENCRYPTED" and the like
    const unsigned char *p = data;
    if (!want_private) {
        if (strcmp(name, PEM_STRING_PUBLIC) == 0) {
            key = d2i_PUBKEY(NULL, &p, len);
        } else if (strcmp(name, PEM_STRING_RSA_PUBLIC) == 0) {
            key = d2i_PublicKey(EVP_PKEY_RSA, NULL, &p, len);
        } else if (strcmp(name, PEM_STRING_X509) == 0) {
            X509 *cert = d2i_X509(NULL, &p, len);
            if (cert != NULL) {
                key = X509_get_pubkey(cert);
                X509_free(cert);
            }
        }
    } else if (strcmp(name, PEM_STRING_PKCS8INF) == 0 || strcmp(name, PEM_STRING_RSA) == 0 ||
               strcmp(name, PEM_STRING_ECPRIVATEKEY) == 0) {
        key = d2i_AutoPrivateKey(NULL, &p, len);
    }
    if (key != NULL && p != data + len) { // trailing bytes inside the DER
        EVP_PKEY_free(key);
        key = NULL;
    }
done:
    OPENSSL_free(name);
    OPENSSL_free(header);
    if (data != NULL) OPENSSL_clear_free(data, (size_t)len);
    BIO_free(bio);
    if (key == NULL) ERR_clear_error();
    return key;
}

EVP_PKEY *ccryptoshim_rsa_from_components(const void *buf, const size_t *lens, int count) {
    static const char *const names[8] = {
        OSSL_PKEY_PARAM_RSA_N,         OSSL_PKEY_PARAM_RSA_E,         OSSL_PKEY_PARAM_RSA_D,
        OSSL_PKEY_PARAM_RSA_FACTOR1,   OSSL_PKEY_PARAM_RSA_FACTOR2,   OSSL_PKEY_PARAM_RSA_EXPONENT1,
        OSSL_PKEY_PARAM_RSA_EXPONENT2, OSSL_PKEY_PARAM_RSA_COEFFICIENT1,
    };
    if (count != 2 && count != 8) return NULL;
    EVP_PKEY *key = NULL;
    BIGNUM *bns[8] = {0};
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (bld == NULL) goto done;
    const unsigned char *p = (const unsigned char *)buf;
    for (int i = 0; i < count; i++) {
        bns[i] = BN_bin2bn(p, (int)lens[i], NULL);
        p += lens[i];
        if (bns[i] == NULL || OSSL_PARAM_BLD_push_BN(bld, names[i], bns[i]) != 1) goto done;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) goto done;
    if (EVP_PKEY_fromdata(ctx, &key, count == 8 ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    for (int i = 0; i < 8; i++) BN_clear_free(bns[i]);
    if (key == NULL) ERR_clear_error();
    return key;
}

EVP_PKEY *ccryptoshim_ec_from_components(const char *group, const void *pub, size_t pub_len, const void *priv,
                                         size_t priv_len) {
    EVP_PKEY *key = NULL;
    BIGNUM *d = NULL;
    OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM *params = NULL;
    EVP_PKEY_CTX *ctx = NULL;
    if (bld == NULL) goto done;
    if (OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1) goto done;
    if (OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pub, pub_len) != 1) goto done;
    if (priv_len > 0) {
        d = BN_bin2bn((const unsigned char *)priv, (int)priv_len, NULL);
        if (d == NULL || OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_PRIV_KEY, d) != 1) goto done;
    }
    params = OSSL_PARAM_BLD_to_param(bld);
    ctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
    if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) != 1) goto done;
    if (EVP_PKEY_fromdata(ctx, &key, priv_len > 0 ? EVP_PKEY_KEYPAIR : EVP_PKEY_PUBLIC_KEY, params) != 1) key = NULL;
done:
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    BN_clear_free(d);
    if (key == NULL) ERR_clear_error();
    return key;
}

EVP_PKEY *ccryptoshim_ed25519_from_raw(const void *raw, size_t len, int is_private) {
    EVP_PKEY *key = is_private ? EVP_PKEY_new_raw_private_key_ex(NULL, "ED25519", NULL, raw, len)
                               : EVP_PKEY_new_raw_public_key_ex(NULL, "ED25519", NULL, raw, len);
    if (key == NULL) ERR_clear_error();
    return key;
}

int ccryptoshim_ed25519_public_raw(const EVP_PKEY *pkey, unsigned char *out, size_t *len) {
    int ok = EVP_PKEY_get_raw_public_key(pkey, out, len) == 1;
    if (!ok) ERR_clear_error();
    return ok;
}

/// Selects RSASSA-PSS on `pctx`: MGF1 with `md` and a salt as long as the digest (RFC 7518 §3.5). 1 on success.
static int ccryptoshim_set_pss(EVP_PKEY_CTX *pctx, const EVP_MD *md) {
    return EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1 &&
           EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1;
}

int ccryptoshim_verify(EVP_PKEY *pkey, const EVP_MD *md, int pss, const void *msg, size_t msg_len, const void *sig,
                       size_t sig_len) {
    int result = -1;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) goto done;
    if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1) goto done;
    if (pss && !ccryptoshim_set_pss(pctx, md)) goto done;
    result = EVP_DigestVerify(ctx, (const unsigned char *)sig, sig_len, (const unsigned char *)msg, msg_len) == 1;
done:
    EVP_MD_CTX_free(ctx);
    if (result != 1) ERR_clear_error();
    return result;
}

EVP_MD_CTX *ccryptoshim_verify_ctx_new(EVP_PKEY *pkey, const EVP_MD *md, int pss) {
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) goto fail;
    if (EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) != 1) goto fail;
    if (pss && !ccryptoshim_set_pss(pctx, md)) goto fail;
    return ctx;
fail:
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return NULL;
}

void ccryptoshim_md_ctx_free(EVP_MD_CTX *ctx) { EVP_MD_CTX_free(ctx); }

int ccryptoshim_verify_copy(const EVP_MD_CTX *tmpl, const void *msg, size_t msg_len, const void *sig, size_t sig_len) {
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int result = -1;
    if (ctx != NULL && EVP_MD_CTX_copy_ex(ctx, tmpl) == 1) {
        // The copy is used once: without FINALISE, EVP_DigestVerifyFinal would duplicate its EVP_PKEY_CTX again
        // so that the context could be finalised twice.
        EVP_MD_CTX_set_flags(ctx, EVP_MD_CTX_FLAG_FINALISE);
        result = EVP_DigestVerify(ctx, (const unsigned char *)sig, sig_len, (const unsigned char *)msg, msg_len) == 1;
    }
    EVP_MD_CTX_free(ctx);
    if (result != 1) ERR_clear_error();
    return result;
}

/// For RSA PKCS#1 v1.5 the context has no signature digest: the verifier hashes the message, puts the DER
/// DigestInfo prefix of the digest (RFC 8017 §9.2, note 1) before it, and `EVP_PKEY_verify` compares the whole
/// recovered encoding (after its check of the type 1 padding) with it, byte for byte. That is what OpenSSL's
/// `RSA_verify` does too (decrypt, re-encode the DigestInfo, compare), without its two buffers allocated and
/// cleansed per call.
struct ccryptoshim_digest_verifier {
    EVP_PKEY_CTX *pkey_ctx;
    EVP_MD_CTX *md_ctx;
    const EVP_MD *md;
    size_t prefix_len; // 0 unless RSA PKCS#1 v1.5
    unsigned char prefix[19];
};

/// The DER DigestInfo prefixes of RFC 8017 §9.2, note 1, for SHA-256, SHA-384 and SHA-512 (all 19 bytes).
static const unsigned char ccryptoshim_digest_info_sha256[19] = {0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                                 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                                 0x01, 0x05, 0x00, 0x04, 0x20};
static const unsigned char ccryptoshim_digest_info_sha384[19] = {0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                                 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                                 0x02, 0x05, 0x00, 0x04, 0x30};
static const unsigned char ccryptoshim_digest_info_sha512[19] = {0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60,
                                                                 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                                                                 0x03, 0x05, 0x00, 0x04, 0x40};

void ccryptoshim_digest_verifier_free(ccryptoshim_digest_verifier *verifier) {
    if (verifier == NULL) return;
    EVP_PKEY_CTX_free(verifier->pkey_ctx);
    EVP_MD_CTX_free(verifier->md_ctx);
    OPENSSL_free(verifier);
}

ccryptoshim_digest_verifier *ccryptoshim_digest_verifier_new(EVP_PKEY *pkey, const EVP_MD *md, int scheme) {
    ccryptoshim_digest_verifier *verifier = OPENSSL_zalloc(sizeof(*verifier));
    if (verifier == NULL) goto fail;
    verifier->md = md;
    verifier->md_ctx = EVP_MD_CTX_new();
    verifier->pkey_ctx = EVP_PKEY_CTX_new_from_pkey(NULL, pkey, NULL);
    if (verifier->md_ctx == NULL || verifier->pkey_ctx == NULL || EVP_PKEY_verify_init(verifier->pkey_ctx) != 1) {
        goto fail;
    }
    if (scheme == 0) {
        const unsigned char *prefix = EVP_MD_is_a(md, "SHA2-256")   ? ccryptoshim_digest_info_sha256
                                      : EVP_MD_is_a(md, "SHA2-384") ? ccryptoshim_digest_info_sha384
                                      : EVP_MD_is_a(md, "SHA2-512") ? ccryptoshim_digest_info_sha512
                                                                    : NULL;
        if (prefix == NULL || EVP_PKEY_CTX_set_rsa_padding(verifier->pkey_ctx, RSA_PKCS1_PADDING) != 1) goto fail;
        memcpy(verifier->prefix, prefix, sizeof(verifier->prefix));
        verifier->prefix_len = sizeof(verifier->prefix);
    } else {
        if (EVP_PKEY_CTX_set_signature_md(verifier->pkey_ctx, md) != 1) goto fail;
        if (scheme == 1 && !ccryptoshim_set_pss(verifier->pkey_ctx, md)) goto fail;
    }
    return verifier;
fail:
    ccryptoshim_digest_verifier_free(verifier);
    ERR_clear_error();
    return NULL;
}

ccryptoshim_digest_verifier *ccryptoshim_digest_verifier_dup(const ccryptoshim_digest_verifier *verifier) {
    ccryptoshim_digest_verifier *copy = OPENSSL_zalloc(sizeof(*copy));
    if (copy == NULL) goto fail;
    copy->md = verifier->md;
    copy->prefix_len = verifier->prefix_len;
    memcpy(copy->prefix, verifier->prefix, sizeof(copy->prefix));
    copy->md_ctx = EVP_MD_CTX_new();
    copy->pkey_ctx = EVP_PKEY_CTX_dup(verifier->pkey_ctx);
    if (copy->md_ctx == NULL || copy->pkey_ctx == NULL) goto fail;
    return copy;
fail:
    ccryptoshim_digest_verifier_free(copy);
    ERR_clear_error();
    return NULL;
}

int ccryptoshim_digest_verifier_verify(ccryptoshim_digest_verifier *verifier, const void *msg, size_t msg_len,
                                       const void *sig, size_t sig_len) {
    unsigned char encoded[sizeof(verifier->prefix) + EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    memcpy(encoded, verifier->prefix, verifier->prefix_len);
    if (EVP_DigestInit_ex2(verifier->md_ctx, verifier->md, NULL) != 1 ||
        EVP_DigestUpdate(verifier->md_ctx, msg, msg_len) != 1 ||
        EVP_DigestFinal_ex(verifier->md_ctx, encoded + verifier->prefix_len, &digest_len) != 1) {
        ERR_clear_error();
        return -1;
    }
    int result = EVP_PKEY_verify(verifier->pkey_ctx, (const unsigned char *)sig, sig_len, encoded,
                                 verifier->prefix_len + digest_len) == 1;
    if (!result) ERR_clear_error();
    return result;
}

int ccryptoshim_sign(EVP_PKEY *pkey, const EVP_MD *md, int pss, const void *msg, size_t msg_len, unsigned char *sig,
                     size_t *sig_len) {
    int ok = 0;
    EVP_PKEY_CTX *pctx = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL) goto done;
    if (EVP_DigestSignInit(ctx, &pctx, md, NULL, pkey) != 1) goto done;
    if (pss && !ccryptoshim_set_pss(pctx, md)) goto done;
    ok = EVP_DigestSign(ctx, sig, sig_len, (const unsigned char *)msg, msg_len) == 1;
done:
    EVP_MD_CTX_free(ctx);
    if (!ok) ERR_clear_error();
    return ok;
}

/// Writes the DER INTEGER of the unsigned big-endian `bytes` (`len` > 0) at `out`; returns its length.
static size_t ccryptoshim_der_unsigned_integer(const unsigned char *bytes, size_t len, unsigned char *out) {
    while (len > 1 && bytes[0] == 0) { // minimal form: no leading zero bytes (zero itself is one 0 byte)
        bytes++;
        len--;
    }
    size_t pad = bytes[0] & 0x80 ? 1 : 0; // a set top bit would make it negative
    out[0] = 0x02;
    out[1] = (unsigned char)(len + pad);
    out[2] = 0;
    memcpy(out + 2 + pad, bytes, len);
    return 2 + pad + len;
}

int ccryptoshim_ecdsa_raw_to_der(const void *raw, size_t raw_len, unsigned char *out, size_t cap) {
    if (raw_len == 0 || raw_len % 2 != 0 || raw_len > 2 * 66) return -1; // P-521 coordinates are 66 bytes
    size_t half = raw_len / 2;
    const unsigned char *bytes = (const unsigned char *)raw;
    unsigned char body[2 * (3 + 66)];
    size_t body_len = ccryptoshim_der_unsigned_integer(bytes, half, body);
    body_len += ccryptoshim_der_unsigned_integer(bytes + half, half, body + body_len);
    size_t header_len = body_len < 0x80 ? 2 : 3; // short form, or 0x81 and one length byte (body < 256)
    if (header_len + body_len > cap) return -1;
    out[0] = 0x30;
    if (header_len == 2) {
        out[1] = (unsigned char)body_len;
    } else {
        out[1] = 0x81;
        out[2] = (unsigned char)body_len;
    }
    memcpy(out + header_len, body, body_len);
    return (int)(header_len + body_len);
}

int ccryptoshim_ecdsa_der_to_raw(const void *der, size_t der_len, unsigned char *out, int half) {
    const unsigned char *p = (const unsigned char *)der;
    ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)der_len);
    int ok = 0;
    if (sig != NULL) {
        const BIGNUM *r = NULL;
        const BIGNUM *s = NULL;
        ECDSA_SIG_get0(sig, &r, &s);
        ok = BN_bn2binpad(r, out, half) == half && BN_bn2binpad(s, out + half, half) == half;
        ECDSA_SIG_free(sig);
    }
    if (!ok) ERR_clear_error();
    return ok;
}
