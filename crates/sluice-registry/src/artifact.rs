//! Artifact URIs and digests. A `file://` artifact is hashed as it is registered: SHA-256 and
//! size, read in fixed 1 MiB blocks so that a multi-gigabyte weights file never sits in memory.
//! Remote artifacts (`s3://`, `hf://`, `oci://`, `https://`) are checked for shape and recorded
//! as given, with a declared digest when one comes with them.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use sluice_store::Artifact;

use crate::RegistryError;

/// Bytes read per block while hashing.
const BLOCK: usize = 1 << 20;

/// Where an artifact is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArtifactLocation {
    /// A local file.
    File(PathBuf),
    /// `s3://bucket/key`.
    S3 {
        /// Bucket.
        bucket: String,
        /// Object key.
        key: String,
    },
    /// `hf://<org>/<repo>@<revision>/<path>`.
    HuggingFace {
        /// `org/repo`.
        repo: String,
        /// Branch, tag or commit.
        revision: String,
        /// File within the repository.
        path: String,
    },
    /// `oci://registry/repository[:tag|@sha256:…]`.
    Oci(String),
    /// `https://…`.
    Https(String),
}

/// Parses an artifact URI, saying what shape was expected when it does not parse.
pub fn parse_uri(uri: &str) -> Result<ArtifactLocation, RegistryError> {
    let invalid = |expected: &str| RegistryError::InvalidUri {
        uri: uri.to_owned(),
        expected: expected.to_owned(),
    };
    let Some((scheme, rest)) = uri.split_once("://") else {
        return Err(invalid(
            "a URI with a scheme: file://, s3://, hf://, oci:// or https://",
        ));
    };
    match scheme {
        "file" => {
            let path = rest.strip_prefix("localhost").unwrap_or(rest);
            if !path.starts_with('/') {
                return Err(invalid("file:///ABSOLUTE/PATH"));
            }
            Ok(ArtifactLocation::File(PathBuf::from(path)))
        }
        "s3" => match rest.split_once('/') {
            Some((bucket, key)) if valid_bucket(bucket) && !key.is_empty() => {
                Ok(ArtifactLocation::S3 {
                    bucket: bucket.to_owned(),
                    key: key.to_owned(),
                })
            }
            _ => Err(invalid(
                "s3://BUCKET/KEY (bucket: 3–63 of a-z, 0-9, '.', '-')",
            )),
        },
        "hf" => {
            let expected = "hf://ORG/REPO@REVISION/PATH";
            let (repo, rest) = rest.split_once('@').ok_or_else(|| invalid(expected))?;
            let (revision, path) = rest.split_once('/').ok_or_else(|| invalid(expected))?;
            let repo_ok = repo.split('/').count() == 2
                && repo.split('/').all(|part| {
                    !part.is_empty()
                        && part
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
                });
            if !repo_ok || revision.is_empty() || path.is_empty() {
                return Err(invalid(expected));
            }
            Ok(ArtifactLocation::HuggingFace {
                repo: repo.to_owned(),
                revision: revision.to_owned(),
                path: path.to_owned(),
            })
        }
        "oci" => {
            let expected = "oci://REGISTRY/REPOSITORY[:TAG|@sha256:DIGEST]";
            let (host, repository) = rest.split_once('/').ok_or_else(|| invalid(expected))?;
            if host.is_empty() || repository.is_empty() || rest.contains(char::is_whitespace) {
                return Err(invalid(expected));
            }
            if let Some((_, digest)) = repository.split_once("@sha256:")
                && !is_sha256(digest)
            {
                return Err(invalid("an @sha256: digest of 64 hex digits"));
            }
            Ok(ArtifactLocation::Oci(rest.to_owned()))
        }
        "https" => {
            let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
            if host.is_empty() || rest.contains(char::is_whitespace) {
                return Err(invalid("https://HOST/PATH"));
            }
            Ok(ArtifactLocation::Https(uri.to_owned()))
        }
        "http" => Err(invalid(
            "https:// (artifacts are not fetched over plain http)",
        )),
        _ => Err(invalid("file://, s3://, hf://, oci:// or https://")),
    }
}

fn valid_bucket(bucket: &str) -> bool {
    (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
}

/// Whether `text` is 64 hex digits.
pub fn is_sha256(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

/// SHA-256 (lower-case hex) and size of a file, read in blocks.
pub fn hash_file(path: &Path) -> Result<(String, u64), RegistryError> {
    let unreadable = |error: std::io::Error| RegistryError::Artifact {
        uri: format!("file://{}", path.display()),
        reason: error.to_string(),
    };
    let mut file = File::open(path).map_err(unreadable)?;
    if file.metadata().map_err(unreadable)?.is_dir() {
        return Err(RegistryError::Artifact {
            uri: format!("file://{}", path.display()),
            reason: "is a directory; register its files one by one".to_owned(),
        });
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; BLOCK];
    let mut size = 0u64;
    loop {
        let read = match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(unreadable(error)),
        };
        hasher.update(&buffer[..read]);
        size += read as u64;
    }
    Ok((hex(&hasher.finalize()), size))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An artifact as it will be registered: a `file://` one hashed (and checked against a
/// declared digest), any other recorded as given.
pub fn resolve(uri: &str, declared: Option<&str>) -> Result<Artifact, RegistryError> {
    let declared = declared.map(str::to_ascii_lowercase);
    if let Some(digest) = &declared
        && !is_sha256(digest)
    {
        return Err(RegistryError::InvalidDigest {
            uri: uri.to_owned(),
            digest: digest.clone(),
        });
    }
    match parse_uri(uri)? {
        ArtifactLocation::File(path) => {
            let (sha256, size) = hash_file(&path)?;
            if let Some(expected) = declared
                && expected != sha256
            {
                return Err(RegistryError::DigestMismatch {
                    uri: uri.to_owned(),
                    expected,
                    actual: sha256,
                    size,
                });
            }
            Ok(Artifact {
                uri: uri.to_owned(),
                sha256: Some(sha256),
                size: Some(size),
            })
        }
        _ => Ok(Artifact {
            uri: uri.to_owned(),
            sha256: declared,
            size: None,
        }),
    }
}

/// What re-checking a registered artifact found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Verification {
    /// Same digest and size as registered.
    Intact,
    /// Not a local file: nothing to check here.
    Remote,
    /// Missing or unreadable.
    Unreadable {
        /// Why.
        reason: String,
    },
    /// Shorter than registered.
    Truncated {
        /// Registered size.
        expected_size: u64,
        /// Size now.
        size: u64,
    },
    /// Another digest.
    Changed {
        /// Registered digest.
        expected: String,
        /// Digest now.
        actual: String,
    },
}

/// Re-hashes a registered `file://` artifact and compares it with what was registered.
pub fn verify(artifact: &Artifact) -> Verification {
    let Ok(ArtifactLocation::File(path)) = parse_uri(&artifact.uri) else {
        return Verification::Remote;
    };
    match hash_file(&path) {
        Err(error) => Verification::Unreadable {
            reason: error.to_string(),
        },
        Ok((_, size)) if artifact.size.is_some_and(|expected| size < expected) => {
            Verification::Truncated {
                expected_size: artifact.size.unwrap_or_default(),
                size,
            }
        }
        Ok((sha256, _)) => match &artifact.sha256 {
            Some(expected) if *expected != sha256 => Verification::Changed {
                expected: expected.clone(),
                actual: sha256,
            },
            _ => Verification::Intact,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_of_every_scheme_parse_or_say_what_was_expected() {
        assert_eq!(
            parse_uri("file:///models/w.bin").unwrap(),
            ArtifactLocation::File("/models/w.bin".into())
        );
        assert_eq!(
            parse_uri("s3://my-bucket/llama/w.safetensors").unwrap(),
            ArtifactLocation::S3 {
                bucket: "my-bucket".into(),
                key: "llama/w.safetensors".into()
            }
        );
        assert_eq!(
            parse_uri("hf://meta-llama/Llama-3.1-8B@a1b2c3/model.safetensors").unwrap(),
            ArtifactLocation::HuggingFace {
                repo: "meta-llama/Llama-3.1-8B".into(),
                revision: "a1b2c3".into(),
                path: "model.safetensors".into()
            }
        );
        assert!(matches!(
            parse_uri("oci://ghcr.io/acme/chat:1.2").unwrap(),
            ArtifactLocation::Oci(_)
        ));
        assert!(matches!(
            parse_uri("https://example.com/w.bin").unwrap(),
            ArtifactLocation::Https(_)
        ));
        for (bad, expected) in [
            ("weights.bin", "with a scheme"),
            ("file://relative/w.bin", "file:///ABSOLUTE/PATH"),
            ("s3://B/key", "s3://BUCKET/KEY"),
            ("s3://bucket", "s3://BUCKET/KEY"),
            ("hf://meta-llama/Llama@main", "hf://ORG/REPO@REVISION/PATH"),
            ("hf://llama@main/x", "hf://ORG/REPO@REVISION/PATH"),
            ("oci://ghcr.io/acme@sha256:abc", "64 hex digits"),
            ("http://example.com/w", "https://"),
            ("ftp://example.com/w", "file://, s3://"),
        ] {
            let error = parse_uri(bad).unwrap_err().to_string();
            assert!(
                error.contains(bad) && error.contains(expected),
                "{bad}: {error}"
            );
        }
    }

    #[test]
    fn local_files_are_hashed_and_checked_against_a_declared_digest() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.bin");
        std::fs::write(&path, b"abc").unwrap();
        let uri = format!("file://{}", path.display());
        let abc = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        let artifact = resolve(&uri, None).unwrap();
        assert_eq!(artifact.sha256.as_deref(), Some(abc));
        assert_eq!(artifact.size, Some(3));
        assert_eq!(resolve(&uri, Some(&abc.to_uppercase())).unwrap(), artifact);
        let error = resolve(&uri, Some(&"0".repeat(64)))
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("sha256 mismatch") && error.contains(abc) && error.contains("3 bytes"),
            "{error}"
        );
        assert!(matches!(
            resolve(&uri, Some("abc")),
            Err(RegistryError::InvalidDigest { .. })
        ));
        let missing = format!("file://{}/nope.bin", dir.path().display());
        assert!(
            resolve(&missing, None)
                .unwrap_err()
                .to_string()
                .contains("nope.bin")
        );
        // Remote artifacts are recorded as given.
        let remote = resolve("s3://bucket/w.bin", Some(abc)).unwrap();
        assert_eq!((remote.sha256.as_deref(), remote.size), (Some(abc), None));
        // A registered file that shrank or changed is caught.
        assert_eq!(verify(&artifact), Verification::Intact);
        std::fs::write(&path, b"ab").unwrap();
        assert_eq!(
            verify(&artifact),
            Verification::Truncated {
                expected_size: 3,
                size: 2
            }
        );
        std::fs::write(&path, b"abd").unwrap();
        assert!(matches!(verify(&artifact), Verification::Changed { .. }));
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(verify(&artifact), Verification::Unreadable { .. }));
        assert_eq!(verify(&remote), Verification::Remote);
    }
}
