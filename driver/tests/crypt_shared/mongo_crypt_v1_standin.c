/*
 * A stand-in for MongoDB's crypt_shared library (mongo_crypt_v1), built by tests/crypt_shared.rs with
 * `cc -shared -fPIC`. It exports the mongo_crypt_v1_* functions libmongocrypt resolves when it loads crypt_shared
 * and answers with what the test compiled in:
 *
 *   STANDIN_VERSION           the number mongo_crypt_v1_get_version returns (four 16-bit words: major, minor,
 *                             revision, reserved)
 *   STANDIN_VERSION_STR       the string mongo_crypt_v1_get_version_str returns
 *   STANDIN_REPLY             the bytes (a comma-separated list) of the BSON document every analyze_query returns:
 *                             the command with its encryption markings, as mongocryptd would reply
 *   STANDIN_FAIL_LIB_CREATE   if defined, lib_create fails with STANDIN_FAIL_LIB_CREATE as its explanation
 *
 * Like the real library, it allows one library object at a time: a second lib_create before lib_destroy fails, so
 * a test sees whether libmongocrypt shares one across handles.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

enum { STANDIN_OK = 0, STANDIN_ERROR = 1 };

typedef struct standin_status {
    int error;
    int code;
    const char *explanation;
} standin_status;

typedef struct standin_lib {
    int unused;
} standin_lib;

typedef struct standin_query_analyzer {
    standin_lib *lib;
} standin_query_analyzer;

static const uint8_t reply[] = {STANDIN_REPLY};
/* The live library object, if any. libmongocrypt creates and destroys it in mongocrypt_init and mongocrypt_destroy,
 * which the tests call from one thread at a time. */
static standin_lib *live_lib;

static void fail(standin_status *status, int code, const char *explanation) {
    if (status) {
        status->error = STANDIN_ERROR;
        status->code = code;
        status->explanation = explanation;
    }
}

EXPORT standin_status *mongo_crypt_v1_status_create(void) {
    standin_status *status = calloc(1, sizeof *status);
    if (status) {
        status->explanation = "";
    }
    return status;
}

EXPORT void mongo_crypt_v1_status_destroy(standin_status *status) { free(status); }

EXPORT int mongo_crypt_v1_status_get_error(const standin_status *status) { return status->error; }

EXPORT const char *mongo_crypt_v1_status_get_explanation(const standin_status *status) {
    return status->explanation;
}

EXPORT int mongo_crypt_v1_status_get_code(const standin_status *status) { return status->code; }

EXPORT standin_lib *mongo_crypt_v1_lib_create(standin_status *status) {
#ifdef STANDIN_FAIL_LIB_CREATE
    fail(status, 42, STANDIN_FAIL_LIB_CREATE);
    return NULL;
#else
    if (live_lib) {
        fail(status, 43, "stand-in: lib_create called while a library object is live");
        return NULL;
    }
    live_lib = calloc(1, sizeof *live_lib);
    if (!live_lib) {
        fail(status, 44, "stand-in: out of memory");
    }
    return live_lib;
#endif
}

EXPORT int mongo_crypt_v1_lib_destroy(standin_lib *lib, standin_status *status) {
    if (!lib || lib != live_lib) {
        fail(status, 45, "stand-in: lib_destroy of an unknown library object");
        return STANDIN_ERROR;
    }
    free(lib);
    live_lib = NULL;
    return STANDIN_OK;
}

EXPORT uint64_t mongo_crypt_v1_get_version(void) { return STANDIN_VERSION; }

EXPORT const char *mongo_crypt_v1_get_version_str(void) { return STANDIN_VERSION_STR; }

EXPORT standin_query_analyzer *mongo_crypt_v1_query_analyzer_create(standin_lib *lib, standin_status *status) {
    if (!lib || lib != live_lib) {
        fail(status, 46, "stand-in: query_analyzer_create with an unknown library object");
        return NULL;
    }
    standin_query_analyzer *analyzer = calloc(1, sizeof *analyzer);
    if (!analyzer) {
        fail(status, 44, "stand-in: out of memory");
        return NULL;
    }
    analyzer->lib = lib;
    return analyzer;
}

EXPORT void mongo_crypt_v1_query_analyzer_destroy(standin_query_analyzer *analyzer) { free(analyzer); }

EXPORT uint8_t *mongo_crypt_v1_analyze_query(standin_query_analyzer *analyzer,
                                             const uint8_t *command,
                                             const char *ns,
                                             uint32_t ns_len,
                                             uint32_t *bson_len,
                                             standin_status *status) {
    if (!analyzer || !command || !ns || ns_len == 0 || !bson_len) {
        fail(status, 47, "stand-in: analyze_query without an analyzer, command, namespace or length");
        return NULL;
    }
    uint8_t *out = malloc(sizeof reply);
    if (!out) {
        fail(status, 44, "stand-in: out of memory");
        return NULL;
    }
    memcpy(out, reply, sizeof reply);
    *bson_len = (uint32_t)sizeof reply;
    return out;
}

EXPORT void mongo_crypt_v1_bson_free(uint8_t *bson) { free(bson); }
