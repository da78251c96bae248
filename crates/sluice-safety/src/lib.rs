//! Safety building blocks shared by the red-team gate and the gateway's runtime scanners.
//!
//! - [`detect`]: personal data (emails, phones, Luhn-checked cards, mod-97 IBANs, valid SSNs,
//!   IP addresses) and secrets (OpenAI, Anthropic, AWS, GitHub, Google, Slack keys, bearer
//!   tokens, private keys, and a high-entropy fallback), with [`detect::redact`].
//! - [`injection`]: prompt-injection heuristics for what users send.
//! - [`refusal`]: whether an answer declines, and whether a planted canary leaked.
//! - [`strategy`]: attack transformations (encodings, splitting, wrappers) with decoders.
//! - [`scanner`]: what a gateway version counts in its answers.

#![deny(unsafe_code)]

pub mod detect;
pub mod injection;
pub mod record;
pub mod refusal;
pub mod scanner;
pub mod strategy;

pub use detect::{Finding, Kind, redact, scan};
pub use refusal::{Canary, canary_leaked, canary_token, is_refusal};
pub use scanner::{Action, Scanner, StreamGuard};
pub use strategy::Strategy;
