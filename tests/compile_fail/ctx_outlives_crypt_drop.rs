// mongocrypt.h, mongocrypt_ctx_new: the ctx is created from a mongocrypt_t and must be destroyed before it
// (mongocrypt_destroy frees what the ctx points to). A Ctx borrows its Crypt, so the Crypt cannot be dropped first.
use mongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};

fn main() {
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap().build().unwrap();
    let ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    drop(crypt);
    let _ = ctx.state();
}
