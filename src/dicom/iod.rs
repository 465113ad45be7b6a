//! Which kind of image object a photo becomes.

use super::uid;

/// The information object definition the converter writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Iod {
    /// Secondary Capture Image (PS3.3 A.8.1): what every PACS takes; the reference's.
    #[default]
    SecondaryCapture,
    /// VL Photographic Image (PS3.3 A.32.4): a clinical photograph, Modality XC, what
    /// dermatology and wound-care viewers look for.
    VlPhotographic,
}

impl Iod {
    pub const ALL: [Iod; 2] = [Iod::SecondaryCapture, Iod::VlPhotographic];

    /// The settings value (`PHOTO_PACS_LOCAL_IOD`).
    pub fn code(self) -> &'static str {
        match self {
            Iod::SecondaryCapture => "sc",
            Iod::VlPhotographic => "vl-photo",
        }
    }

    pub fn from_code(code: &str) -> Option<Iod> {
        Self::ALL
            .into_iter()
            .find(|i| i.code().eq_ignore_ascii_case(code.trim()))
    }

    pub fn sop_class_uid(self) -> &'static str {
        match self {
            Iod::SecondaryCapture => uid::SECONDARY_CAPTURE,
            Iod::VlPhotographic => uid::VL_PHOTOGRAPHIC,
        }
    }
}
