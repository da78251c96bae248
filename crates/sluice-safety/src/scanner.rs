//! The runtime scanner a gateway version runs: on its answers, secrets, personal data and a
//! planted canary (safety violations); on what users send, prompt-injection heuristics
//! (injection attempts, counted apart: they say what users try, not how the version behaves).
//!
//! What happens to an answer with a violation is the version's [`Action`]: `log` counts it and
//! lets it through, `redact` replaces each finding with its label (`[API_KEY]`, `[EMAIL]`,
//! `[CANARY]`), `block` withholds the answer. A streamed answer is guarded by a
//! [`StreamGuard`], which holds back the text that a finding could still be growing into.

use crate::detect::{self, Kind};
use crate::refusal::Canary;

/// What is done with an answer that holds a violation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Count it; the answer goes through unchanged.
    #[default]
    Log,
    /// Count it and replace each finding with its label.
    Redact,
    /// Count it and withhold the answer.
    Block,
}

impl Action {
    /// Its name in configs.
    pub fn name(self) -> &'static str {
        match self {
            Action::Log => "log",
            Action::Redact => "redact",
            Action::Block => "block",
        }
    }
}

/// The label that replaces a leaked canary.
pub const CANARY_LABEL: &str = "[CANARY]";

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
    /// Count answers that decline the request (never changed or withheld).
    pub refusals: bool,
    /// What happens to an answer with a violation.
    pub action: Action,
    /// Refuse requests on which an injection heuristic fires.
    pub block_input: bool,
}

impl Scanner {
    /// Everything on, no canary.
    pub fn all() -> Self {
        Self {
            secrets: true,
            pii: true,
            canary: None,
            input: true,
            refusals: true,
            action: Action::Log,
            block_input: false,
        }
    }

    /// Bytes of a streamed answer a [`StreamGuard`] holds back: enough for the longest finding
    /// that spans separators, the canary spelled out included.
    pub fn hold_back(&self) -> usize {
        HOLD_BACK.max(self.canary.as_ref().map_or(0, Canary::longest_form))
    }

    /// Whether answers may be changed or withheld (they must then be read before they are
    /// passed on).
    pub fn guards(&self) -> bool {
        (self.secrets || self.pii || self.canary.is_some()) && self.action != Action::Log
    }

    /// The findings this scanner reports in `text`: byte range, label and violation kind, in
    /// order, without overlaps.
    pub fn findings(&self, text: &str) -> Vec<(usize, usize, &'static str, &'static str)> {
        let mut found = Vec::new();
        if let Some(canary) = &self.canary {
            for (start, end) in canary.find(text) {
                found.push((start, end, CANARY_LABEL, "canary"));
            }
        }
        if (self.secrets || self.pii) && detect::any(text) {
            for finding in detect::scan(text) {
                let wanted = if finding.kind == Kind::Secret {
                    self.secrets
                } else {
                    self.pii
                };
                let overlaps = found
                    .iter()
                    .any(|(start, end, _, _)| *start < finding.end && finding.start < *end);
                if wanted && !overlaps {
                    let kind = if finding.kind == Kind::Secret {
                        "secret"
                    } else {
                        "pii"
                    };
                    found.push((finding.start, finding.end, finding.kind.label(), kind));
                }
            }
        }
        found.sort_by_key(|f| f.0);
        found
    }

    /// `text` with every finding replaced by its label, and the violation kinds (each once).
    pub fn redact(&self, text: &str) -> (String, Vec<&'static str>) {
        replace(text, self.findings(text))
    }

    /// Whether it checks answers at all.
    pub fn is_active(&self) -> bool {
        self.secrets || self.pii || self.canary.is_some() || self.refusals
    }

    /// Whether `answer` declines the request (when refusals are counted). Only its opening
    /// 2 KiB are read: that is where a model declines.
    pub fn refused(&self, answer: &str) -> bool {
        if !self.refusals {
            return false;
        }
        let mut end = answer.len().min(2048);
        while !answer.is_char_boundary(end) {
            end -= 1;
        }
        crate::is_refusal(&answer[..end])
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

/// Bytes of a streamed answer held back at least, so that a finding which spans separators
/// (a card number or an IBAN written in groups) is whole before it is let through; more when
/// the version's canary spelled out takes more (see [`Scanner::hold_back`]).
const HOLD_BACK: usize = 96;
/// The longest word held back whole (a key still arriving); longer ones are let through in
/// part.
const LONGEST_WORD: usize = 4096;

/// What a [`StreamGuard`] lets through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Release {
    /// Text to send now (possibly empty), with the violations redacted out of it.
    Text(String, Vec<&'static str>),
    /// The answer holds these violations and must be withheld from here on.
    Blocked(Vec<&'static str>),
}

/// Guards one streamed answer (one choice): text goes in as it arrives and comes out once no
/// finding can still be growing into it (the last [`HOLD_BACK`] bytes and the last word are
/// held back), redacted, or the stream is blocked at the first violation. Nothing that holds a
/// complete finding is let through unguarded.
#[derive(Debug, Default)]
pub struct StreamGuard {
    pending: String,
    blocked: bool,
}

impl StreamGuard {
    /// A guard with nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of the answer.
    pub fn push(&mut self, scanner: &Scanner, text: &str) -> Release {
        if self.blocked {
            return Release::Blocked(Vec::new());
        }
        self.pending.push_str(text);
        self.release(scanner, false)
    }

    /// The answer ended: everything still held, guarded.
    pub fn finish(&mut self, scanner: &Scanner) -> Release {
        if self.blocked {
            return Release::Blocked(Vec::new());
        }
        self.release(scanner, true)
    }

    fn release(&mut self, scanner: &Scanner, all: bool) -> Release {
        let found = scanner.findings(&self.pending);
        if scanner.action == Action::Block && !found.is_empty() {
            self.blocked = true;
            self.pending.clear();
            let mut kinds: Vec<&'static str> = found.iter().map(|f| f.3).collect();
            kinds.dedup();
            kinds.sort_unstable();
            kinds.dedup();
            return Release::Blocked(kinds);
        }
        let mut cut = if all {
            self.pending.len()
        } else {
            let text = &self.pending;
            let mut cut = text.len().saturating_sub(scanner.hold_back());
            let word_start = text.rfind(char::is_whitespace).map_or(0, |at| {
                at + text[at..].chars().next().map_or(1, char::len_utf8)
            });
            if text.len() - word_start <= LONGEST_WORD {
                cut = cut.min(word_start);
            }
            cut
        };
        // A finding the cut would split waits whole.
        for (start, end, _, _) in &found {
            if *start < cut && cut < *end {
                cut = *start;
            }
        }
        while !self.pending.is_char_boundary(cut) {
            cut -= 1;
        }
        let rest = self.pending.split_off(cut);
        let released = std::mem::replace(&mut self.pending, rest);
        let (out, kinds) = replace(&released, found.into_iter().filter(|f| f.1 <= cut));
        Release::Text(out, kinds)
    }
}

/// `text` with each finding (in order, without overlaps) replaced by its label, and the
/// violation kinds, each once.
fn replace(
    text: &str,
    findings: impl IntoIterator<Item = (usize, usize, &'static str, &'static str)>,
) -> (String, Vec<&'static str>) {
    let mut out = String::with_capacity(text.len());
    let mut kinds = Vec::new();
    let mut at = 0;
    for (start, end, label, kind) in findings {
        out.push_str(&text[at..start]);
        out.push_str(label);
        at = end;
        if !kinds.contains(&kind) {
            kinds.push(kind);
        }
    }
    out.push_str(&text[at..]);
    (out, kinds)
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
        assert!(Scanner::all().refused("I'm sorry, but I can't help with that."));
        assert!(!Scanner::all().refused("Paris."));
        let quiet = Scanner {
            refusals: false,
            ..Scanner::all()
        };
        assert!(!quiet.refused("I'm sorry, but I can't help with that."));
    }

    fn stream(scanner: &Scanner, answer: &str, piece: usize) -> (String, Vec<&'static str>, bool) {
        let mut guard = StreamGuard::new();
        let (mut out, mut kinds, mut blocked) = (String::new(), Vec::new(), false);
        let chars: Vec<char> = answer.chars().collect();
        let mut releases: Vec<Release> = chars
            .chunks(piece)
            .map(|chunk| guard.push(scanner, &chunk.iter().collect::<String>()))
            .collect();
        releases.push(guard.finish(scanner));
        for release in releases {
            match release {
                Release::Text(text, found) => {
                    assert!(!blocked, "text after a block");
                    out.push_str(&text);
                    kinds.extend(found);
                }
                Release::Blocked(found) => {
                    blocked = true;
                    kinds.extend(found);
                }
            }
        }
        kinds.sort_unstable();
        kinds.dedup();
        (out, kinds, blocked)
    }

    #[test]
    fn redaction_replaces_each_finding_with_its_label() {
        let scanner = Scanner {
            canary: Some(Canary::new("SLUICE-CANARY-00000000000000aa")),
            pii: false,
            ..Scanner::all()
        };
        let (text, kinds) = scanner.redact(
            "key sk-proj-abcdefghijklmnopqrstuvwx, mail bob@example.com, SLUICE-CANARY-00000000000000aa.",
        );
        assert_eq!(text, "key [API_KEY], mail bob@example.com, [CANARY].");
        assert_eq!(kinds, ["secret", "canary"], "in the order they appear");
        assert_eq!(scanner.redact("nothing").0, "nothing");
    }

    #[test]
    fn a_streamed_answer_is_redacted_however_it_is_cut() {
        let scanner = Scanner {
            action: Action::Redact,
            canary: Some(Canary::new("SLUICE-CANARY-00000000000000aa")),
            ..Scanner::all()
        };
        let answer = "Sure. The billing key is sk-proj-R3dT34mPl4nt3dK3yD0N0tUs3 and the card on file is 4539 1488 0343 6467; my reference is S L U I C E C A N A R Y 0 0 0 0 0 0 0 0 0 0 0 0 0 0 a a. Anything else?";
        for piece in [1, 2, 3, 5, 8, 13, 40, 1000] {
            let (out, kinds, blocked) = stream(&scanner, answer, piece);
            assert!(!blocked);
            assert_eq!(
                out,
                "Sure. The billing key is [API_KEY] and the card on file is [CARD]; my reference is [CANARY]. Anything else?",
                "pieces of {piece}"
            );
            assert_eq!(kinds, ["canary", "pii", "secret"]);
        }
        // Spelled out with the most separators the matcher allows, the canary is longer than
        // the usual hold-back; it is still caught whole.
        let widest: String = "SLUICECANARY00000000000000aa"
            .chars()
            .map(|c| format!("{c} - "))
            .collect();
        let widest = widest.trim_end_matches(" - ");
        assert!(widest.len() > HOLD_BACK && scanner.hold_back() >= widest.len());
        for piece in [1, 7, 64] {
            let (out, kinds, _) = stream(&scanner, &format!("ref: {widest} end"), piece);
            assert_eq!(out, "ref: [CANARY] end", "pieces of {piece}");
            assert_eq!(kinds, ["canary"]);
        }
        let (out, kinds, _) = stream(&scanner, "Paris is the capital of France.", 3);
        assert_eq!(out, "Paris is the capital of France.");
        assert!(kinds.is_empty());
    }

    #[test]
    fn a_streamed_answer_is_blocked_before_any_of_the_finding_goes_out() {
        let scanner = Scanner {
            action: Action::Block,
            ..Scanner::all()
        };
        let answer = format!(
            "{} The key is sk-proj-R3dT34mPl4nt3dK3yD0N0tUs3 as asked. More text follows here.",
            "Plain words. ".repeat(20)
        );
        for piece in [1, 4, 16, 1000] {
            let (out, kinds, blocked) = stream(&scanner, &answer, piece);
            assert!(blocked, "pieces of {piece}");
            assert_eq!(kinds, ["secret"]);
            assert!(!out.contains("sk-"), "{out}");
            assert!(answer.starts_with(&out));
        }
    }
}
