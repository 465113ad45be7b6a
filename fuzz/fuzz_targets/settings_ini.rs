//! Any text as the settings file: parsed and validated, refused with a reason, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use photo_pacs::config::{Settings, parse_settings_file};

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_settings_file(text, &Settings::default());
    }
});
