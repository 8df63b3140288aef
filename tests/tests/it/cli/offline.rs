//! What the client decides without a working server: usage errors (exit 2), an unreachable
//! server or a refused key (exit 3), the key sent as a bearer token, shell completions.

use std::io::{Read, Write};

use super::{UNREACHABLE, inferq};
use crate::support::cli_binary;

#[tokio::test]
async fn unreachable_server_exits_3() {
    let id = uuid::Uuid::new_v4().to_string();
    for args in [
        vec!["models"],
        vec!["status", &id],
        vec!["submit", "linear", "-i", "x=[[1, 2, 3, 4]]", "--wait"],
    ] {
        let run = inferq(UNREACHABLE, &args).await;
        assert_eq!(run.code, Some(3), "{args:?}: {run:?}");
        assert!(
            run.stderr
                .contains("cannot reach the inferq API at http://127.0.0.1:1"),
            "{run:?}"
        );
    }
}

/// A server that answers every request `401` and hands back the request's head, to show the key
/// is sent as a bearer token, and never printed.
#[tokio::test]
async fn api_key_is_sent_as_a_bearer_token_and_401_exits_3() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut conn, _) = listener.accept().unwrap();
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = conn.read(&mut buf).unwrap();
            assert!(n > 0, "connection closed mid-request");
            head.extend_from_slice(&buf[..n]);
        }
        let body = r#"{"error":{"code":"unauthorized","message":"unknown API key"}}"#;
        let reply = format!(
            "HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        conn.write_all(reply.as_bytes()).unwrap();
        String::from_utf8(head).unwrap()
    });
    let key = "s3cret-key";
    let out = tokio::process::Command::new(cli_binary())
        .args(["models"])
        .env("INFERQ_URL", &base)
        .env("INFERQ_API_KEY", key)
        .output()
        .await
        .unwrap();
    let head = server.join().unwrap().to_ascii_lowercase();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        head.contains(&format!("authorization: bearer {key}")),
        "{head}"
    );
    assert!(stderr.contains("unknown API key"), "{stderr}");
    assert!(!stderr.contains(key), "{stderr}");
}

#[tokio::test]
async fn usage_errors_exit_2() {
    let dir = std::env::temp_dir().join(format!("inferq-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad_npy = dir.join("bad.npy");
    std::fs::write(&bad_npy, b"\x93NUMPY\x01\x00\x10\x00{'descr': '>f4'").unwrap();
    let bad_json = dir.join("bad.json");
    std::fs::write(&bad_json, "[[1, 2], [3]]").unwrap();
    let npy_arg = format!("x={}", bad_npy.display());
    let json_arg = format!("x={}", bad_json.display());
    let cases: [&[&str]; 9] = [
        &[],
        &["frobnicate"],
        &["submit", "linear"],
        &["submit", "linear", "--input", "x"],
        &["submit", "linear", "--input", "x=/no/such/file.npy"],
        &["submit", "linear", "--input", &npy_arg],
        &["submit", "linear", "--input", &json_arg],
        &["status", "not-a-job-id"],
        &["--url", "ftp://example", "models"],
    ];
    for args in cases {
        // Nothing may be sent: an attempt would exit 3 against this URL.
        let run = inferq(UNREACHABLE, args).await;
        assert_eq!(run.code, Some(2), "{args:?}: {run:?}");
        assert!(!run.stderr.is_empty(), "{args:?}: {run:?}");
    }
    std::fs::remove_dir_all(&dir).unwrap();

    let run = inferq(UNREACHABLE, &["wait", "--help"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("Usage: inferq wait"), "{run:?}");
}

#[tokio::test]
async fn completions_print_a_script() {
    let run = inferq(UNREACHABLE, &["completions", "bash"]).await;
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("_inferq()"), "{run:?}");
    assert!(run.stdout.contains("complete -F _inferq"), "{run:?}");
    for shell in ["zsh", "fish"] {
        let run = inferq(UNREACHABLE, &["completions", shell]).await;
        assert_eq!(run.code, Some(0), "{run:?}");
        assert!(run.stdout.contains("inferq"), "{run:?}");
    }
}
