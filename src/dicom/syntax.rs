//! Transfer syntaxes: how an object's data set and pixels are encoded on the wire and on disk.

/// DICOM transfer syntaxes the converter can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferSyntax {
    ImplicitVrLittleEndian,
    ExplicitVrLittleEndian,
    /// JPEG Baseline (Process 1): lossy, about a tenth of the size.
    JpegBaseline,
}

impl TransferSyntax {
    pub const ALL: [TransferSyntax; 3] = [
        TransferSyntax::ImplicitVrLittleEndian,
        TransferSyntax::ExplicitVrLittleEndian,
        TransferSyntax::JpegBaseline,
    ];

    pub fn uid(self) -> &'static str {
        match self {
            TransferSyntax::ImplicitVrLittleEndian => "1.2.840.10008.1.2",
            TransferSyntax::ExplicitVrLittleEndian => "1.2.840.10008.1.2.1",
            TransferSyntax::JpegBaseline => "1.2.840.10008.1.2.4.50",
        }
    }

    /// Whether the pixel data is compressed (encapsulated) in this syntax.
    pub fn is_encapsulated(self) -> bool {
        matches!(self, TransferSyntax::JpegBaseline)
    }

    pub fn from_uid(uid: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|ts| ts.uid() == uid)
    }
}

/// A transfer syntax's name, for messages.
pub fn name(uid: &str) -> &'static str {
    match uid.trim_end_matches(['\0', ' ']) {
        "1.2.840.10008.1.2" => "Implicit VR Little Endian",
        "1.2.840.10008.1.2.1" => "Explicit VR Little Endian",
        "1.2.840.10008.1.2.4.50" => "JPEG Baseline",
        _ => "the proposed transfer syntax",
    }
}
