//! Specific Character Set (0008,0005): which character sets the converter writes text in.

/// DICOM Specific Character Set values the converter can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Charset {
    /// UTF-8.
    IsoIr192,
    /// Latin-1.
    IsoIr100,
}

impl Charset {
    pub const ALL: [Charset; 2] = [Charset::IsoIr192, Charset::IsoIr100];

    pub fn code(self) -> &'static str {
        match self {
            Charset::IsoIr192 => "ISO_IR 192",
            Charset::IsoIr100 => "ISO_IR 100",
        }
    }

    pub fn from_code(code: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|cs| cs.code() == code)
    }

    /// Whether `text` can be written in this character set without loss.
    pub fn can_encode(self, text: &str) -> bool {
        match self {
            Charset::IsoIr192 => true,
            Charset::IsoIr100 => text.chars().all(|c| (c as u32) <= 0xFF),
        }
    }
}
