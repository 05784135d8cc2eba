/* The server's generated TLS key and certificate; see tlscert.h. */
#include "server/tlscert.h"

#include <errno.h>
#include <fcntl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define TLSCERT_SAN "DNS:localhost,IP:127.0.0.1,IP:::1"
#define TLSCERT_SERIAL_BITS 64

/* Writes OpenSSL's latest error after `what` into `err`. */
static int ssl_fail(char *err, size_t errlen, const char *what)
{
    char reason[160];
    ERR_error_string_n(ERR_get_error(), reason, sizeof(reason));
    snprintf(err, errlen, "%s: %s", what, reason);
    ERR_clear_error();
    return -1;
}

static int set_serial(X509 *x)
{
    BIGNUM *bn = BN_new();
    int ok = bn && BN_rand(bn, TLSCERT_SERIAL_BITS, BN_RAND_TOP_ANY, BN_RAND_BOTTOM_ANY) &&
             BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    return ok ? 0 : -1;
}

static int add_names(X509 *x)
{
    X509_NAME *name = X509_get_subject_name(x);
    X509V3_CTX ctx;
    if (!X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"parleyd", -1,
                                    -1, 0) ||
        !X509_set_issuer_name(x, name))
        return -1;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, x, x, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, NID_subject_alt_name, TLSCERT_SAN);
    int ok = ext && X509_add_ext(x, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A self-signed certificate for `key`, or NULL. */
static X509 *make_cert(EVP_PKEY *key)
{
    X509 *x = X509_new();
    if (!x || !X509_set_version(x, 2) || set_serial(x) < 0 ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -3600) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)TLSCERT_DAYS * 86400) ||
        !X509_set_pubkey(x, key) || add_names(x) < 0 || !X509_sign(x, key, EVP_sha256())) {
        X509_free(x);
        return NULL;
    }
    return x;
}

/* Writes `key` or `cert` as PEM to `path` (mode 0600) through a temporary file renamed over
 * it, so that a crash leaves the old file or the new one, never half of one. */
static int write_pem(const char *path, EVP_PKEY *key, X509 *cert)
{
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    int ok =
        key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    ok = ok && fflush(f) == 0 && fsync(fileno(f)) == 0;
    if (fclose(f) != 0 || !ok || rename(tmp, path) < 0) {
        unlink(tmp);
        return -1;
    }
    return 0;
}

static int generate(const char *cert, const char *key, char *err, size_t errlen)
{
    int rc = -1;
    EVP_PKEY *pkey = EVP_EC_gen("P-256");
    X509 *x = pkey ? make_cert(pkey) : NULL;
    if (!x) {
        rc = ssl_fail(err, errlen, "cannot make a TLS certificate");
        goto out;
    }
    if (write_pem(key, pkey, NULL) < 0 || write_pem(cert, NULL, x) < 0) {
        snprintf(err, errlen, "cannot write %s: %s", key, strerror(errno));
        goto out;
    }
    rc = 0;
out:
    X509_free(x);
    EVP_PKEY_free(pkey);
    return rc;
}

int tlscert_ensure(const char *dir, char *cert, char *key, size_t len, char *err, size_t errlen)
{
    if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", dir, strerror(errno));
        return -1;
    }
    snprintf(cert, len, "%s/%s", dir, TLSCERT_CERT_FILE);
    snprintf(key, len, "%s/%s", dir, TLSCERT_KEY_FILE);
    if (access(cert, F_OK) == 0 && access(key, F_OK) == 0)
        return 0;
    return generate(cert, key, err, errlen); /* the certificate is written last */
}

int tlscert_fingerprint(const char *cert_file, char out[TLSFP_LEN + 1], char *err, size_t errlen)
{
    FILE *f = fopen(cert_file, "r");
    if (!f) {
        snprintf(err, errlen, "cannot read %s: %s", cert_file, strerror(errno));
        return -1;
    }
    X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    int rc = tlsfp_of_cert(x, out);
    X509_free(x);
    if (rc < 0)
        return ssl_fail(err, errlen, "not a PEM certificate");
    return 0;
}
