//! The crate layering written in `ARCHITECTURE.md` holds: every crate's `[dependencies]` name
//! only Sluice crates of lower layers, every crate is in exactly one layer, and the core does
//! no IO.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `crate → layer`, from the "Layering" section's `- layer N: `a`, `b`` lines.
fn layers() -> BTreeMap<String, usize> {
    let text = read(&workspace().join("ARCHITECTURE.md"));
    let mut layers = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("- layer ") else {
            continue;
        };
        let (number, names) = rest
            .split_once(':')
            .unwrap_or_else(|| panic!("a layer line without a colon: {line}"));
        let layer: usize = number
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("a layer line without a number: {line}"));
        for name in names.split(',') {
            let name = name.trim().trim_matches('`').to_owned();
            let previous = layers.insert(name.clone(), layer);
            assert!(previous.is_none(), "{name} is in two layers");
        }
    }
    assert!(!layers.is_empty(), "ARCHITECTURE.md lists no layers");
    layers
}

/// The Sluice crates a manifest's `[dependencies]` section names.
fn dependencies(manifest: &str) -> Vec<String> {
    let mut in_dependencies = false;
    let mut found = Vec::new();
    for line in manifest.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && line.starts_with("sluice") {
            let name: String = line
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                .collect();
            found.push(name);
        }
    }
    found
}

#[test]
fn every_crate_depends_only_on_lower_layers() {
    let layers = layers();
    let mut crates = Vec::new();
    let entries = std::fs::read_dir(workspace().join("crates")).unwrap_or_else(|e| panic!("{e}"));
    for entry in entries {
        let dir = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let manifest = dir.join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        let name = dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_else(|| panic!("{}", dir.display()))
            .to_owned();
        let own = *layers
            .get(&name)
            .unwrap_or_else(|| panic!("{name} is in no layer of ARCHITECTURE.md"));
        for dependency in dependencies(&read(&manifest)) {
            let theirs = *layers
                .get(&dependency)
                .unwrap_or_else(|| panic!("{name} depends on {dependency}, which is in no layer"));
            assert!(
                theirs < own,
                "{name} (layer {own}) depends on {dependency} (layer {theirs}): a crate may only \
                 depend on lower layers"
            );
        }
        crates.push(name);
    }
    for listed in layers.keys() {
        assert!(
            crates.contains(listed),
            "ARCHITECTURE.md lists {listed}, which is not a crate"
        );
    }
}

#[test]
fn the_core_does_no_io_and_has_no_dependencies() {
    let core = Path::new(env!("CARGO_MANIFEST_DIR"));
    let manifest = read(&core.join("Cargo.toml"));
    let (_, after) = manifest
        .split_once("[dependencies]")
        .unwrap_or_else(|| panic!("no [dependencies] section"));
    let section = after.split("\n[").next().unwrap_or("");
    assert!(
        section.lines().all(|l| l.trim().is_empty()),
        "sluice-core has dependencies: {section}"
    );
    let sources = std::fs::read_dir(core.join("src")).unwrap_or_else(|e| panic!("{e}"));
    for entry in sources {
        let path = entry.unwrap_or_else(|e| panic!("{e}")).path();
        let text = read(&path);
        for io in [
            "std::fs",
            "std::net",
            "std::process",
            "std::env",
            "std::io",
            "std::thread",
        ] {
            assert!(
                !text.contains(io),
                "{} uses {io}: the core does no IO",
                path.display()
            );
        }
    }
}

#[test]
fn the_manifest_reader_sees_only_normal_dependencies() {
    let manifest = "[package]\nname = \"x\"\n[dependencies]\nsluice-core.workspace = true\nserde = \"1\"\nsluice-llm = { path = \"../sluice-llm\" }\n[dev-dependencies]\nsluice-sim.workspace = true\n";
    assert_eq!(dependencies(manifest), ["sluice-core", "sluice-llm"]);
}
