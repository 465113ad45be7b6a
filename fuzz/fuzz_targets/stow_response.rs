//! Any body as a DICOMweb server's STOW-RS answer.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = photo_pacs::pacs::stow_statuses(data);
});
