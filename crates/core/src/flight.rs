//! Single-flight within a process: concurrent loads of one key, from any thread, share the first one's result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;

/// The JSON text a loader produced, or its error message.
pub type FlightResult = Result<Arc<str>, String>;

/// One load in progress.
pub struct Flight {
    result: watch::Sender<Option<FlightResult>>,
}

/// How a caller joined the load of a key.
pub enum Joined {
    /// The caller runs the load and must [`Flights::finish`] it.
    Leader(Arc<Flight>),
    /// Another caller is loading; wait with [`wait`].
    Follower(watch::Receiver<Option<FlightResult>>),
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
            return Joined::Follower(flight.result.subscribe());
        }
        let flight = Arc::new(Flight { result: watch::Sender::new(None) });
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

    /// Whether no load is in progress.
    pub fn is_empty(&self) -> bool {
        self.in_progress.lock().unwrap_or_else(|e| e.into_inner()).is_empty()
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
                Joined::Follower(rx) => tokio::spawn(wait(rx, Duration::from_secs(5))),
                Joined::Leader(_) => panic!("only one leader"),
            })
            .collect();
        flights.finish("k", &flight, Ok(Arc::from("42")));
        for follower in followers {
            assert_eq!(follower.await.unwrap(), Some(Ok(Arc::from("42"))));
        }
        assert!(flights.is_empty());
        assert!(matches!(flights.join("k"), Joined::Leader(_)));
    }

    #[tokio::test]
    async fn errors_reach_followers_and_waits_are_bounded() {
        let flights = Flights::default();
        let Joined::Leader(flight) = flights.join("k") else { panic!() };
        let Joined::Follower(rx) = flights.join("k") else { panic!() };
        assert_eq!(wait(rx.clone(), Duration::from_millis(20)).await, None);
        flights.finish("k", &flight, Err("boom".into()));
        assert_eq!(wait(rx, Duration::from_millis(20)).await, Some(Err("boom".into())));
    }
}
