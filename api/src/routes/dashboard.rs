//! `GET /dashboard`: the operator's page. Its HTML, scripts, style sheet and icon are compiled
//! into the binary (`api/assets/dashboard/`), so it works with no internet and no files beside
//! the binary; the page polls the JSON routes (`/queues`, `/workers`, `/dead`) once a second
//! and draws its charts itself. A Content-Security-Policy lets it load and connect to this
//! origin only: no CDN, no inline script, nothing from anywhere else.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, ErrorResponse};
use crate::http::extract::ApiPath;

/// Only this origin, and no inline script or style: the page cannot be made to load or send
/// anything elsewhere, even if a model name or an error message held markup.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const HTML: &str = include_str!("../../assets/dashboard/index.html");

/// The files the page loads, as `/dashboard/<name>`: its scripts (JavaScript modules, no build
/// step), style sheet and icon (served, so the browser's icon request is never a 404).
const FILES: [(&str, &str, &str); 7] = [
    (
        "dashboard.js",
        JAVASCRIPT,
        include_str!("../../assets/dashboard/dashboard.js"),
    ),
    (
        "api.js",
        JAVASCRIPT,
        include_str!("../../assets/dashboard/api.js"),
    ),
    (
        "dom.js",
        JAVASCRIPT,
        include_str!("../../assets/dashboard/dom.js"),
    ),
    (
        "charts.js",
        JAVASCRIPT,
        include_str!("../../assets/dashboard/charts.js"),
    ),
    (
        "dead.js",
        JAVASCRIPT,
        include_str!("../../assets/dashboard/dead.js"),
    ),
    (
        "dashboard.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/dashboard/dashboard.css"),
    ),
    (
        "favicon.svg",
        "image/svg+xml",
        include_str!("../../assets/dashboard/favicon.svg"),
    ),
];

const JAVASCRIPT: &str = "text/javascript; charset=utf-8";

/// One embedded file with the headers every part of the page carries. `no-cache` (revalidate,
/// not "do not store") so a browser never runs an old script against a newer API.
fn asset(content_type: &'static str, body: &'static str) -> Response {
    let headers: [(HeaderName, HeaderValue); 5] = [
        (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
    ];
    (headers, body).into_response()
}

/// The operator's dashboard: per-model queues and throughput, workers and their load, recent
/// failures and dead letters (with Retry and Discard). One HTML page; the files it loads are
/// `GET /dashboard/{file}`.
#[utoipa::path(
    get, path = "/dashboard", operation_id = "dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard page",
               content_type = "text/html", body = String)),
)]
pub(crate) async fn page() -> Response {
    asset("text/html; charset=utf-8", HTML)
}

/// A file of the dashboard: `dashboard.js`, `api.js`, `dom.js`, `charts.js`, `dead.js`,
/// `dashboard.css` or `favicon.svg`.
#[utoipa::path(
    get, path = "/dashboard/{file}", operation_id = "dashboard_file", tag = "dashboard",
    params(("file" = String, Path, description = "The file's name, e.g. `dashboard.js`")),
    responses(
        (status = 200, description = "The file",
         content((String = "text/javascript"), (String = "text/css"),
                 (String = "image/svg+xml"))),
        (status = 400, description = "`invalid_request` (a name that is not UTF-8)",
         body = ErrorResponse),
        (status = 404, description = "`not_found`: no such file", body = ErrorResponse),
    ),
)]
pub(crate) async fn file(ApiPath(name): ApiPath<String>) -> Response {
    match FILES.iter().find(|(n, _, _)| *n == name) {
        Some((_, content_type, body)) => asset(content_type, body),
        None => ApiError::RouteNotFound(format!("/dashboard/{name}")).into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every part of the page carries its type and the policy that keeps it on this origin.
    #[tokio::test]
    async fn every_part_is_served_with_its_type_and_the_policy() {
        let mut parts = vec![(page().await, "text/html; charset=utf-8")];
        for (name, content_type, _) in FILES {
            parts.push((file(ApiPath(name.to_owned())).await, content_type));
        }
        for (res, content_type) in parts {
            let h = res.headers();
            assert_eq!(h[header::CONTENT_TYPE], content_type);
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
        let missing = file(ApiPath("nope.js".into())).await;
        assert_eq!(missing.status(), 404);
    }

    /// Every file the page loads (from the HTML, or as a module import) is served, every
    /// served file is loaded, and nothing points off the origin: the page must work with no
    /// internet.
    #[test]
    fn the_page_loads_exactly_its_own_files() {
        let mut loaded = Vec::new();
        for (_, _, text) in FILES.iter().chain(&[("index.html", "", HTML)]) {
            // `src="/dashboard/…"` in the HTML, `from "./…"` in a module.
            for open in ["\"/dashboard/", "from \"./"] {
                for part in text.split(open).skip(1) {
                    loaded.push(part.split('"').next().unwrap().to_owned());
                }
            }
        }
        for name in &loaded {
            assert!(
                FILES.iter().any(|(n, _, _)| n == name),
                "{name} is loaded but not served"
            );
        }
        for (name, _, _) in FILES {
            assert!(loaded.iter().any(|l| l == name), "{name} is never loaded");
        }
        for (name, _, text) in FILES.iter().chain(&[("index.html", "", HTML)]) {
            // The SVG namespace is a name, not a request.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for off_origin in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(off_origin), "{name} contains {off_origin:?}");
            }
        }
    }
}
