// mongocrypt.h, mongocrypt_ctx_finalize: "The data viewed by out is guaranteed to be valid until ctx is destroyed".
// The result borrows the Ctx mutably, so no other call on the ctx (here a second finalize) can happen while it is
// in use; copy it out with finalize_owned to keep it.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let key_doc = ctx.finalize().unwrap();
    let _ = ctx.finalize();
    println!("{key_doc:?}");
}
