//! The suite file as written: serde structs in promptfoo's vocabulary, before any check.

use super::*;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawSuite {
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) providers: Vec<RawProvider>,
    #[serde(default)]
    pub(super) prompts: Vec<RawPrompt>,
    #[serde(default)]
    pub(super) tests: Vec<RawTest>,
    #[serde(default)]
    pub(super) default_test: Option<RawTest>,
    #[serde(default)]
    pub(super) evaluate_options: Option<RawEvaluateOptions>,
    #[serde(default)]
    pub(super) output_path: Option<OneOrMany>,
    #[serde(default)]
    pub(super) tags: BTreeMap<String, String>,
    // promptfoo features this build does not implement: named in errors.
    #[serde(default)]
    pub(super) scenarios: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) extensions: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) derived_metrics: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) assertion_templates: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) nunjucks_filters: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) env: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) redteam: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) command_line_options: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) sharing: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawProvider {
    pub(super) id: String,
    #[serde(default)]
    pub(super) label: Option<String>,
    #[serde(default)]
    pub(super) config: Option<RawProviderConfig>,
}

/// The grader of model-graded assertions: one provider, or a `text` (chat) and an `embedding`
/// provider for checks that need both.
#[derive(Debug, Clone, Deserialize)]
pub(super) struct RawGrader {
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) label: Option<String>,
    #[serde(default)]
    pub(super) config: Option<RawProviderConfig>,
    #[serde(default)]
    pub(super) text: Option<RawProvider>,
    #[serde(default)]
    pub(super) embedding: Option<RawProvider>,
}

impl RawGrader {
    /// The providers it names, its own first.
    pub(super) fn providers(&self) -> Vec<RawProvider> {
        let own = self.id.clone().map(|id| RawProvider {
            id,
            label: self.label.clone(),
            config: self.config.clone(),
        });
        [own, self.text.clone(), self.embedding.clone()]
            .into_iter()
            .flatten()
            .collect()
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawProviderConfig {
    #[serde(default)]
    pub(super) api_base_url: Option<String>,
    #[serde(default)]
    pub(super) api_key_envar: Option<String>,
    #[serde(default)]
    pub(super) api_key: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) temperature: Option<f64>,
    #[serde(default, rename = "max_tokens")]
    pub(super) max_tokens: Option<u64>,
    #[serde(default, rename = "max_completion_tokens")]
    pub(super) max_completion_tokens: Option<u64>,
    #[serde(default, rename = "top_p")]
    pub(super) top_p: Option<f64>,
    #[serde(default)]
    pub(super) seed: Option<i64>,
    #[serde(default)]
    pub(super) stop: Option<OneOrManyText>,
    /// USD per token, input and output alike.
    #[serde(default)]
    pub(super) cost: Option<f64>,
    /// USD per input token.
    #[serde(default)]
    pub(super) input_cost: Option<f64>,
    /// USD per output token.
    #[serde(default)]
    pub(super) output_cost: Option<f64>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) method: Option<String>,
    #[serde(default)]
    pub(super) headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub(super) body: Option<Value>,
    #[serde(default)]
    pub(super) transform_response: Option<String>,
    #[serde(default)]
    pub(super) validate_status: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub(super) enum OneOrManyText {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Deserialize)]
pub(super) struct RawPrompt {
    #[serde(default)]
    pub(super) raw: Option<String>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) label: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawTest {
    #[serde(default)]
    pub(super) description: Option<String>,
    #[serde(default)]
    pub(super) vars: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) assert: Vec<RawAssertion>,
    #[serde(default)]
    pub(super) threshold: Option<f64>,
    #[serde(default)]
    pub(super) metadata: BTreeMap<String, Value>,
    #[serde(default)]
    pub(super) provider_output: Option<String>,
    /// A `file://` entry in the `tests` list (the shorthand rewritten).
    #[serde(default, rename = "__file")]
    pub(super) file: Option<String>,
    #[serde(default)]
    pub(super) options: Option<RawTestOptions>,
    #[serde(default)]
    pub(super) provider: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) providers: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) prompts: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) assert_scoring_function: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawTestOptions {
    /// The grader for model-graded assertions.
    #[serde(default)]
    pub(super) provider: Option<Box<RawGrader>>,
    #[serde(default)]
    pub(super) transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) transform_vars: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) prefix: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) suffix: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) rubric_prompt: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) run_serially: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) store_output_as: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) disable_default_asserts: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) disable_var_expansion: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawAssertion {
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) value: Option<Value>,
    #[serde(default)]
    pub(super) threshold: Option<f64>,
    #[serde(default)]
    pub(super) weight: Option<f64>,
    #[serde(default)]
    pub(super) metric: Option<String>,
    #[serde(default)]
    pub(super) assert: Option<Vec<RawAssertion>>,
    #[serde(default)]
    pub(super) provider: Option<Box<RawGrader>>,
    #[serde(default)]
    pub(super) transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) rubric_prompt: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) context_transform: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) config: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct RawEvaluateOptions {
    #[serde(default)]
    pub(super) max_concurrency: Option<usize>,
    #[serde(default)]
    pub(super) repeat: Option<usize>,
    #[serde(default)]
    pub(super) cache: Option<bool>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) delay: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    pub(super) max_eval_time_ms: Option<serde::de::IgnoredAny>,
}
