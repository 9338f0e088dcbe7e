//! Request bodies are gzipped (both Loki and the Datadog intake accept `Content-Encoding:
//! gzip`). reqwest's `gzip` feature only decompresses responses, so compression is ours.

use std::cell::RefCell;

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// zlib's default level: on event JSON it compresses about as well as level 9 at a fraction
/// of the time (see `benches/gzip.rs`).
pub const LEVEL: u32 = 6;

/// The gzip header (RFC 1952) flate2 writes too: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

thread_local! {
    /// One deflate state per thread, reset for each body: a new one allocates and clears
    /// its window and hash tables, which costs more than compressing a push of two events.
    static DEFLATE: RefCell<Compress> = RefCell::new(Compress::new(Compression::new(LEVEL), false));
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() / 4 + 64);
    out.extend_from_slice(&HEADER);
    DEFLATE.with(|deflate| {
        let mut deflate = deflate.borrow_mut();
        deflate.reset();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity() / 2 + 64);
            }
            let consumed = deflate.total_in() as usize;
            let status = deflate
                .compress_vec(&bytes[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflate into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
        }
    });
    let mut crc = Crc::new();
    crc.update(bytes);
    out.extend_from_slice(&crc.sum().to_le_bytes());
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn gzip_round_trips_with_one_reused_state() {
        let mut rng = fastrand::Rng::with_seed(1);
        for size in [0, 1, 14, 1400, 300_000] {
            let text: Vec<u8> = (0..size).map(|_| rng.alphanumeric() as u8).collect();
            let mut out = Vec::new();
            GzDecoder::new(&gzip(&text)[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, text, "{size} bytes");
        }
    }
}
