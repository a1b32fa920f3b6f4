//! Values: what JSON text a cache accepts, the same on every backend.

use crate::error::{CacheError, ErrorKind, Result};

/// Accepts JSON text of at most `max_bytes` that every backend can store: no `\u0000` escape and no escaped lone
/// surrogate, which `JSON.stringify` writes for such strings and Postgres `jsonb` rejects. Refusing them everywhere
/// keeps a value from working on one backend and failing on another. `json` must be valid JSON, as
/// `JSON.stringify` makes it.
pub fn validate_json(json: &str, max_bytes: usize) -> Result<()> {
    if json.len() > max_bytes {
        return Err(CacheError::new(
            ErrorKind::ValueTooLarge,
            format!(
                "a value's JSON text must be at most {max_bytes} bytes (maxValueBytes); this one has {}",
                json.len()
            ),
        ));
    }
    let bytes = json.as_bytes();
    // Where the low half of a surrogate pair must start, after its high half.
    let mut low_due_at: Option<usize> = None;
    let mut i = 0;
    while let Some(at) = bytes[i..].iter().position(|&b| b == b'\\') {
        let escape = i + at;
        if low_due_at.is_some_and(|due| due != escape) {
            return Err(invalid("a lone surrogate"));
        }
        let code = match bytes.get(escape + 1) {
            Some(b'u') => json.get(escape + 2..escape + 6).and_then(|hex| u16::from_str_radix(hex, 16).ok()),
            _ => None,
        };
        match code {
            Some(0) => return Err(invalid("U+0000 (NUL)")),
            Some(0xD800..=0xDBFF) if low_due_at.is_none() => low_due_at = Some(escape + 6),
            Some(0xDC00..=0xDFFF) if low_due_at == Some(escape) => low_due_at = None,
            Some(0xD800..=0xDFFF) => return Err(invalid("a lone surrogate")),
            _ if low_due_at.is_some() => return Err(invalid("a lone surrogate")),
            _ => {}
        }
        i = escape + if code.is_some() { 6 } else { 2 };
    }
    if low_due_at.is_some() {
        return Err(invalid("a lone surrogate"));
    }
    Ok(())
}

fn invalid(what: &str) -> CacheError {
    CacheError::new(
        ErrorKind::InvalidValue,
        format!("a value must not hold a string with {what}: Postgres cannot store it, so no backend does"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ordinary_json_and_escapes_pass() {
        for ok in [r#"{"a":"b"}"#, r#""\\u0000""#, r#""\n\"\\""#, r#""\ud83d\ude00""#, r#""é😀""#, r#""\u00e9""#] {
            assert!(validate_json(ok, 100).is_ok(), "{ok}");
        }
    }

    #[test]
    fn nul_and_lone_surrogates_are_refused() {
        for bad in [r#""\u0000""#, r#""a\ud800""#, r#""\udc00x""#, r#""\ud800\u0041""#, r#"["\ud83d","\ude00"]"#] {
            assert_eq!(validate_json(bad, 100).unwrap_err().kind, ErrorKind::InvalidValue, "{bad}");
        }
    }

    #[test]
    fn size_is_bounded() {
        assert_eq!(validate_json("[1,2]", 4).unwrap_err().kind, ErrorKind::ValueTooLarge);
    }
}
