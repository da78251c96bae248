//! Who may act from the control plane: the admin token (`--admin-token-env`), given either as
//! `Authorization: Bearer TOKEN` to the API or once to the login form, which opens a session
//! (an `HttpOnly`, `SameSite=Strict` cookie) with its own CSRF token. Without a token set,
//! nothing can be changed from here.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// The session cookie's name.
pub const COOKIE: &str = "sluice_session";
/// How long a session lasts.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Sessions kept at once, at most (the oldest goes first).
const MAX_SESSIONS: usize = 1_000;

/// A logged-in browser.
#[derive(Debug, Clone)]
struct Session {
    csrf: String,
    expires: Instant,
}

/// The admin token and the sessions it opened.
#[derive(Debug)]
pub struct Admin {
    token_digest: [u8; 32],
    sessions: Mutex<HashMap<String, Session>>,
}

/// 32 random bytes as hex, from the system's secure generator.
fn random_hex() -> Option<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

impl Admin {
    /// Actions are allowed with `token`.
    pub fn new(token: &str) -> Self {
        Admin {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `given` is the token (compared as digests, so the time taken says nothing of
    /// how much of it matched).
    pub fn accepts(&self, given: &str) -> bool {
        let digest: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        digest
            .iter()
            .zip(self.token_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// Whether an `Authorization` header carries the token.
    pub fn bearer(&self, header: Option<&str>) -> bool {
        header
            .and_then(|h| h.strip_prefix("Bearer "))
            .is_some_and(|token| self.accepts(token.trim()))
    }

    /// Opens a session: its id (the cookie's value) and its CSRF token.
    pub fn open(&self) -> Option<(String, String)> {
        let (id, csrf) = (random_hex()?, random_hex()?);
        let mut sessions = self.sessions.lock().ok()?;
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                csrf: csrf.clone(),
                expires: now + SESSION_LIFETIME,
            },
        );
        Some((id, csrf))
    }

    /// The CSRF token of the live session a `Cookie` header names.
    pub fn session(&self, cookie_header: Option<&str>) -> Option<String> {
        let id = cookie_header?.split(';').find_map(|part| {
            let (name, value) = part.trim().split_once('=')?;
            (name == COOKIE).then(|| value.to_owned())
        })?;
        let sessions = self.sessions.lock().ok()?;
        sessions
            .get(&id)
            .filter(|s| s.expires > Instant::now())
            .map(|s| s.csrf.clone())
    }

    /// Closes the session a `Cookie` header names.
    pub fn close(&self, cookie_header: Option<&str>) {
        let Some(id) = cookie_header.and_then(|header| {
            header.split(';').find_map(|part| {
                let (name, value) = part.trim().split_once('=')?;
                (name == COOKIE).then(|| value.to_owned())
            })
        }) else {
            return;
        };
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_sessions_and_csrf() {
        let admin = Admin::new("s3cret");
        assert!(admin.accepts("s3cret") && !admin.accepts("s3cre") && !admin.accepts(""));
        assert!(admin.bearer(Some("Bearer s3cret")));
        assert!(!admin.bearer(Some("Basic s3cret")) && !admin.bearer(None));
        let (id, csrf) = admin.open().unwrap();
        assert_eq!(id.len(), 64);
        let header = format!("theme=dark; {COOKIE}={id}");
        assert_eq!(admin.session(Some(&header)), Some(csrf));
        assert_eq!(admin.session(Some("sluice_session=forged")), None);
        admin.close(Some(&header));
        assert_eq!(admin.session(Some(&header)), None);
    }
}
