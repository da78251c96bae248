//! Token counts with their source: the server's `usage`, an offline BPE tokenizer, or the
//! number of content chunks when no tokenizer is wanted.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use tiktoken_rs::CoreBPE;

/// Where a token count came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenSource {
    /// The server's `usage` object.
    Usage,
    /// The offline `cl100k_base` tokenizer.
    Cl100k,
    /// The offline `o200k_base` tokenizer.
    O200k,
    /// One token per content chunk (streaming, no usage, tokenizer disabled).
    ChunkCount,
}

/// Prompt and completion token counts for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCounts {
    /// Prompt tokens.
    pub prompt: u64,
    /// Prompt count source.
    pub prompt_source: TokenSource,
    /// Completion tokens.
    pub completion: u64,
    /// Completion count source.
    pub completion_source: TokenSource,
}

/// Which offline tokenizer fits a model name: `o200k_base` for the GPT-4o/4.1/5 and o-series
/// families, `cl100k_base` for everything else (a reasonable approximation for open models).
pub fn tokenizer_for(model: &str) -> TokenSource {
    let model = model.rsplit('/').next().unwrap_or(model);
    let o200k = [
        "gpt-4o",
        "gpt-4.1",
        "gpt-4.5",
        "gpt-5",
        "o1",
        "o3",
        "o4",
        "chatgpt-4o",
        "gpt-oss",
    ];
    if o200k.iter().any(|prefix| model.starts_with(prefix)) {
        TokenSource::O200k
    } else {
        TokenSource::Cl100k
    }
}

fn bpe(source: TokenSource) -> Option<&'static CoreBPE> {
    static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
    match source {
        TokenSource::Cl100k => CL100K
            .get_or_init(|| tiktoken_rs::cl100k_base().ok())
            .as_ref(),
        TokenSource::O200k => O200K
            .get_or_init(|| tiktoken_rs::o200k_base().ok())
            .as_ref(),
        TokenSource::Usage | TokenSource::ChunkCount => None,
    }
}

/// Counts `text` with the tokenizer for `model`; `None` if the tokenizer could not be built.
pub fn count(model: &str, text: &str) -> Option<(u64, TokenSource)> {
    let source = tokenizer_for(model);
    let bpe = bpe(source)?;
    Some((bpe.encode_ordinary(text).len() as u64, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_use_the_model_family_tokenizer() {
        assert_eq!(
            count("gpt-4o-mini", "hello world"),
            Some((2, TokenSource::O200k))
        );
        assert_eq!(
            count("llama-3-8b", "hello world"),
            Some((2, TokenSource::Cl100k))
        );
        assert_eq!(
            count("openai/gpt-oss-20b", ""),
            Some((0, TokenSource::O200k))
        );
    }
}
