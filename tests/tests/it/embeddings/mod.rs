//! The text_embeddings pipeline end to end: texts through the API and real workers running
//! all-MiniLM-L6-v2 (int8); vectors checked against sentence-transformers' published
//! similarities and against scripts/embedding_reference.py; the ways to submit texts and
//! what is refused; progress, cancellation, a killed worker.

mod input;
mod progress;
mod vectors;

/// `n` distinct texts of mixed lengths (a few words to a few hundred tokens).
fn corpus(n: usize) -> Vec<String> {
    const WORDS: &[&str] = &[
        "queue", "worker", "redis", "lease", "vector", "token", "model", "batch", "stream", "job",
        "retry", "cluster", "progress", "result", "upload", "tenant",
    ];
    (0..n)
        .map(|k| {
            let len = 3 + (k * 7919) % 60;
            let words: Vec<&str> = (0..len)
                .map(|i| WORDS[(k * 31 + i * 17) % WORDS.len()])
                .collect();
            format!("text {k}: {}.", words.join(" "))
        })
        .collect()
}
