//! The recorded answers of a batch's lines: a line's answer, once recorded, is its progress (a
//! recorded line never runs again). Answers are written in groups ([`Answers::append`]):
//!
//! - embedded: the table `line_groups` of `batches.redb`, `(batch id, row number) → entries`
//!   (encoded as the group messages below, cut at about 32 KiB), one write transaction (fsync)
//!   per group: a row per ~20 answers of 1 KiB, not per answer, so a group costs few B-tree
//!   inserts and the output is read back a row at a time;
//! - NATS: one message per group on the stream `AIGW_BATCH_LINES`, subject
//!   `aigw.batch_lines.{batch id}`; an answer too large for a message goes to the object store
//!   `aigw_files` as `bl.{batch id}.{index}` and the message names it.
//!
//! A line's stored form is its output line, rendered (`{"id","custom_id","response","error"}`
//! and a newline), so finalising copies bytes and never holds more than a group in memory.

use std::sync::Arc;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};
use tokio::io::AsyncReadExt;

use crate::jobs::StoreError;
use crate::jobs::files::nats::NatsBackend;

pub const LINES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("line_groups");
/// An answer larger than this goes to the object store (NATS).
const INLINE_MAX: usize = 256 * 1024;
/// A group message is cut at about this size (NATS' default max payload is 1 MiB).
const MESSAGE_MAX: usize = 512 * 1024;
/// An embedded row is cut at about this size: rows, and the pages redb keeps them in, stay
/// small allocations (measured: rows of 512 KiB left the allocator holding +80 MiB of freed
/// large blocks through a 100 MiB batch).
const ROW_MAX: usize = 32 * 1024;

const OK: u8 = 1;
const IN_OBJECT_STORE: u8 = 2;

/// One line's answer: its index among the input's lines, whether it goes to the output file
/// (`ok`) or the error file, and its rendered output line.
#[derive(Debug, Clone)]
pub struct Answer {
    pub index: u64,
    pub ok: bool,
    pub line: Bytes,
}

/// A recorded answer as read back: its line, or (NATS) the object holding it.
pub struct Entry {
    pub index: u64,
    pub ok: bool,
    body: Body,
}

enum Body {
    Inline(Bytes),
    Object(String),
}

#[derive(Clone)]
pub enum Answers {
    Embedded(Arc<Database>),
    Nats(Arc<NatsBackend>),
}

fn db_err(e: impl std::fmt::Display) -> StoreError {
    StoreError::new(format!("batch answers: {e}"))
}

fn subject(batch: &str) -> String {
    format!("aigw.batch_lines.{batch}")
}

fn object_name(batch: &str, index: u64) -> String {
    format!("bl.{batch}.{index}")
}

/// Append one entry to a group message.
fn encode(buf: &mut impl BufMut, index: u64, flags: u8, body: &[u8]) {
    buf.put_u64(index);
    buf.put_u8(flags);
    buf.put_u32(u32::try_from(body.len()).unwrap_or(u32::MAX));
    buf.put_slice(body);
}

/// The entries of a group message (a malformed tail is dropped).
fn decode(batch: &str, mut payload: Bytes) -> Vec<Entry> {
    let mut out = Vec::new();
    while payload.remaining() >= 13 {
        let index = payload.get_u64();
        let flags = payload.get_u8();
        let len = payload.get_u32() as usize;
        if payload.remaining() < len {
            break;
        }
        let bytes = payload.split_to(len);
        out.push(Entry {
            index,
            ok: flags & OK != 0,
            body: if flags & IN_OBJECT_STORE != 0 {
                Body::Object(object_name(batch, index))
            } else {
                Body::Inline(bytes)
            },
        });
    }
    out
}

impl Answers {
    /// Record a group of answers: on disk (or acknowledged by JetStream) when this returns.
    pub async fn append(&self, batch: &str, group: &[Answer]) -> Result<(), StoreError> {
        match self {
            Self::Embedded(db) => {
                let (db, batch, group) = (db.clone(), batch.to_owned(), group.to_vec());
                tokio::task::spawn_blocking(move || {
                    let mut rows = Vec::new();
                    let mut row = Vec::with_capacity(ROW_MAX + 2048);
                    for a in &group {
                        encode(&mut row, a.index, if a.ok { OK } else { 0 }, &a.line);
                        if row.len() >= ROW_MAX {
                            rows.push(std::mem::replace(
                                &mut row,
                                Vec::with_capacity(ROW_MAX + 2048),
                            ));
                        }
                    }
                    if !row.is_empty() {
                        rows.push(row);
                    }
                    let txn = db.begin_write().map_err(db_err)?;
                    {
                        let mut t = txn.open_table(LINES).map_err(db_err)?;
                        // Rows are numbered on from the batch's last one.
                        let mut next = t
                            .range((batch.as_str(), 0)..=(batch.as_str(), u64::MAX))
                            .map_err(db_err)?
                            .next_back()
                            .transpose()
                            .map_err(db_err)?
                            .map_or(0, |(k, _)| k.value().1.saturating_add(1));
                        for row in &rows {
                            t.insert((batch.as_str(), next), &row[..]).map_err(db_err)?;
                            next = next.saturating_add(1);
                        }
                    }
                    txn.commit().map_err(db_err)
                })
                .await
                .map_err(db_err)?
            }
            Self::Nats(n) => {
                let js = n.js()?;
                n.lines_stream().await?;
                let mut acks = Vec::new();
                let mut buf = BytesMut::new();
                for a in group {
                    let ok = if a.ok { OK } else { 0 };
                    if a.line.len() > INLINE_MAX {
                        let objects = n.objects().await?;
                        let mut r = &a.line[..];
                        objects
                            .put(object_name(batch, a.index).as_str(), &mut r)
                            .await
                            .map_err(db_err)?;
                        encode(&mut buf, a.index, ok | IN_OBJECT_STORE, &[]);
                    } else {
                        encode(&mut buf, a.index, ok, &a.line);
                    }
                    if buf.len() >= MESSAGE_MAX {
                        acks.push(
                            js.publish(subject(batch), buf.split().freeze())
                                .await
                                .map_err(db_err)?,
                        );
                    }
                }
                if !buf.is_empty() {
                    acks.push(
                        js.publish(subject(batch), buf.freeze())
                            .await
                            .map_err(db_err)?,
                    );
                }
                for ack in acks {
                    ack.await.map_err(db_err)?;
                }
                Ok(())
            }
        }
    }

    /// Read the recorded answers of `batch` from the start, a group at a time.
    pub fn cursor(&self, batch: &str) -> Cursor {
        Cursor {
            answers: self.clone(),
            batch: batch.to_owned(),
            next: 0,
            done: false,
        }
    }

    /// The line of an entry (fetched from the object store when it lives there).
    pub async fn line(&self, e: Entry) -> Result<Bytes, StoreError> {
        match (e.body, self) {
            (Body::Inline(b), _) => Ok(b),
            (Body::Object(name), Self::Nats(n)) => {
                let mut r = n
                    .objects()
                    .await?
                    .get(name.as_str())
                    .await
                    .map_err(db_err)?;
                let mut out = Vec::new();
                r.read_to_end(&mut out).await.map_err(db_err)?;
                Ok(Bytes::from(out))
            }
            (Body::Object(name), Self::Embedded(_)) => {
                Err(StoreError::new(format!("batch answers: no object {name}")))
            }
        }
    }

    /// Drop every recorded answer of `batch` (once its files are written and its record ended).
    pub async fn forget(&self, batch: &str) -> Result<(), StoreError> {
        match self {
            Self::Embedded(db) => loop {
                let (db, b) = (db.clone(), batch.to_owned());
                let removed = tokio::task::spawn_blocking(move || {
                    let txn = db.begin_write().map_err(db_err)?;
                    let n = {
                        let mut t = txn.open_table(LINES).map_err(db_err)?;
                        let keys: Vec<u64> = t
                            .range((b.as_str(), 0)..=(b.as_str(), u64::MAX))
                            .map_err(db_err)?
                            .take(4096)
                            .filter_map(|r| r.ok().map(|(k, _)| k.value().1))
                            .collect();
                        for k in &keys {
                            t.remove((b.as_str(), *k)).map_err(db_err)?;
                        }
                        keys.len()
                    };
                    txn.commit().map_err(db_err)?;
                    Ok::<_, StoreError>(n)
                })
                .await
                .map_err(db_err)??;
                if removed == 0 {
                    return Ok(());
                }
            },
            Self::Nats(n) => {
                let mut cursor = self.cursor(batch);
                let objects = n.objects().await?;
                while let Some(group) = cursor.next().await? {
                    for e in group {
                        if let Body::Object(name) = e.body {
                            objects.delete(name.as_str()).await.map_err(db_err)?;
                        }
                    }
                }
                n.lines_stream()
                    .await?
                    .purge()
                    .filter(subject(batch))
                    .await
                    .map_err(db_err)?;
                Ok(())
            }
        }
    }
}

/// Reads a batch's recorded answers in the order they were recorded, a group at a time.
pub struct Cursor {
    answers: Answers,
    batch: String,
    /// Embedded: the next row; NATS: the next stream sequence.
    next: u64,
    done: bool,
}

impl Cursor {
    /// The next group of entries (`None` at the end).
    pub async fn next(&mut self) -> Result<Option<Vec<Entry>>, StoreError> {
        if self.done {
            return Ok(None);
        }
        match &self.answers {
            Answers::Embedded(db) => {
                let (db, b, from) = (db.clone(), self.batch.clone(), self.next);
                let got = tokio::task::spawn_blocking(move || {
                    let txn = db.begin_read().map_err(db_err)?;
                    let t = txn.open_table(LINES).map_err(db_err)?;
                    let row = t
                        .range((b.as_str(), from)..=(b.as_str(), u64::MAX))
                        .map_err(db_err)?
                        .next()
                        .transpose()
                        .map_err(db_err)?
                        .map(|(k, v)| (k.value().1, Bytes::copy_from_slice(v.value())));
                    Ok::<_, StoreError>(row)
                })
                .await
                .map_err(db_err)??;
                match got {
                    None => {
                        self.done = true;
                        Ok(None)
                    }
                    Some((row, payload)) => {
                        if row == u64::MAX {
                            self.done = true;
                        }
                        self.next = row.saturating_add(1);
                        Ok(Some(decode(&self.batch, payload)))
                    }
                }
            }
            Answers::Nats(n) => {
                let stream = n.lines_stream().await?;
                let seq = self.next.max(1);
                match stream
                    .raw_message_builder()
                    .sequence(seq)
                    .next_by_subject(subject(&self.batch))
                    .send()
                    .await
                {
                    Ok(m) => {
                        self.next = m.sequence + 1;
                        Ok(Some(decode(&self.batch, m.payload)))
                    }
                    Err(e)
                        if e.kind()
                            == async_nats::jetstream::stream::LastRawMessageErrorKind::NoMessageFound =>
                    {
                        self.done = true;
                        Ok(None)
                    }
                    Err(e) => Err(db_err(e)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_messages_decode_to_their_entries() {
        let mut buf = BytesMut::new();
        encode(&mut buf, 7, OK, b"{\"a\":1}\n");
        encode(&mut buf, 9, IN_OBJECT_STORE, &[]);
        encode(&mut buf, 12, 0, b"{\"e\":1}\n");
        let mut payload = buf.freeze().to_vec();
        payload.extend_from_slice(&[0, 1, 2]); // a torn tail is dropped
        let got = decode("batch_x", Bytes::from(payload));
        let shape: Vec<(u64, bool, Option<&[u8]>)> = got
            .iter()
            .map(|e| {
                let body = match &e.body {
                    Body::Inline(b) => Some(&b[..]),
                    Body::Object(name) => {
                        assert_eq!(name, "bl.batch_x.9");
                        None
                    }
                };
                (e.index, e.ok, body)
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (7, true, Some(&b"{\"a\":1}\n"[..])),
                (9, false, None),
                (12, false, Some(&b"{\"e\":1}\n"[..])),
            ]
        );
    }

    #[tokio::test]
    async fn embedded_answers_read_back_in_the_order_recorded_and_are_forgotten() {
        let dir = tempfile::tempdir().unwrap();
        let db = crate::jobs::batches::store::Records::open_embedded(dir.path().to_str().unwrap())
            .unwrap();
        let answers = Answers::Embedded(db);
        let a = |index: u64, ok: bool| Answer {
            index,
            ok,
            line: Bytes::from(format!("line {index}\n")),
        };
        answers
            .append("batch_a", &[a(600, true), a(3, false)])
            .await
            .unwrap();
        answers.append("batch_b", &[a(1, true)]).await.unwrap();
        // A group larger than a row is cut into rows, read back in order.
        let big: Vec<Answer> = (10..40)
            .map(|i| Answer {
                index: i,
                ok: true,
                line: Bytes::from(vec![b'x'; 64 * 1024]),
            })
            .collect();
        answers.append("batch_a", &big).await.unwrap();
        answers.append("batch_a", &[a(5, true)]).await.unwrap();
        let mut read = Vec::new();
        let mut c = answers.cursor("batch_a");
        while let Some(group) = c.next().await.unwrap() {
            for e in group {
                let ok = e.ok;
                let index = e.index;
                read.push((index, ok, answers.line(e).await.unwrap()));
            }
        }
        let shape: Vec<(u64, bool, usize)> =
            read.iter().map(|(i, ok, l)| (*i, *ok, l.len())).collect();
        let mut want = vec![(600, true, 9), (3, false, 7)];
        want.extend((10..40).map(|i| (i, true, 64 * 1024)));
        want.push((5, true, 7));
        assert_eq!(shape, want);
        assert_eq!(read[0].2, Bytes::from("line 600\n"));
        assert_eq!(read[1].2, Bytes::from("line 3\n"));
        answers.forget("batch_a").await.unwrap();
        assert!(answers.cursor("batch_a").next().await.unwrap().is_none());
        assert!(answers.cursor("batch_b").next().await.unwrap().is_some());
    }
}
