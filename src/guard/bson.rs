//! BSON arguments: libmongocrypt checks a document's frame and reports it, but trusts what is inside, and libbson
//! aborts on an empty buffer; so every document argument is walked here first, all the way down, and the walk hands
//! each binary value to the payload checks ([`super::payload`]) on the way.

use crate::error::{Error, Result};

/// Checks one BSON document argument before libmongocrypt sees it: refuses an empty buffer (libbson aborts on it:
/// seen in encrypt, decrypt and schema map inits of 1.7.2 and 1.21) and elements malformed inside a valid frame,
/// and calls `visit` with the subtype and bytes of every binary value, at every level, in the same walk: the
/// binding's checks of what libmongocrypt would abort on (markings, short Queryable Encryption values) cost no
/// second pass. A bad frame (length prefix, terminator) passes: libmongocrypt reports it in its own words.
#[inline]
pub(crate) fn check_argument(bytes: &[u8], visit: &mut impl Visit) -> Result<()> {
    if bytes.is_empty() {
        return Err(empty());
    }
    // The walk's errors stay a `&'static str` (small results on the hot path); a refusal's Error waits here.
    let mut refused = None;
    let mut keep = |subtype, value: &[u8]| {
        visit(subtype, value).map_err(|error| {
            refused = Some(error);
            "refused"
        })
    };
    match check_document(bytes, 0, &mut keep) {
        Ok(_) | Err(BAD_FRAME) => Ok(()),
        Err(what) => Err(refused.unwrap_or_else(|| malformed(what))),
    }
}

#[cold]
fn empty() -> Error {
    Error::invalid("an empty buffer is not a BSON document")
}

#[cold]
fn malformed(what: &str) -> Error {
    Error::invalid(format!("malformed BSON: {what}"))
}

/// Whether `bytes` is one well-formed BSON document all the way down (see [`check_document`]).
#[cfg(test)]
fn well_formed(bytes: &[u8]) -> std::result::Result<(), &'static str> {
    check_document(bytes, 0, &mut |_, _| Ok(())).map(drop)
}

/// [`check_document`], and the first top-level element of a type without a value (null, undefined, MinKey,
/// MaxKey), as its type and name, in the same pass.
pub(crate) fn well_formed_first_valueless(bytes: &[u8]) -> std::result::Result<Option<(u8, &[u8])>, &'static str> {
    match check_document(bytes, 0, &mut |_, _| Ok(())) {
        Ok(found) => Ok(found.map(|Valueless { kind, name_at, name_end }| (kind, &bytes[name_at..name_end]))),
        Err(BAD_FRAME) => Err("bad document length or terminator"),
        Err(what) => Err(what),
    }
}

/// The first top-level element of a type without a value (null, undefined, MinKey, MaxKey) that
/// [`check_document`] met: its type, and where its name starts and ends.
struct Valueless {
    kind: u8,
    name_at: usize,
    name_end: usize,
}

/// [`check_document`]'s error for a top-level document whose frame (length prefix, terminator) is wrong: left to
/// libmongocrypt, which reports it with its own message.
const BAD_FRAME: &str = "bad frame";

/// How deep documents may nest; MongoDB itself stops at 100. Bounds the recursion of [`check_document`].
const MAX_DEPTH: usize = 200;

/// Checks that `bytes` is one well-formed BSON document all the way down: lengths, terminators and element types,
/// nested documents included, and returns its first top-level element without a value (when `depth` is 0).
/// Strings are not checked for UTF-8: libbson does not rely on it, and it would cost time per byte where the rest
/// costs time per element.
///
/// One function for every caller, its visitor behind `dyn`: a generic walk had a copy of its machine code per
/// visitor (the command's, the mongocryptd reply's, the marking's inside it), and each was fetched into the
/// instruction cache on its own; one copy, warmed by the reply's walk, serves the marking's too (callgrind's cache
/// simulation, BENCHMARKS.md).
#[inline(never)]
fn check_document(
    bytes: &[u8],
    depth: usize,
    visit: &mut dyn Walker,
) -> std::result::Result<Option<Valueless>, &'static str> {
    let frame_error = if depth == 0 { BAD_FRAME } else { "bad document length or terminator" };
    let len = read_len(bytes, 0).map_err(|_| frame_error)?;
    if len < 5 || len != bytes.len() || bytes[len - 1] != 0 {
        return Err(frame_error);
    }
    if depth > MAX_DEPTH {
        return Err("documents nested too deeply");
    }
    check_elements(bytes, len - 1, depth, visit)
}

/// Checks the elements of the document `depth` deep whose terminator is at `end`, and every document nested in
/// them, and returns the first top-level element without a value. A loop rather than a recursion: a nested
/// document costs a push, not a call, which is most of the cost of the small documents on the hot path (a command,
/// a mongocryptd reply). One dispatch on the element's type per element.
#[inline(always)]
fn check_elements(
    b: &[u8],
    mut end: usize,
    depth: usize,
    visit: &mut dyn Walker,
) -> std::result::Result<Option<Valueless>, &'static str> {
    // The terminators of the documents enclosing the one being walked, innermost last; a document's length is an
    // int32, so each fits a u32. Small, as it is cleared on every call: deeper documents recurse.
    let mut outer = [0u32; 8];
    let mut open = 0;
    let mut pos = 4;
    let mut valueless = None;
    loop {
        if pos >= end {
            if open == 0 {
                return Ok(valueless);
            }
            open -= 1;
            pos = end + 1;
            end = outer[open] as usize;
            continue;
        }
        let kind = b[pos];
        let at = skip_cstring(b, pos + 1, end)?;
        let past =
            |from: usize, n: usize| from.checked_add(n).filter(|&p| p <= end).ok_or("value runs past its document");
        pos = match kind {
            0x06 | 0x0A | 0x7F | 0xFF => {
                if depth + open == 0 && valueless.is_none() {
                    valueless = Some(Valueless { kind, name_at: pos + 1, name_end: at - 1 });
                }
                at
            }
            0x08 => past(at, 1)?,
            0x10 => past(at, 4)?,
            0x01 | 0x09 | 0x11 | 0x12 => past(at, 8)?,
            0x07 => past(at, 12)?,
            0x13 => past(at, 16)?,
            0x02 | 0x0D | 0x0E => skip_string(b, at, end)?,
            0x03 | 0x04 => {
                let len = read_len(b, at)?;
                let next = past(at, len)?;
                if len < 5 || b[next - 1] != 0 {
                    return Err("bad document length or terminator");
                }
                if depth + open >= MAX_DEPTH {
                    return Err("documents nested too deeply");
                }
                if open < outer.len() {
                    outer[open] = end as u32;
                    open += 1;
                    end = next - 1;
                    at + 4
                } else {
                    check_document(&b[at..next], depth + open + 1, visit)?;
                    next
                }
            }
            0x05 => {
                let next = past(at, 5 + read_len(b, at)?)?;
                visit(b[at + 4], &b[at + 5..next])?;
                next
            }
            0x0B => skip_cstring(b, skip_cstring(b, at, end)?, end)?,
            0x0C => past(skip_string(b, at, end)?, 12)?,
            0x0F => {
                let next = past(at, read_len(b, at)?)?;
                let scope = skip_string(b, at + 4, next)?;
                check_document(&b[scope..next], depth + open + 1, visit)?;
                next
            }
            _ => return Err("unknown element type"),
        };
    }
}

/// What [`check_argument`] (behind `BsonArg::visiting`) calls with the subtype and bytes of each binary value; an `Err` refuses the document.
pub(crate) trait Visit: FnMut(u8, &[u8]) -> Result<()> {}

impl<F: FnMut(u8, &[u8]) -> Result<()>> Visit for F {}

/// What [`check_document`] calls with each binary value: [`Visit`] behind [`check_argument`]'s adapter.
trait Walker: FnMut(u8, &[u8]) -> std::result::Result<(), &'static str> {}

impl<F: FnMut(u8, &[u8]) -> std::result::Result<(), &'static str>> Walker for F {}

/// A non-negative little-endian int32 length at `pos`.
#[inline(always)]
fn read_len(b: &[u8], pos: usize) -> std::result::Result<usize, &'static str> {
    let bytes = b.get(pos..pos + 4).ok_or("truncated length")?;
    usize::try_from(i32::from_le_bytes(bytes.try_into().unwrap())).map_err(|_| "negative length")
}

/// The position after the NUL-terminated string at `pos`, whose NUL must come before `end`.
#[inline(always)]
fn skip_cstring(b: &[u8], pos: usize, end: usize) -> std::result::Result<usize, &'static str> {
    match first_nul(b, pos) {
        nul if nul < end => Ok(nul + 1),
        _ => Err("unterminated name"),
    }
}

/// The position of the first NUL at or after `from`, or `b.len()` if there is none.
///
/// Bounded by the buffer rather than by the document: every document the walk enters ends in a NUL that its frame
/// check has seen, so the scan stops at that terminator at the latest, and the one comparison with the document's
/// end in [`skip_cstring`] is all the bounding a name needs (callgrind: 122 instructions fewer per automatic
/// encryption of one field than a scan of the slice up to `end`, BENCHMARKS.md).
///
/// Eight bytes at a time, the first NUL found from the word's zero-byte mask: element names are short, and on
/// them both memchr's run-time dispatch and its portable version (which finds the byte again one by one) cost more
/// than this scan (callgrind, BENCHMARKS.md), on the path every document argument takes.
#[inline(always)]
fn first_nul(b: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_le_bytes([0x80; 8]);
    let mut at = from;
    while let Some(word) = b.get(at..at + 8) {
        let word = u64::from_le_bytes(word.try_into().expect("8 bytes"));
        // The lowest flagged byte is the first zero byte (a borrow can only flag bytes above a zero one).
        let zeros = word.wrapping_sub(ONES) & !word & HIGHS;
        if zeros != 0 {
            return at + (zeros.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    match b.get(at..).and_then(|rest| rest.iter().position(|&c| c == 0)) {
        Some(i) => at + i,
        None => b.len(),
    }
}

/// The position after the length-prefixed, NUL-terminated string at `pos`, which must end by `end`.
#[inline(always)]
fn skip_string(b: &[u8], pos: usize, end: usize) -> std::result::Result<usize, &'static str> {
    let len = read_len(b, pos)?;
    let next = (pos + 4).checked_add(len).filter(|&p| len > 0 && p <= end).ok_or("bad string length")?;
    if b[next - 1] != 0 {
        return Err("unterminated string");
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use crate::bson::spec::BinarySubtype;
    use crate::bson::{
        doc, Binary, Bson, DateTime, Decimal128, Document, JavaScriptCodeWithScope, RawDocument, RawDocumentBuf,
    };
    use crate::bson::{Regex, Timestamp};

    use super::*;

    fn bytes(d: &Document) -> Vec<u8> {
        RawDocumentBuf::try_from(d).unwrap().into_bytes()
    }

    /// Every element type; a fixed ObjectId (`ObjectId::new` reads the clock, which Miri isolates).
    fn all_types() -> Document {
        doc! {
            "double": 1.5, "string": "s", "doc": { "a": [1, { "b": null }] }, "array": [], "empty": {},
            "binary": Binary { subtype: BinarySubtype::Uuid, bytes: vec![7; 16] }, "undefined": Bson::Undefined,
            "oid": crate::bson::oid::ObjectId::from_bytes([3; 12]), "bool": true, "date": DateTime::from_millis(0), "null": Bson::Null,
            "regex": Regex { pattern: "a.*".try_into().unwrap(), options: "i".try_into().unwrap() }, "code": Bson::JavaScriptCode("f()".into()),
            "symbol": Bson::Symbol("sym".into()),
            "scope": JavaScriptCodeWithScope { code: "g()".into(), scope: doc! { "x": 1 } },
            "int32": 1, "timestamp": Timestamp { time: 1, increment: 2 }, "int64": 2_i64,
            "decimal": Decimal128::from_bytes([0; 16]), "min": Bson::MinKey, "max": Bson::MaxKey,
        }
    }

    #[test]
    fn every_element_type_passes() {
        assert_eq!(well_formed(&bytes(&all_types())), Ok(()));
    }

    #[test]
    fn malformed_content_inside_a_valid_frame_is_found() {
        let good = bytes(&doc! { "find": "c", "filter": { "x": 5 } });
        // The inner document's terminator replaced: the outer frame is still valid.
        let mut no_terminator = good.clone();
        let inner_end = good.len() - 2;
        no_terminator[inner_end] = 1;
        assert!(RawDocument::from_bytes(&no_terminator).is_ok());
        assert_eq!(well_formed(&no_terminator), Err("bad document length or terminator"));
        // An element type that does not exist.
        let mut bad_type = good.clone();
        bad_type[4] = 0x42;
        assert_eq!(well_formed(&bad_type), Err("unknown element type"));
        // A string length past the document.
        let mut long_string = good.clone();
        long_string[10] = 0x7f;
        assert_eq!(well_formed(&long_string), Err("bad string length"));
        assert_eq!(well_formed(&good), Ok(()));
    }

    #[test]
    fn nesting_is_bounded() {
        let mut d = doc! {};
        for _ in 0..MAX_DEPTH + 1 {
            d = doc! { "d": d };
        }
        assert_eq!(well_formed(&bytes(&d)), Err("documents nested too deeply"));
        let mut d = doc! {};
        for _ in 0..MAX_DEPTH {
            d = doc! { "d": d };
        }
        assert_eq!(well_formed(&bytes(&d)), Ok(()));
    }

    #[test]
    fn arguments_refuse_empty_and_malformed_documents_and_leave_bad_frames() {
        assert_eq!(
            check_argument(&[], &mut |_, _| Ok(())),
            Err(Error::invalid("an empty buffer is not a BSON document"))
        );
        let mut inner = bytes(&doc! { "a": { "b": 1 } });
        let n = inner.len();
        inner[n - 2] = 9;
        let expected = Error::invalid("malformed BSON: bad document length or terminator");
        assert_eq!(check_argument(&inner, &mut |_, _| Ok(())), Err(expected));
        assert_eq!(check_argument(&[6, 0, 0, 0, 0], &mut |_, _| Ok(())), Ok(()));
    }

    #[test]
    fn names_end_at_their_first_nul_within_bounds() {
        // Every NUL position across word boundaries, with bytes that would fool a careless zero-byte mask around
        // it (0x01 right above a zero borrows into it, 0x80 sets a high bit), and `end` cutting the search short.
        for len in 0..20 {
            for nul in 0..len {
                for filler in [b'a', 0x01, 0x80, 0xff] {
                    let mut name = vec![filler; len];
                    name[nul] = 0;
                    if nul + 1 < len {
                        name[nul + 1] = 0x01;
                    }
                    let naive = |end: usize| name[1..end].iter().position(|&c| c == 0).map(|i| 1 + i + 1);
                    // The whole name, and `end` just past and just before the NUL (Miri runs this test too).
                    for end in [len, nul + 1, nul].into_iter().filter(|&end| end >= 1) {
                        assert_eq!(skip_cstring(&name, 1, end).ok(), naive(end), "{name:?} end {end}");
                    }
                }
            }
        }
        assert_eq!(skip_cstring(b"abc", 2, 1), Err("unterminated name"));
        // No NUL up to the buffer's end, across whole words and a tail of single bytes.
        for len in 0..20 {
            let name = vec![b'a'; len];
            for from in 0..=len {
                assert_eq!(first_nul(&name, from), len);
                assert_eq!(skip_cstring(&name, from, len), Err("unterminated name"));
            }
        }
    }

    #[test]
    fn first_valueless_element() {
        let d = bytes(&doc! { "a": 1, "n": Bson::Null, "m": Bson::MaxKey });
        assert_eq!(well_formed_first_valueless(&d), Ok(Some((0x0A, &b"n"[..]))));
        assert_eq!(well_formed_first_valueless(&bytes(&doc! { "a": { "n": Bson::Null } })), Ok(None));
        // After a nested document the walk is back at the top level; below the pushed levels it recurses.
        let after = bytes(&doc! { "a": { "b": [1, { "n": Bson::Null }] }, "u": Bson::Undefined, "m": Bson::MinKey });
        assert_eq!(well_formed_first_valueless(&after), Ok(Some((0x06, &b"u"[..]))));
        let mut deep = doc! { "n": Bson::Null };
        for _ in 0..12 {
            deep = doc! { "d": deep, "x": Bson::MaxKey };
        }
        let deep = bytes(&doc! { "d": deep });
        assert_eq!(well_formed_first_valueless(&deep), Ok(None));
        assert_eq!(well_formed_first_valueless(&[5, 0, 0, 0, 1]), Err("bad document length or terminator"));
    }
}
