//! Property tests of the RFC 8785 canonical form (`agw_events::jcs`)
//! over arbitrary JSON values: the output reads back as the same value, is a
//! fixed point, sorts names by UTF-16 code units, carries no insignificant
//! whitespace and only the escapes RFC 8785 allows, and writes every number
//! as ECMAScript does (checked against an independent oracle: the standard
//! library's shortest round-trip digits laid out by ECMA-262
//! `Number::toString`).

#![allow(missing_docs)]

use agw_events::jcs::{to_canonical_bytes, to_canonical_string, to_canonical_string_of};
use proptest::prelude::*;
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use serde_json::{Map, Number, Value};

// === strategies ===

/// Characters that stress escaping and UTF-16 ordering, mixed with any char.
fn chr() -> impl Strategy<Value = char> {
    prop_oneof![
        3 => any::<char>(),
        2 => prop::sample::select(vec![
            '\0', '\u{8}', '\t', '\n', '\u{b}', '\u{c}', '\r', '\u{1f}', ' ', '"', '\\', '/',
            '\u{7f}', '\u{80}', '\u{e9}', '\u{2028}', '\u{2029}', '\u{d7ff}', '\u{e000}',
            '\u{fb33}', '\u{fffd}', '\u{ffff}', '\u{10000}', '\u{1f600}', '\u{10ffff}',
        ]),
        2 => prop::char::range('a', 'e'),
    ]
}

fn text(max: usize) -> impl Strategy<Value = String> {
    prop::collection::vec(chr(), 0..max).prop_map(String::from_iter)
}

/// Short names from a small alphabet, so prefixes and the surrogate/BMP
/// boundary of the UTF-16 order meet often.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(
            prop::sample::select(vec![
                'a', 'b', '\u{7f}', '\u{e9}', '\u{e000}', '\u{fb33}', '\u{ffff}', '\u{10000}',
                '\u{1f600}', '\0', '"',
            ]),
            0..4,
        )
        .prop_map(String::from_iter),
        1 => text(8),
    ]
}

fn finite_f64() -> impl Strategy<Value = f64> {
    use prop::num::f64::{NEGATIVE, NORMAL, POSITIVE, SUBNORMAL, ZERO};
    POSITIVE | NEGATIVE | NORMAL | SUBNORMAL | ZERO
}

/// Numbers as JSON text: long mantissas and exponents near both ends of the
/// double range (out-of-range text is dropped, as serde_json refuses it).
fn number_text() -> impl Strategy<Value = Value> {
    (
        any::<bool>(),
        "[0-9]{1,25}",
        prop::option::of("[0-9]{1,20}"),
        prop::option::of(-340_i32..330),
    )
        .prop_filter_map("in double range", |(neg, int, frac, exp)| {
            let mut s = String::new();
            if neg {
                s.push('-');
            }
            s.push_str(int.trim_start_matches('0'));
            if s.is_empty() || s == "-" {
                s.push('0');
            }
            if let Some(f) = frac {
                s.push('.');
                s.push_str(&f);
            }
            if let Some(e) = exp {
                s.push_str(&format!("e{e}"));
            }
            serde_json::from_str::<Value>(&s).ok()
        })
}

fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        // Around 2^53, where integers stop being exact doubles.
        (-(1_i64 << 54)..(1_i64 << 54)).prop_map(Value::from),
        ((1_u64 << 53) - 4..(1_u64 << 53) + 4).prop_map(Value::from),
        finite_f64().prop_map(|f| Value::Number(Number::from_f64(f).expect("finite"))),
        number_text(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text(16).prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(name(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

// === oracles ===

/// ECMA-262 `Number::toString(x)` for a finite double, independent of
/// `ryu-js`: the standard library gives the shortest digit count k that reads
/// back as `x`; the k digits are then `x`'s exact decimal expansion rounded
/// to nearest, ties to even (ECMA-262 6.1.6.1.20, note 2), laid out by the
/// spec's steps.
fn es_number(x: f64) -> String {
    if x == 0.0 {
        return "0".to_owned();
    }
    let shortest = format!("{:e}", x.abs());
    let k = shortest
        .split_once('e')
        .expect("LowerExp has an exponent")
        .0
        .chars()
        .filter(char::is_ascii_digit)
        .count();
    // Every double's expansion ends within 767 significant digits.
    let exact = format!("{:.1100e}", x.abs());
    let (mantissa, exp) = exact.split_once('e').expect("LowerExp has an exponent");
    let all: Vec<u8> = mantissa
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| b - b'0')
        .collect();
    let (head, tail) = all.split_at(k);
    let mut digits = head.to_vec();
    let half = tail.first().copied().unwrap_or(0);
    let beyond = tail.iter().skip(1).any(|&d| d != 0);
    let odd = digits.last().is_some_and(|d| d % 2 == 1);
    // x = 0.digits × 10^n.
    let mut n = exp.parse::<i32>().expect("integer exponent") + 1;
    if half > 5 || (half == 5 && (beyond || odd)) {
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                n += 1;
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    while digits.len() > 1 && digits.last() == Some(&0) {
        digits.pop();
    }
    let digits: String = digits.iter().map(|d| char::from(b'0' + d)).collect();
    let k = digits.len() as i32;
    let body = if k <= n && n <= 21 {
        format!("{digits}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &digits[..n as usize], &digits[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{digits}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        let mant = if k == 1 {
            digits.clone()
        } else {
            format!("{}.{}", &digits[..1], &digits[1..])
        };
        format!("{mant}e{sign}{}", e.abs())
    };
    if x < 0.0 { format!("-{body}") } else { body }
}

/// A value read from canonical text, numbers kept as written and members in
/// the order they came.
#[derive(Debug)]
enum Read {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Read>),
    Obj(Vec<(String, Read)>),
}

/// A reader that accepts only the canonical shape: no whitespace anywhere
/// outside strings, only RFC 8785's escapes (the two-character ones, and
/// `\u00xx` in lowercase for the other control characters), no raw control
/// characters.
struct Reader<'a> {
    rest: std::str::Chars<'a>,
}

impl Reader<'_> {
    fn read_all(text: &str) -> Result<Read, String> {
        let mut r = Reader { rest: text.chars() };
        let v = r.value()?;
        match r.rest.next() {
            None => Ok(v),
            Some(c) => Err(format!("trailing {c:?}")),
        }
    }

    fn peek(&self) -> Option<char> {
        self.rest.clone().next()
    }

    fn bump(&mut self) -> Result<char, String> {
        self.rest.next().ok_or_else(|| "unexpected end".to_owned())
    }

    fn literal(&mut self, word: &str, v: Read) -> Result<Read, String> {
        for want in word.chars() {
            let got = self.bump()?;
            if got != want {
                return Err(format!("expected {word}, got {got:?}"));
            }
        }
        Ok(v)
    }

    fn value(&mut self) -> Result<Read, String> {
        match self.peek().ok_or("unexpected end")? {
            'n' => self.literal("null", Read::Null),
            't' => self.literal("true", Read::Bool(true)),
            'f' => self.literal("false", Read::Bool(false)),
            '"' => self.string().map(Read::Str),
            '[' => {
                self.bump()?;
                let mut items = Vec::new();
                if self.peek() == Some(']') {
                    self.bump()?;
                    return Ok(Read::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    match self.bump()? {
                        ',' => {}
                        ']' => return Ok(Read::Arr(items)),
                        c => return Err(format!("in array: {c:?}")),
                    }
                }
            }
            '{' => {
                self.bump()?;
                let mut members = Vec::new();
                if self.peek() == Some('}') {
                    self.bump()?;
                    return Ok(Read::Obj(members));
                }
                loop {
                    let key = self.string()?;
                    if self.bump()? != ':' {
                        return Err("member without ':'".to_owned());
                    }
                    members.push((key, self.value()?));
                    match self.bump()? {
                        ',' => {}
                        '}' => return Ok(Read::Obj(members)),
                        c => return Err(format!("in object: {c:?}")),
                    }
                }
            }
            c if c == '-' || c.is_ascii_digit() => {
                let mut token = String::new();
                while let Some(c) = self.peek().filter(|c| "-+.e0123456789".contains(*c)) {
                    token.push(c);
                    self.bump()?;
                }
                Ok(Read::Num(token))
            }
            c => Err(format!(
                "unexpected {c:?} (whitespace or junk outside a string)"
            )),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        if self.bump()? != '"' {
            return Err("expected a string".to_owned());
        }
        let mut out = String::new();
        loop {
            match self.bump()? {
                '"' => return Ok(out),
                '\\' => out.push(match self.bump()? {
                    '"' => '"',
                    '\\' => '\\',
                    'b' => '\u{8}',
                    'f' => '\u{c}',
                    'n' => '\n',
                    'r' => '\r',
                    't' => '\t',
                    'u' => {
                        let hex: String = (0..4).map(|_| self.bump()).collect::<Result<_, _>>()?;
                        let ok_form = hex.starts_with("00")
                            && hex.chars().all(|c| matches!(c, '0'..='9' | 'a'..='f'));
                        let code = u32::from_str_radix(&hex, 16).map_err(|e| e.to_string())?;
                        let c = char::from_u32(code).ok_or("bad \\u escape")?;
                        if !ok_form || code >= 0x20 || "\u{8}\u{c}\n\r\t".contains(c) {
                            return Err(format!("non-canonical escape \\u{hex}"));
                        }
                        c
                    }
                    c => return Err(format!("non-canonical escape \\{c}")),
                }),
                c if u32::from(c) < 0x20 => return Err(format!("raw control {c:?}")),
                c => out.push(c),
            }
        }
    }
}

/// `read` is `value` written canonically: same structure and strings,
/// numbers written as ECMAScript writes their double, members sorted by
/// UTF-16 code units with none lost or repeated.
fn check_read(value: &Value, read: &Read) -> Result<(), String> {
    match (value, read) {
        (Value::Null, Read::Null) => Ok(()),
        (Value::Bool(a), Read::Bool(b)) if a == b => Ok(()),
        (Value::Number(n), Read::Num(token)) => {
            let want = es_number(n.as_f64().ok_or("number without a double")?);
            if *token == want {
                Ok(())
            } else {
                Err(format!("{n} written {token}, ECMAScript writes {want}"))
            }
        }
        (Value::String(a), Read::Str(b)) if a == b => Ok(()),
        (Value::Array(a), Read::Arr(b)) if a.len() == b.len() => {
            a.iter().zip(b).try_for_each(|(x, y)| check_read(x, y))
        }
        (Value::Object(map), Read::Obj(members)) => {
            if map.len() != members.len() {
                return Err(format!(
                    "{} members written for {}",
                    members.len(),
                    map.len()
                ));
            }
            for pair in members.windows(2) {
                if pair[0]
                    .0
                    .encode_utf16()
                    .cmp(pair[1].0.encode_utf16())
                    .is_ge()
                {
                    return Err(format!("{:?} before {:?}", pair[0].0, pair[1].0));
                }
            }
            members.iter().try_for_each(|(k, r)| {
                check_read(map.get(k).ok_or_else(|| format!("extra {k:?}"))?, r)
            })
        }
        (v, r) => Err(format!("{v} written as {r:?}")),
    }
}

/// Equal as JSON, numbers compared as doubles.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// Serializes like the `Value`, but every object's members in reverse name
/// order, so the direct serializer has to sort what it is handed.
struct Reversed<'a>(&'a Value);

impl Serialize for Reversed<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Array(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&Reversed(item))?;
                }
                seq.end()
            }
            Value::Object(map) => {
                let mut m = s.serialize_map(Some(map.len()))?;
                for (k, v) in map.iter().rev() {
                    m.serialize_entry(k, &Reversed(v))?;
                }
                m.end()
            }
            other => other.serialize(s),
        }
    }
}

// === properties ===

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn canonical_form_is_exact_sorted_and_ecmascript_numbered(value in json()) {
        let out = to_canonical_string(&value).expect("every Value has a canonical form");
        let read = Reader::read_all(&out).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        check_read(&value, &read).map_err(|e| TestCaseError::fail(format!("{e}: {out}")))?;
        prop_assert_eq!(to_canonical_bytes(&value).expect("bytes"), out.as_bytes());
    }

    #[test]
    fn canonical_form_reads_back_and_is_a_fixed_point(value in json()) {
        let out = to_canonical_string(&value).expect("canonical");
        let back: Value = serde_json::from_str(&out).expect("canonical output is JSON");
        prop_assert!(same(&value, &back), "{} read back as {}", value, back);
        prop_assert_eq!(to_canonical_string(&back).expect("canonical"), out);
    }

    #[test]
    fn member_order_handed_in_does_not_matter(value in json()) {
        prop_assert_eq!(
            to_canonical_string_of(&Reversed(&value), None).expect("canonical"),
            to_canonical_string(&value).expect("canonical")
        );
    }

    #[test]
    fn omit_drops_exactly_one_top_level_member(
        map in prop::collection::btree_map(name(), json(), 0..6),
        pick in any::<prop::sample::Index>(),
        other in name(),
    ) {
        let map: Map<String, Value> = map.into_iter().collect();
        let keys: Vec<&String> = map.keys().collect();
        let omit = if keys.is_empty() { other } else { (*pick.get(&keys)).clone() };
        let mut without = map.clone();
        without.remove(&omit);
        prop_assert_eq!(
            to_canonical_string_of(&Value::Object(map), Some(&omit)).expect("canonical"),
            to_canonical_string(&Value::Object(without)).expect("canonical")
        );
    }

    #[test]
    fn every_double_is_written_as_ecmascript_writes_it(x in finite_f64()) {
        let v = Value::Number(Number::from_f64(x).expect("finite"));
        let out = to_canonical_string(&v).expect("canonical");
        prop_assert_eq!(&out, &es_number(x));
        // Shortest digits that still read back as the same double.
        prop_assert_eq!(out.parse::<f64>().expect("a JSON number"), x);
    }
}

#[test]
fn oracle_agrees_with_rfc8785_appendix_b() {
    // The oracle itself, on RFC 8785 Appendix B's sample.
    for (bits, want) in [
        (0x0000_0000_0000_0001_u64, "5e-324"),
        (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
        (0x4340_0000_0000_0000, "9007199254740992"),
        (0x4430_0000_0000_0000, "295147905179352830000"),
        (0x44b5_2d02_c7e1_4af6, "1e+23"),
        (0x444b_1ae4_d6e2_ef50, "1e+21"),
        (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
        (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
        (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
        (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
    ] {
        assert_eq!(es_number(f64::from_bits(bits)), want, "{bits:#x}");
    }
}
