/* TLS key fingerprints; see tlsfp.h. */
#include "common/tlsfp.h"

#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <string.h>

static void to_hex(const unsigned char *bytes, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[bytes[i] >> 4];
        out[2 * i + 1] = digits[bytes[i] & 15];
    }
    out[2 * n] = '\0';
}

int tlsfp_of_cert(struct x509_st *cert, char out[TLSFP_LEN + 1])
{
    unsigned char *der = NULL, md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    int len = cert ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der) : -1;
    if (len <= 0)
        return -1;
    int ok = EVP_Digest(der, (size_t)len, md, &md_len, EVP_sha256(), NULL);
    OPENSSL_free(der);
    if (!ok || md_len != 32)
        return -1;
    memcpy(out, TLSFP_PREFIX, sizeof(TLSFP_PREFIX) - 1);
    to_hex(md, md_len, out + sizeof(TLSFP_PREFIX) - 1);
    return 0;
}

bool tlsfp_parse(const char *text, char norm[TLSFP_LEN + 1])
{
    size_t plen = sizeof(TLSFP_PREFIX) - 1;
    if (strlen(text) != TLSFP_LEN || strncmp(text, TLSFP_PREFIX, plen) != 0)
        return false;
    for (size_t i = plen; i < TLSFP_LEN; i++)
        if (!isxdigit((unsigned char)text[i]))
            return false;
    for (size_t i = 0; i <= TLSFP_LEN; i++)
        norm[i] = (char)tolower((unsigned char)text[i]);
    return true;
}
