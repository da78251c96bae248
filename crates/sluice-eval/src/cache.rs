//! The response cache: content-addressed files on disk, one per provider request and repeat
//! index, with a time to live.
//!
//! The key is the SHA-256 of the endpoint, the base URL, the request body and the repeat index,
//! so each repeat of a test has an independent entry (repeats stay independent samples, and a
//! rerun replays each of them exactly). Errors and empty answers are never cached. A corrupt or
//! expired entry is a miss and is overwritten.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sluice_llm::TokenCounts;
use sluice_llm::types::ToolCall;

/// The default time to live, as promptfoo's.
pub const DEFAULT_TTL: Duration = Duration::from_secs(14 * 24 * 3600);

/// What is kept of a response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachedResponse {
    /// When it was stored, Unix milliseconds.
    pub created_ms: u64,
    /// The generated text.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: Option<String>,
    /// Tool calls.
    pub tool_calls: Vec<ToolCall>,
    /// Token counts.
    pub tokens: Option<TokenCounts>,
    /// Latency of the original request, ms.
    pub latency_ms: f64,
}

/// A cache directory.
#[derive(Debug, Clone)]
pub struct ResponseCache {
    dir: PathBuf,
    ttl: Duration,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default()
}

impl ResponseCache {
    /// A cache in `dir` (created on first write) whose entries live for `ttl`.
    pub fn new(dir: impl Into<PathBuf>, ttl: Duration) -> Self {
        Self {
            dir: dir.into(),
            ttl,
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The key of a request.
    pub fn key(endpoint: &str, base_url: &str, body: &str, repeat: usize) -> String {
        let mut hasher = Sha256::new();
        for part in [endpoint, base_url, body, &repeat.to_string()] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        hasher
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(&key[..2]).join(format!("{key}.json"))
    }

    /// The entry for `key`, unless it is missing, expired or unreadable.
    pub fn get(&self, key: &str) -> Option<CachedResponse> {
        let text = std::fs::read_to_string(self.path(key)).ok()?;
        let entry: CachedResponse = serde_json::from_str(&text).ok()?;
        let age = Duration::from_millis(now_ms().saturating_sub(entry.created_ms));
        (age <= self.ttl).then_some(entry)
    }

    /// Stores an entry (empty answers are not stored); written to a temporary file and renamed,
    /// so a reader never sees half an entry.
    pub fn put(&self, key: &str, entry: &CachedResponse) -> std::io::Result<()> {
        if entry.text.is_empty() && entry.tool_calls.is_empty() {
            return Ok(());
        }
        let path = self.path(key);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let temporary = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(
            &temporary,
            serde_json::to_vec(entry).map_err(std::io::Error::other)?,
        )?;
        std::fs::rename(&temporary, &path)
    }
}

/// `$SLUICE_CACHE_DIR`, else `$XDG_CACHE_HOME/sluice/responses`, else
/// `$HOME/.cache/sluice/responses`, else `.sluice/cache` in the working directory.
pub fn default_dir(var: impl Fn(&str) -> Option<String>) -> PathBuf {
    if let Some(dir) = var("SLUICE_CACHE_DIR").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if let Some(dir) = var("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Path::new(&dir).join("sluice/responses");
    }
    if let Some(home) = var("HOME").filter(|d| !d.is_empty()) {
        return Path::new(&home).join(".cache/sluice/responses");
    }
    PathBuf::from(".sluice/cache")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(text: &str, created_ms: u64) -> CachedResponse {
        CachedResponse {
            created_ms,
            text: text.into(),
            finish_reason: Some("stop".into()),
            tool_calls: Vec::new(),
            tokens: None,
            latency_ms: 12.0,
        }
    }

    #[test]
    fn entries_round_trip_expire_and_ignore_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ResponseCache::new(dir.path(), Duration::from_secs(60));
        let key = ResponseCache::key("chat", "http://h/v1", "{}", 0);
        assert_ne!(
            key,
            ResponseCache::key("chat", "http://h/v1", "{}", 1),
            "repeats have their own entries"
        );
        assert!(cache.get(&key).is_none());
        cache.put(&key, &entry("hi", now_ms())).unwrap();
        assert_eq!(cache.get(&key).unwrap().text, "hi");
        cache.put(&key, &entry("old", now_ms() - 120_000)).unwrap();
        assert!(cache.get(&key).is_none(), "expired");
        std::fs::write(cache.path(&key), "{not json").unwrap();
        assert!(cache.get(&key).is_none(), "corrupt");
        let empty = ResponseCache::key("chat", "h", "empty", 0);
        cache.put(&empty, &entry("", now_ms())).unwrap();
        assert!(cache.get(&empty).is_none(), "empty answers are not cached");
    }

    #[test]
    fn the_default_directory_follows_the_environment() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| (*v).to_owned())
            }
        };
        assert_eq!(
            default_dir(env(&[("SLUICE_CACHE_DIR", "/c")])),
            PathBuf::from("/c")
        );
        assert_eq!(
            default_dir(env(&[("XDG_CACHE_HOME", "/x")])),
            PathBuf::from("/x/sluice/responses")
        );
        assert_eq!(
            default_dir(env(&[("HOME", "/h")])),
            PathBuf::from("/h/.cache/sluice/responses")
        );
        assert_eq!(default_dir(env(&[])), PathBuf::from(".sluice/cache"));
    }
}
