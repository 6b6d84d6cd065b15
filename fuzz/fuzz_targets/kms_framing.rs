//! The framing of KMS replies and requests in `libmongocrypt_kms::tls`: the status line, whether a reply keeps its
//! connection alive, the `Connection: close` line cut from a request.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| libmongocrypt_kms::fuzzing::kms_framing(data));
