/* A stand-in for another FFI layer: C code that receives a mongocrypt_t* created and owned by Rust and drives a
 * ctx of its own on it. It only uses the public mongocrypt.h API. */
#include <mongocrypt.h>
#include <stdlib.h>
#include <string.h>

/* The MONGOCRYPT_VERSION the header this file was compiled against declares. */
const char *shim_header_version(void) { return MONGOCRYPT_VERSION; }

/* Creates a data key wrapped by the crypt's local KMS provider on `crypt` and copies its BSON into `out`
 * (capacity `cap`). Returns the document's length, or -1 and a NUL-terminated message in `out` on error. */
int shim_create_local_datakey(mongocrypt_t *crypt, const char *key_alt_name, uint8_t *out, uint32_t cap) {
    mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
    mongocrypt_status_t *status = mongocrypt_status_new();
    mongocrypt_binary_t *result = mongocrypt_binary_new();
    int ret = -1;

    /* { "provider": "local" } and { "keyAltName": <key_alt_name> }, encoded by hand to keep the shim free of
     * libbson. */
    static const uint8_t kek[] = {0x19, 0x00, 0x00, 0x00, 0x02, 'p', 'r', 'o', 'v', 'i', 'd', 'e', 'r', 0x00, 0x06,
                                  0x00, 0x00, 0x00, 'l',  'o',  'c', 'a', 'l', 0x00, 0x00};
    uint8_t alt[256];
    size_t name_len = strlen(key_alt_name);
    if (name_len > 200) {
        goto done;
    }
    uint32_t str_len = (uint32_t)name_len + 1, doc_len = 4 + 1 + 11 + 4 + str_len + 1;
    memcpy(alt, &doc_len, 4);
    alt[4] = 0x02;
    memcpy(alt + 5, "keyAltName", 11);
    memcpy(alt + 16, &str_len, 4);
    memcpy(alt + 20, key_alt_name, str_len);
    alt[20 + str_len] = 0x00;

    mongocrypt_binary_t *kek_bin = mongocrypt_binary_new_from_data((uint8_t *)kek, sizeof kek);
    mongocrypt_binary_t *alt_bin = mongocrypt_binary_new_from_data(alt, doc_len);
    bool ok = mongocrypt_ctx_setopt_key_encryption_key(ctx, kek_bin) &&
              mongocrypt_ctx_setopt_key_alt_name(ctx, alt_bin) && mongocrypt_ctx_datakey_init(ctx) &&
              mongocrypt_ctx_state(ctx) == MONGOCRYPT_CTX_READY && mongocrypt_ctx_finalize(ctx, result);
    mongocrypt_binary_destroy(kek_bin);
    mongocrypt_binary_destroy(alt_bin);
    if (!ok) {
        mongocrypt_ctx_status(ctx, status);
        const char *msg = mongocrypt_status_message(status, NULL);
        strncpy((char *)out, msg ? msg : "unknown error", cap - 1);
        out[cap - 1] = '\0';
        goto done;
    }
    if (mongocrypt_binary_len(result) > cap) {
        goto done;
    }
    memcpy(out, mongocrypt_binary_data(result), mongocrypt_binary_len(result));
    ret = (int)mongocrypt_binary_len(result);
done:
    mongocrypt_binary_destroy(result);
    mongocrypt_status_destroy(status);
    mongocrypt_ctx_destroy(ctx);
    return ret;
}
