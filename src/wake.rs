//! Wake-ups held back while a thread answers a batch.
//!
//! The writer answers every write of a group commit, and a PostgreSQL read
//! round answers every read it carried, one callback after another. Each
//! answer goes to the connection loop's mailbox, and the first answer after
//! the loop last looked costs a wake-up syscall; the loop looks again so
//! often that a batch of answers could cost a wake-up each. Run inside
//! [`batch`], those wake-ups are held and done once, when the batch ends.

use std::cell::RefCell;
use std::sync::Arc;

/// Something a thread wakes after handing it work.
pub(crate) trait Wake: Send + Sync {
    fn wake(&self);
}

thread_local! {
    /// Inside [`batch`]: the wake-ups held so far (each target once).
    static HELD: RefCell<Option<Vec<Arc<dyn Wake>>>> = const { RefCell::new(None) };
}

/// Wakes `target` now, or, inside [`batch`], when the batch ends.
pub(crate) fn wake<T: Wake + 'static>(target: &Arc<T>) {
    let now = HELD.with(|held| match held.borrow_mut().as_mut() {
        Some(held) => {
            let same = |t: &Arc<dyn Wake>| std::ptr::addr_eq(Arc::as_ptr(t), Arc::as_ptr(target));
            if !held.iter().any(same) {
                held.push(Arc::clone(target) as Arc<dyn Wake>);
            }
            false
        }
        None => true,
    });
    if now {
        target.wake();
    }
}

/// Runs `f`, holding the wake-ups it asks for ([`wake`]) until it returns
/// (or panics). Nested batches end with the outermost.
pub(crate) fn batch<R>(f: impl FnOnce() -> R) -> R {
    /// Does the held wake-ups when the batch ends, even by a panic.
    struct End;
    impl Drop for End {
        fn drop(&mut self) {
            let held = HELD.with(|held| held.borrow_mut().take());
            for target in held.into_iter().flatten() {
                target.wake();
            }
        }
    }
    let outermost = HELD.with(|held| {
        let mut held = held.borrow_mut();
        held.is_none() && {
            *held = Some(Vec::new());
            true
        }
    });
    // Not `then_some(End)`: that would build an `End` (and end the outer
    // batch) when dropped for a nested one.
    let _end = if outermost { Some(End) } else { None };
    f()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Default)]
    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(&self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn woken(c: &Arc<Count>) -> usize {
        c.0.load(Ordering::SeqCst)
    }

    #[test]
    fn outside_a_batch_each_wake_is_done_at_once() {
        let c = Arc::new(Count::default());
        wake(&c);
        wake(&c);
        assert_eq!(woken(&c), 2);
    }

    #[test]
    fn a_batch_wakes_each_target_once_at_its_end() {
        let (a, b) = (Arc::new(Count::default()), Arc::new(Count::default()));
        batch(|| {
            for _ in 0..10 {
                wake(&a);
            }
            batch(|| wake(&b));
            assert_eq!((woken(&a), woken(&b)), (0, 0), "held until the end");
        });
        assert_eq!((woken(&a), woken(&b)), (1, 1));
        wake(&a);
        assert_eq!(woken(&a), 2, "after the batch, at once again");
    }

    #[test]
    fn a_panicking_batch_still_wakes() {
        let c = Arc::new(Count::default());
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            batch(|| {
                wake(&c);
                panic!("callback failed");
            })
        }));
        assert!(r.is_err());
        assert_eq!(woken(&c), 1);
        wake(&c);
        assert_eq!(woken(&c), 2, "the thread is out of the batch");
    }
}
