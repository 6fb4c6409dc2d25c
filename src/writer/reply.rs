//! How the writer answers an operation: a oneshot a caller waits on, or a
//! callback run on the writer thread right after the commit.

use crate::error::StoreError;
use crate::storage::seam::Done;

/// Where the writer sends an operation's outcome: a oneshot that a caller
/// waits on (it parks the waiting thread at once, where a crossbeam channel
/// spins and yields first), or a callback run on the writer thread right
/// after the commit, so that no thread waits at all (an HTTP put).
pub(crate) enum Reply {
    Wait(oneshot::Sender<Result<Done, StoreError>>),
    Then(Box<dyn FnOnce(Result<Done, StoreError>) + Send>),
}

impl Reply {
    pub(crate) fn send(self, outcome: Result<Done, StoreError>) {
        match self {
            Reply::Wait(tx) => {
                let _ = tx.send(outcome);
            }
            Reply::Then(then) => {
                // A panicking callback must not take the writer down.
                let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| then(outcome)));
                if ran.is_err() {
                    log::error!("a commit callback panicked");
                }
            }
        }
    }
}

/// A queued operation whose outcome has not been awaited yet.
pub(crate) struct Pending(pub(super) oneshot::Receiver<Result<Done, StoreError>>);

impl Pending {
    /// Waits for the commit (or the failure) of the operation.
    pub fn wait(self) -> Result<Done, StoreError> {
        self.0.recv().map_err(|_| StoreError::Closed)?
    }
}
