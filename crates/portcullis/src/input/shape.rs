//! What an input type declares: its top-level field names (and which of
//! them are sealed), learned once at registration from its `Deserialize`
//! impl. The decoder refuses any other field ([`super::decode`]); the
//! validator maps garde's Rust names back to these wire names
//! ([`super::validate`]); the manifest lists the sealed ones.

use std::cell::Cell;

use serde::de::{self, DeserializeOwned, Deserializer, MapAccess, Visitor};

/// The declared top-level fields of an input type.
#[derive(Clone, Debug)]
pub struct InputShape {
    /// The Rust type's name, for error messages.
    pub type_name: &'static str,
    /// Every top-level wire name (after serde renames); the decoder
    /// refuses any other.
    pub fields: &'static [&'static str],
    /// The fields whose type is `Sealed<T>` (or `Option<Sealed<T>>`), for
    /// the manifest: a reviewer sees which values the client cannot choose.
    pub sealed: Vec<&'static str>,
    /// The fields whose type is `Upload<R>` (or `Option<Upload<R>>`), with
    /// their rules: the decoder streams these, the manifest lists them.
    pub uploads: Vec<crate::upload::UploadField>,
}

/// Why an input type cannot be used as an action input.
#[derive(Debug, thiserror::Error)]
#[error(
    "input type `{0}` must be a struct with named fields deriving Deserialize (no #[serde(flatten)], no maps, no enums) so its fields can be checked"
)]
pub struct ShapeError(pub &'static str);

impl InputShape {
    /// Learns `T`'s field names by asking its `Deserialize` impl to describe
    /// itself to a deserializer that only listens.
    pub fn of<T: DeserializeOwned>() -> Result<Self, ShapeError> {
        let captured = Cell::new(None);
        let _ = T::deserialize(FieldCapture(&captured));
        let type_name = std::any::type_name::<T>();
        match captured.get() {
            Some(fields) => Ok(InputShape {
                type_name,
                fields,
                sealed: fields
                    .iter()
                    .copied()
                    .filter(|f| field_is_sealed::<T>(f))
                    .collect(),
                uploads: fields.iter().filter_map(|f| field_upload::<T>(f)).collect(),
            }),
            None => Err(ShapeError(type_name)),
        }
    }

    pub(crate) fn declares(&self, name: &str) -> bool {
        self.fields.contains(&name)
    }
}

/// A deserializer that records the field list of `deserialize_struct` and
/// then fails. Written by hand because no maintained crate exposes serde's
/// field list without a full reflection framework (serde-reflection pulls in
/// much more than these 30 lines).
struct FieldCapture<'a>(&'a Cell<Option<&'static [&'static str]>>);

#[derive(Debug)]
struct Stop;
impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("shape captured")
    }
}
impl std::error::Error for Stop {}
impl de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> Deserializer<'de> for FieldCapture<'_> {
    type Error = Stop;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Stop> {
        self.0.set(Some(fields));
        Err(Stop)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

/// Whether `T`'s field `field` is a `Sealed<_>`: feeds `T`'s `Deserialize`
/// a one-entry map whose value deserializer fails at once unless the
/// field's type is `Sealed` (seen through `Option` and newtypes).
fn field_is_sealed<T: DeserializeOwned>(field: &'static str) -> bool {
    super::sealed::probe(|| {
        let _ = T::deserialize(FieldProbe(field, None));
    })
}

/// Whether `T`'s field `field` is an `Upload<R>`, and its rules.
fn field_upload<T: DeserializeOwned>(field: &'static str) -> Option<crate::upload::UploadField> {
    let optional = Cell::new(false);
    let mut rules = None;
    // Inside the sealed probe too, so a `Sealed<T>` field asked about here
    // reports itself instead of trying to open (and logging a failure).
    super::sealed::probe(|| {
        rules = crate::upload::probe(|| {
            let _ = T::deserialize(FieldProbe(field, Some(&optional)));
        });
    });
    rules.map(|(max_bytes, types)| crate::upload::UploadField {
        name: field,
        max_bytes,
        types,
        optional: optional.get(),
    })
}

struct FieldProbe<'a>(&'static str, Option<&'a Cell<bool>>);

impl<'de> Deserializer<'de> for FieldProbe<'_> {
    type Error = Stop;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_map(OneEntry(Some(self.0), self.1))
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map enum identifier ignored_any
    }
}

struct OneEntry<'a>(Option<&'static str>, Option<&'a Cell<bool>>);

impl<'de> MapAccess<'de> for OneEntry<'_> {
    type Error = Stop;
    fn next_key_seed<K: de::DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Stop> {
        match self.0.take() {
            Some(name) => seed
                .deserialize(de::value::BorrowedStrDeserializer::<Stop>::new(name))
                .map(Some),
            None => Ok(None),
        }
    }
    fn next_value_seed<V: de::DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Stop> {
        seed.deserialize(ValueProbe(self.1))
    }
}

/// The probed field's value; records (in the cell) that the field's type
/// went through `Option`.
struct ValueProbe<'a>(Option<&'a Cell<bool>>);

impl<'de> Deserializer<'de> for ValueProbe<'_> {
    type Error = Stop;
    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }
    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Stop> {
        if let Some(optional) = self.0 {
            optional.set(true);
        }
        visitor.visit_some(self)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Stop> {
        visitor.visit_newtype_struct(self)
    }
    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
        bytes byte_buf unit unit_struct seq tuple
        tuple_struct map enum identifier ignored_any struct
    }
}
