//! Time and waiting for the refresh loop, injected so tests run without sleeping.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

use time::OffsetDateTime;

/// An event that interrupts a wait.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// Re-read certificate, chain and key now (`SIGHUP`).
    Reload,
    /// Stop cleanly (`SIGTERM`, `SIGINT`).
    Stop,
}

/// The refresh loop's view of time.
pub trait Clock {
    /// Returns the current time.
    fn now(&self) -> OffsetDateTime;
    /// Waits up to `duration`; returns early with an event when one arrives.
    fn wait(&self, duration: Duration) -> Option<Event>;
}

/// Wall-clock time; waits end early when an event arrives on the channel.
#[derive(Debug)]
pub struct SystemClock {
    events: Mutex<Receiver<Event>>,
}

impl SystemClock {
    pub fn new(events: Receiver<Event>) -> Self {
        SystemClock {
            events: Mutex::new(events),
        }
    }
}

impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc()
    }

    fn wait(&self, duration: Duration) -> Option<Event> {
        let events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        match events.recv_timeout(duration) {
            Ok(event) => Some(event),
            Err(RecvTimeoutError::Timeout) => None,
            // The sender is gone, so no event can arrive: sleep the full time.
            Err(RecvTimeoutError::Disconnected) => {
                std::thread::sleep(duration);
                None
            }
        }
    }
}

/// A clock for tests: waits return at once, advance the time and are recorded. An
/// optional hook is called after each advance (for example to move a test server's clock along).
pub struct ManualClock {
    state: Mutex<ManualState>,
    #[allow(clippy::type_complexity)] // a boxed callback, named once
    on_advance: Option<Box<dyn Fn(OffsetDateTime) + Send>>,
}

struct ManualState {
    now: OffsetDateTime,
    waits: Vec<Duration>,
    events: Vec<(usize, Event)>,
}

impl std::fmt::Debug for ManualClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManualClock").finish_non_exhaustive()
    }
}

impl ManualClock {
    /// Starts at `now`.
    pub fn new(now: OffsetDateTime) -> Self {
        ManualClock {
            state: Mutex::new(ManualState {
                now,
                waits: Vec::new(),
                events: Vec::new(),
            }),
            on_advance: None,
        }
    }

    /// Calls `hook` with the new time after every wait.
    pub fn with_hook(mut self, hook: impl Fn(OffsetDateTime) + Send + 'static) -> Self {
        self.on_advance = Some(Box::new(hook));
        self
    }

    /// Makes wait number `index` (counting from 0) return `event` without advancing.
    pub fn push_event(&self, index: usize, event: Event) {
        self.lock().events.push((index, event));
    }

    /// Returns every wait requested so far.
    pub fn waits(&self) -> Vec<Duration> {
        self.lock().waits.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ManualState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> OffsetDateTime {
        self.lock().now
    }

    fn wait(&self, duration: Duration) -> Option<Event> {
        let now = {
            let mut state = self.lock();
            let index = state.waits.len();
            state.waits.push(duration);
            if let Some(pos) = state.events.iter().position(|(i, _)| *i == index) {
                let (_, event) = state.events.remove(pos);
                return Some(event);
            }
            state.now += duration;
            state.now
        };
        if let Some(hook) = &self.on_advance {
            hook(now);
        }
        None
    }
}
