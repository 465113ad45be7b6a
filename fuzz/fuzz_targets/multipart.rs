//! The upload as a client could send it: any body, split into two network chunks at a place
//! the input chooses, through the multipart reader, the form validation and the photo probe.
#![no_main]

use std::sync::OnceLock;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use photo_pacs::config::Charset;
use photo_pacs::intake::upload::{MemorySink, UploadLimits, receive};

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().build().expect("runtime"))
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, body)) = data.split_first() else { return };
    let at = (split as usize * body.len()) / 255;
    let (a, b) = body.split_at(at.min(body.len()));
    let chunks = vec![
        Ok::<_, std::io::Error>(Bytes::copy_from_slice(a)),
        Ok(Bytes::copy_from_slice(b)),
    ];
    let limits = UploadLimits {
        max_image: 64 * 1024,
        max_request: 256 * 1024,
    };
    let mut sink = MemorySink::default();
    let result = runtime().block_on(receive(futures_util::stream::iter(chunks), "BOUNDARY".into(), limits, &mut sink));
    if let Ok(form) = result {
        let now = chrono::Local::now().fixed_offset();
        let _ = form.validate(now, Charset::IsoIr192);
        let _ = form.validate(now, Charset::IsoIr100);
        for photo in &sink.photos {
            let _ = photo_pacs::convert::probe(photo, 1 << 20);
        }
    }
});
