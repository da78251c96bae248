//! The stage cache: a stage with `cache: {inputs, paths}` that succeeded is saved under a key,
//! and a later run with the same key restores its files and outputs instead of running it.
//!
//! The key is the SHA-256 of the stage as compiled (its command or built-in and options, env,
//! needs, timeout, retries…), the path and SHA-256 of every file its input globs match (sorted;
//! the files it produces itself, under its `paths`, left out),
//! the outputs of the stages it needs, and the Sluice version. An entry is written to a
//! temporary directory and renamed into place, so a crash leaves no half entry behind.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::spec::{Cache, Stage};

/// A saved run of a stage.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// Its key.
    pub key: String,
    /// The outputs it had.
    pub outputs: BTreeMap<String, String>,
}

/// Why a cache key or entry could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// An input glob matched a file that could not be read.
    #[error("cannot read the cache input {path}: {source}")]
    Input {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The cache directory could not be written or read.
    #[error("cache entry {key}: {source}")]
    Entry {
        /// The entry.
        key: String,
        /// Why.
        source: io::Error,
    },
}

/// The files an input glob matches under `workdir`, sorted, as paths relative to it — but
/// for those the stage itself produces (under its `paths`), which would change its key.
fn inputs(cache: &Cache, workdir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = Vec::new();
    for pattern in &cache.inputs {
        let full = workdir.join(pattern);
        let Ok(paths) = glob::glob(&full.to_string_lossy()) else {
            continue;
        };
        for path in paths.flatten() {
            if path.is_file() {
                files.push(
                    path.strip_prefix(workdir)
                        .map_or(path.clone(), Path::to_path_buf),
                );
            }
        }
    }
    files.retain(|file| {
        !cache
            .paths
            .iter()
            .any(|produced| file.starts_with(produced))
    });
    files.sort();
    files.dedup();
    files
}

/// The key of `stage` run in `workdir` after stages with `upstream` outputs.
pub fn key(
    name: &str,
    stage: &Stage,
    cache: &Cache,
    workdir: &Path,
    upstream: &BTreeMap<String, BTreeMap<String, String>>,
) -> Result<String, CacheError> {
    let mut hash = Sha256::new();
    hash.update(format!("sluice {}\n", env!("CARGO_PKG_VERSION")));
    hash.update(format!("stage {name}\n{stage:?}\n"));
    for file in inputs(cache, workdir) {
        let bytes = std::fs::read(workdir.join(&file)).map_err(|source| CacheError::Input {
            path: file.clone(),
            source,
        })?;
        hash.update(format!("input {}\n", file.display()));
        hash.update(Sha256::digest(&bytes));
    }
    for (need, outputs) in upstream {
        for (key, value) in outputs {
            hash.update(format!("upstream {need}.{key}={value:?}\n"));
        }
    }
    Ok(hex(&hash.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A directory of cache entries.
#[derive(Debug, Clone)]
pub struct CacheDir {
    dir: PathBuf,
    reuse: bool,
}

impl CacheDir {
    /// Entries under `dir` (created when the first is saved).
    pub fn new(dir: PathBuf) -> Self {
        CacheDir { dir, reuse: true }
    }

    /// The same directory, written to but never restored from (`--no-cache`).
    pub fn write_only(self) -> Self {
        CacheDir {
            reuse: false,
            ..self
        }
    }

    /// Restores entry `key` into `workdir` when there is one: its saved paths are copied
    /// back and its outputs returned.
    pub fn restore(&self, key: &str, workdir: &Path) -> Result<Option<Entry>, CacheError> {
        if !self.reuse {
            return Ok(None);
        }
        let entry = self.dir.join(key);
        let error = |source| CacheError::Entry {
            key: key.to_owned(),
            source,
        };
        let outputs = match std::fs::read_to_string(entry.join("outputs.json")) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(error(e)),
        };
        let files = entry.join("files");
        if files.is_dir() {
            copy_tree(&files, workdir).map_err(error)?;
        }
        Ok(Some(Entry {
            key: key.to_owned(),
            outputs,
        }))
    }

    /// Saves a successful run: `cache.paths` (relative to `workdir`; a missing one is an
    /// error) and `outputs`.
    pub fn save(
        &self,
        key: &str,
        cache: &Cache,
        workdir: &Path,
        outputs: &BTreeMap<String, String>,
    ) -> Result<(), CacheError> {
        let error = |source| CacheError::Entry {
            key: key.to_owned(),
            source,
        };
        let staging = self.dir.join(format!(".{key}.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        let files = staging.join("files");
        std::fs::create_dir_all(&files).map_err(error)?;
        for path in &cache.paths {
            let from = workdir.join(path);
            let to = files.join(path);
            if let Some(parent) = to.parent() {
                std::fs::create_dir_all(parent).map_err(error)?;
            }
            if from.is_dir() {
                std::fs::create_dir_all(&to).map_err(error)?;
                copy_tree(&from, &to).map_err(error)?;
            } else {
                std::fs::copy(&from, &to).map_err(|e| {
                    error(io::Error::new(e.kind(), format!("{}: {e}", from.display())))
                })?;
            }
        }
        let json = serde_json::to_vec_pretty(outputs)
            .map_err(|e| error(io::Error::new(io::ErrorKind::InvalidData, e)))?;
        std::fs::write(staging.join("outputs.json"), json).map_err(error)?;
        let target = self.dir.join(key);
        let _ = std::fs::remove_dir_all(&target);
        std::fs::rename(&staging, &target).map_err(error)
    }
}

/// Copies the files under `from` into `to`, keeping their relative paths.
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            std::fs::create_dir_all(&target)?;
            copy_tree(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}
