//! Core futures as JavaScript Promises.
//!
//! The futures run on the core's runtime rather than napi's, so every L2 connection lives on one runtime whatever
//! JavaScript thread made the call. Their Promises are settled through one threadsafe function per cache instead of
//! napi's one per call: creating and tearing down a threadsafe function for every call cost more than the Redis
//! round trip it waited for. That function is referenced only while calls are in flight, so a pending call keeps
//! the event loop alive and an idle cache never does.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
use napi::bindgen_prelude::*;
use napi::threadsafe_function::{ThreadsafeCallContext, ThreadsafeFunction, ThreadsafeFunctionCallMode};

/// A Promise's deferred handle; only ever used again on the JavaScript thread that created it.
struct Deferred(sys::napi_deferred);

// SAFETY: the handle travels through the core's runtime untouched and is dereferenced only by `settle`, which the
// threadsafe function runs on the JavaScript thread that created it.
unsafe impl Send for Deferred {}

type MakeValue = Box<dyn FnOnce(sys::napi_env) -> Result<sys::napi_value> + Send>;

struct Settlement {
    deferred: Deferred,
    /// The value to resolve with, or `None` when the future panicked.
    value: Option<MakeValue>,
}

type SettleFn = ThreadsafeFunction<Settlement, (), (), Status, false, true>;

/// Settles the Promises of one cache's native calls.
pub struct Settler {
    tsfn: Arc<SettleFn>,
    raw_tsfn: sys::napi_threadsafe_function,
    in_flight: Arc<AtomicUsize>,
}

impl Settler {
    /// Builds the settling function on `env`'s thread, unreferenced until a call is in flight. Fails only when
    /// napi cannot create it.
    pub fn new(env: &Env) -> Result<Self> {
        let in_flight = Arc::new(AtomicUsize::new(0));
        let raw_cell = Arc::new(AtomicPtr::new(ptr::null_mut()));
        let (counter, raw_for_callback) = (in_flight.clone(), raw_cell.clone());
        // The settling happens in the callback; the JavaScript function it then calls has nothing left to do.
        let nothing_left: Function<(), ()> = env.create_function_from_closure("settled", |_| Ok(()))?;
        let tsfn: SettleFn = nothing_left
            .build_threadsafe_function::<Settlement>()
            .weak::<true>()
            .callee_handled::<false>()
            .build_callback(move |ctx: ThreadsafeCallContext<Settlement>| {
                settle(ctx.env.raw(), ctx.value);
                if counter.fetch_sub(1, Ordering::AcqRel) == 1 {
                    // SAFETY: on the JavaScript thread, with the live function this callback belongs to.
                    unsafe {
                        sys::napi_unref_threadsafe_function(ctx.env.raw(), raw_for_callback.load(Ordering::Acquire))
                    };
                }
                Ok(())
            })?;
        let raw_tsfn = tsfn.raw();
        raw_cell.store(raw_tsfn.cast(), Ordering::Release);
        Ok(Settler { tsfn: Arc::new(tsfn), raw_tsfn, in_flight })
    }

    /// Runs `future` on the core runtime and returns a Promise of its output. A panic rejects the Promise instead
    /// of crossing into Node.
    pub fn promise<'env, T, F>(&self, env: &'env Env, future: F) -> Result<Object<'env>>
    where
        T: ToNapiValue + Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        let (mut deferred, mut promise) = (ptr::null_mut(), ptr::null_mut());
        check_status!(unsafe { sys::napi_create_promise(env.raw(), &mut deferred, &mut promise) })?;
        if self.in_flight.fetch_add(1, Ordering::AcqRel) == 0 {
            // SAFETY: on the JavaScript thread that owns the function.
            check_status!(unsafe { sys::napi_ref_threadsafe_function(env.raw(), self.raw_tsfn) })?;
        }
        let tsfn = self.tsfn.clone();
        let deferred = Deferred(deferred);
        tiered_cache_core::runtime::spawn(async move {
            let value = AssertUnwindSafe(future)
                .catch_unwind()
                .await
                .ok()
                .map(|value| Box::new(move |env| unsafe { T::to_napi_value(env, value) }) as MakeValue);
            tsfn.call(Settlement { deferred, value }, ThreadsafeFunctionCallMode::NonBlocking);
        });
        Ok(Object::from_raw(env.raw(), promise))
    }
}

fn settle(env: sys::napi_env, settlement: Settlement) {
    let deferred = settlement.deferred.0;
    let resolved = settlement.value.map(|make| make(env));
    // SAFETY: `deferred` was created on this thread by `Settler::promise` and is settled exactly once, here.
    unsafe {
        match resolved {
            Some(Ok(value)) => sys::napi_resolve_deferred(env, deferred, value),
            Some(Err(error)) => sys::napi_reject_deferred(env, deferred, JsError::from(error).into_value(env)),
            None => {
                let error = Error::new(Status::GenericFailure, "tiered-cache: internal error");
                sys::napi_reject_deferred(env, deferred, JsError::from(error).into_value(env))
            }
        };
    }
}
