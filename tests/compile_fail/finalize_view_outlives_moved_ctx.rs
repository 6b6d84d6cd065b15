// mongocrypt.h, mongocrypt_ctx_finalize: "The data viewed by out is guaranteed to be valid until ctx is destroyed".
// A Ctx is 'static and may move to another thread, but the view finalize returns borrows it: the ctx cannot move
// (and be destroyed there) while the view is alive.
use libmongocrypt::{Crypt, KeyEncryptionKey, KmsProviders};

fn main() {
    let crypt =
        Crypt::builder().kms_providers(&KmsProviders::new().local("local", &[0u8; 96])).unwrap().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key = ctx.finalize().unwrap();
    std::thread::spawn(move || drop(ctx));
    println!("{key:?}");
}
