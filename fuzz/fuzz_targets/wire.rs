//! The plugin boundary's wire format, both directions: bytes a plugin
//! receives (a request: tag and arguments) and bytes the host receives (a
//! reply: rows in their streaming encoding, or values and errors) decode
//! or fail with one error, never a panic or an unbounded allocation.
#![no_main]

use backplane_core::boundary::{decode, split_tag};
use backplane_core::rows::decode_rows;
use backplane_core::{
    Edge, Error, Message, Node, Params, SearchHit, SearchRequest, Statement, Value, VectorRecord,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Host side: replies.
    let _ = decode_rows(data);
    let _ = decode::<Result<Vec<SearchHit>, Error>>(data);
    let _ = decode::<Result<Vec<Message>, Error>>(data);
    let _ = decode::<Result<Vec<Node>, Error>>(data);
    // Plugin side: requests.
    if let Ok((_tag, args)) = split_tag(data) {
        let _ = decode::<(String, Vec<VectorRecord>)>(args);
        let _ = decode::<(String, SearchRequest)>(args);
        let _ = decode::<(String, Params)>(args);
        let _ = decode::<Vec<Statement>>(args);
        let _ = decode::<(String, Vec<Edge>)>(args);
        let _ = decode::<Vec<Value>>(args);
    }
});
