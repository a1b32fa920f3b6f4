//! Tags: names an entry carries so that `invalidateTags` can invalidate every entry of a meaning at once.
//!
//! Invalidation is lazy, by time: a tag's record holds when it was last invalidated (hard, and soft), by the L2's
//! clock, and an entry carrying the tag that was written at or before that time is gone (hard) or stale (soft). So
//! invalidating a tag costs one record whatever the number of entries that carry it. Every instance keeps the times
//! it knows of in a [`TagTimes`] table, filled from the records an L2 read returns with a tagged entry and from the
//! bus's messages, so that a tagged L1 hit is judged without a round trip.
//!
//! Times compare on one clock only, the L2's, in its own precision: Postgres keeps milliseconds (rounded, like the
//! entries' `updatedAt`), Redis microseconds. A write and an invalidation in the same tick count as the write first,
//! so a tie is a miss, never a stale hit.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use crate::error::{CacheError, ErrorKind, Result};

/// The longest tag, in UTF-8 bytes.
pub const MAX_TAG_BYTES: usize = 256;
/// The most tags an entry, or one `invalidateTags`, may carry: Next.js's own limit (`NEXT_CACHE_TAG_MAX_ITEMS`), so
/// that every entry Next.js makes fits.
pub const MAX_TAGS: usize = 128;

/// An entry's tags: checked, without duplicates, in their first order.
pub type Tags = Arc<[Box<str>]>;

/// Checks tags as given to `set`, `getOrSet` or `invalidateTags`: 1 to 256 UTF-8 bytes each, no NUL, at most 128;
/// `ERR_CACHE_INVALID_TAG` otherwise. Duplicates are dropped.
pub fn checked_tags(tags: Vec<String>) -> Result<Tags> {
    if tags.len() > MAX_TAGS {
        return Err(invalid(format!("at most {MAX_TAGS} tags are allowed; got {}", tags.len())));
    }
    let mut unique: Vec<Box<str>> = Vec::with_capacity(tags.len());
    for tag in tags {
        if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
            return Err(invalid(format!("a tag must be 1 to {MAX_TAG_BYTES} UTF-8 bytes; got {}", tag.len())));
        }
        if tag.contains('\0') {
            return Err(invalid("a tag must not contain U+0000 (NUL)".to_owned()));
        }
        if !unique.iter().any(|seen| **seen == *tag) {
            unique.push(tag.into_boxed_str());
        }
    }
    Ok(unique.into())
}

fn invalid(message: String) -> CacheError {
    CacheError::new(ErrorKind::InvalidTag, message)
}

/// When a tag was last invalidated, by the L2's clock in microseconds; 0 for never.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TagTime {
    /// The latest hard invalidation: entries written at or before it are gone.
    pub hard_us: u64,
    /// The latest soft invalidation: entries written at or before it are stale.
    pub soft_us: u64,
}

impl TagTime {
    /// The later of two records of one tag: times only move forward.
    fn merge(&mut self, other: TagTime) {
        self.hard_us = self.hard_us.max(other.hard_us);
        self.soft_us = self.soft_us.max(other.soft_us);
    }

    /// The latest invalidation of either kind.
    pub fn latest_us(self) -> u64 {
        self.hard_us.max(self.soft_us)
    }
}

/// What the tags of an entry say about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// No tag of it was invalidated after it was written.
    Valid,
    /// A tag was soft-invalidated after it was written: stale, whatever its TTL says.
    Stale,
    /// A tag was invalidated after it was written: gone.
    Gone,
}

/// The invalidation times this instance knows of, by tag, for one namespace.
#[derive(Default)]
pub struct TagTimes(RwLock<HashMap<Box<str>, TagTime>>);

impl TagTimes {
    /// Takes in what an L2 read or a bus message said of a tag.
    pub fn learn(&self, tag: &str, time: TagTime) {
        if time == TagTime::default() {
            return;
        }
        let mut table = self.0.write().unwrap_or_else(|e| e.into_inner());
        match table.get_mut(tag) {
            Some(known) => known.merge(time),
            None => {
                table.insert(tag.into(), time);
            }
        }
    }

    /// What is known of a tag.
    pub fn of(&self, tag: &str) -> TagTime {
        self.0.read().unwrap_or_else(|e| e.into_inner()).get(tag).copied().unwrap_or_default()
    }

    /// Judges an entry carrying `tags`, written at `written_us` by the L2's clock.
    pub fn verdict(&self, tags: &[Box<str>], written_us: u64) -> Verdict {
        if tags.is_empty() {
            return Verdict::Valid;
        }
        let table = self.0.read().unwrap_or_else(|e| e.into_inner());
        let mut verdict = Verdict::Valid;
        for tag in tags {
            let Some(time) = table.get(tag) else { continue };
            if time.hard_us >= written_us {
                return Verdict::Gone;
            }
            if time.soft_us >= written_us {
                verdict = Verdict::Stale;
            }
        }
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Tags {
        checked_tags(list.iter().map(|t| t.to_string()).collect()).unwrap()
    }

    #[test]
    fn bad_tags_are_refused_and_duplicates_dropped() {
        assert_eq!(&*tags(&["a", "b", "a"]), &["a".into(), "b".into()] as &[Box<str>]);
        for bad in [vec![String::new()], vec!["x".repeat(257)], vec!["a\0".into()], vec!["t".into(); MAX_TAGS + 1]] {
            assert_eq!(checked_tags(bad).unwrap_err().kind, ErrorKind::InvalidTag);
        }
        assert!(checked_tags(vec!["é".repeat(128)]).is_ok(), "256 bytes");
    }

    #[test]
    fn entries_written_at_or_before_an_invalidation_are_gone_or_stale() {
        let times = TagTimes::default();
        let entry = tags(&["tenant:1", "services"]);
        assert_eq!(times.verdict(&entry, 100), Verdict::Valid);
        times.learn("services", TagTime { hard_us: 0, soft_us: 100 });
        assert_eq!(times.verdict(&entry, 100), Verdict::Stale, "a tie counts as written before");
        assert_eq!(times.verdict(&entry, 101), Verdict::Valid, "written after: live");
        times.learn("tenant:1", TagTime { hard_us: 150, soft_us: 0 });
        assert_eq!(times.verdict(&entry, 120), Verdict::Gone);
        times.learn("tenant:1", TagTime { hard_us: 90, soft_us: 0 });
        assert_eq!(times.of("tenant:1").hard_us, 150, "times never move back");
    }
}
