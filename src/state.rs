//! [`State`], `mongocrypt_ctx_state_t`: a leaf, so that errors can name states without depending on the ctx.

use libmongocrypt_sys as sys;

/// The state of a [`Ctx`](crate::Ctx) (`mongocrypt_ctx_state_t`): what the driver must do next.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum State {
    /// The operation failed; [`Ctx::status`](crate::Ctx::status) holds the error.
    Error,
    /// Run listCollections with [`Ctx::mongo_op`](crate::Ctx::mongo_op) as filter, feed each result, then `mongo_done`.
    NeedMongoCollinfo,
    /// As `NeedMongoCollinfo`, on the database [`Ctx::mongo_db`](crate::Ctx::mongo_db) names.
    NeedMongoCollinfoWithDb,
    /// Send [`Ctx::mongo_op`](crate::Ctx::mongo_op) to mongocryptd (or crypt_shared did it), feed the reply, then `mongo_done`.
    NeedMongoMarkings,
    /// Find [`Ctx::mongo_op`](crate::Ctx::mongo_op) in the key vault, feed each key document, then `mongo_done`.
    NeedMongoKeys,
    /// Serve the KMS requests of [`Ctx::kms_scope`](crate::Ctx::kms_scope).
    NeedKms,
    /// Supply on-demand KMS credentials with [`Ctx::provide_kms_providers`](crate::Ctx::provide_kms_providers).
    NeedKmsCredentials,
    /// Call [`Ctx::finalize`](crate::Ctx::finalize).
    Ready,
    /// Finished.
    Done,
    /// A state this binding does not know (a newer library's); treat it as unsupported.
    Unknown(u32),
}

impl State {
    /// The state of `mongocrypt_ctx_state`'s value.
    pub(crate) fn from_raw(state: sys::mongocrypt_ctx_state_t) -> State {
        match state {
            sys::MONGOCRYPT_CTX_ERROR => State::Error,
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO => State::NeedMongoCollinfo,
            // Headers before 1.10 lack the constant; their libraries never enter the state.
            #[cfg(mongocrypt_has_ctx_mongo_db)]
            sys::MONGOCRYPT_CTX_NEED_MONGO_COLLINFO_WITH_DB => State::NeedMongoCollinfoWithDb,
            sys::MONGOCRYPT_CTX_NEED_MONGO_MARKINGS => State::NeedMongoMarkings,
            sys::MONGOCRYPT_CTX_NEED_MONGO_KEYS => State::NeedMongoKeys,
            sys::MONGOCRYPT_CTX_NEED_KMS => State::NeedKms,
            sys::MONGOCRYPT_CTX_NEED_KMS_CREDENTIALS => State::NeedKmsCredentials,
            sys::MONGOCRYPT_CTX_READY => State::Ready,
            sys::MONGOCRYPT_CTX_DONE => State::Done,
            other => State::Unknown(other),
        }
    }
}
