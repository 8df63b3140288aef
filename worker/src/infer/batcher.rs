//! Batching decisions, free of ONNX Runtime and Redis: which jobs share one session run, and
//! how deliveries spread over idle inference threads.

/// What the batcher needs to know about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Shape {
    /// Rows the job contributes along the batch axis; `None` when its inputs disagree on it
    /// (it then runs alone).
    pub(crate) rows: Option<usize>,
    /// Every input's shape without the batch axis: jobs batch together only when these match.
    pub(crate) trailing: Vec<Vec<i64>>,
}

/// One session run: indices into the planned jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Run {
    /// Several jobs concatenated along the batch axis, in this order.
    Batch(Vec<usize>),
    /// One job on its own.
    Alone(usize),
}

/// Plans the session runs for one model's jobs. Without batching every job runs alone. With
/// it, jobs with the same trailing shapes are grouped (in arrival order) and cut into chunks
/// of at most `max_rows` rows; a job that is bigger than `max_rows` or whose inputs disagree on
/// the batch size runs alone.
pub(crate) fn plan(jobs: &[Shape], batching: bool, max_rows: usize) -> Vec<Run> {
    if !batching {
        return (0..jobs.len()).map(Run::Alone).collect();
    }
    let mut groups: Vec<(&[Vec<i64>], Vec<usize>)> = Vec::new();
    let mut alone = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        match job.rows {
            Some(r) if r <= max_rows => {
                match groups
                    .iter_mut()
                    .find(|(k, _)| *k == job.trailing.as_slice())
                {
                    Some((_, members)) => members.push(i),
                    None => groups.push((&job.trailing, vec![i])),
                }
            }
            _ => alone.push(i),
        }
    }
    let mut runs = Vec::new();
    for (_, members) in groups {
        let mut chunk: Vec<usize> = Vec::new();
        let mut chunk_rows = 0;
        for i in members {
            let r = jobs[i].rows.unwrap_or(1);
            if chunk_rows + r > max_rows && !chunk.is_empty() {
                runs.push(chunk_run(std::mem::take(&mut chunk)));
                chunk_rows = 0;
            }
            chunk_rows += r;
            chunk.push(i);
        }
        if !chunk.is_empty() {
            runs.push(chunk_run(chunk));
        }
    }
    runs.extend(alone.into_iter().map(Run::Alone));
    runs
}

fn chunk_run(chunk: Vec<usize>) -> Run {
    if chunk.len() == 1 {
        Run::Alone(chunk[0])
    } else {
        Run::Batch(chunk)
    }
}

/// Splits `items` evenly over up to `threads` parts, keeping their order, so idle threads
/// share what was read instead of one thread running it all.
pub(crate) fn split<T>(mut items: Vec<T>, threads: usize) -> Vec<Vec<T>> {
    let parts = threads.clamp(1, items.len().max(1));
    let size = items.len().div_ceil(parts).max(1);
    let mut out = Vec::with_capacity(parts);
    while items.len() > size {
        let rest = items.split_off(size);
        out.push(items);
        items = rest;
    }
    out.push(items);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(rows: usize, trailing: i64) -> Shape {
        Shape {
            rows: Some(rows),
            trailing: vec![vec![trailing]],
        }
    }

    #[test]
    fn split_spreads_evenly_over_idle_threads() {
        let sizes = |n: usize, threads| -> Vec<usize> {
            split((0..n).collect::<Vec<_>>(), threads)
                .iter()
                .map(Vec::len)
                .collect()
        };
        assert_eq!(sizes(1, 4), [1]);
        assert_eq!(sizes(5, 2), [3, 2]);
        assert_eq!(sizes(64, 2), [32, 32]);
        assert_eq!(sizes(3, 1), [3]);
        assert_eq!(sizes(0, 2), [0]);
    }

    #[test]
    fn without_batching_every_job_runs_alone() {
        let jobs = [job(1, 4), job(1, 4)];
        assert_eq!(plan(&jobs, false, 8), [Run::Alone(0), Run::Alone(1)]);
    }

    #[test]
    fn jobs_group_by_trailing_shape_and_chunk_by_rows() {
        let jobs = [
            job(2, 4),
            job(1, 3),
            job(3, 4),
            job(4, 4),
            job(9, 4),
            Shape {
                rows: None,
                trailing: vec![vec![4]],
            },
            job(1, 3),
        ];
        assert_eq!(
            plan(&jobs, true, 8),
            [
                // 2 + 3 rows fit; adding 4 would pass 8.
                Run::Batch(vec![0, 2]),
                Run::Alone(3),
                Run::Batch(vec![1, 6]),
                // Larger than a batch, and disagreeing inputs: alone.
                Run::Alone(4),
                Run::Alone(5),
            ]
        );
    }
}
