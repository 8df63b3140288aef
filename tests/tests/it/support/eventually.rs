//! `eventually`: the one way a test waits for something another process does in its own time
//! (a worker's heartbeat, a sweeper's pass, an exported span), polling with a deadline and
//! failing with what was awaited and what was last seen.

use std::fmt::Display;
use std::time::{Duration, Instant};

/// How often [`eventually`] looks.
const EVERY: Duration = Duration::from_millis(20);

/// What one look found: the awaited value, or (for the failure message) what was seen instead.
pub(crate) trait Probe {
    type Value;
    fn check(self) -> Result<Self::Value, String>;
}

impl Probe for bool {
    type Value = ();
    fn check(self) -> Result<(), String> {
        if self { Ok(()) } else { Err("not yet".into()) }
    }
}

impl<T> Probe for Option<T> {
    type Value = T;
    fn check(self) -> Result<T, String> {
        self.ok_or_else(|| "nothing yet".into())
    }
}

impl<T, E: Display> Probe for Result<T, E> {
    type Value = T;
    fn check(self) -> Result<T, String> {
        self.map_err(|seen| seen.to_string())
    }
}

/// Looks with `probe` every 20 ms until it finds the value, and returns it; panics after
/// `within`, naming `what` was awaited and the last thing `probe` saw.
pub(crate) async fn eventually<P: Probe>(
    within: Duration,
    what: impl Display,
    probe: impl AsyncFnMut() -> P,
) -> P::Value {
    eventually_every(EVERY, within, what, probe).await
}

/// [`eventually`], looking every `every` (for a probe that is costly, such as running a
/// process, or that must leave the thing it watches some time between looks).
pub(crate) async fn eventually_every<P: Probe>(
    every: Duration,
    within: Duration,
    what: impl Display,
    mut probe: impl AsyncFnMut() -> P,
) -> P::Value {
    let deadline = Instant::now() + within;
    loop {
        match probe().await.check() {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(every).await;
    }
}

/// [`eventually`] for the fixtures that run outside the async runtime (starting a Redis,
/// waiting for a process to exit).
pub(crate) fn eventually_blocking<P: Probe>(
    within: Duration,
    what: impl Display,
    mut probe: impl FnMut() -> P,
) -> P::Value {
    let deadline = Instant::now() + within;
    loop {
        match probe().check() {
            Ok(value) => return value,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "{what}: not within {within:?}; last seen: {seen}"
            ),
        }
        std::thread::sleep(EVERY);
    }
}
