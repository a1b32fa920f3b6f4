//! Single-flight within a process: concurrent loads of one key, from any thread, share the first one's result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::sync::watch;

/// How a load ended, for the callers that waited on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FlightResult {
    /// The JSON text the loader produced.
    Loaded(Arc<str>),
    /// The loader's error message.
    Failed(String),
    /// The load failed or was slow, and its caller served this stale value (within its grace) instead.
    Stale(Arc<str>),
    /// The leader went away without an answer (its thread ended, its cache closed): a waiter takes over.
    Abandoned,
}

/// One load in progress.
pub struct Flight {
    result: watch::Sender<Option<FlightResult>>,
    /// The stale value the leader found, for followers to serve when they stop waiting at their soft timeout.
    stale: OnceLock<Arc<str>>,
}

impl Flight {
    /// The leader's result, to [`wait`] for.
    pub fn follow(&self) -> watch::Receiver<Option<FlightResult>> {
        self.result.subscribe()
    }

    /// Shares the stale value the leader found with its followers.
    pub fn offer_stale(&self, json: &str) {
        let _ = self.stale.set(Arc::from(json));
    }

    /// The stale value the leader found, if any yet.
    pub fn stale(&self) -> Option<Arc<str>> {
        self.stale.get().cloned()
    }
}

/// How a caller joined the load of a key.
pub enum Joined {
    /// The caller runs the load and must [`Flights::finish`] it.
    Leader(Arc<Flight>),
    /// Another caller is loading; wait for it with [`wait`] on [`Flight::follow`].
    Follower(Arc<Flight>),
}

/// The loads in progress, by key.
#[derive(Default)]
pub struct Flights {
    in_progress: Mutex<HashMap<String, Arc<Flight>>>,
}

impl Flights {
    /// Joins the load of `key`: the first caller leads, and later ones follow until the leader calls
    /// [`Flights::finish`].
    pub fn join(&self, key: &str) -> Joined {
        let mut in_progress = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(flight) = in_progress.get(key) {
            return Joined::Follower(flight.clone());
        }
        let flight = Arc::new(Flight { result: watch::Sender::new(None), stale: OnceLock::new() });
        in_progress.insert(key.to_owned(), flight.clone());
        Joined::Leader(flight)
    }

    /// Hands the result to every follower and forgets the load, so the next caller starts afresh.
    pub fn finish(&self, key: &str, flight: &Arc<Flight>, result: FlightResult) {
        flight.result.send_replace(Some(result));
        let mut in_progress = self.in_progress.lock().unwrap_or_else(|e| e.into_inner());
        if in_progress.get(key).is_some_and(|current| Arc::ptr_eq(current, flight)) {
            in_progress.remove(key);
        }
    }

    /// Lets the next caller of `key` start a new load instead of joining the one in progress: the key changed, so
    /// that load may bring back what was there before. Those already waiting still get its result.
    pub fn detach(&self, key: &str) {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }

    /// [`Flights::detach`] for every key.
    pub fn detach_all(&self) {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }
}

/// The leader's result, or `None` when it did not come within `timeout` (or the leader vanished).
pub async fn wait(mut follower: watch::Receiver<Option<FlightResult>>, timeout: Duration) -> Option<FlightResult> {
    match tokio::time::timeout(timeout, follower.wait_for(Option::is_some)).await {
        Ok(Ok(result)) => result.clone(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_result() {
        let flights = Arc::new(Flights::default());
        let Joined::Leader(flight) = flights.join("k") else { panic!("first caller leads") };
        let followers: Vec<_> = (0..10)
            .map(|_| match flights.join("k") {
                Joined::Follower(flight) => tokio::spawn(wait(flight.follow(), Duration::from_secs(5))),
                Joined::Leader(_) => panic!("only one leader"),
            })
            .collect();
        flights.finish("k", &flight, FlightResult::Loaded(Arc::from("42")));
        for follower in followers {
            assert_eq!(follower.await.unwrap(), Some(FlightResult::Loaded(Arc::from("42"))));
        }
        assert!(matches!(flights.join("k"), Joined::Leader(_)), "the finished load is forgotten");
    }

    #[tokio::test]
    async fn errors_reach_followers_and_waits_are_bounded() {
        let flights = Flights::default();
        let Joined::Leader(flight) = flights.join("k") else { panic!() };
        let Joined::Follower(follower) = flights.join("k") else { panic!() };
        let rx = follower.follow();
        assert_eq!(wait(rx.clone(), Duration::from_millis(20)).await, None);
        flights.finish("k", &flight, FlightResult::Failed("boom".into()));
        assert_eq!(wait(rx, Duration::from_millis(20)).await, Some(FlightResult::Failed("boom".into())));
    }

    #[tokio::test]
    async fn a_detached_load_keeps_its_followers_but_takes_no_new_ones() {
        let flights = Flights::default();
        let Joined::Leader(old) = flights.join("k") else { panic!() };
        let Joined::Follower(follower) = flights.join("k") else { panic!() };
        let rx = follower.follow();
        flights.detach("k");
        let Joined::Leader(new) = flights.join("k") else { panic!("a changed key starts a new load") };
        flights.finish("k", &old, FlightResult::Loaded(Arc::from("old")));
        assert_eq!(wait(rx, Duration::from_millis(20)).await, Some(FlightResult::Loaded(Arc::from("old"))));
        assert!(matches!(flights.join("k"), Joined::Follower(_)), "the old load's end leaves the new one in place");
        flights.finish("k", &new, FlightResult::Abandoned);
        assert!(matches!(flights.join("k"), Joined::Leader(_)), "the abandoned load is forgotten");
    }
}
