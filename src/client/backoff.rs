//! The wait between tries of a command that runs until interrupted
//! (`watch`, `lease keepalive --every`, `lock`) while no endpoint answers.

use std::time::Duration;

use super::exit::{Failure, code};

/// The first wait after a failure, doubled each time up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Waits between tries while no endpoint answers: from [`FIRST_BACKOFF`],
/// doubled each time up to [`MAX_BACKOFF`].
pub struct Backoff {
    /// The command, for the messages.
    command: &'static str,
    /// The current wait between failed tries; `None` while all is well.
    current: Option<Duration>,
}

impl Backoff {
    /// No failure yet; messages name `command`.
    pub fn new(command: &'static str) -> Backoff {
        Backoff {
            command,
            current: None,
        }
    }

    /// Sleeps after the failed try `f`, saying so on stderr the first time.
    pub fn wait(&mut self, f: &Failure) {
        let wait = match self.current {
            None => {
                eprintln!("vkv {}: {f}; retrying until a server answers", self.command);
                FIRST_BACKOFF
            }
            Some(d) => (d * 2).min(MAX_BACKOFF),
        };
        self.current = Some(wait);
        std::thread::sleep(wait);
    }

    /// After a try that succeeded: whether tries had failed before it.
    pub fn recovered(&mut self) -> bool {
        self.current.take().is_some()
    }
}

/// A command that runs its steps until interrupted and retries a step
/// while no endpoint answers (`watch`, of a key or of a prefix).
pub trait Retrying: Sized {
    /// The command's backoff.
    fn backoff(&mut self) -> &mut Backoff;

    /// Said on stderr when a step succeeds after failed tries.
    fn resuming(&self) -> String;

    /// Runs `step` until it succeeds or fails for a reason other than
    /// "unavailable", waiting longer after each unavailable try.
    fn retrying<T>(&mut self, step: fn(&mut Self) -> Result<T, Failure>) -> Result<T, Failure> {
        loop {
            match step(self) {
                Ok(v) => {
                    if self.backoff().recovered() {
                        eprintln!("{}", self.resuming());
                    }
                    return Ok(v);
                }
                Err(f) if f.code == code::UNAVAILABLE => self.backoff().wait(&f),
                Err(f) => return Err(f),
            }
        }
    }
}
