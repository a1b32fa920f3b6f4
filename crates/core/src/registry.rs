//! The process-wide registry: every `Cache` of a process with the same configuration shares one store (one L1, one
//! pool), whatever thread created it, and every store on one L2 shares one bus subscription.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex, Weak};

use crate::bus::Bus;
use crate::config::StoreConfig;
use crate::error::Result;
use crate::l2::L2;
use crate::store::Store;

static STORES: LazyLock<Mutex<HashMap<StoreConfig, Weak<Store>>>> = LazyLock::new(Default::default);
static BUSES: LazyLock<Mutex<HashMap<url::Url, Weak<Bus>>>> = LazyLock::new(Default::default);

/// The live store of this configuration, or a new one.
pub fn shared_store(config: StoreConfig) -> Result<Arc<Store>> {
    let mut stores = STORES.lock().unwrap_or_else(|e| e.into_inner());
    stores.retain(|_, store| store.strong_count() > 0);
    if let Some(store) = stores.get(&config).and_then(Weak::upgrade) {
        return Ok(store);
    }
    let bus_url = config.l2.as_ref().map(|(_, url)| url.clone());
    let store = Arc::new(Store::open(config.clone(), |l2| shared_bus(bus_url.expect("a bus needs an L2"), l2))?);
    stores.insert(config, Arc::downgrade(&store));
    Ok(store)
}

fn shared_bus(url: url::Url, l2: &Arc<L2>) -> Arc<Bus> {
    let mut buses = BUSES.lock().unwrap_or_else(|e| e.into_inner());
    buses.retain(|_, bus| bus.strong_count() > 0);
    if let Some(bus) = buses.get(&url).and_then(Weak::upgrade) {
        return bus;
    }
    let bus = Arc::new(Bus::start(l2.clone()));
    buses.insert(url, Arc::downgrade(&bus));
    bus
}
