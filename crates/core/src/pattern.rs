//! Glob patterns for `invalidatePattern`: `*` any run of characters, `?` exactly one character, `\` makes the next
//! character literal, and every other character matches only itself.
//!
//! One parsed [`Pattern`] is rendered three ways so the tiers agree: a matcher for L1 keys, a Postgres `LIKE`
//! pattern (with `%`, `_` and `\` of the keys escaped), and a Redis `SCAN MATCH` pattern. Redis globs match bytes, not
//! characters, so the `MATCH` pattern is a superset that [`Pattern::matches`] then narrows.

use crate::error::{CacheError, ErrorKind, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(char),
    AnyOne,
    AnyRun,
}

/// A parsed glob pattern, matched against keys without their namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    tokens: Vec<Token>,
}

impl Pattern {
    /// Parses a glob of at most `max_len` bytes.
    pub fn parse(glob: &str, max_len: usize) -> Result<Self> {
        let invalid = |why: &str| CacheError::new(ErrorKind::InvalidPattern, format!("invalid pattern: {why}"));
        if glob.is_empty() {
            return Err(invalid("it is empty"));
        }
        if glob.len() > max_len {
            return Err(invalid(&format!("it is longer than {max_len} bytes")));
        }
        let mut tokens = Vec::with_capacity(glob.len());
        let mut chars = glob.chars();
        while let Some(c) = chars.next() {
            tokens.push(match c {
                '*' if tokens.last() == Some(&Token::AnyRun) => continue,
                '*' => Token::AnyRun,
                '?' => Token::AnyOne,
                '\\' => Token::Literal(chars.next().ok_or_else(|| invalid("it ends with a lone `\\`"))?),
                other => Token::Literal(other),
            });
        }
        Ok(Pattern { tokens })
    }

    /// Whether `key` matches the whole pattern.
    pub fn matches(&self, key: &str) -> bool {
        let key: Vec<char> = key.chars().collect();
        let (mut k, mut p) = (0, 0);
        // Where to resume after the last `*`: the token after it, and the key position it has swallowed up to.
        let mut backtrack: Option<(usize, usize)> = None;
        while k < key.len() {
            match self.tokens.get(p) {
                Some(Token::AnyRun) => {
                    backtrack = Some((p + 1, k));
                    p += 1;
                }
                Some(Token::AnyOne) => {
                    p += 1;
                    k += 1;
                }
                Some(Token::Literal(c)) if *c == key[k] => {
                    p += 1;
                    k += 1;
                }
                _ => match backtrack {
                    Some((after_star, swallowed)) => {
                        p = after_star;
                        k = swallowed + 1;
                        backtrack = Some((after_star, swallowed + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|t| *t == Token::AnyRun)
    }

    /// A Postgres `LIKE` pattern (escape character `\`) matching `prefix` followed by this pattern.
    pub fn to_like(&self, prefix: &str) -> String {
        let mut like = String::with_capacity(prefix.len() + self.tokens.len() * 2);
        prefix.chars().for_each(|c| push_like_literal(&mut like, c));
        for token in &self.tokens {
            match token {
                Token::AnyRun => like.push('%'),
                Token::AnyOne => like.push('_'),
                Token::Literal(c) => push_like_literal(&mut like, *c),
            }
        }
        like
    }

    /// A Redis `SCAN MATCH` pattern for `prefix` followed by this pattern. It matches every key this pattern
    /// matches, and possibly more (`?` becomes `*` since Redis matches bytes): filter with [`Pattern::matches`].
    pub fn to_redis_match(&self, prefix: &str) -> String {
        let mut glob = String::with_capacity(prefix.len() + self.tokens.len() * 2);
        prefix.chars().for_each(|c| push_redis_literal(&mut glob, c));
        for token in &self.tokens {
            match token {
                Token::AnyRun | Token::AnyOne if glob.ends_with('*') && !glob.ends_with("\\*") => {}
                Token::AnyRun | Token::AnyOne => glob.push('*'),
                Token::Literal(c) => push_redis_literal(&mut glob, *c),
            }
        }
        glob
    }

    /// A pattern matching every key: what `clear` removes.
    pub fn everything() -> Self {
        Pattern { tokens: vec![Token::AnyRun] }
    }
}

fn push_like_literal(like: &mut String, c: char) {
    if matches!(c, '%' | '_' | '\\') {
        like.push('\\');
    }
    like.push(c);
}

fn push_redis_literal(glob: &mut String, c: char) {
    if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^') {
        glob.push('\\');
    }
    glob.push(c);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(glob: &str) -> Pattern {
        Pattern::parse(glob, 1024).unwrap()
    }

    #[test]
    fn star_and_question_mark() {
        assert!(p("user:*").matches("user:1"));
        assert!(p("user:*").matches("user:"));
        assert!(!p("user:*").matches("users:1"));
        assert!(p("a?c").matches("abc"));
        assert!(p("a?c").matches("aéc"));
        assert!(!p("a?c").matches("ac"));
        assert!(p("*a*b*").matches("xxaxxbxx"));
        assert!(!p("*a*b").matches("xxaxxbxxa"));
        assert!(p("**").matches(""));
        assert!(p("a*b*c").matches("abbbcbc"));
    }

    #[test]
    fn escapes_make_wildcards_literal() {
        assert!(p("a\\*b").matches("a*b"));
        assert!(!p("a\\*b").matches("axb"));
        assert!(p("a\\?").matches("a?"));
        assert!(!p("a\\?").matches("ab"));
        assert!(p("a\\\\b").matches("a\\b"));
    }

    #[test]
    fn like_escapes_sql_wildcards_of_keys() {
        assert_eq!(p("50%_off*").to_like("ns:"), "ns:50\\%\\_off%");
        assert_eq!(p("a?\\*").to_like("my_ns:"), "my\\_ns:a_*");
        assert_eq!(p("back\\\\slash").to_like(""), "back\\\\slash");
        assert_eq!(Pattern::everything().to_like("t:"), "t:%");
    }

    #[test]
    fn redis_match_escapes_its_own_specials_and_widens_question_marks() {
        assert_eq!(p("user:*").to_redis_match("ns:"), "ns:user:*");
        assert_eq!(p("a\\*[b]^").to_redis_match("ns:"), "ns:a\\*\\[b\\]\\^");
        assert_eq!(p("a?b").to_redis_match(""), "a*b");
        assert_eq!(p("a?*b").to_redis_match(""), "a*b");
        assert_eq!(p("a\\*?").to_redis_match(""), "a\\**");
    }

    #[test]
    fn rejects_malformed_patterns() {
        for (bad, max) in [("", 10), ("abc\\", 10), ("abcdef", 5)] {
            assert_eq!(Pattern::parse(bad, max).unwrap_err().kind, ErrorKind::InvalidPattern, "{bad}");
        }
    }
}
