//! The progress line of commands that wait (cli-and-ops.md §1.1): one status line on stderr,
//! redrawn in place by a ticker at most 10 times a second (spinner, run id, status,
//! `done/total` steps, elapsed), erased before the result prints. Disabled, it does nothing.

use crate::format;
use crate::records::RunDoc;
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::{Duration, Instant};

const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
const REDRAW_EVERY: Duration = Duration::from_millis(100);
const ERASE: &str = "\r\x1b[2K";

struct Line {
    label: String,
    status: String,
    steps: Option<(usize, usize)>,
    note: Option<String>,
    started: Instant,
    frame: usize,
    drawn: bool,
}

impl Line {
    fn text(&self) -> String {
        let mut parts = vec![
            FRAMES[self.frame % FRAMES.len()].to_string(),
            self.label.clone(),
            self.status.clone(),
        ];
        if let Some((done, total)) = self.steps {
            parts.push(format!("{done}/{total} steps"));
        }
        if let Some(note) = &self.note {
            parts.push(note.clone());
        }
        parts.push(format::duration(self.started.elapsed()));
        parts.join("  ")
    }
}

/// A progress line, or nothing when disabled.
pub struct Progress {
    line: Option<Rc<RefCell<Line>>>,
    ticker: Option<actix_rt::task::JoinHandle<()>>,
}

impl Progress {
    /// Starts the ticker (needs a running actix system) when `enabled`.
    pub fn new(enabled: bool, label: &str, status: &str) -> Progress {
        if !enabled {
            return Progress {
                line: None,
                ticker: None,
            };
        }
        let line = Rc::new(RefCell::new(Line {
            label: label.to_string(),
            status: status.to_string(),
            steps: None,
            note: None,
            started: Instant::now(),
            frame: 0,
            drawn: false,
        }));
        let shared = Rc::clone(&line);
        let ticker = actix_rt::spawn(async move {
            let mut interval = actix_rt::time::interval(REDRAW_EVERY);
            loop {
                interval.tick().await;
                let mut l = shared.borrow_mut();
                let text = l.text();
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{ERASE}{text}");
                let _ = err.flush();
                l.frame += 1;
                l.drawn = true;
            }
        });
        Progress {
            line: Some(line),
            ticker: Some(ticker),
        }
    }

    /// Shows a run's latest state.
    pub fn update(&self, doc: &RunDoc) {
        if let Some(line) = &self.line {
            let mut l = line.borrow_mut();
            l.label.clone_from(&doc.run.id);
            l.status.clone_from(&doc.run.status);
            l.steps = Some(doc.progress());
            let waiting = doc.waiting_for_approval();
            l.note = (!waiting.is_empty())
                .then(|| format!("waiting for approval: {}", waiting.join(", ")));
        }
    }

    /// Sets the label and status before a run record exists.
    pub fn set(&self, label: &str, status: &str) {
        if let Some(line) = &self.line {
            let mut l = line.borrow_mut();
            l.label = label.to_string();
            l.status = status.to_string();
        }
    }

    /// Prints a line on stderr above the progress line (which the next tick redraws).
    pub fn println(&self, text: &str) {
        let mut err = std::io::stderr().lock();
        if self.line.as_ref().is_some_and(|l| l.borrow().drawn) {
            let _ = write!(err, "{ERASE}");
        }
        let _ = writeln!(err, "{text}");
        let _ = err.flush();
    }

    /// Stops redrawing and erases the line.
    pub fn clear(&mut self) {
        if let Some(ticker) = self.ticker.take() {
            ticker.abort();
        }
        if let Some(line) = self.line.take() {
            if line.borrow().drawn {
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "{ERASE}");
                let _ = err.flush();
            }
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}
