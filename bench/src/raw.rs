//! The raw limit: the model run in a tight in-process loop, laid out like a worker (one session
//! with one intra-op thread per inference thread), with no queue, HTTP or JSON in the way.

use std::path::Path;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use inferq_worker::infer::runtime as session;
use ort::value::{Tensor, ValueType};

use crate::args::Args;

/// Rows per second one layout sustained at one batch size.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RawResult {
    pub batch: usize,
    pub threads: usize,
    pub rows_per_sec: f64,
}

/// The model's first input: its name and, when fixed, its width (the last dimension).
pub(crate) fn model_input(path: &Path) -> anyhow::Result<(String, Option<usize>)> {
    let session = session::open_session(path, 1)?;
    let input = session
        .inputs()
        .first()
        .with_context(|| format!("{} has no inputs", path.display()))?;
    let width = match input.dtype() {
        ValueType::Tensor { shape, .. } => shape
            .last()
            .and_then(|&d| usize::try_from(d).ok())
            .filter(|&d| d > 0),
        _ => None,
    };
    Ok((input.name().to_owned(), width))
}

/// Runs `threads` sessions side by side for `duration`, each on its own `[batch, width]` input,
/// and counts the rows they get through.
pub(crate) fn measure(
    path: &Path,
    input: &str,
    width: usize,
    threads: usize,
    batch: usize,
    duration: Duration,
) -> anyhow::Result<RawResult> {
    // Sessions open and warm up first; the clock starts when every thread is ready.
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (path, input, start) = (path.to_owned(), input.to_owned(), start.clone());
            std::thread::Builder::new()
                .name(format!("raw-{t}"))
                .spawn(move || -> anyhow::Result<f64> {
                    let opened = session::open_session(&path, 1).map_err(anyhow::Error::from);
                    let setup = opened.and_then(|mut session| {
                        let data = crate::load::input_data(t as u64, batch * width);
                        let tensor = Tensor::from_array((vec![batch as i64, width as i64], data))?;
                        session.run(ort::inputs![input.as_str() => &tensor])?;
                        Ok((session, tensor))
                    });
                    // Every thread reaches the barrier, even one that failed, so none waits forever.
                    start.wait();
                    let (mut session, tensor) = setup?;
                    let began = Instant::now();
                    let mut runs = 0u64;
                    while began.elapsed() < duration {
                        session.run(ort::inputs![input.as_str() => &tensor])?;
                        runs += 1;
                    }
                    Ok((runs * batch as u64) as f64 / began.elapsed().as_secs_f64())
                })
                .context("spawning a raw inference thread")
        })
        .collect::<anyhow::Result<_>>()?;
    let mut rows_per_sec = 0.0;
    for h in handles {
        match h.join() {
            Ok(rate) => rows_per_sec += rate?,
            Err(_) => bail!("a raw inference thread panicked"),
        }
    }
    Ok(RawResult {
        batch,
        threads,
        rows_per_sec,
    })
}

/// Runs `f` on a plain thread (not tokio's blocking pool, which would hold the process open
/// on Ctrl-C until the raw loop ends).
pub(crate) async fn off_runtime<T: Send + 'static>(
    f: impl FnOnce() -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.await.context("the raw benchmark thread panicked")?
}

/// The raw loop at batch 1 and at the max batch, on `threads` sessions.
pub(crate) async fn raw_limits(
    args: &Args,
    onnx: &Path,
    threads: usize,
) -> anyhow::Result<(RawResult, RawResult)> {
    let (path, lib, width, batch) = (
        onnx.to_owned(),
        args.ort_lib.clone(),
        args.width,
        args.max_batch,
    );
    let secs = Duration::from_secs_f64(args.raw_secs.max(0.1));
    eprintln!(
        "raw loop: {threads} thread(s), batch 1 and {batch}, {:.1} s each ...",
        secs.as_secs_f64()
    );
    off_runtime(move || {
        session::init_runtime(&lib)?;
        let (input, found) = model_input(&path)?;
        let width = width
            .or(found)
            .context("the model's input width is not fixed; pass --width")?;
        let one = measure(&path, &input, width, threads, 1, secs)?;
        let many = measure(&path, &input, width, threads, batch, secs)?;
        Ok((one, many))
    })
    .await
}
