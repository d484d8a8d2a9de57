//! The timeline writer: one task commits entries and delivery confirmations in batches (one
//! transaction, one fsync for many messages) and dispatches committed entries for delivery in
//! commit order. A caller is answered only after its work is committed (MR §6.2 R1).

use tokio::sync::{mpsc, oneshot};

use crate::store::timeline::{self, Append, Appended};
use crate::store::Db;

/// A delivery confirmation to persist (MR §6.2 R5).
#[derive(Debug, Clone)]
pub enum Confirm {
    /// Individually addressed entries of a user, delivered.
    Inbox { user: i64, entries: Vec<i64> },
    /// A member's group cursor moves up to `seq`.
    Cursor { user: i64, group: i64, seq: i64 },
    /// Every entry of a user up to entry id `seq` is delivered (a proto-2 ack).
    UpTo { user: i64, seq: i64 },
}

enum Job {
    Append(Box<Append>, oneshot::Sender<sqlx::Result<Appended>>),
    Confirm(Vec<Confirm>, oneshot::Sender<sqlx::Result<()>>),
}

#[derive(Clone)]
pub struct Writer {
    tx: mpsc::UnboundedSender<Job>,
}

/// Upper bound of jobs committed in one transaction.
const BATCH: usize = 256;

impl Writer {
    /// Start the writer task; `dispatch` runs after each commit with the committed entries, in order.
    pub fn start(db: Db, dispatch: impl Fn(&[(Append, Appended)]) + Send + 'static) -> Writer {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            let mut state = timeline::BatchState::default();
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
                match crate::telemetry::timed_commit(jobs.len(), commit(&db, &mut state, &jobs))
                    .await
                {
                    Ok(done) => finish(jobs, done.into_iter().map(Ok).collect(), &dispatch),
                    // One bad job must not fail the others: retry them one by one.
                    Err(e) => {
                        crate::telemetry::store_error();
                        tracing::warn!(error = %e, n = jobs.len(), "batch commit failed; retrying singly");
                        // Re-read ids and sequences from the store in case they were the cause.
                        state = timeline::BatchState::default();
                        let mut results = Vec::with_capacity(jobs.len());
                        for j in &jobs {
                            results.push(
                                commit(&db, &mut state, std::slice::from_ref(j))
                                    .await
                                    .map(|mut v| v.remove(0)),
                            );
                        }
                        finish(jobs, results, &dispatch);
                    }
                }
            }
        });
        Writer { tx }
    }

    /// Append one entry; resolves once it is committed.
    pub async fn append(&self, a: Append) -> anyhow::Result<Appended> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Append(Box::new(a), tx))
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))?;
        Ok(rx
            .await
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))??)
    }

    /// Persist confirmations; resolves once they are committed.
    pub async fn confirm(&self, c: Vec<Confirm>) -> anyhow::Result<()> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(Job::Confirm(c, tx))
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))?;
        Ok(rx
            .await
            .map_err(|_| anyhow::anyhow!("timeline writer stopped"))??)
    }
}

/// What one job produced.
enum Done {
    Appended(Appended),
    Confirmed,
}

fn finish(
    jobs: Vec<Job>,
    results: Vec<sqlx::Result<Done>>,
    dispatch: &impl Fn(&[(Append, Appended)]),
) {
    let mut committed = Vec::with_capacity(jobs.len());
    for (job, r) in jobs.into_iter().zip(results) {
        match (job, r) {
            (Job::Append(a, reply), Ok(Done::Appended(ap))) => {
                let _ = reply.send(Ok(ap.clone()));
                committed.push((*a, ap));
            }
            (Job::Append(_, reply), Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Job::Confirm(_, reply), Ok(_)) => {
                let _ = reply.send(Ok(()));
            }
            (Job::Confirm(_, reply), Err(e)) => {
                let _ = reply.send(Err(e));
            }
            (Job::Append(_, reply), Ok(Done::Confirmed)) => {
                let _ = reply.send(Err(sqlx::Error::RowNotFound));
            }
        }
    }
    dispatch(&committed);
}

async fn commit(
    db: &Db,
    state: &mut timeline::BatchState,
    jobs: &[Job],
) -> sqlx::Result<Vec<Done>> {
    let mut tx = db.begin().await?;
    // Embedded: all appends of the batch in a few multi-row statements.
    let batched = if db.is_mysql() {
        None
    } else {
        let appends: Vec<&Append> = jobs
            .iter()
            .filter_map(|j| match j {
                Job::Append(a, _) => Some(&**a),
                Job::Confirm(..) => None,
            })
            .collect();
        Some(timeline::append_batch(&mut tx, state, &appends).await?)
    };
    let mut appended = batched.as_ref().map(|(v, _)| v.iter());
    let mut out = Vec::with_capacity(jobs.len());
    let mut inbox: std::collections::BTreeMap<i64, Vec<i64>> = std::collections::BTreeMap::new();
    // A group message confirmed by many members moves all their cursors to the same seq.
    let mut cursors: std::collections::BTreeMap<(i64, i64), Vec<i64>> =
        std::collections::BTreeMap::new();
    let mut upto: std::collections::BTreeMap<i64, i64> = std::collections::BTreeMap::new();
    for job in jobs {
        match job {
            Job::Append(a, _) => match appended.as_mut().and_then(|it| it.next()) {
                Some(ap) => out.push(Done::Appended(ap.clone())),
                None => out.push(Done::Appended(timeline::append(&mut tx, a).await?)),
            },
            Job::Confirm(list, _) => {
                for c in list {
                    match c {
                        Confirm::Inbox { user, entries } => inbox
                            .entry(*user)
                            .or_default()
                            .extend(entries.iter().copied()),
                        Confirm::Cursor { user, group, seq } => {
                            cursors.entry((*group, *seq)).or_default().push(*user)
                        }
                        Confirm::UpTo { user, seq } => {
                            let e = upto.entry(*user).or_insert(*seq);
                            *e = (*e).max(*seq);
                        }
                    }
                }
                out.push(Done::Confirmed);
            }
        }
    }
    let pairs: Vec<(i64, i64)> = inbox
        .iter()
        .flat_map(|(u, es)| es.iter().map(move |e| (*u, *e)))
        .collect();
    timeline::confirm_inbox_pairs(&mut tx, &pairs).await?;
    for ((group, seq), users) in &cursors {
        timeline::advance_cursors(&mut tx, *group, *seq, users).await?;
    }
    for (user, seq) in &upto {
        timeline::confirm_upto(&mut tx, *user, *seq).await?;
    }
    tx.commit().await?;
    if let Some((_, next)) = batched {
        *state = next;
    }
    Ok(out)
}
