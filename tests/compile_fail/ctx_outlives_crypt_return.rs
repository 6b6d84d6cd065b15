// mongocrypt.h, mongocrypt_ctx_new: a ctx must not outlive the mongocrypt_t it came from. A function that owns the
// Crypt cannot hand out a Ctx of it.
use mongocrypt::{Crypt, Ctx, KeyEncryptionKey, KmsProviders};

fn datakey_ctx<'a>() -> Ctx<'a> {
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap().build().unwrap();
    crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap()
}

fn main() {
    let _ = datakey_ctx().state();
}
