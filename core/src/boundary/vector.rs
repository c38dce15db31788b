//! The vector capability across the boundary: its method list, the plugin
//! side's dispatcher and non-blocking start, and the host side's client. See the
//! [parent module](super) for the list's syntax.

use super::generate;
use crate::ffi::Remote;
use crate::{AsyncVector, Vector};

/// The vector capability's methods, for everything generated from them.
/// Expands `$then!` with `($args)` followed by the list.
#[doc(hidden)]
#[macro_export]
macro_rules! vector_methods {
    ($($then:ident)::+ ! ($($args:tt)*)) => {
        $($then)::+! { ($($args)*)
            trait Vector;
            async AsyncVector.as_async;
            1 call fn create_collection(name: &str => String, dimension: u32, distance: $crate::Distance) -> ();
            2 call fn drop_collection(name: &str => String) -> ();
            3 call fn list_collections() -> Vec<$crate::CollectionInfo>;
            4 call fn collection_info(name: &str => String) -> $crate::CollectionInfo;
            5 start fn upsert(collection: &str => String, records: &[$crate::VectorRecord] => Vec<$crate::VectorRecord>) -> ();
            6 call fn get(collection: &str => String, ids: &[String] => Vec<String>) -> Vec<$crate::VectorRecord>;
            7 call fn delete(collection: &str => String, ids: &[String] => Vec<String>) -> u64;
            8 call fn delete_where(collection: &str => String, filter: &$crate::Filter => $crate::Filter) -> u64;
            9 call fn count(collection: &str => String, filter: Option<&$crate::Filter> as Option<$crate::Filter>) -> u64;
            10 start fn search(collection: &str => String, request: &$crate::SearchRequest => $crate::SearchRequest) -> Vec<$crate::SearchHit>;
            11 call fn search_batch(collection: &str => String, requests: &[$crate::SearchRequest] => Vec<$crate::SearchRequest>) -> Vec<Vec<$crate::SearchHit>>;
            12 call fn scroll(collection: &str => String, cursor: Option<&str> as Option<String>, limit: usize) -> $crate::ScrollPage;
        }
    };
}

/// A vector store in a plugin, seen from the host.
pub(crate) struct VectorClient(pub(crate) Remote);

impl VectorClient {
    fn remote(&self) -> &Remote {
        &self.0
    }
}

vector_methods!(generate!(VectorClient {
    fn as_async(&self) -> Option<&dyn AsyncVector> {
        self.0.has_async().then_some(self as &dyn AsyncVector)
    }
}));
