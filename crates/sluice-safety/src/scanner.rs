//! The runtime scanner a gateway version runs on its answers: secrets, personal data and a
//! planted canary. It only reads the answer after it was sent (counting and logging
//! violations); it never changes or holds back what the client gets.

use crate::detect::{self, Kind};
use crate::refusal::Canary;

/// What a version's answers are checked for.
#[derive(Debug, Clone, Default)]
pub struct OutputScanner {
    /// Count secrets (API keys, tokens, private keys).
    pub secrets: bool,
    /// Count personal data (emails, phones, cards, IBANs, SSNs, IP addresses).
    pub pii: bool,
    /// A token planted in the system prompt; its appearance in an answer is a leak.
    pub canary: Option<Canary>,
}

impl OutputScanner {
    /// Everything on, no canary.
    pub fn all() -> Self {
        Self {
            secrets: true,
            pii: true,
            canary: None,
        }
    }

    /// Whether it checks anything.
    pub fn is_active(&self) -> bool {
        self.secrets || self.pii || self.canary.is_some()
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
        let scanner = OutputScanner {
            canary: Some(Canary::new("SLUICE-CANARY-00000000000000aa")),
            ..OutputScanner::all()
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
        let secrets_only = OutputScanner {
            pii: false,
            ..OutputScanner::all()
        };
        assert!(secrets_only.violations("mail bob@example.com").is_empty());
        assert!(!OutputScanner::default().is_active());
    }
}
