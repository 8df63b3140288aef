//! Transport and middleware, in the order a request meets them: the accept loop
//! ([`server`]), then one middleware ([`gate`]) with the request's limits, authentication, the
//! tenant's rate and the `Retry-After` estimate, then the extractors the handlers take
//! (paths, bodies, `?wait=`, trace context).

pub(crate) mod auth;
pub(crate) mod backpressure;
pub(crate) mod body;
pub(crate) mod extract;
pub(crate) mod gate;
pub(crate) mod limits;
pub(crate) mod rate;
pub(crate) mod server;
