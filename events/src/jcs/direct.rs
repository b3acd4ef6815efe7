//! The RFC 8785 form of any `Serialize` value, written as serde walks it
//! (no `serde_json::Value` tree in between): the same bytes as serializing to
//! a `Value` and canonicalizing that, as the tests check.
//!
//! Objects are written to a buffer of their own, member after member, and
//! copied out in canonical name order when they end.

use std::borrow::Cow;
use std::fmt::{Display, Write as _};
use std::ops::Range;

use serde::Serialize;
use serde::ser::{self, Impossible};

use super::{CanonError, MAX_SAFE_INTEGER, utf16_order, write_double, write_string};

/// The canonical form of `value`, leaving out the member named `omit` of the
/// top-level object (the event's `signature`, say).
pub(super) fn to_string<T: Serialize + ?Sized>(
    value: &T,
    omit: Option<&str>,
) -> Result<String, CanonError> {
    let mut out = String::with_capacity(1024);
    value.serialize(Canon {
        out: &mut out,
        omit,
    })?;
    Ok(out)
}

impl ser::Error for CanonError {
    fn custom<T: Display>(msg: T) -> Self {
        Self::Unsupported(msg.to_string())
    }
}

/// `Serializer` methods writing an integer that fits an `i128`.
macro_rules! integers {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<(), CanonError> {
            self.int(v.into())
        }
    )*};
}

/// `Serializer` methods turning an integer map key into its decimal name.
macro_rules! integer_keys {
    ($($method:ident: $ty:ty),*) => {$(
        fn $method(self, v: $ty) -> Result<Self::Ok, CanonError> {
            Ok(Cow::Owned(v.to_string()))
        }
    )*};
}

struct Canon<'a> {
    out: &'a mut String,
    /// A member the object this serializer writes leaves out (top level only).
    omit: Option<&'a str>,
}

impl<'a> Canon<'a> {
    fn nested(out: &'a mut String) -> Self {
        Self { out, omit: None }
    }

    fn int(self, v: i128) -> Result<(), CanonError> {
        if v.unsigned_abs() <= u128::from(MAX_SAFE_INTEGER) {
            let _ = write!(self.out, "{v}");
            Ok(())
        } else if i64::try_from(v).is_ok() || u64::try_from(v).is_ok() {
            // What serde_json would hold, taken as a double.
            write_double(self.out, v as f64);
            Ok(())
        } else {
            Err(CanonError::Unsupported(format!("number {v} out of range")))
        }
    }

    fn object(self, len: Option<usize>) -> Object<'a> {
        Object {
            out: self.out,
            omit: self.omit,
            buf: String::new(),
            members: Vec::with_capacity(len.unwrap_or(8)),
            key: None,
            variant: None,
        }
    }

    /// `{"variant":` before a variant's content; the caller closes it.
    fn open_variant(&mut self, variant: &str) {
        self.out.push('{');
        write_string(self.out, variant);
        self.out.push(':');
    }
}

impl<'a> ser::Serializer for Canon<'a> {
    type Ok = ();
    type Error = CanonError;
    type SerializeSeq = Array<'a>;
    type SerializeTuple = Array<'a>;
    type SerializeTupleStruct = Array<'a>;
    type SerializeTupleVariant = Array<'a>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Object<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), CanonError> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }

    integers!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64
    );

    fn serialize_i128(self, v: i128) -> Result<(), CanonError> {
        self.int(v)
    }

    fn serialize_u128(self, v: u128) -> Result<(), CanonError> {
        match i128::try_from(v) {
            Ok(v) => self.int(v),
            Err(_) => Err(CanonError::Unsupported(format!("number {v} out of range"))),
        }
    }

    fn serialize_f32(self, v: f32) -> Result<(), CanonError> {
        self.serialize_f64(v.into())
    }

    fn serialize_f64(self, v: f64) -> Result<(), CanonError> {
        // serde_json turns a non-finite float into `null`.
        if v.is_finite() {
            write_double(self.out, v);
        } else {
            self.out.push_str("null");
        }
        Ok(())
    }

    fn serialize_char(self, v: char) -> Result<(), CanonError> {
        write_string(self.out, v.encode_utf8(&mut [0; 4]));
        Ok(())
    }

    fn serialize_str(self, v: &str) -> Result<(), CanonError> {
        write_string(self.out, v);
        Ok(())
    }

    fn serialize_bytes(self, v: &[u8]) -> Result<(), CanonError> {
        let mut seq = ser::Serializer::serialize_seq(self, Some(v.len()))?;
        for b in v {
            ser::SerializeSeq::serialize_element(&mut seq, b)?;
        }
        ser::SerializeSeq::end(seq)
    }

    fn serialize_none(self) -> Result<(), CanonError> {
        self.serialize_unit()
    }

    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), CanonError> {
        value.serialize(self)
    }

    fn serialize_unit(self) -> Result<(), CanonError> {
        self.out.push_str("null");
        Ok(())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<(), CanonError> {
        self.serialize_unit()
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<(), CanonError> {
        self.serialize_str(variant)
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<(), CanonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), CanonError> {
        self.open_variant(variant);
        value.serialize(Canon::nested(&mut *self.out))?;
        self.out.push('}');
        Ok(())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Array<'a>, CanonError> {
        self.out.push('[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: false,
        })
    }

    fn serialize_tuple(self, len: usize) -> Result<Array<'a>, CanonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Array<'a>, CanonError> {
        self.serialize_seq(Some(len))
    }

    fn serialize_tuple_variant(
        mut self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        _len: usize,
    ) -> Result<Array<'a>, CanonError> {
        self.open_variant(variant);
        self.out.push('[');
        Ok(Array {
            out: self.out,
            first: true,
            variant: true,
        })
    }

    fn serialize_map(self, len: Option<usize>) -> Result<Object<'a>, CanonError> {
        Ok(self.object(len))
    }

    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<Object<'a>, CanonError> {
        Ok(self.object(Some(len)))
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Object<'a>, CanonError> {
        let mut object = self.object(Some(len));
        object.variant = Some(variant);
        Ok(object)
    }
}

/// An array being written straight to the output.
struct Array<'a> {
    out: &'a mut String,
    first: bool,
    /// Inside `{"variant":…}`, closed with the array.
    variant: bool,
}

impl Array<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        if !std::mem::take(&mut self.first) {
            self.out.push(',');
        }
        value.serialize(Canon::nested(&mut *self.out))
    }

    fn close(self) -> Result<(), CanonError> {
        self.out.push(']');
        if self.variant {
            self.out.push('}');
        }
        Ok(())
    }
}

/// serde's four sequence traits, all writing elements in order.
macro_rules! array_traits {
    ($($name:ident :: $method:ident),*) => {$(
        impl ser::$name for Array<'_> {
            type Ok = ();
            type Error = CanonError;

            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
                self.element(value)
            }

            fn end(self) -> Result<(), CanonError> {
                self.close()
            }
        }
    )*};
}

array_traits!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field,
    SerializeTupleVariant::serialize_field
);

/// An object: members' values written to `buf` as they come, then copied out
/// in canonical name order.
struct Object<'a> {
    out: &'a mut String,
    omit: Option<&'a str>,
    buf: String,
    members: Vec<(Cow<'static, str>, Range<usize>)>,
    /// A map key waiting for its value.
    key: Option<Cow<'static, str>>,
    /// Inside `{"variant":…}`, closed with the object.
    variant: Option<&'static str>,
}

impl Object<'_> {
    fn member<T: Serialize + ?Sized>(
        &mut self,
        name: Cow<'static, str>,
        value: &T,
    ) -> Result<(), CanonError> {
        if self.omit == Some(&*name) {
            return Ok(());
        }
        let start = self.buf.len();
        value.serialize(Canon::nested(&mut self.buf))?;
        self.members.push((name, start..self.buf.len()));
        Ok(())
    }

    fn close(mut self) -> Result<(), CanonError> {
        // Stable: of members named alike (a flattened map repeating a
        // field), the last one stays, as in a `serde_json::Map`.
        self.members.sort_by(|a, b| utf16_order(&a.0, &b.0));
        if let Some(variant) = self.variant {
            self.out.push('{');
            write_string(self.out, variant);
            self.out.push(':');
        }
        self.out.push('{');
        let mut first = true;
        for (i, (name, range)) in self.members.iter().enumerate() {
            if self.members.get(i + 1).is_some_and(|next| next.0 == *name) {
                continue;
            }
            if !std::mem::take(&mut first) {
                self.out.push(',');
            }
            write_string(self.out, name);
            self.out.push(':');
            self.out.push_str(&self.buf[range.clone()]);
        }
        self.out.push('}');
        if self.variant.is_some() {
            self.out.push('}');
        }
        Ok(())
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = CanonError;

    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), CanonError> {
        self.key = Some(key.serialize(KeyName)?);
        Ok(())
    }

    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), CanonError> {
        let name = self
            .key
            .take()
            .ok_or_else(|| CanonError::Unsupported("map value without a key".to_owned()))?;
        self.member(name, value)
    }

    fn end(self) -> Result<(), CanonError> {
        self.close()
    }
}

/// serde's two struct traits, whose members have static names.
macro_rules! struct_traits {
    ($($name:ident),*) => {$(
        impl ser::$name for Object<'_> {
            type Ok = ();
            type Error = CanonError;

            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), CanonError> {
                self.member(Cow::Borrowed(key), value)
            }

            fn end(self) -> Result<(), CanonError> {
                self.close()
            }
        }
    )*};
}

struct_traits!(SerializeStruct, SerializeStructVariant);

/// Map keys: strings, or what serde_json turns into one (chars, integers,
/// booleans); anything else is refused, as serde_json refuses it.
struct KeyName;

impl KeyName {
    fn refused() -> CanonError {
        CanonError::Unsupported("object keys must be strings".to_owned())
    }
}

impl ser::Serializer for KeyName {
    type Ok = Cow<'static, str>;
    type Error = CanonError;
    type SerializeSeq = Impossible<Cow<'static, str>, CanonError>;
    type SerializeTuple = Impossible<Cow<'static, str>, CanonError>;
    type SerializeTupleStruct = Impossible<Cow<'static, str>, CanonError>;
    type SerializeTupleVariant = Impossible<Cow<'static, str>, CanonError>;
    type SerializeMap = Impossible<Cow<'static, str>, CanonError>;
    type SerializeStruct = Impossible<Cow<'static, str>, CanonError>;
    type SerializeStructVariant = Impossible<Cow<'static, str>, CanonError>;

    fn serialize_str(self, v: &str) -> Result<Self::Ok, CanonError> {
        Ok(Cow::Owned(v.to_owned()))
    }

    fn serialize_char(self, v: char) -> Result<Self::Ok, CanonError> {
        Ok(Cow::Owned(v.to_string()))
    }

    fn serialize_bool(self, v: bool) -> Result<Self::Ok, CanonError> {
        Ok(Cow::Borrowed(if v { "true" } else { "false" }))
    }

    integer_keys!(
        serialize_i8: i8,
        serialize_i16: i16,
        serialize_i32: i32,
        serialize_i64: i64,
        serialize_i128: i128,
        serialize_u8: u8,
        serialize_u16: u16,
        serialize_u32: u32,
        serialize_u64: u64,
        serialize_u128: u128
    );

    fn serialize_f32(self, _v: f32) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_f64(self, _v: f64) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_bytes(self, _v: &[u8]) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_none(self) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_some<T: Serialize + ?Sized>(self, _value: &T) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_unit(self) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_unit_struct(self, _name: &'static str) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Self::Ok, CanonError> {
        Ok(Cow::Borrowed(variant))
    }

    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        value: &T,
    ) -> Result<Self::Ok, CanonError> {
        value.serialize(self)
    }

    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _value: &T,
    ) -> Result<Self::Ok, CanonError> {
        Err(Self::refused())
    }

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, CanonError> {
        Err(Self::refused())
    }

    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, CanonError> {
        Err(Self::refused())
    }

    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, CanonError> {
        Err(Self::refused())
    }

    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleVariant, CanonError> {
        Err(Self::refused())
    }

    fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, CanonError> {
        Err(Self::refused())
    }

    fn serialize_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStruct, CanonError> {
        Err(Self::refused())
    }

    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        _variant: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeStructVariant, CanonError> {
        Err(Self::refused())
    }
}
