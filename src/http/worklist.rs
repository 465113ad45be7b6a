//! `GET /api/worklist`: the "Today" list; `POST /api/patients/lookup`: what the PACS knows
//! about one Patient ID. Both answer patient data, so neither is cached by anything.

use http::{Request, StatusCode};
use serde_json::{Value, json};

use super::access::Caller;
use super::body::{self, Response};
use super::error::ApiError;
use super::json::read_object;
use super::pace::RequestBody;
use crate::app::App;
use crate::intake::form::WorklistLink;
use crate::reception::{KnownPatient, ReceptionError};
use crate::study::Patient;
use crate::worklist::Entry;

pub async fn today(app: &App, req: &Request<RequestBody>) -> Result<Response, ApiError> {
    // `?fresh=1`: the nurse pulled to refresh.
    let mut fresh = false;
    for pair in req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
    {
        match pair {
            "fresh=1" | "fresh=true" => fresh = true,
            _ => {
                return Err(ApiError::validation(
                    Some("fresh"),
                    "the only query parameter is fresh=1",
                ));
            }
        }
    }
    let settings = app.settings.current();
    let today = app.reception.today(&settings, fresh).await?;
    let entries: Vec<Value> = today.entries.iter().map(entry_json).collect();
    Ok(body::json(
        StatusCode::OK,
        &json!({
            "enabled": today.enabled,
            "demo": today.demo,
            "truncated": today.truncated,
            "provider": today.provider,
            "entries": entries,
        }),
    ))
}

pub async fn lookup(
    app: &App,
    req: Request<RequestBody>,
    caller: Caller,
) -> Result<Response, ApiError> {
    // Every lookup counts, found or not: a name for each right guess is what someone
    // trying IDs one after another is after.
    let _counted = app
        .access
        .lookup_limiter
        .reserve(caller.client)
        .map_err(ApiError::too_many_lookups)?;
    let body = read_object(req, false).await?;
    let id = match body.get("patientId") {
        Some(Value::String(s)) => s.clone(),
        _ => {
            return Err(ApiError::validation(
                Some("patientId"),
                "patientId must be a string",
            ));
        }
    };
    let settings = app.settings.current();
    let answer = app
        .reception
        .lookup(&app.sender, &settings, &id)
        .await
        .map_err(|e| match e {
            ReceptionError::Refused(r) => ApiError::validation(Some("patientId"), r.to_string()),
            ReceptionError::Pacs(p) => p.into(),
        })?;
    let mut out = json!({
        "enabled": answer.enabled,
        "found": answer.found.is_some(),
    });
    if answer.enabled {
        out["source"] = json!(answer.source);
    }
    if let Some(KnownPatient { patient, studies }) = answer.found.as_deref() {
        out["patient"] = patient_json(patient);
        out["studies"] = json!(studies);
    }
    Ok(body::json(StatusCode::OK, &out))
}

fn patient_json(p: &Patient) -> Value {
    json!({
        "patientId": p.id,
        "patientName": p.name,
        "birthDate": p.birth_date.map(|d| d.format("%Y-%m-%d").to_string()).unwrap_or_default(),
        "sex": p.sex.dicom_code(),
        "issuerOfPatientId": p.issuer,
    })
}

fn entry_json(e: &Entry) -> Value {
    let o = &e.order;
    let mut v = patient_json(&e.patient);
    let extra = json!({
        "entry": WorklistLink::from_study(&e.patient, o).to_token(),
        "accessionNumber": o.accession_number,
        "studyInstanceUid": o.study_instance_uid,
        "requestedProcedureId": o.requested_procedure_id,
        "requestedProcedureDescription": o.requested_procedure_description,
        "stepId": o.step_id,
        "stepDescription": o.step_description,
        "stepStart": e.step_start.map(|t| t.format("%Y-%m-%dT%H:%M").to_string()).unwrap_or_default(),
        "modality": e.modality,
        "stationAets": e.station_aets,
        "protocol": o.protocol_codes,
    });
    if let (Value::Object(map), Value::Object(more)) = (&mut v, extra) {
        map.extend(more);
    }
    v
}
