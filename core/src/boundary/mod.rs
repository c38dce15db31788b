//! The calls that cross the plugin boundary, one module per capability.
//!
//! Each capability module holds its **method list**: one line per trait
//! method with a fixed wire tag, its parameters and its return type. The
//! list is the single source of truth for everything that has to agree
//! between the host and a plugin:
//!
//! - the plugin side's dispatcher (`dispatch`), which decodes a call by its
//!   tag, runs the trait method and encodes the result;
//! - the host side's client (`*Client`), which implements the capability
//!   trait by encoding each call with the same tag and argument order;
//! - the non-blocking form (`start`) for the methods marked `start`;
//! - the host's async API and its store layers, which expand the list
//!   through the exported `*_methods!` macros.
//!
//! Because both halves are generated from the same line, they cannot
//! disagree on a variant; tags are written out (never implied by order) and
//! checked for uniqueness at compile time; a tag the plugin does not know is
//! one clear error instead of a garbled decode. Adding a method to a
//! capability is: the method in the trait's file, its line in the list.
//!
//! # The list's syntax
//!
//! ```text
//! <tag> <mode> fn <name>(<arg>: <type> [=> <Into type> | as <owned type>], …) -> <return type>;
//! ```
//!
//! - `tag`: the call's number on the wire, unique within the capability;
//!   `0` is `health`, which every capability has and the list leaves out.
//! - `mode`: `call` (an ordinary call), `start` (also started without
//!   blocking, through the capability's async trait), `fast` (the host's
//!   client writes this method by hand, on a faster path; the tag still
//!   serves the plain encoding), or `fast_start` (both: the blocking call
//!   on the fast path, the started one in the plain encoding; for the
//!   relational `execute` and `query`, whose started form hands the
//!   decoded arguments to the store's `*_wire` method, which answers in
//!   the wire form).
//! - `=> T`: the host's async API takes `impl Into<T>`; `as T`: it takes
//!   `T`; neither: it takes the parameter's own (copyable) type. `T` must be
//!   the parameter type's [`Arg::Owned`], which the compiler checks.
//!
//! # The wire
//!
//! A request is the tag (two bytes, little-endian) followed by the
//! arguments, each in its [`Arg`] wire form, encoded together as a tuple
//! with `bincode` (the default configuration: fixed-width little-endian
//! integers, u64 lengths). A reply is the encoded return value, or an
//! encoded [`Error`](crate::Error). The relational fast path
//! ([`relational`]) passes parameters as borrowed views instead.

use crate::{Error, Result};
use serde::{de::DeserializeOwned, Deserialize, Deserializer, Serialize, Serializer};
use std::time::Duration;

pub mod cache;
pub mod graph;
pub mod relational;
pub mod vector;

/// The tag of `health`, which every capability has.
pub const HEALTH: u16 = 0;

/// Encode a value for the wire.
pub fn encode<T: Serialize + ?Sized>(v: &T) -> Vec<u8> {
    bincode::serialize(v).expect("wire encoding of backplane-core types cannot fail")
}

/// Decode a value from the wire.
pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T> {
    bincode::deserialize(bytes).map_err(|e| {
        Error::incompatible(format!(
            "could not decode a message across the plugin boundary ({e}): host and plugin disagree on the wire format; rebuild the plugin against this host's backplane-core"
        ))
    })
}

/// Decode an owned value from the wire.
pub fn decode_owned<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    decode(bytes)
}

/// A JSON document, as method lists name it.
pub type Json = serde_json::Value;

/// A request: `tag`, then `args` (a tuple of wire forms).
pub fn request(tag: u16, args: &impl Serialize) -> Vec<u8> {
    let mut buf = Vec::with_capacity(64);
    buf.extend_from_slice(&tag.to_le_bytes());
    bincode::serialize_into(&mut buf, args)
        .expect("wire encoding of backplane-core types cannot fail");
    buf
}

/// Split a request into its tag and its encoded arguments.
pub fn split_tag(req: &[u8]) -> Result<(u16, &[u8])> {
    match req {
        [a, b, rest @ ..] => Ok((u16::from_le_bytes([*a, *b]), rest)),
        _ => Err(Error::incompatible(
            "a call across the plugin boundary is too short to carry its tag: rebuild the plugin against this host's backplane-core",
        )),
    }
}

/// The error for a tag this side does not know.
pub fn unknown_call(capability: &str, tag: u16) -> Error {
    Error::incompatible(format!(
        "the plugin does not know {capability} call {tag}: it was built against another backplane-core; rebuild it against the host's"
    ))
}

/// Fails to compile (a panic in a constant) when two methods of one
/// capability share a wire tag.
pub const fn check_tags(tags: &[u16]) {
    let mut i = 0;
    while i < tags.len() {
        let mut j = i + 1;
        while j < tags.len() {
            if tags[i] == tags[j] {
                panic!("two methods of one capability share a wire tag: give each its own");
            }
            j += 1;
        }
        i += 1;
    }
}

/// How one parameter type of a capability method crosses the boundary,
/// and what the host's async API takes for it.
///
/// `Self` is the parameter as the trait method takes it (`&str`,
/// `Option<&Filter>`, `u32`); it is encoded from [`Arg::to_wire`], decoded
/// on the other side as [`Arg::Wire`] and lent back with
/// [`Arg::from_wire`]. The async API takes [`Arg::Owned`] and lends it
/// with [`Arg::lend`].
pub trait Arg<'a>: Copy {
    /// The owned form (what the async API moves to a blocking thread).
    type Owned: 'static;
    /// The decoded form.
    type Wire: DeserializeOwned;
    /// The encoded form.
    fn to_wire(self) -> impl Serialize + 'a;
    /// The parameter, borrowed from its decoded form.
    fn from_wire(w: &'a Self::Wire) -> Self;
    /// The parameter, borrowed from its owned form.
    fn lend(o: &'a Self::Owned) -> Self;
    /// The parameter, copied into its owned form (what a caller of the
    /// blocking API hands the async one).
    fn owned(self) -> Self::Owned;
}

impl<'a> Arg<'a> for &'a str {
    type Owned = String;
    type Wire = String;
    fn to_wire(self) -> impl Serialize + 'a {
        self
    }
    fn from_wire(w: &'a String) -> Self {
        w
    }
    fn lend(o: &'a String) -> Self {
        o
    }
    fn owned(self) -> String {
        self.to_string()
    }
}

impl<'a> Arg<'a> for Option<&'a str> {
    type Owned = Option<String>;
    type Wire = Option<String>;
    fn to_wire(self) -> impl Serialize + 'a {
        self
    }
    fn from_wire(w: &'a Option<String>) -> Self {
        w.as_deref()
    }
    fn lend(o: &'a Option<String>) -> Self {
        o.as_deref()
    }
    fn owned(self) -> Option<String> {
        self.map(str::to_string)
    }
}

impl<'a, T: Serialize + DeserializeOwned + Clone + 'static> Arg<'a> for &'a [T] {
    type Owned = Vec<T>;
    type Wire = Vec<T>;
    fn to_wire(self) -> impl Serialize + 'a {
        self
    }
    fn from_wire(w: &'a Vec<T>) -> Self {
        w
    }
    fn lend(o: &'a Vec<T>) -> Self {
        o
    }
    fn owned(self) -> Vec<T> {
        self.to_vec()
    }
}

/// JSON documents cross as their text: the wire encoding cannot carry a
/// self-describing value.
impl<'a> Arg<'a> for &'a serde_json::Value {
    type Owned = serde_json::Value;
    type Wire = JsonText;
    fn to_wire(self) -> impl Serialize + 'a {
        JsonRef(self)
    }
    fn from_wire(w: &'a JsonText) -> Self {
        &w.0
    }
    fn lend(o: &'a serde_json::Value) -> Self {
        o
    }
    fn owned(self) -> serde_json::Value {
        self.clone()
    }
}

/// A JSON document decoded from its text.
pub struct JsonText(serde_json::Value);

impl<'de> Deserialize<'de> for JsonText {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        crate::value::json_text::deserialize(d).map(JsonText)
    }
}

struct JsonRef<'a>(&'a serde_json::Value);

impl Serialize for JsonRef<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        crate::value::json_text::serialize(self.0, s)
    }
}

/// Parameters passed by reference whose wire form is their own serde form.
macro_rules! by_ref {
    ($($t:ty),* $(,)?) => {$(
        impl<'a> Arg<'a> for &'a $t {
            type Owned = $t;
            type Wire = $t;
            fn to_wire(self) -> impl Serialize + 'a {
                self
            }
            fn from_wire(w: &'a $t) -> Self {
                w
            }
            fn lend(o: &'a $t) -> Self {
                o
            }
            fn owned(self) -> $t {
                self.clone()
            }
        }
        impl<'a> Arg<'a> for Option<&'a $t> {
            type Owned = Option<$t>;
            type Wire = Option<$t>;
            fn to_wire(self) -> impl Serialize + 'a {
                self
            }
            fn from_wire(w: &'a Option<$t>) -> Self {
                w.as_ref()
            }
            fn lend(o: &'a Option<$t>) -> Self {
                o.as_ref()
            }
            fn owned(self) -> Option<$t> {
                self.cloned()
            }
        }
    )*};
}

by_ref!(
    crate::Message,
    crate::Filter,
    crate::SearchRequest,
    crate::NodeQuery,
    crate::Params,
);

/// Parameters passed by value.
macro_rules! by_value {
    ($($t:ty),* $(,)?) => {$(
        impl<'a> Arg<'a> for $t {
            type Owned = $t;
            type Wire = $t;
            fn to_wire(self) -> impl Serialize + 'a {
                self
            }
            fn from_wire(w: &'a $t) -> Self {
                *w
            }
            fn lend(o: &'a $t) -> Self {
                *o
            }
            fn owned(self) -> $t {
                self
            }
        }
    )*};
}

by_value!(
    bool,
    u32,
    u64,
    usize,
    Duration,
    Option<Duration>,
    crate::Distance,
    crate::Direction,
);

/// A reply callback handed to a plugin's non-blocking method: it encodes
/// the typed result for the wire.
pub type Answer = Box<dyn FnOnce(Result<Vec<u8>>) + Send>;

/// The async API's parameter type for one list parameter (see the
/// module's list syntax).
#[doc(hidden)]
#[macro_export]
macro_rules! __boundary_async_ty {
    ($t:ty => $into:ty) => { impl ::core::convert::Into<$into> };
    ($t:ty as $owned:ty) => { $owned };
    ($t:ty) => { $t };
}

/// Generate a capability's dispatcher, client methods and non-blocking
/// start from its method list. Expanded inside the capability's module;
/// `$Client` must have `fn remote(&self) -> &crate::ffi::Remote`.
macro_rules! generate {
    (
        ($Client:ident { $($extra:tt)* })
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        const _: () = $crate::boundary::check_tags(&[$crate::boundary::HEALTH $(, $tag)*]);

        /// Run one encoded call against `s`, returning the encoded result.
        pub(crate) fn dispatch(s: &dyn $Trait, req: &[u8]) -> $crate::Result<Vec<u8>> {
            let (tag, body) = $crate::boundary::split_tag(req)?;
            if tag == $crate::boundary::HEALTH {
                return Ok($crate::boundary::encode(&s.health()?));
            }
            $(
                if tag == $tag {
                    #[allow(unused_parens)]
                    let ($($a,)*): ($(<$t as $crate::boundary::Arg<'static>>::Wire,)*) =
                        $crate::boundary::decode(body)?;
                    return Ok($crate::boundary::encode(
                        &s.$m($(<$t as $crate::boundary::Arg<'_>>::from_wire(&$a)),*)?,
                    ));
                }
            )*
            Err($crate::boundary::unknown_call(stringify!($Trait), tag))
        }

        impl $Trait for $Client {
            $($extra)*
            fn health(&self) -> $crate::Result<$crate::Health> {
                self.remote().call($crate::boundary::HEALTH, &())
            }
            $(
                $crate::boundary::client_method!($mode $tag fn $m($($a: $t),*) -> $r);
            )*
        }

        $crate::boundary::start!(
            [$Trait $Client $($Async $as_async)?]
            $($tag $mode fn $m($($a: $t),*) -> $r;)*
        );
    };
}
pub(crate) use generate;

/// One client method: encode the call with its tag, run it, decode.
macro_rules! client_method {
    (fast $($rest:tt)*) => {};
    (fast_start $($rest:tt)*) => {};
    ($mode:ident $tag:literal fn $m:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        fn $m(&self, $($a: $t),*) -> $crate::Result<$r> {
            self.remote().call(
                $tag,
                &($(<$t as $crate::boundary::Arg<'_>>::to_wire($a),)*),
            )
        }
    };
}
pub(crate) use client_method;

/// The non-blocking half: `has_async` and `start` on the plugin's side, the
/// async trait on the host's client. A capability without an async trait
/// gets a `start` that never starts anything.
macro_rules! start {
    ([$Trait:ident $Client:ident] $($rest:tt)*) => {
        /// Whether `s` serves any call without blocking.
        pub(crate) fn has_async(_: &dyn $Trait) -> bool {
            false
        }
        /// Start a call without blocking: this capability has no such calls.
        pub(crate) fn start(
            _: &dyn $Trait,
            _: &[u8],
            _: &mut dyn FnMut() -> $crate::boundary::Answer,
        ) -> bool {
            false
        }
    };
    (
        [$Trait:ident $Client:ident $Async:ident $as_async:ident]
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty),*) -> $r:ty;)*
    ) => {
        /// Whether `s` serves its `start` calls without blocking.
        pub(crate) fn has_async(s: &dyn $Trait) -> bool {
            s.$as_async().is_some()
        }

        /// Start one encoded call without blocking. True when started:
        /// `answer` was then called once, and the function it returned is
        /// called exactly once with the result. False, without calling
        /// `answer`, for a call that has no non-blocking form here.
        pub(crate) fn start(
            s: &dyn $Trait,
            req: &[u8],
            answer: &mut dyn FnMut() -> $crate::boundary::Answer,
        ) -> bool {
            let Some(a) = s.$as_async() else {
                return false;
            };
            let Ok((tag, body)) = $crate::boundary::split_tag(req) else {
                return false;
            };
            $(
                $crate::boundary::start_arm!(
                    $mode $tag fn $m($($a: $t),*) -> $r; a, tag, body, answer
                );
            )*
            false
        }

        impl $Async for $Client {
            $(
                $crate::boundary::start_method!($mode $tag fn $m($($a: $t),*) -> $r);
            )*
        }
    };
}
pub(crate) use start;

/// One branch of the plugin side's `start`.
macro_rules! start_arm {
    // The relational hot calls: started on their decoded arguments, given
    // up to the store, which answers in the wire form (`*_wire`).
    (fast_start $tag:literal fn $m:ident(sql: $st:ty, params: $pt:ty) -> $r:ty; $async:ident, $got:ident, $body:ident, $answer:ident) => {
        if $got == $tag {
            let Ok((sql, params)) = $crate::boundary::decode::<(String, $crate::Params)>($body) else {
                return false;
            };
            let reply = $answer();
            $crate::boundary::relational::start_wire!($m, $async, sql, params, reply);
            return true;
        }
    };
    (start $tag:literal fn $m:ident($($a:ident: $t:ty),*) -> $r:ty; $async:ident, $got:ident, $body:ident, $answer:ident) => {
        if $got == $tag {
            #[allow(unused_parens)]
            let Ok(($($a,)*)) = $crate::boundary::decode::<($(<$t as $crate::boundary::Arg<'static>>::Wire,)*)>($body) else {
                return false;
            };
            let reply = $answer();
            $async.$m(
                $(<$t as $crate::boundary::Arg<'_>>::from_wire(&$a),)*
                Box::new(move |r: $crate::Result<$r>| reply(r.map(|v| $crate::boundary::encode(&v)))),
            );
            return true;
        }
    };
    ($mode:ident $($rest:tt)*) => {};
}
pub(crate) use start_arm;

/// One method of the host client's async trait.
macro_rules! start_method {
    // The relational hot calls: the reply decoded as the fast path's is
    // (`relational::Reply`).
    (fast_start $tag:literal fn $m:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        fn $m(&self, $($a: $t,)* done: $crate::cache::Done<$r>) {
            self.remote().start_with(
                $tag,
                &($(<$t as $crate::boundary::Arg<'_>>::to_wire($a),)*),
                <$r as $crate::boundary::relational::Reply>::decoder(self),
                done,
            )
        }
    };
    (start $tag:literal fn $m:ident($($a:ident: $t:ty),*) -> $r:ty) => {
        fn $m(&self, $($a: $t,)* done: $crate::cache::Done<$r>) {
            self.remote().start(
                $tag,
                &($(<$t as $crate::boundary::Arg<'_>>::to_wire($a),)*),
                done,
            )
        }
    };
    ($mode:ident $($rest:tt)*) => {};
}
pub(crate) use start_method;

#[cfg(test)]
mod tests;

#[cfg(test)]
mod wire_tests {
    use super::*;

    #[test]
    fn requests_carry_their_tag_first() {
        let req = request(7, &("k", 3u32));
        let (tag, body) = split_tag(&req).unwrap();
        assert_eq!(tag, 7);
        let (k, n): (String, u32) = decode(body).unwrap();
        assert_eq!((k.as_str(), n), ("k", 3));
        assert!(split_tag(&[1]).is_err());
    }

    #[test]
    fn json_arguments_cross_as_text() {
        let v = serde_json::json!({"a": [1, 2.5, null, "x"], "b": {"c": true}});
        let req = request(1, &(<&serde_json::Value as Arg<'_>>::to_wire(&v),));
        let (_, body) = split_tag(&req).unwrap();
        let (w,): (JsonText,) = decode(body).unwrap();
        assert_eq!(<&serde_json::Value as Arg<'_>>::from_wire(&w), &v);
    }
}
