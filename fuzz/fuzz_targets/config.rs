//! plugins.toml parsing and `${VAR}` interpolation: any text is a config
//! or one error, never a panic, and an error is one line per problem.
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::collections::BTreeMap;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let env: BTreeMap<String, String> = [
        ("HOME", "/home/fuzz"),
        ("REDIS_URL", "redis://u:p@h:6379/0"),
        ("BACKPLANE_PROFILE", "prod"),
        ("BACKPLANE_CACHE_CONVERSATIONS_TTL", "5m"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    if let Err(e) =
        backplane_host::Config::parse_with_env(text, "fuzz.toml", Path::new("/base"), &env)
    {
        assert!(!e.message().is_empty());
    }
});
