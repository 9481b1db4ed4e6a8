//! A task for the synchronous commands (`once`, `watch`): it runs on its own thread and runtime,
//! and is cancelled and joined when the handle is dropped.

use std::future::Future;
use tokio_util::sync::CancellationToken;

pub struct Background {
    stop: CancellationToken,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Background {
    /// Runs `task(stop)` on `rt` in a thread named `name`; pending work gets 1 s after it ends.
    pub fn start<F, Fut>(
        name: &str,
        rt: tokio::runtime::Runtime,
        task: F,
    ) -> std::io::Result<Background>
    where
        F: FnOnce(CancellationToken) -> Fut + Send + 'static,
        Fut: Future<Output = ()>,
    {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                rt.block_on(task(s));
                rt.shutdown_timeout(std::time::Duration::from_secs(1));
            })?;
        Ok(Background {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
