// mongocrypt.h, mongocrypt_ctx_mongo_db: the database name is owned by the ctx. The &str borrows the Ctx, and
// mongocrypt_ctx_mongo_done (&mut self) ends the NEED_MONGO_COLLINFO_WITH_DB state, so it cannot be used across it.
use libmongocrypt::{Crypt, KeyEncryptionKey};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let mut ctx = crypt.ctx().key_encryption_key(&KeyEncryptionKey::local("local")).unwrap().datakey().unwrap();
    let db = ctx.mongo_db().unwrap();
    ctx.mongo_done().unwrap();
    println!("{db}");
}
