//! `GET /openapi.json`: the document covers every route the router serves, is valid OpenAPI 3.1
//! (openapi-spec-validator), real requests and responses fit it, and schemathesis finds no
//! server error, no answer that contradicts it and no undocumented status on the running API.

use std::collections::BTreeSet;
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    App, AppOptions, assert_close, linear_expected, linear_job, repo_root, spawn_app,
    spawn_app_with, test_models, test_venv,
};

/// Every operation the router serves. A new route must be added here (and is documented by
/// construction: routes are registered through utoipa-axum's `routes!`).
const SERVED: [(&str, &str); 48] = [
    ("POST", "/jobs"),
    ("GET", "/jobs/{id}/events"),
    ("POST", "/jobs/batch"),
    ("GET", "/jobs"),
    ("POST", "/groups"),
    ("GET", "/groups/{id}"),
    ("DELETE", "/groups/{id}"),
    ("GET", "/pipelines"),
    ("GET", "/jobs/{id}"),
    ("DELETE", "/jobs/{id}"),
    ("GET", "/status/{id}"),
    ("GET", "/models"),
    ("DELETE", "/models/{name}"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("GET", "/v2"),
    ("GET", "/v2/health/live"),
    ("GET", "/v2/health/ready"),
    ("GET", "/v2/models/{model}"),
    ("GET", "/v2/models/{model}/versions/{version}"),
    ("GET", "/v2/models/{model}/ready"),
    ("GET", "/v2/models/{model}/versions/{version}/ready"),
    ("POST", "/v2/models/{model}/infer"),
    ("POST", "/v2/models/{model}/versions/{version}/infer"),
    ("POST", "/v1/embeddings"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{model}"),
    ("POST", "/v1/files"),
    ("GET", "/v1/files"),
    ("GET", "/v1/files/{file_id}"),
    ("DELETE", "/v1/files/{file_id}"),
    ("GET", "/v1/files/{file_id}/content"),
    ("POST", "/v1/batches"),
    ("GET", "/v1/batches"),
    ("GET", "/v1/batches/{batch_id}"),
    ("POST", "/v1/batches/{batch_id}/cancel"),
    ("GET", "/metrics"),
    ("GET", "/workers"),
    ("GET", "/queues"),
    ("GET", "/scaling"),
    ("GET", "/dead"),
    ("POST", "/dead/{id}/retry"),
    ("DELETE", "/dead/{id}"),
    ("GET", "/dashboard"),
    ("GET", "/dashboard/{file}"),
    ("POST", "/keys"),
    ("GET", "/keys"),
    ("DELETE", "/keys/{id}"),
];

/// Operations anyone may call; every other one needs a key.
const OPEN: [&str; 7] = [
    "/healthz",
    "/readyz",
    "/v2/health/live",
    "/v2/health/ready",
    "/openapi.json",
    "/dashboard",
    "/dashboard/{file}",
];

/// The (method, path) pairs a document describes.
fn operations(doc: &Value) -> BTreeSet<(String, String)> {
    let methods = [
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    let mut ops = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in methods {
            if item.get(m).is_some() {
                ops.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    ops
}

async fn call(app: &App, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = app.http.request(method, format!("{}{path}", app.base));
    if let Some(body) = body {
        req = req.json(body);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_document_covers_every_route_and_is_valid_openapi() {
    let app = spawn_app().await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;

    let r = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let doc: Value = r.json().await.unwrap();
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );

    // What the router serves is what its OpenApiRouter collected; the document served is that.
    let collected = operations(&serde_json::to_value(inferq_api::openapi()).unwrap());
    let served: BTreeSet<(String, String)> = SERVED
        .iter()
        .chain(&[("GET", "/openapi.json")])
        .map(|(m, p)| ((*m).to_owned(), (*p).to_owned()))
        .collect();
    assert_eq!(collected, served);
    assert_eq!(operations(&doc), served);

    // Every operation but the open ones names the key schemes and documents 401 and 403.
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["bearer"]["scheme"], "bearer", "{schemes}");
    assert_eq!(schemes["api_key"]["name"], "X-API-Key", "{schemes}");
    for (method, path) in &served {
        let op = &doc["paths"][path][method.to_lowercase()];
        if OPEN.contains(&path.as_str()) {
            assert!(op["security"].is_null(), "{method} {path}");
            continue;
        }
        assert_eq!(
            op["security"],
            json!([{"bearer": []}, {"api_key": []}]),
            "{method} {path}"
        );
        for code in ["401", "403"] {
            assert!(op["responses"][code].is_object(), "{method} {path} {code}");
        }
        assert!(
            op["responses"]["401"]["headers"]["WWW-Authenticate"].is_object(),
            "{method} {path}"
        );
    }

    // Every documented operation is routed: never the fallback's 404, never 405.
    let unknown_job = uuid::Uuid::new_v4().to_string();
    for (method, path) in &served {
        let url = path
            .replace("{id}", &unknown_job)
            .replace("{name}", "no_such_model")
            .replace("{model}", "linear")
            .replace("{version}", "1")
            .replace("{file}", "dashboard.js");
        let body = (method == "POST").then(|| json!({}));
        let (status, body) = call(&app, method, &url, body.as_ref()).await;
        let fallback = status == 404
            && (body["error"]["code"] == "not_found"
                || body["error"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("no route")));
        assert!(
            status != 405 && !fallback,
            "{method} {url}: {status} {body}"
        );
        for (code, documented) in doc["paths"][path][method.to_lowercase()]["responses"]
            .as_object()
            .unwrap()
        {
            assert!(
                documented["description"]
                    .as_str()
                    .is_some_and(|d| !d.is_empty()),
                "{method} {path} {code}"
            );
        }
        assert!(
            doc["paths"][path][method.to_lowercase()]["responses"]
                .get(status.to_string())
                .is_some(),
            "{method} {url} answered {status}, which its operation does not document: {body}"
        );
    }

    // axum's own rejections come in the API's shapes, as documented.
    let (status, body) = call(&app, "GET", "/status/%FF", None).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (400, &json!("invalid_request"))
    );
    let (status, body) = call(&app, "GET", "/v2/models/%FF/ready", None).await;
    assert!(
        status == 400 && body["error"].is_string(),
        "{status} {body}"
    );
    let (status, body) = call(&app, "GET", "/v2/no/such/route", None).await;
    assert!(
        status == 404 && body["error"].is_string(),
        "{status} {body}"
    );
    let (status, body) = call(&app, "PUT", "/v2/health/live", None).await;
    assert!(
        status == 405 && body["error"].is_string(),
        "{status} {body}"
    );

    // Real requests and the answers they get, checked against the document's schemas.
    let rows = [[1.0, -2.0, 0.5, 4.0]];
    let job = linear_job(&rows);
    let infer = json!({"id": "r1", "inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32",
                                             "data": [1.0, -2.0, 0.5, 4.0]}],
                       "outputs": [{"name": "y"}]});
    let mut responses = Vec::new();
    let mut record = |method: &str, path: &str, status: u16, body: Value| {
        responses.push(json!([method, path, status, body]));
    };
    let (status, accepted) = call(&app, "POST", "/jobs", Some(&job)).await;
    assert_eq!(status, 202, "{accepted}");
    let id = accepted["id"].as_str().unwrap().to_owned();
    record("POST", "/jobs", status, accepted);
    let done = app.wait_done(&id, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    record("GET", "/status/{id}", 200, done);
    let (status, body) = call(&app, "POST", "/jobs?wait=10", Some(&job)).await;
    record("POST", "/jobs", status, body);
    let (status, body) = call(&app, "DELETE", &format!("/jobs/{id}"), None).await;
    assert_eq!(status, 409, "{body}");
    record("DELETE", "/jobs/{id}", status, body);
    let (status, body) = call(&app, "GET", &format!("/jobs/{unknown_job}"), None).await;
    record("GET", "/jobs/{id}", status, body);
    let (status, body) = call(&app, "GET", "/models", None).await;
    record("GET", "/models", status, body);
    let (status, body) = call(&app, "GET", "/v2/models/linear/versions/1", None).await;
    record("GET", "/v2/models/{model}/versions/{version}", status, body);
    let (status, body) = call(&app, "GET", "/v2/models/linear/ready", None).await;
    record("GET", "/v2/models/{model}/ready", status, body);
    let (status, body) = call(&app, "POST", "/v2/models/linear/infer", Some(&infer)).await;
    assert_eq!(status, 200, "{body}");
    assert_close(&body["outputs"][0]["data"], &linear_expected(&rows), 1e-5);
    record("POST", "/v2/models/{model}/infer", status, body);
    let (status, body) = call(&app, "POST", "/v2/models/nope/infer", Some(&infer)).await;
    record("POST", "/v2/models/{model}/infer", status, body);
    for (method, path) in [
        ("GET", "/v2"),
        ("GET", "/v2/health/ready"),
        ("GET", "/readyz"),
    ] {
        let (status, body) = call(&app, method, path, None).await;
        record(method, path, status, body);
    }
    let bodies = json!({
        "requests": [["POST", "/jobs", job], ["POST", "/v2/models/{model}/infer", infer]],
        "responses": responses,
    });

    let doc_file = app.redis.dir.join("openapi.json");
    let bodies_file = app.redis.dir.join("bodies.json");
    std::fs::write(&doc_file, doc.to_string()).unwrap();
    std::fs::write(&bodies_file, bodies.to_string()).unwrap();
    let out = tokio::process::Command::new(test_venv("python"))
        .arg(repo_root().join("tests/openapi/check_document.py"))
        .arg(&doc_file)
        .arg(&bodies_file)
        .output()
        .await
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{text}");
    assert!(text.contains("document ok"), "{text}");
}

/// schemathesis (in .venv-test) generates requests from the document, valid and invalid, and
/// follows its links (a submission's `id` into the status routes), against the API and a
/// worker serving `linear`. Every check is on; `tests/schemathesis.toml` lists, with reasons,
/// the statuses a schema-valid request may still get. Its summary line goes to the test output.
#[tokio::test]
async fn schemathesis_finds_no_problem() {
    // Long-polls answer within a second, so the run is spent on requests, not on waiting.
    // Keys required, and schemathesis presents an admin key (its `ignored_auth` check also
    // sends requests without it and expects 401).
    let admin = "schemathesis-admin-key-0123456789abcdef";
    let app = spawn_app_with(AppOptions {
        max_wait_secs: 1,
        admin_key: Some(admin.into()),
        ..Default::default()
    })
    .await;
    let _w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.client(admin).wait_models(&["linear"]).await;
    let run = async || {
        let run = tokio::process::Command::new(test_venv("schemathesis"))
            // Its caches (.hypothesis/, .schemathesis/) go with the test's temporary directory.
            .current_dir(&app.redis.dir)
            .arg("--config-file")
            .arg(repo_root().join("tests/schemathesis.toml"))
            .arg("run")
            .arg(format!("{}/openapi.json", app.base))
            .args(["--checks", "all", "--max-examples", "20"])
            .args(["--header", &format!("Authorization: Bearer {admin}")])
            // With a time budget, fuzzing goes on until it is spent.
            .args([
                "--max-time",
                "40",
                "--workers",
                "2",
                "--request-timeout",
                "10",
            ])
            .arg("--no-color")
            .kill_on_drop(true)
            .output();
        tokio::time::timeout(Duration::from_secs(150), run)
            .await
            .expect("schemathesis did not finish in 150 s")
            .unwrap()
    };
    let mut out = run().await;
    // A crash inside the fuzzer itself (a Python traceback in hypothesis or schemathesis, with
    // no check failed against the API; seen once in a while as hypothesis's "AST constructor
    // recursion depth mismatch") says nothing of the API: the run is made once more.
    let tool_crash = |text: &str| {
        !text.contains("= FAILURES =")
            && text.contains("Runtime Error")
            && (text.contains("site-packages/hypothesis/")
                || text.contains("site-packages/schemathesis/"))
    };
    if !out.status.success() && tool_crash(&String::from_utf8_lossy(&out.stdout)) {
        let _ = writeln!(
            std::io::stderr(),
            "schemathesis crashed inside itself (no API check failed); running it again"
        );
        out = run().await;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line_after = |label: &str| {
        text.lines()
            .skip_while(|l| l.trim() != label)
            .nth(1)
            .unwrap_or("")
            .trim()
            .to_owned()
    };
    let cases = line_after("Test cases:");
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" in ") && l.trim_end().ends_with(['=', 's']))
        .unwrap_or("")
        .trim_matches(|c: char| c == '=' || c.is_whitespace());
    // Written past the test harness's capture, so it shows in every run.
    let _ = writeln!(std::io::stderr(), "schemathesis: {cases}; {summary}");
    assert!(
        out.status.success(),
        "schemathesis failed ({}):\n{text}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(cases.contains("generated"), "{text}");
}
