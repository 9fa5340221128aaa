//! A helper thread of the controller's that serves one request at a time from a bounded
//! channel and answers on another: the `data-sync` thread ([`crate::data_sync`]) and the
//! `checkpoint` thread ([`crate::checkpoint`]).
//!
//! Owns the thread and both channels. Dropping it closes the request channel, which ends the
//! thread, and waits for it (the checkpoint thread holds the index, which must be closed when
//! the controller's store is). Must never decide anything: what to run is its owner's.

use std::sync::mpsc::{Receiver, RecvError, SyncSender, TryRecvError, TrySendError};

/// Requests waiting for the thread, at most (the owners keep one in flight).
const REQUESTS_MAX: usize = 1;

pub struct HelperThread<Req, Res> {
    /// `None` only while dropping (closing it ends the thread).
    requests: Option<SyncSender<Req>>,
    results: Receiver<Res>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<Req: Send + 'static, Res: Send + 'static> HelperThread<Req, Res> {
    /// Starts thread `name` running `serve` on each request; a `None` answer sends nothing
    /// (a request that wants none). After each answer it calls `answered` (e.g. to wake the
    /// owner's thread).
    pub fn spawn(
        name: &str,
        mut serve: impl FnMut(Req) -> Option<Res> + Send + 'static,
        answered: impl Fn() + Send + 'static,
    ) -> std::io::Result<HelperThread<Req, Res>> {
        let (requests, incoming) = std::sync::mpsc::sync_channel::<Req>(REQUESTS_MAX);
        let (outgoing, results) = std::sync::mpsc::sync_channel(REQUESTS_MAX);
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                // Ends when the owner drops its sender.
                while let Ok(request) = incoming.recv() {
                    let Some(result) = serve(request) else {
                        continue;
                    };
                    if outgoing.send(result).is_err() {
                        break;
                    }
                    answered();
                }
            })?;
        Ok(HelperThread {
            requests: Some(requests),
            results,
            thread: Some(thread),
        })
    }

    fn sender(&self) -> &SyncSender<Req> {
        self.requests.as_ref().expect("not dropped")
    }

    /// Queues a request, waiting for room (the thread runs: it only ends when dropped).
    pub fn send(&self, request: Req) {
        self.sender()
            .send(request)
            .expect("the helper thread runs until dropped");
    }

    /// Queues a request if there is room now; drops it otherwise.
    pub fn try_send(&self, request: Req) {
        match self.sender().try_send(request) {
            Ok(()) | Err(TrySendError::Full(_)) => {}
            Err(TrySendError::Disconnected(_)) => panic!("the helper thread runs until dropped"),
        }
    }

    /// The next answer, waiting for it (`Err`: the thread died).
    pub fn recv(&self) -> Result<Res, RecvError> {
        self.results.recv()
    }

    /// The next answer if there is one.
    pub fn try_recv(&self) -> Result<Res, TryRecvError> {
        self.results.try_recv()
    }
}

impl<Req, Res> Drop for HelperThread<Req, Res> {
    fn drop(&mut self) {
        drop(self.requests.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
