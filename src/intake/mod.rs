//! Intake: one submission from photos staged on disk to DICOM objects handed to the PACS.
//!
//! Steps, in order: the HTTP layer stages each uploaded photo as a file ([`Staging`]) and
//! validates the form; [`Intake::submit`] then checks every photo, converts them one by
//! one into DICOM files, and hands the batch to the [`Sender`]. The durable outbox will
//! slot in at the hand-over; until then a failed delivery keeps the files on disk.

pub mod form;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::config::{EnvConfig, Settings};
use crate::convert::uid::UidRoot;
use crate::convert::{self, ConvertError, InstanceIds, Options, Probe};
use crate::pacs::{InstanceStatus, Outgoing, PacsError, Sender};
use crate::study::Study;
use crate::telemetry::Metrics;

/// The most photos one submission may carry.
pub const MAX_IMAGES: usize = 50;

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("image {index}: {source}")]
    Image { index: u32, source: ConvertError },
    #[error("at least one image is required")]
    NoImages,
    #[error("the gateway could not store the images: {0}")]
    Storage(#[from] std::io::Error),
    #[error(transparent)]
    Pacs(#[from] PacsError),
    #[error("internal error: {0}")]
    Internal(String),
}

/// The outcome for one photo.
#[derive(Clone, Debug)]
pub struct InstanceReceipt {
    pub index: u32,
    pub sop_instance_uid: String,
    pub status: InstanceStatus,
}

/// What a submission produced.
#[derive(Clone, Debug)]
pub struct Receipt {
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub instances: Vec<InstanceReceipt>,
}

pub struct Intake {
    upload_dir: PathBuf,
    dicom_dir: PathBuf,
    keep_files_on_success: bool,
    max_pixels: u64,
    uid_root: UidRoot,
    sender: Arc<Sender>,
    metrics: Arc<Metrics>,
    /// Bounds how many photos are decoded at once across all requests: decoding is where
    /// the memory goes, and a Pi has little of it.
    conversions: Arc<Semaphore>,
    conversions_max: usize,
}

/// The photos of one submission as received, one file each under UPLOAD_DIR. Removed when
/// dropped (a refused or abandoned upload leaves nothing behind) unless kept.
pub struct Staging {
    id: String,
    dir: PathBuf,
    images: Vec<PathBuf>,
    keep: bool,
    /// The photo being received.
    current: Option<tokio::fs::File>,
}

impl Staging {
    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }
}

impl upload::PhotoSink for Staging {
    fn count(&self) -> usize {
        self.images.len()
    }

    /// File names carry no client-supplied text: an uploaded file name can be a patient's name.
    async fn begin(&mut self) -> std::io::Result<()> {
        let path = self.dir.join(format!("{:03}.img", self.images.len() + 1));
        let file = tokio::fs::File::create(&path).await?;
        // Recorded before writing so a half-written file is cleaned up with the rest.
        self.images.push(path);
        self.current = Some(file);
        Ok(())
    }

    async fn write(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match &mut self.current {
            Some(f) => f.write_all(chunk).await,
            None => Err(std::io::Error::other("no photo begun")),
        }
    }

    async fn finish(&mut self) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        match self.current.take() {
            Some(mut f) => f.flush().await,
            None => Ok(()),
        }
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

impl Intake {
    pub fn new(env: &EnvConfig, sender: Arc<Sender>, metrics: Arc<Metrics>) -> Self {
        Intake {
            upload_dir: env.upload_dir.clone(),
            dicom_dir: env.dicom_dir.clone(),
            keep_files_on_success: env.keep_files_on_success,
            max_pixels: env.max_pixels,
            uid_root: env.uid_root.clone(),
            sender,
            metrics,
            conversions: Arc::new(Semaphore::new(env.max_conversions)),
            conversions_max: env.max_conversions,
        }
    }

    /// A new, empty staging directory for one submission.
    pub async fn stage(&self) -> Result<Staging, IntakeError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir.join(&id);
        tokio::fs::create_dir_all(&dir).await?;
        Ok(Staging {
            id,
            dir,
            images: Vec::new(),
            keep: false,
            current: None,
        })
    }

    /// Converts and delivers a validated submission. The work runs in its own task, so a
    /// phone that drops the connection halfway does not cut a delivery short.
    pub async fn submit(
        self: &Arc<Self>,
        study: Study,
        staging: Staging,
        settings: Arc<Settings>,
        request_id: String,
    ) -> Result<Receipt, IntakeError> {
        if staging.is_empty() {
            return Err(IntakeError::NoImages);
        }
        let this = self.clone();
        tokio::spawn(async move { this.run(study, staging, settings, &request_id).await })
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))?
    }

    async fn run(
        &self,
        study: Study,
        mut staging: Staging,
        settings: Arc<Settings>,
        request_id: &str,
    ) -> Result<Receipt, IntakeError> {
        let started = Instant::now();
        let study = Arc::new(study);
        let opts = Arc::new(Options::from_settings(&settings, self.max_pixels));

        // Every photo is checked before any is converted: one bad file refuses the whole
        // submission before anything reaches the PACS.
        let probes = self.probe_all(&staging).await?;

        let study_uid = self.uid_root.new_uid();
        let series_uid = self.uid_root.new_uid();
        let out_dir = self.dicom_dir.join(&staging.id);
        tokio::fs::create_dir_all(&out_dir).await?;
        let converted = self
            .convert_all(
                &staging,
                probes,
                &study,
                &opts,
                &study_uid,
                &series_uid,
                &out_dir,
            )
            .await;
        let outgoing = match converted {
            Ok(o) => o,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&out_dir).await;
                return Err(e);
            }
        };
        let converted_ms = started.elapsed().as_millis();

        let statuses = match self.sender.send(&settings, &outgoing).await {
            Ok(s) => s,
            Err(e) => {
                // Nothing was delivered: keep the photos and objects rather than lose them.
                staging.keep = true;
                self.metrics.study("failed");
                log::warn!(request_id; "delivery failed, {} objects kept under {}", outgoing.len(), out_dir.display());
                return Err(e.into());
            }
        };
        let mut all_stored = true;
        let instances: Vec<InstanceReceipt> = outgoing
            .into_iter()
            .zip(statuses)
            .map(|(o, status)| {
                self.metrics.instance(status.as_str());
                all_stored &= !matches!(status, InstanceStatus::Failed(_));
                InstanceReceipt {
                    index: o.index,
                    sop_instance_uid: o.sop_instance_uid,
                    status,
                }
            })
            .collect();
        self.metrics
            .study(if all_stored { "sent" } else { "failed" });
        log::info!(
            request_id,
            images = instances.len(),
            convert_ms = converted_ms,
            total_ms = started.elapsed().as_millis();
            "study delivered"
        );
        if self.keep_files_on_success || !all_stored {
            staging.keep = true;
        } else {
            let _ = tokio::fs::remove_dir_all(&out_dir).await;
        }
        Ok(Receipt {
            study_instance_uid: study_uid,
            series_instance_uid: series_uid,
            instances,
        })
    }

    async fn probe_all(&self, staging: &Staging) -> Result<Vec<Probe>, IntakeError> {
        let paths = staging.images.clone();
        let max_pixels = self.max_pixels;
        tokio::task::spawn_blocking(move || {
            paths
                .iter()
                .enumerate()
                .map(|(i, path)| {
                    let bytes = std::fs::read(path)?;
                    convert::probe(&bytes, max_pixels).map_err(|source| IntakeError::Image {
                        index: i as u32 + 1,
                        source,
                    })
                })
                .collect()
        })
        .await
        .map_err(|e| IntakeError::Internal(e.to_string()))?
    }

    /// Converts every photo, several at a time (up to the conversion permits free), and
    /// answers in submission order.
    #[allow(clippy::too_many_arguments)]
    async fn convert_all(
        &self,
        staging: &Staging,
        probes: Vec<Probe>,
        study: &Arc<Study>,
        opts: &Arc<Options>,
        study_uid: &str,
        series_uid: &str,
        out_dir: &Path,
    ) -> Result<Vec<Outgoing>, IntakeError> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut jobs = Vec::with_capacity(probes.len());
        for (i, (src, probe)) in staging.images.iter().zip(probes).enumerate() {
            let index = i as u32 + 1;
            let ids = InstanceIds {
                study_uid: study_uid.to_string(),
                series_uid: series_uid.to_string(),
                sop_uid: self.uid_root.new_uid(),
                number: index,
                created: chrono::Local::now().fixed_offset(),
            };
            let dst = out_dir.join(format!("{index:03}.dcm"));
            jobs.push(self.convert_one(src.clone(), dst, probe, study.clone(), opts.clone(), ids));
        }
        let parallel = self.conversions_max.max(1);
        futures_util::stream::iter(jobs)
            .buffered(parallel)
            .try_collect()
            .await
    }

    async fn convert_one(
        &self,
        src: PathBuf,
        dst: PathBuf,
        probe: Probe,
        study: Arc<Study>,
        opts: Arc<Options>,
        ids: InstanceIds,
    ) -> Result<Outgoing, IntakeError> {
        let permit = self
            .conversions
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))?;
        let (index, sop_uid, path) = (ids.number, ids.sop_uid.clone(), dst.clone());
        let started = Instant::now();
        let running = self.metrics.conversion_started();
        // The photo is read again rather than kept from the probe: holding every photo of a
        // 50-photo upload in memory at once would not fit a Pi.
        tokio::task::spawn_blocking(move || {
            // Dropped in reverse order: the gauge falls before the next photo may start.
            let _permit = permit;
            let _running = running;
            let bytes = std::fs::read(&src)?;
            let converted = convert::convert(&bytes, &probe, &study, &ids, &opts)
                .map_err(|source| IntakeError::Image { index, source })?;
            std::fs::write(&dst, &converted.dicom)?;
            Ok::<_, IntakeError>(())
        })
        .await
        .map_err(|e| IntakeError::Internal(e.to_string()))??;
        self.metrics.conversion(started.elapsed().as_secs_f64());
        Ok(Outgoing {
            index,
            sop_instance_uid: sop_uid,
            path,
        })
    }
}
