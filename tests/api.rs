//! The safe API's tests: ownership and threading, typed wrong-state errors, the version gates, every option of
//! `Crypt` and `Ctx` (good and bad input), the crypto hooks' outputs and callback panics, serde of the options.
//!
//! One test binary per area (each binary is linked once per CI build): each file under
//! `tests/api/` is a module.

#[path = "api/callback_panics.rs"]
mod callback_panics;
mod common;
#[path = "api/ctx_outlives_crypt.rs"]
mod ctx_outlives_crypt;
#[path = "api/ctx_wrong_state.rs"]
mod ctx_wrong_state;
#[path = "api/error_bounds.rs"]
mod error_bounds;
#[path = "api/hook_outputs.rs"]
mod hook_outputs;
#[path = "api/mongo_op_view.rs"]
mod mongo_op_view;
#[path = "api/options_bad_input.rs"]
mod options_bad_input;
#[path = "api/options_crypt.rs"]
mod options_crypt;
#[path = "api/options_crypto.rs"]
mod options_crypto;
#[path = "api/options_ctx.rs"]
mod options_ctx;
#[cfg(feature = "serde")]
#[path = "api/options_serde.rs"]
mod options_serde;
#[path = "api/thread_safety.rs"]
mod thread_safety;
#[path = "api/version_gates.rs"]
mod version_gates;
