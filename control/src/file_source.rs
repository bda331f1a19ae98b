//! The services file as a source: loaded at start, reloaded when it
//! changes. A reload that fails (unreadable, not YAML) keeps the tables
//! that are serving and says why; the next good write is picked up.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime};

use crate::objects;
use crate::publish::{Published, Publisher};

/// How often the file's modification time and size are checked.
pub const DEFAULT_POLL: Duration = Duration::from_millis(500);

/// What happened on a (re)load, for the caller to log.
#[derive(Debug)]
pub enum FileEvent {
    Loaded(Published),
    Failed(String),
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let md = std::fs::metadata(path).ok()?;
    Some((md.modified().ok()?, md.len()))
}

/// Loads `path` once and publishes it.
pub fn load_and_publish(path: &Path, publisher: &mut Publisher) -> Result<Published, String> {
    let objs = objects::load_file(path).map_err(|e| e.to_string())?;
    let mut p = publisher.publish(&objs.services, &objs.slices);
    let mut warnings = objs.warnings;
    warnings.append(&mut p.warnings);
    p.warnings = warnings;
    Ok(p)
}

/// Watches a services file on its own thread.
pub struct FileSource {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FileSource {
    /// Publishes the file now (an error here is the caller's to report and
    /// exit on), then reloads it on every change, calling `on_event`.
    pub fn start(
        path: PathBuf,
        mut publisher: Publisher,
        poll: Duration,
        mut on_event: impl FnMut(FileEvent) + Send + 'static,
    ) -> Result<(FileSource, Published), String> {
        let first = load_and_publish(&path, &mut publisher)?;
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let mut last = stamp(&path);
        let thread = std::thread::Builder::new()
            .name("vipgate-file-source".into())
            .spawn(move || {
                while !stop2.load(Ordering::Relaxed) {
                    std::thread::sleep(poll);
                    let now = stamp(&path);
                    if now == last || now.is_none() {
                        continue;
                    }
                    last = now;
                    match load_and_publish(&path, &mut publisher) {
                        Ok(p) => on_event(FileEvent::Loaded(p)),
                        Err(e) => on_event(FileEvent::Failed(e)),
                    }
                }
            })
            .map_err(|e| format!("cannot start the file watcher thread: {e}"))?;
        Ok((
            FileSource {
                stop,
                thread: Some(thread),
            },
            first,
        ))
    }

    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FileSource {
    fn drop(&mut self) {
        self.shutdown();
    }
}
