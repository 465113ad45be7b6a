//! The demo backend: accepts everything and remembers what it was given, sends nothing.

use std::collections::VecDeque;
use std::sync::Mutex;

use super::{InstanceStatus, Outgoing, PacsError};

/// What the mock saw of one object: identifiers and size, never the patient data inside.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Received {
    pub sop_instance_uid: String,
    pub bytes: u64,
}

/// Keeps the last [`MockPacs::KEEP`] objects so tests and the demo can see what arrived.
#[derive(Default)]
pub struct MockPacs {
    received: Mutex<VecDeque<Received>>,
}

impl MockPacs {
    pub const KEEP: usize = 256;

    pub(super) async fn send(&self, batch: &[Outgoing]) -> Vec<InstanceStatus> {
        let mut statuses = Vec::with_capacity(batch.len());
        for item in batch {
            // Reading the size proves the file the intake handed over really exists.
            match tokio::fs::metadata(&item.path).await {
                Ok(meta) => {
                    self.remember(Received {
                        sop_instance_uid: item.sop_instance_uid.clone(),
                        bytes: meta.len(),
                    });
                    statuses.push(InstanceStatus::Success);
                }
                Err(e) => statuses.push(InstanceStatus::Failed(PacsError::permanent(format!(
                    "file missing: {e}"
                )))),
            }
        }
        statuses
    }

    fn remember(&self, r: Received) {
        let mut q = self.received.lock().unwrap_or_else(|p| p.into_inner());
        if q.len() == Self::KEEP {
            q.pop_front();
        }
        q.push_back(r);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn records_what_it_was_given_and_fails_a_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("001.dcm");
        std::fs::write(&path, b"DICM-ish").unwrap();
        let batch = [
            Outgoing {
                index: 1,
                sop_instance_uid: "2.25.1".into(),
                sop_class_uid: crate::dicom::uid::SECONDARY_CAPTURE.into(),
                transfer_syntax: crate::dicom::TransferSyntax::ImplicitVrLittleEndian,
                path,
            },
            Outgoing {
                index: 2,
                sop_instance_uid: "2.25.2".into(),
                sop_class_uid: crate::dicom::uid::SECONDARY_CAPTURE.into(),
                transfer_syntax: crate::dicom::TransferSyntax::ImplicitVrLittleEndian,
                path: dir.path().join("missing.dcm"),
            },
        ];
        let mock = MockPacs::default();
        let statuses = mock.send(&batch).await;
        assert_eq!(statuses[0], InstanceStatus::Success);
        assert!(matches!(statuses[1], InstanceStatus::Failed(_)));
        let expected = [Received {
            sop_instance_uid: "2.25.1".into(),
            bytes: 8,
        }];
        assert_eq!(mock.received(), expected);
    }
}
