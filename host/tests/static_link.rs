//! A plugin linked into the program as an `rlib` registers itself: the host
//! finds it with no library on disk, the same way it finds loaded ones.

use backplane_host::{PluginSource, Storage};

#[test]
fn a_linked_plugin_is_found_without_a_library() {
    // Naming the crate links it, and with it its registration.
    let _ = backplane_plugin_memory::MemoryPlugin;
    let dir = std::env::temp_dir().join(format!("backplane-static-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("plugins.toml");
    std::fs::write(
        &file,
        "[plugins]\nsearch_paths = []\n\n[cache.c]\nbackend = \"memory\"\n",
    )
    .unwrap();
    let storage = Storage::open(&file).unwrap();
    let memory = storage
        .backends()
        .into_iter()
        .find(|b| b.descriptor.name == "memory")
        .expect("the linked memory plugin is registered");
    assert_eq!(memory.source, PluginSource::Static);
    let c = storage.cache("c").unwrap();
    c.blocking().set("k", b"v", None).unwrap();
    assert_eq!(c.blocking().get("k").unwrap().unwrap(), b"v");
    assert!(storage.plugin_failures().is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}
