//! Token prices: US dollars per million input and output tokens, with a built-in table of
//! OpenAI's published list prices for its common models (standard tier, uncached input) that a
//! config can override or extend. A model name with a date or snapshot suffix
//! (`gpt-4o-2024-08-06`) takes the price of the longest listed name it extends.

use serde::{Deserialize, Serialize};

/// What a model's tokens cost.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Price {
    /// USD per million input (prompt) tokens.
    pub input: f64,
    /// USD per million output (completion) tokens.
    pub output: f64,
}

impl Price {
    /// The cost in USD of a request with these token counts.
    pub fn cost(&self, input_tokens: u64, output_tokens: u64) -> f64 {
        (input_tokens as f64 * self.input + output_tokens as f64 * self.output) / 1_000_000.0
    }

    /// Whether both prices are finite and not negative.
    pub fn is_valid(&self) -> bool {
        self.input.is_finite() && self.output.is_finite() && self.input >= 0.0 && self.output >= 0.0
    }
}

/// OpenAI's list prices per million tokens (input, output), longest names first where one
/// extends another.
const BUILTIN: &[(&str, f64, f64)] = &[
    ("gpt-5-nano", 0.05, 0.40),
    ("gpt-5-mini", 0.25, 2.00),
    ("gpt-5", 1.25, 10.00),
    ("gpt-4.1-nano", 0.10, 0.40),
    ("gpt-4.1-mini", 0.40, 1.60),
    ("gpt-4.1", 2.00, 8.00),
    ("gpt-4o-mini", 0.15, 0.60),
    ("gpt-4o", 2.50, 10.00),
    ("gpt-4-turbo", 10.00, 30.00),
    ("gpt-4", 30.00, 60.00),
    ("gpt-3.5-turbo", 0.50, 1.50),
    ("o4-mini", 1.10, 4.40),
    ("o3-mini", 1.10, 4.40),
    ("o3", 2.00, 8.00),
    ("o1-mini", 1.10, 4.40),
    ("o1", 15.00, 60.00),
    ("text-embedding-3-small", 0.02, 0.0),
    ("text-embedding-3-large", 0.13, 0.0),
    ("text-embedding-ada-002", 0.10, 0.0),
];

/// The built-in price of `model`: its own entry, else that of the longest listed name it
/// extends with `-` (a dated snapshot); `None` for a model the table does not know.
pub fn builtin(model: &str) -> Option<Price> {
    lookup(
        BUILTIN.iter().map(|(name, input, output)| {
            (
                *name,
                Price {
                    input: *input,
                    output: *output,
                },
            )
        }),
        model,
    )
}

/// The price of `model` in `table` (exact name, else the longest name it extends with `-`),
/// then in the built-in table.
pub fn find<'a>(
    table: impl IntoIterator<Item = (&'a str, Price)> + Clone,
    model: &str,
) -> Option<Price> {
    lookup(table, model).or_else(|| builtin(model))
}

fn lookup<'a>(
    table: impl IntoIterator<Item = (&'a str, Price)> + Clone,
    model: &str,
) -> Option<Price> {
    let model = model.trim();
    if let Some((_, price)) = table.clone().into_iter().find(|(name, _)| *name == model) {
        return Some(price);
    }
    table
        .into_iter()
        .filter(|(name, _)| {
            model
                .strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('-') && snapshot_suffix(&rest[1..]))
        })
        .max_by_key(|(name, _)| name.len())
        .map(|(_, price)| price)
}

/// A dated or versioned snapshot: `2024-08-06`, `0125`, `preview`, `latest`.
fn snapshot_suffix(rest: &str) -> bool {
    rest.split('-').all(|part| {
        !part.is_empty()
            && (part.bytes().all(|b| b.is_ascii_digit()) || matches!(part, "preview" | "latest"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_models_and_their_snapshots_have_prices_and_others_do_not() {
        assert_eq!(
            builtin("gpt-4o-mini"),
            Some(Price {
                input: 0.15,
                output: 0.60
            })
        );
        assert_eq!(
            builtin("gpt-4o-2024-08-06"),
            Some(Price {
                input: 2.50,
                output: 10.00
            })
        );
        assert_eq!(
            builtin("gpt-4o-mini-2024-07-18"),
            Some(Price {
                input: 0.15,
                output: 0.60
            })
        );
        assert_eq!(builtin("gpt-3.5-turbo-0125").map(|p| p.input), Some(0.50));
        // Not a snapshot of a listed model: a different model.
        assert_eq!(builtin("gpt-4o-audio-preview"), None);
        assert_eq!(builtin("gpt-4ox"), None);
        assert_eq!(builtin("llama-3-8b"), None);
        assert_eq!(builtin("stable"), None);
    }

    #[test]
    fn a_table_overrides_the_builtin_prices() {
        let mine = [
            (
                "gpt-4o",
                Price {
                    input: 1.0,
                    output: 2.0,
                },
            ),
            (
                "stable",
                Price {
                    input: 0.1,
                    output: 0.2,
                },
            ),
        ];
        assert_eq!(find(mine, "gpt-4o-2024-11-20").map(|p| p.input), Some(1.0));
        assert_eq!(find(mine, "stable").map(|p| p.output), Some(0.2));
        assert_eq!(find(mine, "gpt-4o-mini").map(|p| p.input), Some(0.15));
    }

    #[test]
    fn cost_is_per_million_tokens() {
        let price = Price {
            input: 0.15,
            output: 0.60,
        };
        assert!((price.cost(1_000_000, 0) - 0.15).abs() < 1e-12);
        assert!((price.cost(1000, 500) - 0.00045).abs() < 1e-12);
        assert!(
            !Price {
                input: -1.0,
                output: 0.0
            }
            .is_valid()
        );
        assert!(
            !Price {
                input: f64::NAN,
                output: 0.0
            }
            .is_valid()
        );
    }
}
