//! The OpenAI-compatible client every part of Sluice uses to talk to model servers.
//!
//! - [`types`]: the wire format of `/v1/chat/completions`, `/v1/completions`, `/v1/embeddings`
//!   and `/v1/models`, shared with the simulator and the gateway.
//! - [`sse`]: an incremental Server-Sent Events parser.
//! - [`client`]: requests with connect/first-token/total timeouts, retries with backoff that
//!   honour `retry-after`, and per-request timing taken as bytes arrive.
//! - [`wire`]: what a proxy reads of answers and stream chunks, without a JSON tree.
//! - [`tokens`]: token counts from `usage`, else an offline BPE tokenizer, else chunk counts,
//!   always with the source recorded.
//! - [`prices`]: USD per million tokens, built in for common models, overridable.

#![deny(unsafe_code)]

pub mod client;
mod error;
pub mod prices;
pub mod retry;
pub mod sse;
mod stream;
pub mod tokens;
pub mod types;
pub mod wire;

pub use client::{Client, ClientConfig, MAX_RESPONSE_BYTES, Timeouts};
pub use error::{LlmError, TimeoutPhase};
pub use retry::RetryPolicy;
pub use stream::{Generation, Timing};
pub use tokens::{TokenCounts, TokenSource};
