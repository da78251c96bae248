//! Redaction of what the request log keeps: email addresses, phone numbers, payment card
//! numbers (Luhn-checked) and API keys or bearer tokens are replaced by a label before anything
//! is written.

use std::borrow::Cow;
use std::sync::LazyLock;

use regex::{Captures, Regex};

struct Patterns {
    key: Regex,
    bearer: Regex,
    email: Regex,
    card: Regex,
    phone: Regex,
}

static PATTERNS: LazyLock<Option<Patterns>> = LazyLock::new(|| {
    Some(Patterns {
        key: Regex::new(
            r"\b(?:sk-(?:proj-|ant-)?[A-Za-z0-9_-]{16,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{30,}|xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})",
        )
        .ok()?,
        bearer: Regex::new(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{12,}").ok()?,
        email: Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}").ok()?,
        card: Regex::new(r"\b\d(?:[ -]?\d){12,18}\b").ok()?,
        phone: Regex::new(r"(?:\+\d{1,3}[ .-]?)?(?:\(\d{2,4}\)|\d{2,4})[ .-]?\d{3,4}[ .-]?\d{3,4}\b").ok()?,
    })
});

/// Whether a run of digits (spaces and dashes ignored) passes the Luhn check.
fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, d)| {
            if i % 2 == 1 {
                let doubled = d * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                *d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// `text` with secrets and personal data replaced by `[API_KEY]`, `[EMAIL]`, `[CARD]` and
/// `[PHONE]`.
pub fn redact(text: &str) -> Cow<'_, str> {
    let Some(p) = PATTERNS.as_ref() else {
        // The patterns are constants; should they ever fail to compile, log nothing.
        return Cow::Borrowed("[REDACTED]");
    };
    let mut out = Cow::Borrowed(text);
    let mut apply = |regex: &Regex, replace: &dyn Fn(&Captures<'_>) -> String| {
        if regex.is_match(&out) {
            out = Cow::Owned(
                regex
                    .replace_all(&out, |c: &Captures<'_>| replace(c))
                    .into_owned(),
            );
        }
    };
    apply(&p.key, &|_| "[API_KEY]".into());
    apply(&p.bearer, &|_| "Bearer [API_KEY]".into());
    apply(&p.email, &|_| "[EMAIL]".into());
    apply(&p.card, &|c| {
        if luhn(&c[0]) {
            "[CARD]".into()
        } else {
            c[0].to_owned()
        }
    });
    apply(&p.phone, &|_| "[PHONE]".into());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_and_personal_data_are_replaced() {
        let text = "mail ada.lovelace@example.co.uk or call +1 (415) 555-0132, card 4111 1111 1111 1111, key sk-proj-abcdefghijklmnop1234 and Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload and AKIAIOSFODNN7EXAMPLE";
        let redacted = redact(text);
        for secret in [
            "ada.lovelace@example.co.uk",
            "555-0132",
            "4111 1111 1111 1111",
            "sk-proj-abcdefghijklmnop1234",
            "eyJhbGciOiJIUzI1NiJ9",
            "AKIAIOSFODNN7EXAMPLE",
        ] {
            assert!(!redacted.contains(secret), "{secret} left in {redacted}");
        }
        for label in ["[EMAIL]", "[PHONE]", "[CARD]", "[API_KEY]"] {
            assert!(redacted.contains(label), "{label} missing in {redacted}");
        }
        assert!(matches!(redact("nothing to hide here"), Cow::Borrowed(_)));
        // Short numbers stay; long digit runs that fail the Luhn check are not called cards.
        assert_eq!(
            redact("order 12345 shipped, 3 items"),
            "order 12345 shipped, 3 items"
        );
        assert!(!redact("id 1234567812345678").contains("[CARD]"));
    }
}
