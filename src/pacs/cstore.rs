//! The C-STORE backend: one DICOM association per submission (dicom-ul, async, optional
//! TLS) carrying all its objects, and C-ECHO for the connection test.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use dicom_ul::association::Error as UlError;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::io::{AsyncRead, AsyncWrite};

use super::{InstanceStatus, Outgoing, PacsError, dimse, tls};
use crate::config::{Settings, TransferSyntax};
use crate::convert::uid::SECONDARY_CAPTURE;

const VERIFICATION: &str = "1.2.840.10008.1.1";
/// What we accept per PDU; only small responses come our way.
const MAX_PDU: u32 = 64 * 1024;

/// Where the association goes, for messages: `PACS@10.0.0.5:104`.
fn target(s: &Settings) -> String {
    format!("{}@{}:{}", s.pacs_called_aet, s.pacs_host, s.pacs_port)
}

fn address(s: &Settings) -> String {
    if s.pacs_host.contains(':') && !s.pacs_host.starts_with('[') {
        format!("[{}]:{}", s.pacs_host, s.pacs_port)
    } else {
        format!("{}:{}", s.pacs_host, s.pacs_port)
    }
}

fn timeout(s: &Settings) -> Duration {
    Duration::from_secs(u64::from(s.pacs_timeout_s))
}

/// dicom-ul's own socket timeouts are only a backstop, set a little longer than ours: when
/// its read times out while waiting for the association answer it reports "TLS not
/// supported", which would send the user after the wrong problem.
fn backstop(s: &Settings) -> Duration {
    timeout(s) + Duration::from_secs(5)
}

fn timed_out(s: &Settings) -> PacsError {
    PacsError::Timeout(format!(
        "the PACS at {} did not answer within {} s",
        target(s),
        s.pacs_timeout_s
    ))
}

fn ts_name(uid: &str) -> &'static str {
    match uid {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        _ => "the proposed transfer syntax",
    }
}

/// The transfer syntaxes we offer for objects written in `ts`: the same, and for
/// uncompressed objects the other uncompressed one too, which we can convert to on the fly.
fn offered(ts: TransferSyntax) -> Vec<&'static str> {
    match ts {
        TransferSyntax::ImplicitVrLittleEndian => {
            vec![ts.uid(), TransferSyntax::ExplicitVrLittleEndian.uid()]
        }
        TransferSyntax::ExplicitVrLittleEndian => {
            vec![ts.uid(), TransferSyntax::ImplicitVrLittleEndian.uid()]
        }
        TransferSyntax::JpegBaseline => vec![ts.uid()],
    }
}

/// An established association over plain TCP or TLS. One lives per submission, on the
/// stack of its task, so the TLS variant's size does not matter.
#[allow(clippy::large_enum_variant)]
enum Association {
    Plain(AsyncClientAssociation<tokio::net::TcpStream>),
    Tls(AsyncClientAssociation<dicom_ul::association::client::AsyncTlsStream>),
}

async fn associate(
    s: &Settings,
    abstract_syntax: &'static str,
    transfer_syntaxes: Vec<&'static str>,
) -> Result<Association, PacsError> {
    let what = describe_offer(abstract_syntax, &transfer_syntaxes);
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(s.local_calling_aet.clone())
        .called_ae_title(s.pacs_called_aet.clone());
    // One presentation context per transfer syntax, as dcmtk's storescu does: the PACS then
    // says yes or no to each, and we can pick the one our files are already written in
    // instead of whichever the PACS prefers (re-encoding every object costs more than
    // sending it).
    for ts in transfer_syntaxes {
        opts =
            opts.with_presentation_context(Cow::Borrowed(abstract_syntax), vec![Cow::Borrowed(ts)]);
    }
    let mut opts = opts
        .max_pdu_length(MAX_PDU)
        .connection_timeout(backstop(s))
        .read_timeout(backstop(s))
        .write_timeout(backstop(s));
    let addr = address(s);
    let assoc = if s.pacs_tls {
        let config =
            tls::client_config(s).map_err(|e| PacsError::Rejected(format!("TLS set-up: {e}")))?;
        opts = opts.tls_config(config).server_name(&s.pacs_host);
        let mut a = tokio::time::timeout(timeout(s), opts.establish_tls_async(addr.as_str()))
            .await
            .map_err(|_| timed_out(s))?
            .map_err(|e| ul_error(&e, s, &what))?;
        // Each DIMSE exchange is a small write awaiting an answer: Nagle would hold it
        // back for a delayed ACK, about 40 ms per object.
        let _ = a.inner_stream().get_ref().0.set_nodelay(true);
        Association::Tls(a)
    } else {
        let mut a = tokio::time::timeout(timeout(s), opts.establish_async(addr.as_str()))
            .await
            .map_err(|_| timed_out(s))?
            .map_err(|e| ul_error(&e, s, &what))?;
        let _ = a.inner_stream().set_nodelay(true);
        Association::Plain(a)
    };
    Ok(assoc)
}

fn describe_offer(abstract_syntax: &str, transfer_syntaxes: &[&str]) -> String {
    let class = if abstract_syntax == VERIFICATION {
        "Verification"
    } else {
        "Secondary Capture"
    };
    format!(
        "{class} in {}",
        ts_name(transfer_syntaxes.first().copied().unwrap_or(""))
    )
}

/// A user-facing account of an association failure.
fn ul_error(e: &UlError, s: &Settings, what: &str) -> PacsError {
    let at = target(s);
    if let Some(tls) = tls::describe_handshake_error(e) {
        return PacsError::Rejected(format!("{tls} ({at})"));
    }
    match e {
        UlError::Timeout { .. } => timed_out(s),
        UlError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            PacsError::Timeout(format!(
                "cannot reach the PACS at {at} (connection timed out)"
            ))
        }
        UlError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            PacsError::Rejected(format!(
                "cannot connect to the PACS at {at}: connection refused (check the host and port, and that the PACS is running)"
            ))
        }
        UlError::Connect { source, .. } | UlError::ToAddress { source, .. } => {
            PacsError::Rejected(format!("cannot connect to the PACS at {at}: {source}"))
        }
        UlError::Rejected { association_rj, .. } => PacsError::Rejected(format!(
            "the PACS at {at} rejected the association: {} (check the AE titles)",
            association_rj.source
        )),
        UlError::NoAcceptedPresentationContexts { .. } => {
            PacsError::Rejected(format!("the PACS at {at} does not accept {what}"))
        }
        UlError::Aborted { .. } => {
            PacsError::Rejected(format!("the PACS at {at} aborted the association"))
        }
        UlError::ConnectionClosed { .. } => {
            PacsError::Rejected(format!("the PACS at {at} closed the connection"))
        }
        UlError::TlsNotSupported => PacsError::Rejected(format!(
            "the PACS at {at} and the gateway disagree about TLS (check PACS_TLS)"
        )),
        other => PacsError::Rejected(format!("DICOM association with {at} failed: {other}")),
    }
}

/// Sends every object in one association and classifies each answer.
pub async fn send(s: &Settings, batch: &[Outgoing]) -> Result<Vec<InstanceStatus>, PacsError> {
    let ts = s.local_transfer_syntax;
    match associate(s, SECONDARY_CAPTURE, offered(ts)).await? {
        Association::Plain(a) => store_all(a, s, batch, ts).await,
        Association::Tls(a) => store_all(a, s, batch, ts).await,
    }
}

async fn store_all<S>(
    mut assoc: AsyncClientAssociation<S>,
    s: &Settings,
    batch: &[Outgoing],
    file_ts: TransferSyntax,
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
    let preferred = accepted
        .iter()
        .find(|pc| uid_eq(&pc.transfer_syntax, file_ts.uid()));
    let Some(pc) = preferred.or(accepted.first()).cloned() else {
        let _ = assoc.abort().await;
        return Err(PacsError::Rejected(format!(
            "the PACS at {} does not accept Secondary Capture in {}",
            target(s),
            ts_name(file_ts.uid())
        )));
    };
    let mut statuses = Vec::with_capacity(batch.len());
    // One buffer for every file: a fresh 2 MB allocation per object costs more in page
    // faults than the sending itself.
    let mut buffer = Vec::new();
    for (i, item) in batch.iter().enumerate() {
        let message_id = u16::try_from(i + 1).unwrap_or(u16::MAX);
        let exchange = store_one(&mut assoc, &pc, item, message_id, file_ts, &mut buffer);
        let stored = tokio::time::timeout(timeout(s), exchange)
            .await
            .unwrap_or(Err(StoreError::Association(Broken::TimedOut)));
        match stored {
            Ok(status) => statuses.push(status),
            Err(StoreError::Instance(reason)) => statuses.push(InstanceStatus::Failed(reason)),
            Err(StoreError::Association(b)) => {
                let e = broken_error(&b, s, "Secondary Capture");
                if statuses.is_empty() {
                    return Err(e);
                }
                // Some objects are stored already: report them, and the rest as failed.
                let reason = format!("not sent: {e}");
                statuses.resize(batch.len(), InstanceStatus::Failed(reason));
                return Ok(statuses);
            }
        }
    }
    let _ = tokio::time::timeout(timeout(s), assoc.release()).await;
    Ok(statuses)
}

enum StoreError {
    /// This object could not be sent; the association is still good.
    Instance(String),
    /// The association is gone.
    Association(Broken),
}

/// How an association ended under us.
enum Broken {
    Ul(UlError),
    TimedOut,
    Aborted,
    Released,
    Io(std::io::Error),
}

impl From<UlError> for StoreError {
    fn from(e: UlError) -> Self {
        StoreError::Association(Broken::Ul(e))
    }
}

fn broken_error(b: &Broken, s: &Settings, what: &str) -> PacsError {
    let at = target(s);
    match b {
        Broken::Ul(e) => ul_error(e, s, what),
        Broken::TimedOut => timed_out(s),
        Broken::Aborted => PacsError::Rejected(format!("the PACS at {at} aborted the association")),
        Broken::Released => {
            PacsError::Rejected(format!("the PACS at {at} ended the association early"))
        }
        Broken::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => PacsError::Timeout(format!(
            "the PACS at {at} stopped reading within {} s",
            s.pacs_timeout_s
        )),
        Broken::Io(e) => {
            PacsError::Rejected(format!("the connection to the PACS at {at} failed: {e}"))
        }
    }
}

async fn store_one<S>(
    assoc: &mut AsyncClientAssociation<S>,
    pc: &dicom_ul::pdu::PresentationContextNegotiated,
    item: &Outgoing,
    message_id: u16,
    file_ts: TransferSyntax,
    buffer: &mut Vec<u8>,
) -> Result<InstanceStatus, StoreError>
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
    let file = match read {
        Ok((bytes, Ok(_))) => {
            *buffer = bytes;
            &buffer[..]
        }
        Ok((bytes, Err(e))) => {
            *buffer = bytes;
            return Err(StoreError::Instance(format!(
                "the DICOM file could not be read: {e}"
            )));
        }
        Err(e) => {
            return Err(StoreError::Instance(format!(
                "the DICOM file could not be read: {e}"
            )));
        }
    };
    let data = dataset_for(file, file_ts, &pc.transfer_syntax).map_err(StoreError::Instance)?;
    let command = dimse::c_store_rq(message_id, SECONDARY_CAPTURE, &item.sop_instance_uid);
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
        written.map_err(|e| StoreError::Association(Broken::Io(e)))?;
    }
    let response = receive_command(assoc).await?;
    let parsed = dimse::parse_response(&response).map_err(StoreError::Instance)?;
    Ok(dimse::store_status(
        parsed.status,
        parsed.comment.as_deref(),
    ))
}

/// UIDs on the wire may carry a trailing NUL or space pad.
fn uid_eq(wire: &str, uid: &str) -> bool {
    wire.trim_end_matches(['\0', ' ']) == uid
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
        .ok_or_else(|| format!("cannot convert to {}", ts_name(negotiated)))?;
    let obj = dicom_object::from_reader(&file[128..]).map_err(|e| e.to_string())?;
    let ts = dicom_transfer_syntax_registry::TransferSyntaxRegistry
        .get(target.uid())
        .ok_or("unknown transfer syntax")?;
    let mut out = Vec::with_capacity(file.len());
    obj.write_dataset_with_ts(&mut out, ts)
        .map_err(|e| e.to_string())?;
    Ok(Cow::Owned(out))
}

use dicom_encoding::TransferSyntaxIndex as _;

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

/// Reads P-DATA until the last fragment of a command arrives.
async fn receive_command<S>(assoc: &mut AsyncClientAssociation<S>) -> Result<Vec<u8>, StoreError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut command = Vec::new();
    loop {
        match assoc.receive().await? {
            Pdu::PData { data } => {
                for pdv in data {
                    if pdv.value_type == PDataValueType::Command {
                        command.extend_from_slice(&pdv.data);
                        if pdv.is_last {
                            return Ok(command);
                        }
                    }
                }
            }
            Pdu::AbortRQ { .. } => return Err(StoreError::Association(Broken::Aborted)),
            Pdu::ReleaseRQ => return Err(StoreError::Association(Broken::Released)),
            _ => {
                return Err(StoreError::Instance(
                    "unexpected answer from the PACS".into(),
                ));
            }
        }
    }
}

/// C-ECHO: association, one echo, release. Returns the whole round trip.
pub async fn echo(s: &Settings) -> Result<Duration, PacsError> {
    let started = Instant::now();
    let offered = vec!["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"];
    let assoc = associate(s, VERIFICATION, offered).await?;
    log::debug!(
        "association for C-ECHO took {} ms",
        started.elapsed().as_millis()
    );
    let status = match assoc {
        Association::Plain(a) => echo_on(a, s).await,
        Association::Tls(a) => echo_on(a, s).await,
    }?;
    if status != 0 {
        return Err(PacsError::Rejected(format!(
            "the PACS at {} answered the echo with status {status:04X}H",
            target(s)
        )));
    }
    Ok(started.elapsed())
}

async fn echo_on<S>(mut assoc: AsyncClientAssociation<S>, s: &Settings) -> Result<u16, PacsError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let Some(pc_id) = assoc
        .presentation_contexts()
        .iter()
        .find(|pc| pc.reason == PresentationContextResultReason::Acceptance)
        .map(|pc| pc.id)
    else {
        let _ = assoc.abort().await;
        return Err(PacsError::Rejected(format!(
            "the PACS at {} does not accept C-ECHO",
            target(s)
        )));
    };
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: dimse::c_echo_rq(1),
        }],
    };
    assoc
        .send(&pdu)
        .await
        .map_err(|e| ul_error(&e, s, "Verification"))?;
    let response = match receive_command(&mut assoc).await {
        Ok(r) => r,
        Err(StoreError::Association(b)) => return Err(broken_error(&b, s, "Verification")),
        Err(StoreError::Instance(reason)) => return Err(PacsError::Rejected(reason)),
    };
    let parsed = dimse::parse_response(&response).map_err(PacsError::Rejected)?;
    let t = Instant::now();
    let _ = tokio::time::timeout(timeout(s), assoc.release()).await;
    log::debug!("C-ECHO release took {} ms", t.elapsed().as_millis());
    Ok(parsed.status)
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn uncompressed_objects_offer_both_little_endian_syntaxes() {
        assert_eq!(offered(TransferSyntax::ImplicitVrLittleEndian).len(), 2);
        assert_eq!(
            offered(TransferSyntax::JpegBaseline),
            ["1.2.840.10008.1.2.4.50"]
        );
    }
}
