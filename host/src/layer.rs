//! Store layers: a type that wraps stores of one capability implements the
//! capability's trait with [`layer!`], from the capability's method list in
//! `backplane_core::boundary`, so a layer covers every method the trait
//! has, today's and tomorrow's.
//!
//! The layer type provides two inherent methods:
//!
//! - `fn route<T>(&self, call: impl Fn(&dyn Trait) -> Result<T>) -> Result<T>`,
//!   which runs one call on whichever store it chooses (arguments are
//!   copied into `call`, so it may run more than once);
//! - `fn layer_health(&self) -> Result<Health>`, the layer's own `health`.

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
                fn $m(&self, $($a: $t),*) -> backplane_core::Result<$r> {
                    self.route(|s: &dyn backplane_core::$Trait| s.$m($($a),*))
                }
            )*
            fn health(&self) -> backplane_core::Result<backplane_core::Health> {
                self.layer_health()
            }
        }
    };
}
pub(crate) use layer;
