//! Secrets never reach a log: every line the suite's processes wrote (the workers the harness
//! starts and the in-process APIs, in `support::log_dir()`) is searched for an API key, the
//! tests' admin keys and Redis passwords. Run after the whole suite (scripts/test.sh does:
//! `cargo test … -- --ignored logs::`), so it sees everything the suite logged.

use crate::support::log_dir;

/// The secrets the tests use, or a recognisable part of each: the tests' bootstrap admin keys
/// all hold `admin-key-`; `hunter2` and `acl-password-` are the Redis passwords of the auth and
/// TLS tests; the last is the key part of the webhook tests' signing secret.
const KNOWN: &[&str] = &[
    "admin-key-",
    "hunter2",
    "acl-password-",
    "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
];

/// Whether `line` holds a whole API key: `iqk_<16 hex>_<64 hex>`.
fn holds_api_key(line: &str) -> bool {
    line.match_indices("iqk_").any(|(i, _)| {
        let rest = &line.as_bytes()[i + 4..];
        rest.len() >= 16 + 1 + 64
            && rest[..16].iter().all(u8::is_ascii_hexdigit)
            && rest[16] == b'_'
            && rest[17..81].iter().all(u8::is_ascii_hexdigit)
    })
}

#[test]
#[ignore = "run after the whole suite, which writes the logs it reads (scripts/test.sh)"]
fn no_secret_in_any_log_line() {
    let mut files = 0;
    let mut lines = 0;
    let mut api_lines = 0;
    for entry in std::fs::read_dir(log_dir()).unwrap() {
        let path = entry.unwrap().path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        files += 1;
        for (n, line) in text.lines().enumerate() {
            lines += 1;
            api_lines += usize::from(line.contains("inferq_api"));
            assert!(
                !holds_api_key(line) && !KNOWN.iter().any(|s| line.contains(s)),
                "{}:{} holds a secret: {line}",
                path.display(),
                n + 1
            );
        }
    }
    // Not a vacuous pass: the suite ran, and its APIs logged.
    assert!(
        files > 10 && api_lines > 10,
        "only {files} log files, {lines} lines ({api_lines} from the APIs) in {}: run the \
         suite first",
        log_dir().display()
    );
}

#[test]
fn api_keys_are_recognised_in_a_line() {
    let key = format!("iqk_{}_{}", "0123456789abcdef", "a".repeat(64));
    assert!(holds_api_key(&format!("x {key} y")));
    assert!(!holds_api_key(&format!("iqk_{}", "0123456789abcdef")));
    assert!(!holds_api_key("key_id=0123456789abcdef"));
}
