//! Shorthand entries rewritten into their long form on the YAML tree, before deserializing,
//! so every later error keeps its file, line and column.

use super::*;

/// Rewrites shorthand entries into their long form on the tree.
pub(super) fn desugar(document: &mut Document) {
    let root = document.root_mut();
    if let Some(providers) = root.get_mut("providers") {
        providers.wrap_in_sequence();
        providers
            .items_mut()
            .iter_mut()
            .for_each(|p| p.wrap_scalar("id"));
    }
    if let Some(prompts) = root.get_mut("prompts") {
        prompts.wrap_in_sequence();
        prompts
            .items_mut()
            .iter_mut()
            .for_each(|p| p.wrap_scalar("raw"));
    }
    if let Some(tests) = root.get_mut("tests") {
        tests.wrap_in_sequence();
        tests.items_mut().iter_mut().for_each(|t| {
            t.wrap_scalar("__file");
            desugar_test(t);
        });
    }
    if let Some(default_test) = root.get_mut("defaultTest") {
        desugar_test(default_test);
    }
}

/// Grader providers given as an id string become `{id: …}` in a test's options and asserts.
pub(super) fn desugar_test(test: &mut sluice_config::Node) {
    if let Some(provider) = test.get_mut("options").and_then(|o| o.get_mut("provider")) {
        desugar_grader(provider);
    }
    if let Some(asserts) = test.get_mut("assert") {
        desugar_asserts(asserts);
    }
}

fn desugar_grader(provider: &mut sluice_config::Node) {
    provider.wrap_scalar("id");
    for key in ["text", "embedding"] {
        if let Some(inner) = provider.get_mut(key) {
            inner.wrap_scalar("id");
        }
    }
}

fn desugar_asserts(asserts: &mut sluice_config::Node) {
    for assertion in asserts.items_mut() {
        if let Some(provider) = assertion.get_mut("provider") {
            desugar_grader(provider);
        }
        if let Some(nested) = assertion.get_mut("assert") {
            desugar_asserts(nested);
        }
    }
}
