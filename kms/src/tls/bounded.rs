//! The blocking face's stream under TLS, bounded by the deadline of the step under way (connect, handshake, write,
//! each read): a socket timeout alone restarts with every byte, so a peer sending a byte at a time could stretch a
//! step without end. Below the transport and the keep-alive pool, which hold such streams.

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use rustls::{ClientConnection, StreamOwned};

use super::connector::KmsStream;

/// A rustls connection of the blocking face over its bounded stream.
pub(super) type BlockingTls = StreamOwned<ClientConnection, Bounded>;

/// When a step must be over, and the timeout to report if it is not.
#[derive(Clone, Copy)]
pub(super) struct StepDeadline {
    pub(super) at: Instant,
    pub(super) after: Duration,
}

/// The stream under TLS, bounded by the deadline of the step under way: before each read and write, the socket's
/// timeouts are set to what is left of it (never zero, which would mean "no timeout" to the socket), and a step
/// whose deadline has passed fails with [`io::ErrorKind::TimedOut`].
pub(super) struct Bounded {
    sock: Box<dyn KmsStream>,
    /// `None` between steps (a kept connection, idle) and when no step timeout can be represented.
    pub(super) step: Option<StepDeadline>,
}

impl Bounded {
    pub(super) fn new(sock: Box<dyn KmsStream>) -> Bounded {
        Bounded { sock, step: None }
    }

    /// The stream itself, without deadline: for the keep-alive check, which does not wait.
    pub(super) fn raw(&mut self) -> &mut Box<dyn KmsStream> {
        &mut self.sock
    }

    fn arm(&self) -> io::Result<()> {
        let Some(step) = self.step else { return Ok(()) };
        let left = step.at.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "the step's deadline passed"));
        }
        self.sock.set_io_timeout(left)
    }
}

impl Read for Bounded {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.arm()?;
        self.sock.read(buf)
    }
}

impl Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.arm()?;
        self.sock.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.arm()?;
        self.sock.flush()
    }
}
