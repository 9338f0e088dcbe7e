//! How a redrive shows its progress: a bar (`indicatif`) on a terminal, a plain line per
//! batch otherwise (logs, CI, pipes), both on stderr so that stdout holds only the result.

use indicatif::{ProgressBar, ProgressStyle};

use super::redrive::Report;

pub enum Progress {
    Bar(ProgressBar),
    Lines { expected: u64 },
}

impl Progress {
    pub fn new(on_terminal: bool) -> Self {
        if on_terminal {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template("{bar:40} {pos}/{len} read  {msg}")
                    .expect("the template is valid"),
            );
            Self::Bar(bar)
        } else {
            Self::Lines { expected: 0 }
        }
    }

    /// The scan expects `messages` (the queue's count when it began).
    pub fn start(&mut self, messages: u64) {
        match self {
            Self::Bar(bar) => bar.set_length(messages),
            Self::Lines { expected } => {
                *expected = messages;
                eprintln!("{messages} messages in the dead-letter queue");
            }
        }
    }

    pub fn update(&mut self, report: &Report) {
        match self {
            Self::Bar(bar) => {
                bar.set_position(report.read as u64);
                bar.set_message(report.counts());
            }
            Self::Lines { expected } => {
                eprintln!("read {}/{expected}: {}", report.read, report.counts());
            }
        }
    }

    pub fn finish(&self) {
        if let Self::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}
