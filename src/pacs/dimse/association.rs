//! Setting up a DICOM association (dicom-ul, plain TCP or TLS) and saying, as a typed
//! [`PacsError`], why one could not be set up or broke under us.

use std::borrow::Cow;
use std::time::Duration;

use dicom_ul::association::Error as UlError;
use dicom_ul::association::client::{AsyncClientAssociation, ClientAssociationOptions};
use dicom_ul::pdu::{
    AssociationRJResult, AssociationRJServiceUserReason, AssociationRJSource, PDataValueType, Pdu,
};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::config::Settings;
use crate::dicom::uid::sop_class_name;
use crate::dicom::{TransferSyntax, transfer_syntax_name};
use crate::pacs::error::PacsError;
use crate::pacs::tls;

/// What we accept per PDU; only small responses come our way.
const MAX_PDU: u32 = 64 * 1024;

/// Where the association goes, for messages: `PACS@10.0.0.5:104`.
pub fn target(s: &Settings) -> String {
    format!("{}@{}:{}", s.pacs_called_aet, s.pacs_host, s.pacs_port)
}

fn address(s: &Settings) -> String {
    if s.pacs_host.contains(':') && !s.pacs_host.starts_with('[') {
        format!("[{}]:{}", s.pacs_host, s.pacs_port)
    } else {
        format!("{}:{}", s.pacs_host, s.pacs_port)
    }
}

pub fn timeout(s: &Settings) -> Duration {
    Duration::from_secs(u64::from(s.pacs_timeout_s))
}

/// dicom-ul's own socket timeouts are only a backstop, set a little longer than ours: when
/// its read times out while waiting for the association answer it reports "TLS not
/// supported", which would send the user after the wrong problem.
fn backstop(s: &Settings) -> Duration {
    timeout(s) + Duration::from_secs(5)
}

pub fn timed_out(s: &Settings) -> PacsError {
    PacsError::timeout(format!(
        "the PACS at {} did not answer within {} s",
        target(s),
        s.pacs_timeout_s
    ))
}

/// The transfer syntaxes we offer for objects written in `ts`: the same, and for
/// uncompressed objects the other uncompressed one too, which we can convert to on the fly.
pub fn offered(ts: TransferSyntax) -> Vec<&'static str> {
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

/// One abstract syntax (SOP class) with the transfer syntaxes offered for it.
pub struct Offer {
    pub abstract_syntax: String,
    pub transfer_syntaxes: Vec<&'static str>,
}

/// An established association over plain TCP or TLS. One lives per delivery, on the stack
/// of its task, so the TLS variant's size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Association {
    Plain(AsyncClientAssociation<tokio::net::TcpStream>),
    Tls(AsyncClientAssociation<dicom_ul::association::client::AsyncTlsStream>),
}

/// Opens an association offering one presentation context per (SOP class, transfer
/// syntax), as dcmtk's storescu does: the PACS then says yes or no to each, and we can pick
/// the one our files are already written in instead of whichever the PACS prefers
/// (re-encoding every object costs more than sending it).
pub async fn associate(s: &Settings, offers: &[Offer]) -> Result<Association, PacsError> {
    associate_offer(s, offers)
        .await
        .map_err(SetUpError::into_pacs)
}

/// Why no association came about, told apart where a caller has a fallback.
#[derive(Debug)]
pub enum SetUpError {
    /// The peer takes none of what we offered: no presentation context accepted, or the
    /// association rejected with no reason given (what dcmtk-based peers, Orthanc among
    /// them, answer when no context is acceptable).
    NotAccepted(PacsError),
    Failed(PacsError),
}

impl SetUpError {
    pub fn into_pacs(self) -> PacsError {
        match self {
            SetUpError::NotAccepted(e) | SetUpError::Failed(e) => e,
        }
    }
}

/// [`associate`], saying whether the peer does not accept the offer at all.
pub async fn associate_offer(s: &Settings, offers: &[Offer]) -> Result<Association, SetUpError> {
    let what = describe_offer(offers);
    let failed = |e: &UlError| {
        let pacs = ul_error(e, s, &what);
        if not_accepted(e) {
            SetUpError::NotAccepted(pacs)
        } else {
            SetUpError::Failed(pacs)
        }
    };
    let mut opts = ClientAssociationOptions::new()
        .calling_ae_title(s.local_calling_aet.clone())
        .called_ae_title(s.pacs_called_aet.clone());
    for offer in offers {
        for ts in &offer.transfer_syntaxes {
            opts = opts.with_presentation_context(
                Cow::Owned(offer.abstract_syntax.clone()),
                vec![Cow::Borrowed(*ts)],
            );
        }
    }
    let mut opts = opts
        .max_pdu_length(MAX_PDU)
        .connection_timeout(backstop(s))
        .read_timeout(backstop(s))
        .write_timeout(backstop(s));
    let addr = address(s);
    let assoc = if s.pacs_tls {
        let config = tls::client_config(s).map_err(|e| {
            SetUpError::Failed(PacsError::configuration(format!("TLS set-up: {e}")))
        })?;
        opts = opts.tls_config(config).server_name(&s.pacs_host);
        let mut a = tokio::time::timeout(timeout(s), opts.establish_tls_async(addr.as_str()))
            .await
            .map_err(|_| SetUpError::Failed(timed_out(s)))?
            .map_err(|e| failed(&e))?;
        // Each DIMSE exchange is a small write awaiting an answer: Nagle would hold it
        // back for a delayed ACK, about 40 ms per object.
        let _ = a.inner_stream().get_ref().0.set_nodelay(true);
        Association::Tls(a)
    } else {
        let mut a = tokio::time::timeout(timeout(s), opts.establish_async(addr.as_str()))
            .await
            .map_err(|_| SetUpError::Failed(timed_out(s)))?
            .map_err(|e| failed(&e))?;
        let _ = a.inner_stream().set_nodelay(true);
        Association::Plain(a)
    };
    Ok(assoc)
}

/// Whether an association failure means the peer does not take what we offered.
fn not_accepted(e: &UlError) -> bool {
    match e {
        UlError::NoAcceptedPresentationContexts { .. } => true,
        UlError::Rejected { association_rj, .. } => {
            association_rj.result == AssociationRJResult::Permanent
                && association_rj.source
                    == AssociationRJSource::ServiceUser(
                        AssociationRJServiceUserReason::NoReasonGiven,
                    )
        }
        _ => false,
    }
}

fn describe_offer(offers: &[Offer]) -> String {
    let mut parts: Vec<String> = offers
        .iter()
        .map(|o| {
            format!(
                "{} in {}",
                sop_class_name(&o.abstract_syntax),
                transfer_syntax_name(o.transfer_syntaxes.first().copied().unwrap_or(""))
            )
        })
        .collect();
    parts.dedup();
    parts.join(" or ")
}

/// A user-facing, classified account of an association failure.
pub fn ul_error(e: &UlError, s: &Settings, what: &str) -> PacsError {
    let at = target(s);
    if let Some(tls) = tls::describe_handshake_error(e) {
        // A certificate we or the PACS do not trust does not fix itself.
        return PacsError::configuration(format!("{tls} ({at})"));
    }
    match e {
        UlError::Timeout { .. } => timed_out(s),
        UlError::Connect { source, .. } if source.kind() == std::io::ErrorKind::TimedOut => {
            PacsError::timeout(format!(
                "cannot reach the PACS at {at} (connection timed out)"
            ))
        }
        UlError::Connect { source, .. }
            if source.kind() == std::io::ErrorKind::ConnectionRefused =>
        {
            PacsError::transient(format!(
                "cannot connect to the PACS at {at}: connection refused (check the host and port, and that the PACS is running)"
            ))
        }
        UlError::Connect { source, .. } | UlError::ToAddress { source, .. } => {
            PacsError::transient(format!("cannot connect to the PACS at {at}: {source}"))
        }
        UlError::Rejected { association_rj, .. } => {
            let message = format!(
                "the PACS at {at} rejected the association: {} (check the AE titles)",
                association_rj.source
            );
            match association_rj.result {
                AssociationRJResult::Transient => PacsError::transient(message),
                AssociationRJResult::Permanent => PacsError::permanent(message),
            }
        }
        UlError::NoAcceptedPresentationContexts { .. } => {
            PacsError::permanent(format!("the PACS at {at} does not accept {what}"))
        }
        UlError::Aborted { .. } => {
            PacsError::transient(format!("the PACS at {at} aborted the association"))
        }
        UlError::ConnectionClosed { .. } => {
            PacsError::transient(format!("the PACS at {at} closed the connection"))
        }
        // dicom-ul reports any failure to read the association answer over an established
        // TLS connection as "TLS not supported", dropping the cause. With TLS 1.3 that is
        // how a PACS requiring a client certificate refuses one (missing or from a CA it
        // does not trust): our side of the handshake has already finished, and its alert
        // arrives in place of the answer.
        UlError::TlsNotSupported if s.pacs_tls => PacsError::configuration(format!(
            "TLS: the PACS at {at} ended the connection instead of answering; it may require a client certificate (PACS_TLS_CERT_FILE, PACS_TLS_KEY_FILE) or not trust ours"
        )),
        // Without TLS, dicom-ul gives the same error for any association answer it could
        // not read: most often the connection closed without a byte, as when a port
        // forwarder or proxy is up and the PACS behind it is not. That passes; a PACS that
        // wants TLS would also end it this way, so the message names both.
        UlError::TlsNotSupported => PacsError::transient(format!(
            "the PACS at {at} closed the connection without answering the association request (it may be restarting; if it requires TLS, set PACS_TLS)"
        )),
        other => PacsError::transient(format!("DICOM association with {at} failed: {other}")),
    }
}

/// How an association ended under us.
pub enum Broken {
    Ul(UlError),
    TimedOut,
    Aborted,
    Released,
    Io(std::io::Error),
}

pub fn broken_error(b: &Broken, s: &Settings, what: &str) -> PacsError {
    let at = target(s);
    match b {
        Broken::Ul(e) => ul_error(e, s, what),
        Broken::TimedOut => timed_out(s),
        Broken::Aborted => {
            PacsError::transient(format!("the PACS at {at} aborted the association"))
        }
        Broken::Released => {
            PacsError::transient(format!("the PACS at {at} ended the association early"))
        }
        Broken::Io(e) if e.kind() == std::io::ErrorKind::TimedOut => PacsError::timeout(format!(
            "the PACS at {at} stopped reading within {} s",
            s.pacs_timeout_s
        )),
        Broken::Io(e) => {
            PacsError::transient(format!("the connection to the PACS at {at} failed: {e}"))
        }
    }
}

/// A failed exchange: this object only, or the whole association.
pub enum ExchangeError {
    /// This object could not be sent; the association is still good.
    Instance(PacsError),
    /// The association is gone.
    Association(Broken),
}

impl From<UlError> for ExchangeError {
    fn from(e: UlError) -> Self {
        ExchangeError::Association(Broken::Ul(e))
    }
}

/// Reads P-DATA until the last fragment of a command arrives.
pub async fn receive_command<S>(
    assoc: &mut AsyncClientAssociation<S>,
) -> Result<Vec<u8>, ExchangeError>
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
            Pdu::AbortRQ { .. } => return Err(ExchangeError::Association(Broken::Aborted)),
            Pdu::ReleaseRQ => return Err(ExchangeError::Association(Broken::Released)),
            _ => {
                return Err(ExchangeError::Instance(PacsError::transient(
                    "unexpected answer from the PACS",
                )));
            }
        }
    }
}

/// One DIMSE message as received: its command set and, when the command says one follows,
/// its data set.
pub struct Message {
    pub command: Vec<u8>,
    pub data: Option<Vec<u8>>,
}

/// Reads P-DATA until a whole message has arrived: the last fragment of its command, and
/// the last fragment of its data set when the command announces one. `max_data` bounds the
/// data set: a peer cannot make us hold more than that.
pub async fn receive_message<S>(
    assoc: &mut AsyncClientAssociation<S>,
    max_data: usize,
) -> Result<Message, ExchangeError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send,
{
    let mut command = Vec::new();
    let mut command_done = false;
    let mut data = Vec::new();
    let mut data_done = false;
    loop {
        match assoc.receive().await? {
            Pdu::PData { data: pdvs } => {
                for pdv in pdvs {
                    match pdv.value_type {
                        PDataValueType::Command if !command_done => {
                            command.extend_from_slice(&pdv.data);
                            command_done = pdv.is_last;
                        }
                        PDataValueType::Data if !data_done => {
                            if data.len() + pdv.data.len() > max_data {
                                return Err(ExchangeError::Instance(PacsError::transient(
                                    "the PACS sent a larger answer than the gateway accepts",
                                )));
                            }
                            data.extend_from_slice(&pdv.data);
                            data_done = pdv.is_last;
                        }
                        _ => {}
                    }
                }
            }
            Pdu::AbortRQ { .. } => return Err(ExchangeError::Association(Broken::Aborted)),
            Pdu::ReleaseRQ => return Err(ExchangeError::Association(Broken::Released)),
            _ => {
                return Err(ExchangeError::Instance(PacsError::transient(
                    "unexpected answer from the PACS",
                )));
            }
        }
        if !command_done {
            continue;
        }
        let follows = super::message::parse_response(&command)
            .map(|r| r.has_data_set)
            .unwrap_or(false);
        if !follows {
            return Ok(Message {
                command,
                data: None,
            });
        }
        if data_done {
            return Ok(Message {
                command,
                data: Some(data),
            });
        }
    }
}

/// UIDs on the wire may carry a trailing NUL or space pad.
pub fn uid_eq(wire: &str, uid: &str) -> bool {
    wire.trim_end_matches(['\0', ' ']) == uid
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncompressed_objects_offer_both_little_endian_syntaxes() {
        assert_eq!(offered(TransferSyntax::ImplicitVrLittleEndian).len(), 2);
        assert_eq!(
            offered(TransferSyntax::JpegBaseline),
            ["1.2.840.10008.1.2.4.50"]
        );
    }

    #[test]
    fn an_offer_is_described_by_class_and_syntax() {
        let offers = [Offer {
            abstract_syntax: crate::dicom::uid::SECONDARY_CAPTURE.into(),
            transfer_syntaxes: offered(TransferSyntax::JpegBaseline),
        }];
        assert_eq!(
            describe_offer(&offers),
            "Secondary Capture in JPEG Baseline"
        );
    }
}
