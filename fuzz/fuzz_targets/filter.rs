//! The filter language: any JSON text is a filter or one error, never a
//! panic; a filter that parses evaluates against any payload without one.
#![no_main]

use backplane_core::Filter;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // The first line is the filter, the rest a payload to test it on.
    let (filter, payload) = text.split_once('\n').unwrap_or((text, "{}"));
    if let Ok(f) = Filter::parse_str(filter) {
        let payload: serde_json::Value = serde_json::from_str(payload)
            .unwrap_or(serde_json::json!({"a": 1, "b": [1, "x"], "c": {"d": null}}));
        let _ = f.matches(&payload);
    }
});
