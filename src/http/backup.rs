//! `POST /api/backup` (the configuration as a download) and `POST /api/restore` (a backup
//! file, previewed or applied).

use bytes::Bytes;
use http::{HeaderValue, Request, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use serde_json::Value;

use super::access::{Caller, admin_hash, check_password};
use super::body::{self, Response};
use super::error::ApiError;
use super::form;
use super::json::read_object;
use super::pace::RequestBody;
use crate::app::App;
use crate::backup::{self, Here, MAX_FILE, RestoreError};
use crate::telemetry::events::Actor;

/// The restore form: the file (at most [`MAX_FILE`]), a passphrase and a flag, with room
/// for the parts' headers.
const RESTORE_BODY_LIMIT: u64 = MAX_FILE as u64 + 8 * 1024;
/// The passphrase and apply fields are short.
const FIELD_LIMIT: u64 = 2 * 1024;
/// Parts in the form at most: three are used; a few more from a browser are skipped.
const MAX_PARTS: usize = 8;

/// `{"includeSecrets": bool, "password": "...", "passphrase": "..."}` → the backup file.
/// With secrets the admin password is asked again (a session left open on a shared
/// computer must not be enough to carry the secrets away), and the file is encrypted; a box
/// without an admin password gives no secrets at all.
pub async fn post_backup(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let body = read_object(req, true).await?;
    if let Some(unknown) = body
        .keys()
        .find(|k| !["includeSecrets", "password", "passphrase"].contains(&k.as_str()))
    {
        return Err(ApiError::validation(
            Some(unknown),
            format!("unknown field {unknown}"),
        ));
    }
    let include_secrets = match body.get("includeSecrets") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(ApiError::validation(
                Some("includeSecrets"),
                "includeSecrets must be true or false",
            ));
        }
    };
    let text = |name: &str| match body.get(name) {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(ApiError::validation(
            Some(name),
            format!("{name} must be a string"),
        )),
    };
    let (password, passphrase) = (text("password")?, text("passphrase")?);
    if include_secrets {
        // Judged before the password, so a short passphrase costs no password attempt.
        backup::check_passphrase(&passphrase).map_err(ApiError::from)?;
        // Secrets leave the box only for someone who knows the admin password: on a box
        // without one, anyone on the network could carry them away (a new DICOMweb address
        // does not get the old password either).
        let Some(hash) = admin_hash(app)? else {
            return Err(ApiError::validation(
                Some("includeSecrets"),
                "a backup with secrets needs an admin password: set one on the settings page first",
            ));
        };
        check_password(app, caller, password, hash)
            .await
            .map_err(|e| e.for_field("password"))?;
    }
    let settings = app.settings.current();
    let facts = backup::Facts::gather().await;
    let doc = backup::document_now(&settings, &facts, include_secrets);
    let plain = serde_json::to_vec_pretty(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    let bytes = if include_secrets {
        backup::off_thread(move || backup::seal(&plain, &passphrase))
            .await
            .map_err(|e| ApiError::internal(e.to_string()))??
    } else {
        plain
    };
    app.events
        .backup(include_secrets, Actor::Admin(caller.client));
    let when = chrono::Local::now().format("%Y%m%d-%H%M").to_string();
    let name = backup::file_name(&facts.hostname, &when, include_secrets);
    let content_type = if include_secrets {
        "application/octet-stream"
    } else {
        "application/json"
    };
    let mut resp = body::bytes(StatusCode::OK, content_type, bytes);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\"")) {
        resp.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}

/// The restore form as received.
#[derive(Default)]
struct RestoreForm {
    file: Option<Bytes>,
    passphrase: Option<String>,
    apply: bool,
}

/// `multipart/form-data` with `file`, `passphrase` (for an encrypted file) and `apply`
/// (`true` applies; without it the answer is only a preview).
pub async fn post_restore(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    let form = read_form(req).await?;
    let Some(file) = form.file else {
        return Err(ApiError::validation(
            Some("file"),
            "choose a backup file (the form's file field)",
        ));
    };
    let actor = Actor::Admin(caller.client);
    let refused = |e: RestoreError| {
        if let Some(why) = e.refusal() {
            app.events.restore(Vec::new(), Some(why), actor);
        }
        ApiError::from(e)
    };
    let passphrase = form.passphrase;
    let opened = backup::off_thread(move || backup::open(&file, passphrase.as_deref()))
        .await
        .map_err(|e| ApiError::internal(e.to_string()))?
        .map_err(refused)?;
    let current = app.settings.current();
    let env = backup::process_env();
    let facts = backup::Facts::of_this_box();
    let here = Here {
        settings: &current,
        env: &env,
        facts: &facts,
    };
    let plan = backup::plan(&opened, here, |s| app.sender.check(s)).map_err(refused)?;
    if !form.apply {
        return Ok(body::json(StatusCode::OK, &plan.report));
    }
    let report = backup::apply(plan, &app.settings, |s| app.sender.check(s))
        .await
        .map_err(refused)?;
    // A new provider, or lookups turned off: answers from before must not be served.
    app.reception.forget().await;
    app.events.restore(report.fields(), None, actor);
    // The time helper's request follows restored time settings, as after a PUT.
    app.settings_changed();
    log::info!(changed = report.changes.len(), restart = report.restart_needed; "configuration restored");
    Ok(body::json(StatusCode::OK, &report))
}

async fn read_form(req: Request<RequestBody>) -> Result<RestoreForm, ApiError> {
    let boundary = form::boundary(&req).ok_or_else(|| {
        ApiError::unsupported_media_type(
            "a restore must be sent as multipart/form-data with the backup in its file field",
        )
    })?;
    let too_large = || {
        ApiError::too_large(format!(
            "a backup file is at most {} KB; this is not one",
            MAX_FILE / 1024
        ))
    };
    let declared = form::declared_length(&req);
    if declared.is_some_and(|n| n > RESTORE_BODY_LIMIT) {
        return Err(too_large());
    }
    let body = Limited::new(req.into_body(), RESTORE_BODY_LIMIT as usize).into_data_stream();
    let limits = multer::SizeLimit::new()
        .whole_stream(RESTORE_BODY_LIMIT)
        .per_field(FIELD_LIMIT)
        .for_field("file", MAX_FILE as u64);
    let mut multipart = multer::Multipart::with_constraints(
        body,
        boundary,
        multer::Constraints::new().size_limit(limits),
    );
    let fail = |e: multer::Error| ApiError::from_multipart(e, too_large);
    let mut form = RestoreForm::default();
    let mut seen = Vec::new();
    let mut parts = 0;
    while let Some(field) = multipart.next_field().await.map_err(fail)? {
        parts += 1;
        if parts > MAX_PARTS {
            return Err(ApiError::validation(None, "the form has too many parts"));
        }
        let name = field.name().unwrap_or("").to_string();
        if !matches!(name.as_str(), "file" | "passphrase" | "apply") {
            field.bytes().await.map_err(fail)?;
            continue;
        }
        if seen.contains(&name) {
            return Err(ApiError::validation(
                Some(&name),
                format!("{name} is given twice"),
            ));
        }
        let bytes = field.bytes().await.map_err(fail)?;
        let text = || {
            String::from_utf8(bytes.to_vec()).map_err(|_| {
                ApiError::validation(Some(&name), format!("{name} must be UTF-8 text"))
            })
        };
        match name.as_str() {
            "file" => form.file = Some(bytes.clone()),
            "passphrase" => form.passphrase = Some(text()?),
            _ => {
                form.apply = match text()?.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => {
                        return Err(ApiError::validation(
                            Some("apply"),
                            "apply must be true (apply) or false (preview only)",
                        ));
                    }
                }
            }
        }
        seen.push(name);
    }
    Ok(form)
}
