//! A per-test deadline. A GStreamer deadlock (a state change joining a streaming
//! thread that never returns) would otherwise hang the test binary — and the whole CI
//! run — until an outer timeout with nothing to show. Armed by the `spawn_*` helpers:
//! when the test thread has not finished `GREMIUM_TEST_DEADLINE_SECS` (default 300)
//! after arming, the watchdog prints every thread's backtrace (through gdb, when it is
//! installed) and aborts the binary, so the run fails fast with the place it hung.
//! A test thread that panicked gets 60 s to finish (its runtime's shutdown waits for
//! blocking tasks, which a stuck GStreamer state change would hold forever).

use std::cell::RefCell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

struct Armed(Arc<AtomicBool>);

impl Drop for Armed {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

thread_local! {
    // Set by the panic hook on the thread that panicked; the watchdog holds a clone.
    static PANICKED: Arc<AtomicBool> = Arc::new(AtomicBool::new(false));
    // Dropped when the test thread exits: after the test body *and* the tokio
    // runtime's shutdown (which waits for blocking tasks) are over.
    static ARMED: RefCell<Option<Armed>> = const { RefCell::new(None) };
}

/// Seconds after which a panicked test thread counts as hung
/// (`GREMIUM_TEST_AFTER_PANIC_SECS` overrides).
fn after_panic_secs() -> u64 {
    std::env::var("GREMIUM_TEST_AFTER_PANIC_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

/// Arm the watchdog for the current test thread (once; later calls keep the first).
pub fn arm() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICKED.with(|p| p.store(true, Ordering::SeqCst));
            default(info);
        }));
    });
    ARMED.with(|a| {
        let mut a = a.borrow_mut();
        if a.is_some() {
            return;
        }
        let done = Arc::new(AtomicBool::new(false));
        *a = Some(Armed(done.clone()));
        let secs: u64 = std::env::var("GREMIUM_TEST_DEADLINE_SECS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(300);
        let test = std::thread::current()
            .name()
            .unwrap_or("unnamed test")
            .to_string();
        let panicked = PANICKED.with(|p| p.clone());
        std::thread::spawn(move || {
            let start = std::time::Instant::now();
            let mut deadline = start + Duration::from_secs(secs);
            let mut after_panic = false;
            while std::time::Instant::now() < deadline {
                if done.load(Ordering::SeqCst) {
                    return;
                }
                if !after_panic && panicked.load(Ordering::SeqCst) {
                    after_panic = true;
                    deadline = deadline
                        .min(std::time::Instant::now() + Duration::from_secs(after_panic_secs()));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            if done.load(Ordering::SeqCst) {
                return;
            }
            let why = if after_panic {
                format!(
                    "still tearing down {} s after it panicked",
                    after_panic_secs()
                )
            } else {
                format!("still running after {secs} s")
            };
            eprintln!("\n=== WATCHDOG: `{test}` {why}; backtraces follow ===");
            let pid = std::process::id().to_string();
            // gdb writes to a file: it stops every thread of this process, this one
            // too, so nothing here could drain a pipe while it runs.
            let out = std::env::temp_dir().join(format!("gremium-watchdog-{pid}.txt"));
            let written = std::fs::File::create(&out).and_then(|file| {
                std::process::Command::new("timeout")
                    .args(["120", "gdb", "-p", &pid, "-batch", "-nx"])
                    .args(["-ex", "thread apply all bt 30"])
                    .stdin(std::process::Stdio::null())
                    .stdout(file.try_clone()?)
                    .stderr(file)
                    .status()
            });
            match written {
                Ok(_) => eprintln!("{}", std::fs::read_to_string(&out).unwrap_or_default()),
                Err(e) => eprintln!("(no gdb for backtraces: {e})"),
            }
            eprintln!("=== WATCHDOG: aborting the test binary ===");
            std::process::abort();
        });
    });
}
