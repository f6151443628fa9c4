//! Every key the config file accepts, read off the raw structs themselves.
//!
//! [`accepted`] runs the same `Deserialize` impls that parse a real file
//! (`RawConfig` and everything below it, `deny_unknown_fields` included)
//! against a deserializer that reads no text: when serde asks it for a
//! struct, it records the field names serde passes in and feeds back a
//! dummy value for each, descending into nested tables, arrays of tables
//! and options. What the parser accepts and what this lists therefore come
//! from one source; `tests/docs_config_keys.rs` checks the list against
//! `docs/configuration.md` so a new key cannot go undocumented.

use std::collections::BTreeSet;

use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess};

use super::RawConfig;

/// One accepted key: its dotted path from the top of the file (array
/// indexes left out, so `source.sse.url`) and whether its value is a table
/// of free-form names (`handler.env`, `handler.headers`, …).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub path: String,
    pub free_form: bool,
}

/// Every key path the config parser accepts, tables included, sorted.
pub fn accepted() -> Vec<Key> {
    let mut rec = Recorder::default();
    let parsed: Result<RawConfig, Error> = serde::Deserialize::deserialize(Walker {
        path: String::new(),
        rec: &mut rec,
    });
    if let Err(e) = parsed {
        // Only a type this walker does not know how to fake gets here.
        panic!("config::keys cannot walk the raw config structs: {e}");
    }
    rec.keys.into_iter().collect()
}

#[derive(Default)]
struct Recorder {
    keys: BTreeSet<Key>,
}

impl Recorder {
    fn mark_free_form(&mut self, path: &str) {
        if path.is_empty() {
            return;
        }
        let plain = Key {
            path: path.to_string(),
            free_form: false,
        };
        self.keys.remove(&plain);
        self.keys.insert(Key {
            path: path.to_string(),
            free_form: true,
        });
    }
}

/// Deserializes a dummy value of whatever type serde asks for at `path`.
struct Walker<'r> {
    path: String,
    rec: &'r mut Recorder,
}

impl Walker<'_> {
    fn child(&mut self, field: &str) -> Walker<'_> {
        let path = if self.path.is_empty() {
            field.to_string()
        } else {
            format!("{}.{field}", self.path)
        };
        Walker {
            path,
            rec: &mut *self.rec,
        }
    }
}

macro_rules! scalar {
    ($($method:ident => $visit:ident($($value:expr)?)),* $(,)?) => {
        $(
            fn $method<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
                visitor.$visit($($value)?)
            }
        )*
    };
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Error;

    fn deserialize_any<V: de::Visitor<'de>>(self, _visitor: V) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: a self-describing type; teach config::keys about it",
            self.path
        )))
    }

    scalar! {
        deserialize_bool => visit_bool(false),
        deserialize_i8 => visit_i64(0),
        deserialize_i16 => visit_i64(0),
        deserialize_i32 => visit_i64(0),
        deserialize_i64 => visit_i64(0),
        deserialize_u8 => visit_u64(0),
        deserialize_u16 => visit_u64(0),
        deserialize_u32 => visit_u64(0),
        deserialize_u64 => visit_u64(0),
        deserialize_f32 => visit_f64(0.0),
        deserialize_f64 => visit_f64(0.0),
        deserialize_char => visit_char('x'),
        deserialize_str => visit_str(""),
        deserialize_string => visit_str(""),
        deserialize_identifier => visit_str(""),
        deserialize_bytes => visit_bytes(&[]),
        deserialize_byte_buf => visit_bytes(&[]),
        deserialize_unit => visit_unit(),
        deserialize_ignored_any => visit_unit(),
    }

    fn deserialize_option<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    /// An array: one element, so an array of tables is walked once.
    fn deserialize_seq<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(OneElement { walker: Some(self) })
    }

    fn deserialize_tuple<V: de::Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    /// A map with keys of the operator's choosing: recorded as such, empty.
    fn deserialize_map<V: de::Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        self.rec.mark_free_form(&self.path);
        visitor.visit_map(Fields {
            walker: self,
            fields: &[],
            next: 0,
        })
    }

    /// A table with fixed keys: every one recorded and walked.
    fn deserialize_struct<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_map(Fields {
            walker: self,
            fields,
            next: 0,
        })
    }

    fn deserialize_enum<V: de::Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        _visitor: V,
    ) -> Result<V::Value, Error> {
        Err(de::Error::custom(format!(
            "{}: an enum; teach config::keys about it",
            self.path
        )))
    }
}

struct OneElement<'r> {
    walker: Option<Walker<'r>>,
}

impl<'de> SeqAccess<'de> for OneElement<'_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        match self.walker.take() {
            Some(w) => seed.deserialize(w).map(Some),
            None => Ok(None),
        }
    }
}

struct Fields<'r> {
    walker: Walker<'r>,
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> MapAccess<'de> for Fields<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        let key: StrDeserializer<'_, Error> = (*field).into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let field = self.fields[self.next];
        self.next += 1;
        let child = self.walker.child(field);
        child.rec.keys.insert(Key {
            path: child.path.clone(),
            free_form: false,
        });
        seed.deserialize(child)
    }
}
