//! Secret references and resolved secret values.
//!
//! The config never holds a secret directly if the operator can help it: a
//! value is `env:NAME`, `file:PATH`, `credential:NAME` (systemd's
//! `$CREDENTIALS_DIRECTORY/NAME`) or, with a warning, a literal. Resolved
//! values live in [`Secret`], whose `Debug`/`Display` never print the bytes
//! and whose memory is zeroed on drop.

use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::Zeroizing;

/// Where a secret value comes from, as written in the config.
#[derive(Clone, PartialEq, Eq)]
pub enum SecretRef {
    Env(String),
    File(PathBuf),
    Credential(String),
    Literal(Zeroizing<String>),
}

impl fmt::Debug for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// Shows where the secret comes from, never a literal's value.
impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretRef::Env(n) => write!(f, "env:{n}"),
            SecretRef::File(p) => write!(f, "file:{}", p.display()),
            SecretRef::Credential(n) => write!(f, "credential:{n}"),
            SecretRef::Literal(_) => f.write_str("<literal>"),
        }
    }
}

impl SecretRef {
    /// Parses a config string. Anything without a known prefix is a literal.
    pub fn parse(s: &str) -> SecretRef {
        if let Some(n) = s.strip_prefix("env:") {
            SecretRef::Env(n.to_string())
        } else if let Some(p) = s.strip_prefix("file:") {
            SecretRef::File(PathBuf::from(p))
        } else if let Some(n) = s.strip_prefix("credential:") {
            SecretRef::Credential(n.to_string())
        } else {
            SecretRef::Literal(Zeroizing::new(s.to_string()))
        }
    }

    pub fn is_literal(&self) -> bool {
        matches!(self, SecretRef::Literal(_))
    }

    /// Reads the value. Relative `file:` paths are taken from `base_dir`
    /// (the config file's directory). One trailing newline of a file is
    /// dropped, as editors and `echo` add one.
    pub fn resolve(&self, base_dir: &Path) -> Result<Secret, String> {
        let bytes = match self {
            SecretRef::Env(name) => std::env::var_os(name)
                .ok_or_else(|| format!("environment variable {name} is not set"))?
                .into_encoded_bytes(),
            SecretRef::File(path) => read_secret_file(&base_dir.join(path))?,
            SecretRef::Credential(name) => {
                let dir = std::env::var_os("CREDENTIALS_DIRECTORY").ok_or_else(|| {
                    format!(
                        "credential:{name} needs $CREDENTIALS_DIRECTORY (set by systemd's LoadCredential=)"
                    )
                })?;
                read_secret_file(&Path::new(&dir).join(name))?
            }
            SecretRef::Literal(v) => v.as_bytes().to_vec(),
        };
        if bytes.is_empty() {
            return Err(format!("{self} is empty"));
        }
        Ok(Secret(Zeroizing::new(bytes)))
    }
}

/// A secret file larger than this is a mistake (a wrong path, a device).
const MAX_SECRET_FILE: u64 = 64 << 10;

fn read_secret_file(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        return Err(format!(
            "{} is larger than {} KiB; that is not a secret (wrong path?)",
            path.display(),
            MAX_SECRET_FILE >> 10
        ));
    }
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Ok(bytes)
}

/// A resolved secret value. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Zeroizing<Vec<u8>>);

impl Secret {
    pub fn new(bytes: Vec<u8>) -> Secret {
        Secret(Zeroizing::new(bytes))
    }
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
    /// The value as text, for headers and environment variables.
    pub fn expose_str(&self) -> Result<&str, String> {
        std::str::from_utf8(&self.0).map_err(|_| "secret is not valid UTF-8".to_string())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(SecretRef::parse("env:X"), SecretRef::Env("X".into()));
        assert_eq!(
            SecretRef::parse("file:/a/b"),
            SecretRef::File(PathBuf::from("/a/b"))
        );
        assert_eq!(
            SecretRef::parse("credential:c"),
            SecretRef::Credential("c".into())
        );
        assert!(SecretRef::parse("hunter2").is_literal());
    }

    #[test]
    fn never_prints_values() {
        let r = SecretRef::parse("hunter2");
        assert!(!format!("{r} {r:?}").contains("hunter2"));
        let s = r.resolve(Path::new(".")).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), b"hunter2");
    }

    #[test]
    fn file_drops_one_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s"), "abc\n\n").unwrap();
        let s = SecretRef::parse("file:s").resolve(dir.path()).unwrap();
        assert_eq!(s.expose(), b"abc\n");
    }

    #[test]
    fn endless_or_huge_files_are_refused_not_read() {
        let e = SecretRef::parse("file:/dev/zero")
            .resolve(Path::new("."))
            .unwrap_err();
        assert!(e.contains("/dev/zero") && e.contains("64 KiB"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("exact"), vec![b'k'; 64 << 10]).unwrap();
        let ok = SecretRef::parse("file:exact").resolve(dir.path()).unwrap();
        assert_eq!(ok.expose().len(), 64 << 10);
    }

    #[test]
    fn missing_and_empty_are_errors() {
        let e = SecretRef::parse("env:HOOKD_TEST_SURELY_UNSET")
            .resolve(Path::new("."))
            .unwrap_err();
        assert!(e.contains("HOOKD_TEST_SURELY_UNSET"), "{e}");
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("e"), "").unwrap();
        assert!(SecretRef::parse("file:e").resolve(dir.path()).is_err());
    }
}
