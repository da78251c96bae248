//! The pure core every other Sluice crate may use: the statistics behind every gate
//! ([`stats`]), the [`Secret`] wrapper that keeps keys and tokens out of logs, the
//! [`EndpointSpec`] every part that calls a model compiles its config into, the [`RunKind`]s
//! of stored runs, and the writers of the report formats CI systems read ([`report`]: XML
//! escaping, JUnit, GitHub workflow commands).
//!
//! It does no IO, holds no runtime and depends on no other crate, so it sits at the bottom of
//! the layering written in `ARCHITECTURE.md` (checked by `tests/layering.rs`).

#![deny(unsafe_code)]

mod endpoint;
pub mod report;
mod run_kind;
mod secret;
pub mod stats;

pub use endpoint::{BaseUrlError, EndpointSpec};
pub use run_kind::{RunKind, UnknownRunKind};
pub use secret::Secret;

/// An error and its causes on one line, `error: cause: cause`, for messages shown to people
/// where the cause holds the useful part ("connection refused").
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn the_chain_reads_outside_in() {
        let error = Layer(
            "send",
            Some(Box::new(Layer(
                "connect",
                Some(Box::new(Layer("refused", None))),
            ))),
        );
        assert_eq!(super::error_chain(&error), "send: connect: refused");
        assert_eq!(super::error_chain(&Layer("alone", None)), "alone");
    }
}
