//! Keys and namespaces: what is accepted, and how a key is stored in the L2.
//!
//! A namespace may not contain `:`, so `namespace:key` is unambiguous: no key of one namespace can ever be stored
//! under the same L2 key as a key of another, which is what keeps one tenant's data from showing under another's key.

use crate::error::{CacheError, ErrorKind, Result};

/// The longest namespace, in bytes.
pub const MAX_NAMESPACE_LEN: usize = 64;
/// The default namespace.
pub const DEFAULT_NAMESPACE: &str = "default";

/// Accepts 1 to 64 characters from `A-Z a-z 0-9 _ - .`.
pub fn validate_namespace(namespace: &str) -> Result<()> {
    let well_formed = !namespace.is_empty()
        && namespace.len() <= MAX_NAMESPACE_LEN
        && namespace.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if well_formed {
        Ok(())
    } else {
        Err(CacheError::invalid_option("namespace", "1 to 64 characters from A-Z a-z 0-9 _ - . (no ':')"))
    }
}

/// Accepts a non-empty key of at most `max_len` UTF-8 bytes without NUL (which no Postgres `text` can hold, so the
/// same key works on every backend).
pub fn validate_key(key: &str, max_len: usize) -> Result<()> {
    if key.is_empty() {
        return Err(CacheError::new(ErrorKind::InvalidKey, "a key must be a non-empty string"));
    }
    if key.contains('\0') {
        return Err(CacheError::new(ErrorKind::InvalidKey, "a key must not contain U+0000 (NUL)"));
    }
    if key.len() > max_len {
        return Err(CacheError::new(
            ErrorKind::InvalidKey,
            format!("a key must be at most {max_len} UTF-8 bytes; this one has {}", key.len()),
        ));
    }
    Ok(())
}

/// The namespace of an L2 key (`namespace:key`: a namespace holds no `:`).
pub fn namespace_of(full: &str) -> &str {
    full.split_once(':').map_or("", |(namespace, _)| namespace)
}

/// The L2 key of `key` in `namespace`.
pub fn namespaced(namespace: &str, key: &str) -> String {
    let mut full = String::with_capacity(namespace.len() + 1 + key.len());
    full.push_str(namespace);
    full.push(':');
    full.push_str(key);
    full
}

/// The key part of an L2 key of `namespace`, or `None` when it belongs to another namespace.
pub fn strip_namespace<'a>(namespace: &str, full: &'a str) -> Option<&'a str> {
    full.strip_prefix(namespace)?.strip_prefix(':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_keys_up_to_the_byte_limit() {
        assert!(validate_key("a", 1).is_ok());
        assert!(validate_key("é", 2).is_ok());
        assert_eq!(validate_key("é", 1).unwrap_err().kind, ErrorKind::InvalidKey);
        assert_eq!(validate_key("", 10).unwrap_err().kind, ErrorKind::InvalidKey);
        assert!(validate_key("tenant:%_*\\?", 255).is_ok());
    }

    #[test]
    fn namespaces_cannot_contain_a_separator() {
        assert!(validate_namespace("tenant").is_ok());
        assert!(validate_namespace("app.v2-tenant_x").is_ok());
        for bad in ["", "a:b", "a*", "a b", &"x".repeat(65)] {
            assert_eq!(validate_namespace(bad).unwrap_err().kind, ErrorKind::InvalidOption, "{bad}");
        }
    }

    #[test]
    fn namespaced_keys_round_trip_and_never_collide() {
        let full = namespaced("tenant", "a:b");
        assert_eq!(full, "tenant:a:b");
        assert_eq!(strip_namespace("tenant", &full), Some("a:b"));
        assert_eq!(strip_namespace("tenan", &full), None);
    }
}
