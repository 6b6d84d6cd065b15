//! Name lookups within the connect step's time. Neither std's resolver (`getaddrinfo`, whose own limit comes from
//! the system's configuration and can be many seconds per server) nor a [`Resolver`] of the caller's has a timeout,
//! so a lookup runs on a helper thread (tokio's blocking pool on the async face) and the connect step stops waiting
//! when its time is up. A lookup left behind finishes on its own and its answer is dropped.
//!
//! Written here rather than taken from a crate: the DNS clients with timeouts (hickory) replace the system's
//! resolver, and with it `/etc/hosts`, NSS and the platform's configuration, which a KMS or proxy host name must
//! keep.

use std::io;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use super::Resolver;

/// The most lookups that may be left running unanswered, across all transports: while that many are, the resolver
/// is taken to be down and a new lookup fails at once, so that a resolver that never answers cannot pile up threads.
/// Lookups that answer in time are not counted: their number is bounded by the requests running.
const MAX_LEFT_RUNNING: usize = 32;

static LEFT_RUNNING: Stragglers = Stragglers { count: AtomicUsize::new(0), max: MAX_LEFT_RUNNING };

/// The count of lookups whose waiter stopped waiting before they answered.
struct Stragglers {
    count: AtomicUsize,
    max: usize,
}

const RUNNING: u8 = 0;
const ABANDONED: u8 = 1;
const ANSWERED: u8 = 2;

impl Stragglers {
    /// The two ends of a new lookup, unless too many are left running.
    fn start(&'static self) -> io::Result<(Waiting, Running)> {
        if self.count.load(Ordering::Acquire) >= self.max {
            return Err(io::Error::other(format!(
                "{} name lookups were left running without an answer: the resolver is not answering",
                self.max
            )));
        }
        let state = Arc::new(AtomicU8::new(RUNNING));
        Ok((Waiting(self, state.clone()), Running(self, state)))
    }
}

/// The waiter's end of a lookup: dropped before the answer came, it counts the lookup as left running.
struct Waiting(&'static Stragglers, Arc<AtomicU8>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if self.1.compare_exchange(RUNNING, ABANDONED, Ordering::AcqRel, Ordering::Acquire).is_ok() {
            self.0.count.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// The lookup's end, dropped when it has answered (or panicked): a lookup left running is no longer counted.
struct Running(&'static Stragglers, Arc<AtomicU8>);

impl Drop for Running {
    fn drop(&mut self) {
        if self.1.swap(ANSWERED, Ordering::AcqRel) == ABANDONED {
            self.0.count.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// What to look up: `host` and `port` through the caller's resolver or the system's, or a `host:port` string
/// (a proxy's address) through the system's.
pub(super) enum Lookup {
    Host { resolver: Option<Arc<Resolver>>, host: String, port: u16 },
    Address(String),
}

impl Lookup {
    /// The addresses, at once when there is nothing to look up: an IP address needs no resolver of the system's.
    fn literal(&self) -> Option<Vec<SocketAddr>> {
        match self {
            Lookup::Host { resolver: None, host, port } => {
                host.parse::<IpAddr>().ok().map(|ip| vec![SocketAddr::new(ip, *port)])
            }
            Lookup::Address(address) => address.parse::<SocketAddr>().ok().map(|addr| vec![addr]),
            Lookup::Host { .. } => None,
        }
    }

    /// Runs the lookup where it may block. A resolver that panics fails the lookup.
    fn run(self) -> io::Result<Vec<SocketAddr>> {
        match self {
            Lookup::Host { resolver: Some(resolve), host, port } => {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| resolve(&host, port)))
                    .unwrap_or_else(|_| Err(io::Error::other("the resolver panicked")))
            }
            Lookup::Host { resolver: None, host, port } => Ok((host.as_str(), port).to_socket_addrs()?.collect()),
            Lookup::Address(address) => Ok(address.to_socket_addrs()?.collect()),
        }
    }
}

/// The addresses of `lookup`, or `None` once `timeout` has passed without them (blocking face).
pub(super) fn within(lookup: Lookup, timeout: Duration) -> io::Result<Option<Vec<SocketAddr>>> {
    within_counting(&LEFT_RUNNING, lookup, timeout)
}

fn within_counting(
    stragglers: &'static Stragglers,
    lookup: Lookup,
    timeout: Duration,
) -> io::Result<Option<Vec<SocketAddr>>> {
    if let Some(addrs) = lookup.literal() {
        return Ok(Some(addrs));
    }
    let (_waiting, running) = stragglers.start()?;
    let (answer, answered) = mpsc::sync_channel(1);
    std::thread::Builder::new().name("kms-name-lookup".into()).spawn(move || {
        let addrs = lookup.run();
        // Answered before it is sent: a waiter that takes the answer never counts the lookup as left running.
        drop(running);
        // Nobody may be waiting any more: the answer is then dropped.
        let _ = answer.send(addrs);
    })?;
    match answered.recv_timeout(timeout) {
        Ok(addrs) => addrs.map(Some),
        Err(mpsc::RecvTimeoutError::Timeout) => Ok(None),
        Err(mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other("the name lookup ended without an answer")),
    }
}

/// [`within`] on tokio: the lookup runs on the runtime's blocking pool, so that it blocks no worker. A future
/// dropped while it waits (its caller's own deadline) leaves the lookup counted as running without an answer.
#[cfg(feature = "tokio")]
pub(super) async fn within_async(lookup: Lookup, timeout: Duration) -> io::Result<Option<Vec<SocketAddr>>> {
    if let Some(addrs) = lookup.literal() {
        return Ok(Some(addrs));
    }
    let (_waiting, running) = LEFT_RUNNING.start()?;
    let task = ::tokio::task::spawn_blocking(move || {
        let addrs = lookup.run();
        drop(running);
        addrs
    });
    match ::tokio::time::timeout(timeout, task).await {
        Ok(Ok(addrs)) => addrs.map(Some),
        Ok(Err(join)) => Err(io::Error::other(format!("the name lookup ended without an answer: {join}"))),
        Err(_elapsed) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolver(f: impl Fn(&str, u16) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static) -> Option<Arc<Resolver>> {
        Some(Arc::new(f))
    }

    #[test]
    fn addresses_need_no_lookup_and_names_get_one() {
        let ip = Lookup::Host { resolver: None, host: "127.0.0.1".into(), port: 9 };
        assert_eq!(ip.literal(), Some(vec!["127.0.0.1:9".parse().unwrap()]));
        assert_eq!(Lookup::Address("[::1]:3128".into()).literal(), Some(vec!["[::1]:3128".parse().unwrap()]));
        assert_eq!(Lookup::Address("proxy:3128".into()).literal(), None);
        // A caller's resolver sees even an address.
        let mapped = Lookup::Host { resolver: resolver(|_, _| Ok(vec![])), host: "127.0.0.1".into(), port: 9 };
        assert_eq!(mapped.literal(), None);
        let named = Lookup::Host {
            resolver: resolver(|host, port| Ok(vec![SocketAddr::new([10, 0, 0, host.len() as u8].into(), port)])),
            host: "kms".into(),
            port: 443,
        };
        assert_eq!(within(named, Duration::from_secs(10)).unwrap(), Some(vec!["10.0.0.3:443".parse().unwrap()]));
    }

    #[test]
    fn a_lookup_that_does_not_answer_is_left_behind_at_the_timeout() {
        let (release, wait) = mpsc::channel::<()>();
        let wait = std::sync::Mutex::new(wait);
        let stuck = Lookup::Host {
            resolver: resolver(move |_, _| {
                let _ = wait.lock().unwrap().recv();
                Ok(vec![])
            }),
            host: "kms".into(),
            port: 443,
        };
        let started = std::time::Instant::now();
        assert_eq!(within(stuck, Duration::from_millis(50)).unwrap(), None);
        assert!(started.elapsed() < Duration::from_secs(5));
        drop(release);
    }

    #[test]
    fn a_panicking_resolver_fails_the_lookup() {
        let panics = Lookup::Host { resolver: resolver(|_, _| panic!("resolver bug")), host: "kms".into(), port: 1 };
        let err = within(panics, Duration::from_secs(10)).unwrap_err();
        assert_eq!(err.to_string(), "the resolver panicked");
    }

    #[test]
    fn lookups_left_running_are_bounded_and_answered_ones_are_not_counted() {
        static COUNTED: Stragglers = Stragglers { count: AtomicUsize::new(0), max: 2 };
        let answers = || Lookup::Host { resolver: resolver(|_, _| Ok(vec![])), host: "kms".into(), port: 1 };
        for _ in 0..5 {
            assert_eq!(within_counting(&COUNTED, answers(), Duration::from_secs(10)).unwrap(), Some(vec![]));
        }
        assert_eq!(COUNTED.count.load(Ordering::Acquire), 0);
        // Two lookups that do not answer, left behind: the next one fails at once.
        let (release, wait) = mpsc::channel::<()>();
        let wait = Arc::new(std::sync::Mutex::new(wait));
        let stuck = || {
            let wait = wait.clone();
            let resolver = resolver(move |_, _| {
                let _ = wait.lock().unwrap().recv();
                Ok(vec![])
            });
            Lookup::Host { resolver, host: "kms".into(), port: 1 }
        };
        for _ in 0..2 {
            assert_eq!(within_counting(&COUNTED, stuck(), Duration::from_millis(20)).unwrap(), None);
        }
        let err = within_counting(&COUNTED, answers(), Duration::from_secs(10)).unwrap_err();
        assert!(err.to_string().starts_with("2 name lookups were left running"), "{err}");
        // Once they answer, lookups run again.
        drop(release);
        let started = std::time::Instant::now();
        while COUNTED.count.load(Ordering::Acquire) > 0 {
            assert!(started.elapsed() < Duration::from_secs(10), "the left lookups never ended");
            std::thread::sleep(Duration::from_millis(5));
        }
        assert_eq!(within_counting(&COUNTED, answers(), Duration::from_secs(10)).unwrap(), Some(vec![]));
    }
}
