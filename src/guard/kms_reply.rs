//! Checks of KMS replies before libmongocrypt sees them, for inputs on which libmongocrypt (its kms-message parser
//! or the provider code after it) aborts the process instead of failing the request.
//!
//! [`ReplyCheck`] follows one request's reply across feeds: an incremental scan of the HTTP framing (headers, then
//! a `Content-Length` body or chunks), which keeps no copy of the reply except, for GCP and Azure, the body (a few
//! hundred bytes) whose JSON is checked before the byte that completes the reply is fed. KMIP replies get a check
//! of their length field. A feed the check refuses is not passed on, and the request stays refused.
//!
//! The JSON is read by serde_json and the base64 by the `base64` crate. GCP decrypt and Azure unwrap replies carry
//! the plaintext data key, so every copy made here is wiped: the kept body and the decoded bytes are `Zeroizing`,
//! and the body grows by hand (a `Vec`'s own growth would free the old buffer unwiped). serde_json itself copies a
//! string only when it has escape sequences (into its scratch buffer, freed unwiped); base64 needs none and KMS
//! servers send none, so a real reply's key material never lands there. That residue of a reply written with
//! escapes is accepted: it is freed heap memory of this process, which libmongocrypt's own copies of the same reply
//! (kms-message's, unwiped) already are. serde_json's errors name lines and columns, never values: the readers here
//! take any type, so no "invalid type" error quotes a value.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use zeroize::Zeroizing;

use crate::error::Error;
use crate::version::Version;

/// Bodies of GCP and Azure replies longer than this are refused (real ones are under 2 KiB): their JSON must be
/// checked whole, so it is kept.
const MAX_JSON_BODY: usize = 1 << 20;
/// Longest header name kept to compare (`transfer-encoding` is 17 bytes).
const NAME_CAP: usize = 24;

/// Which reply the request expects, from its provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Provider {
    Aws,
    Azure,
    Gcp,
    Kmip,
    Other,
}

impl Provider {
    pub(crate) fn from_id(id: &str) -> Provider {
        let kind = id.split(':').next().unwrap_or("");
        match kind {
            "aws" => Provider::Aws,
            "azure" => Provider::Azure,
            "gcp" => Provider::Gcp,
            "kmip" => Provider::Kmip,
            _ => Provider::Other,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The status line and headers, up to the empty line.
    Head,
    /// A chunk-size line: hex digits, then CRLF.
    ChunkSize,
    /// `remaining` bytes of chunk data.
    ChunkData,
    /// The CRLF after a chunk's data (`crlf_seen` bytes of it so far).
    ChunkEnd,
    /// The CRLF after the last (zero-size) chunk.
    LastChunkEnd,
    /// `remaining` bytes of a `Content-Length` body.
    Body,
    /// The reply is complete, or its framing is not one this check follows (then libmongocrypt judges it).
    Done,
}

/// Which header the current head line is, once its name is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Header {
    Unknown,
    TransferEncoding,
    ContentLength,
    Other,
}

/// The check of one request's reply; see the module documentation.
#[derive(Debug, Clone)]
pub(crate) struct ReplyCheck {
    provider: Provider,
    /// The linked library is older than 1.19 (MONGOCRYPT-910: chunk sizes over 2 GiB).
    before_1_19: bool,
    /// The linked library is older than 1.21 (KMIP lengths over 2 GiB).
    before_1_21: bool,
    /// Set once a feed was refused: every later feed is refused too.
    refused: Option<String>,
    // HTTP
    phase: Phase,
    /// The previous byte was `\r`.
    cr: bool,
    /// Bytes of the current head line so far (0 at its start).
    line_len: usize,
    name: [u8; NAME_CAP],
    name_len: usize,
    header: Header,
    /// How much of `chunked` the current Transfer-Encoding value has matched.
    chunked_match: usize,
    chunked: bool,
    content_length: Option<u64>,
    content_length_bad: bool,
    /// The current Content-Length header's value, while it is read.
    cl_value: Option<u64>,
    cl_count: u32,
    remaining: u64,
    chunk_digits: u32,
    chunk_size: u64,
    crlf_seen: u8,
    /// The body, for GCP and Azure (decoded from chunks); it may hold key material.
    body: Option<Zeroizing<Vec<u8>>>,
    // KMIP
    kmip_seen: usize,
    kmip_len: [u8; 4],
}

fn refuse(why: impl Into<String>) -> Error {
    Error::Kms {
        code: 0,
        message: format!("malformed KMS reply, refused by the binding before libmongocrypt: {}", why.into()),
    }
}

impl ReplyCheck {
    /// The check of a reply from `provider`, for the `linked` library's parser.
    pub(crate) fn new(provider: Provider, linked: &Version) -> ReplyCheck {
        ReplyCheck::fresh(provider, *linked < Version::new(1, 19, 0), *linked < Version::new(1, 21, 0))
    }

    fn fresh(provider: Provider, before_1_19: bool, before_1_21: bool) -> ReplyCheck {
        ReplyCheck {
            provider,
            before_1_19,
            before_1_21,
            refused: None,
            phase: Phase::Head,
            cr: false,
            line_len: 0,
            name: [0; NAME_CAP],
            name_len: 0,
            header: Header::Unknown,
            chunked_match: 0,
            chunked: false,
            content_length: None,
            content_length_bad: false,
            cl_value: None,
            cl_count: 0,
            remaining: 0,
            chunk_digits: 0,
            chunk_size: 0,
            crlf_seen: 0,
            body: matches!(provider, Provider::Gcp | Provider::Azure).then(|| Zeroizing::new(Vec::new())),
            kmip_seen: 0,
            kmip_len: [0; 4],
        }
    }

    /// Forgets what was fed: libmongocrypt discards it too when a request is retried (`fail`, a retry from
    /// `feed_with_retry`; libmongocrypt ≥ 1.12).
    #[cfg_attr(not(any(mongocrypt_has_kms_ctx_fail, mongocrypt_has_kms_ctx_feed_with_retry)), allow(dead_code))]
    pub(crate) fn reset(&mut self) {
        *self = ReplyCheck::fresh(self.provider, self.before_1_19, self.before_1_21);
    }

    /// Checks `bytes`, the next part of the reply, before it is fed. `Err` means: do not feed it.
    pub(crate) fn check(&mut self, bytes: &[u8]) -> Result<(), Error> {
        if let Some(why) = &self.refused {
            return Err(refuse(format!("an earlier part was refused ({why})")));
        }
        let result = if self.provider == Provider::Kmip { self.kmip(bytes) } else { self.http(bytes) };
        if let Err(why) = result {
            self.refused = Some(why.clone());
            return Err(refuse(why));
        }
        Ok(())
    }

    /// KMIP: kms-message takes the big-endian length at bytes 4..8 on trust, and libmongocrypt 1.7.2 then
    /// `KMS_ASSERT`s (abort) in `mongocrypt_kms_ctx_bytes_needed` once the bytes it wants exceed `INT32_MAX`
    /// (`want_bytes_pending <= INT32_MAX`). 1.21.0 fails the request instead; the versions between are not known to
    /// be fixed, so the check runs before 1.21.
    fn kmip(&mut self, bytes: &[u8]) -> Result<(), String> {
        if self.kmip_seen >= 8 {
            return Ok(());
        }
        for &b in bytes.iter().take(8 - self.kmip_seen) {
            if self.kmip_seen >= 4 {
                self.kmip_len[self.kmip_seen - 4] = b;
            }
            self.kmip_seen += 1;
        }
        if self.kmip_seen == 8 && self.before_1_21 {
            let len = u32::from_be_bytes(self.kmip_len);
            if len >= 0x7fff_0000 {
                return Err(format!("KMIP reply length {len} is over 2 GiB (libmongocrypt before 1.21 aborts)"));
            }
        }
        Ok(())
    }

    /// HTTP framing. kms-message (1.7.2 to 1.21.0, every version tested, so this runs on all) takes the two bytes
    /// after a chunk's data for its CRLF without looking; when the chunk is longer than declared (`1\r\nXY\r\n`) or
    /// a CRLF comes early, the next chunk-size line gets a negative length and `KMS_ASSERT (len >= 0)` aborts.
    /// Before 1.19 a chunk size of 0x7ffffffe or more also overflowed (MONGOCRYPT-910, a SIGSEGV). So chunks must
    /// be exactly: hex size (before 1.19: 1 to 8 digits, under 2 GiB), CRLF, that many bytes, CRLF, ending with a
    /// zero-size chunk and CRLF (no trailers).
    fn http(&mut self, bytes: &[u8]) -> Result<(), String> {
        let mut i = 0;
        while i < bytes.len() {
            match self.phase {
                Phase::Head => {
                    self.head_byte(bytes[i])?;
                    i += 1;
                }
                Phase::ChunkSize => {
                    let b = bytes[i];
                    i += 1;
                    if self.cr {
                        if b != b'\n' {
                            return Err("a chunk-size line has a CR without LF".into());
                        }
                        self.cr = false;
                        if self.chunk_digits == 0 {
                            return Err("an empty chunk-size line".into());
                        }
                        if self.chunk_size == 0 {
                            self.phase = Phase::LastChunkEnd;
                        } else {
                            self.remaining = self.chunk_size;
                            self.phase = Phase::ChunkData;
                        }
                        self.crlf_seen = 0;
                    } else if b == b'\r' {
                        self.cr = true;
                    } else if let Some(d) = (b as char).to_digit(16) {
                        self.chunk_digits = self.chunk_digits.saturating_add(1);
                        self.chunk_size = self.chunk_size.saturating_mul(16).saturating_add(u64::from(d));
                        // MONGOCRYPT-910: before 1.19 a size of 0x7ffffffe or more (also reached by wrapping, with
                        // more than 8 digits) overflows and the parser reads out of bounds; 1.19 reports "Failed to
                        // parse hex chunk length" itself, so the binding leaves those to it.
                        if (self.chunk_digits > 8 || self.chunk_size >= 0x7fff_0000) && self.before_1_19 {
                            return Err("a chunk size over 2 GiB".into());
                        }
                    } else {
                        return Err(format!("a chunk-size line holds {:?}, not a hex digit", b as char));
                    }
                }
                Phase::ChunkData => {
                    let take = (bytes.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.keep_body(&bytes[i..i + take])?;
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.phase = Phase::ChunkEnd;
                    }
                }
                Phase::ChunkEnd | Phase::LastChunkEnd => {
                    let want = if self.crlf_seen == 0 { b'\r' } else { b'\n' };
                    if bytes[i] != want {
                        return Err("a chunk is longer than its declared size (no CRLF after its data)".into());
                    }
                    i += 1;
                    self.crlf_seen += 1;
                    if self.crlf_seen == 2 {
                        if self.phase == Phase::LastChunkEnd {
                            self.phase = Phase::Done;
                            self.body_complete()?;
                        } else {
                            self.phase = Phase::ChunkSize;
                            self.chunk_digits = 0;
                            self.chunk_size = 0;
                        }
                    }
                }
                Phase::Body => {
                    let take = (bytes.len() - i).min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
                    self.keep_body(&bytes[i..i + take])?;
                    i += take;
                    self.remaining -= take as u64;
                    if self.remaining == 0 {
                        self.phase = Phase::Done;
                        self.body_complete()?;
                    }
                }
                Phase::Done => return Ok(()),
            }
        }
        Ok(())
    }

    fn keep_body(&mut self, data: &[u8]) -> Result<(), String> {
        if let Some(body) = &mut self.body {
            let needed = body.len() + data.len();
            if needed > MAX_JSON_BODY {
                return Err(format!("a {:?} reply body over {MAX_JSON_BODY} bytes", self.provider));
            }
            if needed > body.capacity() {
                // Grown by hand: the old buffer is dropped as `Zeroizing`, wiped, where `Vec` would free it as is.
                let mut grown = Zeroizing::new(Vec::with_capacity(needed.max(2 * body.capacity()).min(MAX_JSON_BODY)));
                grown.extend_from_slice(body);
                *body = grown;
            }
            body.extend_from_slice(data);
        }
        Ok(())
    }

    /// One byte of the status line or headers.
    fn head_byte(&mut self, b: u8) -> Result<(), String> {
        if self.cr && b == b'\n' {
            // End of a line: "\r\n" right at its start is the empty line that ends the head.
            self.cr = false;
            let empty = self.line_len == 1; // only the CR
            self.end_header_line();
            self.line_len = 0;
            self.name_len = 0;
            self.header = Header::Unknown;
            if empty {
                return self.head_done();
            }
            return Ok(());
        }
        self.cr = b == b'\r';
        self.line_len += 1;
        if self.cr {
            return Ok(());
        }
        match self.header {
            Header::Unknown => {
                if b == b':' {
                    let name = self.name[..self.name_len].trim_ascii();
                    self.header = if name.eq_ignore_ascii_case(b"transfer-encoding") {
                        self.chunked_match = 0;
                        Header::TransferEncoding
                    } else if name.eq_ignore_ascii_case(b"content-length") {
                        self.cl_count += 1;
                        self.cl_value = Some(0);
                        Header::ContentLength
                    } else {
                        Header::Other
                    };
                } else if self.name_len < NAME_CAP {
                    self.name[self.name_len] = b;
                    self.name_len += 1;
                } else {
                    self.header = Header::Other; // a name longer than any this check follows
                }
            }
            Header::TransferEncoding => {
                const CHUNKED: &[u8] = b"chunked";
                if self.chunked_match < CHUNKED.len() {
                    if b.eq_ignore_ascii_case(&CHUNKED[self.chunked_match]) {
                        self.chunked_match += 1;
                        if self.chunked_match == CHUNKED.len() {
                            self.chunked = true;
                        }
                    } else {
                        self.chunked_match = usize::from(b.eq_ignore_ascii_case(&b'c'));
                    }
                }
            }
            Header::ContentLength => match (b, self.cl_value) {
                (b'0'..=b'9', Some(v)) => {
                    self.cl_value = v.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0')));
                    if self.cl_value.is_none() {
                        self.content_length_bad = true;
                    }
                }
                (b' ' | b'\t', _) => {}
                _ => self.content_length_bad = true,
            },
            Header::Other => {}
        }
        Ok(())
    }

    fn end_header_line(&mut self) {
        if self.header == Header::ContentLength {
            match self.cl_value.take() {
                Some(v) => self.content_length = Some(v),
                None => self.content_length_bad = true,
            }
        }
    }

    fn head_done(&mut self) -> Result<(), String> {
        if self.chunked && self.cl_count > 0 {
            return Err("both Transfer-Encoding: chunked and Content-Length".into());
        }
        if self.chunked {
            self.phase = Phase::ChunkSize;
            self.chunk_digits = 0;
            self.chunk_size = 0;
            return Ok(());
        }
        if self.cl_count > 1 {
            return Err("more than one Content-Length".into());
        }
        match (self.content_length, self.content_length_bad) {
            (Some(n), false) if n > 0 => {
                self.remaining = n;
                self.phase = Phase::Body;
                Ok(())
            }
            (Some(_), false) => {
                self.phase = Phase::Done;
                self.body_complete()
            }
            // A bad Content-Length or none: libmongocrypt fails or reads no body; nothing more to follow.
            _ => {
                self.phase = Phase::Done;
                Ok(())
            }
        }
    }

    /// The whole body is known, before the byte that completes the reply is fed.
    fn body_complete(&mut self) -> Result<(), String> {
        let Some(body) = self.body.take() else { return Ok(()) };
        let fields: &[&str] = match self.provider {
            Provider::Gcp => &["ciphertext", "plaintext"],
            Provider::Azure => &["value"],
            _ => return Ok(()),
        };
        check_json_fields(&body, fields, self.provider)
    }
}

/// GCP: libmongocrypt (1.7.2 to 1.21.0) decodes `ciphertext` (encrypt) or `plaintext` (decrypt) with
/// `kms_message_b64_pton` and `_ctx_done_gcp` asserts `outlen <= UINT32_MAX` on its -1 for anything that is not
/// strict base64 (even `"AA"`, unpadded; or an empty string). Azure's `value` (base64url) gets the same check:
/// libmongocrypt fails those with "Failed to base64 decode", so refusing them first changes only the message.
/// The top-level members with these names (every one, as libbson finds the first and a JSON reader the last) must
/// be valid; a body that does not parse as JSON is refused when it could hide such a member.
fn check_json_fields(body: &[u8], fields: &[&str], provider: Provider) -> Result<(), String> {
    let mut reader = serde_json::Deserializer::from_slice(body);
    let read = reader.deserialize_map(TopLevel { fields, provider }).and_then(|refusal| reader.end().map(|()| refusal));
    match read {
        Ok(None) => Ok(()),
        Ok(Some(refusal)) => Err(refusal),
        Err(e) => {
            let suspicious =
                body.contains(&b'\\') || fields.iter().any(|f| body.windows(f.len()).any(|w| w == f.as_bytes()));
            if suspicious {
                return Err(format!("a {provider:?} reply body that is not valid JSON ({e})"));
            }
            Ok(())
        }
    }
}

/// Reads the top-level object: each member named in `fields` through [`Base64Field`], the others skipped. Its
/// value is the first refusal.
struct TopLevel<'f> {
    fields: &'f [&'f str],
    provider: Provider,
}

impl<'de> Visitor<'de> for TopLevel<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Option<String>, A::Error> {
        let mut refusal = None;
        while let Some(name) = members.next_key_seed(FieldName(self.fields))? {
            let Some(name) = name else {
                members.next_value::<IgnoredAny>()?;
                continue;
            };
            let refused = members.next_value_seed(Base64Field { name, provider: self.provider })?;
            refusal = refusal.or(refused);
        }
        Ok(refusal)
    }
}

/// A member's name, as the one of `fields` it is (after unescaping), or `None`; never copied.
struct FieldName<'f>(&'f [&'f str]);

impl<'de, 'f> DeserializeSeed<'de> for FieldName<'f> {
    type Value = Option<&'f str>;

    fn deserialize<D: Deserializer<'de>>(self, names: D) -> Result<Option<&'f str>, D::Error> {
        names.deserialize_str(self)
    }
}

impl<'f> Visitor<'_> for FieldName<'f> {
    type Value = Option<&'f str>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Option<&'f str>, E> {
        Ok(self.0.iter().find(|field| **field == name).copied())
    }
}

/// The value of a member that libmongocrypt base64-decodes: a refusal if it is a string that is not valid
/// base64; any other type is libmongocrypt's to report.
struct Base64Field<'f> {
    name: &'f str,
    provider: Provider,
}

impl<'de> DeserializeSeed<'de> for Base64Field<'_> {
    type Value = Option<String>;

    fn deserialize<D: Deserializer<'de>>(self, value: D) -> Result<Option<String>, D::Error> {
        value.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Base64Field<'_> {
    type Value = Option<String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_str<E>(self, value: &str) -> Result<Option<String>, E> {
        let ok = match self.provider {
            Provider::Azure => base64url_ok(value.as_bytes()),
            _ => base64_strict_ok(value.as_bytes()),
        };
        Ok((!ok).then(|| {
            format!("{:?} reply field {:?} is not valid base64: {:?}", self.provider, self.name, truncate(value))
        }))
    }

    fn visit_bool<E>(self, _: bool) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_i64<E>(self, _: i64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_u64<E>(self, _: u64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_f64<E>(self, _: f64) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<String>, E> {
        Ok(None)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut items: A) -> Result<Option<String>, A::Error> {
        while items.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut members: A) -> Result<Option<String>, A::Error> {
        while members.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(None)
    }
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(40) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Whether `encoded` decodes with `engine`. The decoded bytes may be a data key: they go to a wiped buffer.
fn decodes(engine: &GeneralPurpose, encoded: &[u8]) -> bool {
    let mut decoded = Zeroizing::new(vec![0; base64::decoded_len_estimate(encoded.len())]);
    engine.decode_slice(encoded, &mut decoded).is_ok()
}

/// Standard base64, padded, non-empty, with the unused bits of the last group zero (the decoder rejects others).
fn base64_strict_ok(s: &[u8]) -> bool {
    !s.is_empty() && decodes(&base64::engine::general_purpose::STANDARD, s)
}

/// base64url as Azure sends it (unpadded; padding to a whole group and the standard alphabet accepted too):
/// non-empty, unused bits zero.
fn base64url_ok(s: &[u8]) -> bool {
    const PADDED: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    const UNPADDED: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::RequireNone),
    );
    if s.is_empty() || s.starts_with(b"=") {
        return false;
    }
    // libmongocrypt maps base64url to base64 before decoding, so both alphabets pass; the mapped copy is wiped.
    let url: Zeroizing<Vec<u8>> = Zeroizing::new(
        s.iter()
            .map(|&c| match c {
                b'+' => b'-',
                b'/' => b'_',
                c => c,
            })
            .collect(),
    );
    decodes(if s.ends_with(b"=") { &PADDED } else { &UNPADDED }, &url)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The oldest and the newest library the binding is tested with, and one on each side of 1.19.
    const VERSIONS: [Version; 4] =
        [Version::new(1, 7, 2), Version::new(1, 17, 0), Version::new(1, 19, 0), Version::new(1, 21, 0)];

    /// Feeds `reply` in one piece to a check for each of [`VERSIONS`]; the result, the same on each.
    fn feed_all(provider: Provider, reply: &[u8]) -> Result<(), Error> {
        feed_all_on(provider, reply, &VERSIONS)
    }

    fn feed_all_on(provider: Provider, reply: &[u8], versions: &[Version]) -> Result<(), Error> {
        let results: Vec<_> = versions.iter().map(|v| ReplyCheck::new(provider, v).check(reply)).collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        results.into_iter().next().unwrap()
    }

    /// Feeds `reply` a byte at a time to a check for each of [`VERSIONS`]; the result, the same on each.
    fn feed_bytewise(provider: Provider, reply: &[u8]) -> Result<(), Error> {
        let results: Vec<_> = VERSIONS
            .iter()
            .map(|v| {
                let mut c = ReplyCheck::new(provider, v);
                reply.iter().try_for_each(|b| c.check(std::slice::from_ref(b)))
            })
            .collect();
        assert!(results.windows(2).all(|w| w[0] == w[1]), "{results:?}");
        results.into_iter().next().unwrap()
    }

    const CHUNKED: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";

    #[test]
    fn chunked_framing() {
        for good in ["1\r\nX\r\n0\r\n\r\n", "2\r\nXY\r\n0\r\n\r\n", "A\r\n0123456789\r\n0\r\n\r\n"] {
            let reply = format!("{CHUNKED}{good}");
            assert!(feed_all(Provider::Aws, reply.as_bytes()).is_ok(), "{good:?}");
            assert!(feed_bytewise(Provider::Aws, reply.as_bytes()).is_ok(), "{good:?}");
        }
        // Chunk sizes over 2 GiB: refused before 1.19 (MONGOCRYPT-910), left to libmongocrypt from 1.19.
        for huge in ["7ffffffe\r\nX", "17ffffffe\r\nX"] {
            let reply = format!("{CHUNKED}{huge}");
            let before = feed_all_on(Provider::Aws, reply.as_bytes(), &VERSIONS[..2]).unwrap_err();
            assert_eq!(
                before.message(),
                "malformed KMS reply, refused by the binding before libmongocrypt: a chunk size over 2 GiB"
            );
            assert_eq!(feed_all_on(Provider::Aws, reply.as_bytes(), &VERSIONS[2..]), Ok(()));
        }
        for bad in ["1\r\nXY\r\n", "2\r\nX\r\n\r\n", "\r\n", "1;x\r\nX\r\n", "0\r\nX"] {
            let reply = format!("{CHUNKED}{bad}");
            assert!(feed_all(Provider::Aws, reply.as_bytes()).is_err(), "{bad:?}");
            assert!(feed_bytewise(Provider::Aws, reply.as_bytes()).is_err(), "{bad:?}");
        }
        // Not chunked: the body is not looked at.
        assert!(feed_all(Provider::Aws, b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n1\r\nXY\r\n").is_ok());
        // Once refused, stays refused.
        let mut c = ReplyCheck::new(Provider::Aws, &Version::new(1, 7, 2));
        assert!(c.check(format!("{CHUNKED}1\r\nXY").as_bytes()).is_err());
        assert!(c.check(b"\r\n0\r\n\r\n").is_err());
        c.reset();
        assert!(c.check(format!("{CHUNKED}1\r\nX\r\n0\r\n\r\n").as_bytes()).is_ok());
    }

    #[test]
    fn gcp_and_azure_base64() {
        let reply = |body: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        for (provider, body, ok) in [
            (Provider::Gcp, r#"{"name": "k", "ciphertext": "AAAA"}"#, true),
            (Provider::Gcp, r#"{"ciphertext": "AA=="}"#, true),
            (Provider::Gcp, r#"{"ciphertext": "AA"}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AB=="}"#, false),
            (Provider::Gcp, r#"{"ciphertext": ""}"#, false),
            (Provider::Gcp, r#"{"plaintext": "A==="}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AAAA", "ciphertext": "!"}"#, false),
            (Provider::Gcp, r#"{"\u0063iphertext": "AA"}"#, false),
            (Provider::Gcp, r#"{"ciphertext": "AAAA""#, false),
            (Provider::Gcp, r#"{"access_token": "x", "expires_in": 3599}"#, true),
            (Provider::Gcp, "<html>bad gateway</html>", true),
            (Provider::Azure, r#"{"kid": "k", "value": "AA"}"#, true),
            (Provider::Azure, r#"{"value": "A"}"#, false),
            (Provider::Azure, r#"{"value": "a-_b"}"#, true),
            (Provider::Azure, r#"{"value": "a*b"}"#, false),
            (Provider::Aws, r#"{"CiphertextBlob": "!"}"#, true),
        ] {
            let r = reply(body);
            assert_eq!(feed_all(provider, r.as_bytes()).is_ok(), ok, "{provider:?} {body}");
            assert_eq!(feed_bytewise(provider, r.as_bytes()).is_ok(), ok, "{provider:?} {body}");
            let chunked = format!("{CHUNKED}{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
            assert_eq!(feed_all(provider, chunked.as_bytes()).is_ok(), ok, "chunked {provider:?} {body}");
        }
    }

    #[test]
    fn ambiguous_framing() {
        let both = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert!(feed_all(Provider::Aws, both.as_bytes()).is_err());
        assert!(feed_all(Provider::Gcp, b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n").is_err());
    }

    #[test]
    fn refusals_name_the_fault() {
        let reply = |body: &str| format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let refused = |why: &str| {
            Err(Error::Kms {
                code: 0,
                message: format!("malformed KMS reply, refused by the binding before libmongocrypt: {why}"),
            })
        };
        assert_eq!(
            feed_all(Provider::Gcp, reply(r#"{"plaintext": "AB=="}"#).as_bytes()),
            refused(r#"Gcp reply field "plaintext" is not valid base64: "AB==""#)
        );
        assert_eq!(
            feed_all(Provider::Azure, reply(r#"{"value": "AA="}"#).as_bytes()),
            refused(r#"Azure reply field "value" is not valid base64: "AA=""#)
        );
        // The first bad member is named, whatever follows; a member that is not a string is libmongocrypt's.
        assert_eq!(
            feed_all(Provider::Gcp, reply(r#"{"ciphertext": 5, "plaintext": "!", "ciphertext": "AA"}"#).as_bytes()),
            refused(r#"Gcp reply field "plaintext" is not valid base64: "!""#)
        );
        assert_eq!(feed_all(Provider::Gcp, reply(r#"{"ciphertext": [{"a": "!"}], "x": null}"#).as_bytes()), Ok(()));
        // JSON that does not parse is refused when it could hide a member that aborts.
        let error = feed_all(Provider::Gcp, reply(r#"{"ciphertext": "AAAA",}"#).as_bytes()).unwrap_err();
        assert!(error.message().contains("a Gcp reply body that is not valid JSON"), "{error}");
        let r = reply(r#"{"ciphertext": "AAAA"}"#);
        let mut c = ReplyCheck::new(Provider::Gcp, &VERSIONS[0]);
        c.check(r.as_bytes()).unwrap();
        // Bytes after a complete reply are libmongocrypt's to judge.
        assert_eq!(c.check(b"more"), Ok(()));
    }

    #[test]
    fn bodies_grow_in_wiped_buffers_up_to_the_cap() {
        // A chunked body of many small chunks grows its buffer; every size is accepted up to the cap.
        let body = format!(r#"{{"ciphertext": "{}"}}"#, "A".repeat(4000));
        let mut chunked = CHUNKED.to_string();
        for piece in body.as_bytes().chunks(7) {
            chunked.push_str(&format!("{:x}\r\n{}\r\n", piece.len(), std::str::from_utf8(piece).unwrap()));
        }
        chunked.push_str("0\r\n\r\n");
        assert_eq!(feed_all(Provider::Gcp, chunked.as_bytes()), Ok(()));
        let over = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", MAX_JSON_BODY + 1);
        let mut c = ReplyCheck::new(Provider::Azure, &VERSIONS[3]);
        c.check(over.as_bytes()).unwrap();
        let error = c.check(&vec![b' '; MAX_JSON_BODY + 1]).unwrap_err();
        assert!(error.message().ends_with(&format!("a Azure reply body over {MAX_JSON_BODY} bytes")), "{error}");
    }

    #[test]
    fn kmip_lengths_over_2_gib_before_1_21() {
        let reply = [0x42, 0x00, 0x7b, 0x01, 0x7f, 0xff, 0x00, 0x00];
        let error = feed_all_on(Provider::Kmip, &reply, &VERSIONS[..3]).unwrap_err();
        assert!(error
            .message()
            .ends_with("KMIP reply length 2147418112 is over 2 GiB (libmongocrypt before 1.21 aborts)"));
        assert_eq!(feed_all_on(Provider::Kmip, &reply, &VERSIONS[3..]), Ok(()));
        let small = [0x42, 0x00, 0x7b, 0x01, 0x00, 0x00, 0x01, 0x00];
        assert_eq!(feed_bytewise(Provider::Kmip, &small), Ok(()));
    }
}
