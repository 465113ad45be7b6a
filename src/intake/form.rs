//! The upload form's text fields as received, and their validation into a [`Study`].

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone,
};

use crate::anatomy::{self, Side, Site};
use crate::config::Charset;
use crate::study::{Code, Exam, Order, Patient, Sex, Study};

/// The text fields of `POST /api/studies`, exactly as the client sent them.
#[derive(Default)]
pub struct RawForm {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub exam_date_time: Option<String>,
    pub exam_description: Option<String>,
    /// The phone's clock when the user pressed send, with its UTC offset. Phones keep
    /// network time and the box may not: it stands in for the box's clock.
    pub client_time: Option<String>,
    /// The worklist entry the patient was picked from, as `GET /api/worklist` gave it.
    pub worklist_entry: Option<String>,
    /// Where the photos were taken: one value for all of them (`bodySite`, ...) or one per
    /// photo in image order (`bodySite[]`, ...).
    pub sites: SiteFields,
}

/// The body site fields, each either given once for every photo or once per photo.
#[derive(Default)]
pub struct SiteFields {
    pub body_site: PerPhoto,
    pub laterality: PerPhoto,
    pub note: PerPhoto,
}

/// A field sent once (for every photo) or repeated with `[]` (one per photo).
#[derive(Default)]
pub struct PerPhoto {
    pub all: Option<String>,
    pub each: Vec<String>,
}

impl PerPhoto {
    /// The value for photo `i` of `count`: an error names the field when the per-photo
    /// values do not match the photos one to one.
    fn get(&self, field: &'static str, i: usize, count: usize) -> Result<&str, FormError> {
        if self.each.is_empty() {
            return Ok(self.all.as_deref().unwrap_or("").trim());
        }
        if self.all.is_some() {
            return Err(refuse(
                field,
                "was sent both once for all photos and once per photo; send one form",
            ));
        }
        if self.each.len() != count {
            return Err(refuse(
                field,
                format!(
                    "needs one value per photo, in image order: {} values for {count} photos",
                    self.each.len()
                ),
            ));
        }
        Ok(self.each[i].trim())
    }
}

/// The multipart names of the text fields, as the reference defines them.
/// `worklistEntry`, `clientTime` and the body site fields are ours: the reference has none.
pub const TEXT_FIELDS: [&str; 14] = [
    "patientId",
    "patientName",
    "birthDate",
    "sex",
    "examDateTime",
    "examDescription",
    "clientTime",
    "worklistEntry",
    "bodySite",
    "bodySite[]",
    "laterality",
    "laterality[]",
    "bodySiteNote",
    "bodySiteNote[]",
];

/// The longest body site note: a Long String's length, which fits a line on the phone.
pub const MAX_NOTE_CHARS: usize = 64;

/// A refused field. The message says what is wrong without repeating the value, because
/// messages can end up in logs and the values are patient data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FormError {
    pub field: &'static str,
    pub message: String,
}

fn refuse(field: &'static str, message: impl Into<String>) -> FormError {
    FormError {
        field,
        message: message.into(),
    }
}

impl RawForm {
    /// Stores a text field by its multipart name. Returns `false` for a name that is not
    /// one of [`TEXT_FIELDS`]; a field given twice is refused rather than guessed at.
    pub fn set(&mut self, name: &str, value: String) -> Result<bool, FormError> {
        let each = match name {
            "bodySite[]" => Some(("bodySite[]", &mut self.sites.body_site.each)),
            "laterality[]" => Some(("laterality[]", &mut self.sites.laterality.each)),
            "bodySiteNote[]" => Some(("bodySiteNote[]", &mut self.sites.note.each)),
            _ => None,
        };
        if let Some((field, values)) = each {
            // One per photo: more than the most photos a submission may carry is refused
            // here, before it costs memory.
            if values.len() >= crate::intake::MAX_IMAGES {
                return Err(refuse(field, "has more values than photos"));
            }
            values.push(value);
            return Ok(true);
        }
        let (field, slot) = match name {
            "patientId" => ("patientId", &mut self.patient_id),
            "patientName" => ("patientName", &mut self.patient_name),
            "birthDate" => ("birthDate", &mut self.birth_date),
            "sex" => ("sex", &mut self.sex),
            "examDateTime" => ("examDateTime", &mut self.exam_date_time),
            "examDescription" => ("examDescription", &mut self.exam_description),
            "clientTime" => ("clientTime", &mut self.client_time),
            "worklistEntry" => ("worklistEntry", &mut self.worklist_entry),
            "bodySite" => ("bodySite", &mut self.sites.body_site.all),
            "laterality" => ("laterality", &mut self.sites.laterality.all),
            "bodySiteNote" => ("bodySiteNote", &mut self.sites.note.all),
            _ => return Ok(false),
        };
        if slot.is_some() {
            return Err(refuse(field, "was sent more than once"));
        }
        *slot = Some(value);
        Ok(true)
    }

    /// The phone's clock as sent: RFC 3339 with its offset, seconds or finer. `None` when
    /// the client sent none (API clients of the reference).
    pub fn client_time(&self) -> Result<Option<DateTime<FixedOffset>>, FormError> {
        const F: &str = "clientTime";
        let Some(raw) = self.client_time.as_deref().map(str::trim) else {
            return Ok(None);
        };
        if raw.is_empty() {
            return Ok(None);
        }
        let t = DateTime::parse_from_rfc3339(raw).map_err(|_| {
            refuse(
                F,
                "must be the device's time in ISO 8601 with its UTC offset, such as 2026-11-30T14:05:09+08:00",
            )
        })?;
        // A phone's clock is off by minutes, not decades: outside this it is not a clock.
        if !(2000..=2199).contains(&t.year()) {
            return Err(refuse(F, "must be a year from 2000 to 2199"));
        }
        Ok(Some(t))
    }

    /// Validates every field. `box_now` is the box's clock: the phone's time (`clientTime`)
    /// replaces it when sent, for the exam time and the "not in the future" checks.
    /// `charset` is the character set the DICOM object will be written in, so a name that
    /// cannot be written is refused here.
    pub fn validate(
        &self,
        box_now: DateTime<FixedOffset>,
        charset: Charset,
    ) -> Result<Study, FormError> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_string();
        let phone = self.client_time()?;
        let now = phone.unwrap_or(box_now);
        let clock_correction = phone.map(|p| p - box_now).unwrap_or_default();

        let id = text(&self.patient_id);
        if id.is_empty() {
            return Err(refuse("patientId", "Patient ID is required"));
        }
        check_lo("patientId", &id, charset)?;

        let name = text(&self.patient_name);
        check_person_name(&name, charset)?;

        let birth_date = match text(&self.birth_date).as_str() {
            "" => None,
            s => Some(parse_birth_date(s, now.date_naive())?),
        };

        let sex = match text(&self.sex).to_ascii_uppercase().as_str() {
            "M" => Sex::Male,
            "F" => Sex::Female,
            "O" => Sex::Other,
            "U" | "" => Sex::Unknown,
            _ => return Err(refuse("sex", "must be M, F, O, U or empty")),
        };

        let time = match text(&self.exam_date_time).as_str() {
            "" => now,
            s => parse_exam_time(s, now)?,
        };

        let description = text(&self.exam_description);
        check_lo("examDescription", &description, charset)?;

        let mut patient = Patient {
            id,
            name,
            birth_date,
            sex,
            issuer: String::new(),
        };
        let order = match text(&self.worklist_entry).as_str() {
            "" => None,
            token => {
                let link = WorklistLink::parse(token)?;
                let (linked, order) = link.validate(charset)?;
                // The fields the page locked must still be the entry's: a different ID means
                // the page and the entry disagree about who this is, and we cannot tell which
                // is right.
                if linked.id != patient.id {
                    return Err(refuse(
                        "patientId",
                        "does not match the worklist entry picked; pick the entry again or clear the link",
                    ));
                }
                patient = linked;
                Some(order)
            }
        };

        Ok(Study {
            patient,
            exam: Exam {
                time,
                description,
                clock_correction,
            },
            order,
        })
    }

    /// Where each of `count` photos was taken, in image order: `None` for a photo sent
    /// without any body site field. Messages name the photo by position, never a value.
    pub fn sites(&self, count: usize, charset: Charset) -> Result<Vec<Option<Site>>, FormError> {
        let f = &self.sites;
        let mut out = Vec::with_capacity(count);
        for i in 0..count {
            let photo = i + 1;
            let value = f.body_site.get("bodySite", i, count)?;
            let side = f.laterality.get("laterality", i, count)?;
            let note = f.note.get("bodySiteNote", i, count)?;
            let region = match value {
                "" => None,
                v => Some(anatomy::find(v).ok_or_else(|| {
                    refuse(
                        "bodySite",
                        format!(
                            "photo {photo}: not a body site this gateway knows; use a key or SNOMED CT code from GET /api/settings/info (bodySites)"
                        ),
                    )
                })?),
            };
            let side = Side::parse(side)
                .map_err(|e| refuse("laterality", format!("photo {photo}: {e}")))?;
            match (region, side) {
                (None, Some(_)) => {
                    return Err(refuse(
                        "laterality",
                        format!("photo {photo}: a side needs a body site"),
                    ));
                }
                (Some(r), Some(_)) if !r.paired => {
                    return Err(refuse(
                        "laterality",
                        format!(
                            "photo {photo}: the {} has no left or right; leave the side empty",
                            r.meaning.to_lowercase()
                        ),
                    ));
                }
                _ => {}
            }
            if note.chars().count() > MAX_NOTE_CHARS {
                return Err(refuse(
                    "bodySiteNote",
                    format!("photo {photo}: at most {MAX_NOTE_CHARS} characters"),
                ));
            }
            check_chars("bodySiteNote", note, charset)?;
            out.push(if region.is_none() && note.is_empty() {
                None
            } else {
                Some(Site {
                    region,
                    side,
                    note: note.to_string(),
                })
            });
        }
        Ok(out)
    }
}

/// A worklist entry as the page sends it back (`worklistEntry`): the patient and the order,
/// in the words `GET /api/worklist` used. It is not secret or signed: whoever may upload may
/// also type any patient, so it is validated like every other field, no more.
#[derive(Clone, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorklistLink {
    pub patient_id: String,
    #[serde(default)]
    pub patient_name: String,
    /// YYYY-MM-DD or empty.
    #[serde(default)]
    pub birth_date: String,
    #[serde(default)]
    pub sex: String,
    #[serde(default)]
    pub issuer_of_patient_id: String,
    pub study_instance_uid: String,
    #[serde(default)]
    pub accession_number: String,
    #[serde(default)]
    pub requested_procedure_id: String,
    #[serde(default)]
    pub requested_procedure_description: String,
    #[serde(default)]
    pub step_id: String,
    #[serde(default)]
    pub step_description: String,
    #[serde(default)]
    pub protocol: Vec<Code>,
}

/// At most this many protocol codes are carried over; a step has one or two.
const MAX_PROTOCOL_CODES: usize = 8;

impl WorklistLink {
    pub fn from_study(patient: &Patient, order: &Order) -> Self {
        WorklistLink {
            patient_id: patient.id.clone(),
            patient_name: patient.name.clone(),
            birth_date: patient
                .birth_date
                .map(|d| d.format("%Y-%m-%d").to_string())
                .unwrap_or_default(),
            sex: patient.sex.dicom_code().to_string(),
            issuer_of_patient_id: patient.issuer.clone(),
            study_instance_uid: order.study_instance_uid.clone(),
            accession_number: order.accession_number.clone(),
            requested_procedure_id: order.requested_procedure_id.clone(),
            requested_procedure_description: order.requested_procedure_description.clone(),
            step_id: order.step_id.clone(),
            step_description: order.step_description.clone(),
            protocol: order.protocol_codes.clone(),
        }
    }

    /// The text the page carries and sends back.
    pub fn to_token(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    pub fn parse(token: &str) -> Result<Self, FormError> {
        serde_json::from_str(token).map_err(|_| {
            refuse(
                "worklistEntry",
                "is not a worklist entry this gateway gave; pick the entry from the list again",
            )
        })
    }

    /// The patient and order, each value checked as the DICOM object will hold it.
    pub fn validate(&self, charset: Charset) -> Result<(Patient, Order), FormError> {
        const F: &str = "worklistEntry";
        let t = |v: &str| v.trim().to_string();
        let id = t(&self.patient_id);
        if id.is_empty() {
            return Err(refuse(F, "has no Patient ID"));
        }
        check_lo(F, &id, charset)?;
        let name = t(&self.patient_name);
        check_person_name(&name, charset).map_err(|e| refuse(F, e.message))?;
        let birth_date = match t(&self.birth_date).as_str() {
            "" => None,
            // The hospital's record, written as it is: only a real date is required (a
            // birth year before 1900 exists in old records and must not block the photos).
            s => Some(
                NaiveDate::parse_from_str(s, "%Y-%m-%d")
                    .map_err(|_| refuse(F, "has a birth date that is not a real date"))?,
            ),
        };
        // As the worklist gave it: read leniently, as the worklist's own values are.
        let sex = crate::dicom::value::sex(&self.sex);
        let issuer = t(&self.issuer_of_patient_id);
        check_lo(F, &issuer, charset)?;
        let study_instance_uid = t(&self.study_instance_uid);
        if !crate::dicom::uid::is_valid(&study_instance_uid) {
            return Err(refuse(F, "has no valid Study Instance UID"));
        }
        let accession_number = t(&self.accession_number);
        check_sh(F, &accession_number, charset)?;
        let requested_procedure_id = t(&self.requested_procedure_id);
        check_sh(F, &requested_procedure_id, charset)?;
        let requested_procedure_description = t(&self.requested_procedure_description);
        check_lo(F, &requested_procedure_description, charset)?;
        let step_id = t(&self.step_id);
        check_sh(F, &step_id, charset)?;
        let step_description = t(&self.step_description);
        check_lo(F, &step_description, charset)?;
        if self.protocol.len() > MAX_PROTOCOL_CODES {
            return Err(refuse(F, "has too many protocol codes"));
        }
        let mut protocol_codes = Vec::with_capacity(self.protocol.len());
        for c in &self.protocol {
            let code = Code {
                value: t(&c.value),
                scheme: t(&c.scheme),
                meaning: t(&c.meaning),
            };
            check_lo(F, &code.value, charset)?;
            check_sh(F, &code.scheme, charset)?;
            check_lo(F, &code.meaning, charset)?;
            if !code.value.is_empty() {
                protocol_codes.push(code);
            }
        }
        Ok((
            Patient {
                id,
                name,
                birth_date,
                sex,
                issuer,
            },
            Order {
                study_instance_uid,
                accession_number,
                requested_procedure_id,
                requested_procedure_description,
                step_id,
                step_description,
                protocol_codes,
            },
        ))
    }
}

/// A DICOM Short String: at most 16 characters, otherwise as a Long String.
fn check_sh(field: &'static str, value: &str, charset: Charset) -> Result<(), FormError> {
    if value.chars().count() > 16 {
        return Err(refuse(field, "has a value longer than 16 characters"));
    }
    check_chars(field, value, charset)
}

/// A DICOM Long String: at most 64 characters, no backslash (it separates values), no
/// control characters, and encodable in the configured character set.
fn check_lo(field: &'static str, value: &str, charset: Charset) -> Result<(), FormError> {
    if value.chars().count() > 64 {
        return Err(refuse(field, "must be at most 64 characters"));
    }
    check_chars(field, value, charset)
}

fn check_chars(field: &'static str, value: &str, charset: Charset) -> Result<(), FormError> {
    if value.contains('\\') {
        return Err(refuse(field, "must not contain a backslash (\\)"));
    }
    if value.chars().any(char::is_control) {
        return Err(refuse(
            field,
            "must not contain control characters such as line breaks",
        ));
    }
    if !charset.can_encode(value) {
        return Err(refuse(
            field,
            format!(
                "contains characters that cannot be written in the character set {}; use ISO_IR 192 (UTF-8)",
                charset.code()
            ),
        ));
    }
    Ok(())
}

/// A DICOM Person Name: up to three component groups (alphabetic=ideographic=phonetic),
/// each at most 64 characters and at most five `^`-separated components.
fn check_person_name(value: &str, charset: Charset) -> Result<(), FormError> {
    const F: &str = "patientName";
    check_chars(F, value, charset)?;
    let groups: Vec<&str> = value.split('=').collect();
    if groups.len() > 3 {
        return Err(refuse(F, "must have at most three '='-separated groups"));
    }
    for g in groups {
        if g.chars().count() > 64 {
            return Err(refuse(
                F,
                "must be at most 64 characters (per '='-separated group)",
            ));
        }
        if g.split('^').count() > 5 {
            return Err(refuse(F, "must have at most five '^'-separated components"));
        }
    }
    Ok(())
}

fn parse_birth_date(s: &str, today: NaiveDate) -> Result<NaiveDate, FormError> {
    const F: &str = "birthDate";
    let shape_ok = s.len() == 10
        && s.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !shape_ok {
        return Err(refuse(F, "must be a date written YYYY-MM-DD"));
    }
    let date = NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| refuse(F, "is not a real calendar date"))?;
    if date > today {
        return Err(refuse(F, "must not be in the future"));
    }
    if date.year() < 1900 {
        return Err(refuse(F, "must be in 1900 or later"));
    }
    Ok(date)
}

/// ISO 8601 date-time, with or without an offset. Without one, the box's own time zone is
/// meant (the phone shows the same wall-clock time the nurse sees on the box's clinic).
fn parse_exam_time(
    s: &str,
    now: DateTime<FixedOffset>,
) -> Result<DateTime<FixedOffset>, FormError> {
    const F: &str = "examDateTime";
    let bad = || {
        refuse(
            F,
            "must be an ISO 8601 date and time such as 2024-05-01T14:30 or 2024-05-01T14:30:00+08:00",
        )
    };
    let parsed = if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        t
    } else {
        let naive = [
            "%Y-%m-%dT%H:%M:%S%.f",
            "%Y-%m-%dT%H:%M",
            "%Y-%m-%d %H:%M:%S%.f",
            "%Y-%m-%d %H:%M",
        ]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .ok_or_else(bad)?;
        local_to_fixed(naive).ok_or_else(bad)?
    };
    if parsed.year() < 1900 {
        return Err(refuse(F, "must be in 1900 or later"));
    }
    // A day of slack for a phone whose clock or time zone is off; beyond that it is a typo.
    if parsed > now + Duration::days(1) {
        return Err(refuse(F, "must not be in the future"));
    }
    Ok(parsed)
}

fn local_to_fixed(naive: NaiveDateTime) -> Option<DateTime<FixedOffset>> {
    // In the hour a clock goes back, the earlier reading is as good a guess as any.
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<FixedOffset> {
        DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00").unwrap()
    }

    fn form(pairs: &[(&str, &str)]) -> RawForm {
        let mut f = RawForm::default();
        for (k, v) in pairs {
            assert!(f.set(k, v.to_string()).unwrap());
        }
        f
    }

    fn err(pairs: &[(&str, &str)]) -> FormError {
        form(pairs).validate(now(), Charset::IsoIr192).unwrap_err()
    }

    #[test]
    fn minimal_form_is_valid_and_defaults_the_rest() {
        let s = form(&[("patientId", " P-001 ")])
            .validate(now(), Charset::IsoIr192)
            .unwrap();
        assert_eq!(s.patient.id, "P-001");
        assert_eq!(s.patient.name, "");
        assert_eq!(s.patient.birth_date, None);
        assert_eq!(s.patient.sex, Sex::Unknown);
        assert_eq!(s.exam.time, now());
    }

    #[test]
    fn full_form_keeps_every_value() {
        let s = form(&[
            ("patientId", "A123456"),
            ("patientName", "王大明"),
            ("birthDate", "1990-01-15"),
            ("sex", "f"),
            ("examDateTime", "2026-11-27T09:15"),
            ("examDescription", "Skin photo, left forearm"),
        ])
        .validate(now(), Charset::IsoIr192)
        .unwrap();
        assert_eq!(s.patient.name, "王大明");
        assert_eq!(s.patient.birth_date, NaiveDate::from_ymd_opt(1990, 1, 15));
        assert_eq!(s.patient.sex, Sex::Female);
        assert_eq!(s.exam.time.naive_local().to_string(), "2026-11-27 09:15:00");
        assert_eq!(s.exam.description, "Skin photo, left forearm");
    }

    #[test]
    fn the_phone_time_stands_in_for_a_box_clock_days_behind() {
        // The box (now()) is 2026-11-28 10:00 +08:00; the phone says three days later.
        let phone = "2026-12-01T10:00:05+08:00";
        let s = form(&[("patientId", "x"), ("clientTime", phone)])
            .validate(now(), Charset::IsoIr192)
            .unwrap();
        assert_eq!(s.exam.time, DateTime::parse_from_rfc3339(phone).unwrap());
        assert_eq!(
            s.exam.clock_correction,
            Duration::days(3) + Duration::seconds(5)
        );
        // A time the user typed is judged against the phone's clock, not the box's.
        let s = form(&[
            ("patientId", "x"),
            ("clientTime", phone),
            ("examDateTime", "2026-12-01T09:00:00+08:00"),
        ])
        .validate(now(), Charset::IsoIr192)
        .unwrap();
        assert_eq!(s.exam.time.naive_local().to_string(), "2026-12-01 09:00:00");
        for bad in ["tomorrow", "2026-12-01T10:00:05", "1999-12-31T23:00:00Z"] {
            let e = form(&[("patientId", "x"), ("clientTime", bad)])
                .validate(now(), Charset::IsoIr192)
                .unwrap_err();
            assert_eq!(e.field, "clientTime", "{bad}");
        }
        // Without a phone time, the box's clock as before.
        let s = form(&[("patientId", "x")])
            .validate(now(), Charset::IsoIr192)
            .unwrap();
        assert_eq!(s.exam.clock_correction, Duration::zero());
    }

    #[test]
    fn offsets_are_kept() {
        let s = form(&[
            ("patientId", "x"),
            ("examDateTime", "2026-11-27T09:15:00+09:00"),
        ])
        .validate(now(), Charset::IsoIr192)
        .unwrap();
        assert_eq!(s.exam.time.offset().local_minus_utc(), 9 * 3600);
        let s = form(&[
            ("patientId", "x"),
            ("examDateTime", "2026-11-27T00:15:00.5Z"),
        ])
        .validate(now(), Charset::IsoIr192)
        .unwrap();
        assert_eq!(s.exam.time.offset().local_minus_utc(), 0);
    }

    #[test]
    fn each_bad_field_is_named() {
        let long = "x".repeat(65);
        let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
            (vec![], "patientId"),
            (vec![("patientId", "   ")], "patientId"),
            (vec![("patientId", &long)], "patientId"),
            (vec![("patientId", "A\\B")], "patientId"),
            (vec![("patientId", "A\nB")], "patientId"),
            (
                vec![("patientId", "x"), ("patientName", &long)],
                "patientName",
            ),
            (
                vec![("patientId", "x"), ("patientName", "a=b=c=d")],
                "patientName",
            ),
            (
                vec![("patientId", "x"), ("birthDate", "15/01/1990")],
                "birthDate",
            ),
            (
                vec![("patientId", "x"), ("birthDate", "1990-1-15")],
                "birthDate",
            ),
            (
                vec![("patientId", "x"), ("birthDate", "2023-02-30")],
                "birthDate",
            ),
            (
                vec![("patientId", "x"), ("birthDate", "2099-01-01")],
                "birthDate",
            ),
            (
                vec![("patientId", "x"), ("birthDate", "1800-01-01")],
                "birthDate",
            ),
            (vec![("patientId", "x"), ("sex", "X")], "sex"),
            (
                vec![("patientId", "x"), ("examDateTime", "yesterday")],
                "examDateTime",
            ),
            (
                vec![("patientId", "x"), ("examDateTime", "2030-01-01T00:00")],
                "examDateTime",
            ),
            (
                vec![("patientId", "x"), ("examDescription", &long)],
                "examDescription",
            ),
        ];
        for (pairs, field) in cases {
            assert_eq!(err(&pairs).field, field, "{pairs:?}");
        }
    }

    fn sites(pairs: &[(&str, &str)], count: usize) -> Result<Vec<Option<Site>>, FormError> {
        form(pairs).sites(count, Charset::IsoIr192)
    }

    #[test]
    fn body_sites_per_photo_once_for_all_or_none() {
        let s = sites(
            &[
                ("bodySite[]", "forearm"),
                ("bodySite[]", ""),
                ("bodySite[]", "45206002"),
                ("laterality[]", "L"),
                ("laterality[]", ""),
                ("laterality[]", ""),
                ("bodySiteNote[]", ""),
                ("bodySiteNote[]", "after debridement"),
                ("bodySiteNote[]", ""),
            ],
            3,
        )
        .unwrap();
        let first = s[0].as_ref().unwrap();
        assert_eq!(first.region.unwrap().key, "forearm");
        assert_eq!(first.side, Some(Side::Left));
        let second = s[1].as_ref().unwrap();
        assert_eq!(
            (second.region, second.note.as_str()),
            (None, "after debridement")
        );
        assert_eq!(s[2].as_ref().unwrap().region.unwrap().key, "nose");

        let all = sites(&[("bodySite", "Knee"), ("laterality", "right")], 2).unwrap();
        assert!(
            all.iter()
                .all(|s| s.as_ref().unwrap().side == Some(Side::Right))
        );
        assert_eq!(sites(&[], 2).unwrap(), vec![None, None]);
    }

    #[test]
    fn bad_body_sites_name_the_field_and_the_photo() {
        type Case<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);
        let cases: [Case; 7] = [
            (&[("bodySite[]", "knee")], "bodySite", "2 photos"),
            (&[("bodySite", "spleen")], "bodySite", "photo 1"),
            (
                &[("bodySite", "nose"), ("laterality", "L")],
                "laterality",
                "no left or right",
            ),
            (&[("laterality", "R")], "laterality", "needs a body site"),
            (
                &[("bodySite", "knee"), ("laterality", "up")],
                "laterality",
                "L, R, B",
            ),
            (
                &[
                    ("bodySite", "knee"),
                    ("bodySite[]", "knee"),
                    ("bodySite[]", "knee"),
                ],
                "bodySite",
                "both",
            ),
            (&[("bodySiteNote", &"x".repeat(65))], "bodySiteNote", "64"),
        ];
        for (pairs, field, says) in cases {
            let e = sites(pairs, 2).unwrap_err();
            assert_eq!(e.field, field, "{pairs:?}");
            assert!(e.message.contains(says), "{pairs:?}: {}", e.message);
        }
        let mut many = RawForm::default();
        for _ in 0..crate::intake::MAX_IMAGES {
            many.set("bodySite[]", "knee".into()).unwrap();
        }
        assert!(many.set("bodySite[]", "knee".into()).is_err());
    }

    #[test]
    fn messages_never_repeat_the_value() {
        let canary = "CANARY\\7731";
        let e = err(&[("patientId", canary)]);
        assert!(!e.message.contains("CANARY"));
        let e = err(&[("patientId", "x"), ("birthDate", "CANARY")]);
        assert!(!e.message.contains("CANARY"));
    }

    #[test]
    fn latin1_charset_refuses_chinese_names_but_takes_umlauts() {
        let ok = form(&[("patientId", "x"), ("patientName", "Müller^Jörg")])
            .validate(now(), Charset::IsoIr100);
        assert!(ok.is_ok());
        let e = form(&[("patientId", "x"), ("patientName", "王大明")])
            .validate(now(), Charset::IsoIr100)
            .unwrap_err();
        assert_eq!(e.field, "patientName");
    }

    #[test]
    fn a_field_sent_twice_is_refused_and_unknown_names_are_reported() {
        let mut f = RawForm::default();
        assert!(f.set("patientId", "a".into()).unwrap());
        assert_eq!(
            f.set("patientId", "b".into()).unwrap_err().field,
            "patientId"
        );
        assert!(!f.set("somethingElse", "c".into()).unwrap());
    }

    fn link() -> WorklistLink {
        WorklistLink {
            patient_id: "A123".into(),
            patient_name: "王^大明".into(),
            birth_date: "1980-02-03".into(),
            sex: "M".into(),
            issuer_of_patient_id: "HOSP".into(),
            study_instance_uid: "1.2.840.99.1".into(),
            accession_number: "ACC1".into(),
            requested_procedure_id: "RP1".into(),
            requested_procedure_description: "Wound".into(),
            step_id: "S1".into(),
            step_description: "Heel".into(),
            protocol: vec![],
        }
    }

    #[test]
    fn a_worklist_entry_gives_its_patient_and_order() {
        let mut f = RawForm::default();
        f.set("patientId", "A123".into()).unwrap();
        f.set("patientName", "typed over".into()).unwrap();
        assert!(f.set("worklistEntry", link().to_token()).unwrap());
        let s = f.validate(now(), Charset::IsoIr192).unwrap();
        assert_eq!(
            s.patient.name, "王^大明",
            "the entry's name, not the typed one"
        );
        assert_eq!(s.patient.issuer, "HOSP");
        let order = s.order.unwrap();
        assert_eq!(order.study_instance_uid, "1.2.840.99.1");
        assert_eq!(order.accession_number, "ACC1");
    }

    #[test]
    fn a_worklist_entry_for_another_id_or_malformed_is_refused() {
        let mut f = RawForm::default();
        f.set("patientId", "B999".into()).unwrap();
        f.set("worklistEntry", link().to_token()).unwrap();
        assert_eq!(
            f.validate(now(), Charset::IsoIr192).unwrap_err().field,
            "patientId"
        );
        for bad in [
            "not json".to_string(),
            r#"{"patientId":"A123","studyInstanceUid":"1.2","extra":1}"#.to_string(),
            WorklistLink {
                study_instance_uid: "1.02.x".into(),
                ..link()
            }
            .to_token(),
            WorklistLink {
                accession_number: "x".repeat(17),
                ..link()
            }
            .to_token(),
        ] {
            let mut f = RawForm::default();
            f.set("patientId", "A123".into()).unwrap();
            f.set("worklistEntry", bad).unwrap();
            assert_eq!(
                f.validate(now(), Charset::IsoIr192).unwrap_err().field,
                "worklistEntry"
            );
        }
    }
}
