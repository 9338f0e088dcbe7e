//! Request bodies are gzipped (both Loki and the Datadog intake accept `Content-Encoding:
//! gzip`). reqwest's `gzip` feature only decompresses responses, so compression is ours.
//!
//! libdeflate compresses a whole buffer at once, which is what a push body is. Against zlib-rs
//! at level 5 with its state reused (the compressor before it), on the lambda bench's events
//! (`BENCH_STUDIES=1`): 41 % less CPU for one-event pushes, 37 % less for two-event pushes,
//! where zlib's per-stream reset of its tables was most of the cost, and 16–21 % less from 100
//! events up, with 3–4 % fewer bytes.

use std::cell::RefCell;

use libdeflater::{CompressionLvl, Compressor};

/// Chosen by measurement (`BENCH_STUDIES=1` in the lambda bench): against level 5, level 6
/// sends 1 % fewer bytes for 3–18 % more CPU, which costs the same or less per million events
/// pushed at every push size (a byte sent costs about as much as four CPU-microseconds of a
/// 512 MB Lambda). Level 7 saves 2 % more bytes for 20 % more CPU, and CPU is also latency.
pub const LEVEL: i32 = 6;

thread_local! {
    /// One compressor per thread: making one allocates its match-finder tables.
    static GZIP: RefCell<Gzip> = RefCell::new(Gzip::new(LEVEL));
}

/// `bytes` gzipped at [`LEVEL`], with this thread's compressor.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    GZIP.with(|gzip| gzip.borrow_mut().compress(bytes))
}

/// A compressor at one level, reused from body to body.
pub struct Gzip {
    compressor: Compressor,
}

impl Gzip {
    /// A compressor at `level` (1 to 12; libdeflate's 6 is zlib's default).
    pub fn new(level: i32) -> Self {
        let level = CompressionLvl::new(level).expect("gzip level is between 1 and 12");
        Self {
            compressor: Compressor::new(level),
        }
    }

    /// One gzip member holding `bytes`.
    pub fn compress(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![0; self.compressor.gzip_compress_bound(bytes.len())];
        let written = self
            .compressor
            .gzip_compress(bytes, &mut out)
            .expect("the bound leaves room for any input");
        out.truncate(written);
        // Bodies wait for their push, some for a retry: keep only the compressed bytes.
        out.shrink_to_fit();
        out
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;

    #[test]
    fn gzip_round_trips_with_one_reused_compressor() {
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
