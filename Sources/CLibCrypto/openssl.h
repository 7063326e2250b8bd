#ifndef CLIBCRYPTO_OPENSSL_H
#define CLIBCRYPTO_OPENSSL_H

// OpenSSL's libcrypto for CCryptoShim, which includes the headers it needs itself. This system-library module exists
// for pkg-config (include and library paths) and the link; no Swift file imports it: RealtimeCrypto owns libcrypto.
#include <openssl/types.h>

#endif
