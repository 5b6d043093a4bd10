//! Static token file authentication (`--token-auth-file`, upstream `token/tokenfile`).
//!
//! The file is CSV as Go's `encoding/csv` reads it: `token,user,uid[,"group1,group2"]`, any
//! further columns ignored, fields with commas, quotes (`""`) or newlines in double quotes, blank
//! lines skipped, no comments. A record with fewer than 3 columns or broken quoting is an error
//! naming the line; a record with an empty token is skipped with a warning; for a duplicate token
//! the last record wins (both as upstream). Groups are the 4th column split on `,`.

use std::path::{Path, PathBuf};

use super::{AuthnError, TokenAuthenticator, UserInfo};

/// Errors loading a token file.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    /// The file could not be read.
    #[error("token file {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A record is malformed.
    #[error("token file {} line {line}: {reason}", path.display())]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line where the record starts (or the quoting error is).
        line: usize,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Clone)]
struct TokenEntry {
    token: Vec<u8>,
    user: UserInfo,
}

/// Bearer tokens from a static token file.
#[derive(Clone, Default)]
pub struct StaticTokenAuthenticator {
    entries: Vec<TokenEntry>,
}

impl std::fmt::Debug for StaticTokenAuthenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Tokens stay out of logs.
        f.debug_struct("StaticTokenAuthenticator")
            .field("tokens", &self.entries.len())
            .finish()
    }
}

impl StaticTokenAuthenticator {
    /// Loads a token file.
    pub fn load(path: &Path) -> Result<Self, TokenFileError> {
        let contents = std::fs::read(path).map_err(|source| TokenFileError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = String::from_utf8(contents).map_err(|e| {
            let line = e.as_bytes()[..e.utf8_error().valid_up_to()]
                .iter()
                .filter(|b| **b == b'\n')
                .count()
                + 1;
            TokenFileError::Malformed {
                path: path.to_path_buf(),
                line,
                reason: "not valid UTF-8".into(),
            }
        })?;
        Self::parse(path, &text)
    }

    /// Parses token file contents; `path` is only used in messages.
    pub fn parse(path: &Path, contents: &str) -> Result<Self, TokenFileError> {
        let records = parse_csv(contents).map_err(|(line, reason)| TokenFileError::Malformed {
            path: path.to_path_buf(),
            line,
            reason,
        })?;
        let mut entries: Vec<TokenEntry> = Vec::with_capacity(records.len());
        for (record_num, (line, fields)) in records.into_iter().enumerate() {
            if fields.len() < 3 {
                return Err(TokenFileError::Malformed {
                    path: path.to_path_buf(),
                    line,
                    reason: format!(
                        "must have at least 3 columns (token, user name, user uid), found {}",
                        fields.len()
                    ),
                });
            }
            let mut fields = fields.into_iter();
            let (token, name, uid) = match (fields.next(), fields.next(), fields.next()) {
                (Some(t), Some(n), Some(u)) => (t, n, u),
                _ => continue,
            };
            if token.is_empty() {
                tracing::warn!(path = %path.display(), line, record = record_num + 1, "empty token in token file; record skipped");
                continue;
            }
            let groups = fields
                .next()
                .map(|g| g.split(',').map(str::to_string).collect())
                .unwrap_or_default();
            let entry = TokenEntry {
                token: token.into_bytes(),
                user: UserInfo {
                    name,
                    uid,
                    groups,
                    extra: Default::default(),
                },
            };
            if let Some(existing) = entries.iter_mut().find(|e| e.token == entry.token) {
                tracing::warn!(path = %path.display(), line, record = record_num + 1, "duplicate token in token file; the last record wins");
                *existing = entry;
            } else {
                entries.push(entry);
            }
        }
        Ok(StaticTokenAuthenticator { entries })
    }

    /// An authenticator from `(token, user)` pairs (e.g. tokens generated at start).
    pub fn from_tokens(tokens: impl IntoIterator<Item = (String, UserInfo)>) -> Self {
        let mut auth = StaticTokenAuthenticator::default();
        for (token, user) in tokens {
            let token = token.into_bytes();
            auth.entries.retain(|e| e.token != token);
            auth.entries.push(TokenEntry { token, user });
        }
        auth
    }

    /// Number of distinct tokens.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no tokens.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl TokenAuthenticator for StaticTokenAuthenticator {
    fn authenticate_token(&self, token: &str) -> Result<Option<UserInfo>, AuthnError> {
        // Compare against every entry, each in time independent of where the bytes differ.
        let mut found = None;
        for entry in &self.entries {
            if constant_time_eq(&entry.token, token.as_bytes()) {
                found = Some(&entry.user);
            }
        }
        Ok(found.cloned())
    }
}

/// Equality whose running time depends only on the lengths, not on the contents.
fn constant_time_eq(expected: &[u8], presented: &[u8]) -> bool {
    let mut diff = expected.len() ^ presented.len();
    for (i, e) in expected.iter().enumerate() {
        let p = presented.get(i).copied().unwrap_or(0);
        diff |= usize::from(e ^ p);
    }
    std::hint::black_box(diff) == 0
}

/// A CSV record: the line it starts on and its fields.
type CsvRecord = (usize, Vec<String>);
/// A CSV error: the line and upstream's wording.
type CsvError = (usize, String);

/// Reads CSV as Go's `encoding/csv` with `FieldsPerRecord = -1`: records of fields with the
/// line each starts on. Errors carry the line and upstream's wording.
fn parse_csv(text: &str) -> Result<Vec<CsvRecord>, CsvError> {
    let text = text.replace("\r\n", "\n");
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut records = Vec::new();
    while let Some(&c) = chars.peek() {
        if c == '\n' {
            // Blank lines are skipped.
            chars.next();
            line += 1;
            continue;
        }
        let start = line;
        let mut fields = Vec::new();
        'record: loop {
            let mut field = String::new();
            if chars.peek() == Some(&'"') {
                chars.next();
                loop {
                    match chars.next() {
                        None => {
                            return Err((line, "extraneous or missing \" in quoted-field".into()));
                        }
                        Some('"') => match chars.peek() {
                            Some('"') => {
                                chars.next();
                                field.push('"');
                            }
                            Some(',') => {
                                chars.next();
                                fields.push(field);
                                continue 'record;
                            }
                            Some('\n') => {
                                chars.next();
                                line += 1;
                                fields.push(field);
                                break 'record;
                            }
                            None => {
                                fields.push(field);
                                break 'record;
                            }
                            Some(_) => {
                                return Err((
                                    line,
                                    "extraneous or missing \" in quoted-field".into(),
                                ));
                            }
                        },
                        Some('\n') => {
                            line += 1;
                            field.push('\n');
                        }
                        Some(c) => field.push(c),
                    }
                }
            } else {
                loop {
                    match chars.next() {
                        None => {
                            fields.push(field);
                            break 'record;
                        }
                        Some('\n') => {
                            line += 1;
                            fields.push(field);
                            break 'record;
                        }
                        Some(',') => {
                            fields.push(field);
                            continue 'record;
                        }
                        Some('"') => return Err((line, "bare \" in non-quoted-field".into())),
                        Some(c) => field.push(c),
                    }
                }
            }
        }
        records.push((start, fields));
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(s: &str) -> Result<StaticTokenAuthenticator, TokenFileError> {
        StaticTokenAuthenticator::parse(Path::new("/etc/tokens.csv"), s)
    }

    fn user(auth: &StaticTokenAuthenticator, token: &str) -> Option<UserInfo> {
        auth.authenticate_token(token).unwrap()
    }

    #[test]
    fn csv_reads_like_go() {
        let recs = parse_csv("a,b,c\n\n\"x,y\",\"q\"\"q\",\"multi\nline\"\r\nlast,,\n").unwrap();
        assert_eq!(
            recs,
            vec![
                (1, vec!["a".into(), "b".into(), "c".into()]),
                (3, vec!["x,y".into(), "q\"q".into(), "multi\nline".into()]),
                (5, vec!["last".into(), "".into(), "".into()]),
            ]
        );
        assert_eq!(parse_csv("a,b\"c").unwrap_err().0, 1);
        assert_eq!(parse_csv("ok,1,2\n\"a\"b,c").unwrap_err().0, 2);
        assert!(parse_csv("\"unterminated,x\n").is_err());
        // No trailing newline, a field of spaces is kept.
        assert_eq!(parse_csv(" ").unwrap(), vec![(1, vec![" ".into()])]);
    }

    #[test]
    fn token_file_records() {
        let auth = parse(
            "tok1,alice,1001,\"dev,ops\"\n\
             tok2,bob,1002\n\
             ,nobody,0\n\
             tok3,carol,1003,admins,ignored\n\
             tok2,bobby,2002\n",
        )
        .unwrap();
        assert_eq!(auth.len(), 3);
        let alice = user(&auth, "tok1").unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1001");
        assert_eq!(alice.groups, vec!["dev", "ops"]);
        assert!(alice.extra.is_empty());
        // Duplicate: last wins.
        assert_eq!(user(&auth, "tok2").unwrap().name, "bobby");
        assert!(user(&auth, "tok2").unwrap().groups.is_empty());
        assert_eq!(user(&auth, "tok3").unwrap().groups, vec!["admins"]);
        assert!(user(&auth, "").is_none());
        assert!(user(&auth, "tok").is_none());
        assert!(user(&auth, "tok11").is_none());
    }

    #[test]
    fn malformed_lines_are_named() {
        let err = parse("tok1,alice,1\ntok2,bob\n").unwrap_err().to_string();
        assert!(err.contains("/etc/tokens.csv line 2"), "{err}");
        assert!(err.contains("at least 3 columns"), "{err}");
        let err = parse("a,b,c\n\nt,u,\"g\"x\n").unwrap_err().to_string();
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn load_reports_missing_file() {
        let err = StaticTokenAuthenticator::load(Path::new("/nonexistent/tokens.csv"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/tokens.csv"), "{err}");
    }

    #[test]
    fn constant_time_eq_is_eq() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(constant_time_eq(b"", b""));
    }
}
