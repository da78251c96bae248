//! A precise timer for the latency model.
//!
//! tokio's timer wheel has millisecond ticks and rounds deadlines up, so a 50 ms sleep wakes
//! 1–3 ms late; a simulator whose job is to reproduce a configured TTFT cannot be that loose.
//! One background thread keeps a heap of deadlines and waits on a condition variable, which on
//! Linux wakes within tens of microseconds, then completes the waiting task's oneshot. No task
//! spins, so thousands of concurrent streams cost one thread.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Instant;

use tokio::sync::oneshot;

struct Entry {
    at: Instant,
    id: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.id) == (other.at, other.id)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    /// Reversed, so that the max-heap pops the earliest deadline.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.id).cmp(&(self.at, self.id))
    }
}

#[derive(Default)]
struct Queue {
    entries: BinaryHeap<Entry>,
    next_id: u64,
}

struct Timer {
    queue: Mutex<Queue>,
    changed: Condvar,
}

fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(Queue::default()),
            changed: Condvar::new(),
        }));
        let spawned = std::thread::Builder::new().name("sluice-sim-timer".into()).spawn(move || run(timer));
        if let Err(error) = spawned {
            tracing::error!(%error, "Cannot start the simulator's timer thread; delays fall back to the runtime timer.");
        }
        timer
    })
}

fn run(timer: &'static Timer) {
    let mut queue = timer.queue.lock().unwrap_or_else(|p| p.into_inner());
    loop {
        let now = Instant::now();
        while queue.entries.peek().is_some_and(|entry| entry.at <= now) {
            if let Some(entry) = queue.entries.pop() {
                let _ = entry.wake.send(());
            }
        }
        queue = match queue.entries.peek().map(|entry| entry.at) {
            Some(at) => timer
                .changed
                .wait_timeout(queue, at - now)
                .map(|(guard, _)| guard)
                .unwrap_or_else(|p| p.into_inner().0),
            None => timer.changed.wait(queue).unwrap_or_else(|p| p.into_inner()),
        };
    }
}

/// Waits until `deadline` (a tokio instant, converted) with sub-millisecond precision.
pub async fn sleep_until(deadline: tokio::time::Instant) {
    let deadline = deadline.into_std();
    if deadline <= Instant::now() {
        return;
    }
    let (wake, woken) = oneshot::channel();
    let timer = timer();
    {
        let mut queue = timer.queue.lock().unwrap_or_else(|p| p.into_inner());
        let id = queue.next_id;
        queue.next_id += 1;
        let earliest = queue.entries.peek().is_none_or(|entry| deadline < entry.at);
        queue.entries.push(Entry {
            at: deadline,
            id,
            wake,
        });
        if earliest {
            timer.changed.notify_one();
        }
    }
    if woken.await.is_err() {
        // The timer thread could not start; the runtime's timer is the fallback.
        tokio::time::sleep_until(deadline.into()).await;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// Never early, and within 1.5 ms late — in one of three tries: a busy machine (the rest
    /// of the suite beside it) delays a wake now and then, a late timer every time.
    #[tokio::test]
    async fn wakes_on_time_and_in_order() {
        let mut lateness = Vec::new();
        for _ in 0..3 {
            let start = tokio::time::Instant::now();
            let late = tokio::spawn(async move {
                sleep_until(start + Duration::from_millis(30)).await;
                Instant::now()
            });
            sleep_until(start + Duration::from_millis(20)).await;
            let woke = Instant::now();
            let elapsed = woke - start.into_std();
            assert!(
                elapsed >= Duration::from_millis(20),
                "woke early: {elapsed:?}"
            );
            assert!(late.await.unwrap() > woke, "woke out of order");
            if elapsed < Duration::from_micros(21_500) {
                return;
            }
            lateness.push(elapsed);
        }
        panic!("late in three tries out of three: {lateness:?}");
    }
}
