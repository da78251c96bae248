//! The simulator's notion of tokens: words with their leading whitespace, and single
//! punctuation marks. Streams send one piece per chunk and `usage` counts the same pieces, so
//! the two always agree.

/// Splits `text` into token pieces; concatenating them gives `text` back. Trailing whitespace
/// joins the last piece.
pub fn pieces(text: &str) -> Vec<&str> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let offset = |i: usize| chars.get(i).map_or(text.len(), |(at, _)| *at);
    let mut out = Vec::new();
    let (mut start, mut last_start, mut i) = (0, 0, 0);
    while i < chars.len() {
        while i < chars.len() && chars[i].1.is_whitespace() {
            i += 1;
        }
        if i == chars.len() {
            break;
        }
        if chars[i].1.is_alphanumeric() {
            while i < chars.len() && chars[i].1.is_alphanumeric() {
                i += 1;
            }
        } else {
            i += 1;
        }
        out.push(&text[start..offset(i)]);
        last_start = start;
        start = offset(i);
    }
    if start < text.len() {
        out.pop();
        out.push(&text[last_start..]);
    }
    out
}

/// The number of token pieces in `text`.
pub fn count(text: &str) -> u64 {
    pieces(text).len() as u64
}

const LOREM: &[&str] = &[
    "lorem",
    "ipsum",
    "dolor",
    "sit",
    "amet",
    "consectetur",
    "adipiscing",
    "elit",
    "sed",
    "do",
    "eiusmod",
    "tempor",
    "incididunt",
    "ut",
    "labore",
    "et",
    "dolore",
    "magna",
    "aliqua",
];

/// Deterministic filler text of `tokens` pieces.
pub fn lorem(tokens: usize) -> String {
    let mut out = String::new();
    for i in 0..tokens {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(LOREM[i % LOREM.len()]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_round_trip_and_count_words_and_punctuation() {
        for text in [
            "The capital of France is Paris.",
            "  lead and trail  ",
            "",
            "{\"a\": 1}",
            "naïve café — ok",
        ] {
            assert_eq!(pieces(text).concat(), text);
        }
        assert_eq!(pieces("Hello, world!"), vec!["Hello", ",", " world", "!"]);
        assert_eq!(count(&lorem(17)), 17);
    }
}
