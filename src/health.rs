//! What `GET /healthz` reports: whether herald can take what is sent to it, and if not,
//! which part cannot and why.
//!
//! A part that can fail while the process runs is a [`Check`] registered under a name
//! with [`Health`]. The RESP and HTTP listeners register one each, a [`Listener`]: it is
//! degraded while its accepts fail (out of file descriptors, say: clients then wait in
//! the kernel's backlog) and while it is at its connection cap (new clients are
//! refused). A backplane joining herald nodes (issue 13) registers its own check under
//! `backplane`, with the problem "unreachable" while herald cannot reach it. `/healthz`
//! answers 200 when no check has a problem and 503 naming each one that has.

use parking_lot::Mutex;
use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One part of herald that can be degraded.
pub trait Check: Send + Sync {
    /// What is wrong now, said for an operator; None when all is well.
    fn problem(&self) -> Option<String>;
}

/// Every registered part, in registration order.
#[derive(Default)]
pub struct Health {
    checks: Mutex<Vec<(&'static str, Arc<dyn Check>)>>,
}

impl Health {
    pub fn register(&self, name: &'static str, check: Arc<dyn Check>) {
        self.checks.lock().push((name, check));
    }

    /// Each part that has a problem, with the problem; empty when healthy.
    pub fn problems(&self) -> Vec<(&'static str, String)> {
        let checks = self.checks.lock().clone();
        checks
            .iter()
            .filter_map(|(name, check)| check.problem().map(|p| (*name, p)))
            .collect()
    }
}

/// How long a failed accept counts when no accept has succeeded since. The accept loops
/// retry every 50 ms while the cause lasts (the connection waits in the backlog), so a
/// lasting failure stays reported; a one-off one (a connection reset before it was
/// accepted) is forgotten even if no client comes after it.
const ACCEPT_FAILURE_HOLDS: Duration = Duration::from_secs(1);

/// A listener's accept loop, as health sees it.
pub struct Listener {
    /// The flag that caps the listener's connections, named in the problem.
    cap_flag: &'static str,
    /// Connections open now and the cap (0: none).
    load: Box<dyn Fn() -> (usize, usize) + Send + Sync>,
    /// Set by a failed accept, cleared by the next one that succeeds: the one thing an
    /// accepted connection costs here is reading it.
    failing: AtomicBool,
    last_failure: Mutex<Option<(Instant, String)>>,
}

impl Listener {
    pub fn new(
        cap_flag: &'static str,
        load: impl Fn() -> (usize, usize) + Send + Sync + 'static,
    ) -> Arc<Listener> {
        Arc::new(Listener {
            cap_flag,
            load: Box::new(load),
            failing: AtomicBool::new(false),
            last_failure: Mutex::new(None),
        })
    }

    pub fn accepted(&self) {
        if self.failing.load(Ordering::Relaxed) {
            self.failing.store(false, Ordering::Relaxed);
        }
    }

    pub fn accept_failed(&self, e: &io::Error) {
        *self.last_failure.lock() = Some((Instant::now(), e.to_string()));
        self.failing.store(true, Ordering::Relaxed);
    }
}

impl Check for Listener {
    fn problem(&self) -> Option<String> {
        if self.failing.load(Ordering::Relaxed) {
            if let Some((at, e)) = &*self.last_failure.lock() {
                if at.elapsed() < ACCEPT_FAILURE_HOLDS {
                    return Some(format!("not accepting connections: {e}"));
                }
            }
        }
        let (open, cap) = (self.load)();
        (cap > 0 && open >= cap).then(|| {
            format!(
                "at its connection cap ({open} of {cap}, {}): new connections are refused",
                self.cap_flag
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_listener_is_degraded_while_accepts_fail_and_at_its_cap() {
        let open = Arc::new(AtomicUsize::new(1));
        let l = {
            let open = open.clone();
            Listener::new("--cap", move || (open.load(Ordering::Relaxed), 2))
        };
        let health = Health::default();
        health.register("test", l.clone());
        assert!(health.problems().is_empty());
        l.accept_failed(&io::Error::from_raw_os_error(libc::EMFILE));
        let problems = health.problems();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].0, "test");
        assert!(problems[0].1.starts_with("not accepting connections: "));
        l.accepted();
        assert!(health.problems().is_empty());
        // A failure long past, with nothing accepted since, no longer counts.
        l.accept_failed(&io::Error::from_raw_os_error(libc::ECONNABORTED));
        l.last_failure.lock().as_mut().unwrap().0 -= ACCEPT_FAILURE_HOLDS;
        assert!(health.problems().is_empty());
        open.store(2, Ordering::Relaxed);
        assert_eq!(
            health.problems(),
            [(
                "test",
                "at its connection cap (2 of 2, --cap): new connections are refused".to_string()
            )]
        );
    }
}
