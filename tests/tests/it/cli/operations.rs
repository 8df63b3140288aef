//! The operator's commands: `inferq workers`, `queues`, `dead` and `keys`, and `inferq speech`
//! with a key.

use std::time::Duration;

use serde_json::Value;

use super::{DONE, inferq, inferq_with_key};
use crate::support::{
    AppOptions, eventually_every, linear_job, repo_root, spawn_app, spawn_app_with, test_models,
};

#[tokio::test]
async fn workers_queues_and_dead_letters_from_the_command_line() {
    let app = spawn_app().await;
    let w = app.worker(&test_models(), &[("INFERQ_MODELS", "linear")]);
    app.wait_models(&["linear"]).await;
    let id = app.submit(&linear_job(&[[1.0, 2.0, 3.0, 4.0]])).await;
    app.wait_done(&id, DONE).await;

    // Workers publish their description every 2 s.
    let workers = eventually_every(
        Duration::from_millis(200),
        Duration::from_secs(10),
        "`inferq workers` shows the job succeeded",
        async || {
            let run = inferq(&app.base, &["workers", "--json"]).await;
            assert_eq!(run.code, Some(0), "{run:?}");
            let body = run.json();
            if body["workers"][0]["jobs_succeeded"] == 1 {
                Ok(body)
            } else {
                Err(format!("{run:?}"))
            }
        },
    )
    .await;
    assert_eq!(workers["workers"][0]["id"], w.id.as_str());
    let run = inferq(&app.base, &["workers"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let mut lines = run.stdout.lines();
    assert!(lines.next().unwrap().starts_with("ID "), "{run:?}");
    let row = lines.next().unwrap();
    assert!(row.starts_with(&w.id), "{run:?}");
    assert!(row.contains(" linear ") && row.contains(" 0/2 "), "{run:?}");

    let run = inferq(&app.base, &["queues", "--json"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let queues = run.json();
    assert_eq!(queues["queues"]["linear"]["depth"], 0, "{run:?}");
    assert_eq!(queues["queues"]["linear"]["workers"], 1, "{run:?}");
    let run = inferq(&app.base, &["queues"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("QUEUE "), "{run:?}");
    assert!(run.stdout.contains("\ndead letters: 0\n"), "{run:?}");

    // A queue entry no worker can read becomes a dead letter.
    let mut conn = app.redis.conn().await;
    let _: String = redis::cmd("XADD")
        .arg(app.keys().stream("linear"))
        .arg("*")
        .arg("junk")
        .arg("1")
        .query_async(&mut conn)
        .await
        .unwrap();
    let dead = eventually_every(
        Duration::from_millis(100),
        Duration::from_secs(10),
        "`inferq dead list` shows the dead letter",
        async || {
            let run = inferq(&app.base, &["dead", "list", "--json"]).await;
            assert_eq!(run.code, Some(0), "{run:?}");
            let body = run.json();
            if body["dead_letters"].as_array().unwrap().len() == 1 {
                Ok(body)
            } else {
                Err(format!("{run:?}"))
            }
        },
    )
    .await;
    let dead_id = dead["dead_letters"][0]["dead_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let run = inferq(&app.base, &["dead", "list"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(
        run.stdout
            .lines()
            .nth(1)
            .unwrap()
            .contains("malformed_entry"),
        "{run:?}"
    );
    assert!(run.stdout.contains(" TENANT "), "{run:?}");
    // Its job is unknown, so it belongs to no tenant: a tenant's list does not show it.
    let run = inferq(
        &app.base,
        &["dead", "list", "--tenant", "default", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json()["dead_letters"], serde_json::json!([]), "{run:?}");
    // An unreadable entry cannot run again: the server's 409, exit 1.
    let run = inferq(&app.base, &["dead", "retry", &dead_id]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("not_retryable"), "{run:?}");
    let run = inferq(&app.base, &["dead", "delete", &dead_id]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.stdout, format!("dead letter {dead_id} deleted\n"));
    let run = inferq(&app.base, &["dead", "list"]).await;
    assert_eq!(run.stdout, "no dead letters\n", "{run:?}");
    let run = inferq(&app.base, &["dead", "delete", &dead_id]).await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("dead_letter_not_found"), "{run:?}");
    let run = inferq(&app.base, &["dead", "list", "--limit", "0"]).await;
    assert_eq!(run.code, Some(2), "{run:?}");
}

#[tokio::test]
async fn keys_and_speech_from_the_command_line() {
    const ADMIN: &str = "cli-test-admin-key-0123456789abcdef-0123456789";
    let app = spawn_app_with(AppOptions {
        admin_key: Some(ADMIN.into()),
        ..Default::default()
    })
    .await;
    let _w = app.worker(
        &repo_root().join("models"),
        &[("INFERQ_MODELS", "silero_vad")],
    );

    // Keys: made once, listed without the secret, refused once revoked.
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &[
            "keys",
            "create",
            "--tenant",
            "blue",
            "--scopes",
            "submit,read",
            "--name",
            "cli",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let made = run.json();
    let key = made["key"].as_str().unwrap().to_owned();
    let id = made["id"].as_str().unwrap().to_owned();
    assert!(key.starts_with("iqk_"), "{made}");
    let run = inferq_with_key(&app.base, ADMIN, &["keys", "list"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("ID "), "{run:?}");
    assert!(
        run.stdout.contains(&id) && run.stdout.contains("submit,read"),
        "{run:?}"
    );
    assert!(!run.stdout.contains(&key), "{run:?}");
    let run = inferq_with_key(&app.base, &key, &["models"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    // No admin scope: the server's 403, exit 3.
    let run = inferq_with_key(&app.base, &key, &["workers"]).await;
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = inferq_with_key(&app.base, ADMIN, &["keys", "revoke", &id]).await;
    assert_eq!(
        (run.code, run.stdout.as_str()),
        (Some(0), format!("key {id} revoked\n").as_str())
    );
    let run = inferq_with_key(&app.base, &key, &["models"]).await;
    assert_eq!(run.code, Some(3), "{run:?}");

    // Speech: the file in, the segments out, as the pipeline computes them.
    eventually_every(
        Duration::from_millis(100),
        DONE,
        "`inferq models` lists silero_vad with its worker",
        async || {
            let run = inferq_with_key(&app.base, ADMIN, &["models", "--json"]).await;
            let served = run.json()["models"].as_array().is_some_and(|m| {
                m.iter()
                    .any(|m| m["name"] == "silero_vad" && m["workers"] == 1)
            });
            if served {
                Ok(())
            } else {
                Err(format!("{run:?}"))
            }
        },
    )
    .await;
    let audio = repo_root().join("tests/audio/speech.wav");
    let reference: Value = serde_json::from_slice(
        &std::fs::read(repo_root().join("tests/audio/speech.ref.json")).unwrap(),
    )
    .unwrap();
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &["speech", audio.to_str().unwrap(), "--wait", "--json"],
    )
    .await;
    assert_eq!(run.code, Some(0), "{run:?}");
    let record = run.json();
    assert_eq!(record["pipeline"], "speech_segments", "{record}");
    assert_eq!(record["result"], reference, "{record}");
    let run = inferq_with_key(&app.base, ADMIN, &["speech", audio.to_str().unwrap()]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.starts_with("job "), "{run:?}");
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &["speech", audio.to_str().unwrap(), "--parameters", "[1]"],
    )
    .await;
    assert_eq!(run.code, Some(2), "{run:?}");
    let run = inferq_with_key(
        &app.base,
        ADMIN,
        &[
            "speech",
            audio.to_str().unwrap(),
            "--parameters",
            "{\"threshold\": 7}",
        ],
    )
    .await;
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("invalid_parameter"), "{run:?}");
}
