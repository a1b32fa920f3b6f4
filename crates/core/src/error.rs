//! Errors of the cache, each with a stable code that the bindings expose as `err.code`.

use std::fmt;

/// What went wrong, in terms a caller can act on. The binding maps each kind to a JavaScript error class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// A configuration option is malformed (the message names it).
    InvalidOption,
    /// A key is empty, too long or not valid text.
    InvalidKey,
    /// A value cannot be stored (not JSON).
    InvalidValue,
    /// A value's JSON text is over the configured limit.
    ValueTooLarge,
    /// A per-call TTL is out of range.
    InvalidTtl,
    /// An invalidation pattern is malformed.
    InvalidPattern,
    /// A tag is empty, too long or not valid text, or there are too many.
    InvalidTag,
    /// `getOrSet` was not given a function (raised by `index.js`, which takes the code from here).
    InvalidLoader,
    /// The cache was used after it was closed.
    Closed,
    /// The L2 could not be reached.
    L2Unavailable,
    /// The L2 did not answer in time.
    L2Timeout,
    /// The L2 answered with an error.
    L2,
    /// The invalidation bus lost its connection.
    Bus,
    /// The load a `getOrSet` waited for (run by another caller, in any thread) failed.
    LoaderFailed,
    /// A `getOrSet` with no stale value to fall back on waited `hardTimeout` for its loader (raised by `index.js`,
    /// which takes the code from here); the load goes on, and its value is stored when it comes.
    LoaderTimeout,
}

impl ErrorKind {
    /// Every kind, for the binding to hand their codes to JavaScript.
    pub const ALL: [ErrorKind; 15] = [
        ErrorKind::InvalidOption,
        ErrorKind::InvalidKey,
        ErrorKind::InvalidValue,
        ErrorKind::ValueTooLarge,
        ErrorKind::InvalidTtl,
        ErrorKind::InvalidPattern,
        ErrorKind::InvalidTag,
        ErrorKind::InvalidLoader,
        ErrorKind::Closed,
        ErrorKind::L2Unavailable,
        ErrorKind::L2Timeout,
        ErrorKind::L2,
        ErrorKind::Bus,
        ErrorKind::LoaderFailed,
        ErrorKind::LoaderTimeout,
    ];

    /// The stable code of this kind, e.g. `ERR_CACHE_INVALID_KEY`.
    pub fn code(self) -> &'static str {
        match self {
            ErrorKind::InvalidOption => "ERR_CACHE_INVALID_OPTION",
            ErrorKind::InvalidKey => "ERR_CACHE_INVALID_KEY",
            ErrorKind::InvalidValue => "ERR_CACHE_INVALID_VALUE",
            ErrorKind::ValueTooLarge => "ERR_CACHE_VALUE_TOO_LARGE",
            ErrorKind::InvalidTtl => "ERR_CACHE_INVALID_TTL",
            ErrorKind::InvalidPattern => "ERR_CACHE_INVALID_PATTERN",
            ErrorKind::InvalidTag => "ERR_CACHE_INVALID_TAG",
            ErrorKind::InvalidLoader => "ERR_CACHE_INVALID_LOADER",
            ErrorKind::Closed => "ERR_CACHE_CLOSED",
            ErrorKind::L2Unavailable => "ERR_CACHE_L2_UNAVAILABLE",
            ErrorKind::L2Timeout => "ERR_CACHE_L2_TIMEOUT",
            ErrorKind::L2 => "ERR_CACHE_L2",
            ErrorKind::Bus => "ERR_CACHE_BUS",
            ErrorKind::LoaderFailed => "ERR_CACHE_LOADER_FAILED",
            ErrorKind::LoaderTimeout => "ERR_CACHE_LOADER_TIMEOUT",
        }
    }

    /// Whether the error comes from the caller's input (raised) rather than from the L2 or the bus (absorbed).
    pub fn is_input_error(self) -> bool {
        matches!(
            self,
            ErrorKind::InvalidOption
                | ErrorKind::InvalidKey
                | ErrorKind::InvalidValue
                | ErrorKind::ValueTooLarge
                | ErrorKind::InvalidTtl
                | ErrorKind::InvalidPattern
                | ErrorKind::InvalidTag
                | ErrorKind::InvalidLoader
        )
    }
}

/// An error with a kind (and so a stable code) and a message that never holds credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheError {
    /// Decides the code and the JavaScript class.
    pub kind: ErrorKind,
    /// For people, not for matching (match on the code); never holds a password (see [`crate::l2::Redactor`]).
    pub message: String,
    /// An L2 call the open circuit breaker skipped: the breaker reported the outage once, so this is not reported.
    skipped: bool,
}

impl CacheError {
    /// An error of `kind`; `message` must already be free of credentials.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CacheError { kind, message: message.into(), skipped: false }
    }

    /// An L2 call skipped because the circuit breaker is open.
    pub(crate) fn skipped() -> Self {
        CacheError {
            skipped: true,
            ..CacheError::new(ErrorKind::L2Unavailable, "the L2 is down (circuit breaker open)")
        }
    }

    /// Whether this is [`Self::skipped`].
    pub(crate) fn is_skipped(&self) -> bool {
        self.skipped
    }

    /// Whether the L2 could not be reached or did not answer in time: what trips the circuit breaker (an error the
    /// server answered with does not).
    pub(crate) fn is_outage(&self) -> bool {
        matches!(self.kind, ErrorKind::L2Unavailable | ErrorKind::L2Timeout)
    }

    /// `ERR_CACHE_INVALID_OPTION`: "option `name` must be `expected`". It never quotes the value, which may be a
    /// URL with a password.
    pub fn invalid_option(name: &str, expected: &str) -> Self {
        CacheError::new(ErrorKind::InvalidOption, format!("option `{name}` must be {expected}"))
    }

    /// `ERR_CACHE_L2_TIMEOUT`: no answer within `l2Timeout`, given in ms. Every bound on an L2 round trip says it so.
    pub(crate) fn l2_timeout(timeout_ms: u64) -> Self {
        CacheError::new(ErrorKind::L2Timeout, format!("the L2 did not answer within {timeout_ms} ms (l2Timeout)"))
    }

    /// The stable code of [`Self::kind`], e.g. `ERR_CACHE_L2_TIMEOUT`.
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

impl fmt::Display for CacheError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.kind.code())
    }
}

impl std::error::Error for CacheError {}

/// A result whose error is a [`CacheError`] unless said otherwise.
pub type Result<T, E = CacheError> = std::result::Result<T, E>;
