//! The job API's other ways in (listing, batches, groups, idempotency keys, the result cache)
//! keep tenants apart too.

use reqwest::Method;
use serde_json::json;

use super::{ADMIN, http_key, req, secured_app};
use crate::support::{linear_job, send, test_models};

/// The job API's other ways in (listing, batches, groups, idempotency keys, the result cache)
/// keep tenants apart too.
#[tokio::test]
async fn listing_batches_groups_idempotency_and_the_cache_are_per_tenant() {
    let app = secured_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    let (red, _) = http_key(&app, "red", &["submit", "read"]).await;
    let (blue, _) = http_key(&app, "blue", &["submit", "read"]).await;
    app.client(&red).wait_models(&["linear"]).await;
    let job = |x: f32| linear_job(&[[x, 0.0, 0.0, 0.0]]);

    // The same Idempotency-Key from two tenants makes two jobs.
    let mut ids = Vec::new();
    for key in [&red, &blue] {
        let (status, _, body) = send(
            req(&app, Method::POST, "/jobs", Some(key))
                .header("idempotency-key", "order-1")
                .json(&job(1.0)),
        )
        .await;
        assert_eq!(status, 202, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    assert_ne!(ids[0], ids[1]);

    // A batch and a group of red's.
    let (status, _, batch) = send(
        req(&app, Method::POST, "/jobs/batch", Some(&red))
            .json(&json!({"jobs": [job(2.0), job(3.0)]})),
    )
    .await;
    assert_eq!(status, 200, "{batch}");
    let (status, _, group) =
        send(req(&app, Method::POST, "/groups", Some(&red)).json(&json!({"jobs": [job(4.0)]})))
            .await;
    assert_eq!(status, 202, "{group}");
    let group_id = group["id"].as_str().unwrap().to_owned();
    let (status, _, g) = send(req(
        &app,
        Method::GET,
        &format!("/groups/{group_id}?wait=10"),
        Some(&red),
    ))
    .await;
    assert_eq!((status, &g["status"]), (200, &json!("succeeded")), "{g}");
    for method in [Method::GET, Method::DELETE] {
        let (status, _, body) = send(req(
            &app,
            method,
            &format!("/groups/{group_id}"),
            Some(&blue),
        ))
        .await;
        assert_eq!(
            (status, &body["error"]["code"]),
            (404, &json!("group_not_found"))
        );
    }
    let red_ids: Vec<String> = batch["jobs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["id"].as_str().unwrap().to_owned())
        .chain([ids[0].clone()])
        .chain(
            group["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j.as_str().unwrap().to_owned()),
        )
        .collect();
    for id in &red_ids {
        let (status, _, _) =
            send(req(&app, Method::GET, &format!("/jobs/{id}"), Some(&blue))).await;
        assert_eq!(status, 404);
    }

    // Listings: each tenant its own; an admin every tenant's.
    let listed = |key: String| {
        let app = &app;
        async move {
            let (status, _, page) =
                send(req(app, Method::GET, "/jobs?limit=100", Some(&key))).await;
            assert_eq!(status, 200, "{page}");
            page["jobs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|j| j["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let (for_red, for_blue, for_admin) = (
        listed(red.clone()).await,
        listed(blue.clone()).await,
        listed(ADMIN.to_owned()).await,
    );
    assert_eq!(for_blue, [ids[1].clone()]);
    for id in &red_ids {
        assert!(for_red.contains(id) && for_admin.contains(id), "{id}");
    }
    assert!(!for_red.contains(&ids[1]) && for_admin.contains(&ids[1]));

    // The result cache answers within a tenant only.
    let cached = json!({"model": "linear", "inputs": job(9.0)["inputs"],
                        "parameters": {"cache": true}});
    let (_, _, first) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&red)).json(&cached)).await;
    assert_eq!(first["status"], "succeeded", "{first}");
    let (_, _, again) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&red)).json(&cached)).await;
    let (_, _, other) =
        send(req(&app, Method::POST, "/jobs?wait=10", Some(&blue)).json(&cached)).await;
    assert_eq!(
        app.job_field(again["id"].as_str().unwrap(), "cached")
            .await
            .as_deref(),
        Some("1")
    );
    assert_eq!(
        app.job_field(other["id"].as_str().unwrap(), "cached").await,
        None,
        "{other}"
    );
}
