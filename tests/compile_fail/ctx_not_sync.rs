// mongocrypt.h, mongocrypt_t: "functions on derived handles (e.g. mongocrypt_ctx_t) are not [thread safe] and must
// be owned by a single thread". Ctx is Send but not Sync, so &Ctx cannot be shared between threads.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let ctx = &ctx;
    std::thread::scope(|s| {
        s.spawn(move || ctx.state());
        s.spawn(move || ctx.state());
    });
}
