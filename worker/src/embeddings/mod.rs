//! The `text_embeddings` pipeline: texts in, all-MiniLM-L6-v2 sentence vectors out.
//! [`pipeline`] plugs it into the consume loop as a kind of job and runs one job's texts;
//! [`pool`] pools the texts of every running job and cuts ONNX Runtime runs from them by a
//! token budget; [`engine`] runs the threads that tokenize ([`tokens`]) and embed them.

mod engine;
mod pipeline;
mod pool;
mod tokens;

pub(crate) use pipeline::{EmbeddingConfig, EmbeddingJobs};
