//! The timeline writer: one task appends entries in batches (one transaction, one fsync for many
//! messages) and dispatches them for delivery in commit order. A caller is answered only after
//! its entry is committed (MR §6.2 R1).

use tokio::sync::{mpsc, oneshot};

use crate::store::timeline::{self, Append, Appended};
use crate::store::Db;

type Job = (Append, oneshot::Sender<sqlx::Result<Appended>>);

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

/// Upper bound of entries committed in one transaction.
const BATCH: usize = 256;

impl Writer {
    /// Start the writer task; `dispatch` runs after each commit with the committed entries, in order.
    pub fn start(db: Db, dispatch: impl Fn(&[(Append, Appended)]) + Send + 'static) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let mut batch: Vec<Job> = Vec::with_capacity(BATCH);
            while let Some(first) = rx.recv().await {
                batch.push(first);
                while batch.len() < BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                let jobs = std::mem::take(&mut batch);
                let done = match commit(&db, &jobs).await {
                    Ok(done) => done,
                    // One bad entry must not fail the others: retry them one by one.
                    Err(e) => {
                        tracing::warn!(error = %e, n = jobs.len(), "batch append failed; retrying singly");
                        let mut done = Vec::with_capacity(jobs.len());
                        for j in &jobs {
                            done.push(
                                commit(&db, std::slice::from_ref(j))
                                    .await
                                    .map(|mut v| v.remove(0)),
                            );
                        }
                        let mut committed = Vec::new();
                        for ((a, reply), r) in jobs.into_iter().zip(done) {
                            match r {
                                Ok(ap) => {
                                    committed.push((a, ap.clone()));
                                    let _ = reply.send(Ok(ap));
                                }
                                Err(e) => {
                                    let _ = reply.send(Err(e));
                                }
                            }
                        }
                        dispatch(&committed);
                        continue;
                    }
                };
                let mut committed = Vec::with_capacity(jobs.len());
                for ((a, reply), ap) in jobs.into_iter().zip(done) {
                    let _ = reply.send(Ok(ap.clone()));
                    committed.push((a, ap));
                }
                dispatch(&committed);
            }
        });
        Writer { tx }
    }

    /// Append one entry; resolves once it is committed.
    pub async fn append(&self, a: Append) -> anyhow::Result<Appended> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((a, tx))
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))?;
        Ok(rx
            .await
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))??)
    }
}

async fn commit(db: &Db, jobs: &[Job]) -> sqlx::Result<Vec<Appended>> {
    let mut tx = db.begin().await?;
    let mut out = Vec::with_capacity(jobs.len());
    for (a, _) in jobs {
        out.push(timeline::append(&mut tx, a).await?);
    }
    tx.commit().await?;
    Ok(out)
}
