//! The KMS exchange, once for both faces: a kept connection taken from the pool and checked still idle, or a new
//! one (connect, TLS handshake); the conversation (write the request, read and feed the reply); the connection
//! kept if the reply left it reusable. The faces (`blocking`, `tokio`) only do the I/O, through [`Face`]; the
//! blocking face's futures are ready at their first poll, so its exchange completes in one (`now_or_never`), as
//! the blocking runners of `libmongocrypt::state_machine` do.

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use super::connect::{closed_early, Conversed, Exchanged, Failed, Feeder, Target};
use super::{KmsIoError, KmsIoErrorKind};
use libmongocrypt::KmsCtx;

/// The I/O of one face of the exchange.
pub(super) trait Face {
    /// A TLS connection after its handshake.
    type Conn;
    /// When the whole request must be over, as the face's timers count (`None`: no request timeout).
    type Deadline: Copy;

    /// The deadline of `kms`'s request, starting now: [`request_deadline`].
    fn deadline(&self, kms: &KmsCtx<'_>) -> Self::Deadline;

    /// How long a kept connection may stay idle; `None` when keep-alive is off.
    fn max_idle(&self) -> Option<Duration>;

    /// The bytes of `message` to leave out on a kept connection (its `Connection: close` line), when this request
    /// may go over one.
    fn request_cut(&self, target: &Target, message: &[u8]) -> Option<Range<usize>>;

    /// The most recently kept idle connection to the target.
    fn take_idle(&self, target: &Target, max_idle: Duration) -> Option<Self::Conn>;

    /// Whether a kept connection can carry another request: nothing arrived on it while it was idle.
    fn still_idle(&self, conn: &mut Self::Conn) -> impl Future<Output = bool>;

    /// Closes every idle connection to the target (one of them failed: the others likely will).
    fn clear_idle(&self, target: &Target);

    /// Keeps a connection whose conversation left it reusable, if nothing is pending in it.
    fn keep_idle(&self, target: &Target, conn: Self::Conn, max_idle: Duration);

    /// A new connection to the target: connect, then the TLS handshake.
    fn open(
        &self,
        target: &Target,
        deadline: Self::Deadline,
    ) -> impl Future<Output = Result<Self::Conn, KmsIoErrorKind>>;

    /// Writes `before` then `after` (the message, less its cut) and flushes.
    fn write(
        &self,
        conn: &mut Self::Conn,
        before: &[u8],
        after: &[u8],
        deadline: Self::Deadline,
    ) -> impl Future<Output = Result<(), KmsIoErrorKind>>;

    /// Reads at most `buf.len()` bytes; 0 when the peer closed the connection.
    fn read(
        &self,
        conn: &mut Self::Conn,
        buf: &mut [u8],
        deadline: Self::Deadline,
    ) -> impl Future<Output = Result<usize, KmsIoErrorKind>>;
}

/// The deadline of a request starting `now`, and the time it allows (named in a timeout error): the request
/// timeout, or the deadline of the operation the request belongs to ([`KmsCtx::deadline`], set by the runner) if
/// that comes first; `None` when neither applies. Every step (connect, handshake, write, each read) is bounded by it
/// as well as by its own timeout, so no step outlives the operation.
pub(super) fn request_deadline(
    now: Instant,
    request_timeout: Option<Duration>,
    operation: Option<Instant>,
) -> Option<(Instant, Duration)> {
    // A request timeout past what an Instant holds is no limit.
    let own = request_timeout.and_then(|timeout| Some((now.checked_add(timeout)?, timeout)));
    let operation = operation.map(|at| (at, at.saturating_duration_since(now)));
    match (own, operation) {
        (Some(own), Some(operation)) => Some(if operation.0 < own.0 { operation } else { own }),
        (own, operation) => own.or(operation),
    }
}

/// One attempt at one KMS request. No back-off, no retry, no [`KmsCtx::fail`]: those are the runner's.
pub(super) async fn exchange<F: Face>(face: &F, kms: &mut KmsCtx<'_>) -> Result<Exchanged, KmsIoError> {
    let target = Target::of(kms)?;
    let fail = |kind| target.fail(kind);
    let deadline = face.deadline(kms);
    let max_idle = face.max_idle();
    let cut = max_idle.and_then(|_| kms.message().ok().and_then(|message| face.request_cut(&target, message)));

    if let (Some(max_idle), Some(cut)) = (max_idle, &cut) {
        if let Some(mut conn) = face.take_idle(&target, max_idle) {
            if !face.still_idle(&mut conn).await {
                face.clear_idle(&target);
            } else {
                match converse(face, &mut conn, kms, Some(cut.clone()), deadline).await {
                    Ok(conversed) => return Ok(keep(face, &target, conn, conversed)),
                    Err(failed) => {
                        face.clear_idle(&target);
                        if !failed.closed_while_idle(&target) {
                            return Err(fail(failed.kind));
                        }
                    }
                }
            }
        }
    }

    let mut conn = face.open(&target, deadline).await.map_err(fail)?;
    match converse(face, &mut conn, kms, cut, deadline).await {
        Ok(conversed) => Ok(keep(face, &target, conn, conversed)),
        Err(failed) => Err(fail(failed.kind)),
    }
}

/// Returns a connection to the pool if its conversation left it reusable.
fn keep<F: Face>(face: &F, target: &Target, conn: F::Conn, conversed: Conversed) -> Exchanged {
    if let (true, Some(max_idle)) = (conversed.reusable, face.max_idle()) {
        face.keep_idle(target, conn, max_idle);
    }
    conversed.exchanged
}

/// After the handshake: write the request (without the `cut` bytes, on a kept-alive connection), read and feed
/// the reply.
async fn converse<F: Face>(
    face: &F,
    conn: &mut F::Conn,
    kms: &mut KmsCtx<'_>,
    cut: Option<Range<usize>>,
    deadline: F::Deadline,
) -> Result<Conversed, Failed> {
    // Written from libmongocrypt's buffer (no copy: for Azure and GCP it holds the access token).
    let message = kms.message().map_err(KmsIoErrorKind::Mongocrypt)?;
    let (before, after) = match &cut {
        Some(cut) => (&message[..cut.start], &message[cut.end..]),
        None => (message, &[][..]),
    };
    face.write(conn, before, after, deadline).await?;

    let mut buf = vec![0u8; 16 * 1024];
    let mut feeder = Feeder::default();
    loop {
        let wanted = feeder.wanted(kms, buf.len());
        if wanted == 0 {
            return Ok(feeder.complete(cut.is_some()));
        }
        let n = match face.read(conn, &mut buf[..wanted], deadline).await {
            Ok(0) => return Err(feeder.failed(closed_early(feeder.received()))),
            Ok(n) => n,
            Err(kind) => return Err(feeder.failed(kind)),
        };
        if let Some(exchanged) = feeder.feed(kms, &buf[..n]).map_err(|kind| feeder.failed(kind))? {
            return Ok(Conversed { exchanged, reusable: false });
        }
    }
}
