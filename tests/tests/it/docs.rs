//! The docs stay true to the code: the committed OpenAPI document is the served one, the
//! configuration page lists exactly the variables the binaries read, every relative link
//! resolves, and the README stays a front door.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::support::spawn_app;

/// Set to `1`, the OpenAPI test rewrites `docs/openapi.json` instead of failing.
const BLESS: &str = "INFERQ_BLESS";
const REGENERATE: &str = "regenerate it with `INFERQ_BLESS=1 cargo test -p inferq-tests --all-features --test it -- docs::`";

const OPENAPI: &str = "docs/openapi.json";
const CONFIGURATION: &str = "docs/configuration.md";
/// The configuration page's one section for variables that only the scripts and tests read;
/// everything above it must be read by a binary.
const NOT_THE_BINARIES: &str = "## Read by the scripts and tests, not by the binaries";
/// The crates the binaries are built from (`inferq-bench` and the tests set variables, they do
/// not configure inferq).
const BINARY_SOURCES: [&str; 4] = ["api", "worker", "shared", "cli"];
/// Where the variables of that one section are read, and the files there that can read one.
const OTHER_SOURCES: [&str; 2] = ["scripts", "tests"];
const SCRIPT_SUFFIXES: [&str; 4] = [".rs", ".sh", ".py", ".toml"];
const README_MAX_LINES: usize = 250;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every file under `dir` whose name ends with one of `suffixes`, build output skipped.
fn files(dir: &Path, suffixes: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if path.is_dir() {
            if name != "target" && !name.starts_with('.') && name != "__pycache__" {
                files(&path, suffixes, out);
            }
        } else if suffixes.iter().any(|s| name.ends_with(s)) {
            out.push(path);
        }
    }
}

/// Where two JSON values first differ, as a JSON pointer; `None` when they are equal.
fn first_difference(a: &Value, b: &Value, at: &str) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| match (x.get(k), y.get(k)) {
                (Some(p), Some(q)) => first_difference(p, q, &format!("{at}/{k}")),
                _ => Some(format!("{at}/{k}")),
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (p, q))| first_difference(p, q, &format!("{at}/{i}"))),
        _ => (a != b).then(|| at.to_owned()),
    }
}

#[tokio::test]
async fn the_committed_openapi_document_is_what_the_api_serves() {
    let app = spawn_app().await;
    let r = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served: Value = r.json().await.unwrap();
    let pretty = serde_json::to_string_pretty(&served).unwrap() + "\n";

    let path = root().join(OPENAPI);
    if std::env::var(BLESS).as_deref() == Ok("1") {
        std::fs::write(&path, &pretty).unwrap();
    }
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{OPENAPI} cannot be read ({e}); {REGENERATE}"));
    let committed: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{OPENAPI} is not JSON ({e}); {REGENERATE}"));
    if let Some(at) = first_difference(&committed, &served, "") {
        panic!(
            "{OPENAPI} differs from what GET /openapi.json serves, first at `{at}`; {REGENERATE}"
        );
    }
    assert!(
        text == pretty,
        "{OPENAPI} holds the served document but not pretty-printed with a final newline; {REGENERATE}"
    );
}

/// The `INFERQ_…` names written as whole string literals: clap's `env = "…"` attributes,
/// `env::var("…")` / `var_os("…")` reads, and constants naming a variable. Doc comments and
/// messages that mention a variable inside a longer text do not count.
fn literal_names(source: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in source.match_indices("\"INFERQ_") {
        let rest = &source[start + 1..];
        let end = rest
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .unwrap_or(rest.len());
        if rest[end..].starts_with('"') && end > "INFERQ_".len() {
            names.insert(rest[..end].to_owned());
        }
    }
    names
}

/// The `INFERQ_…` names a text mentions anywhere (`INFERQ_…` alone is not a name).
fn mentioned_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("INFERQ_") {
        let rest = &text[start..];
        let end = rest["INFERQ_".len()..]
            .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
            .map_or(rest.len(), |n| n + "INFERQ_".len());
        if end > "INFERQ_".len() {
            names.insert(rest[..end].to_owned());
        }
    }
    names
}

#[test]
fn the_configuration_page_lists_exactly_the_variables_the_binaries_read() {
    let root = root();
    let mut sources = Vec::new();
    for dir in BINARY_SOURCES {
        files(&root.join(dir), &[".rs"], &mut sources);
    }
    let read_by_binaries: BTreeSet<String> = sources
        .iter()
        .flat_map(|path| literal_names(&read(path)))
        .collect();
    // A scanner that finds nothing would pass everything below.
    for known in [
        "INFERQ_REDIS_URL",
        "INFERQ_BIND",
        "INFERQ_LEASE_MS",
        "INFERQ_URL",
    ] {
        assert!(
            read_by_binaries.contains(known),
            "the scan of {BINARY_SOURCES:?} missed {known}: {read_by_binaries:?}"
        );
    }

    let page = read(&root.join(CONFIGURATION));
    // That section runs from its heading to the next one, or to the end of the page.
    let start = page
        .find(NOT_THE_BINARIES)
        .unwrap_or_else(|| panic!("{CONFIGURATION} has no section `{NOT_THE_BINARIES}`"));
    let body = start + NOT_THE_BINARIES.len();
    let end = page[body..].find("\n## ").map_or(page.len(), |n| body + n);
    let others = mentioned_names(&page[start..end]);
    let listed: BTreeSet<String> = mentioned_names(&page[..start])
        .union(&mentioned_names(&page[end..]))
        .cloned()
        .collect();

    let missing: Vec<_> = read_by_binaries.difference(&listed).collect();
    assert!(
        missing.is_empty(),
        "{CONFIGURATION} does not list {missing:?}, which the binaries read: add each to the \
         table of its concern, with its default and meaning"
    );
    let stale: Vec<_> = listed.difference(&read_by_binaries).collect();
    assert!(
        stale.is_empty(),
        "{CONFIGURATION} names {stale:?}, which no binary reads (no \"INFERQ_…\" literal in \
         {BINARY_SOURCES:?}): remove them, or move a script's or test's variable to \
         `{NOT_THE_BINARIES}`"
    );
    let misplaced: Vec<_> = others.intersection(&read_by_binaries).collect();
    assert!(
        misplaced.is_empty(),
        "{misplaced:?} are read by the binaries: list them above `{NOT_THE_BINARIES}`"
    );

    let mut other_files = Vec::new();
    for dir in OTHER_SOURCES {
        files(&root.join(dir), &SCRIPT_SUFFIXES, &mut other_files);
    }
    let other_texts: Vec<String> = other_files
        .iter()
        .filter_map(|path| std::fs::read_to_string(path).ok())
        .collect();
    for name in &others {
        assert!(
            other_texts
                .iter()
                .any(|t| mentioned_names(t).contains(name)),
            "{CONFIGURATION} says the scripts or tests read {name}, but nothing in \
             {OTHER_SOURCES:?} names it"
        );
    }
}

/// The lines of a markdown text outside fenced code blocks.
fn prose_lines(text: &str) -> Vec<&str> {
    let mut fenced = false;
    let mut lines = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced {
            lines.push(line);
        }
    }
    lines
}

/// The anchors of a markdown file's headings, as GitHub makes them: lower case, spaces to
/// hyphens, other punctuation dropped, `-1`, `-2`… for repeats.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut anchors = BTreeSet::new();
    for line in prose_lines(text) {
        let heading = line.starts_with('#').then(|| line.trim_start_matches('#'));
        let Some(title) = heading.and_then(|h| h.strip_prefix(' ')) else {
            continue;
        };
        let slug: String = title
            .trim()
            .trim_end_matches('#')
            .trim()
            .to_lowercase()
            .chars()
            .filter_map(|c| match c {
                ' ' => Some('-'),
                c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
                _ => None,
            })
            .collect();
        let mut anchor = slug.clone();
        let mut n = 0;
        while !anchors.insert(anchor.clone()) {
            n += 1;
            anchor = format!("{slug}-{n}");
        }
    }
    anchors
}

/// The targets of a markdown text's inline links, outside code blocks and code spans.
fn link_targets(text: &str) -> Vec<String> {
    let mut targets = Vec::new();
    for line in prose_lines(text) {
        // Drop code spans: what sits between backticks is code, not a link.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join("``");
        for (start, _) in prose.match_indices("](") {
            let rest = &prose[start + 2..];
            if let Some(end) = rest.find(')') {
                targets.push(rest[..end].trim().to_owned());
            }
        }
    }
    targets
}

#[test]
fn every_relative_link_in_the_docs_resolves() {
    let root = root();
    let mut pages = vec![root.join("README.md")];
    files(&root.join("docs"), &[".md"], &mut pages);
    assert!(pages.len() > 8, "the docs pages are missing: {pages:?}");

    let mut broken = Vec::new();
    let mut checked = 0;
    for page in &pages {
        let text = read(page);
        for target in link_targets(&text) {
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                page.clone()
            } else {
                page.parent().unwrap().join(path)
            };
            let name = page.strip_prefix(&root).unwrap().display();
            if !file.exists() {
                broken.push(format!("{name}: ({target}): no such file"));
            } else if !anchor.is_empty()
                && file.extension().is_some_and(|e| e == "md")
                && !anchors(&read(&file)).contains(anchor)
            {
                broken.push(format!("{name}: ({target}): no such heading"));
            }
        }
    }
    assert!(checked > 20, "only {checked} relative links found");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_readme_is_a_front_door_of_at_most_250_lines() {
    let readme = read(&root().join("README.md"));
    let lines = readme.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines, more than {README_MAX_LINES}: it is the front door (what \
         inferq is, the two commands, a short tour, links); move the detail to a page in docs/"
    );
    // CI (`.ci/run`) runs the README's test command; the README must name it as it is.
    assert!(
        readme.contains("scripts/test.sh"),
        "README.md lost `scripts/test.sh`"
    );
    assert!(
        readme.contains("scripts/run.sh"),
        "README.md lost `scripts/run.sh`"
    );
}
