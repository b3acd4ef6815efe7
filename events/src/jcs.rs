//! RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes an execution
//! event is hashed and signed over.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

mod direct;

/// Integers with a larger magnitude are not exact in an IEEE 754 double, so
/// they are rendered as the double ECMAScript would hold (as the IntentProof
/// SDKs do).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// A value JSON cannot hold (a map key that is not a string, an integer
    /// beyond 64 bits) or a `Serialize` implementation's own error.
    #[error("{0}")]
    Unsupported(String),
}

/// The RFC 8785 canonical UTF-8 bytes of `value`.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonError> {
    to_canonical_string(value).map(String::into_bytes)
}

/// The RFC 8785 canonical form of any serializable `value`: the same string
/// as [`to_canonical_string`] of `serde_json::to_value(value)`, without the
/// `Value` in between; `omit` names a member of the top-level object to leave
/// out.
pub fn to_canonical_string_of<T: Serialize + ?Sized>(
    value: &T,
    omit: Option<&str>,
) -> Result<String, CanonError> {
    direct::to_string(value, omit)
}

/// The RFC 8785 canonical form of `value` as a string.
///
/// Object members are sorted by the UTF-16 code units of their names, numbers
/// are written as ECMAScript's `Number.prototype.toString` writes them, and
/// strings carry only the escapes JSON requires.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonError> {
    direct::to_string(value, None)
}

/// ECMAScript `Number.prototype.toString` of a finite double.
fn write_double(out: &mut String, f: f64) {
    if f == 0.0 {
        // Covers -0, which ECMAScript prints as "0".
        out.push('0');
    } else {
        out.push_str(ryu_js::Buffer::new().format_finite(f));
    }
}

/// RFC 8785 §3.2.3: names compare as UTF-16 code unit sequences. That is
/// code point (and UTF-8 byte) order except where a character beyond the BMP
/// (a surrogate pair) meets one in U+E000..U+FFFF, so only the first
/// character that differs is looked at in UTF-16.
fn utf16_order(a: &str, b: &str) -> Ordering {
    let mut i = a.bytes().zip(b.bytes()).take_while(|(x, y)| x == y).count();
    // The common prefix is the same bytes in both, so a boundary in one.
    while !a.is_char_boundary(i) {
        i -= 1;
    }
    match (a[i..].chars().next(), b[i..].chars().next()) {
        (Some(x), Some(y)) => first_unit(x).cmp(&first_unit(y)).then(x.cmp(&y)),
        (x, y) => x.is_some().cmp(&y.is_some()),
    }
}

/// The first UTF-16 code unit of `c` (its high surrogate beyond the BMP).
fn first_unit(c: char) -> u16 {
    let mut units = [0; 2];
    c.encode_utf16(&mut units)[0]
}

/// Copies runs that need no escape whole, skipping eight bytes at a time
/// while none of them can need one; every byte escaped is ASCII, so each run
/// ends on a character boundary.
fn write_string(out: &mut String, s: &str) {
    out.reserve(s.len() + 2);
    out.push('"');
    let bytes = s.as_bytes();
    let (mut run, mut i) = (0, 0);
    while i < bytes.len() {
        if let Some(word) = bytes
            .get(i..i + 8)
            .and_then(|w| <[u8; 8]>::try_from(w).ok())
            && !may_need_escape(u64::from_le_bytes(word))
        {
            i += 8;
            continue;
        }
        let escape = match bytes[i] {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            0x08 => "\\b",
            0x0c => "\\f",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x00..=0x1f => "",
            _ => {
                i += 1;
                continue;
            }
        };
        out.push_str(&s[run..i]);
        if escape.is_empty() {
            let _ = write!(out, "\\u{:04x}", bytes[i]);
        } else {
            out.push_str(escape);
        }
        i += 1;
        run = i;
    }
    out.push_str(&s[run..]);
    out.push('"');
}

/// Whether any of the eight bytes of `word` may be a control character, a
/// quote or a backslash (never false when one is; the byte loop decides).
fn may_need_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH;
    let zero = |w: u64| below(w, 1);
    (below(word, 0x20)
        | zero(word ^ (ONES * u64::from(b'"')))
        | zero(word ^ (ONES * u64::from(b'\\'))))
        != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Map, Number, json};

    fn canon(text: &str) -> String {
        let value: Value = serde_json::from_str(text).expect("test JSON parses");
        to_canonical_string(&value).expect("canonical form")
    }

    fn double(bits: u64) -> String {
        let mut out = String::new();
        write_double(&mut out, f64::from_bits(bits));
        out
    }

    #[test]
    fn rfc8785_main_example() {
        // RFC 8785 §3.2.2 input and output.
        let input = r#"{
          "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
          "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
          "literals": [null, true, false]
        }"#;
        assert_eq!(
            canon(input),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
    }

    #[test]
    fn rfc8785_sorting_by_utf16_code_units() {
        // RFC 8785 §3.2.3: the emoji (surrogates D83D DE00) sorts before
        // U+FB33 although its UTF-8 bytes sort after.
        let input = r#"{
          "\u20ac": "Euro Sign",
          "\r": "Carriage Return",
          "\ufb33": "Hebrew Letter Dalet With Dagesh",
          "1": "One",
          "\ud83d\ude00": "Emoji: Grinning Face",
          "\u0080": "Control",
          "\u00f6": "Latin Small Letter O With Diaeresis"
        }"#;
        assert_eq!(
            canon(input),
            concat!(
                "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",",
                "\"\u{f6}\":\"Latin Small Letter O With Diaeresis\",\"\u{20ac}\":\"Euro Sign\",",
                "\"\u{1f600}\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
            )
        );
    }

    #[test]
    fn name_order_is_utf16_code_unit_order_for_every_pair() {
        // Prefixes, equal strings, and each side of the surrogate range.
        let names = [
            "",
            "a",
            "ab",
            "abc",
            "b",
            "\u{7f}",
            "\u{80}",
            "\u{7ff}",
            "\u{800}",
            "\u{d7ff}",
            "\u{e000}",
            "\u{fb33}",
            "\u{ffff}",
            "\u{10000}",
            "\u{1f600}",
            "\u{10ffff}",
            "x\u{ffff}",
            "x\u{1f600}",
            "x\u{1f600}a",
            "x\u{1f601}",
            "x\u{e9}",
            "xe",
            "\u{1f600}\u{fb33}",
            "\u{1f600}\u{1f600}",
        ];
        for a in names {
            for b in names {
                assert_eq!(
                    utf16_order(a, b),
                    a.encode_utf16().cmp(b.encode_utf16()),
                    "{a:?} vs {b:?}"
                );
            }
        }
    }

    #[test]
    fn rfc8785_appendix_b_numbers() {
        let cases: &[(u64, &str)] = &[
            (0x0000000000000000, "0"),
            (0x8000000000000000, "0"),
            (0x0000000000000001, "5e-324"),
            (0x8000000000000001, "-5e-324"),
            (0x7fefffffffffffff, "1.7976931348623157e+308"),
            (0xffefffffffffffff, "-1.7976931348623157e+308"),
            (0x4340000000000000, "9007199254740992"),
            (0xc340000000000000, "-9007199254740992"),
            (0x4430000000000000, "295147905179352830000"),
            (0x44b52d02c7e14af5, "9.999999999999997e+22"),
            (0x44b52d02c7e14af6, "1e+23"),
            (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
            (0x444b1ae4d6e2ef4e, "999999999999999700000"),
            (0x444b1ae4d6e2ef4f, "999999999999999900000"),
            (0x444b1ae4d6e2ef50, "1e+21"),
            (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
            (0x3eb0c6f7a0b5ed8d, "0.000001"),
            (0x41b3de4355555553, "333333333.3333332"),
            (0x41b3de4355555554, "333333333.33333325"),
            (0x41b3de4355555555, "333333333.3333333"),
            (0x41b3de4355555556, "333333333.3333334"),
            (0x41b3de4355555557, "333333333.33333343"),
            (0xbecbf647612f3696, "-0.0000033333333333333333"),
            (0x43143ff3c1cb0959, "1424953923781206.2"),
        ];
        for &(bits, want) in cases {
            assert_eq!(double(bits), want, "bits {bits:#018x}");
        }
    }

    #[test]
    fn numbers_from_json_text() {
        assert_eq!(
            canon("[1e21, 1e20, 1e-7, -0, -0.0, 4.50, 2e-3, 10, 1.0, -3, 0.1]"),
            "[1e+21,100000000000000000000,1e-7,0,0,4.5,0.002,10,1,-3,0.1]"
        );
    }

    #[test]
    fn integers_beyond_2_pow_53_become_doubles() {
        assert_eq!(canon("9007199254740993"), "9007199254740992");
        assert_eq!(canon("-9007199254740993"), "-9007199254740992");
        assert_eq!(canon("18446744073709551615"), "18446744073709552000");
        assert_eq!(canon("9007199254740992"), "9007199254740992");
    }

    #[test]
    fn string_escapes_are_minimal() {
        let value = json!("\u{0}\u{1f}\u{7f}\u{8}\u{c}\n\r\t\"\\/é😀");
        assert_eq!(
            to_canonical_string(&value).expect("canonical"),
            "\"\\u0000\\u001f\u{7f}\\b\\f\\n\\r\\t\\\"\\\\/é😀\""
        );
    }

    #[test]
    fn escapes_are_found_at_every_offset_of_a_long_string() {
        for special in ['"', '\\', '\n', '\u{1}', '\u{1f}'] {
            for at in 0..20 {
                let mut text = "abcdefghijklmnopqrst".to_owned();
                text.replace_range(at..=at, &special.to_string());
                let want = serde_json::to_string(&text).expect("json");
                assert_eq!(
                    to_canonical_string(&json!(text)).expect("canonical"),
                    want,
                    "{special:?} at {at}"
                );
            }
        }
        // Bytes just above the escaped ones, and multi-byte characters.
        let plain = " !#$%&'()*+,-./[]^_`{|}~\u{7f}é€😀 and more than eight bytes";
        assert_eq!(
            to_canonical_string(&json!(plain)).expect("canonical"),
            format!("\"{plain}\"")
        );
    }

    // The reference: a plain walk of a `serde_json::Value` (the form the
    // gateway used before writing straight from `Serialize`).

    fn write_value(out: &mut String, value: &Value) {
        match value {
            Value::Null => out.push_str("null"),
            Value::Bool(true) => out.push_str("true"),
            Value::Bool(false) => out.push_str("false"),
            Value::Number(n) => write_number(out, n),
            Value::String(s) => write_string(out, s),
            Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_value(out, item);
                }
                out.push(']');
            }
            Value::Object(map) => write_object(out, map),
        }
    }

    fn write_object(out: &mut String, map: &Map<String, Value>) {
        let mut members: Vec<(&String, &Value)> = map.iter().collect();
        members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
        out.push('{');
        for (i, (name, value)) in members.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write_string(out, name);
            out.push(':');
            write_value(out, value);
        }
        out.push('}');
    }

    fn write_number(out: &mut String, n: &Number) {
        if let Some(i) = n.as_i64()
            && i.unsigned_abs() <= MAX_SAFE_INTEGER
        {
            let _ = write!(out, "{i}");
            return;
        }
        if let Some(u) = n.as_u64()
            && u <= MAX_SAFE_INTEGER
        {
            let _ = write!(out, "{u}");
            return;
        }
        // Everything else is (or is taken as) an IEEE 754 double.
        write_double(out, n.as_f64().expect("finite without arbitrary_precision"));
    }

    fn reference(value: &Value) -> String {
        let mut out = String::new();
        write_value(&mut out, value);
        out
    }

    /// Both ways to the canonical form, which must agree.
    fn both<T: Serialize>(value: &T) -> String {
        let direct = to_canonical_string_of(value, None).expect("direct");
        let via_value = serde_json::to_value(value).expect("to_value");
        assert_eq!(
            direct,
            reference(&via_value),
            "direct and Value forms differ"
        );
        direct
    }

    #[test]
    fn the_direct_form_is_the_value_form() {
        let texts = [
            r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001,
                -0.0, 0, 1e21, 1e-7, 9007199254740992, 9007199254740993, -9007199254740993,
                18446744073709551615, -1, 10.0]}"#,
            r#"{"\u20ac": 1, "\r": 2, "\ufb33": 3, "1": 4, "\ud83d\ude00": 5, "\u0080": 6}"#,
            r#"{"b": [{"z": 1, "a": null}, [], {}, [[true, false]]], "a": {}, "c": "x\"\\\n\u0001y"}"#,
            r#"[]"#,
            r#""just a string""#,
            r#"null"#,
            r#"{"": {"": [""]}, "a": {"b": {"c": {"d": 1.5}}}}"#,
        ];
        for text in texts {
            let value: Value = serde_json::from_str(text).expect("test JSON");
            both(&value);
        }
    }

    #[test]
    fn the_direct_form_of_rust_types_is_their_value_form() {
        #[derive(Serialize)]
        enum Kind {
            Unit,
            New(u8),
            Tuple(i32, &'static str),
            Fields { z: bool, a: Option<f64> },
        }
        #[derive(Serialize)]
        struct Inner {
            zeta: char,
            alpha: (u16, i64),
            #[serde(flatten)]
            rest: std::collections::BTreeMap<String, u32>,
        }
        #[derive(Serialize)]
        struct Outer {
            kinds: Vec<Kind>,
            inner: Inner,
            none: Option<u8>,
            unit: (),
            #[serde(with = "serde_bytes_as_seq")]
            bytes: Vec<u8>,
            f32: f32,
            nan: f64,
            big: u64,
            keyed: std::collections::BTreeMap<u32, &'static str>,
        }
        mod serde_bytes_as_seq {
            pub(super) fn serialize<S: serde::Serializer>(
                v: &[u8],
                s: S,
            ) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(v)
            }
        }
        let outer = Outer {
            kinds: vec![
                Kind::Unit,
                Kind::New(7),
                Kind::Tuple(-3, "t"),
                Kind::Fields {
                    z: true,
                    a: Some(0.1),
                },
                Kind::Fields { z: false, a: None },
            ],
            inner: Inner {
                zeta: '\u{1f600}',
                alpha: (1, i64::MIN),
                rest: [("m".to_owned(), 1), ("\u{e9}".to_owned(), 2)].into(),
            },
            none: None,
            unit: (),
            bytes: vec![0, 255],
            f32: 0.1,
            nan: f64::NAN,
            big: u64::MAX,
            keyed: [(10, "ten"), (9, "nine")].into(),
        };
        let canonical = both(&outer);
        assert!(
            canonical.contains(r#""keyed":{"10":"ten","9":"nine"}"#),
            "{canonical}"
        );
        assert!(canonical.contains(r#""nan":null"#), "{canonical}");
    }

    #[test]
    fn the_direct_form_leaves_out_the_named_top_level_member_only() {
        let value = json!({"signature": {"signature": 1}, "a": 1, "z": {"signature": 2}});
        assert_eq!(
            to_canonical_string_of(&value, Some("signature")).expect("canonical"),
            r#"{"a":1,"z":{"signature":2}}"#
        );
    }

    #[test]
    fn the_direct_form_refuses_what_json_cannot_hold() {
        let float_keys = std::collections::BTreeMap::from([((), 1)]);
        assert!(matches!(
            to_canonical_string_of(&float_keys, None),
            Err(CanonError::Unsupported(_))
        ));
        assert!(matches!(
            to_canonical_string_of(&u128::MAX, None),
            Err(CanonError::Unsupported(_))
        ));
        assert_eq!(
            to_canonical_string_of(&(1_u128 << 53), None).expect("fits in u64"),
            "9007199254740992"
        );
        assert_eq!(
            to_canonical_string_of(&(1_i128 << 60), None).expect("fits in i64"),
            "1152921504606847000"
        );
    }

    #[test]
    fn nested_structures() {
        assert_eq!(
            canon(r#"{"b":[{"z":1,"a":null}],"a":{},"c":[]}"#),
            r#"{"a":{},"b":[{"a":null,"z":1}],"c":[]}"#
        );
    }
}
