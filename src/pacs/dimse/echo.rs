//! C-ECHO: the connection test an installer runs from the settings page or the shell.

use std::time::{Duration, Instant};

use dicom_ul::association::client::AsyncClientAssociation;
use dicom_ul::pdu::{PDataValue, PDataValueType, Pdu, PresentationContextResultReason};
use tokio::io::{AsyncRead, AsyncWrite};

use super::association::{
    self, Association, ExchangeError, Offer, associate, broken_error, receive_command, ul_error,
};
use super::message;
use crate::config::Settings;
use crate::pacs::error::{PacsCode, PacsError};

const VERIFICATION: &str = "1.2.840.10008.1.1";

/// Association, one echo, release. Returns the whole round trip.
pub async fn echo(s: &Settings) -> Result<Duration, PacsError> {
    let started = Instant::now();
    let offers = [Offer {
        abstract_syntax: VERIFICATION.into(),
        transfer_syntaxes: vec!["1.2.840.10008.1.2", "1.2.840.10008.1.2.1"],
    }];
    let assoc = associate(s, &offers).await?;
    log::debug!(
        "association for C-ECHO took {} ms",
        started.elapsed().as_millis()
    );
    let status = match assoc {
        Association::Plain(a) => echo_on(a, s).await,
        Association::Tls(a) => echo_on(a, s).await,
    }?;
    if status != 0 {
        return Err(PacsError::permanent(format!(
            "the PACS at {} answered the echo with status {status:04X}H",
            association::target(s)
        ))
        .with_code(PacsCode::Dimse(status)));
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
        return Err(PacsError::permanent(format!(
            "the PACS at {} does not accept C-ECHO",
            association::target(s)
        )));
    };
    let pdu = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pc_id,
            value_type: PDataValueType::Command,
            is_last: true,
            data: message::c_echo_rq(1),
        }],
    };
    assoc
        .send(&pdu)
        .await
        .map_err(|e| ul_error(&e, s, "Verification"))?;
    let exchange = receive_command(&mut assoc);
    let response = match tokio::time::timeout(association::timeout(s), exchange).await {
        Err(_) => return Err(association::timed_out(s)),
        Ok(Ok(r)) => r,
        Ok(Err(ExchangeError::Association(b))) => return Err(broken_error(&b, s, "Verification")),
        Ok(Err(ExchangeError::Instance(e))) => return Err(e),
    };
    let parsed = message::parse_response(&response).map_err(PacsError::transient)?;
    let t = Instant::now();
    let _ = tokio::time::timeout(association::timeout(s), assoc.release()).await;
    log::debug!("C-ECHO release took {} ms", t.elapsed().as_millis());
    Ok(parsed.status)
}
