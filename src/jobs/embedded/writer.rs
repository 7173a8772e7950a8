//! The writer thread: every write to the store goes to it; it takes all waiting operations,
//! applies them in one transaction and commits it (fsync) before answering any of them.

use super::*;

/// Most operations committed together.
const MAX_BATCH: usize = 1024;

pub(super) type Op =
    Box<dyn FnOnce(&WriteTransaction) -> Result<Box<dyn Any + Send>, redb::Error> + Send>;

pub(super) struct Cmd {
    pub(super) op: Op,
    pub(super) reply: oneshot::Sender<Result<Box<dyn Any + Send>, StoreError>>,
}

/// One committed batch of operations per loop.
pub(super) fn writer(db: Arc<Database>, rx: mpsc::Receiver<Cmd>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(c) => batch.push(c),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(t) => t,
            Err(e) => {
                let err = StoreError::new(format!("cannot write the job store: {e}"));
                for c in batch {
                    let _ = c.reply.send(Err(err.clone()));
                }
                continue;
            }
        };
        let mut done = Vec::with_capacity(batch.len());
        let mut failure: Option<String> = None;
        for c in batch {
            if failure.is_some() {
                done.push((c.reply, None));
                continue;
            }
            match (c.op)(&txn) {
                Ok(v) => done.push((c.reply, Some(v))),
                Err(e) => {
                    failure = Some(e.to_string());
                    done.push((c.reply, None));
                }
            }
        }
        let outcome = match failure {
            Some(f) => {
                drop(txn);
                Err(StoreError::new(format!("job store write failed: {f}")))
            }
            None => txn
                .commit()
                .map_err(|e| StoreError::new(format!("job store commit failed: {e}"))),
        };
        if let Err(e) = &outcome {
            tracing::error!(error = %e, "job store transaction failed");
        }
        for (reply, value) in done {
            let msg = match (&outcome, value) {
                (Ok(()), Some(v)) => Ok(v),
                (Err(e), _) => Err(e.clone()),
                (Ok(()), None) => Err(StoreError::new("job store write failed")),
            };
            let _ = reply.send(msg);
        }
    }
}
