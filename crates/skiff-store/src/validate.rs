//! Input checks shared by every backend, so both reject the same inputs with
//! the same errors before anything reaches the disk or the network.

use crate::StoreError;

/// The largest value accepted: 1.5 MiB, etcd's default `--max-request-bytes`
/// (and so the largest object upstream Kubernetes can store).
pub const MAX_VALUE_BYTES: usize = 1536 * 1024;

/// The longest key accepted. Kubernetes keys are
/// `/registry/<group>/<resource>/<namespace>/<name>` with names of at most
/// 253 bytes, far below this.
pub const MAX_KEY_BYTES: usize = 4096;

/// Checks a key: non-empty, absolute (`/...`), at most [`MAX_KEY_BYTES`], no
/// control characters, and not a prefix (no trailing `/`).
pub fn validate_key(key: &str) -> Result<(), StoreError> {
    check_path(key)?;
    if key.len() > 1 && key.ends_with('/') {
        return Err(invalid(key, "a key must not end with '/'"));
    }
    if key == "/" {
        return Err(invalid(key, "a key must name something below '/'"));
    }
    Ok(())
}

/// Checks a prefix for `list`, `count` and `watch`: the rules of
/// [`validate_key`], except that it may end with `/`.
pub fn validate_prefix(prefix: &str) -> Result<(), StoreError> {
    check_path(prefix)
}

/// Checks a value's size against [`MAX_VALUE_BYTES`].
pub fn validate_value(value: &[u8]) -> Result<(), StoreError> {
    if value.len() > MAX_VALUE_BYTES {
        return Err(StoreError::ValueTooLarge {
            size: value.len(),
            limit: MAX_VALUE_BYTES,
        });
    }
    Ok(())
}

fn check_path(key: &str) -> Result<(), StoreError> {
    if key.is_empty() {
        return Err(invalid(key, "a key must not be empty"));
    }
    if !key.starts_with('/') {
        return Err(invalid(key, "a key must start with '/'"));
    }
    if key.len() > MAX_KEY_BYTES {
        return Err(invalid(key, "a key must be at most 4096 bytes"));
    }
    if key.chars().any(char::is_control) {
        return Err(invalid(key, "a key must not contain control characters"));
    }
    Ok(())
}

fn invalid(key: &str, reason: &'static str) -> StoreError {
    // Never echo a huge key back in full.
    let shown: String = key.chars().take(128).collect();
    StoreError::InvalidKey { key: shown, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys() {
        assert!(validate_key("/registry/pods/default/a").is_ok());
        for bad in ["", "registry/x", "/", "/a/", "/a\0b", "/a\nb"] {
            assert!(
                matches!(validate_key(bad), Err(StoreError::InvalidKey { .. })),
                "{bad:?} accepted"
            );
        }
        let long = format!("/{}", "k".repeat(MAX_KEY_BYTES));
        assert!(validate_key(&long).is_err());
    }

    #[test]
    fn prefixes() {
        assert!(validate_prefix("/").is_ok());
        assert!(validate_prefix("/registry/pods/").is_ok());
        assert!(validate_prefix("").is_err());
        assert!(validate_prefix("pods/").is_err());
    }

    #[test]
    fn values() {
        assert!(validate_value(&vec![0; MAX_VALUE_BYTES]).is_ok());
        assert!(matches!(
            validate_value(&vec![0; MAX_VALUE_BYTES + 1]),
            Err(StoreError::ValueTooLarge { size, limit }) if size == MAX_VALUE_BYTES + 1 && limit == MAX_VALUE_BYTES
        ));
    }
}
