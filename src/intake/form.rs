//! The upload form's text fields as received, and their validation into a [`Study`].

use chrono::{
    DateTime, Datelike, Duration, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone,
};

use crate::config::Charset;
use crate::study::{Exam, Patient, Sex, Study};

/// The text fields of `POST /api/studies`, exactly as the client sent them.
#[derive(Default)]
pub struct RawForm {
    pub patient_id: Option<String>,
    pub patient_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub exam_date_time: Option<String>,
    pub exam_description: Option<String>,
}

/// The multipart names of the text fields, as the reference defines them.
pub const TEXT_FIELDS: [&str; 6] = [
    "patientId",
    "patientName",
    "birthDate",
    "sex",
    "examDateTime",
    "examDescription",
];

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
        let (field, slot) = match name {
            "patientId" => ("patientId", &mut self.patient_id),
            "patientName" => ("patientName", &mut self.patient_name),
            "birthDate" => ("birthDate", &mut self.birth_date),
            "sex" => ("sex", &mut self.sex),
            "examDateTime" => ("examDateTime", &mut self.exam_date_time),
            "examDescription" => ("examDescription", &mut self.exam_description),
            _ => return Ok(false),
        };
        if slot.is_some() {
            return Err(refuse(field, "was sent more than once"));
        }
        *slot = Some(value);
        Ok(true)
    }

    /// Validates every field. `now` is the box's clock; `charset` is the character set the
    /// DICOM object will be written in, so a name that cannot be written is refused here.
    pub fn validate(
        &self,
        now: DateTime<FixedOffset>,
        charset: Charset,
    ) -> Result<Study, FormError> {
        let text = |v: &Option<String>| v.as_deref().map(str::trim).unwrap_or("").to_string();

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

        Ok(Study {
            patient: Patient {
                id,
                name,
                birth_date,
                sex,
                issuer: String::new(),
            },
            exam: Exam { time, description },
            order: None,
        })
    }
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
}
