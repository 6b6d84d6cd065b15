//! An HTTP proxy's reply to CONNECT, as `libmongocrypt_kms::tls::HttpProxy` reads it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| libmongocrypt_kms::fuzzing::proxy_connect_reply(data));
