// mongocrypt.h, mongocrypt_t: "Functions on a mongocrypt_t are thread safe", so libmongocrypt may call the log
// handler (mongocrypt_setopt_log_handler) from any thread using the Crypt. A handler capturing an Rc is rejected.
use std::cell::Cell;
use std::rc::Rc;

use libmongocrypt::Crypt;

fn main() {
    let count = Rc::new(Cell::new(0));
    let _ = Crypt::builder().log_handler(move |_level, _message| count.set(count.get() + 1));
}
