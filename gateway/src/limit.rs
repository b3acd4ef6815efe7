//! In-flight request limits: at most `max_in_flight` requests handled at once
//! over all routes and `max_in_flight_per_route` on any one route; beyond
//! either, `503` with `Retry-After` at once instead of an unbounded queue. A
//! request holds its places until its response starts (an SSE or run stream
//! then runs on without them; the neuron session cap bounds those). Health
//! probes are exempt so an overloaded replica still reports its state.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use agw_protocols::http::ApiError;

/// The in-flight limits of one gateway.
#[derive(Debug)]
pub(crate) struct InFlightLimits {
    all: Arc<Semaphore>,
    per_route_max: usize,
    routes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl InFlightLimits {
    /// Limits of `max_all` requests in all and `per_route` on one route.
    pub(crate) fn new(max_all: usize, per_route: usize) -> Self {
        Self {
            all: Arc::new(Semaphore::new(max_all)),
            per_route_max: per_route,
            routes: Mutex::default(),
        }
    }

    fn route(&self, route: &str) -> Arc<Semaphore> {
        let mut routes = self
            .routes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        routes
            .entry(route.to_owned())
            .or_insert_with(|| Arc::new(Semaphore::new(self.per_route_max)))
            .clone()
    }
}

/// Middleware: takes a place in all and on the route, or answers `503`.
pub(crate) async fn in_flight(
    State(limits): State<Arc<InFlightLimits>>,
    req: Request,
    next: Next,
) -> Response {
    // Routes are templates (`/status/{id}`), so the map stays small;
    // unmatched paths share one entry.
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    if matches!(route.as_str(), "/healthz" | "/readyz") {
        return next.run(req).await;
    }
    let Ok(_all) = limits.all.clone().try_acquire_owned() else {
        return overloaded("too many requests in flight");
    };
    let Ok(_on_route) = limits.route(&route).try_acquire_owned() else {
        return overloaded("too many requests in flight on this route");
    };
    next.run(req).await
}

fn overloaded(why: &str) -> Response {
    tracing::debug!(why, "request refused: overloaded");
    ApiError::Unavailable(why.to_owned()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_share_one_semaphore_per_template() {
        let l = InFlightLimits::new(4, 2);
        let a = l.route("/status/{id}");
        let _p1 = a.clone().try_acquire_owned().unwrap();
        let _p2 = l.route("/status/{id}").try_acquire_owned().unwrap();
        assert!(
            l.route("/status/{id}").try_acquire_owned().is_err(),
            "route full"
        );
        assert!(
            l.route("/claim").try_acquire_owned().is_ok(),
            "other routes unaffected"
        );
    }
}
