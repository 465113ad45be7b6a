//! Intake: one submission from photos staged on disk to a committed study in the outbox.
//!
//! The one owner of the pipeline: the HTTP layer stages each uploaded photo as a file
//! ([`Staging`]) and validates the form; [`Intake::submit`] then checks every photo,
//! converts them into DICOM objects in the study's intake folder, commits the study to the
//! [`Outbox`] (from then on it is never lost) and starts its first delivery attempt.

pub mod form;
pub mod upload;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::anatomy::Site;
use crate::config::{EnvConfig, Settings};
use crate::convert::{self, ConvertError, InstanceIds, Options, Probe};
use crate::dicom::UidRoot;
use crate::outbox::{Draft, Outbox, OutboxError, RecordInstance, StudyView, space};
use crate::pacs::Sender;
use crate::storage;
use crate::study::Study;
use crate::telemetry::Metrics;

/// The most photos one submission may carry.
pub const MAX_IMAGES: usize = 50;

/// Staging folders of uploads in progress carry this prefix; start-up removes any left.
const STAGING_PREFIX: &str = ".staging-";

#[derive(Debug, thiserror::Error)]
pub enum IntakeError {
    #[error("image {index}: {source}")]
    Image { index: u32, source: ConvertError },
    #[error("at least one image is required")]
    NoImages,
    #[error(transparent)]
    Full(#[from] space::Full),
    #[error("the gateway could not store the images: {0}")]
    Storage(std::io::Error),
    #[error(transparent)]
    Outbox(OutboxError),
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<std::io::Error> for IntakeError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::StorageFull {
            IntakeError::Full(space::Full { available: 0 })
        } else {
            IntakeError::Storage(e)
        }
    }
}

impl From<OutboxError> for IntakeError {
    fn from(e: OutboxError) -> Self {
        match e {
            OutboxError::Io { source, .. } if source.kind() == std::io::ErrorKind::StorageFull => {
                IntakeError::Full(space::Full { available: 0 })
            }
            other => IntakeError::Outbox(other),
        }
    }
}

/// A validated submission, its photos staged.
pub struct Submission {
    pub study: Study,
    /// Where each photo was taken, in image order (one entry per staged photo).
    pub sites: Vec<Option<Site>>,
    pub staging: Staging,
    pub settings: Arc<Settings>,
    pub request_id: String,
    /// The phone's `Idempotency-Key`, recorded with the study.
    pub idempotency_key: Option<String>,
}

pub struct Intake {
    upload_dir: PathBuf,
    keep_files_on_success: bool,
    max_pixels: u64,
    min_free_bytes: u64,
    uid_root: UidRoot,
    sender: Arc<Sender>,
    outbox: Arc<Outbox>,
    metrics: Arc<Metrics>,
    /// Bounds how many photos are decoded at once across all requests: decoding is where
    /// the memory goes, and a Pi has little of it.
    conversions: Arc<Semaphore>,
    conversions_max: usize,
    /// The memory conversions may hold together, one permit per MiB: each photo takes what
    /// its probe says it needs, so big photos wait for each other instead of adding up.
    memory: Arc<Semaphore>,
    memory_budget: u64,
}

const MIB: u64 = 1024 * 1024;

/// Permits of [`Intake::memory`] for `bytes`.
fn mib_permits(bytes: u64) -> u32 {
    u32::try_from(bytes.div_ceil(MIB).max(1)).unwrap_or(u32::MAX)
}

/// The photos of one submission as received, one file each under UPLOAD_DIR. Removed when
/// dropped (a refused or abandoned upload leaves nothing behind) unless kept.
pub struct Staging {
    dir: PathBuf,
    images: Vec<PathBuf>,
    /// Where the originals go when KEEP_FILES_ON_SUCCESS keeps them.
    keep_as: Option<PathBuf>,
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
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .await?;
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
        if let Some(to) = self.keep_as.take()
            && std::fs::rename(&self.dir, to).is_ok()
        {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Staging folders of uploads a crash interrupted (the photos as received): nothing of
/// them was accepted, so they are removed. Photos kept by KEEP_FILES_ON_SUCCESS, and
/// anything else in UPLOAD_DIR, stay. Returns how many were removed.
fn sweep_staging(upload_dir: &Path) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(upload_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut removed = 0;
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && entry
                .file_name()
                .to_string_lossy()
                .starts_with(STAGING_PREFIX)
        {
            std::fs::remove_dir_all(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

impl Intake {
    pub fn new(
        env: &EnvConfig,
        sender: Arc<Sender>,
        outbox: Arc<Outbox>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Intake {
            upload_dir: env.upload_dir.clone(),
            keep_files_on_success: env.keep_files_on_success,
            max_pixels: env.max_pixels,
            min_free_bytes: env.min_free_bytes,
            uid_root: env.uid_root.clone(),
            sender,
            outbox,
            metrics,
            conversions: Arc::new(Semaphore::new(env.max_conversions)),
            conversions_max: env.max_conversions,
            memory: Arc::new(Semaphore::new(
                mib_permits(env.convert_memory_bytes) as usize
            )),
            memory_budget: env.convert_memory_bytes,
        }
    }

    /// Removes staging folders a crash left behind (at start-up, before serving).
    pub fn sweep(&self) -> std::io::Result<usize> {
        let removed = sweep_staging(&self.upload_dir)?;
        self.metrics.staging_swept(removed as u64);
        Ok(removed)
    }

    /// Refuses new photos while the data partition is nearly full: what is queued must
    /// always find room for its state.
    pub fn check_space(&self) -> Result<(), space::Full> {
        space::check(
            &[self.upload_dir.as_path(), self.outbox.root()],
            self.min_free_bytes,
        )
    }

    /// A new, empty staging directory for one submission.
    pub async fn stage(&self) -> Result<Staging, IntakeError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let dir = self.upload_dir.join(format!("{STAGING_PREFIX}{id}"));
        let make = dir.clone();
        tokio::task::spawn_blocking(move || storage::create_private_dir(&make))
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))??;
        Ok(Staging {
            dir,
            images: Vec::new(),
            keep_as: None,
            current: None,
        })
    }

    /// Converts a validated submission and commits it to the outbox, then starts its first
    /// delivery attempt. The work runs in its own task, so a phone that drops the
    /// connection halfway does not cut it short.
    pub async fn submit(self: &Arc<Self>, sub: Submission) -> Result<StudyView, IntakeError> {
        if sub.staging.is_empty() {
            return Err(IntakeError::NoImages);
        }
        let this = self.clone();
        tokio::spawn(async move { this.run(sub).await })
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))?
    }

    async fn run(self: &Arc<Self>, sub: Submission) -> Result<StudyView, IntakeError> {
        let Submission {
            study,
            sites,
            mut staging,
            settings,
            request_id,
            idempotency_key,
        } = sub;
        let started = Instant::now();
        let study = Arc::new(study);
        let opts = Arc::new(Options::from_settings(
            &settings,
            self.max_pixels,
            self.memory_budget,
        ));

        // Every photo is checked before any is converted: one bad file refuses the whole
        // submission before anything reaches the PACS.
        let probes = self.probe_all(&staging, &opts).await?;
        self.check_space()?;

        let id = Outbox::new_id();
        let outbox = self.outbox.clone();
        let begin_id = id.clone();
        let intake_dir = tokio::task::spawn_blocking(move || outbox.begin(&begin_id))
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))??;
        let study_uid = study.study_uid(&self.uid_root);
        let series_uid = self.uid_root.new_uid();
        let converted = self
            .convert_all(
                &staging,
                probes,
                sites,
                &study,
                &opts,
                &study_uid,
                &series_uid,
                &intake_dir,
            )
            .await;
        let instances = match converted {
            Ok(i) => i,
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&intake_dir).await;
                return Err(e);
            }
        };
        let converted_ms = started.elapsed().as_millis();
        let draft = Draft {
            id: id.clone(),
            intake_dir: intake_dir.clone(),
            idempotency_key,
            study_instance_uid: study_uid,
            series_instance_uid: series_uid,
            destination: self.sender.destination(&settings),
            instances,
        };
        let outbox = self.outbox.clone();
        let committed = tokio::task::spawn_blocking(move || outbox.commit(draft))
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()));
        let view = match committed {
            Ok(Ok(v)) => v,
            Ok(Err(e)) => {
                let _ = tokio::fs::remove_dir_all(&intake_dir).await;
                return Err(e.into());
            }
            Err(e) => {
                let _ = tokio::fs::remove_dir_all(&intake_dir).await;
                return Err(e);
            }
        };
        if self.keep_files_on_success {
            staging.keep_as = Some(self.upload_dir.join(&id));
        }
        drop(staging);
        log::info!(
            request_id = request_id.as_str(),
            study = id.as_str(),
            images = view.instances.len(),
            convert_ms = converted_ms;
            "study accepted into the outbox"
        );
        // The first attempt runs on its own: the answer waits for it only so long.
        let this = self.clone();
        let seq = view.seq;
        tokio::spawn(async move {
            this.outbox.attempt(&this.sender, &settings, &[seq]).await;
        });
        Ok(view)
    }

    /// Probes every photo, one at a time under a conversion permit and the memory its file
    /// takes, and checks that each fits the conversion memory budget.
    async fn probe_all(
        &self,
        staging: &Staging,
        opts: &Arc<Options>,
    ) -> Result<Vec<(Probe, u64)>, IntakeError> {
        let mut probes = Vec::with_capacity(staging.images.len());
        for (i, path) in staging.images.iter().enumerate() {
            let index = i as u32 + 1;
            let size = tokio::fs::metadata(path).await?.len();
            let _slot = self.permits(&self.conversions, 1).await?;
            let _memory = self.permits(&self.memory, mib_permits(size)).await?;
            let (path, max_pixels, opts) = (path.clone(), self.max_pixels, opts.clone());
            let probed = tokio::task::spawn_blocking(move || {
                let bytes = std::fs::read(&path)?;
                let image_err = |source| IntakeError::Image { index, source };
                let probe = convert::probe(&bytes, max_pixels).map_err(image_err)?;
                let needed =
                    convert::memory_needed(&probe, bytes.len() as u64, &opts).map_err(image_err)?;
                Ok::<_, IntakeError>((probe, needed))
            })
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))??;
            probes.push(probed);
        }
        Ok(probes)
    }

    async fn permits(
        &self,
        semaphore: &Arc<Semaphore>,
        n: u32,
    ) -> Result<tokio::sync::OwnedSemaphorePermit, IntakeError> {
        semaphore
            .clone()
            .acquire_many_owned(n)
            .await
            .map_err(|e| IntakeError::Internal(e.to_string()))
    }

    /// Converts every photo, several at a time (up to the conversion permits free), and
    /// answers in submission order.
    #[allow(clippy::too_many_arguments)]
    async fn convert_all(
        &self,
        staging: &Staging,
        probes: Vec<(Probe, u64)>,
        sites: Vec<Option<Site>>,
        study: &Arc<Study>,
        opts: &Arc<Options>,
        study_uid: &str,
        series_uid: &str,
        out_dir: &Path,
    ) -> Result<Vec<RecordInstance>, IntakeError> {
        use futures_util::{StreamExt, TryStreamExt};
        let mut jobs = Vec::with_capacity(probes.len());
        let mut sites = sites.into_iter();
        for (i, (src, probe)) in staging.images.iter().zip(probes).enumerate() {
            let site = sites.next().flatten();
            let index = i as u32 + 1;
            let ids = InstanceIds {
                study_uid: study_uid.to_string(),
                series_uid: series_uid.to_string(),
                sop_uid: self.uid_root.new_uid(),
                number: index,
                // On the exam's clock and in its offset: an object has one Timezone Offset
                // From UTC for all its times.
                created: (chrono::Utc::now() + study.exam.clock_correction)
                    .with_timezone(study.exam.time.offset()),
            };
            let dst = out_dir.join(format!("{index:03}.dcm"));
            jobs.push(self.convert_one(
                src.clone(),
                dst,
                probe,
                site,
                study.clone(),
                opts.clone(),
                ids,
            ));
        }
        let parallel = self.conversions_max.max(1);
        futures_util::stream::iter(jobs)
            .buffered(parallel)
            .try_collect()
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn convert_one(
        &self,
        src: PathBuf,
        dst: PathBuf,
        probe: (Probe, u64),
        site: Option<Site>,
        study: Arc<Study>,
        opts: Arc<Options>,
        ids: InstanceIds,
    ) -> Result<RecordInstance, IntakeError> {
        let (probe, needed) = probe;
        // Always in this order (slot, then memory), here and in probing: no two waiters can
        // each hold what the other waits for.
        let permit = self.permits(&self.conversions, 1).await?;
        let memory = self.permits(&self.memory, mib_permits(needed)).await?;
        let (index, sop_uid) = (ids.number, ids.sop_uid.clone());
        let file = dst
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let started = Instant::now();
        let running = self.metrics.conversion_started();
        // The photo is read again rather than kept from the probe: holding every photo of a
        // 50-photo upload in memory at once would not fit a Pi.
        let (sop_class_uid, transfer_syntax, path) = tokio::task::spawn_blocking(move || {
            // Dropped in reverse order: the gauge falls before the next photo may start.
            let _permit = permit;
            let _memory = memory;
            let _running = running;
            let bytes = std::fs::read(&src)?;
            let converted = convert::convert(&bytes, &probe, &study, &ids, site.as_ref(), &opts)
                .map_err(|source| IntakeError::Image { index, source })?;
            drop(bytes);
            log::debug!(image = index, path = converted.path.as_str(); "photo converted");
            // Written once and synced: the outbox's promise starts with the files.
            storage::write_new_synced(&dst, &converted.dicom)?;
            Ok::<_, IntakeError>((
                converted.sop_class_uid,
                converted.transfer_syntax,
                converted.path,
            ))
        })
        .await
        .map_err(|e| IntakeError::Internal(e.to_string()))??;
        self.metrics
            .conversion(started.elapsed().as_secs_f64(), path.as_str());
        Ok(RecordInstance {
            index,
            sop_instance_uid: sop_uid,
            sop_class_uid: sop_class_uid.to_string(),
            transfer_syntax: transfer_syntax.uid().to_string(),
            file,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupted_uploads_are_swept_and_kept_photos_stay() {
        let tmp = tempfile::tempdir().unwrap();
        let staging = tmp.path().join(format!("{STAGING_PREFIX}u1"));
        storage::create_private_dir(&staging).unwrap();
        std::fs::write(staging.join("001.img"), b"x").unwrap();
        storage::create_private_dir(&tmp.path().join(format!("{STAGING_PREFIX}u2"))).unwrap();
        storage::create_private_dir(&tmp.path().join("kept-study")).unwrap();
        assert_eq!(sweep_staging(tmp.path()).unwrap(), 2);
        assert!(tmp.path().join("kept-study").is_dir());
        assert_eq!(sweep_staging(&tmp.path().join("missing")).unwrap(), 0);
    }
}
