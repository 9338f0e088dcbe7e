//! The yardstick compressor of the benches' references: zlib-rs (through flate2) with one
//! deflate state reset for each body, as issue 16 defines "the same work without the network"
//! (level 6, state reused). It was the streamer's own compressor before libdeflate; the
//! references keep it so that their figures stay comparable from one study to the next.

use flate2::{Compress, Compression, Crc, FlushCompress, Status};

/// The gzip header (RFC 1952) flate2 writes too: deflate, no name, no time, unknown OS.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];

/// A deflate state at one level, reused from body to body.
pub struct ZlibGzip {
    deflate: Compress,
}

impl ZlibGzip {
    pub fn new(level: u32) -> Self {
        Self {
            deflate: Compress::new(Compression::new(level), false),
        }
    }

    /// One gzip member holding `bytes`: header, raw deflate, CRC-32 and length.
    pub fn compress(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(bytes.len() / 4 + 64);
        out.extend_from_slice(&HEADER);
        self.deflate.reset();
        loop {
            if out.len() == out.capacity() {
                out.reserve(out.capacity() / 2 + 64);
            }
            let consumed = self.deflate.total_in() as usize;
            let status = self
                .deflate
                .compress_vec(&bytes[consumed..], &mut out, FlushCompress::Finish)
                .expect("deflate into memory cannot fail");
            if status == Status::StreamEnd {
                break;
            }
        }
        let mut crc = Crc::new();
        crc.update(bytes);
        out.extend_from_slice(&crc.sum().to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn round_trips_with_one_reused_state() {
        let mut gzip = ZlibGzip::new(6);
        for text in [&b""[..], b"a", &[b'x'; 100_000]] {
            let mut out = Vec::new();
            GzDecoder::new(&gzip.compress(text)[..])
                .read_to_end(&mut out)
                .unwrap();
            assert_eq!(out, text);
        }
    }
}
