//! Store layers: a type that wraps stores of one capability implements the
//! capability's trait with [`layer!`], from the capability's method list in
//! `backplane_core::boundary`, so a layer covers every method the trait
//! has, today's and tomorrow's.
//!
//! The layer type provides two inherent methods:
//!
//! - `fn route<T>(&self, op: Op, call, owned) -> Result<T>`, which runs
//!   one call on whichever store it chooses. `call` borrows the caller's
//!   arguments and may run more than once. `owned()` turns the call into
//!   one that owns its arguments (encoded as they cross the plugin
//!   boundary), for a layer that must run it on another thread or keep it
//!   for later; a layer that does neither never calls it, and pays nothing.
//! - `fn layer_health(&self) -> Result<Health>`, the layer's own `health`.

/// Which method a call is: its wire tag (unique within the capability, 0
/// for `health`) and its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The method's tag in the capability's method list.
    pub tag: u16,
    /// The method's name.
    pub name: &'static str,
}

/// A call that owns its arguments: it can move to another thread or run
/// again.
pub type OwnedCall<D, T> = Box<dyn Fn(&D) -> backplane_core::Result<T> + Send + Sync>;

/// A call in owned form: the request as it crosses the plugin boundary
/// (tag and encoded arguments, what a journal keeps; [`replay`] runs it on
/// any store of the capability), and a closure that runs it and returns
/// the typed result.
pub struct Owned<D: ?Sized, T> {
    /// The encoded request.
    pub request: std::sync::Arc<[u8]>,
    /// The call, decoding its arguments from `request`.
    pub call: OwnedCall<D, T>,
}

/// The method names of a capability's method list, from the text of its
/// file in `backplane_core::boundary`: what the tests of hand-written
/// layers check each layer names.
#[cfg(test)]
pub(crate) fn listed_methods(list: &str) -> Vec<&str> {
    list.lines()
        .map(str::trim)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_digit()))
        .filter_map(|l| l.split_once(" fn "))
        .filter_map(|(_, rest)| rest.split_once('(').map(|(name, _)| name))
        .collect()
}

/// Fails unless `text` (a layer's source) has `fn <name>(` for every
/// method of every list in `lists`; `fix` says where to add one.
#[cfg(test)]
pub(crate) fn assert_every_method(text: &str, lists: &[&str], fix: &str) {
    for list in lists {
        for name in listed_methods(list) {
            assert!(
                text.contains(&format!("fn {name}(")),
                "{name} is missing: {fix}"
            );
        }
    }
}

/// Trait methods that pass a layer by: each calls the same method of
/// `self.inner` with the same arguments.
macro_rules! forward {
    ($(fn $m:ident(&self $(, $a:ident: $t:ty)*) -> $r:ty;)*) => {
        $(fn $m(&self $(, $a: $t)*) -> backplane_core::Result<$r> { self.inner.$m($($a),*) })*
    };
}
pub(crate) use forward;

/// Implement a capability's trait on a layer type:
/// `backplane_core::cache_methods!(layer!(MyLayer));`.
macro_rules! layer {
    (
        ($Layer:ty)
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        impl backplane_core::$Trait for $Layer {
            $(
                #[allow(clippy::too_many_arguments)]
                fn $m(&self, $($a: $t),*) -> backplane_core::Result<$r> {
                    self.route(
                        $crate::layer::Op { tag: $tag, name: stringify!($m) },
                        |s: &(dyn backplane_core::$Trait + 'static)| s.$m($($a),*),
                        || -> $crate::layer::Owned<dyn backplane_core::$Trait, $r> {
                            let request: std::sync::Arc<[u8]> = backplane_core::boundary::request(
                                $tag,
                                &($(<$t as backplane_core::boundary::Arg<'_>>::to_wire($a),)*),
                            )
                            .into();
                            let req = request.clone();
                            $crate::layer::Owned {
                                request,
                                call: Box::new(move |s: &(dyn backplane_core::$Trait + 'static)| {
                                    let (_, body) = backplane_core::boundary::split_tag(&req)?;
                                    #[allow(unused_parens, clippy::let_unit_value)]
                                    let ($($a,)*): ($(<$t as backplane_core::boundary::Arg<'static>>::Wire,)*) =
                                        backplane_core::boundary::decode(body)?;
                                    s.$m($(<$t as backplane_core::boundary::Arg<'_>>::from_wire(&$a)),*)
                                }),
                            }
                        },
                    )
                }
            )*
            fn health(&self) -> backplane_core::Result<backplane_core::Health> {
                self.layer_health()
            }
        }
    };
}
pub(crate) use layer;

/// The names of a capability's methods, in list order:
/// `backplane_core::cache_methods!(op_names!())`.
macro_rules! op_names {
    (
        ()
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        &[$($crate::layer::Op { tag: $tag, name: stringify!($m) }),*]
    };
}

/// `pub fn replay(s: &dyn Trait, request: &[u8]) -> Result<()>`: run an
/// encoded request (see [`Owned::request`]) on `s`, dropping its result.
macro_rules! replay {
    (
        ()
        trait $Trait:ident;
        $(async $Async:ident . $as_async:ident;)?
        $($tag:literal $mode:ident fn $m:ident($($a:ident: $t:ty $(=> $into:ty)? $(as $owned:ty)?),*) -> $r:ty;)*
    ) => {
        /// Run an encoded request on `s`, dropping its result.
        pub fn replay(s: &dyn backplane_core::$Trait, request: &[u8]) -> backplane_core::Result<()> {
            let (tag, body) = backplane_core::boundary::split_tag(request)?;
            $(
                if tag == $tag {
                    #[allow(unused_parens, clippy::let_unit_value)]
                    let ($($a,)*): ($(<$t as backplane_core::boundary::Arg<'static>>::Wire,)*) =
                        backplane_core::boundary::decode(body)?;
                    s.$m($(<$t as backplane_core::boundary::Arg<'_>>::from_wire(&$a)),*)?;
                    return Ok(());
                }
            )*
            Err(backplane_core::boundary::unknown_call(stringify!($Trait), tag))
        }
    };
}

/// Replaying encoded requests, one module per capability.
pub mod replay {
    /// Relational requests.
    pub mod relational {
        backplane_core::relational_methods!(replay!());
    }
    /// Vector requests.
    pub mod vector {
        backplane_core::vector_methods!(replay!());
    }
    /// Cache requests.
    pub mod cache {
        backplane_core::cache_methods!(replay!());
    }
    /// Graph requests.
    pub mod graph {
        backplane_core::graph_methods!(replay!());
    }
}

/// Every method of a capability, `health` included.
pub fn ops(cap: backplane_core::Capability) -> &'static [Op] {
    use backplane_core::Capability;
    match cap {
        Capability::Relational => backplane_core::relational_methods!(op_names!()),
        Capability::Vector => backplane_core::vector_methods!(op_names!()),
        Capability::Cache => backplane_core::cache_methods!(op_names!()),
        Capability::Graph => backplane_core::graph_methods!(op_names!()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn method_lists_are_read_whole() {
        let cache = super::listed_methods(include_str!("../../core/src/boundary/cache.rs"));
        assert_eq!(cache.len(), 17, "{cache:?}");
        assert_eq!((cache[0], cache[16]), ("get", "import_messages"));
    }
}
