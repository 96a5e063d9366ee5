//! Progress of the long-running commands (`verify`, `rebuild-projections`,
//! `copy-store`, `simulate`).
//!
//! On a terminal this is an indicatif bar. Elsewhere (systemd, `nohup`, a
//! CI log) indicatif draws nothing, and a ten-minute `registry verify` would
//! be silent until it ends; so when standard error is not a terminal a
//! thread writes one plain line to it every [`PLAIN_INTERVAL`]: position,
//! total, rate and ETA. The lines carry counts only, never personal data.

use std::io::{IsTerminal, Write};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{HumanCount, HumanDuration, ProgressBar};

/// How often a plain progress line is written when standard error is not a
/// terminal.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(30);

/// A progress bar, plus the plain-line writer when there is no terminal.
/// Clone [`Progress::bar`] into workers; dropping the `Progress` stops the
/// writer and clears the bar.
pub struct Progress {
    bar: ProgressBar,
    plain: Option<Plain>,
}

struct Plain {
    stop: mpsc::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl Progress {
    /// `bar` on a terminal; plain lines labelled `label` on standard error
    /// every [`PLAIN_INTERVAL`] otherwise.
    pub fn new(bar: ProgressBar, label: &'static str) -> Progress {
        if std::io::stderr().is_terminal() {
            return Progress { bar, plain: None };
        }
        Progress::plain(bar, label, PLAIN_INTERVAL, Box::new(std::io::stderr()))
    }

    /// Plain lines to `out` every `interval`, whatever the terminal.
    pub fn plain(
        bar: ProgressBar,
        label: &'static str,
        interval: Duration,
        mut out: Box<dyn Write + Send>,
    ) -> Progress {
        let (stop, stopped) = mpsc::channel::<()>();
        let watched = bar.clone();
        let started = Instant::now();
        let thread = std::thread::Builder::new()
            .name("progress".into())
            .spawn(move || {
                // Wakes every `interval` until the sender is dropped.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    let _ = writeln!(out, "{}", plain_line(label, &watched, started.elapsed()));
                    let _ = out.flush();
                }
            })
            .ok();
        Progress {
            bar,
            plain: thread.map(|t| Plain {
                stop,
                thread: Some(t),
            }),
        }
    }

    /// No output at all (the caller asked for none).
    pub fn off() -> Progress {
        Progress {
            bar: ProgressBar::hidden(),
            plain: None,
        }
    }

    /// The bar to advance (set position, length, message); clone it into
    /// worker threads. The plain-line writer reads the same bar.
    pub fn bar(&self) -> &ProgressBar {
        &self.bar
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if let Some(mut plain) = self.plain.take() {
            drop(plain.stop);
            if let Some(t) = plain.thread.take() {
                let _ = t.join();
            }
        }
        self.bar.finish_and_clear();
    }
}

/// `label: [message ]pos[/len (pct%)], rate/s, elapsed E[, eta T]`.
fn plain_line(label: &str, bar: &ProgressBar, elapsed: Duration) -> String {
    let pos = bar.position();
    let mut line = format!("{label}: ");
    let message = bar.message();
    if !message.is_empty() {
        line.push_str(&message);
        line.push(' ');
    }
    line.push_str(&HumanCount(pos).to_string());
    if let Some(len) = bar.length().filter(|&l| l > 0) {
        let pct = pos as f64 * 100.0 / len as f64;
        line.push_str(&format!("/{} ({pct:.1}%)", HumanCount(len)));
    }
    line.push_str(&format!(
        ", {}/s, elapsed {}",
        HumanCount(bar.per_sec() as u64),
        HumanDuration(elapsed)
    ));
    if bar.length().is_some_and(|l| l > pos) && bar.per_sec() > 0.0 {
        line.push_str(&format!(", eta {}", HumanDuration(bar.eta())));
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn plain_lines_report_position_total_and_phase() {
        let out = Shared::default();
        let bar = ProgressBar::with_draw_target(Some(2_000), indicatif::ProgressDrawTarget::hidden());
        let progress = Progress::plain(bar, "verify", Duration::from_millis(5), Box::new(out.clone()));
        progress.bar().set_message("chain");
        progress.bar().set_position(500);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !out.text().contains("500/2,000") && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(progress);
        let text = out.text();
        let line = text
            .lines()
            .find(|l| l.contains("500/2,000"))
            .expect("a line at 500");
        assert!(line.starts_with("verify: chain 500/2,000 (25.0%), "), "{line}");
        assert!(line.contains("/s, elapsed "), "{line}");
    }

    #[test]
    fn dropping_stops_the_writer() {
        let out = Shared::default();
        let bar = ProgressBar::with_draw_target(None, indicatif::ProgressDrawTarget::hidden());
        let progress = Progress::plain(bar, "copy", Duration::from_millis(1), Box::new(out.clone()));
        let deadline = Instant::now() + Duration::from_secs(10);
        while out.text().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(2));
        }
        drop(progress);
        let after_drop = out.text();
        assert!(after_drop.starts_with("copy: 0, "), "{after_drop}");
        std::thread::sleep(Duration::from_millis(20));
        assert_eq!(out.text(), after_drop, "no line is written after the drop");
    }
}
