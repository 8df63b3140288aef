//! `/metrics` needs an admin key, unless it is made public.

use reqwest::Method;

use super::{ADMIN, req, secured_app};
use crate::support::{AppOptions, send, spawn_app_with};

#[tokio::test]
async fn metrics_need_an_admin_key_unless_public() {
    let app = secured_app().await;
    assert_eq!(send(req(&app, Method::GET, "/metrics", None)).await.0, 401);
    let res = req(&app, Method::GET, "/metrics", Some(ADMIN))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        res.text()
            .await
            .unwrap()
            .contains("inferq_http_requests_total")
    );

    let public = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        metrics_public: true,
        ..Default::default()
    })
    .await;
    assert_eq!(
        send(req(&public, Method::GET, "/metrics", None)).await.0,
        200
    );
    assert_eq!(
        send(req(&public, Method::GET, "/queues", None)).await.0,
        401
    );
}
