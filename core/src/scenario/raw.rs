//! Stage one: the scenario file as written. No meaning is checked here beyond shape;
//! every struct refuses unknown fields so a typo is an error, not a silent default.
//!
//! Architecture invariant: a string field takes only what the file wrote as a string
//! ([`Text`]): `id: 123` or `title: null` is refused, not turned into `"123"` or
//! `"null"`. An optional field may be left out, but not written as `null`
//! ([`present`]). Duplicate keys are refused at every level by [`Unique`], run over the
//! document before these structs see it.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::ops::Deref;

use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};

use super::error::excerpt;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawScenario {
    pub id: Text,
    pub cause: Text,
    pub title: Text,
    pub fidelity: RawFidelity,
    pub requires: RawRequires,
    pub workload: RawWorkload,
    pub fault: RawFault,
    pub observe: RawObserve,
    pub remedy: RawRemedy,
    pub deadlines: RawDeadlines,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFidelity {
    pub level: Text,
    pub note: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRequires {
    pub runtime: Vec<Text>,
    #[serde(default, deserialize_with = "present")]
    pub kubernetes: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub containerd: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub kernel: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub node: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawWorkload {
    pub kind: Text,
    #[serde(default, deserialize_with = "present")]
    pub image: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub command: Option<Vec<Text>>,
    #[serde(default, deserialize_with = "present")]
    pub volume: Option<RawVolume>,
    #[serde(default, deserialize_with = "present")]
    pub grace_period: Option<Text>,
    #[serde(default)]
    pub finalizers: Vec<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawVolume {
    pub kind: Text,
    pub mount_path: Text,
}

/// `params` stays a map here: which keys are allowed depends on `kind`, and stage two
/// checks them with a typed struct per kind (again refusing unknown keys).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFault {
    pub kind: Text,
    #[serde(default)]
    pub params: BTreeMap<String, serde_yaml_ng::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawObserve {
    pub pod: Text,
    #[serde(rename = "for", default, deserialize_with = "present")]
    pub hold: Option<Text>,
    #[serde(default, deserialize_with = "present")]
    pub node: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRemedy {
    pub action: Text,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDeadlines {
    pub ready: Text,
    pub fault: Text,
    pub stuck: Text,
    pub detect: Text,
    pub clear: Text,
    pub recover: Text,
}

/// A string the file wrote as a string. A number, boolean or null in a string field is
/// refused with a hint to quote it, instead of being read as its spelling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl Deref for Text {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.0
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl TextVisitor {
    fn not_text<E: de::Error>(what: &str, spelled: &str) -> E {
        E::custom(format!(
            "{what} (read as `{}`), not a string; put the value in quotes",
            excerpt(spelled)
        ))
    }
}

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a string")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
        Ok(Text(v.to_owned()))
    }
    fn visit_string<E: de::Error>(self, v: String) -> Result<Text, E> {
        Ok(Text(v))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
        Err(Self::not_text("a boolean", &v.to_string()))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
        Err(Self::not_text("a number", &v.to_string()))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
        Err(Self::not_text("a number", &v.to_string()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Text, E> {
        Err(Self::not_text("a number", &v.to_string()))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Err(E::custom(
            "null is not a string; write a value (quote it, \"null\", if you mean the word)",
        ))
    }
    fn visit_none<E: de::Error>(self) -> Result<Text, E> {
        self.visit_unit()
    }
}

/// For an optional field: absent is `None` (with `#[serde(default)]`), but a field that
/// is written must hold a value. `kubernetes: null` or `kubernetes: ~` is refused rather
/// than read as "no constraint".
pub fn present<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

/// Stage zero: walks the whole document and refuses a mapping that repeats a key, at
/// any depth (serde's derive catches repeats of known struct fields, but a map such as
/// `fault.params` would keep the last one silently). Keys must be scalars; a key is
/// compared by its spelling, so `1` and `"1"` count as the same key. The error is raised
/// while the repeated key is read, so it carries that key's line and column.
pub struct Unique;

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(UniqueVisitor)
    }
}

struct UniqueVisitor;

impl<'de> Visitor<'de> for UniqueVisitor {
    type Value = Unique;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a YAML value")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_str<E>(self, _: &str) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_unit<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_none<E>(self) -> Result<Unique, E> {
        Ok(Unique)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Unique, D::Error> {
        Unique::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
        while seq.next_element::<Unique>()?.is_some() {}
        Ok(Unique)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
        let mut seen = BTreeSet::new();
        while map.next_key_seed(KeySeed { seen: &mut seen })?.is_some() {
            map.next_value::<Unique>()?;
        }
        Ok(Unique)
    }
    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<Unique, A::Error> {
        // A tagged value (`!tag x`): check what the tag wraps.
        use serde::de::VariantAccess;
        let (_, variant) = data.variant::<de::IgnoredAny>()?;
        variant.newtype_variant::<Unique>()
    }
}

struct KeySeed<'s> {
    seen: &'s mut BTreeSet<String>,
}

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl KeySeed<'_> {
    fn key<E: de::Error>(self, spelled: String) -> Result<(), E> {
        if self.seen.contains(&spelled) {
            return Err(E::custom(format!(
                "duplicate key `{}`: each key may appear once in a mapping",
                excerpt(&spelled)
            )));
        }
        self.seen.insert(spelled);
        Ok(())
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a scalar mapping key")
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<(), E> {
        self.key(v.to_string())
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<(), E> {
        self.key(v.to_string())
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<(), E> {
        self.key(v.to_string())
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<(), E> {
        self.key(v.to_string())
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<(), E> {
        self.key(v.to_owned())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.key("null".to_owned())
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.visit_unit()
    }
}
