//! `/v1/files`: upload (multipart, `purpose=batch`, JSON Lines), describe, read, list and
//! delete files, stored in Redis and owned by the key's tenant (another tenant's file answers
//! as an unknown one). Batches read their input from here and write their output here.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::multipart::MultipartRejection;
use axum::extract::{Multipart, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use inferq_shared::queue::files::StoredFile;
use serde::Serialize;
use utoipa::ToSchema;

use super::{KEEP_SECS, ListQuery, OpenAiPath, OpenAiQuery, new_id, now_secs, page, valid_id};
use crate::caller::Principal;
use crate::error::{ApiError, OpenAiError, OpenAiErrorBody, OpenAiResult};
use crate::state::AppState;

/// What a file id starts with.
pub(crate) const FILE_PREFIX: &str = "file-";

/// The purpose of an upload (the only one inferq takes) and of a batch's output files.
pub(crate) const BATCH: &str = "batch";
pub(crate) const BATCH_OUTPUT: &str = "batch_output";

/// Most files one list answer holds, and its default (OpenAI's).
const MAX_LIST: usize = 10_000;

/// OpenAI's file object.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileObject {
    id: String,
    /// `file`.
    object: &'static str,
    bytes: u64,
    /// Unix seconds.
    created_at: u64,
    /// Unix seconds; the file is deleted then.
    expires_at: Option<u64>,
    filename: String,
    /// `batch` (an upload) or `batch_output` (a batch's output or error file).
    purpose: String,
    /// `processed` (deprecated by OpenAI; kept for older clients).
    status: &'static str,
    status_details: Option<String>,
}

impl From<StoredFile> for FileObject {
    fn from(f: StoredFile) -> Self {
        Self {
            id: f.id,
            object: "file",
            bytes: f.bytes,
            created_at: f.created_at,
            expires_at: f.expires_at,
            filename: f.filename,
            purpose: f.purpose,
            status: "processed",
            status_details: None,
        }
    }
}

page!(FileList, FileObject, "files");

/// `{"id", "object": "file", "deleted": true}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FileDeleted {
    id: String,
    object: &'static str,
    deleted: bool,
}

/// For the OpenAPI document: the multipart form.
#[derive(Debug, ToSchema)]
#[allow(dead_code, reason = "read by the OpenAPI document only")]
pub(crate) struct FileForm {
    /// The JSON Lines file of batch requests.
    #[schema(value_type = String, format = Binary)]
    file: Vec<u8>,
    /// `batch`.
    purpose: String,
}

/// The caller's file `id`, or `404` (unknown, expired, deleted, or another tenant's).
pub(crate) async fn owned_file(
    state: &AppState,
    caller: &Principal,
    id: &str,
) -> OpenAiResult<StoredFile> {
    let missing = || OpenAiError::not_found(format!("No such File object: {}", shown(id)));
    if !valid_id(id, FILE_PREFIX) {
        return Err(missing());
    }
    state
        .queue
        .file(id)
        .await
        .map_err(ApiError::from)?
        .filter(|f| f.tenant == caller.tenant)
        .ok_or_else(missing)
}

/// An id as an error message may repeat it.
fn shown(id: &str) -> String {
    id.chars().take(64).collect()
}

/// Uploads a file of batch requests (JSON Lines, UTF-8).
#[utoipa::path(
    post, path = "/v1/files", operation_id = "openai_upload_file", tag = "openai",
    request_body(content = FileForm, content_type = "multipart/form-data"),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 400, description = "`invalid_request_error`: no file, a purpose other than \
            `batch`, a file that is not UTF-8", body = OpenAiErrorBody),
        (status = 413, description = "The file is over INFERQ_MAX_UPLOAD_BYTES", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
    ),
)]
pub(crate) async fn upload_file(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    form: Result<Multipart, MultipartRejection>,
) -> OpenAiResult<Json<FileObject>> {
    let max = state.config.max_upload_bytes;
    let mut form = form.map_err(|e| OpenAiError::invalid(e.body_text(), None))?;
    let bad = |m: String, p: &str| OpenAiError::invalid(m, Some(p));
    let (mut file, mut purpose, mut expires) = (None, None, None);
    while let Some(mut field) = form.next_field().await.map_err(|e| {
        OpenAiError::invalid(format!("malformed multipart body: {}", e.body_text()), None)
    })? {
        let name = field.name().unwrap_or("").to_owned();
        let filename = field.file_name().unwrap_or("upload.jsonl").to_owned();
        let limit = if name == "file" { max } else { 1024 };
        let mut data = Vec::new();
        while let Some(chunk) = field.chunk().await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::UploadTooLarge(max).into()
            } else {
                OpenAiError::invalid(
                    format!("reading form part '{name}': {}", e.body_text()),
                    None,
                )
            }
        })? {
            if data.len() + chunk.len() > limit {
                return Err(if name == "file" {
                    ApiError::UploadTooLarge(max).into()
                } else {
                    bad(
                        format!("form part '{name}' is longer than {limit} bytes"),
                        &name,
                    )
                });
            }
            data.extend_from_slice(&chunk);
        }
        let text = || String::from_utf8_lossy(&data).trim().to_owned();
        match name.as_str() {
            "file" => file = Some((filename, data)),
            "purpose" => purpose = Some(text()),
            "expires_after[seconds]" => expires = Some(text()),
            // `expires_after[anchor]` can only be `created_at`; other parts are ignored.
            _ => {}
        }
    }
    let Some((filename, data)) = file else {
        return Err(bad("missing file part 'file'".into(), "file"));
    };
    match purpose.as_deref() {
        Some(BATCH) => {}
        Some(other) => {
            return Err(bad(
                format!(
                    "inferq takes files for batches only (purpose 'batch'), got '{}'",
                    shown(other)
                ),
                "purpose",
            ));
        }
        None => return Err(bad("missing form part 'purpose'".into(), "purpose")),
    }
    if std::str::from_utf8(&data).is_err() {
        return Err(bad(
            "the file is not UTF-8 text (JSON Lines)".into(),
            "file",
        ));
    }
    let keep = match expires {
        None => KEEP_SECS,
        Some(s) => s
            .parse::<u64>()
            .ok()
            .filter(|s| (3600..=KEEP_SECS).contains(s))
            .ok_or_else(|| {
                bad(
                    format!("expires_after[seconds] must be between 3600 and {KEEP_SECS}"),
                    "expires_after",
                )
            })?,
    };
    let now = now_secs();
    let stored = StoredFile {
        id: new_id(FILE_PREFIX),
        tenant: caller.tenant.clone(),
        filename: filename.chars().take(255).collect(),
        purpose: BATCH.to_owned(),
        bytes: data.len() as u64,
        created_at: now,
        expires_at: Some(now + keep),
    };
    state
        .queue
        .store_file(&stored, &data, Duration::from_secs(keep))
        .await
        .map_err(ApiError::from)?;
    Ok(Json(stored.into()))
}

/// The caller's tenant's files.
#[utoipa::path(
    get, path = "/v1/files", operation_id = "openai_list_files", tag = "openai",
    params(
        ("after" = Option<String>, Query, nullable = false, description = "A file id: the page starts after it"),
        ("limit" = Option<i64>, Query, nullable = false, minimum = 1, maximum = 10000,
         description = "Most files in the page (default 10000)"),
        ("order" = Option<String>, Query, nullable = false, description = "`desc` (newest first, the default) or `asc`"),
        ("purpose" = Option<String>, Query, nullable = false, description = "Only files of this purpose"),
    ),
    responses(
        (status = 200, description = "A page of files", body = FileList),
        (status = 400, description = "`invalid_request_error`: a bad `limit` or `order`", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn list_files(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiQuery(q): OpenAiQuery<ListQuery>,
) -> OpenAiResult<Json<FileList>> {
    let limit = q.limit(MAX_LIST, MAX_LIST)?;
    let ascending = match q.order.as_deref() {
        None | Some("desc") => false,
        Some("asc") => true,
        Some(_) => {
            return Err(OpenAiError::invalid(
                "order must be 'asc' or 'desc'",
                Some("order"),
            ));
        }
    };
    let page = state
        .queue
        .list_files(&caller.tenant, q.after.as_deref(), limit, ascending)
        .await
        .map_err(ApiError::from)?;
    let files: Vec<FileObject> = page
        .files
        .into_iter()
        .filter(|f| q.purpose.as_ref().is_none_or(|p| *p == f.purpose))
        .map(FileObject::from)
        .collect();
    Ok(Json(FileList::new(files, page.has_more)))
}

/// One file's description.
#[utoipa::path(
    get, path = "/v1/files/{file_id}", operation_id = "openai_retrieve_file", tag = "openai",
    params(("file_id" = String, Path, description = "The file's id")),
    responses(
        (status = 200, description = "The file", body = FileObject),
        (status = 404, description = "No such file (or another tenant's)", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn retrieve_file(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiPath(id): OpenAiPath<String>,
) -> OpenAiResult<Json<FileObject>> {
    Ok(Json(owned_file(&state, &caller, &id).await?.into()))
}

/// Deletes a file.
#[utoipa::path(
    delete, path = "/v1/files/{file_id}", operation_id = "openai_delete_file", tag = "openai",
    params(("file_id" = String, Path, description = "The file's id")),
    responses(
        (status = 200, description = "Deleted", body = FileDeleted),
        (status = 404, description = "No such file (or another tenant's)", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn delete_file(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiPath(id): OpenAiPath<String>,
) -> OpenAiResult<Json<FileDeleted>> {
    let file = owned_file(&state, &caller, &id).await?;
    let deleted = state
        .queue
        .delete_file(&file.id, &caller.tenant)
        .await
        .map_err(ApiError::from)?;
    if !deleted {
        return Err(OpenAiError::not_found(format!(
            "No such File object: {}",
            shown(&id)
        )));
    }
    Ok(Json(FileDeleted {
        id: file.id,
        object: "file",
        deleted: true,
    }))
}

/// A file's bytes.
#[utoipa::path(
    get, path = "/v1/files/{file_id}/content", operation_id = "openai_file_content", tag = "openai",
    params(("file_id" = String, Path, description = "The file's id")),
    responses(
        (status = 200, description = "The file's bytes", content_type = "application/octet-stream",
         body = String),
        (status = 404, description = "No such file (or another tenant's)", body = OpenAiErrorBody),
        (status = 500, description = "`server_error`: a bug", body = OpenAiErrorBody),
        (status = 503, description = "Redis is unavailable", body = OpenAiErrorBody,
         headers(("Retry-After" = u32))),
    ),
)]
pub(crate) async fn file_content(
    State(state): State<Arc<AppState>>,
    caller: Principal,
    OpenAiPath(id): OpenAiPath<String>,
) -> OpenAiResult<Response> {
    let file = owned_file(&state, &caller, &id).await?;
    let content = state
        .queue
        .file_content(&file.id)
        .await
        .map_err(ApiError::from)?
        .ok_or_else(|| OpenAiError::not_found(format!("No such File object: {}", shown(&id))))?;
    Ok((
        [(header::CONTENT_TYPE, "application/octet-stream")],
        content,
    )
        .into_response())
}
