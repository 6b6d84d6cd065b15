//! The replies of metadata servers and STS (`libmongocrypt_kms::credentials`): byte 0 picks the parser (ECS and
//! IMDS credentials, STS, GCP and Azure tokens), the rest is the reply's body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| libmongocrypt_kms::fuzzing::credentials_reply(data));
