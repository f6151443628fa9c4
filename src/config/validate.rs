//! The validator core: the [`Validator`] (its state; one `impl` block per
//! table lives in the file of that table) and the small value parsers every
//! table uses: durations, sizes, one-of choices, identifiers, secrets,
//! paths, backoff. Errors are a key path and a message; `config::parse`
//! turns the path into file, line and key.
//!
//! A leaf among config's files: it must not import the table files
//! (`daemon`, `source`, `handler`, `pull`, `http`, `store`) nor know what a
//! key of a particular table means.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::locate::KeyPath;
use super::units;
use crate::secret::{Secret, SecretRef};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBackoff {
    pub(super) initial: Option<String>,
    pub(super) max: Option<String>,
}

/// `p` without `.` steps (`./a/./b` → `a/b`).
pub(super) fn clean_path(p: &Path) -> PathBuf {
    let clean: PathBuf = p
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect();
    if clean.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        clean
    }
}

pub(super) type VResult<T> = Result<T, (KeyPath, String)>;

pub(super) struct Validator {
    pub(super) base: PathBuf,
    pub(super) warnings: Vec<String>,
}

pub(super) fn at<T>(path: &KeyPath, r: Result<T, String>) -> VResult<T> {
    r.map_err(|m| (path.clone(), m))
}

pub(super) fn dur(path: &KeyPath, v: Option<&str>, default: Duration) -> VResult<Duration> {
    v.map_or(Ok(default), |s| at(path, units::parse_duration(s)))
}

pub(super) fn size(path: &KeyPath, v: Option<&str>, default: u64) -> VResult<usize> {
    let n = v.map_or(Ok(default), |s| at(path, units::parse_size(s)))?;
    at(
        path,
        usize::try_from(n).map_err(|_| "too large".to_string()),
    )
}

pub(super) fn one_of<T: Copy>(
    path: &KeyPath,
    v: Option<&str>,
    default: T,
    options: &[(&str, T)],
) -> VResult<T> {
    let Some(v) = v else { return Ok(default) };
    options
        .iter()
        .find(|(n, _)| *n == v)
        .map(|(_, t)| *t)
        .ok_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
            (
                path.clone(),
                format!("{v:?} is not one of: {}", names.join(", ")),
            )
        })
}

pub(super) fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
}

impl Validator {
    /// A config path, relative to the config file's directory, without `.` steps.
    pub(super) fn path(&self, p: &str) -> PathBuf {
        clean_path(&self.base.join(p))
    }

    pub(super) fn secret(&mut self, p: &KeyPath, s: &str) -> VResult<(SecretRef, Secret)> {
        let r = SecretRef::parse(s);
        if r.is_literal() {
            self.warnings.push(format!(
                "{p}: the secret is written literally in the config; prefer env:NAME, file:PATH or credential:NAME"
            ));
        }
        let v = at(p, r.resolve(&self.base))?;
        Ok((r, v))
    }
}
