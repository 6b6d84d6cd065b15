//! The handshake of the MongoDB Handshake spec: legacy hello with `helloOk: true` and the `client` metadata,
//! kept within the spec's 512 bytes.

use libmongocrypt::bson::{doc, Document, RawDocumentBuf};

use super::error::MongocryptdError;
use super::wire::{ADMIN_DB, HELLO_COMMAND};

/// The handshake spec's limit on the `client` document, BSON overhead included.
pub(crate) const CLIENT_METADATA_LIMIT: usize = 512;

/// The name this crate gives itself in `client.driver.name`.
const DRIVER_NAME: &str = "libmongocrypt-driver";

/// The delimiter between a wrapped driver's value and its wrapper's (the handshake spec's recommendation).
const DELIMITER: char = '|';

/// What a library that wraps this crate adds to the handshake's `client` metadata: the spec's
/// `DriverInfoOptions`. Each value is appended to this crate's own, after a `|`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriverInfo {
    /// The wrapping library's name, appended to `client.driver.name`.
    pub name: String,
    /// Its version, appended to `client.driver.version`.
    pub version: Option<String>,
    /// Its platform details, appended to `client.platform`.
    pub platform: Option<String>,
}

/// `client.os.type`: what `uname -s` says on POSIX systems, as the spec asks.
fn os_type() -> &'static str {
    match std::env::consts::OS {
        "linux" | "android" => "Linux",
        "macos" | "ios" => "Darwin",
        "windows" => "Windows",
        "freebsd" | "openbsd" | "netbsd" | "dragonfly" => "BSD",
        "" => "unknown",
        other => other,
    }
}

/// The `client` document of the handshake, with `info` appended, truncated to 512 bytes in the spec's order:
/// the optional `os` fields go first, then `platform` is shortened (it ends with the least important part).
pub(crate) fn client_metadata(info: Option<&DriverInfo>) -> Result<RawDocumentBuf, MongocryptdError> {
    let mut name = DRIVER_NAME.to_owned();
    let mut version = env!("CARGO_PKG_VERSION").to_owned();
    let mut platform = format!("Rust, libmongocrypt {}", libmongocrypt::version());
    if let Some(info) = info {
        let values = [Some(&info.name), info.version.as_ref(), info.platform.as_ref()];
        if let Some(bad) = values.into_iter().flatten().find(|v| v.contains(DELIMITER)) {
            return Err(MongocryptdError::InvalidDriverInfo(format!("{bad:?} contains the delimiter {DELIMITER:?}")));
        }
        for (field, value) in [(&mut name, Some(&info.name)), (&mut version, info.version.as_ref())] {
            if let Some(value) = value {
                field.push(DELIMITER);
                field.push_str(value);
            }
        }
        if let Some(value) = &info.platform {
            platform.push(DELIMITER);
            platform.push_str(value);
        }
    }
    let mut metadata = doc! {
        "driver": { "name": name, "version": version },
        "os": { "type": os_type(), "architecture": std::env::consts::ARCH },
        "platform": platform.as_str(),
    };
    let mut size = encoded_len(&metadata)?;
    if size > CLIENT_METADATA_LIMIT {
        metadata.insert("os", doc! { "type": os_type() });
        size = encoded_len(&metadata)?;
    }
    if size > CLIENT_METADATA_LIMIT {
        // A string's encoding grows by exactly its length: cut the excess at a character boundary.
        let excess = size - CLIENT_METADATA_LIMIT;
        let mut keep = platform.len().saturating_sub(excess);
        while !platform.is_char_boundary(keep) {
            keep -= 1;
        }
        platform.truncate(keep);
        metadata.insert("platform", platform.as_str());
        size = encoded_len(&metadata)?;
    }
    if size > CLIENT_METADATA_LIMIT {
        return Err(MongocryptdError::InvalidDriverInfo(format!(
            "the client metadata is {size} bytes without os details and platform, above the handshake spec's \
             {CLIENT_METADATA_LIMIT}: shorten the driver name or version"
        )));
    }
    to_raw(&metadata)
}

/// The handshake command's body: `{isMaster: 1, helloOk: true, client: metadata, $db: "admin"}`.
pub(crate) fn hello_body(metadata: &RawDocumentBuf) -> Result<Vec<u8>, MongocryptdError> {
    let client =
        Document::try_from(metadata.as_ref()).map_err(|e| MongocryptdError::InvalidDriverInfo(e.to_string()))?;
    let hello = doc! { HELLO_COMMAND: 1, "helloOk": true, "client": client, "$db": ADMIN_DB };
    Ok(to_raw(&hello)?.as_bytes().to_vec())
}

fn to_raw(document: &Document) -> Result<RawDocumentBuf, MongocryptdError> {
    RawDocumentBuf::try_from(document).map_err(|e| MongocryptdError::InvalidDriverInfo(e.to_string()))
}

fn encoded_len(document: &Document) -> Result<usize, MongocryptdError> {
    Ok(to_raw(document)?.as_bytes().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_metadata_names_this_crate_and_appends_a_wrapper() {
        let plain = Document::try_from(client_metadata(None).unwrap().as_ref()).unwrap();
        assert_eq!(
            plain.get_document("driver").unwrap(),
            &doc! { "name": DRIVER_NAME, "version": env!("CARGO_PKG_VERSION") }
        );
        assert_eq!(plain.get_document("os").unwrap().get_str("type").unwrap(), os_type());
        let info = DriverInfo { name: "wrapper".into(), version: Some("2.0".into()), platform: Some("tokio".into()) };
        let wrapped = Document::try_from(client_metadata(Some(&info)).unwrap().as_ref()).unwrap();
        let driver = wrapped.get_document("driver").unwrap();
        assert_eq!(driver.get_str("name").unwrap(), format!("{DRIVER_NAME}|wrapper"));
        assert_eq!(driver.get_str("version").unwrap(), format!("{}|2.0", env!("CARGO_PKG_VERSION")));
        assert!(wrapped.get_str("platform").unwrap().ends_with("|tokio"));
        let bad = DriverInfo { name: "a|b".into(), ..DriverInfo::default() };
        assert!(matches!(client_metadata(Some(&bad)), Err(MongocryptdError::InvalidDriverInfo(_))));
    }

    #[test]
    fn oversized_metadata_loses_os_details_then_platform_and_fits_exactly() {
        let info = DriverInfo { name: "w".into(), version: None, platform: Some("é".repeat(400)) };
        let raw = client_metadata(Some(&info)).unwrap();
        assert!(raw.as_bytes().len() <= CLIENT_METADATA_LIMIT && raw.as_bytes().len() >= CLIENT_METADATA_LIMIT - 1);
        let metadata = Document::try_from(raw.as_ref()).unwrap();
        assert_eq!(metadata.get_document("os").unwrap(), &doc! { "type": os_type() });
        assert!(metadata.get_str("platform").unwrap().starts_with("Rust, libmongocrypt "));
        // Nothing left to cut: the driver name alone is too long.
        let huge = DriverInfo { name: "n".repeat(600), ..DriverInfo::default() };
        assert!(matches!(client_metadata(Some(&huge)), Err(MongocryptdError::InvalidDriverInfo(_))));
    }
}
