//! C-STORE: every object of a delivery in one association, each answer classified.

use std::borrow::Cow;

use dicom_encoding::TransferSyntaxIndex as _;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{
    PDataValue, PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::association::{
    self, Association, Broken, ExchangeError, Offer, associate, broken_error, offered,
    receive_command, uid_eq,
};
use super::message;
use crate::config::Settings;
use crate::dicom::uid::sop_class_name;
use crate::dicom::{TransferSyntax, transfer_syntax_name};
use crate::pacs::error::PacsError;
use crate::pacs::{InstanceStatus, Outgoing};

/// Sends `batch` in one association; `progress` hears each object's outcome as soon as the
/// PACS answers it (the outbox records it before the next object goes). An association that
/// cannot be set up is an error for the whole batch; one that breaks halfway leaves the
/// objects not yet sent as transient failures.
pub async fn send(
    s: &Settings,
    batch: &[Outgoing],
    progress: &mut (dyn FnMut(usize, &InstanceStatus) + Send),
) -> Result<Vec<InstanceStatus>, PacsError> {
    let offers = offers_for(batch);
    match associate(s, &offers).await? {
        Association::Plain(a) => store_all(a, s, batch, progress).await,
        Association::Tls(a) => store_all(a, s, batch, progress).await,
    }
}

/// One offer per SOP class, with the syntaxes its objects are written in (and the
/// uncompressed alternatives).
fn offers_for(batch: &[Outgoing]) -> Vec<Offer> {
    let mut offers: Vec<Offer> = Vec::new();
    for item in batch {
        let i = match offers
            .iter()
            .position(|o| o.abstract_syntax == item.sop_class_uid)
        {
            Some(i) => i,
            None => {
                offers.push(Offer {
                    abstract_syntax: item.sop_class_uid.clone(),
                    transfer_syntaxes: Vec::new(),
                });
                offers.len() - 1
            }
        };
        for ts in offered(item.transfer_syntax) {
            if !offers[i].transfer_syntaxes.contains(&ts) {
                offers[i].transfer_syntaxes.push(ts);
            }
        }
    }
    offers
}

/// The accepted context to send `item` on: the one in its own syntax, else an uncompressed
/// one we can convert to.
fn context_for<'a>(
    accepted: &'a [PresentationContextNegotiated],
    item: &Outgoing,
) -> Option<&'a PresentationContextNegotiated> {
    let candidates: Vec<_> = accepted
        .iter()
        .filter(|pc| uid_eq(&pc.abstract_syntax, &item.sop_class_uid))
        .collect();
    candidates
        .iter()
        .find(|pc| uid_eq(&pc.transfer_syntax, item.transfer_syntax.uid()))
        .or_else(|| {
            candidates.iter().find(|pc| {
                !item.transfer_syntax.is_encapsulated()
                    && TransferSyntax::from_uid(pc.transfer_syntax.trim_end_matches(['\0', ' ']))
                        .is_some_and(|t| !t.is_encapsulated())
            })
        })
        .copied()
}

async fn store_all<S>(
    mut assoc: AsyncClientAssociation<S>,
    s: &Settings,
    batch: &[Outgoing],
    progress: &mut (dyn FnMut(usize, &InstanceStatus) + Send),
) -> Result<Vec<InstanceStatus>, PacsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let accepted: Vec<_> = assoc
        .presentation_contexts()
        .iter()
        .filter(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .cloned()
        .collect();
    let mut statuses = Vec::with_capacity(batch.len());
    // One buffer for every file: a fresh 2 MB allocation per object costs more in page
    // faults than the sending itself.
    let mut buffer = Vec::new();
    let mut message_id: u16 = 0;
    for (i, item) in batch.iter().enumerate() {
        let Some(pc) = context_for(&accepted, item) else {
            let status = InstanceStatus::Failed(PacsError::permanent(format!(
                "the PACS at {} does not accept {} in {}",
                association::target(s),
                sop_class_name(&item.sop_class_uid),
                transfer_syntax_name(item.transfer_syntax.uid())
            )));
            progress(i, &status);
            statuses.push(status);
            continue;
        };
        message_id = message_id.wrapping_add(1).max(1);
        let exchange = store_one(&mut assoc, pc, item, message_id, &mut buffer);
        let stored = tokio::time::timeout(association::timeout(s), exchange)
            .await
            .unwrap_or(Err(ExchangeError::Association(Broken::TimedOut)));
        match stored {
            Ok(status) => {
                progress(i, &status);
                statuses.push(status);
            }
            Err(ExchangeError::Instance(e)) => {
                let status = InstanceStatus::Failed(e);
                progress(i, &status);
                statuses.push(status);
            }
            Err(ExchangeError::Association(b)) => {
                let e = broken_error(&b, s, "the objects");
                if statuses.is_empty() {
                    return Err(e);
                }
                // Some objects are stored already: report them, and the rest as not sent.
                let rest = PacsError {
                    message: format!("not sent: {e}"),
                    ..e
                };
                for j in i..batch.len() {
                    let status = InstanceStatus::Failed(rest.clone());
                    progress(j, &status);
                    statuses.push(status);
                }
                return Ok(statuses);
            }
        }
    }
    if accepted.is_empty() {
        let _ = assoc.abort().await;
    } else {
        let _ = tokio::time::timeout(association::timeout(s), assoc.release()).await;
    }
    Ok(statuses)
}

async fn store_one<S>(
    assoc: &mut AsyncClientAssociation<S>,
    pc: &PresentationContextNegotiated,
    item: &Outgoing,
    message_id: u16,
    buffer: &mut Vec<u8>,
) -> Result<InstanceStatus, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let path = item.path.clone();
    let mut reused = std::mem::take(buffer);
    let read = tokio::task::spawn_blocking(move || {
        use std::io::Read;
        reused.clear();
        let result = std::fs::File::open(&path).and_then(|mut f| f.read_to_end(&mut reused));
        (reused, result)
    })
    .await;
    let unreadable = |e: &dyn std::fmt::Display| {
        ExchangeError::Instance(PacsError::permanent(format!(
            "the DICOM file could not be read: {e}"
        )))
    };
    let file = match read {
        Ok((bytes, Ok(_))) => {
            *buffer = bytes;
            &buffer[..]
        }
        Ok((bytes, Err(e))) => {
            *buffer = bytes;
            return Err(unreadable(&e));
        }
        Err(e) => return Err(unreadable(&e)),
    };
    let data = dataset_for(file, item.transfer_syntax, &pc.transfer_syntax)
        .map_err(|m| ExchangeError::Instance(PacsError::permanent(m)))?;
    let command = message::c_store_rq(message_id, &item.sop_class_uid, &item.sop_instance_uid);
    let command_pdv = PDataValue {
        presentation_context_id: pc.id,
        value_type: PDataValueType::Command,
        is_last: true,
        data: command,
    };
    // Small objects go in one PDU with their command; larger ones are streamed in fragments
    // of the size the PACS accepts.
    let room = assoc.acceptor_max_pdu_length().saturating_sub(100) as usize;
    if command_pdv.data.len() + data.len() < room {
        let data_pdv = PDataValue {
            presentation_context_id: pc.id,
            value_type: PDataValueType::Data,
            is_last: true,
            data: data.into_owned(),
        };
        assoc
            .send(&Pdu::PData {
                data: vec![command_pdv, data_pdv],
            })
            .await?;
    } else {
        use tokio::io::AsyncWriteExt;
        assoc
            .send(&Pdu::PData {
                data: vec![command_pdv],
            })
            .await?;
        let mut writer = assoc.send_pdata(pc.id);
        let written = async {
            writer.write_all(&data).await?;
            writer.finish().await
        }
        .await;
        written.map_err(|e| ExchangeError::Association(Broken::Io(e)))?;
    }
    let response = receive_command(assoc).await?;
    let parsed = message::parse_response(&response)
        .map_err(|m| ExchangeError::Instance(PacsError::transient(m)))?;
    Ok(message::store_status(
        parsed.status,
        parsed.comment.as_deref(),
    ))
}

/// The dataset bytes of one of our files in the negotiated transfer syntax: the file's own
/// bytes when they match, else re-encoded (only between the two uncompressed syntaxes).
fn dataset_for<'a>(
    file: &'a [u8],
    file_ts: TransferSyntax,
    negotiated: &str,
) -> Result<Cow<'a, [u8]>, String> {
    let start = dataset_offset(file).ok_or("not a DICOM file written by this gateway")?;
    let negotiated = negotiated.trim_end_matches(['\0', ' ']);
    if negotiated == file_ts.uid() {
        return Ok(Cow::Borrowed(&file[start..]));
    }
    let target = TransferSyntax::from_uid(negotiated)
        .filter(|t| !t.is_encapsulated() && !file_ts.is_encapsulated())
        .ok_or_else(|| format!("cannot convert to {}", transfer_syntax_name(negotiated)))?;
    let obj = dicom_object::from_reader(&file[128..]).map_err(|e| e.to_string())?;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(target.uid())
        .ok_or("unknown transfer syntax")?;
    let mut out = Vec::with_capacity(file.len());
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(Cow::Owned(out))
}

/// Where the data set starts in a Part 10 file: after the 128-byte preamble, `DICM`, and
/// the file meta group whose length (0002,0000) is its first element.
fn dataset_offset(file: &[u8]) -> Option<usize> {
    if file.len() < 144 || &file[128..132] != b"DICM" || file[132..136] != [0x02, 0x00, 0x00, 0x00]
    {
        return None;
    }
    let group_len = u32::from_le_bytes(file[140..144].try_into().ok()?) as usize;
    let start = 144usize.checked_add(group_len)?;
    (start <= file.len()).then_some(start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dicom::uid::SECONDARY_CAPTURE;

    #[test]
    fn dataset_offset_skips_preamble_and_meta() {
        let mut file = vec![0u8; 128];
        file.extend_from_slice(b"DICM");
        file.extend_from_slice(&[0x02, 0x00, 0x00, 0x00, b'U', b'L', 4, 0]);
        file.extend_from_slice(&10u32.to_le_bytes());
        file.extend_from_slice(&[0xAA; 10]);
        file.extend_from_slice(b"dataset");
        assert_eq!(&file[dataset_offset(&file).unwrap()..], b"dataset");
        assert_eq!(dataset_offset(b"short"), None);
    }

    fn item(ts: TransferSyntax) -> Outgoing {
        Outgoing {
            index: 1,
            sop_instance_uid: "2.25.1".into(),
            sop_class_uid: SECONDARY_CAPTURE.into(),
            transfer_syntax: ts,
            path: "x.dcm".into(),
        }
    }

    #[test]
    fn objects_written_in_different_syntaxes_share_one_offer_per_class() {
        let offers = offers_for(&[
            item(TransferSyntax::ImplicitVrLittleEndian),
            item(TransferSyntax::JpegBaseline),
            item(TransferSyntax::ImplicitVrLittleEndian),
        ]);
        assert_eq!(offers.len(), 1);
        assert_eq!(
            offers[0].transfer_syntaxes,
            [
                "1.2.840.10008.1.2",
                "1.2.840.10008.1.2.1",
                "1.2.840.10008.1.2.4.50"
            ]
        );
    }

    #[test]
    fn each_object_goes_in_its_own_syntax_or_an_uncompressed_one() {
        let pc = |id, ts: &str| PresentationContextNegotiated {
            id,
            reason: PresentationContextResultReason::Acceptance,
            abstract_syntax: SECONDARY_CAPTURE.into(),
            transfer_syntax: ts.into(),
        };
        let accepted = [
            pc(1, "1.2.840.10008.1.2.1\0"),
            pc(3, "1.2.840.10008.1.2.4.50"),
        ];
        let implicit = item(TransferSyntax::ImplicitVrLittleEndian);
        assert_eq!(context_for(&accepted, &implicit).map(|p| p.id), Some(1));
        let jpeg = item(TransferSyntax::JpegBaseline);
        assert_eq!(context_for(&accepted, &jpeg).map(|p| p.id), Some(3));
        let only_explicit = [pc(1, "1.2.840.10008.1.2.1")];
        assert!(context_for(&only_explicit, &jpeg).is_none());
    }
}
