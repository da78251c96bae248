//! Detectors of personal data and secrets in text. Each kind is found by a pattern and then
//! validated, so that numbers which only look like one are not reported: payment cards pass
//! the Luhn check, IBANs the mod-97 check and their country's length, US social security
//! numbers the SSA's rules, IP addresses parse. Secrets are matched by their providers' key
//! formats, with a high-entropy fallback for tokens no pattern knows.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::LazyLock;

use regex::Regex;
use serde::Serialize;

/// What was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// An email address.
    Email,
    /// A phone number.
    Phone,
    /// A payment card number (Luhn-valid).
    Card,
    /// An IBAN (mod-97-valid).
    Iban,
    /// A US social security number.
    Ssn,
    /// An IPv4 or IPv6 address.
    IpAddress,
    /// An API key, token or other credential.
    Secret,
}

impl Kind {
    /// The label that replaces it in redacted text.
    pub fn label(self) -> &'static str {
        match self {
            Kind::Email => "[EMAIL]",
            Kind::Phone => "[PHONE]",
            Kind::Card => "[CARD]",
            Kind::Iban => "[IBAN]",
            Kind::Ssn => "[SSN]",
            Kind::IpAddress => "[IP]",
            Kind::Secret => "[API_KEY]",
        }
    }

    /// Whether it is personal data (the rest are secrets).
    pub fn is_pii(self) -> bool {
        self != Kind::Secret
    }
}

/// One finding: its kind, a detail (`openai`, `aws`, `ipv6`, …) and its byte range.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Kind.
    pub kind: Kind,
    /// Which pattern found it.
    pub detail: &'static str,
    /// Start byte.
    pub start: usize,
    /// End byte (exclusive).
    pub end: usize,
}

struct Pattern {
    kind: Kind,
    detail: &'static str,
    regex: Regex,
    valid: fn(&str) -> bool,
}

/// Checks a match beyond its pattern.
type Validator = fn(&str) -> bool;
/// Kind, detail, pattern, validator.
type PatternSpec = (Kind, &'static str, &'static str, Validator);

fn always(_: &str) -> bool {
    true
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let specs: [PatternSpec; 19] = [
        (
            Kind::Secret,
            "anthropic",
            r"\bsk-ant-[A-Za-z0-9]+-[A-Za-z0-9_-]{20,}",
            always,
        ),
        (
            Kind::Secret,
            "openai",
            r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{12,}",
            openai_key,
        ),
        (
            Kind::Secret,
            "aws",
            r"\b(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[A-Z0-9]{16}\b",
            always,
        ),
        (
            Kind::Secret,
            "github",
            r"\bgh[pousr]_[A-Za-z0-9]{36,}\b",
            always,
        ),
        (
            Kind::Secret,
            "github",
            r"\bgithub_pat_[A-Za-z0-9_]{50,}\b",
            always,
        ),
        (Kind::Secret, "google", r"\bAIza[0-9A-Za-z_-]{35}", always),
        (
            Kind::Secret,
            "slack",
            r"\bxox[abprs]-[A-Za-z0-9-]{10,}",
            always,
        ),
        (
            Kind::Secret,
            "bearer",
            r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]{16,}",
            always,
        ),
        (
            Kind::Secret,
            "private_key",
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----",
            always,
        ),
        (
            Kind::Secret,
            "high_entropy",
            r"\b[A-Za-z0-9+/_=-]{32,}",
            high_entropy,
        ),
        (
            Kind::Email,
            "email",
            r"\b[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}\b",
            always,
        ),
        (
            Kind::Iban,
            "iban",
            r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b",
            iban_valid,
        ),
        (
            Kind::Card,
            "card",
            r"\b\d(?:(?:[ \t-]|\r?\n){0,2}\d){12,18}\b",
            card_valid,
        ),
        (Kind::Ssn, "ssn", r"\b\d{3}[- ]\d{2}[- ]\d{4}\b", ssn_valid),
        (
            Kind::IpAddress,
            "ipv4",
            r"\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}\b",
            |t| t.parse::<Ipv4Addr>().is_ok(),
        ),
        (
            Kind::IpAddress,
            "ipv6",
            r"(?i)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}",
            ipv6_valid,
        ),
        (
            Kind::Phone,
            "phone",
            r"\+\d{1,3}[ .-]?(?:\(\d{1,4}\)|\d{1,4})(?:[ .-]?\d{2,4}){2,4}\b",
            phone_valid,
        ),
        (
            Kind::Phone,
            "phone",
            r"(?:\(\d{3}\) ?|\b\d{3}[-. ])\d{3}[-. ]\d{4}\b",
            phone_valid,
        ),
        (Kind::Phone, "phone", r"\+\d{7,15}\b", phone_valid),
    ];
    specs
        .into_iter()
        .filter_map(|(kind, detail, pattern, valid)| {
            // ASCII classes and word boundaries: the patterns are about ASCII tokens, and
            // Unicode word boundaries would push the matcher off its fast path on any
            // non-ASCII answer.
            Regex::new(&format!("(?-u){pattern}"))
                .ok()
                .map(|regex| Pattern {
                    kind,
                    detail,
                    regex,
                    valid,
                })
        })
        .collect()
});

/// An OpenAI-style key: not Anthropic's (its own pattern); 20 characters or more after
/// `sk-`, or a shorter tail that mixes letters and digits as generated keys do (so
/// `sk-learn-pipelines` is a word, not a key).
fn openai_key(text: &str) -> bool {
    let tail = text.trim_start_matches("sk-");
    !text.starts_with("sk-ant-")
        && (tail.len() >= 20
            || tail.bytes().any(|b| b.is_ascii_digit())
                && tail.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// Whether a run of digits (spaces and dashes ignored) passes the Luhn check.
pub fn luhn(text: &str) -> bool {
    let digits: Vec<u32> = text.chars().filter_map(|c| c.to_digit(10)).collect();
    if digits.is_empty() {
        return false;
    }
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

fn card_valid(text: &str) -> bool {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    // Issuer prefixes: Visa 4, Mastercard 51–55 and 2221–2720, Amex 34/37, Discover 6,
    // Diners 36/38/30, JCB 35, UnionPay 62.
    let known_issuer = matches!(digits.as_bytes().first(), Some(b'2'..=b'6'));
    (13..=19).contains(&digits.len()) && known_issuer && luhn(&digits)
}

/// IBAN lengths by country (ISO 13616 registry, the countries most often seen).
const IBAN_LENGTHS: &[(&str, usize)] = &[
    ("AT", 20),
    ("BE", 16),
    ("BG", 22),
    ("CH", 21),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DK", 18),
    ("EE", 20),
    ("ES", 24),
    ("FI", 18),
    ("FR", 27),
    ("GB", 22),
    ("GR", 27),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IS", 26),
    ("IT", 27),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("MT", 31),
    ("NL", 18),
    ("NO", 15),
    ("PL", 28),
    ("PT", 25),
    ("RO", 24),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
];

/// Whether `text` (spaces ignored) is an IBAN: its country's length and the mod-97 check.
pub fn iban_valid(text: &str) -> bool {
    let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if !(15..=34).contains(&compact.len()) || !compact.is_ascii() {
        return false;
    }
    let country = &compact[..2];
    if let Some((_, length)) = IBAN_LENGTHS.iter().find(|(c, _)| *c == country)
        && compact.len() != *length
    {
        return false;
    }
    let rearranged = compact[4..].chars().chain(compact[..4].chars());
    let mut remainder: u32 = 0;
    for c in rearranged {
        let value = match c.to_digit(36) {
            Some(v) => v,
            None => return false,
        };
        remainder = if value < 10 {
            (remainder * 10 + value) % 97
        } else {
            (remainder * 100 + value) % 97
        };
    }
    remainder == 1
}

/// Whether `text` is a US social security number the SSA could have issued.
pub fn ssn_valid(text: &str) -> bool {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    if digits.len() != 9 {
        return false;
    }
    let (area, group, serial) = (&digits[..3], &digits[3..5], &digits[5..]);
    let area_number: u32 = area.parse().unwrap_or(0);
    area != "000"
        && area != "666"
        && area_number < 900
        && group != "00"
        && serial != "0000"
        // Numbers published in advertising, never valid.
        && digits != "078051120"
        && digits != "219099999"
}

fn ipv6_valid(text: &str) -> bool {
    text.matches(':').count() >= 2
        && text.chars().any(|c| c.is_ascii_hexdigit())
        && text.parse::<Ipv6Addr>().is_ok()
}

fn phone_valid(text: &str) -> bool {
    let digits: Vec<char> = text.chars().filter(char::is_ascii_digit).collect();
    (10..=15).contains(&digits.len()) && digits.iter().any(|d| *d != digits[0])
}

/// Shannon entropy of `text`, in bits per character.
pub fn entropy(text: &str) -> f64 {
    let mut counts = [0u32; 256];
    for byte in text.bytes() {
        counts[usize::from(byte)] += 1;
    }
    let length = text.len() as f64;
    counts
        .iter()
        .filter(|c| **c > 0)
        .map(|c| {
            let p = f64::from(*c) / length;
            -p * p.log2()
        })
        .sum()
}

/// A long token of mixed letters and digits that looks random: a credential no pattern knows.
fn high_entropy(text: &str) -> bool {
    text.chars().any(|c| c.is_ascii_digit())
        && text.chars().any(|c| c.is_ascii_uppercase())
        && text.chars().any(|c| c.is_ascii_lowercase())
        && entropy(text) >= 4.2
}

/// One pass over the text that says whether any pattern could match: most answers hold no
/// personal data or secrets, and this keeps scanning them to one automaton run.
static PREFILTER: LazyLock<Option<regex::RegexSet>> =
    LazyLock::new(|| regex::RegexSet::new(PATTERNS.iter().map(|p| p.regex.as_str())).ok());

/// Whether `text` holds anything [`scan`] would report (faster than scanning when it does not).
pub fn any(text: &str) -> bool {
    let candidates = match PREFILTER.as_ref() {
        Some(set) => set.matches(text),
        None => return !scan(text).is_empty(),
    };
    candidates.iter().any(|index| {
        let pattern = &PATTERNS[index];
        pattern
            .regex
            .find_iter(text)
            .any(|m| (pattern.valid)(m.as_str()))
    })
}

/// Every finding in `text`, in order; where two overlap, the first pattern's (secrets before
/// personal data, then the longer) is kept.
pub fn scan(text: &str) -> Vec<Finding> {
    let mut found: Vec<Finding> = Vec::new();
    for pattern in PATTERNS.iter() {
        for m in pattern.regex.find_iter(text) {
            if !(pattern.valid)(m.as_str()) {
                continue;
            }
            let overlaps = found.iter().any(|f| f.start < m.end() && m.start() < f.end);
            if overlaps {
                continue;
            }
            found.push(Finding {
                kind: pattern.kind,
                detail: pattern.detail,
                start: m.start(),
                end: m.end(),
            });
        }
    }
    found.sort_by_key(|f| f.start);
    found
}

/// `text` with every finding replaced by its kind's label; unchanged text is borrowed.
pub fn redact(text: &str) -> std::borrow::Cow<'_, str> {
    let found = scan(text);
    if found.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for finding in found {
        out.push_str(&text[at..finding.start]);
        if finding.detail == "bearer" {
            out.push_str("Bearer ");
        }
        out.push_str(finding.kind.label());
        at = finding.end;
    }
    out.push_str(&text[at..]);
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(Kind, &'static str)> {
        scan(text).iter().map(|f| (f.kind, f.detail)).collect()
    }

    #[test]
    fn cards_need_the_luhn_check_and_an_issuer() {
        assert_eq!(kinds("card 4111 1111 1111 1111 ok"), [(Kind::Card, "card")]);
        assert_eq!(kinds("amex 3782-822463-10005"), [(Kind::Card, "card")]);
        assert!(kinds("card 4111 1111 1111 1112").is_empty());
        assert!(kinds("order 1234567812345678").is_empty());
        assert!(luhn("79927398713") && !luhn("79927398710") && !luhn(""));
    }

    #[test]
    fn ibans_need_their_country_length_and_mod_97() {
        assert_eq!(
            kinds("pay to DE89 3704 0044 0532 0130 00 today"),
            [(Kind::Iban, "iban")]
        );
        assert_eq!(kinds("GB82WEST12345698765432"), [(Kind::Iban, "iban")]);
        assert!(!iban_valid("DE89 3704 0044 0532 0130 01"));
        assert!(!iban_valid("DE89370400440532013"));
        assert!(kinds("GB82WEST12345698765433").is_empty());
    }

    #[test]
    fn ssns_follow_the_issuing_rules() {
        assert_eq!(kinds("ssn 123-45-6789"), [(Kind::Ssn, "ssn")]);
        for invalid in [
            "000-12-3456",
            "666-12-3456",
            "912-34-5678",
            "123-00-4567",
            "123-45-0000",
            "078-05-1120",
        ] {
            assert!(!ssn_valid(invalid), "{invalid}");
            assert!(
                kinds(invalid).iter().all(|(k, _)| *k != Kind::Ssn),
                "{invalid}"
            );
        }
    }

    #[test]
    fn emails_phones_and_ip_addresses() {
        assert_eq!(
            kinds("write to ada.l@example.co.uk"),
            [(Kind::Email, "email")]
        );
        assert!(kinds("not an email: user@localhost").is_empty());
        assert_eq!(kinds("call +1 (415) 555-0132"), [(Kind::Phone, "phone")]);
        assert_eq!(kinds("call +442079460958"), [(Kind::Phone, "phone")]);
        assert!(kinds("version 2024-11-20").is_empty());
        assert!(kinds("123 456").is_empty());
        assert_eq!(kinds("host 192.168.1.20"), [(Kind::IpAddress, "ipv4")]);
        assert!(kinds("host 300.1.1.1").is_empty());
        assert_eq!(
            kinds("v6 2001:db8::8a2e:370:7334"),
            [(Kind::IpAddress, "ipv6")]
        );
        assert!(kinds("time 12:30:45").is_empty());
    }

    #[test]
    fn secrets_of_every_provider_and_random_tokens() {
        let cases = [
            ("sk-proj-abcdefghijklmnopqrstuvwx1234", "openai"),
            ("sk-abcdefghijklmnopqrstu12345", "openai"),
            (
                "sk-ant-api03-abcdefghijklmnopqrstuvwxyz0123456789_-ABCD",
                "anthropic",
            ),
            ("AKIAIOSFODNN7EXAMPLE", "aws"),
            ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "github"),
            ("AIzaSyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q", "google"),
            ("xoxb-1234567890-abcdefghij", "slack"),
            ("Authorization: Bearer abc.def.ghijklmnopqrstu", "bearer"),
            ("-----BEGIN RSA PRIVATE KEY-----", "private_key"),
            ("token Zx8Qp2Lm9Vt4Rk7Nw3Bc6Hd1Fg5Js0Ay", "high_entropy"),
        ];
        for (text, detail) in cases {
            assert_eq!(kinds(text), [(Kind::Secret, detail)], "{text}");
        }
        // Look-alikes that are not credentials.
        for text in [
            "sk-short",
            "AKIA1234",
            "the word skeleton-key-for-the-house",
            "commit 3f2a9c1d4e5b6a7c8d9e0f1a2b3c4d5e6f7a8b9c",
            "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
            "ghp_short",
        ] {
            assert!(kinds(text).is_empty(), "{text}: {:?}", kinds(text));
        }
    }

    #[test]
    fn every_pattern_compiles() {
        assert_eq!(PATTERNS.len(), 19);
        assert!(PREFILTER.is_some());
    }

    #[test]
    fn non_ascii_text_around_findings_is_fine() {
        assert_eq!(
            kinds("Müller schreibt an müller@example.de — café"),
            [(Kind::Email, "email")]
        );
    }

    #[test]
    fn the_prefilter_agrees_with_the_scan() {
        for text in [
            "nothing here at all",
            "card 4111 1111 1111 1111",
            "card 4111 1111 1111 1112",
            "key AKIAIOSFODNN7EXAMPLE",
            "host 300.1.1.1 and 12:30:45",
        ] {
            assert_eq!(any(text), !scan(text).is_empty(), "{text}");
        }
    }

    #[test]
    fn redaction_replaces_each_finding_with_its_label() {
        let text = "mail ada@example.com, card 4111-1111-1111-1111, key sk-proj-abcdefghijklmnop1234, Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.payload";
        assert_eq!(
            redact(text),
            "mail [EMAIL], card [CARD], key [API_KEY], Authorization: Bearer [API_KEY]"
        );
        assert!(matches!(
            redact("nothing to hide"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
