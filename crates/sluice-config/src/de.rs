//! Deserializing a [`Node`] tree into serde types while collecting *every* error.
//!
//! serde's derived visitors stop at the first error, so this deserializer avoids returning
//! errors it can describe itself: a wrong type, an unknown field or an unknown enum variant is
//! recorded and replaced by a *filler* of the requested shape (zero, empty string, `None`,
//! the first variant, a struct of fillers), and deserialization goes on. Errors only the
//! visitor can raise (a missing field, a custom validation) abort the pass; the pass is then
//! rerun with that spot patched (the missing field injected as a filler, the failing node
//! replaced by one), until a pass completes or no further progress is possible.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, IntoDeserializer, Visitor};

use crate::yaml::{Node, NodeKind};
use crate::{Diagnostic, FieldPath, Location, did_you_mean};

/// How many reruns a document may need before we give up and report what we have.
const MAX_PASSES: usize = 64;

/// Deserializes `root` into `T`, returning every error found.
pub fn from_node<T: DeserializeOwned>(root: &Node) -> Result<T, Vec<Diagnostic>> {
    let mut patches = Patches::default();
    let mut all_errors: Vec<Diagnostic> = Vec::new();
    for _ in 0..MAX_PASSES {
        let session = Session {
            errors: RefCell::new(Vec::new()),
            patches: &patches,
        };
        let result = T::deserialize(NodeDe::new(root, FieldPath::root(), &session));
        push_unique(&mut all_errors, session.errors.into_inner());
        let error = match result {
            Ok(value) if all_errors.is_empty() => return Ok(value),
            Ok(_) => return Err(all_errors),
            Err(error) => error,
        };
        if error.reported {
            return Err(all_errors);
        }
        let path = error.path.clone().unwrap_or_default();
        let location = error
            .location
            .unwrap_or_else(|| root.find_nearest(&path).location());
        let progressed = match error.missing_field {
            Some(field) => {
                push_unique(
                    &mut all_errors,
                    vec![Diagnostic::new(
                        location,
                        path.key(field),
                        format!("missing required field `{field}`"),
                    )],
                );
                // A hand-written visitor may not take the injected field; then the whole
                // value becomes a filler instead.
                patches
                    .absent
                    .entry(path.clone())
                    .or_default()
                    .insert(field)
                    || patches.poisoned.insert(path)
            }
            None => {
                push_unique(
                    &mut all_errors,
                    vec![Diagnostic::new(location, path.clone(), error.message)],
                );
                patches.poisoned.insert(path)
            }
        };
        if !progressed {
            return Err(all_errors);
        }
    }
    Err(all_errors)
}

fn push_unique(into: &mut Vec<Diagnostic>, errors: Vec<Diagnostic>) {
    for error in errors {
        if !into.contains(&error) {
            into.push(error);
        }
    }
}

/// Spots patched for the next pass.
#[derive(Default)]
struct Patches {
    /// Nodes replaced by fillers because their value's own validation failed.
    poisoned: HashSet<FieldPath>,
    /// Required fields (per struct path) injected as fillers because they were missing.
    absent: HashMap<FieldPath, HashSet<&'static str>>,
}

struct Session<'p> {
    errors: RefCell<Vec<Diagnostic>>,
    patches: &'p Patches,
}

impl Session<'_> {
    fn record(&self, location: Location, path: &FieldPath, message: String) {
        self.errors
            .borrow_mut()
            .push(Diagnostic::new(location, path.clone(), message));
    }
}

/// The error type serde sees; converted to a [`Diagnostic`] by [`from_node`].
#[derive(Debug)]
pub struct Error {
    message: String,
    path: Option<FieldPath>,
    location: Option<Location>,
    missing_field: Option<&'static str>,
    /// Already recorded (an error from inside a filler): abort without a new diagnostic.
    reported: bool,
}

impl Error {
    fn reported() -> Self {
        Self {
            message: String::new(),
            path: None,
            location: None,
            missing_field: None,
            reported: true,
        }
    }

    fn at(mut self, path: &FieldPath, location: Location) -> Self {
        if self.path.is_none() {
            self.path = Some(path.clone());
            self.location = Some(location);
        }
        self
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

impl de::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self {
            message: msg.to_string(),
            path: None,
            location: None,
            missing_field: None,
            reported: false,
        }
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(unknown_name_message("field", field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        Self::custom(unknown_name_message("value", variant, expected))
    }

    fn missing_field(field: &'static str) -> Self {
        Self {
            missing_field: Some(field),
            ..Self::custom(format_args!("missing required field `{field}`"))
        }
    }
}

fn list(names: &[&str]) -> String {
    const SHOWN: usize = 12;
    let mut out = names
        .iter()
        .take(SHOWN)
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if names.len() > SHOWN {
        out.push_str(&format!(" and {} more", names.len() - SHOWN));
    }
    out
}

fn unknown_name_message(what: &str, name: &str, expected: &[&str]) -> String {
    let mut message = format!("unknown {what} `{name}`");
    if let Some(suggestion) = did_you_mean(name, expected.iter().copied()) {
        message.push_str(&format!(", did you mean `{suggestion}`?"));
    }
    if expected.is_empty() {
        message.push_str(" (no fields are accepted here)");
    } else {
        message.push_str(&format!(" (expected one of {})", list(expected)));
    }
    message
}

/// Deserializer for one node at one path.
struct NodeDe<'a, 'p> {
    node: &'a Node,
    path: FieldPath,
    session: &'a Session<'p>,
}

impl<'a, 'p> NodeDe<'a, 'p> {
    fn new(node: &'a Node, path: FieldPath, session: &'a Session<'p>) -> Self {
        Self {
            node,
            path,
            session,
        }
    }

    fn poisoned(&self) -> bool {
        !self.session.patches.poisoned.is_empty()
            && self.session.patches.poisoned.contains(&self.path)
    }

    /// The scalar text and whether it is plain, or `None` for collections.
    fn scalar(&self) -> Option<(&'a str, bool)> {
        match &self.node.kind {
            NodeKind::Scalar { value, plain } => Some((value.as_str(), *plain)),
            _ => None,
        }
    }

    /// Records "expected X, found Y" and continues with a filler.
    fn mismatch<V: Visitor<'a>>(
        &self,
        expected: &str,
        filler: Filler,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.session.record(
            self.node.location,
            &self.path,
            format!("expected {expected}, found {}", self.node.describe()),
        );
        filler.dispatch(visitor)
    }

    fn located<T>(&self, result: Result<T, Error>) -> Result<T, Error> {
        result.map_err(|error| error.at(&self.path, self.node.location))
    }
}

/// Which `deserialize_*` a filler answers.
#[derive(Clone, Copy)]
enum Filler {
    Any,
    Bool,
    Integer,
    Float,
    Str,
    Option,
    Unit,
    Seq(usize),
    Map,
    Struct(&'static [&'static str]),
    Enum(&'static [&'static str]),
}

impl Filler {
    fn dispatch<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        let result = match self {
            Filler::Any | Filler::Unit => visitor.visit_unit(),
            Filler::Bool => visitor.visit_bool(false),
            Filler::Integer => visitor.visit_u64(0),
            Filler::Float => visitor.visit_f64(0.0),
            Filler::Str => visitor.visit_str(""),
            Filler::Option => visitor.visit_none(),
            Filler::Seq(len) => visitor.visit_seq(FillerSeq(len)),
            Filler::Map => visitor.visit_map(FillerMap {
                fields: &[],
                next: 0,
            }),
            Filler::Struct(fields) => visitor.visit_map(FillerMap { fields, next: 0 }),
            Filler::Enum(variants) => visitor.visit_enum(FillerEnum(variants)),
        };
        result.map_err(|_| Error::reported())
    }
}

/// A value of whatever shape is asked for, used where the document's value was unusable.
struct FillerDe;

macro_rules! filler_methods {
    ($($method:ident => $filler:expr),* $(,)?) => {
        $(fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            $filler.dispatch(visitor)
        })*
    };
}

impl<'de> de::Deserializer<'de> for FillerDe {
    type Error = Error;

    filler_methods! {
        deserialize_any => Filler::Any,
        deserialize_bool => Filler::Bool,
        deserialize_i8 => Filler::Integer, deserialize_i16 => Filler::Integer,
        deserialize_i32 => Filler::Integer, deserialize_i64 => Filler::Integer,
        deserialize_i128 => Filler::Integer, deserialize_u8 => Filler::Integer,
        deserialize_u16 => Filler::Integer, deserialize_u32 => Filler::Integer,
        deserialize_u64 => Filler::Integer, deserialize_u128 => Filler::Integer,
        deserialize_f32 => Filler::Float, deserialize_f64 => Filler::Float,
        deserialize_char => Filler::Str, deserialize_str => Filler::Str,
        deserialize_string => Filler::Str, deserialize_bytes => Filler::Str,
        deserialize_byte_buf => Filler::Str, deserialize_option => Filler::Option,
        deserialize_unit => Filler::Unit, deserialize_seq => Filler::Seq(0),
        deserialize_map => Filler::Map, deserialize_identifier => Filler::Str,
        deserialize_ignored_any => Filler::Unit,
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        Filler::Unit.dispatch(visitor)
    }
    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor
            .visit_newtype_struct(self)
            .map_err(|_| Error::reported())
    }
    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        Filler::Seq(len).dispatch(visitor)
    }
    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        Filler::Seq(len).dispatch(visitor)
    }
    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        Filler::Struct(fields).dispatch(visitor)
    }
    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        Filler::Enum(variants).dispatch(visitor)
    }
}

struct FillerSeq(usize);

impl<'de> de::SeqAccess<'de> for FillerSeq {
    type Error = Error;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        if self.0 == 0 {
            return Ok(None);
        }
        self.0 -= 1;
        seed.deserialize(FillerDe).map(Some)
    }
}

struct FillerMap {
    fields: &'static [&'static str],
    next: usize,
}

impl<'de> de::MapAccess<'de> for FillerMap {
    type Error = Error;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        let Some(field) = self.fields.get(self.next) else {
            return Ok(None);
        };
        self.next += 1;
        seed.deserialize(de::value::StrDeserializer::<Error>::new(field))
            .map(Some)
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        seed.deserialize(FillerDe)
    }
}

struct FillerEnum(&'static [&'static str]);

impl<'de> de::EnumAccess<'de> for FillerEnum {
    type Error = Error;
    type Variant = FillerDe;
    fn variant_seed<V: DeserializeSeed<'de>>(self, seed: V) -> Result<(V::Value, FillerDe), Error> {
        let first = self.0.first().copied().unwrap_or("");
        let value = seed.deserialize(de::value::StrDeserializer::<Error>::new(first))?;
        Ok((value, FillerDe))
    }
}

impl<'de> de::VariantAccess<'de> for FillerDe {
    type Error = Error;
    fn unit_variant(self) -> Result<(), Error> {
        Ok(())
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, Error> {
        seed.deserialize(FillerDe)
    }
    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        Filler::Seq(len).dispatch(visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        Filler::Struct(fields).dispatch(visitor)
    }
}

/// Parses a plain scalar as an integer: decimal with optional sign and `_` separators, or
/// `0x`/`0o`/`0b` prefixed.
fn parse_integer(text: &str) -> Option<i128> {
    let cleaned: String = text.chars().filter(|c| *c != '_').collect();
    let (negative, digits) = match cleaned.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, cleaned.strip_prefix('+').unwrap_or(&cleaned)),
    };
    let (radix, digits) = if let Some(hex) = digits.strip_prefix("0x") {
        (16, hex)
    } else if let Some(octal) = digits.strip_prefix("0o") {
        (8, octal)
    } else if let Some(binary) = digits.strip_prefix("0b") {
        (2, binary)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = i128::from_str_radix(digits, radix).ok()?;
    Some(if negative { -magnitude } else { magnitude })
}

fn parse_float(text: &str) -> Option<f64> {
    match text {
        ".inf" | ".Inf" | ".INF" | "+.inf" => Some(f64::INFINITY),
        "-.inf" | "-.Inf" | "-.INF" => Some(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => Some(f64::NAN),
        _ => {
            let cleaned: String = text.chars().filter(|c| *c != '_').collect();
            let looks_numeric = cleaned
                .chars()
                .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | '+' | 'e' | 'E'));
            if looks_numeric {
                cleaned.parse().ok()
            } else {
                None
            }
        }
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "true" | "True" | "TRUE" => Some(true),
        "false" | "False" | "FALSE" => Some(false),
        _ => None,
    }
}

macro_rules! integer_method {
    ($method:ident, $ty:ty, $visit:ident) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.poisoned() {
                return Filler::Integer.dispatch(visitor);
            }
            let parsed = match self.scalar() {
                Some((text, true)) => parse_integer(text).and_then(|n| <$ty>::try_from(n).ok()),
                _ => None,
            };
            match parsed {
                Some(n) => {
                    let result = visitor.$visit(n);
                    self.located(result)
                }
                None => {
                    let expected = format!("an integer between {} and {}", <$ty>::MIN, <$ty>::MAX);
                    self.mismatch(&expected, Filler::Integer, visitor)
                }
            }
        }
    };
}

macro_rules! float_method {
    ($method:ident) => {
        fn $method<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
            if self.poisoned() {
                return Filler::Float.dispatch(visitor);
            }
            match self.scalar() {
                Some((text, true)) => match parse_float(text) {
                    Some(n) => {
                        let result = visitor.visit_f64(n);
                        self.located(result)
                    }
                    None => self.mismatch("a number", Filler::Float, visitor),
                },
                _ => self.mismatch("a number", Filler::Float, visitor),
            }
        }
    };
}

impl<'a, 'p> de::Deserializer<'a> for NodeDe<'a, 'p> {
    type Error = Error;

    fn deserialize_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Any.dispatch(visitor);
        }
        let result = match &self.node.kind {
            NodeKind::Scalar {
                value,
                plain: false,
            } => visitor.visit_str(value),
            NodeKind::Scalar { value, plain: true } => {
                if self.node.is_null() {
                    visitor.visit_unit()
                } else if let Some(b) = parse_bool(value) {
                    visitor.visit_bool(b)
                } else if let Some(n) = parse_integer(value) {
                    match (u64::try_from(n), i64::try_from(n)) {
                        (Ok(n), _) => visitor.visit_u64(n),
                        (_, Ok(n)) => visitor.visit_i64(n),
                        _ => visitor.visit_str(value),
                    }
                } else if let Some(f) = parse_float(value) {
                    visitor.visit_f64(f)
                } else {
                    visitor.visit_str(value)
                }
            }
            NodeKind::Sequence(items) => {
                visitor.visit_seq(SeqDe::new(items, self.path.clone(), self.session))
            }
            NodeKind::Mapping(entries) => {
                visitor.visit_map(MapDe::new(entries, self.path.clone(), self.session, None))
            }
        };
        self.located(result)
    }

    fn deserialize_bool<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Bool.dispatch(visitor);
        }
        match self
            .scalar()
            .and_then(|(text, plain)| if plain { parse_bool(text) } else { None })
        {
            Some(b) => {
                let result = visitor.visit_bool(b);
                self.located(result)
            }
            None => self.mismatch("a boolean (true or false)", Filler::Bool, visitor),
        }
    }

    integer_method!(deserialize_i8, i8, visit_i8);
    integer_method!(deserialize_i16, i16, visit_i16);
    integer_method!(deserialize_i32, i32, visit_i32);
    integer_method!(deserialize_i64, i64, visit_i64);
    integer_method!(deserialize_i128, i128, visit_i128);
    integer_method!(deserialize_u8, u8, visit_u8);
    integer_method!(deserialize_u16, u16, visit_u16);
    integer_method!(deserialize_u32, u32, visit_u32);
    integer_method!(deserialize_u64, u64, visit_u64);
    integer_method!(deserialize_u128, u128, visit_u128);
    float_method!(deserialize_f32);
    float_method!(deserialize_f64);

    fn deserialize_char<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Str.dispatch(visitor);
        }
        match self.scalar() {
            Some((text, _)) if text.chars().count() == 1 => {
                let result = visitor.visit_str(text);
                self.located(result)
            }
            _ => self.mismatch("a single character", Filler::Str, visitor),
        }
    }

    fn deserialize_str<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Str.dispatch(visitor);
        }
        match self.scalar() {
            Some(_) if self.node.is_null() => self.mismatch("a string", Filler::Str, visitor),
            Some((text, _)) => {
                let result = visitor.visit_str(text);
                self.located(result)
            }
            None => self.mismatch("a string", Filler::Str, visitor),
        }
    }

    fn deserialize_string<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Option.dispatch(visitor);
        }
        if self.node.is_null() {
            let result = visitor.visit_none();
            return self.located(result);
        }
        let (path, location) = (self.path.clone(), self.node.location);
        visitor
            .visit_some(self)
            .map_err(|error| error.at(&path, location))
    }

    fn deserialize_unit<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() || self.node.is_null() {
            return Filler::Unit.dispatch(visitor);
        }
        self.mismatch("null", Filler::Unit, visitor)
    }

    fn deserialize_unit_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        let (path, location) = (self.path.clone(), self.node.location);
        visitor
            .visit_newtype_struct(self)
            .map_err(|error| error.at(&path, location))
    }

    fn deserialize_seq<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Seq(0).dispatch(visitor);
        }
        match &self.node.kind {
            NodeKind::Sequence(items) => {
                let result = visitor.visit_seq(SeqDe::new(items, self.path.clone(), self.session));
                self.located(result)
            }
            _ => self.mismatch("a list", Filler::Seq(0), visitor),
        }
    }

    fn deserialize_tuple<V: Visitor<'a>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        match &self.node.kind {
            NodeKind::Sequence(items) if items.len() == len && !self.poisoned() => {
                let result = visitor.visit_seq(SeqDe::new(items, self.path.clone(), self.session));
                self.located(result)
            }
            _ if self.poisoned() => Filler::Seq(len).dispatch(visitor),
            _ => self.mismatch(&format!("a list of {len} items"), Filler::Seq(len), visitor),
        }
    }

    fn deserialize_tuple_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_tuple(len, visitor)
    }

    fn deserialize_map<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Map.dispatch(visitor);
        }
        match &self.node.kind {
            NodeKind::Mapping(entries) => {
                let result =
                    visitor.visit_map(MapDe::new(entries, self.path.clone(), self.session, None));
                self.located(result)
            }
            _ if self.node.is_null() => {
                let result =
                    visitor.visit_map(MapDe::new(&[], self.path.clone(), self.session, None));
                self.located(result)
            }
            _ => self.mismatch("a mapping", Filler::Map, visitor),
        }
    }

    fn deserialize_struct<V: Visitor<'a>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Struct(fields).dispatch(visitor);
        }
        let entries: &[(Node, Node)] = match &self.node.kind {
            NodeKind::Mapping(entries) => entries,
            _ if self.node.is_null() => &[],
            _ => {
                let expected = if fields.is_empty() {
                    "a mapping".to_owned()
                } else {
                    format!("a mapping with fields {}", list(fields))
                };
                return self.mismatch(&expected, Filler::Struct(fields), visitor);
            }
        };
        let result = visitor.visit_map(MapDe::new(
            entries,
            self.path.clone(),
            self.session,
            Some(fields),
        ));
        self.located(result)
    }

    fn deserialize_enum<V: Visitor<'a>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        if self.poisoned() {
            return Filler::Enum(variants).dispatch(visitor);
        }
        let (name, content) = match &self.node.kind {
            NodeKind::Scalar { value, .. } if !self.node.is_null() => (value.as_str(), None),
            NodeKind::Mapping(entries) if entries.len() == 1 => match &entries[0].0.kind {
                NodeKind::Scalar { value, .. } => (value.as_str(), Some(&entries[0].1)),
                _ => {
                    return self.mismatch(
                        &format!("one of {}", list(variants)),
                        Filler::Enum(variants),
                        visitor,
                    );
                }
            },
            _ => {
                return self.mismatch(
                    &format!("one of {}", list(variants)),
                    Filler::Enum(variants),
                    visitor,
                );
            }
        };
        if !variants.contains(&name) {
            self.session.record(
                self.node.location,
                &self.path,
                unknown_name_message("value", name, variants),
            );
            return Filler::Enum(variants).dispatch(visitor);
        }
        let access = EnumDe {
            name,
            content,
            path: self.path.key(name),
            location: self.node.location,
            session: self.session,
        };
        let result = visitor.visit_enum(access);
        self.located(result)
    }

    fn deserialize_identifier<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_ignored_any<V: Visitor<'a>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a, 'p> {
    items: std::slice::Iter<'a, Node>,
    index: usize,
    path: FieldPath,
    session: &'a Session<'p>,
}

impl<'a, 'p> SeqDe<'a, 'p> {
    fn new(items: &'a [Node], path: FieldPath, session: &'a Session<'p>) -> Self {
        Self {
            items: items.iter(),
            index: 0,
            path,
            session,
        }
    }
}

impl<'a> de::SeqAccess<'a> for SeqDe<'a, '_> {
    type Error = Error;

    fn next_element_seed<T: DeserializeSeed<'a>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = self.path.index(self.index);
        self.index += 1;
        seed.deserialize(NodeDe::new(item, path.clone(), self.session))
            .map(Some)
            .map_err(|error| error.at(&path, item.location))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

/// A mapping; with `fields` set it is a struct, whose unknown keys are reported and skipped and
/// whose patched-in missing fields are appended as fillers.
struct MapDe<'a, 'p> {
    entries: std::slice::Iter<'a, (Node, Node)>,
    path: FieldPath,
    session: &'a Session<'p>,
    fields: Option<&'static [&'static str]>,
    absent: Vec<&'static str>,
    pending: Option<Pending<'a>>,
}

enum Pending<'a> {
    Value(&'a Node, FieldPath),
    Absent,
}

impl<'a, 'p> MapDe<'a, 'p> {
    fn new(
        entries: &'a [(Node, Node)],
        path: FieldPath,
        session: &'a Session<'p>,
        fields: Option<&'static [&'static str]>,
    ) -> Self {
        let mut absent: Vec<&'static str> = match (fields, session.patches.absent.get(&path)) {
            (Some(_), Some(names)) => names.iter().copied().collect(),
            _ => Vec::new(),
        };
        absent.sort_unstable();
        Self {
            entries: entries.iter(),
            path,
            session,
            fields,
            absent,
            pending: None,
        }
    }
}

impl<'a> de::MapAccess<'a> for MapDe<'a, '_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'a>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Error> {
        for (key, value) in self.entries.by_ref() {
            let key_text = match &key.kind {
                NodeKind::Scalar { value, .. } => value.as_str(),
                _ => "",
            };
            if let Some(fields) = self.fields
                && !fields.contains(&key_text)
            {
                self.session.record(
                    key.location,
                    &self.path.key(key_text),
                    unknown_name_message("field", key_text, fields),
                );
                continue;
            }
            let value_path = self.path.key(key_text);
            self.pending = Some(Pending::Value(value, value_path.clone()));
            return seed
                .deserialize(NodeDe::new(key, value_path.clone(), self.session))
                .map(Some)
                .map_err(|error| error.at(&value_path, key.location));
        }
        if let Some(name) = self.absent.pop() {
            self.pending = Some(Pending::Absent);
            return seed.deserialize(name.into_deserializer()).map(Some);
        }
        Ok(None)
    }

    fn next_value_seed<V: DeserializeSeed<'a>>(&mut self, seed: V) -> Result<V::Value, Error> {
        match self.pending.take() {
            Some(Pending::Value(node, path)) => seed
                .deserialize(NodeDe::new(node, path.clone(), self.session))
                .map_err(|error| error.at(&path, node.location)),
            Some(Pending::Absent) => seed.deserialize(FillerDe).map_err(|_| Error::reported()),
            None => Err(de::Error::custom("a value was asked for before its key")),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len() + self.absent.len())
    }
}

struct EnumDe<'a, 'p> {
    name: &'a str,
    content: Option<&'a Node>,
    path: FieldPath,
    location: Location,
    session: &'a Session<'p>,
}

impl<'a, 'p> de::EnumAccess<'a> for EnumDe<'a, 'p> {
    type Error = Error;
    type Variant = Self;

    fn variant_seed<V: DeserializeSeed<'a>>(self, seed: V) -> Result<(V::Value, Self), Error> {
        let value = seed.deserialize(de::value::StrDeserializer::<Error>::new(self.name))?;
        Ok((value, self))
    }
}

impl<'a> EnumDe<'a, '_> {
    fn content_or_mismatch(&self, expected: &str) -> Result<&'a Node, Error> {
        self.content.ok_or_else(|| {
            de::Error::custom(format!(
                "`{}` expects {expected}: write `{}: …`",
                self.name, self.name
            ))
        })
    }
}

impl<'a> de::VariantAccess<'a> for EnumDe<'a, '_> {
    type Error = Error;

    fn unit_variant(self) -> Result<(), Error> {
        match self.content {
            Some(node) if !node.is_null() => Err(<Error as de::Error>::custom(format!(
                "`{}` takes no value",
                self.name
            ))
            .at(&self.path, node.location)),
            _ => Ok(()),
        }
    }

    fn newtype_variant_seed<T: DeserializeSeed<'a>>(self, seed: T) -> Result<T::Value, Error> {
        let node = self
            .content_or_mismatch("a value")
            .map_err(|e| e.at(&self.path, self.location))?;
        seed.deserialize(NodeDe::new(node, self.path.clone(), self.session))
    }

    fn tuple_variant<V: Visitor<'a>>(self, len: usize, visitor: V) -> Result<V::Value, Error> {
        let node = self
            .content_or_mismatch("a list")
            .map_err(|e| e.at(&self.path, self.location))?;
        de::Deserializer::deserialize_tuple(
            NodeDe::new(node, self.path.clone(), self.session),
            len,
            visitor,
        )
    }

    fn struct_variant<V: Visitor<'a>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let node = self
            .content_or_mismatch("a mapping")
            .map_err(|e| e.at(&self.path, self.location))?;
        de::Deserializer::deserialize_struct(
            NodeDe::new(node, self.path.clone(), self.session),
            "",
            fields,
            visitor,
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;

    use super::*;
    use crate::yaml::parse;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Config {
        name: String,
        #[serde(default)]
        replicas: u32,
        timeout_s: Option<f64>,
        #[serde(default)]
        mode: Mode,
        #[serde(default)]
        routes: BTreeMap<String, Route>,
    }

    #[derive(Debug, Deserialize, PartialEq, Default)]
    #[serde(rename_all = "snake_case")]
    enum Mode {
        #[default]
        Fast,
        Careful,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Route {
        url: String,
        #[serde(default)]
        weight: u8,
    }

    fn errors_of(text: &str) -> Vec<String> {
        let root = parse(text).unwrap();
        from_node::<Config>(&root)
            .unwrap_err()
            .into_iter()
            .map(|d| {
                let l = d.location.unwrap_or_default();
                format!("{}:{} {}: {}", l.line, l.column, d.path, d.message)
            })
            .collect()
    }

    #[test]
    fn a_valid_document_deserializes() {
        let root = parse(
            "name: gw\nreplicas: 3\nmode: careful\nroutes:\n  a: {url: 'http://x', weight: 10}\n",
        )
        .unwrap();
        let config: Config = from_node(&root).unwrap();
        assert_eq!(config.replicas, 3);
        assert_eq!(config.mode, Mode::Careful);
        assert_eq!(config.routes["a"].weight, 10);
        assert_eq!(config.timeout_s, None);
    }

    #[test]
    fn every_error_is_reported_at_once() {
        let errors = errors_of(
            "name: gw\nreplicas: many\nmode: carefull\nrouts: {}\nroutes:\n  a: {url: 'http://x', weight: 300}\n  b: {weight: 1}\n",
        );
        assert_eq!(
            errors,
            vec![
                "2:11 replicas: expected an integer between 0 and 4294967295, found \"many\"",
                "3:7 mode: unknown value `carefull`, did you mean `careful`? (expected one of `fast`, `careful`)",
                "4:1 routs: unknown field `routs`, did you mean `routes`? (expected one of `name`, `replicas`, `timeout_s`, `mode`, `routes`)",
                "6:32 routes.a.weight: expected an integer between 0 and 255, found \"300\"",
                "7:6 routes.b.url: missing required field `url`",
            ]
        );
    }

    #[test]
    fn missing_fields_at_several_levels_are_all_reported() {
        let errors = errors_of("routes:\n  a: {weight: 1}\n  b: {weight: 2}\n");
        assert_eq!(errors.len(), 3, "{errors:?}");
        assert!(
            errors
                .iter()
                .any(|e| e.contains(" name: missing required field `name`"))
        );
        assert!(errors.iter().any(|e| e.contains("routes.a.url: missing")));
        assert!(errors.iter().any(|e| e.contains("routes.b.url: missing")));
    }

    #[test]
    fn quoted_numbers_are_strings_and_plain_numbers_can_be_strings() {
        let errors = errors_of("name: 42\nreplicas: '3'\n");
        assert_eq!(
            errors,
            vec!["2:11 replicas: expected an integer between 0 and 4294967295, found \"3\""]
        );
    }

    #[test]
    fn wrong_collection_kinds_are_named() {
        let errors = errors_of("name: [a, b]\nroutes: [1]\n");
        assert_eq!(
            errors,
            vec![
                "1:7 name: expected a string, found a list",
                "2:9 routes: expected a mapping, found a list"
            ]
        );
    }

    #[test]
    fn custom_validation_errors_keep_their_path() {
        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct WithUrl {
            url: Checked,
            other: u8,
        }
        #[derive(Debug)]
        struct Checked;
        impl<'de> Deserialize<'de> for Checked {
            fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                if text.starts_with("http") {
                    Ok(Checked)
                } else {
                    Err(de::Error::custom("expected an http URL"))
                }
            }
        }
        let root = parse("url: ftp://x\nother: x\n").unwrap();
        let errors = from_node::<WithUrl>(&root).unwrap_err();
        let messages: Vec<_> = errors
            .iter()
            .map(|e| format!("{}: {}", e.path, e.message))
            .collect();
        assert!(
            messages.contains(&"url: expected an http URL".to_owned()),
            "{messages:?}"
        );
        assert!(
            messages
                .iter()
                .any(|m| m.starts_with("other: expected an integer")),
            "{messages:?}"
        );
    }

    #[test]
    fn null_means_none_and_empty_struct() {
        #[derive(Debug, Deserialize, Default)]
        #[serde(default)]
        struct Opt {
            a: Option<u8>,
            b: Vec<u8>,
        }
        let opt: Opt = from_node(&parse("a: ~\n").unwrap()).unwrap();
        assert_eq!(opt.a, None);
        let opt: Opt = from_node(&parse("").unwrap()).unwrap();
        assert!(opt.b.is_empty());
    }
}
