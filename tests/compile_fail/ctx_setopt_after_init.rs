// mongocrypt.h, every mongocrypt_ctx_setopt_*: "@pre ctx has not been initialized". The init methods of CtxBuilder
// (here explicit_encrypt) consume the builder, so a setopt after init is a use after move.
use libmongocrypt::{Algorithm, Crypt};

fn main() {
    let crypt = Crypt::builder().build().unwrap();
    let builder = crypt.ctx().key_id(&[0u8; 16]).unwrap();
    let _ctx = builder.explicit_encrypt(&bson::rawdoc! { "v": 1 }).unwrap();
    let _ = builder.algorithm(&Algorithm::Deterministic);
}
