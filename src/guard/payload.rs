//! Payloads inside documents: mongocryptd markings, Queryable Encryption values to decrypt, key documents. Each
//! check refuses what the linked libmongocrypt (the `linked` version, passed in) would abort on, and names why.

use crate::bson::{RawBsonRef, RawDocument};

use super::bson::well_formed_first_valueless;
use crate::error::{Error, Result};
use crate::version::Version;

/// Refuses a mongocryptd reply holding a marking (a binary of subtype 6 whose first byte is 0, then BSON) that
/// libmongocrypt aborts on while it copies the marked value out (`_mongocrypt_buffer_from_iter` `BSON_ASSERT`s):
/// - a top-level value of zero length: null, undefined, MinKey or MaxKey (1.7.2 and 1.21.0; explicit encryption
///   rejects these types, markings are not checked);
/// - BSON inside the marking that is malformed (1.7.2: "wrapper.len >= offset + NULL_BYTE_LEN"). 1.21.0 did not abort
///   on these in 1,000,000 fuzz cases, but cannot use such a marking either, so they are refused on every version.
///
/// A [`check_argument`](super::bson::check_argument) visitor: markings are looked for at every level, in the walk that checks the reply.
pub(crate) fn refuse_bad_marking(subtype: u8, bytes: &[u8]) -> Result<()> {
    match bytes.split_first() {
        Some((0, marking)) if subtype == 6 => check_marking(marking),
        _ => Ok(()),
    }
}

/// The most of a field name a refusal quotes.
const MAX_QUOTED_NAME: usize = 64;

fn check_marking(marking: &[u8]) -> Result<()> {
    let refuse = |why: &str| Err(Error::invalid(format!("mongocryptd marking refused by the binding: {why}")));
    // null, undefined, MaxKey, MinKey: the values of zero length.
    match well_formed_first_valueless(marking) {
        Err(why) => refuse(&format!("malformed BSON inside it ({why})")),
        Ok(Some((kind, name))) => {
            // The name is mongocryptd's (or a peer posing as it): quoted up to MAX_QUOTED_NAME bytes.
            let quoted = String::from_utf8_lossy(&name[..name.len().min(MAX_QUOTED_NAME)]);
            let name = match name.len() {
                len if len > MAX_QUOTED_NAME => format!("{quoted:?}\u{2026} (a name of {len} bytes)"),
                _ => format!("{quoted:?}"),
            };
            let kind =
                crate::bson::spec::ElementType::from(kind).map_or_else(|| format!("{kind:#x}"), |t| format!("{t:?}"));
            refuse(&format!("its {name} is {kind}, which libmongocrypt cannot encrypt"))
        }
        Ok(None) => Ok(()),
    }
}

/// Refuses the Queryable Encryption values (binary subtype 6) that libmongocrypt aborts on while it decrypts them,
/// on the versions seen to abort (one such value in a server reply aborts the client), `linked` being the linked
/// library's version. A [`check_argument`](super::bson::check_argument) visitor: it runs on every binary of every document to decrypt, so anything but subtype 6 with blob type 4, 7, 9,
/// 11, 14, 15 or 17 returns at the first comparison.
///
/// - v1 indexed values (blob type 7 or 9) shorter than 64 bytes, before 1.21: with its data key cached,
///   libmongocrypt 1.7.2 resizes a buffer to 0 bytes in `mc_FLE2IndexedEncryptedValue_add_S_Key` and
///   `_mongocrypt_buffer_resize` `BSON_ASSERT`s (found by the fuzz). 1.21.0 fails it instead; the versions between
///   are not known to be fixed. A real one is longer (key id, type, then an encrypted block with its IV and HMAC).
/// - v2 indexed values (blob type 14, 15 or 17) that are malformed ([`check_indexed_value_v2`]), from 1.11 to
///   before 1.17: seen to abort on 1.13.1 (found by the fuzz: a 109-byte type-14 value). Not on 1.7.2 (which
///   returns these blob types undecrypted), 1.10.1, 1.17.0 or 1.21.0, which fail such values themselves. 1.11, 1.12
///   and 1.14 to 1.16 are untested: refused as on 1.13.
/// - v2 text values (blob type 17) whose edge count needs more than 4 GiB of metadata blocks, from 1.17 to before
///   1.21 ([`refuse_wrapping_text_edge_count`]); from 1.11 to before 1.17 the check above refuses them.
/// - insert payloads (blob type 4, and 11 for v2 from 1.8) that libmongocrypt's parser fails, before 1.13, or
///   whose value is too short to decrypt, before 1.21 ([`check_insert_payload`]).
#[inline]
pub(crate) fn refuse_aborting_value(linked: &Version, subtype: u8, bytes: &[u8]) -> Result<()> {
    match bytes.first() {
        Some(7 | 9) if subtype == 6 && bytes.len() < 64 && *linked < Version::new(1, 21, 0) => {
            Err(Error::invalid(format!(
                "Queryable Encryption indexed value of {} bytes refused by the binding (libmongocrypt before 1.21 \
                 aborts on one shorter than 64)",
                bytes.len()
            )))
        }
        Some(&blob_type @ (4 | 11)) if subtype == 6 => {
            if *linked >= Version::new(1, 21, 0) || (blob_type == 11 && *linked < Version::new(1, 8, 0)) {
                return Ok(());
            }
            let refuse = |what: String, why: &str| {
                Err(Error::invalid(format!(
                    "Queryable Encryption insert payload of {} bytes (blob type {blob_type}) {what}, refused by the \
                     binding (libmongocrypt {why})",
                    bytes.len()
                )))
            };
            match check_insert_payload(blob_type, bytes) {
                Ok(()) => Ok(()),
                Err(PayloadFault::Malformed(what)) if *linked < Version::new(1, 13, 0) => {
                    refuse(what, "before 1.13 frees twice what it parsed of a payload it then fails")
                }
                // Failed by libmongocrypt's parser, without an abort.
                Err(PayloadFault::Malformed(_)) => Ok(()),
                Err(PayloadFault::ShortValue { len, min }) => refuse(
                    format!("with a value of {len} bytes"),
                    &format!("before 1.21 aborts decrypting one shorter than {min}"),
                ),
            }
        }
        Some(&blob_type @ (14 | 15 | 17)) if subtype == 6 => {
            if blob_type == 17 && *linked >= Version::new(1, 17, 0) && *linked < Version::new(1, 21, 0) {
                return refuse_wrapping_text_edge_count(bytes);
            }
            if *linked < Version::new(1, 11, 0) || *linked >= Version::new(1, 17, 0) {
                return Ok(());
            }
            check_indexed_value_v2(blob_type, bytes).map_err(|why| {
                Error::invalid(format!(
                    "Queryable Encryption v2 indexed value of {} bytes (blob type {blob_type}), {why}, refused by the \
                     binding (libmongocrypt 1.13 aborts on malformed ones)",
                    bytes.len()
                ))
            })
        }
        _ => Ok(()),
    }
}

/// Refuses a v2 text value (blob type 17; `bytes` starts with that byte) whose edge count `e` makes `96 * e` exceed
/// 32 bits: such a value would be over 4 GiB, so none is well-formed, and libmongocrypt 1.17.0 takes the length of
/// its metadata blocks modulo 2^32, so the count can pass its length check and it `bson_malloc0`s `e` blocks before
/// failing the value. Probed in child processes through this API (decrypt and explicit decrypt, key cached or not):
/// on 1.17.0 a 130-byte value with count 0x02aaaaab reserves 5 GB of address space (untouched, so its resident
/// size stays the same), one with 0x80000000 aborts (`Failure to allocate memory in bson_malloc0()`) on a 23 GB
/// machine, and any of them aborts under an address-space limit of a few GB. 1.21.0 fails them in 64 bits without
/// allocating; 1.13.1 allocates too (refused there as malformed, see [`check_indexed_value_v2`]); 1.7.2 and 1.10.1
/// return blob type 17 undecrypted. 1.18 to 1.20 are untested: refused as on 1.17, the last release seen to
/// allocate. A value that ends before its edge count is left to libmongocrypt, which fails it.
fn refuse_wrapping_text_edge_count(bytes: &[u8]) -> Result<()> {
    let Some(&[a, b, c, d]) = bytes.get(18..22) else { return Ok(()) };
    let edges = u32::from_le_bytes([a, b, c, d]);
    if METADATA_BLOCK_LEN * u64::from(edges) <= u64::from(u32::MAX) {
        return Ok(());
    }
    Err(Error::invalid(format!(
        "Queryable Encryption v2 text value of {} bytes (blob type 17) with an edge count of {edges}, whose metadata \
         blocks would take over 4 GiB, refused by the binding (libmongocrypt 1.17 wraps their length to 32 bits and \
         allocates the blocks, or aborts when it cannot)",
        bytes.len()
    )))
}

/// Metadata block of a v2 indexed value (`FLE2TagAndEncryptedMetadataBlock`): encrypted count, tag, encrypted
/// zeros, 32 bytes each.
const METADATA_BLOCK_LEN: u64 = 96;
/// Shortest ServerEncryptedValue the parser takes: a 16-byte IV and at least one encrypted byte.
const MIN_SERVER_ENCRYPTED_VALUE_LEN: u64 = 17;

/// Whether a v2 indexed value (blob type 14 equality, 15 range, 17 text; `bytes` starts with that byte) has the
/// layout `mc_FLE2IndexedEncryptedValueV2_parse` takes; the reason if not:
///
/// ```text
/// blob type (1) | S_KeyId (16) | original BSON type (1) | counts | ServerEncryptedValue (>= 17) | 96 * edges
/// counts: equality none (1 edge); range u8 edges; text u32 LE edges, substring tags, suffix tags
/// ```
///
/// libmongocrypt 1.13.1 sets the edge count (1 for equality) as soon as it has read it, and returns on a later
/// failure before it allocates the metadata blocks; `mc_FLE2IndexedEncryptedValueV2_destroy` then cleans up block
/// 0 at NULL and `mc_FLE2TagAndEncryptedMetadataBlock_cleanup`'s `BSON_ASSERT_PARAM` aborts. Those later failures
/// are the conditions here:
/// - a text value ends inside its tag counts;
/// - a text value's tag counts leave no block for its exact match (`edges < substr + suffix + 1`);
/// - the value is shorter than its counts say: a ServerEncryptedValue of 17 bytes or more, then `96 * edges`.
///
/// The sums are 64-bit: the parser's 32-bit `96 * edges` wraps, so that a huge text edge count passes its length
/// check and it allocates gigabytes of blocks. A value that ends before its edge count, or a range edge count of 0,
/// fails before the count is set (no abort), and is refused as well: no well-formed value has it. The original
/// BSON type byte is not checked: the parser takes any (one it cannot decode fails after decryption, with the
/// blocks allocated).
fn check_indexed_value_v2(blob_type: u8, bytes: &[u8]) -> std::result::Result<(), &'static str> {
    const PREFIX: usize = 1 + 16 + 1; // blob type, S_KeyId, original BSON type
    let header = match blob_type {
        14 => PREFIX,
        15 => PREFIX + 1,
        _ => PREFIX + 12,
    };
    let Some(counts) = bytes.get(PREFIX..header) else { return Err("shorter than its header") };
    // Text: edge, substring and suffix tag counts; range: the edge count; equality: one edge.
    let mut text = counts.chunks_exact(4).map(|c| u64::from(u32::from_le_bytes([c[0], c[1], c[2], c[3]])));
    let (edges, tags) = match counts {
        [] => (1, 0),
        [edges] => (u64::from(*edges), 0),
        _ => (text.next().unwrap_or(0), text.sum()),
    };
    if edges == 0 {
        return Err("with an edge count of 0");
    }
    if edges < tags + 1 {
        return Err("with more substring and suffix tags than its edge count leaves room for");
    }
    if ((bytes.len() - header) as u64) < MIN_SERVER_ENCRYPTED_VALUE_LEN + METADATA_BLOCK_LEN * edges {
        return Err("shorter than its encrypted value and metadata blocks");
    }
    Ok(())
}

/// What is wrong with an insert payload.
enum PayloadFault {
    /// `mc_FLE2InsertUpdatePayload_parse` (`..V2_parse`) fails it.
    Malformed(String),
    /// It parses, and its value is shorter than the shortest that decrypts.
    ShortValue { len: usize, min: usize },
}

/// Whether an insert payload (blob type 4, or 11 for v2; `bytes` starts with that byte) is one that libmongocrypt's
/// parser takes and that it can decrypt:
///
/// ```text
/// blob type (1) | BSON document
/// v1: d, s, c, p, e binary (subtype 0); u binary (UUID); t int32 in 0..=255; v binary (subtype 0)
/// v2: d, s, p, e, l binary (subtype 0); u binary (UUID); t int32 in 0..=255; k int64 >= 0; v binary (subtype 0)
/// each once; other fields are not looked at; v: the user key id (16 bytes), then the ciphertext
/// ```
///
/// Probed in child processes through this API (a payload of each kind below, for every field): 1.7.2 and 1.10.1
/// (1.10.1 for v2 too; 1.7.2 returns v2 payloads undecrypted) fail a payload their parser rejects after its first
/// field and free what they parsed of it twice, in the parser and again in the caller (`double free detected in
/// tcache 2`; the CI fuzz found `[4, 5, 0, 0, 0, 0]`, an empty document); 1.13.1, 1.17.0 and 1.21.0 fail it
/// without an abort. 1.7.2 to 1.17.0 decrypt a value of 16 to 64 bytes (v1) or 16 to 79 (v2) and
/// `_mongocrypt_buffer_resize` `BSON_ASSERT`s on the empty plaintext; 1.21.0 says the ciphertext is too small. A
/// document that is not BSON, or one the `bson` crate cannot walk, is malformed here: libmongocrypt fails the
/// former before it parses anything (no abort), and no payload libmongocrypt writes is the latter.
fn check_insert_payload(blob_type: u8, bytes: &[u8]) -> std::result::Result<(), PayloadFault> {
    use crate::bson::spec::BinarySubtype;
    let malformed = |what: &str| PayloadFault::Malformed(what.to_owned());
    let (fields, min): (&[&str], usize) = match blob_type {
        4 => (&["d", "s", "c", "p", "u", "t", "v", "e"], 16 + 49),
        _ => (&["d", "s", "p", "u", "t", "v", "e", "l", "k"], 16 + 64),
    };
    let doc = RawDocument::from_bytes(&bytes[1..]).map_err(|_| malformed("that is not a BSON document"))?;
    let mut seen = [false; 9];
    let mut len = 0;
    for element in doc.iter_elements() {
        let element = element.map_err(|_| malformed("that is malformed BSON"))?;
        let name = crate::bson_compat::key_str(element.key());
        let Some(i) = fields.iter().position(|f| *f == name) else { continue };
        if std::mem::replace(&mut seen[i], true) {
            return Err(PayloadFault::Malformed(format!("with field {name:?} twice")));
        }
        let value = element.value().map_err(|_| malformed("that is malformed BSON"))?;
        let fits = match (name, value) {
            ("u", RawBsonRef::Binary(b)) => b.subtype == BinarySubtype::Uuid,
            ("t", RawBsonRef::Int32(t)) => (0..=255).contains(&t),
            ("k", RawBsonRef::Int64(k)) => k >= 0,
            ("u" | "t" | "k", _) => false,
            (_, RawBsonRef::Binary(b)) if b.subtype == BinarySubtype::Generic => {
                if name == "v" {
                    len = b.bytes.len();
                }
                name != "v" || len >= 16
            }
            _ => false,
        };
        if !fits {
            return Err(PayloadFault::Malformed(format!("whose field {name:?} is not what the parser takes")));
        }
    }
    if let Some((missing, _)) = fields.iter().zip(seen).find(|(_, seen)| !seen) {
        return Err(PayloadFault::Malformed(format!("without field {missing:?}")));
    }
    if len < min {
        return Err(PayloadFault::ShortValue { len, min });
    }
    Ok(())
}

/// Refuses, before libmongocrypt 1.21, a key document whose `keyMaterial` is not a binary of at least 64 bytes:
/// libmongocrypt 1.7.2 resizes a buffer to 0 bytes in `_mongocrypt_unwrap_key` for a short one and
/// `_mongocrypt_buffer_resize` `BSON_ASSERT`s (one bad document in the key vault aborts every client that fetches
/// it). 1.21.0 fails the key instead; the versions between are not known to be fixed. A real `keyMaterial` is 160
/// bytes or more.
pub(crate) fn check_key_material(key: &[u8]) -> Result<()> {
    let Ok(doc) = RawDocument::from_bytes(key) else { return Ok(()) };
    for element in doc {
        let Ok((name, value)) = element else { return Ok(()) };
        if name != "keyMaterial" {
            continue;
        }
        match value {
            RawBsonRef::Binary(b) if b.bytes.len() >= 64 => {}
            RawBsonRef::Binary(b) => {
                return Err(Error::invalid(format!(
                    "key document refused by the binding: keyMaterial of {} bytes (libmongocrypt before 1.21 aborts on \
                     one shorter than 64)",
                    b.bytes.len()
                )))
            }
            other => {
                return Err(Error::invalid(format!(
                    "key document refused by the binding: keyMaterial is {:?}, not binary",
                    other.element_type()
                )))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::bson::spec::BinarySubtype;
    use crate::bson::{doc, Binary, Bson, RawDocumentBuf};

    use super::*;

    fn bytes(d: crate::bson::Document) -> Vec<u8> {
        RawDocumentBuf::try_from(&d).unwrap().into_bytes()
    }

    fn invalid(message: &str) -> Result<()> {
        Err(Error::invalid(message))
    }

    /// Blob type, S_KeyId and BSON type, then `counts`, then `rest` bytes.
    fn value(blob_type: u8, counts: &[u8], rest: usize) -> Vec<u8> {
        let mut v = vec![blob_type];
        v.extend_from_slice(&[0x11; 16]);
        v.push(0x02);
        v.extend_from_slice(counts);
        v.resize(v.len() + rest, 0xab);
        v
    }

    fn text_counts(edges: u32, substr: u32, suffix: u32) -> Vec<u8> {
        [edges, substr, suffix].iter().flat_map(|c| c.to_le_bytes()).collect()
    }

    #[test]
    fn v2_indexed_value_layout() {
        // The shortest well-formed value of each kind is taken, one byte less is not.
        for (blob_type, counts, edges) in [
            (14, vec![], 1),
            (15, vec![1], 1),
            (15, vec![255], 255),
            (17, text_counts(1, 0, 0), 1),
            (17, text_counts(4, 1, 2), 4),
        ] {
            let rest = 17 + 96 * edges;
            assert_eq!(check_indexed_value_v2(blob_type, &value(blob_type, &counts, rest)), Ok(()));
            assert_eq!(check_indexed_value_v2(blob_type, &value(blob_type, &counts, rest + 500)), Ok(()));
            let short = value(blob_type, &counts, rest - 1);
            assert!(check_indexed_value_v2(blob_type, &short).is_err(), "{blob_type} {counts:?}");
            // Every truncation is refused.
            for len in 1..short.len() {
                assert!(check_indexed_value_v2(blob_type, &short[..len]).is_err(), "{blob_type} {counts:?} {len}");
            }
        }
        assert_eq!(check_indexed_value_v2(15, &value(15, &[0], 1000)), Err("with an edge count of 0"));
        for (e, s, x) in [(0, 0, 0), (1, 1, 0), (2, 0, 2), (2, u32::MAX, 0), (u32::MAX, u32::MAX, u32::MAX)] {
            assert!(check_indexed_value_v2(17, &value(17, &text_counts(e, s, x), 1000)).is_err(), "{e} {s} {x}");
        }
        // 96 * 0x02aaaaab wraps to 32 in 32 bits; here it does not.
        assert!(check_indexed_value_v2(17, &value(17, &text_counts(0x02aa_aaab, 0, 0), 49)).is_err());
    }

    #[test]
    fn markings_without_a_value_or_with_malformed_bson() {
        let marking = |d: crate::bson::Document| [vec![0], bytes(d)].concat();
        assert_eq!(refuse_bad_marking(6, &marking(doc! { "v": 1, "a": 1 })), Ok(()));
        assert_eq!(
            refuse_bad_marking(6, &marking(doc! { "a": 1, "v": Bson::Null })),
            invalid(
                r#"mongocryptd marking refused by the binding: its "v" is Null, which libmongocrypt cannot encrypt"#
            )
        );
        assert_eq!(
            refuse_bad_marking(6, &[0, 5, 0, 0, 0, 1]),
            invalid(
                "mongocryptd marking refused by the binding: malformed BSON inside it (bad document length or \
                 terminator)"
            )
        );
        // A long name is quoted in part, with its length.
        let long = refuse_bad_marking(6, &marking(doc! { "n".repeat(10_000): Bson::Null })).unwrap_err().message();
        assert!(
            long.len() < 250 && long.contains(&format!("{:?}\u{2026} (a name of 10000 bytes)", "n".repeat(64))),
            "{long}"
        );
        // Not a marking: another subtype, or a ciphertext (first byte not 0).
        assert_eq!(refuse_bad_marking(0, &[0, 5, 0, 0, 0, 1]), Ok(()));
        assert_eq!(refuse_bad_marking(6, &[1, 5, 0, 0, 0, 1]), Ok(()));
    }

    #[test]
    fn short_v1_indexed_values_before_1_21() {
        let short = [7; 63];
        let expected = invalid(
            "Queryable Encryption indexed value of 63 bytes refused by the binding (libmongocrypt before 1.21 aborts \
             on one shorter than 64)",
        );
        assert_eq!(refuse_aborting_value(&Version::new(1, 7, 2), 6, &short), expected);
        assert_eq!(refuse_aborting_value(&Version::new(1, 21, 0), 6, &short), Ok(()));
        assert_eq!(refuse_aborting_value(&Version::new(1, 7, 2), 6, &[9; 64]), Ok(()));
        assert_eq!(refuse_aborting_value(&Version::new(1, 7, 2), 5, &short), Ok(()));
    }

    /// An insert payload of `blob_type` whose `v` is `v_len` bytes; `drop` leaves that field out.
    fn insert_payload(blob_type: u8, v_len: usize, drop: &str) -> Vec<u8> {
        let generic = |n| Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: vec![1; n] });
        let mut d = doc! {
            "d": generic(32), "s": generic(32), "p": generic(32), "e": generic(32),
            "u": Binary { subtype: BinarySubtype::Uuid, bytes: vec![2; 16] }, "t": 2, "v": generic(v_len),
        };
        if blob_type == 4 {
            d.insert("c", generic(32));
        } else {
            d.insert("l", generic(32));
            d.insert("k", 0_i64);
        }
        d.remove(drop);
        [vec![blob_type], bytes(d)].concat()
    }

    #[test]
    fn insert_payloads_by_version() {
        let (old, v1_13, new) = (Version::new(1, 7, 2), Version::new(1, 13, 0), Version::new(1, 21, 0));
        assert_eq!(refuse_aborting_value(&old, 6, &insert_payload(4, 65, "")), Ok(()));
        assert_eq!(refuse_aborting_value(&old, 6, &insert_payload(11, 80, "")), Ok(()));
        let short = refuse_aborting_value(&v1_13, 6, &insert_payload(4, 64, ""));
        let expected =
            "Queryable Encryption insert payload of 309 bytes (blob type 4) with a value of 64 bytes, refused \
             by the binding (libmongocrypt before 1.21 aborts decrypting one shorter than 65)";
        assert_eq!(short, invalid(expected));
        assert_eq!(refuse_aborting_value(&new, 6, &insert_payload(4, 64, "")), Ok(()));
        let missing = refuse_aborting_value(&Version::new(1, 10, 1), 6, &insert_payload(11, 80, "k")).unwrap_err();
        assert!(missing.message().contains(r#"without field "k", refused by the binding (libmongocrypt before 1.13"#));
        // From 1.13 the parser fails a malformed payload without an abort.
        assert_eq!(refuse_aborting_value(&v1_13, 6, &insert_payload(11, 80, "k")), Ok(()));
        // The CI fuzz's empty document.
        let empty = refuse_aborting_value(&old, 6, &[4, 5, 0, 0, 0, 0]).unwrap_err();
        assert!(empty.message().contains("without field \"d\""), "{empty}");
        // v2 payloads are not decrypted before 1.8.
        assert_eq!(refuse_aborting_value(&old, 6, &[11, 5, 0, 0, 0, 0]), Ok(()));
    }

    #[test]
    fn v2_indexed_values_from_1_11_to_before_1_17() {
        let short = value(14, &[], 17 + 95);
        assert_eq!(
            refuse_aborting_value(&Version::new(1, 13, 1), 6, &short),
            invalid(
                "Queryable Encryption v2 indexed value of 130 bytes (blob type 14), shorter than its encrypted value and \
                 metadata blocks, refused by the binding (libmongocrypt 1.13 aborts on malformed ones)"
            )
        );
        for linked in [Version::new(1, 10, 1), Version::new(1, 17, 0), Version::new(1, 21, 0)] {
            assert_eq!(refuse_aborting_value(&linked, 6, &short), Ok(()), "{linked}");
        }
    }

    #[test]
    fn text_edge_counts_over_32_bits_of_blocks_from_1_17_to_before_1_21() {
        let (v1_17, v1_20, v1_21) = (Version::new(1, 17, 0), Version::new(1, 20, 9), Version::new(1, 21, 0));
        assert_eq!(
            refuse_aborting_value(&v1_17, 6, &value(17, &text_counts(0x02aa_aaab, 0, 0), 100)),
            invalid(
                "Queryable Encryption v2 text value of 130 bytes (blob type 17) with an edge count of 44739243, whose \
                 metadata blocks would take over 4 GiB, refused by the binding (libmongocrypt 1.17 wraps their length \
                 to 32 bits and allocates the blocks, or aborts when it cannot)"
            )
        );
        // 0x02aaaaab is the first count whose 96-byte blocks overflow 32 bits.
        for edges in [0x02aa_aaab, 0x02aa_aaac, 0x0555_5556, 0x8000_0000, u32::MAX] {
            for tags in [(0, 0), (1, 2)] {
                let v = value(17, &text_counts(edges, tags.0, tags.1), 100);
                for linked in [&v1_17, &v1_20] {
                    assert!(refuse_aborting_value(linked, 6, &v).is_err(), "{edges:#x} {linked}");
                }
                // 1.21 fails it itself; 1.7.2 and 1.10.1 do not parse blob type 17.
                for linked in [&v1_21, &Version::new(1, 10, 1), &Version::new(1, 7, 2)] {
                    assert_eq!(refuse_aborting_value(linked, 6, &v), Ok(()), "{edges:#x} {linked}");
                }
                // 1.11 to 1.16 refuse every malformed value.
                assert!(refuse_aborting_value(&Version::new(1, 13, 1), 6, &v).is_err());
            }
        }
        // Counts whose blocks fit 32 bits reach libmongocrypt 1.17, which fails them if short; so do well-formed
        // values, values of other blob types and values that end inside their counts.
        for v in [
            value(17, &text_counts(0x02aa_aaaa, 0, 0), 100),
            value(17, &text_counts(1, 0, 0), 100),
            value(17, &text_counts(1, 0, 0), 17 + 96),
            value(17, &text_counts(4, 1, 2), 17 + 4 * 96),
            value(17, &[0xff; 3], 0),
            value(15, &[255], 100),
            value(14, &[0xff; 4], 100),
        ] {
            assert_eq!(refuse_aborting_value(&v1_17, 6, &v), Ok(()), "{v:x?}");
        }
        assert_eq!(refuse_aborting_value(&v1_17, 0, &value(17, &text_counts(u32::MAX, 0, 0), 100)), Ok(()));
    }

    #[test]
    fn key_material_shorter_than_64_bytes() {
        let key = |material: Bson| bytes(doc! { "_id": 1, "keyMaterial": material });
        let binary = |n| Bson::Binary(Binary { subtype: BinarySubtype::Generic, bytes: vec![0; n] });
        assert_eq!(check_key_material(&key(binary(64))), Ok(()));
        assert_eq!(
            check_key_material(&key(binary(63))),
            invalid(
                "key document refused by the binding: keyMaterial of 63 bytes (libmongocrypt before 1.21 aborts on \
                 one shorter than 64)"
            )
        );
        assert_eq!(
            check_key_material(&key(Bson::String("k".into()))),
            invalid("key document refused by the binding: keyMaterial is String, not binary")
        );
        // Not a document: libmongocrypt reports it.
        assert_eq!(check_key_material(b"not bson"), Ok(()));
    }
}
