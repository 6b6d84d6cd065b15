/* The plain-C side of benches/overhead.rs: the same workload as the Rust binding, written directly against
 * mongocrypt.h, so that the bench can compare the two on one libmongocrypt.
 *
 * Every loop makes exactly the libmongocrypt calls that the binding makes for the same operation, in the same
 * order, so that any difference in time or instructions is the binding's own cost:
 *
 *   ctx_new; [binary_new_from_data, ctx_setopt_key_id, binary_destroy]; ctx_setopt_algorithm(name, len);
 *   binary_new_from_data, ctx_<kind>_init, binary_destroy;
 *   loop: ctx_state, then per state
 *     NEED_MONGO_MARKINGS: binary_new, ctx_mongo_op, binary_data, binary_len, binary_destroy;
 *                          binary_new_from_data, ctx_mongo_feed, binary_destroy; ctx_mongo_done
 *     NEED_MONGO_KEYS:     binary_new_from_data, ctx_mongo_feed, binary_destroy; ctx_mongo_done
 *     READY:               binary_new, ctx_finalize, binary_data, binary_len, binary_destroy, and the result is
 *                          copied out (malloc + memcpy, then the previous copy is freed)
 *     DONE:                leave the loop
 *   ctx_destroy.
 *
 * (In Rust: CtxBuilder's setopts and init each wrap their input in a BinaryView, mongo_op and finalize use a
 * BinaryOut, finalize_owned copies into a RawDocumentBuf, and dropping the Ctx destroys it.)
 *
 * The BSON inputs (KMS providers, KEK, values, commands, replies) are built by the Rust harness and passed in as
 * bytes; setup is not timed. No libbson: the only library used is libmongocrypt. */
#include <mongocrypt.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* A malloc'd copy of a result; free with bench_buf_free. */
typedef struct {
    uint8_t *data;
    uint32_t len;
} bench_buf_t;

void bench_buf_free(bench_buf_t *buf) {
    free(buf->data);
    buf->data = NULL;
    buf->len = 0;
}

/* The binding installs a log handler on every mongocrypt_t (its bridge to the `log` crate); so does C. */
static void noop_log(mongocrypt_log_level_t level, const char *message, uint32_t message_len, void *ctx) {
    (void)level;
    (void)message;
    (void)message_len;
    (void)ctx;
}

static void copy_message(mongocrypt_status_t *status, const char *fallback, char *err, size_t errlen) {
    const char *msg = status ? mongocrypt_status_message(status, NULL) : NULL;
    if (errlen == 0) {
        return;
    }
    strncpy(err, (msg && *msg) ? msg : fallback, errlen - 1);
    err[errlen - 1] = '\0';
}

static void ctx_error(mongocrypt_ctx_t *ctx, const char *fallback, char *err, size_t errlen) {
    mongocrypt_status_t *status = mongocrypt_status_new();
    mongocrypt_ctx_status(ctx, status);
    copy_message(status, fallback, err, errlen);
    mongocrypt_status_destroy(status);
}

/* mongocrypt_new + log handler + KMS providers (+ schema map) + init. NULL and a message in `err` on error. */
mongocrypt_t *bench_c_crypt_new(const uint8_t *kms_providers, uint32_t kms_len, const uint8_t *schema_map,
                                uint32_t schema_len, char *err, size_t errlen) {
    mongocrypt_t *crypt = mongocrypt_new();
    mongocrypt_binary_t *kms = mongocrypt_binary_new_from_data((uint8_t *)kms_providers, kms_len);
    bool ok = mongocrypt_setopt_log_handler(crypt, noop_log, NULL) && mongocrypt_setopt_kms_providers(crypt, kms);
    mongocrypt_binary_destroy(kms);
    if (ok && schema_map) {
        mongocrypt_binary_t *map = mongocrypt_binary_new_from_data((uint8_t *)schema_map, schema_len);
        ok = mongocrypt_setopt_schema_map(crypt, map);
        mongocrypt_binary_destroy(map);
    }
    ok = ok && mongocrypt_init(crypt);
    if (!ok) {
        mongocrypt_status_t *status = mongocrypt_status_new();
        mongocrypt_status(crypt, status);
        copy_message(status, "mongocrypt_init failed", err, errlen);
        mongocrypt_status_destroy(status);
        mongocrypt_destroy(crypt);
        return NULL;
    }
    return crypt;
}

void bench_c_crypt_destroy(mongocrypt_t *crypt) { mongocrypt_destroy(crypt); }

/* Drives an initialised ctx to DONE. `markings` answers NEED_MONGO_MARKINGS, `key_doc` NEED_MONGO_KEYS; the
 * finalized document is copied into `last`. 0 on success, -1 and a message in `err` otherwise. */
static int drive(mongocrypt_ctx_t *ctx, const uint8_t *markings, uint32_t markings_len, const uint8_t *key_doc,
                 uint32_t key_doc_len, bench_buf_t *last, char *err, size_t errlen) {
    for (;;) {
        switch (mongocrypt_ctx_state(ctx)) {
        case MONGOCRYPT_CTX_NEED_MONGO_MARKINGS: {
            if (!markings) {
                copy_message(NULL, "NEED_MONGO_MARKINGS without a mongocryptd reply", err, errlen);
                return -1;
            }
            mongocrypt_binary_t *op = mongocrypt_binary_new();
            bool ok = mongocrypt_ctx_mongo_op(ctx, op);
            /* A driver would send these bytes to mongocryptd; the binding's mongo_op views them as a document. */
            volatile uint32_t op_len = mongocrypt_binary_len(op);
            volatile const uint8_t *op_data = mongocrypt_binary_data(op);
            (void)op_len;
            (void)op_data;
            mongocrypt_binary_destroy(op);
            if (!ok) {
                ctx_error(ctx, "mongo_op failed", err, errlen);
                return -1;
            }
            mongocrypt_binary_t *reply = mongocrypt_binary_new_from_data((uint8_t *)markings, markings_len);
            ok = mongocrypt_ctx_mongo_feed(ctx, reply);
            mongocrypt_binary_destroy(reply);
            if (!ok || !mongocrypt_ctx_mongo_done(ctx)) {
                ctx_error(ctx, "feeding markings failed", err, errlen);
                return -1;
            }
            break;
        }
        case MONGOCRYPT_CTX_NEED_MONGO_KEYS: {
            mongocrypt_binary_t *key = mongocrypt_binary_new_from_data((uint8_t *)key_doc, key_doc_len);
            bool ok = mongocrypt_ctx_mongo_feed(ctx, key);
            mongocrypt_binary_destroy(key);
            if (!ok || !mongocrypt_ctx_mongo_done(ctx)) {
                ctx_error(ctx, "feeding the key failed", err, errlen);
                return -1;
            }
            break;
        }
        case MONGOCRYPT_CTX_READY: {
            mongocrypt_binary_t *out = mongocrypt_binary_new();
            bool ok = mongocrypt_ctx_finalize(ctx, out);
            if (ok) {
                const uint8_t *data = mongocrypt_binary_data(out);
                uint32_t len = mongocrypt_binary_len(out);
                /* The new copy first, then the old one freed: the order of `last = ...` in Rust. */
                uint8_t *copy = malloc(len);
                memcpy(copy, data, len);
                free(last->data);
                last->data = copy;
                last->len = len;
            }
            mongocrypt_binary_destroy(out);
            if (!ok) {
                ctx_error(ctx, "finalize failed", err, errlen);
                return -1;
            }
            break;
        }
        case MONGOCRYPT_CTX_DONE:
            return 0;
        default:
            ctx_error(ctx, "unexpected state", err, errlen);
            return -1;
        }
    }
}

#define DETERMINISTIC "AEAD_AES_256_CBC_HMAC_SHA_512-Deterministic"

/* A data key under the KEK document `kek` ({provider: "local"}), copied into `key_doc`. */
int bench_c_datakey(mongocrypt_t *crypt, const uint8_t *kek, uint32_t kek_len, bench_buf_t *key_doc, char *err,
                    size_t errlen) {
    mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
    mongocrypt_binary_t *bin = mongocrypt_binary_new_from_data((uint8_t *)kek, kek_len);
    bool ok = mongocrypt_ctx_setopt_key_encryption_key(ctx, bin);
    mongocrypt_binary_destroy(bin);
    int ret = -1;
    if (!ok || !mongocrypt_ctx_datakey_init(ctx)) {
        ctx_error(ctx, "datakey init failed", err, errlen);
    } else {
        ret = drive(ctx, NULL, 0, NULL, 0, key_doc, err, errlen);
    }
    mongocrypt_ctx_destroy(ctx);
    return ret;
}

/* `n` explicit Deterministic encryptions of `value` ({"v": ...}) by key id. The last ciphertext is left in `last`. */
int bench_c_encrypt_loop(mongocrypt_t *crypt, const uint8_t *key_id, uint32_t key_id_len, const uint8_t *key_doc,
                         uint32_t key_doc_len, const uint8_t *value, uint32_t value_len, uint64_t n,
                         bench_buf_t *last, char *err, size_t errlen) {
    for (uint64_t i = 0; i < n; i++) {
        mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
        mongocrypt_binary_t *id = mongocrypt_binary_new_from_data((uint8_t *)key_id, key_id_len);
        bool ok = mongocrypt_ctx_setopt_key_id(ctx, id);
        mongocrypt_binary_destroy(id);
        ok = ok && mongocrypt_ctx_setopt_algorithm(ctx, DETERMINISTIC, (int)(sizeof DETERMINISTIC - 1));
        if (ok) {
            mongocrypt_binary_t *v = mongocrypt_binary_new_from_data((uint8_t *)value, value_len);
            ok = mongocrypt_ctx_explicit_encrypt_init(ctx, v);
            mongocrypt_binary_destroy(v);
        }
        int ret = ok ? drive(ctx, NULL, 0, key_doc, key_doc_len, last, err, errlen) : -1;
        if (!ok) {
            ctx_error(ctx, "explicit encrypt init failed", err, errlen);
        }
        mongocrypt_ctx_destroy(ctx);
        if (ret != 0) {
            return -1;
        }
    }
    return 0;
}

/* `n` explicit decryptions of `ciphertext` ({"v": Binary(6, ...)}). The last plaintext is left in `last`. */
int bench_c_decrypt_loop(mongocrypt_t *crypt, const uint8_t *key_doc, uint32_t key_doc_len,
                         const uint8_t *ciphertext, uint32_t ciphertext_len, uint64_t n, bench_buf_t *last,
                         char *err, size_t errlen) {
    for (uint64_t i = 0; i < n; i++) {
        mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
        mongocrypt_binary_t *v = mongocrypt_binary_new_from_data((uint8_t *)ciphertext, ciphertext_len);
        bool ok = mongocrypt_ctx_explicit_decrypt_init(ctx, v);
        mongocrypt_binary_destroy(v);
        int ret = ok ? drive(ctx, NULL, 0, key_doc, key_doc_len, last, err, errlen) : -1;
        if (!ok) {
            ctx_error(ctx, "explicit decrypt init failed", err, errlen);
        }
        mongocrypt_ctx_destroy(ctx);
        if (ret != 0) {
            return -1;
        }
    }
    return 0;
}

/* `n` automatic encryptions of command `cmd` on database `db` (NUL-terminated), answering NEED_MONGO_MARKINGS
 * with the mock mongocryptd reply `markings`. The last encrypted command is left in `last`. */
int bench_c_auto_encrypt_loop(mongocrypt_t *crypt, const char *db, uint32_t db_len, const uint8_t *cmd,
                              uint32_t cmd_len, const uint8_t *markings, uint32_t markings_len,
                              const uint8_t *key_doc, uint32_t key_doc_len, uint64_t n, bench_buf_t *last,
                              char *err, size_t errlen) {
    for (uint64_t i = 0; i < n; i++) {
        mongocrypt_ctx_t *ctx = mongocrypt_ctx_new(crypt);
        mongocrypt_binary_t *c = mongocrypt_binary_new_from_data((uint8_t *)cmd, cmd_len);
        bool ok = mongocrypt_ctx_encrypt_init(ctx, db, (int32_t)db_len, c);
        mongocrypt_binary_destroy(c);
        int ret = ok ? drive(ctx, markings, markings_len, key_doc, key_doc_len, last, err, errlen) : -1;
        if (!ok) {
            ctx_error(ctx, "encrypt init failed", err, errlen);
        }
        mongocrypt_ctx_destroy(ctx);
        if (ret != 0) {
            return -1;
        }
    }
    return 0;
}
