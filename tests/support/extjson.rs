//! A small extended-JSON reader for the fixture files, keeping key order (the first key of a command is its name,
//! and bson's serde support is not enabled in this package). Handles objects, arrays, strings, numbers, booleans,
//! null, and the canonical `$numberInt`, `$numberLong`, `$numberDouble`, `$binary`, `$date`, `$oid` wrappers.

use bson::spec::BinarySubtype;
use bson::{Binary, Bson, Document};

/// Parses one extended-JSON document.
pub fn parse_doc(text: &str) -> Document {
    let mut p = Parser { s: text.as_bytes(), i: 0 };
    let v = p.value();
    p.ws();
    assert_eq!(p.i, p.s.len(), "trailing characters after the JSON value");
    match v {
        Bson::Document(d) => d,
        other => panic!("not a document: {other:?}"),
    }
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self.s.get(self.i).expect("unexpected end of JSON")
    }

    fn expect(&mut self, c: u8) {
        assert_eq!(self.peek(), c, "expected {:?} at {}", c as char, self.i);
        self.i += 1;
    }

    fn value(&mut self) -> Bson {
        match self.peek() {
            b'{' => self.object(),
            b'[' => {
                self.i += 1;
                let mut items = Vec::new();
                if self.peek() == b']' {
                    self.i += 1;
                    return Bson::Array(items);
                }
                loop {
                    items.push(self.value());
                    match self.peek() {
                        b',' => self.i += 1,
                        b']' => {
                            self.i += 1;
                            return Bson::Array(items);
                        }
                        c => panic!("unexpected {:?} in array", c as char),
                    }
                }
            }
            b'"' => Bson::String(self.string()),
            b't' => self.word("true", Bson::Boolean(true)),
            b'f' => self.word("false", Bson::Boolean(false)),
            b'n' => self.word("null", Bson::Null),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &str, v: Bson) -> Bson {
        assert!(self.s[self.i..].starts_with(w.as_bytes()), "bad literal at {}", self.i);
        self.i += w.len();
        v
    }

    fn number(&mut self) -> Bson {
        let start = self.i;
        while self.i < self.s.len() && b"+-0123456789.eE".contains(&self.s[self.i]) {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap();
        if let Ok(n) = text.parse::<i64>() {
            i32::try_from(n).map(Bson::Int32).unwrap_or(Bson::Int64(n))
        } else {
            Bson::Double(text.parse().unwrap_or_else(|_| panic!("bad number {text:?}")))
        }
    }

    fn string(&mut self) -> String {
        self.expect(b'"');
        let mut out = Vec::new();
        loop {
            let c = self.s[self.i];
            self.i += 1;
            match c {
                b'"' => return String::from_utf8(out).expect("UTF-8 string"),
                b'\\' => {
                    let e = self.s[self.i];
                    self.i += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                            self.i += 4;
                            let ch = char::from_u32(u32::from_str_radix(hex, 16).unwrap()).expect("BMP escape");
                            out.extend_from_slice(ch.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }

    fn object(&mut self) -> Bson {
        self.expect(b'{');
        let mut d = Document::new();
        if self.peek() == b'}' {
            self.i += 1;
            return Bson::Document(d);
        }
        loop {
            let k = self.string();
            self.expect(b':');
            let v = self.value();
            d.insert(k, v);
            match self.peek() {
                b',' => self.i += 1,
                b'}' => {
                    self.i += 1;
                    return wrapper(d);
                }
                c => panic!("unexpected {:?} in object", c as char),
            }
        }
    }
}

fn wrapper(d: Document) -> Bson {
    let Some(first) = d.keys().next().cloned() else { return Bson::Document(d) };
    let str_of = |b: &Bson| b.as_str().expect("string in extended JSON wrapper").to_owned();
    match (first.as_str(), d.len()) {
        ("$numberInt", 1) => Bson::Int32(str_of(&d[&first]).parse().unwrap()),
        ("$numberLong", 1) => Bson::Int64(str_of(&d[&first]).parse().unwrap()),
        ("$numberDouble", 1) => Bson::Double(str_of(&d[&first]).parse().unwrap()),
        ("$oid", 1) => Bson::ObjectId(bson::oid::ObjectId::parse_str(str_of(&d[&first])).unwrap()),
        ("$date", 1) => match &d[&first] {
            Bson::Int64(ms) => Bson::DateTime(bson::DateTime::from_millis(*ms)),
            Bson::Int32(ms) => Bson::DateTime(bson::DateTime::from_millis(i64::from(*ms))),
            other => panic!("unsupported $date {other:?}"),
        },
        ("$binary", 1) => {
            let inner = d[&first].as_document().expect("canonical $binary");
            let subtype = u8::from_str_radix(inner.get_str("subType").unwrap(), 16).unwrap();
            let bytes = Binary::from_base64(inner.get_str("base64").unwrap(), None).unwrap().bytes;
            Bson::Binary(Binary { subtype: BinarySubtype::from(subtype), bytes })
        }
        _ => Bson::Document(d),
    }
}
