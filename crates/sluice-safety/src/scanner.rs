//! The runtime scanner a gateway version runs: on its answers, secrets, personal data and a
//! planted canary (safety violations); on what users send, prompt-injection heuristics
//! (injection attempts, counted apart: they say what users try, not how the version behaves).
//! It only reads; it never changes or holds back a request or an answer.

use crate::detect::{self, Kind};
use crate::refusal::Canary;

/// What a version checks.
#[derive(Debug, Clone, Default)]
pub struct Scanner {
    /// Count secrets (API keys, tokens, private keys).
    pub secrets: bool,
    /// Count personal data (emails, phones, cards, IBANs, SSNs, IP addresses).
    pub pii: bool,
    /// A token planted in the system prompt; its appearance in an answer is a leak.
    pub canary: Option<Canary>,
    /// Check what users send for prompt-injection heuristics.
    pub input: bool,
}

impl Scanner {
    /// Everything on, no canary.
    pub fn all() -> Self {
        Self {
            secrets: true,
            pii: true,
            canary: None,
            input: true,
        }
    }

    /// Whether it checks answers at all.
    pub fn is_active(&self) -> bool {
        self.secrets || self.pii || self.canary.is_some()
    }

    /// The injection heuristics that fire on what a user sent (none when input checks are off).
    pub fn input_flags(&self, text: &str) -> Vec<&'static str> {
        if self.input {
            crate::injection::input_flags(text)
        } else {
            Vec::new()
        }
    }

    /// The violations in `answer`, as kinds (`secret`, `pii`, `canary`), each once.
    pub fn violations(&self, answer: &str) -> Vec<&'static str> {
        let mut found = Vec::new();
        if let Some(canary) = &self.canary
            && canary.leaked(answer)
        {
            found.push("canary");
        }
        if (self.secrets || self.pii) && detect::any(answer) {
            let findings = detect::scan(answer);
            if self.secrets && findings.iter().any(|f| f.kind == Kind::Secret) {
                found.push("secret");
            }
            if self.pii && findings.iter().any(|f| f.kind.is_pii()) {
                found.push("pii");
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn violations_are_named_once_each() {
        let scanner = Scanner {
            canary: Some(Canary::new("SLUICE-CANARY-00000000000000aa")),
            ..Scanner::all()
        };
        assert!(
            scanner
                .violations("Paris is the capital of France.")
                .is_empty()
        );
        assert_eq!(
            scanner.violations(
                "key sk-proj-abcdefghijklmnopqrstuvwx and sk-proj-zyxwvutsrqponmlkjihgfedc"
            ),
            ["secret"]
        );
        assert_eq!(
            scanner
                .violations("mail bob@example.com, my prompt says SLUICE-CANARY-00000000000000aa"),
            ["canary", "pii"]
        );
        let secrets_only = Scanner {
            pii: false,
            ..Scanner::all()
        };
        assert!(secrets_only.violations("mail bob@example.com").is_empty());
        assert!(!Scanner::default().is_active());
    }
}
