//! Declarations of shim.c, a C layer compiled against `DEP_MONGOCRYPT_INCLUDE` that drives handles created in Rust.
use std::ffi::c_char;

use libmongocrypt_sys::mongocrypt_t;

extern "C" {
    /// `MONGOCRYPT_VERSION` of the header shim.c was compiled against.
    pub fn shim_header_version() -> *const c_char;
    /// Makes a local data key on `crypt` with one key alt name; returns its BSON length in `out`, or -1 with a
    /// NUL-terminated message in `out`.
    pub fn shim_create_local_datakey(
        crypt: *mut mongocrypt_t,
        key_alt_name: *const c_char,
        out: *mut u8,
        cap: u32,
    ) -> i32;
}
