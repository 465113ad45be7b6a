//! The gateway's shared state, built once at start-up from the validated configuration.

use std::sync::Arc;

use crate::config::{EnvConfig, Key, Settings, SettingsStore};
use crate::intake::Intake;
use crate::pacs::Sender;
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot create directory {path}: {source}")]
    Directory {
        path: String,
        source: std::io::Error,
    },
}

pub struct App {
    pub env: EnvConfig,
    pub settings: SettingsStore,
    pub sender: Arc<Sender>,
    pub intake: Arc<Intake>,
    pub metrics: Arc<Metrics>,
}

impl App {
    /// What an admin should fix or know, in words: a settings file that was set aside,
    /// settings every delivery would fail on, and risky choices such as unchecked TLS.
    pub fn warnings(&self, current: &Settings) -> Vec<String> {
        let mut warnings: Vec<String> = self.settings.problem().into_iter().collect();
        for p in self.sender.check(current) {
            let env = Key::from_json(&p.field)
                .map(|k| k.names().env)
                .unwrap_or_default();
            warnings.push(format!("{} (PHOTO_PACS_{env}): {}", p.field, p.message));
        }
        warnings.extend(self.sender.warnings(current));
        warnings
    }

    pub fn new(env: EnvConfig) -> Result<Self, StartError> {
        for dir in [&env.upload_dir, &env.dicom_dir] {
            std::fs::create_dir_all(dir).map_err(|source| StartError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let sender = Arc::new(Sender::for_backend(env.backend));
        let metrics = Arc::new(Metrics::new(env.backend.as_str()));
        let settings = SettingsStore::load(env.settings_path.clone(), env.defaults.clone());
        let intake = Arc::new(Intake::new(
            env.upload_dir.clone(),
            env.dicom_dir.clone(),
            env.keep_files_on_success,
            env.max_pixels,
            env.uid_root.clone(),
            sender.clone(),
            metrics.clone(),
        ));
        Ok(App {
            env,
            settings,
            sender,
            intake,
            metrics,
        })
    }
}
