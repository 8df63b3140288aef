//! Running one model's jobs on a session the calling inference thread owns: decode, plan the
//! batches, run, encode; a batched run that fails is retried job by job.

use std::collections::HashMap;
use std::sync::Arc;

use inferq_shared::job::ErrorCode;
use inferq_shared::model::ModelInfo;
use ort::session::Session;
use ort::value::ValueType;

use super::Ran;
use super::batcher::{self, Run, Shape};
use super::codec::{Decoded, decode, encode, failed, to_value};
use super::models::ModelSpec;
use super::runtime::{EngineError, open_session};

/// One session per model, owned by one inference thread.
pub struct Runner {
    sessions: HashMap<String, (Session, Arc<ModelInfo>)>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("models", &self.sessions.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Runner {
    pub fn new(models: &[ModelSpec], intra_threads: usize) -> Result<Self, EngineError> {
        let sessions = models
            .iter()
            .map(|m| {
                Ok((
                    m.info.name.clone(),
                    (open_session(&m.path, intra_threads)?, m.info.clone()),
                ))
            })
            .collect::<Result<_, EngineError>>()?;
        Ok(Self { sessions })
    }

    /// Runs the jobs of one model and returns one outcome per payload, in order. Compatible
    /// jobs share a session run when the model batches; a run that fails is retried job by job
    /// so one bad input never fails its batch-mates.
    pub fn run(&mut self, model: &str, payloads: &[&[u8]]) -> Vec<Ran> {
        let Some((session, info)) = self.sessions.get_mut(model) else {
            return payloads
                .iter()
                .map(|_| {
                    Err(failed(
                        ErrorCode::UnknownModel,
                        format!("this worker does not serve model '{model}'"),
                    ))
                })
                .collect();
        };
        let info = info.clone();
        let mut outcomes: Vec<Option<Ran>> = vec![None; payloads.len()];
        let mut decoded: Vec<(usize, Option<Decoded>)> = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            match decode(&info, p) {
                Ok(d) => decoded.push((i, Some(d))),
                Err(e) => outcomes[i] = Some(Err(e)),
            }
        }
        let shapes: Vec<Shape> = decoded
            .iter()
            .map(|(_, d)| {
                let d = d.as_ref().expect("decoded jobs are present until planned");
                Shape {
                    rows: d.rows(),
                    trailing: d.trailing_shapes(),
                }
            })
            .collect();
        for run in batcher::plan(&shapes, info.batching, info.max_batch_size) {
            let mut take = |k: usize| {
                let (i, d) = &mut decoded[k];
                (*i, d.take().expect("each job is planned once"))
            };
            match run {
                Run::Alone(k) => {
                    let (i, d) = take(k);
                    outcomes[i] = Some(run_one(session, &info, d));
                }
                Run::Batch(ks) => {
                    let jobs = ks.into_iter().map(&mut take).collect();
                    run_batch(session, &info, jobs, &mut outcomes);
                }
            }
        }
        outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Err(failed(ErrorCode::Internal, "no outcome was produced")))
            })
            .collect()
    }
}

fn run_one(session: &mut Session, info: &ModelInfo, job: Decoded) -> Ran {
    let wanted = job.outputs.clone();
    let inputs: Result<Vec<_>, _> = info
        .inputs
        .iter()
        .zip(job.inputs)
        .map(|(spec, (shape, data))| to_value(shape, data).map(|v| (spec.name.clone(), v)))
        .collect();
    let result = inputs.and_then(|inputs| {
        let outputs = session.run(inputs)?;
        Ok(encode(info, &outputs, wanted.as_deref(), None))
    });
    match result {
        Ok(ran) => ran,
        Err(e) => Err(failed(
            ErrorCode::InferenceError,
            format!("the model rejected the input: {e}"),
        )),
    }
}

/// Concatenates jobs along the leading dimension, runs once and splits the outputs back.
fn run_batch(
    session: &mut Session,
    info: &ModelInfo,
    jobs: Vec<(usize, Decoded)>,
    outcomes: &mut [Option<Ran>],
) {
    let row_counts: Vec<usize> = jobs.iter().map(|(_, d)| d.rows().unwrap_or(1)).collect();
    let total: usize = row_counts.iter().sum();
    let mut merged = Vec::with_capacity(info.inputs.len());
    for k in 0..info.inputs.len() {
        let (first_shape, first_data) = &jobs[0].1.inputs[k];
        let mut shape = first_shape.clone();
        shape[0] = total as i64;
        let mut data = first_data.clone();
        for (_, d) in &jobs[1..] {
            data.extend_from(&d.inputs[k].1);
        }
        merged.push((shape, data));
    }
    let inputs: Result<Vec<_>, _> = info
        .inputs
        .iter()
        .zip(merged)
        .map(|(spec, (shape, data))| to_value(shape, data).map(|v| (spec.name.clone(), v)))
        .collect();
    let batched = match inputs.and_then(|inputs| session.run(inputs)) {
        Ok(outputs) => {
            let fits = outputs.iter().all(|(_, v)| {
                matches!(v.dtype(), ValueType::Tensor { shape, .. } if shape.first() == Some(&(total as i64)))
            });
            if fits {
                let mut offset = 0;
                for ((i, d), r) in jobs.iter().zip(&row_counts) {
                    let rows = Some((offset, *r, total));
                    outcomes[*i] = Some(encode(info, &outputs, d.outputs.as_deref(), rows));
                    offset += r;
                }
            }
            fits
        }
        Err(e) => {
            tracing::debug!(error = %e, jobs = jobs.len(), "batched run failed; running jobs one by one");
            false
        }
    };
    if !batched {
        for (i, d) in jobs {
            outcomes[i] = Some(run_one(session, info, d));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::test_models;

    fn json(result: &[u8]) -> String {
        inferq_shared::payload::result_to_json(result).unwrap()
    }

    #[test]
    fn a_batch_splits_back_per_job_and_a_bad_job_fails_alone() {
        let models = test_models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let job = |rows: &str, shape: &str| {
            format!(
                r#"{{"model":"linear","inputs":[{{"name":"x","shape":{shape},"datatype":"FP32","data":{rows}}}]}}"#
            )
        };
        let payloads = [
            job("[1,2,3,4]", "[1,4]"),
            job("[1,2,3]", "[1,3]"),
            job("[[0,0,0,0],[1,0,0,0]]", "[2,4]"),
        ];
        let refs: Vec<&[u8]> = payloads.iter().map(|p| p.as_bytes()).collect();
        let out = runner.run("linear", &refs);
        let Ok(a) = &out[0] else { panic!("{out:?}") };
        assert_eq!(
            json(a),
            r#"{"outputs":[{"name":"y","shape":[1,3],"datatype":"FP32","data":[7.5,7.5,10.0]}]}"#
        );
        assert!(
            matches!(&out[1], Err(e) if e.code == ErrorCode::ShapeMismatch),
            "{out:?}"
        );
        let Ok(c) = &out[2] else { panic!("{out:?}") };
        assert_eq!(
            json(c),
            r#"{"outputs":[{"name":"y","shape":[2,3],"datatype":"FP32","data":[0.5,-0.5,1.0,0.6,-0.3,1.3]}]}"#
        );
    }

    /// Release builds lack the `test-hooks` feature: a job asking for a crash runs normally.
    #[cfg(not(feature = "test-hooks"))]
    #[test]
    fn test_hooks_are_inert_without_the_feature() {
        let models = test_models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let payload = r#"{"model":"linear","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"parameters":{"test_hook":"abort_worker"}}"#;
        let out = runner.run("linear", &[payload.as_bytes()]);
        assert!(matches!(&out[0], Ok(_)), "{out:?}");
    }

    #[test]
    fn non_finite_outputs_are_spelled_as_strings() {
        let models = test_models();
        let mut runner = Runner::new(&models, 1).unwrap();
        let payload = r#"{"model":"linear","inputs":[{"name":"x","shape":[1,4],"datatype":"FP32","data":["NaN",0,0,0]}]}"#;
        let out = runner.run("linear", &[payload.as_bytes()]);
        let Ok(result) = &out[0] else {
            panic!("{out:?}")
        };
        assert_eq!(
            json(result),
            r#"{"outputs":[{"name":"y","shape":[1,3],"datatype":"FP32","data":["NaN","NaN","NaN"]}]}"#
        );
    }
}
