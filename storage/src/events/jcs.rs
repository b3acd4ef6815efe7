//! RFC 8785 JSON Canonicalization Scheme (JCS): the exact bytes an execution
//! event is hashed and signed over.

use std::fmt::Write as _;

use serde_json::{Map, Number, Value};

/// Integers with a larger magnitude are not exact in an IEEE 754 double, so
/// they are rendered as the double ECMAScript would hold (as the IntentProof
/// SDKs do).
const MAX_SAFE_INTEGER: u64 = 1 << 53;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CanonError {
    /// A number that is NaN or infinite (only reachable when `serde_json`'s
    /// `arbitrary_precision` holds a literal such as `1e400`).
    #[error("number {0} is not finite")]
    NonFinite(String),
}

/// The RFC 8785 canonical UTF-8 bytes of `value`.
pub fn to_canonical_bytes(value: &Value) -> Result<Vec<u8>, CanonError> {
    to_canonical_string(value).map(String::into_bytes)
}

/// The RFC 8785 canonical form of `value` as a string.
///
/// Object members are sorted by the UTF-16 code units of their names, numbers
/// are written as ECMAScript's `Number.prototype.toString` writes them, and
/// strings carry only the escapes JSON requires.
pub fn to_canonical_string(value: &Value) -> Result<String, CanonError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), CanonError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map)?,
    }
    Ok(())
}

fn write_object(out: &mut String, map: &Map<String, Value>) -> Result<(), CanonError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    // RFC 8785 §3.2.3: compare names as UTF-16 code unit sequences, which
    // differs from UTF-8 byte order once characters beyond the BMP appear.
    members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(out, name);
        out.push(':');
        write_value(out, value)?;
    }
    out.push('}');
    Ok(())
}

fn write_number(out: &mut String, n: &Number) -> Result<(), CanonError> {
    if let Some(i) = n.as_i64()
        && i.unsigned_abs() <= MAX_SAFE_INTEGER
    {
        let _ = write!(out, "{i}");
        return Ok(());
    }
    if let Some(u) = n.as_u64()
        && u <= MAX_SAFE_INTEGER
    {
        let _ = write!(out, "{u}");
        return Ok(());
    }
    // Everything else is (or is taken as) an IEEE 754 double.
    match n.as_f64() {
        Some(f) if f.is_finite() => {
            write_double(out, f);
            Ok(())
        }
        _ => Err(CanonError::NonFinite(n.to_string())),
    }
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

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

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
    fn nested_structures() {
        assert_eq!(
            canon(r#"{"b":[{"z":1,"a":null}],"a":{},"c":[]}"#),
            r#"{"a":{},"b":[{"a":null,"z":1}],"c":[]}"#
        );
    }
}
