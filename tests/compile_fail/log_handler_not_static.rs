// mongocrypt.h, mongocrypt_setopt_log_handler: libmongocrypt keeps the handler's context pointer until
// mongocrypt_destroy. A handler that borrows a local (which may be gone before the Crypt is) is rejected: 'static.
use libmongocrypt::Crypt;

fn main() {
    let prefix = String::from("mongocrypt: ");
    let prefix = &prefix;
    let _ = Crypt::builder().log_handler(move |_level, message| println!("{prefix}{message}"));
}
