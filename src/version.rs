//! The linked libmongocrypt's version (`mongocrypt_version`), as its string and parsed.

use std::cmp::Ordering;
use std::ffi::CStr;
use std::fmt;
use std::str::FromStr;
use std::sync::OnceLock;

use libmongocrypt_sys as sys;

/// The libmongocrypt release this crate is linked against, as the library reports it (for example `1.21.0`).
/// [`Version::linked`] is the same, parsed.
pub fn version() -> &'static str {
    // SAFETY: mongocrypt_version returns a static NUL-terminated string ("A NULL terminated string"); len is an
    // optional out-parameter.
    unsafe { CStr::from_ptr(sys::mongocrypt_version(std::ptr::null_mut())) }.to_str().unwrap_or("unknown")
}

/// A libmongocrypt version: `MAJOR.MINOR.PATCH[-PRE][+BUILD]`, as `mongocrypt_version` reports it.
///
/// Ordered as semantic versions are: by major, minor and patch, then a pre-release before its release
/// (`1.8.0-alpha1 < 1.8.0`); two pre-releases of one release compare as strings. Build metadata (`+...`) is
/// dropped when parsing.
///
/// ```
/// use libmongocrypt::Version;
///
/// let linked = Version::linked();
/// assert!(*linked >= Version::new(1, 7, 0));
/// assert_eq!(linked.to_string().split('-').next(), libmongocrypt::version().split(['-', '+']).next());
/// assert!("1.8.0-alpha1".parse::<Version>()? < Version::new(1, 8, 0));
/// # Ok::<(), libmongocrypt::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version {
    /// The major version.
    pub major: u32,
    /// The minor version.
    pub minor: u32,
    /// The patch version.
    pub patch: u32,
    /// The pre-release tag after `-`, if any (`alpha1`, or a development build's date).
    pub pre: Option<String>,
}

impl Version {
    /// A release version, without pre-release tag.
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version { major, minor, patch, pre: None }
    }

    /// The linked library's version, parsed once. A string that does not parse (no library does that) reads as
    /// `0.0.0`.
    pub fn linked() -> &'static Version {
        static LINKED: OnceLock<Version> = OnceLock::new();
        LINKED.get_or_init(|| version().parse().unwrap_or(Version::new(0, 0, 0)))
    }
}

impl FromStr for Version {
    type Err = crate::Error;

    fn from_str(s: &str) -> crate::Result<Version> {
        let invalid = || crate::Error::invalid(format!("not a libmongocrypt version: {s:?}"));
        let s = s.split_once('+').map_or(s, |(version, _build)| version);
        let (release, pre) = match s.split_once('-') {
            Some((release, pre)) if !pre.is_empty() => (release, Some(pre.to_owned())),
            Some(_) => return Err(invalid()),
            None => (s, None),
        };
        let mut numbers = release.split('.').map(|n| n.parse::<u32>().map_err(|_| invalid()));
        let (Some(major), Some(minor), Some(patch), None) =
            (numbers.next(), numbers.next(), numbers.next(), numbers.next())
        else {
            return Err(invalid());
        };
        Ok(Version { major: major?, minor: minor?, patch: patch?, pre })
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)?;
        match &self.pre {
            Some(pre) => write!(f, "-{pre}"),
            None => Ok(()),
        }
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Version) -> Ordering {
        (self.major, self.minor, self.patch).cmp(&(other.major, other.minor, other.patch)).then_with(|| {
            match (&self.pre, &other.pre) {
                (None, None) => Ordering::Equal,
                (None, Some(_)) => Ordering::Greater,
                (Some(_), None) => Ordering::Less,
                (Some(a), Some(b)) => a.cmp(b),
            }
        })
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Version) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_releases_pre_releases_and_build_metadata() {
        assert_eq!("1.7.2".parse::<Version>().unwrap(), Version::new(1, 7, 2));
        let dev: Version = "1.13.0-20250101+git0123abcd".parse().unwrap();
        assert_eq!((dev.major, dev.minor, dev.patch, dev.pre.as_deref()), (1, 13, 0, Some("20250101")));
        assert_eq!(dev.to_string(), "1.13.0-20250101");
        for bad in ["", "1", "1.2", "1.2.3.4", "1.x.3", "1.2.3-", "-1.2.3", "1.2.-3"] {
            assert!(bad.parse::<Version>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn orders_as_semantic_versions() {
        let v = |s: &str| s.parse::<Version>().unwrap();
        assert!(v("1.7.2") < v("1.10.1"), "numeric, not lexical");
        assert!(v("1.8.0-alpha1") < v("1.8.0"));
        assert!(v("1.8.0-alpha1") < v("1.8.0-beta1"));
        assert!(v("1.7.99") < v("1.8.0-alpha1"));
        assert_eq!(v("1.21.0+build").cmp(&v("1.21.0")), Ordering::Equal);
    }

    #[test]
    fn linked_is_the_reported_string() {
        let linked = Version::linked();
        assert_eq!(*linked, version().parse::<Version>().unwrap());
        assert!(*linked >= Version::new(1, 7, 0));
    }
}
