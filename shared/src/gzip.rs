//! Request bodies are gzipped (both Loki and the Datadog intake accept `Content-Encoding:
//! gzip`). reqwest's `gzip` feature only decompresses responses, so compression is ours.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;

/// zlib's default level: on event JSON it compresses about as well as level 9 at a fraction
/// of the time (see `benches/gzip.rs`).
pub const LEVEL: u32 = 6;

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(bytes.len() / 4), Compression::new(LEVEL));
    encoder
        .write_all(bytes)
        .expect("writing to a Vec cannot fail");
    encoder.finish().expect("writing to a Vec cannot fail")
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn gzip_round_trips() {
        let text = br#"{"streams":[]}"#.repeat(100);
        let mut out = Vec::new();
        GzDecoder::new(&gzip(&text)[..])
            .read_to_end(&mut out)
            .unwrap();
        assert_eq!(out, text);
    }
}
