//! DIMSE messages for C-ECHO, C-STORE, C-FIND and C-CANCEL (PS3.7): command sets and what
//! a status means.

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::{tags, uids};
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN;

use crate::pacs::InstanceStatus;
use crate::pacs::error::{PacsCode, PacsError, dimse_failure_class};

const C_STORE_RQ: u16 = 0x0001;
const C_ECHO_RQ: u16 = 0x0030;
const C_FIND_RQ: u16 = 0x0020;
pub const C_FIND_RSP: u16 = 0x8020;
const C_CANCEL_RQ: u16 = 0x0FFF;
/// Command Data Set Type: a data set follows / none follows.
const DATA_SET_PRESENT: u16 = 0x0000;
const NO_DATA_SET: u16 = 0x0101;

/// The command set of a C-STORE-RQ, encoded as every command is: Implicit VR Little Endian.
pub fn c_store_rq(message_id: u16, sop_class_uid: &str, sop_instance_uid: &str) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_STORE_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0_u16),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
        ui(tags::AFFECTED_SOP_INSTANCE_UID, sop_instance_uid),
    ]))
}

/// The command set of a C-ECHO-RQ.
pub fn c_echo_rq(message_id: u16) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, uids::VERIFICATION),
        us(tags::COMMAND_FIELD, C_ECHO_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ]))
}

/// The command set of a C-FIND-RQ (medium priority); the identifier follows as a data set.
pub fn c_find_rq(message_id: u16, sop_class_uid: &str) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        ui(tags::AFFECTED_SOP_CLASS_UID, sop_class_uid),
        us(tags::COMMAND_FIELD, C_FIND_RQ),
        us(tags::MESSAGE_ID, message_id),
        us(tags::PRIORITY, 0_u16),
        us(tags::COMMAND_DATA_SET_TYPE, DATA_SET_PRESENT),
    ]))
}

/// The command set of a C-CANCEL-RQ for the request `message_id` (PS3.7 9.3.2.3).
pub fn c_cancel_rq(message_id: u16) -> Vec<u8> {
    encode(InMemDicomObject::command_from_element_iter([
        us(tags::COMMAND_FIELD, C_CANCEL_RQ),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, NO_DATA_SET),
    ]))
}

/// A C-FIND-RSP command set, as a peer sends it (for in-process test peers).
#[cfg(test)]
pub fn c_find_rsp(message_id: u16, status: u16, match_follows: bool) -> Vec<u8> {
    let data_set = if match_follows { 0x0001 } else { NO_DATA_SET };
    encode(InMemDicomObject::command_from_element_iter([
        us(tags::COMMAND_FIELD, C_FIND_RSP),
        us(tags::MESSAGE_ID_BEING_RESPONDED_TO, message_id),
        us(tags::COMMAND_DATA_SET_TYPE, data_set),
        us(tags::STATUS, status),
    ]))
}

/// The request a C-CANCEL-RQ command set cancels (for in-process test peers).
#[cfg(test)]
pub fn parse_cancel(bytes: &[u8]) -> Option<u16> {
    let obj =
        InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased()).ok()?;
    let int = |tag| obj.element(tag).ok()?.to_int::<u16>().ok();
    (int(tags::COMMAND_FIELD)? == C_CANCEL_RQ)
        .then(|| int(tags::MESSAGE_ID_BEING_RESPONDED_TO))
        .flatten()
}

/// An unsigned short element of a command set.
fn us(tag: dicom_core::Tag, value: u16) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::US, PrimitiveValue::from(value))
}

/// A UID element of a command set.
fn ui(tag: dicom_core::Tag, uid: &str) -> DataElement<InMemDicomObject> {
    DataElement::new(tag, VR::UI, PrimitiveValue::from(uid))
}

fn encode(cmd: InMemDicomObject) -> Vec<u8> {
    let mut out = Vec::with_capacity(160);
    // Writing a handful of known elements into memory cannot fail.
    let _ = cmd.write_dataset_with_ts(&mut out, &IMPLICIT_VR_LITTLE_ENDIAN.erased());
    out
}

/// The parts of a response command we act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Command Field (0000,0100), e.g. [`C_FIND_RSP`].
    pub command_field: Option<u16>,
    pub status: u16,
    pub message_id_responded_to: Option<u16>,
    /// Error Comment (0000,0902), when the peer gave one.
    pub comment: Option<String>,
    /// Whether a data set (a C-FIND match) follows the command.
    pub has_data_set: bool,
}

/// Reads a response command set.
pub fn parse_response(bytes: &[u8]) -> Result<Response, String> {
    let obj = InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
        .map_err(|e| format!("unreadable response command: {e}"))?;
    let status = obj
        .element(tags::STATUS)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok())
        .ok_or_else(|| "response without a status".to_string())?;
    let int = |tag| obj.element(tag).ok().and_then(|e| e.to_int::<u16>().ok());
    let command_field = int(tags::COMMAND_FIELD);
    let has_data_set = int(tags::COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET);
    let message_id_responded_to = obj
        .element(tags::MESSAGE_ID_BEING_RESPONDED_TO)
        .ok()
        .and_then(|e| e.to_int::<u16>().ok());
    let comment = obj
        .element(tags::ERROR_COMMENT)
        .ok()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty());
    Ok(Response {
        command_field,
        status,
        message_id_responded_to,
        comment,
        has_data_set,
    })
}

/// What a C-STORE-RSP status means for the instance (PS3.4 B.2.3 and PS3.7 C): stored,
/// stored with a warning, or refused, with out of resources (A7xx) worth another try later
/// and every other failure not.
pub fn store_status(status: u16, comment: Option<&str>) -> InstanceStatus {
    let describe = |meaning: &str| match comment {
        Some(c) => format!("{meaning} (status {status:04X}H: {c})"),
        None => format!("{meaning} (status {status:04X}H)"),
    };
    let failed = |meaning: &str| {
        let mut e = PacsError::permanent(describe(meaning)).with_code(PacsCode::Dimse(status));
        e.class = dimse_failure_class(status);
        InstanceStatus::Failed(e)
    };
    match status {
        0x0000 => InstanceStatus::Success,
        0xB000 => InstanceStatus::Warning(describe(
            "stored, but some attributes were changed by the PACS",
        )),
        0xB006 => InstanceStatus::Warning(describe(
            "stored, but some elements were discarded by the PACS",
        )),
        0xB007 => InstanceStatus::Warning(describe(
            "stored, but the data set does not match the SOP class",
        )),
        0x0001 | 0x0107 | 0x0116 | 0xB001..=0xBFFF => {
            InstanceStatus::Warning(describe("stored with a warning"))
        }
        0xA700..=0xA7FF => failed("refused: the PACS is out of resources"),
        0xA900..=0xA9FF => failed("refused: the data set does not match the SOP class"),
        0xC000..=0xCFFF => failed("refused: the PACS cannot understand it"),
        0x0122 => failed("refused: the PACS does not support this SOP class"),
        0x0124 => failed("refused: not authorised"),
        0x0211 => failed("refused: unrecognised operation"),
        0x0212 => failed("refused: mistyped argument"),
        0xFE00 => failed("cancelled by the PACS"),
        _ => failed("refused by the PACS"),
    }
}

/// What a C-FIND-RSP status means (PS3.4 C.4.1.1.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FindStatus {
    /// A match follows (FF00), or one whose optional keys were not all supported (FF01).
    Pending,
    Success,
    /// Matching stopped on a C-CANCEL (FE00).
    Cancelled,
    Failed(PacsError),
}

/// Classifies a C-FIND-RSP status; failures carry the status code and a sentence, with out of
/// resources (A7xx) worth another try and every other failure not.
pub fn find_status(status: u16, comment: Option<&str>) -> FindStatus {
    let failed = |meaning: &str| {
        let message = match comment {
            Some(c) => format!("{meaning} (status {status:04X}H: {c})"),
            None => format!("{meaning} (status {status:04X}H)"),
        };
        let mut e = PacsError::permanent(message).with_code(PacsCode::Dimse(status));
        e.class = dimse_failure_class(status);
        FindStatus::Failed(e)
    };
    match status {
        0xFF00 | 0xFF01 => FindStatus::Pending,
        0x0000 => FindStatus::Success,
        0xFE00 => FindStatus::Cancelled,
        0xA700..=0xA7FF => failed("the query was refused: the PACS is out of resources"),
        0xA900..=0xA9FF => {
            failed("the query was refused: the identifier does not match the SOP class")
        }
        0xC000..=0xCFFF => failed("the query was refused: the PACS is unable to process it"),
        0x0122 => failed("the query was refused: the PACS does not support this SOP class"),
        _ => failed("the query was refused by the PACS"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_through_the_parser() {
        let rq = c_store_rq(7, "1.2.840.10008.5.1.4.1.1.7", "2.25.1");
        let obj =
            InMemDicomObject::read_dataset_with_ts(&rq[..], &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap();
        assert_eq!(
            obj.element(tags::COMMAND_FIELD)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            1
        );
        assert_eq!(
            obj.element(tags::MESSAGE_ID)
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
            7
        );
        let group_length = obj
            .element(tags::COMMAND_GROUP_LENGTH)
            .unwrap()
            .to_int::<u32>()
            .unwrap();
        assert_eq!(
            group_length as usize,
            rq.len() - 12,
            "group length counts what follows it"
        );
        let echo = c_echo_rq(1);
        assert!(parse_response(&echo).is_err(), "a request has no status");
    }

    #[test]
    fn every_status_class_is_classified() {
        use InstanceStatus as S;
        assert_eq!(store_status(0x0000, None), S::Success);
        for warning in [0xB000, 0xB006, 0xB007, 0x0001, 0x0107, 0x0116] {
            assert!(
                matches!(store_status(warning, None), S::Warning(_)),
                "{warning:04X}"
            );
        }
        for failure in [
            0xA700, 0xA7FF, 0xA900, 0xC000, 0xC123, 0x0122, 0x0124, 0x0211, 0x0212, 0xFE00, 0x0105,
            0xD000,
        ] {
            assert!(
                matches!(store_status(failure, None), S::Failed(_)),
                "{failure:04X}"
            );
        }
        match store_status(0xA701, Some("disk full")) {
            S::Failed(e) => {
                assert!(e.message.contains("A701") && e.message.contains("disk full"));
                assert!(e.is_transient(), "out of resources may pass");
                assert_eq!(e.code, Some(PacsCode::Dimse(0xA701)));
            }
            other => panic!("{other:?}"),
        }
        match store_status(0xA900, None) {
            S::Failed(e) => assert!(!e.is_transient(), "a mismatch stays a mismatch"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn find_and_cancel_commands_carry_what_the_peer_needs() {
        let read = |bytes: &[u8]| {
            InMemDicomObject::read_dataset_with_ts(bytes, &IMPLICIT_VR_LITTLE_ENDIAN.erased())
                .unwrap()
        };
        let int = |obj: &InMemDicomObject, tag| obj.element(tag).unwrap().to_int::<u16>().unwrap();
        let find = read(&c_find_rq(3, "1.2.840.10008.5.1.4.31"));
        assert_eq!(int(&find, tags::COMMAND_FIELD), 0x0020);
        assert_eq!(int(&find, tags::MESSAGE_ID), 3);
        assert_eq!(int(&find, tags::COMMAND_DATA_SET_TYPE), DATA_SET_PRESENT);
        assert_eq!(
            find.element(tags::AFFECTED_SOP_CLASS_UID)
                .unwrap()
                .to_str()
                .unwrap()
                .trim_end_matches('\0'),
            "1.2.840.10008.5.1.4.31"
        );
        let cancel = read(&c_cancel_rq(3));
        assert_eq!(int(&cancel, tags::COMMAND_FIELD), 0x0FFF);
        assert_eq!(int(&cancel, tags::MESSAGE_ID_BEING_RESPONDED_TO), 3);
        assert_eq!(int(&cancel, tags::COMMAND_DATA_SET_TYPE), NO_DATA_SET);
        assert!(
            cancel.element(tags::MESSAGE_ID).is_err(),
            "a cancel has no ID of its own"
        );
    }

    #[test]
    fn a_find_response_says_whether_a_match_follows() {
        let pending = parse_response(&c_find_rsp(3, 0xFF00, true)).unwrap();
        assert_eq!(pending.command_field, Some(C_FIND_RSP));
        assert_eq!(pending.message_id_responded_to, Some(3));
        assert!(pending.has_data_set);
        let done = parse_response(&c_find_rsp(3, 0x0000, false)).unwrap();
        assert!(!done.has_data_set);
    }

    #[test]
    fn every_find_status_is_classified() {
        assert_eq!(find_status(0xFF00, None), FindStatus::Pending);
        assert_eq!(find_status(0xFF01, None), FindStatus::Pending);
        assert_eq!(find_status(0x0000, None), FindStatus::Success);
        assert_eq!(find_status(0xFE00, None), FindStatus::Cancelled);
        for (status, words, transient) in [
            (0xA700, "out of resources", true),
            (0xA900, "does not match the SOP class", false),
            (0xC000, "unable to process", false),
            (0xCFFF, "unable to process", false),
            (0x0122, "does not support", false),
            (0xAA00, "refused", false),
        ] {
            match find_status(status, Some("busy")) {
                FindStatus::Failed(e) => {
                    assert!(e.message.contains(words), "{status:04X}: {e}");
                    assert!(e.message.contains(&format!("{status:04X}H: busy")), "{e}");
                    assert_eq!(e.is_transient(), transient, "{status:04X}");
                    assert_eq!(e.code, Some(PacsCode::Dimse(status)));
                }
                other => panic!("{status:04X}: {other:?}"),
            }
        }
    }
}
