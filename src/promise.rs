//! Core futures as JavaScript Promises, run on the core's runtime rather than napi's, so every L2 connection lives
//! on one runtime whatever JavaScript thread made the call.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures_util::FutureExt;
use napi::bindgen_prelude::*;

type Resolver<T> = Box<dyn FnOnce(Env) -> Result<T> + Send>;

/// Runs `future` on the core runtime and returns a Promise of its output. A panic rejects the Promise instead of
/// crossing into Node.
pub fn spawn_promise<'env, T, F>(env: &'env Env, future: F) -> Result<Object<'env>>
where
    T: ToNapiValue + Send + 'static,
    F: Future<Output = T> + Send + 'static,
{
    let (deferred, promise) = env.create_deferred::<T, Resolver<T>>()?;
    tiered_cache_core::runtime::spawn(async move {
        match AssertUnwindSafe(future).catch_unwind().await {
            Ok(value) => deferred.resolve(Box::new(move |_| Ok(value))),
            Err(_) => deferred.reject(Error::new(Status::GenericFailure, "tiered-cache: internal error")),
        }
    });
    Ok(promise)
}
