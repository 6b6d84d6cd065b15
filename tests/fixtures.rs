//! libmongocrypt's own test fixtures (tests/data, Apache-2.0, (c) MongoDB, Inc.) with their exact expected results.
//!
//! One test binary per area (each binary is linked once per CI build): each file under
//! `tests/fixtures/` is a module.

#[path = "fixtures/auto_aws.rs"]
mod auto_aws;
mod common;
#[path = "fixtures/datakey.rs"]
mod datakey;
#[path = "fixtures/fle1_explicit.rs"]
mod fle1_explicit;
#[path = "fixtures/kms_replies.rs"]
mod kms_replies;
