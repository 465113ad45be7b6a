//! The command-line tools beside the server: `convert` for the field and benchmarks, `echo`
//! for the installer on site.

use std::path::{Path, PathBuf};

use crate::config::TransferSyntax;
use crate::config::{EnvConfig, Settings, SettingsStore};
use crate::convert::{self, InstanceIds, Options};
use crate::intake::form::RawForm;
use crate::pacs::{InstanceStatus, Outgoing, Sender};

#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("{0}")]
    Settings(String),
    #[error("{field}: {message}")]
    Field {
        field: &'static str,
        message: String,
    },
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    #[error(transparent)]
    Pacs(#[from] crate::pacs::PacsError),
    #[error("{0}")]
    Files(String),
}

/// The study fields of `photo-pacs convert`, named as in the upload form.
#[derive(Debug, Default)]
pub struct ConvertRequest {
    pub patient_id: String,
    pub patient_name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub exam_date_time: Option<String>,
    pub exam_description: Option<String>,
}

/// The runtime settings as the server would use them: environment, then the INI file.
pub fn settings_in_force(env: &EnvConfig) -> Result<Settings, CliError> {
    SettingsStore::peek(&env.settings_path, &env.defaults).map_err(CliError::Settings)
}

/// Converts `files` into one study (one Study and Series UID) and writes `NNN_<name>.dcm`
/// files into `out`. Returns the paths written.
pub fn convert_files(
    env: &EnvConfig,
    settings: &Settings,
    req: ConvertRequest,
    files: &[PathBuf],
    out: &Path,
) -> Result<Vec<PathBuf>, CliError> {
    let form = RawForm {
        patient_id: Some(req.patient_id),
        patient_name: req.patient_name,
        birth_date: req.birth_date,
        sex: req.sex,
        exam_date_time: req.exam_date_time,
        exam_description: req.exam_description,
    };
    let now = chrono::Local::now().fixed_offset();
    let study = form
        .validate(now, settings.local_charset)
        .map_err(|e| CliError::Field {
            field: e.field,
            message: e.message,
        })?;
    let opts = Options::from_settings(settings, env.max_pixels);
    let file_err = |path: &Path, message: String| CliError::File {
        path: path.to_path_buf(),
        message,
    };
    std::fs::create_dir_all(out).map_err(|e| file_err(out, e.to_string()))?;
    let study_uid = env.uid_root.new_uid();
    let series_uid = env.uid_root.new_uid();
    let mut written = Vec::new();
    for (i, path) in files.iter().enumerate() {
        let bytes = std::fs::read(path).map_err(|e| file_err(path, e.to_string()))?;
        let probe =
            convert::probe(&bytes, opts.max_pixels).map_err(|e| file_err(path, e.to_string()))?;
        let ids = InstanceIds {
            study_uid: study_uid.clone(),
            series_uid: series_uid.clone(),
            sop_uid: env.uid_root.new_uid(),
            number: i as u32 + 1,
            created: chrono::Local::now().fixed_offset(),
        };
        let converted = convert::convert(&bytes, &probe, &study, &ids, &opts)
            .map_err(|e| file_err(path, e.to_string()))?;
        let stem = path
            .file_stem()
            .map_or_else(|| "image".into(), |s| s.to_string_lossy());
        let dst = out.join(format!("{:03}_{stem}.dcm", i + 1));
        std::fs::write(&dst, &converted.dicom).map_err(|e| file_err(&dst, e.to_string()))?;
        written.push(dst);
    }
    Ok(written)
}

/// Tests the PACS connection with the settings in force; returns a line for the installer.
pub async fn echo(env: &EnvConfig, settings: &Settings) -> Result<String, CliError> {
    let sender = Sender::for_backend(env.backend);
    let elapsed = sender.echo(settings).await?;
    Ok(if sender.mock().is_some() {
        "mock backend (demo mode): nothing to test, no PACS is contacted".to_string()
    } else {
        format!("success in {} ms", elapsed.as_millis())
    })
}

/// Sends DICOM files this gateway wrote (for instance the ones kept after a failed
/// delivery) to the PACS in one association or request. All must be Secondary Capture in
/// one transfer syntax, as a submission is.
pub async fn send_files(
    env: &EnvConfig,
    settings: &Settings,
    files: &[PathBuf],
) -> Result<Vec<(PathBuf, InstanceStatus)>, CliError> {
    let mut batch = Vec::with_capacity(files.len());
    let mut syntax: Option<TransferSyntax> = None;
    for (i, path) in files.iter().enumerate() {
        let file = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::SPECIFIC_CHARACTER_SET)
            .open_file(path)
            .map_err(|e| CliError::File {
                path: path.clone(),
                message: e.to_string(),
            })?;
        let meta = file.meta();
        let clean = |s: &str| s.trim_end_matches(['\0', ' ']).to_string();
        if clean(&meta.media_storage_sop_class_uid) != convert::uid::SECONDARY_CAPTURE {
            return Err(CliError::File {
                path: path.clone(),
                message: "not a Secondary Capture object".into(),
            });
        }
        let ts = TransferSyntax::from_uid(&clean(&meta.transfer_syntax)).ok_or_else(|| {
            CliError::File {
                path: path.clone(),
                message: "in a transfer syntax this gateway does not write".into(),
            }
        })?;
        if syntax.is_some_and(|s| s != ts) {
            return Err(CliError::Files(
                "all files must be in one transfer syntax".into(),
            ));
        }
        syntax = Some(ts);
        batch.push(Outgoing {
            index: i as u32 + 1,
            sop_instance_uid: clean(&meta.media_storage_sop_instance_uid),
            path: path.clone(),
        });
    }
    let mut settings = settings.clone();
    if let Some(ts) = syntax {
        settings.local_transfer_syntax = ts;
    }
    let statuses = Sender::for_backend(env.backend)
        .send(&settings, &batch)
        .await?;
    Ok(files.iter().cloned().zip(statuses).collect())
}
