//! C-FIND: one query on an association of its own, its matches collected, cut short with
//! a C-CANCEL once there are more than the caller wants.

use std::fmt;

use dicom_encoding::TransferSyntaxIndex as _;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::TransferSyntaxRegistry;
use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{
    PDataValue, PDataValueType, Pdu, PresentationContextNegotiated, PresentationContextResultReason,
};
use tokio::io::{AsyncRead, AsyncWrite};

use super::association::{
    self, Association, Broken, ExchangeError, Offer, SetUpError, associate_offer, broken_error,
    receive_message, uid_eq,
};
use super::message::{self, FindStatus};
use crate::config::Settings;
use crate::dicom::TransferSyntax;
use crate::dicom::uid::sop_class_name;
use crate::pacs::error::PacsError;

/// The largest identifier we take in one match: a worklist entry is a few kilobytes, and a
/// peer must not make the box hold megabytes per answer.
const MAX_MATCH_BYTES: usize = 1024 * 1024;
/// What all the matches of one query may hold together: a worklist entry is a kilobyte or
/// two, so this is thousands of them, and a PACS answering with megabytes each cannot take
/// the box past its memory budget.
const MAX_FOUND_BYTES: usize = 16 * 1024 * 1024;

/// Whether one more match of `len` bytes still fits `max` matches and [`MAX_FOUND_BYTES`].
fn fits(found: &Found, kept_bytes: usize, len: usize, max: usize) -> bool {
    found.matches.len() < max && kept_bytes.saturating_add(len) <= MAX_FOUND_BYTES
}

/// The matches of a query, in the order the peer gave them.
pub struct Found {
    pub matches: Vec<InMemDicomObject>,
    /// The peer had more than `max`: we cancelled the rest.
    pub truncated: bool,
}

/// The matches are patient data: only their number shows.
impl fmt::Debug for Found {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Found")
            .field("matches", &self.matches.len())
            .field("truncated", &self.truncated)
            .finish()
    }
}

/// A query that did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    /// The peer does not take this kind of query at all (no presentation context for the
    /// SOP class, or the association refused): a caller may try another information model.
    #[error("{0}")]
    Unsupported(PacsError),
    /// Anything else: unreachable, timed out, a failure status (its code kept).
    #[error("{0}")]
    Failed(PacsError),
}

impl FindError {
    pub fn pacs(&self) -> &PacsError {
        match self {
            FindError::Unsupported(e) | FindError::Failed(e) => e,
        }
    }
}

impl From<FindError> for PacsError {
    fn from(e: FindError) -> Self {
        match e {
            FindError::Unsupported(e) | FindError::Failed(e) => e,
        }
    }
}

/// Sends one C-FIND for `sop_class` with `identifier` to the peer the settings name, and
/// collects up to `max` matches.
pub async fn find(
    s: &Settings,
    sop_class: &str,
    identifier: &InMemDicomObject,
    max: usize,
) -> Result<Found, FindError> {
    // Explicit first: its answers say each element's VR, so elements our dictionary does
    // not know still read as text.
    let offers = [Offer {
        abstract_syntax: sop_class.to_string(),
        transfer_syntaxes: vec![
            TransferSyntax::ExplicitVrLittleEndian.uid(),
            TransferSyntax::ImplicitVrLittleEndian.uid(),
        ],
    }];
    match associate_offer(s, &offers).await {
        Ok(Association::Plain(a)) => find_on(a, s, sop_class, identifier, max).await,
        Ok(Association::Tls(a)) => find_on(a, s, sop_class, identifier, max).await,
        Err(SetUpError::NotAccepted(e)) => Err(FindError::Unsupported(e)),
        Err(SetUpError::Failed(e)) => Err(FindError::Failed(e)),
    }
}

/// The accepted context for `sop_class`, Explicit VR Little Endian preferred.
fn context_for<'a>(
    contexts: &'a [PresentationContextNegotiated],
    sop_class: &str,
) -> Option<&'a PresentationContextNegotiated> {
    let accepted: Vec<_> = contexts
        .iter()
        .filter(|pc| {
            pc.reason == PresentationContextResultReason::Acceptance
                && uid_eq(&pc.abstract_syntax, sop_class)
        })
        .collect();
    accepted
        .iter()
        .find(|pc| {
            uid_eq(
                &pc.transfer_syntax,
                TransferSyntax::ExplicitVrLittleEndian.uid(),
            )
        })
        .or_else(|| {
            accepted.iter().find(|pc| {
                uid_eq(
                    &pc.transfer_syntax,
                    TransferSyntax::ImplicitVrLittleEndian.uid(),
                )
            })
        })
        .copied()
}

async fn find_on<S>(
    mut assoc: AsyncClientAssociation<S>,
    s: &Settings,
    sop_class: &str,
    identifier: &InMemDicomObject,
    max: usize,
) -> Result<Found, FindError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let at = association::target(s);
    let Some(pc) = context_for(assoc.presentation_contexts(), sop_class).cloned() else {
        let _ = assoc.abort().await;
        return Err(FindError::Unsupported(PacsError::permanent(format!(
            "the PACS at {at} does not accept {}",
            sop_class_name(sop_class)
        ))));
    };
    let outcome = exchange(&mut assoc, s, &pc, sop_class, identifier, max).await;
    match &outcome {
        Err(Failure::Association(_)) => {}
        Err(Failure::Protocol(_)) => {
            let _ = assoc.abort().await;
        }
        Ok(_) | Err(Failure::Status(_)) => {
            let _ = tokio::time::timeout(association::timeout(s), assoc.release()).await;
        }
    }
    outcome.map_err(|f| match f {
        Failure::Association(b) => {
            FindError::Failed(broken_error(&b, s, sop_class_name(sop_class)))
        }
        Failure::Protocol(e) | Failure::Status(e) => FindError::Failed(e),
    })
}

/// How an exchange went wrong, which decides how the association ends.
enum Failure {
    /// It is gone already.
    Association(Broken),
    /// The peer said something we cannot follow: abort.
    Protocol(PacsError),
    /// A failure status ended the query cleanly: release.
    Status(PacsError),
}

impl From<ExchangeError> for Failure {
    fn from(e: ExchangeError) -> Self {
        match e {
            ExchangeError::Association(b) => Failure::Association(b),
            ExchangeError::Instance(e) => Failure::Protocol(e),
        }
    }
}

impl From<dicom_ul::association::Error> for Failure {
    fn from(e: dicom_ul::association::Error) -> Self {
        Failure::Association(Broken::Ul(e))
    }
}

async fn exchange<S>(
    assoc: &mut AsyncClientAssociation<S>,
    s: &Settings,
    pc: &PresentationContextNegotiated,
    sop_class: &str,
    identifier: &InMemDicomObject,
    max: usize,
) -> Result<Found, Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let at = association::target(s);
    let ts_uid = pc.transfer_syntax.trim_end_matches(['\0', ' ']);
    let ts = TransferSyntaxRegistry.get(ts_uid).ok_or_else(|| {
        Failure::Protocol(PacsError::permanent(format!(
            "the PACS at {at} chose an unknown transfer syntax"
        )))
    })?;
    let mut data = Vec::new();
    identifier
        .write_dataset_with_ts(&mut data, ts)
        .map_err(|e| {
            Failure::Protocol(PacsError::permanent(format!(
                "the query could not be encoded: {e}"
            )))
        })?;
    const MESSAGE_ID: u16 = 1;
    send_request(
        assoc,
        pc.id,
        message::c_find_rq(MESSAGE_ID, sop_class),
        data,
    )
    .await?;

    let mut found = Found {
        matches: Vec::new(),
        truncated: false,
    };
    // Once cancelled, the final answer must come within one timeout however many matches
    // the peer had queued before it saw the cancel.
    let mut cancel_deadline: Option<tokio::time::Instant> = None;
    let mut kept_bytes = 0_usize;
    loop {
        let wait = match cancel_deadline {
            Some(d) => d.saturating_duration_since(tokio::time::Instant::now()),
            None => association::timeout(s),
        };
        let received = tokio::time::timeout(wait, receive_message(assoc, MAX_MATCH_BYTES))
            .await
            .map_err(|_| Failure::Association(Broken::TimedOut))??;
        let response = message::parse_response(&received.command)
            .map_err(|m| Failure::Protocol(PacsError::transient(m)))?;
        if response.command_field != Some(message::C_FIND_RSP)
            || response
                .message_id_responded_to
                .is_some_and(|id| id != MESSAGE_ID)
        {
            return Err(Failure::Protocol(PacsError::transient(format!(
                "the PACS at {at} answered the query with another message"
            ))));
        }
        let len = received.data.as_ref().map_or(0, Vec::len);
        match message::find_status(response.status, response.comment.as_deref()) {
            FindStatus::Pending if found.truncated => {}
            FindStatus::Pending if !fits(&found, kept_bytes, len, max) => {
                found.truncated = true;
                cancel_deadline = Some(tokio::time::Instant::now() + association::timeout(s));
                send_command(assoc, pc.id, message::c_cancel_rq(MESSAGE_ID)).await?;
            }
            FindStatus::Pending => match received.data.as_deref().map(|d| read_match(d, ts)) {
                Some(Ok(m)) => {
                    kept_bytes += len;
                    found.matches.push(m);
                }
                // One unreadable match does not spoil the others; what it held stays out
                // of the log.
                Some(Err(())) => log::warn!("a C-FIND match from {at} could not be read"),
                None => log::warn!("a C-FIND answer from {at} carried no match"),
            },
            FindStatus::Success => return Ok(found),
            FindStatus::Cancelled if found.truncated => return Ok(found),
            FindStatus::Cancelled => {
                return Err(Failure::Status(PacsError::transient(format!(
                    "the PACS at {at} cancelled the query (status FE00H)"
                ))));
            }
            FindStatus::Failed(e) => {
                return Err(Failure::Status(PacsError {
                    message: format!("the PACS at {at}: {}", e.message),
                    ..e
                }));
            }
        }
    }
}

fn read_match(bytes: &[u8], ts: &dicom_encoding::TransferSyntax) -> Result<InMemDicomObject, ()> {
    InMemDicomObject::read_dataset_with_ts(bytes, ts).map_err(|_| ())
}

async fn send_command<S>(
    assoc: &mut AsyncClientAssociation<S>,
    pc_id: u8,
    command: Vec<u8>,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command,
        }],
    };
    Ok(assoc.send(&pdu).await?)
}

/// The command and its identifier: in one PDU when they fit the peer's maximum, else the
/// identifier streamed in fragments of the size it accepts.
async fn send_request<S>(
    assoc: &mut AsyncClientAssociation<S>,
    pc_id: u8,
    command: Vec<u8>,
    data: Vec<u8>,
) -> Result<(), Failure>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let room = assoc.acceptor_max_pdu_length().saturating_sub(100) as usize;
    if command.len() + data.len() < room {
        let pdu = Pdu::PData {
            data: vec![
                PDataValue {
                    presentation_context_id: pc_id,
                    value_type: PDataValueType::Command,
                    is_last: true,
                    data: command,
                },
                PDataValue {
                    presentation_context_id: pc_id,
                    value_type: PDataValueType::Data,
                    is_last: true,
                    data,
                },
            ],
        };
        return Ok(assoc.send(&pdu).await?);
    }
    send_command(assoc, pc_id, command).await?;
    use tokio::io::AsyncWriteExt;
    let mut writer = assoc.send_pdata(pc_id);
    let written = async {
        writer.write_all(&data).await?;
        writer.finish().await
    }
    .await;
    written.map_err(|e| Failure::Association(Broken::Io(e)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_core::VR;
    use dicom_dictionary_std::tags;
    use dicom_ul::association::server::{ServerAssociation, ServerAssociationOptions};

    fn pc(id: u8, sop: &str, ts: &str, ok: bool) -> PresentationContextNegotiated {
        PresentationContextNegotiated {
            id,
            reason: if ok {
                PresentationContextResultReason::Acceptance
            } else {
                PresentationContextResultReason::AbstractSyntaxNotSupported
            },
            abstract_syntax: sop.into(),
            transfer_syntax: ts.into(),
        }
    }

    #[test]
    fn explicit_little_endian_is_preferred_and_refused_contexts_ignored() {
        let mwl = "1.2.840.10008.5.1.4.31";
        let contexts = [
            pc(1, mwl, "1.2.840.10008.1.2\0", true),
            pc(3, mwl, "1.2.840.10008.1.2.1\0", true),
        ];
        assert_eq!(context_for(&contexts, mwl).map(|p| p.id), Some(3));
        let implicit_only = [
            pc(1, mwl, "1.2.840.10008.1.2", true),
            pc(3, mwl, "1.2.840.10008.1.2.1", false),
        ];
        assert_eq!(context_for(&implicit_only, mwl).map(|p| p.id), Some(1));
        assert!(context_for(&implicit_only, "1.2.840.10008.5.1.4.1.2.1.1").is_none());
    }

    #[test]
    fn found_shows_no_match_in_debug() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put_str(tags::PATIENT_NAME, VR::PN, "SECRET^NAME");
        let found = Found {
            matches: vec![obj],
            truncated: true,
        };
        let shown = format!("{found:?}");
        assert!(!shown.contains("SECRET"), "{shown}");
        assert!(shown.contains("matches: 1"), "{shown}");
    }

    /// An in-process peer on a loopback port: accepts `sop_class` only and plays
    /// `script` on the association; its result comes back through the join handle.
    fn peer<T: Send + 'static>(
        sop_class: &'static str,
        script: impl FnOnce(&mut ServerAssociation<std::net::TcpStream>) -> T + Send + 'static,
    ) -> (Settings, std::thread::JoinHandle<T>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let handle = std::thread::spawn(move || {
            let (socket, _) = listener.accept().unwrap();
            let mut assoc = ServerAssociationOptions::new()
                .accept_any()
                .ae_title("PEER")
                .with_abstract_syntax(sop_class)
                .establish(socket)
                .unwrap();
            script(&mut assoc)
        });
        let s = Settings {
            pacs_host: "127.0.0.1".into(),
            pacs_port: port,
            pacs_called_aet: "PEER".into(),
            pacs_timeout_s: 20,
            ..Settings::default()
        };
        (s, handle)
    }

    type Peer = ServerAssociation<std::net::TcpStream>;

    /// Reads the C-FIND-RQ (command and identifier); returns the context and identifier.
    fn read_request(assoc: &mut Peer) -> (u8, InMemDicomObject) {
        let mut command_done = false;
        let mut data = Vec::new();
        loop {
            match assoc.receive().unwrap() {
                Pdu::PData { data: pdvs } => {
                    for pdv in pdvs {
                        let pc_id = pdv.presentation_context_id;
                        match pdv.value_type {
                            PDataValueType::Command => command_done |= pdv.is_last,
                            PDataValueType::Data => {
                                data.extend_from_slice(&pdv.data);
                                if pdv.is_last && command_done {
                                    let ts = ts_of(assoc, pc_id);
                                    let obj = InMemDicomObject::read_dataset_with_ts(&data[..], ts)
                                        .unwrap();
                                    return (pc_id, obj);
                                }
                            }
                        }
                    }
                }
                other => panic!("expected the request, got {other:?}"),
            }
        }
    }

    fn ts_of(assoc: &Peer, pc_id: u8) -> &'static dicom_encoding::TransferSyntax {
        let pc = assoc
            .presentation_contexts()
            .iter()
            .find(|pc| pc.id == pc_id)
            .unwrap();
        TransferSyntaxRegistry
            .get(pc.transfer_syntax.trim_end_matches('\0'))
            .unwrap()
    }

    fn answer(assoc: &mut Peer, pc_id: u8, status: u16, patient_id: Option<&str>) {
        let mut data = vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: message::c_find_rsp(1, status, patient_id.is_some()),
        }];
        if let Some(id) = patient_id {
            let mut obj = InMemDicomObject::new_empty();
            obj.put_str(tags::PATIENT_ID, VR::LO, id);
            let mut bytes = Vec::new();
            obj.write_dataset_with_ts(&mut bytes, ts_of(assoc, pc_id))
                .unwrap();
            data.push(PDataValue {
                presentation_context_id: pc_id,
                value_type: PDataValueType::Data,
                is_last: true,
                data: bytes,
            });
        }
        assoc.send(&Pdu::PData { data }).unwrap();
    }

    /// Answers the release the client asks for; returns whether it asked.
    fn released(assoc: &mut Peer) -> bool {
        match assoc.receive() {
            Ok(Pdu::ReleaseRQ) => {
                assoc.send(&Pdu::ReleaseRP).unwrap();
                true
            }
            _ => false,
        }
    }

    fn query() -> InMemDicomObject {
        let mut q = InMemDicomObject::new_empty();
        q.put_str(tags::PATIENT_ID, VR::LO, "");
        q
    }

    fn ids(found: &Found) -> Vec<String> {
        found
            .matches
            .iter()
            .map(|m| {
                m.element(tags::PATIENT_ID)
                    .unwrap()
                    .to_str()
                    .unwrap()
                    .trim()
                    .to_string()
            })
            .collect()
    }

    const MWL: &str = crate::dicom::uid::MODALITY_WORKLIST_FIND;

    #[test]
    fn matches_stop_at_the_count_or_the_byte_budget() {
        let mut found = Found {
            matches: Vec::new(),
            truncated: false,
        };
        assert!(fits(&found, 0, 2048, 1));
        assert!(
            !fits(&found, MAX_FOUND_BYTES - 100, 2048, 200),
            "over the bytes"
        );
        found.matches.push(InMemDicomObject::new_empty());
        assert!(!fits(&found, 2048, 2048, 1), "over the count");
    }

    #[tokio::test]
    async fn past_max_matches_the_query_is_cancelled_and_late_matches_ignored() {
        let (s, peer) = peer(MWL, |assoc| {
            let (pc, _) = read_request(assoc);
            for (i, status) in [0xFF00, 0xFF01, 0xFF00, 0xFF01].into_iter().enumerate() {
                answer(assoc, pc, status, Some(&format!("P{i}")));
            }
            // The client has three and was told of a fourth: it must cancel now.
            let cancel = match assoc.receive().unwrap() {
                Pdu::PData { data } => message::parse_cancel(&data[0].data),
                other => panic!("expected C-CANCEL-RQ, got {other:?}"),
            };
            // Matches already on their way when the cancel arrived.
            answer(assoc, pc, 0xFF00, Some("late1"));
            answer(assoc, pc, 0xFF00, Some("late2"));
            answer(assoc, pc, 0xFE00, None);
            (cancel, released(assoc))
        });
        let found = find(&s, MWL, &query(), 3).await.unwrap();
        assert_eq!(ids(&found), ["P0", "P1", "P2"]);
        assert!(found.truncated);
        let (cancel, released) = peer.join().unwrap();
        assert_eq!(cancel, Some(1), "C-CANCEL-RQ for message 1");
        assert!(released, "the association is released afterwards");
    }

    #[tokio::test]
    async fn exactly_max_matches_are_not_truncated() {
        let (s, peer) = peer(MWL, |assoc| {
            let (pc, identifier) = read_request(assoc);
            answer(assoc, pc, 0xFF00, Some("A"));
            answer(assoc, pc, 0xFF01, Some("B"));
            answer(assoc, pc, 0x0000, None);
            (
                identifier.element(tags::PATIENT_ID).is_ok(),
                released(assoc),
            )
        });
        let found = find(&s, MWL, &query(), 2).await.unwrap();
        assert_eq!(ids(&found), ["A", "B"]);
        assert!(!found.truncated);
        assert_eq!(peer.join().unwrap(), (true, true));
    }

    #[tokio::test]
    async fn a_failure_status_is_a_sentence_with_its_code() {
        let (s, peer) = peer(MWL, |assoc| {
            let (pc, _) = read_request(assoc);
            answer(assoc, pc, 0xFF00, Some("A"));
            answer(assoc, pc, 0xA900, None);
            released(assoc)
        });
        let e = find(&s, MWL, &query(), 10).await.unwrap_err();
        match &e {
            FindError::Failed(p) => {
                assert_eq!(p.code, Some(crate::pacs::PacsCode::Dimse(0xA900)));
                assert!(p.message.contains("does not match the SOP class"), "{p}");
                assert!(p.message.contains("PEER@127.0.0.1"), "{p}");
            }
            other => panic!("{other:?}"),
        }
        assert!(peer.join().unwrap());
    }

    #[tokio::test]
    async fn a_peer_without_the_sop_class_is_told_apart() {
        let (s, peer) = peer(crate::dicom::uid::STUDY_ROOT_FIND, |_| ());
        let e = find(&s, crate::dicom::uid::PATIENT_ROOT_FIND, &query(), 10)
            .await
            .unwrap_err();
        assert!(matches!(e, FindError::Unsupported(_)), "{e:?}");
        assert!(e.to_string().contains("Patient Root"), "{e}");
        // The peer thread ends with the refused association.
        let _ = peer.join();
    }
}
