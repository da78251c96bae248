//! The endpoint spec: where a model is reached (an OpenAI-compatible base URL, the model name
//! sent, the environment variable holding its key). Every part that talks to a model (eval
//! providers, bench, red-team targets and judges, the chat command) compiles its own file
//! format into this one type, and the client is built from it in one place
//! (`sluice_llm::ClientConfig::for_endpoint`).

use std::fmt;

/// Where a model is reached.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EndpointSpec {
    /// The base URL the API paths are appended to, without a trailing slash
    /// (`http://127.0.0.1:8000/v1`).
    pub base_url: String,
    /// The model name sent in each request.
    pub model: String,
    /// The environment variable holding the API key, if the endpoint needs one.
    pub api_key_env: Option<String>,
}

impl EndpointSpec {
    /// An endpoint without a key; trailing slashes of `base_url` are dropped, so that
    /// `…/v1/` and `…/v1` name the same endpoint.
    pub fn new(base_url: impl AsRef<str>, model: impl Into<String>) -> Self {
        Self {
            base_url: base_url.as_ref().trim_end_matches('/').to_owned(),
            model: model.into(),
            api_key_env: None,
        }
    }

    /// The same endpoint, with its key read from `var` (none when `var` is `None`).
    pub fn with_api_key_env(mut self, var: Option<String>) -> Self {
        self.api_key_env = var;
        self
    }

    /// Whether the base URL is an `http://` or `https://` URL with a host.
    pub fn check_base_url(url: &str) -> Result<(), BaseUrlError> {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
            .ok_or_else(|| BaseUrlError(url.to_owned()))?;
        if rest.is_empty() || rest.starts_with('/') {
            return Err(BaseUrlError(url.to_owned()));
        }
        Ok(())
    }
}

impl fmt::Display for EndpointSpec {
    /// `MODEL at BASE_URL`, as errors and logs name an endpoint.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at {}", self.model, self.base_url)
    }
}

/// A base URL that is not an `http://` or `https://` URL with a host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BaseUrlError(pub String);

impl fmt::Display for BaseUrlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected an http:// or https:// base URL such as http://127.0.0.1:8000/v1, found `{}`",
            self.0
        )
    }
}

impl std::error::Error for BaseUrlError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_slashes_do_not_make_another_endpoint() {
        let a = EndpointSpec::new("http://127.0.0.1:8000/v1/", "m");
        let b = EndpointSpec::new("http://127.0.0.1:8000/v1", "m");
        assert_eq!(a, b);
        assert_eq!(a.base_url, "http://127.0.0.1:8000/v1");
        assert_eq!(a.to_string(), "m at http://127.0.0.1:8000/v1");
        let keyed = a.with_api_key_env(Some("KEY".into()));
        assert_eq!(keyed.api_key_env.as_deref(), Some("KEY"));
    }

    #[test]
    fn base_urls_need_a_scheme_and_a_host() {
        for good in [
            "http://h/v1",
            "https://api.example.com/v1",
            "http://127.0.0.1:8000",
        ] {
            assert!(EndpointSpec::check_base_url(good).is_ok(), "{good}");
        }
        for bad in [
            "127.0.0.1:8000/v1",
            "ftp://h/v1",
            "http://",
            "https:///v1",
            "",
        ] {
            let error = EndpointSpec::check_base_url(bad).unwrap_err();
            assert!(
                error.to_string().contains(&format!("found `{bad}`")),
                "{error}"
            );
        }
    }
}
