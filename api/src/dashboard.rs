//! `GET /dashboard`: the operator's page. Its HTML, script, style sheet and icon are compiled
//! into the binary (`api/assets/dashboard/`), so it works with no internet and no files beside
//! the binary; the page polls the JSON routes (`/queues`, `/workers`, `/dead`) once a second
//! and draws its charts itself. A Content-Security-Policy lets it load and connect to this
//! origin only: no CDN, no inline script, nothing from anywhere else.

use axum::http::{HeaderName, HeaderValue, header};
use axum::response::IntoResponse;

/// Only this origin, and no inline script or style: the page cannot be made to load or send
/// anything elsewhere, even if a model name or an error message held markup.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self'; connect-src 'self'; base-uri 'none'; \
    form-action 'none'; frame-ancestors 'none'";

const HTML: &str = include_str!("../assets/dashboard/index.html");
const SCRIPT: &str = include_str!("../assets/dashboard/dashboard.js");
const STYLE: &str = include_str!("../assets/dashboard/dashboard.css");
const ICON: &str = include_str!("../assets/dashboard/favicon.svg");

/// One embedded file with the headers every part of the page carries. `no-cache` (revalidate,
/// not "do not store") so a browser never runs an old script against a newer API.
fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
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
    (headers, body)
}

/// The operator's dashboard: per-model queues and throughput, workers and their load, recent
/// failures and dead letters (with a retry button). One HTML page; its script and style sheet
/// are the other `/dashboard/…` routes.
#[utoipa::path(
    get, path = "/dashboard", operation_id = "dashboard", tag = "dashboard",
    responses((status = 200, description = "The dashboard page",
               content_type = "text/html", body = String)),
)]
pub(crate) async fn page() -> impl IntoResponse {
    asset("text/html; charset=utf-8", HTML)
}

/// The dashboard's script (plain JavaScript, no dependencies).
#[utoipa::path(
    get, path = "/dashboard/dashboard.js", operation_id = "dashboard_script", tag = "dashboard",
    responses((status = 200, description = "The dashboard's script",
               content_type = "text/javascript", body = String)),
)]
pub(crate) async fn script() -> impl IntoResponse {
    asset("text/javascript; charset=utf-8", SCRIPT)
}

/// The dashboard's style sheet.
#[utoipa::path(
    get, path = "/dashboard/dashboard.css", operation_id = "dashboard_style", tag = "dashboard",
    responses((status = 200, description = "The dashboard's style sheet",
               content_type = "text/css", body = String)),
)]
pub(crate) async fn style() -> impl IntoResponse {
    asset("text/css; charset=utf-8", STYLE)
}

/// The dashboard's icon (an own route, so the browser's icon request is never a 404).
#[utoipa::path(
    get, path = "/dashboard/favicon.svg", operation_id = "dashboard_icon", tag = "dashboard",
    responses((status = 200, description = "The dashboard's icon",
               content_type = "image/svg+xml", body = String)),
)]
pub(crate) async fn icon() -> impl IntoResponse {
    asset("image/svg+xml", ICON)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::response::Response;

    /// Every part of the page carries its type and the policy that keeps it on this origin.
    #[tokio::test]
    async fn every_part_is_served_with_its_type_and_the_policy() {
        let parts: [(Response, &str); 4] = [
            (page().await.into_response(), "text/html; charset=utf-8"),
            (
                script().await.into_response(),
                "text/javascript; charset=utf-8",
            ),
            (style().await.into_response(), "text/css; charset=utf-8"),
            (icon().await.into_response(), "image/svg+xml"),
        ];
        for (res, content_type) in parts {
            let h = res.headers();
            assert_eq!(h[header::CONTENT_TYPE], content_type);
            assert_eq!(h[header::CONTENT_SECURITY_POLICY], CONTENT_SECURITY_POLICY);
            assert_eq!(h[header::X_CONTENT_TYPE_OPTIONS], "nosniff");
        }
    }

    /// Every reference the page makes is to one of its own routes, and nothing points off the
    /// origin: the page must work with no internet.
    #[test]
    fn the_page_references_only_its_own_routes() {
        for asset in [
            "/dashboard/dashboard.js",
            "/dashboard/dashboard.css",
            "/dashboard/favicon.svg",
        ] {
            assert!(HTML.contains(asset), "index.html does not load {asset}");
        }
        for (name, text) in [
            ("index.html", HTML),
            ("dashboard.js", SCRIPT),
            ("dashboard.css", STYLE),
        ] {
            // The SVG namespace is a name, not a request.
            let text = text.replace("http://www.w3.org/2000/svg", "");
            for off_origin in ["http://", "https://", "//cdn", "@import", "url("] {
                assert!(!text.contains(off_origin), "{name} contains {off_origin:?}");
            }
        }
    }
}
