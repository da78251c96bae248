//! What is sent: seeded random prompts of a set length, prompts from a JSONL file, or the first
//! turn of each ShareGPT conversation (vLLM's `sharegpt` dataset, with its pruning rules).
//! Lengths are counted in words, which is what the simulator and most tokenizers come close to
//! for plain English text.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// One prompt and the output length asked for it.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPrompt {
    /// The user message (chat) or the prompt (completions).
    pub text: String,
    /// `max_tokens` for this prompt; `None` uses the run's `--output-tokens`.
    pub output_tokens: Option<u64>,
}

/// Where prompts come from.
#[derive(Debug, Clone, PartialEq)]
pub enum Dataset {
    /// Seeded random words, `input_tokens` long (± `range_ratio`).
    Random,
    /// Prompts read from a file, sent in order and cycled.
    Prompts(Vec<BenchPrompt>),
}

/// A dataset file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// The file cannot be read.
    #[error("{path}: cannot read the dataset: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A line or entry is not what was expected.
    #[error("{path}:{line}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line (JSONL) or entry number (ShareGPT, as `entry N`).
        line: String,
        /// What was expected.
        message: String,
    },
    /// Nothing usable is left.
    #[error("{path}: {message}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Reads a dataset by its name: `random`, a `.jsonl` file of `{"prompt": …, "output_tokens": …}`
/// lines, or a ShareGPT `.json` file.
pub fn load(name: &str) -> Result<Dataset, DatasetError> {
    if name == "random" {
        return Ok(Dataset::Random);
    }
    let path = Path::new(name);
    let text = std::fs::read_to_string(path).map_err(|source| DatasetError::Read {
        path: path.to_owned(),
        source,
    })?;
    let prompts = if name.ends_with(".jsonl") {
        jsonl(path, &text)?
    } else {
        sharegpt(path, &text)?
    };
    if prompts.is_empty() {
        return Err(DatasetError::Empty {
            path: path.to_owned(),
            message: "no prompts in the dataset".into(),
        });
    }
    Ok(Dataset::Prompts(prompts))
}

fn invalid(path: &Path, line: String, message: impl Into<String>) -> DatasetError {
    DatasetError::Invalid {
        path: path.to_owned(),
        line,
        message: message.into(),
    }
}

fn jsonl(path: &Path, text: &str) -> Result<Vec<BenchPrompt>, DatasetError> {
    let mut prompts = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let number = (index + 1).to_string();
        if line.trim().is_empty() {
            continue;
        }
        let value: Value = serde_json::from_str(line)
            .map_err(|e| invalid(path, number.clone(), format!("not JSON: {e}")))?;
        let prompt = value.get("prompt").and_then(Value::as_str).ok_or_else(|| {
            invalid(
                path,
                number.clone(),
                "expected an object with a string `prompt` (and optionally `output_tokens`)",
            )
        })?;
        let output_tokens = match value.get("output_tokens") {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().filter(|n| *n > 0).ok_or_else(|| {
                invalid(
                    path,
                    number.clone(),
                    "`output_tokens`: expected a positive integer",
                )
            })?),
        };
        prompts.push(BenchPrompt {
            text: prompt.to_owned(),
            output_tokens,
        });
    }
    Ok(prompts)
}

/// vLLM's pruning: prompts or replies under 4 tokens, prompts over 1,024 and pairs over 2,048
/// are skipped.
fn sharegpt(path: &Path, text: &str) -> Result<Vec<BenchPrompt>, DatasetError> {
    let value: Value = serde_json::from_str(text).map_err(|e| {
        invalid(
            path,
            e.line().to_string(),
            format!("not a ShareGPT JSON file: {e}"),
        )
    })?;
    let entries = value.as_array().ok_or_else(|| {
        invalid(
            path,
            "1".into(),
            "expected a JSON array of {\"conversations\": [...]} entries (ShareGPT), or use a .jsonl file",
        )
    })?;
    let words = |s: &str| s.split_whitespace().count();
    let mut prompts = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        let turns = entry
            .get("conversations")
            .and_then(Value::as_array)
            .ok_or_else(|| {
                invalid(
                    path,
                    format!("entry {}", index + 1),
                    "expected a `conversations` list",
                )
            })?;
        let text_of = |i: usize| {
            turns
                .get(i)
                .and_then(|t| t.get("value"))
                .and_then(Value::as_str)
        };
        let (Some(prompt), Some(reply)) = (text_of(0), text_of(1)) else {
            continue;
        };
        let (input, output) = (words(prompt), words(reply));
        if input < 4 || output < 4 || input > 1024 || input + output > 2048 {
            continue;
        }
        prompts.push(BenchPrompt {
            text: prompt.to_owned(),
            output_tokens: Some(output as u64),
        });
    }
    Ok(prompts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jsonl_lines_need_a_prompt() {
        let path = Path::new("d.jsonl");
        let prompts = jsonl(
            path,
            "{\"prompt\": \"hello there\"}\n\n{\"prompt\": \"x\", \"output_tokens\": 5}\n",
        )
        .unwrap_or_default();
        assert_eq!(prompts.len(), 2);
        assert_eq!(prompts[1].output_tokens, Some(5));
        let error = jsonl(path, "{\"prompt\": \"a\"}\n{\"text\": 1}\n")
            .err()
            .map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some(
                "d.jsonl:2: expected an object with a string `prompt` (and optionally `output_tokens`)"
            )
        );
        let error = jsonl(path, "{oops\n").err().map(|e| e.to_string());
        assert!(error.is_some_and(|e| e.starts_with("d.jsonl:1: not JSON")));
    }

    #[test]
    fn sharegpt_takes_the_first_turn_pair_and_prunes() {
        let path = Path::new("s.json");
        let text = r#"[
          {"conversations": [{"from": "human", "value": "tell me about rivers please"},
                             {"from": "gpt", "value": "rivers flow to the sea mostly"}]},
          {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello to you friend"}]},
          {"conversations": [{"from": "human", "value": "only one turn here"}]}
        ]"#;
        let prompts = sharegpt(path, text).unwrap_or_default();
        assert_eq!(
            prompts,
            vec![BenchPrompt {
                text: "tell me about rivers please".into(),
                output_tokens: Some(6)
            }]
        );
        let error = sharegpt(path, "[{\"id\": 1}]").err().map(|e| e.to_string());
        assert_eq!(
            error.as_deref(),
            Some("s.json:entry 1: expected a `conversations` list")
        );
    }
}
