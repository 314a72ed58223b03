//! The SQLite delivery tables: subscriptions, the delivery outbox and its attempts, dead letters, and
//! the dispatch cursor. Writes go through the store's one writer connection.

use std::collections::HashSet;

use async_trait::async_trait;
use sqlx::{Connection, QueryBuilder, Sqlite, SqliteConnection};

use super::SqliteStore;
use super::shared::{ROWS_PER_INSERT, bump_status, in_chunks, insert_dead_letter, push_in, results_of, sql_offset};
use crate::domain::delivery::{AttemptHistory, DlqGroupQuery, DlqGroups, DlqQuery, DlqSelector};
use crate::domain::{
    DeadLetter, DeadLetterKind, DeliveryAttempt, DeliveryId, DlqId, EventId, EventStatus, Subscription, SubscriptionId,
    Timestamp,
};
use crate::storage::rows::{
    self, ATTEMPT_COLUMNS, CLAIM_COLUMNS, DLQ_COLUMNS, GroupAxis, SUBSCRIPTION_COLUMNS, json_text,
};
use crate::storage::{
    ClaimedDelivery, Cursor, CursorMove, DELIVERY_CURSOR, DeliveryResult, DeliveryStore, Error, NewDelivery, NextStep,
    settle,
};

#[async_trait]
impl DeliveryStore for SqliteStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<i64, Error> {
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let start_seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        save_subscription(&mut tx, &Subscription { start_seq, ..subscription.clone() }).await?;
        next_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(start_seq)
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, subscription_id");
        let rows = sqlx::query(&sql).fetch_all(&self.readers).await?;
        rows.iter().map(rows::subscription).collect()
    }

    async fn update_subscription(&self, subscription: &Subscription) -> Result<Option<i64>, Error> {
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let found: Option<(i64, bool)> =
            sqlx::query_as("SELECT start_seq, enabled FROM subscriptions WHERE subscription_id = ?")
                .bind(subscription.subscription_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((mut start_seq, was_enabled)) = found else { return Ok(None) };
        if subscription.enabled && !was_enabled {
            start_seq = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        }
        save_subscription(&mut tx, &Subscription { start_seq, ..subscription.clone() }).await?;
        next_epoch(&mut tx).await?;
        if !subscription.enabled {
            cancel_pending(&mut tx, subscription.subscription_id, "subscription disabled").await?;
        }
        tx.commit().await?;
        Ok(Some(start_seq))
    }

    async fn delete_subscription(&self, id: SubscriptionId) -> Result<bool, Error> {
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM subscriptions WHERE subscription_id = ?").bind(id.0).execute(&mut *tx).await?;
        cancel_pending(&mut tx, id, "subscription deleted").await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn cursor(&self, name: &str) -> Result<Cursor, Error> {
        let found: Option<(i64, i64)> = sqlx::query_as("SELECT seq, epoch FROM cursors WHERE name = ?")
            .bind(name)
            .fetch_optional(&self.readers)
            .await?;
        Ok(found.map_or_else(Cursor::default, |(seq, epoch)| Cursor { seq, epoch }))
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: Vec<NewDelivery>,
        cursor: Option<CursorMove<'_>>,
    ) -> Result<bool, Error> {
        let now = Timestamp::now().as_micros();
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        // The cursor first: when it has moved, nothing is written.
        if let Some(CursorMove { name, from, to }) = cursor {
            let moved = sqlx::query(
                "INSERT INTO cursors (name, seq, epoch) VALUES (?, ?, 0) ON CONFLICT (name) DO UPDATE \
                 SET seq = excluded.seq WHERE cursors.seq = ? AND cursors.epoch = ?",
            )
            .bind(name)
            .bind(to)
            .bind(from.seq)
            .bind(from.epoch)
            .execute(&mut *tx)
            .await?;
            // A cursor not there yet is at (0, 0) (cursors are never removed), so inserting it is moving
            // it from there.
            if moved.rows_affected() == 0 {
                return Ok(false);
            }
        }
        for chunk in deliveries.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(
                "INSERT INTO deliveries (delivery_id, event_seq, event_id, subscription_id, replay_id, state, \
                 claimed_by, claimed_until, next_attempt_at, created_at, updated_at) ",
            );
            insert.push_values(chunk, |mut row, d| {
                let claimed = d.claimed_until.is_some();
                row.push_bind(d.delivery_id.0)
                    .push_bind(d.event_seq)
                    .push_bind(d.event_id.0)
                    .push_bind(d.subscription_id.0)
                    .push_bind(d.replay_id.map(|id| id.0))
                    .push_bind(if claimed { "in_flight" } else { "pending" })
                    .push_bind(claimed.then_some(self.instance_id.as_str()))
                    .push_bind(d.claimed_until.map(Timestamp::as_micros))
                    .push_bind(now)
                    .push_bind(now)
                    .push_bind(now);
            });
            // A replay carried on after a crash queues its page again, with the same ids.
            insert.push(" ON CONFLICT (delivery_id) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn release_claims(&self) -> Result<u64, Error> {
        // This process holds the database alone: every claim in it is this instance's or a predecessor's.
        let mut conn = self.writer.write().await?;
        let released = sqlx::query(
            "UPDATE deliveries SET state = 'pending', claimed_until = NULL, claimed_by = NULL WHERE state = 'in_flight'",
        )
        .execute(&mut *conn)
        .await?;
        Ok(released.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        wants: &[(SubscriptionId, u32)],
    ) -> Result<Vec<ClaimedDelivery>, Error> {
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        // Claims whose worker died are due again.
        sqlx::query("UPDATE deliveries SET state = 'pending', claimed_until = NULL, claimed_by = NULL WHERE state = 'in_flight' AND claimed_until < ?")
            .bind(now.as_micros())
            .execute(&mut *tx)
            .await?;
        // One statement per subscription, each a short walk of the (subscription, due) index: cheap in
        // process, and no subscription's backlog is scanned on behalf of another.
        let sql = format!(
            "UPDATE deliveries SET state = 'in_flight', claimed_until = ?, claimed_by = ?, updated_at = ? WHERE delivery_id IN \
             (SELECT delivery_id FROM deliveries WHERE subscription_id = ? AND state = 'pending' AND next_attempt_at <= ? \
             ORDER BY next_attempt_at LIMIT ?) RETURNING {CLAIM_COLUMNS}"
        );
        let mut claimed = Vec::new();
        for &(subscription, limit) in wants.iter().filter(|(_, limit)| *limit > 0) {
            let rows = sqlx::query(&sql)
                .bind(lease_until.as_micros())
                .bind(&self.instance_id)
                .bind(now.as_micros())
                .bind(subscription.0)
                .bind(now.as_micros())
                .bind(i64::from(limit))
                .fetch_all(&mut *tx)
                .await?;
            for row in &rows {
                claimed.push(rows::claim(row)?);
            }
        }
        tx.commit().await?;
        Ok(claimed)
    }

    async fn complete_deliveries(&self, results: Vec<DeliveryResult>) -> Result<Vec<DeadLetter>, Error> {
        if results.is_empty() {
            return Ok(Vec::new());
        }
        let now = Timestamp::now();
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;

        let attempts: Vec<&DeliveryAttempt> = results.iter().filter_map(|r| r.attempt.as_ref()).collect();
        for chunk in attempts.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Sqlite>::new(format!("INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) "));
            insert.push_values(chunk, |mut row, a| {
                row.push_bind(a.delivery_id.0)
                    .push_bind(i64::from(a.attempt))
                    .push_bind(a.event_id.0)
                    .push_bind(a.subscription_id.0)
                    .push_bind(a.success)
                    .push_bind(a.status_code.map(i64::from))
                    .push_bind(a.response_body.clone())
                    .push_bind(a.error.clone())
                    .push_bind(a.duration_ms as i64)
                    .push_bind(a.attempted_at.as_micros());
            });
            insert.build().execute(&mut *tx).await?;
        }

        // Every row in one statement a chunk, not a statement (and a round trip to SQLite's thread) each:
        // the rows whose claim is still this instance's are settled and returned.
        let settled: Vec<_> = results.iter().map(|result| result.settle(now)).collect();
        let mut still_ours = HashSet::new();
        for (results, settled) in results.chunks(ROWS_PER_INSERT).zip(settled.chunks(ROWS_PER_INSERT)) {
            let mut update = QueryBuilder::<Sqlite>::new(
                "WITH settled (delivery_id, state, sent, next_attempt_at, last_status_code, last_error, first_failed_at) AS (",
            );
            update.push_values(results.iter().zip(settled), |mut row, (r, s)| {
                row.push_bind(r.claimed.delivery_id.0)
                    .push_bind(s.state)
                    .push_bind(s.sent)
                    .push_bind(s.next_attempt_at.as_micros())
                    .push_bind(s.last_status)
                    .push_bind(s.last_error.as_deref())
                    .push_bind(s.first_failed_at.map(Timestamp::as_micros));
            });
            update
                .push(
                    ") UPDATE deliveries SET state = settled.state, attempts = attempts + settled.sent, \
                     round_attempts = round_attempts + settled.sent, next_attempt_at = settled.next_attempt_at, \
                     claimed_until = NULL, claimed_by = NULL, last_status_code = settled.last_status_code, \
                     last_error = settled.last_error, first_failed_at = settled.first_failed_at, updated_at = ",
                )
                .push_bind(now.as_micros())
                .push(" FROM settled WHERE deliveries.delivery_id = settled.delivery_id AND deliveries.state = 'in_flight' AND claimed_by = ")
                .push_bind(&self.instance_id)
                .push(" RETURNING deliveries.delivery_id");
            let rows: Vec<(uuid::Uuid,)> = update.build_query_as().fetch_all(&mut *tx).await?;
            still_ours.extend(rows.into_iter().map(|(id,)| id));
        }

        let mut dead_letters = Vec::new();
        let (mut delivered, mut dead) = (0i64, 0i64);
        for (result, settled) in results.iter().zip(&settled) {
            let claimed = &result.claimed;
            if !still_ours.remove(&claimed.delivery_id.0) {
                // Its lease ran out and another instance holds it now (or an earlier result in this batch
                // settled it): the attempt stays in the history, what comes next is not this one's to decide.
                continue;
            }

            match &result.next {
                NextStep::Delivered => delivered += 1,
                NextStep::Dead { event_type } => {
                    dead += 1;
                    let entry = settled.dead_letter(event_type, now);
                    insert_dead_letter(&mut tx, &entry).await?;
                    dead_letters.push(entry);
                }
                NextStep::Gone { reason } => {
                    sqlx::query("UPDATE subscriptions SET enabled = 0, disabled_reason = ?, updated_at = ? WHERE subscription_id = ?")
                        .bind(reason)
                        .bind(now.as_micros())
                        .bind(claimed.subscription_id.0)
                        .execute(&mut *tx)
                        .await?;
                    cancel_pending(
                        &mut tx,
                        claimed.subscription_id,
                        "subscription disabled: its endpoint answered 410 Gone",
                    )
                    .await?;
                }
                NextStep::RetryAt(_) | NextStep::Cancelled => {}
            }
        }
        // Retries of a subscription disabled or deleted while their requests were on their way are
        // cancelled like the rest of what it had pending (one disabled by a 410 in this batch, above).
        let (retrying, _) = settle::retrying_and_gone(&results);
        for chunk in in_chunks(&retrying) {
            let mut enabled =
                QueryBuilder::<Sqlite>::new("SELECT subscription_id FROM subscriptions WHERE enabled AND ");
            push_in(&mut enabled, "subscription_id", chunk.iter().map(|id| id.0));
            let enabled: HashSet<uuid::Uuid> =
                enabled.build_query_scalar().fetch_all(&mut *tx).await?.into_iter().collect();
            for id in chunk.iter().filter(|id| !enabled.contains(&id.0)) {
                cancel_pending(&mut tx, *id, "subscription disabled or deleted").await?;
            }
        }

        let retries = attempts.iter().filter(|a| a.attempt > 1).count() as i64;
        let mut counts = QueryBuilder::<Sqlite>::new("INSERT INTO counters (dimension, key, count) ");
        counts.push_values(
            [("attempts", attempts.len() as i64), ("retries", retries), ("delivered", delivered), ("dead", dead)],
            |mut row, (key, count)| {
                row.push_bind("delivery").push_bind(key).push_bind(count);
            },
        );
        counts.push(" ON CONFLICT (dimension, key) DO UPDATE SET count = count + excluded.count");
        counts.build().execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(dead_letters)
    }

    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE event_id = ? ORDER BY attempted_at, attempt"
        );
        let rows = sqlx::query(&sql).bind(event_id.0).fetch_all(&self.readers).await?;
        rows.iter().map(rows::attempt).collect()
    }

    async fn dead_letters(&self, query: &DlqQuery) -> Result<(Vec<DeadLetter>, u64), Error> {
        let push_filter = |sql: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(kind) = query.kind {
                sql.push(" AND kind = ").push_bind(kind.as_str());
            }
            if let Some(id) = query.subscription_id {
                sql.push(" AND subscription_id = ").push_bind(id.0);
            }
            if let Some(id) = query.processor_id {
                sql.push(" AND processor_id = ").push_bind(id.0);
            }
        };
        let mut select = QueryBuilder::new(format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE 1 = 1"));
        push_filter(&mut select);
        select
            .push(" ORDER BY created_at DESC, dlq_id DESC LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(sql_offset(query.offset));
        let entries =
            select.build().fetch_all(&self.readers).await?.iter().map(rows::dead_letter).collect::<Result<_, _>>()?;
        let mut count = QueryBuilder::new("SELECT count(*) FROM dead_letters WHERE 1 = 1");
        push_filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&self.readers).await?;
        Ok((entries, total as u64))
    }

    async fn dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE dlq_id = ?");
        let Some(row) = sqlx::query(&sql).bind(id.0).fetch_optional(&self.readers).await? else {
            return Ok(None);
        };
        let mut entry = rows::dead_letter(&row)?;
        let history = match entry.delivery_id {
            Some(delivery_id) => {
                let sql =
                    format!("SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = ? ORDER BY attempt");
                let rows = sqlx::query(&sql).bind(delivery_id.0).fetch_all(&self.readers).await?;
                AttemptHistory::Delivery(rows.iter().map(rows::attempt).collect::<Result<_, _>>()?)
            }
            None => {
                let results = results_of(&self.readers, entry.event_id).await?;
                AttemptHistory::Processing(results.into_iter().filter(|r| r.replay_id.is_none()).collect())
            }
        };
        entry.attempt_history = Some(history);
        Ok(Some(entry))
    }

    async fn retry_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error> {
        let now = Timestamp::now().as_micros();
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let entries = selected_dead_letters(&mut tx, selector).await?;
        for chunk in in_chunks(&entries) {
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM dead_letters WHERE ");
            push_in(&mut delete, "dlq_id", chunk.iter().map(|e| e.dlq_id.0));
            delete.build().execute(&mut *tx).await?;

            // A processing entry's event goes back to pending with a fresh retry budget.
            let events: Vec<EventId> =
                chunk.iter().filter(|e| e.kind == DeadLetterKind::Processing).map(|e| e.event_id).collect();
            if !events.is_empty() {
                let mut restart = QueryBuilder::<Sqlite>::new(
                    "UPDATE events SET status = 'pending', retry_count = 0, due_at = 0, processed_at = NULL \
                     WHERE status = 'failed' AND ",
                );
                push_in(&mut restart, "event_id", events.into_iter().map(|id| id.0));
                let moved = restart.build().execute(&mut *tx).await?.rows_affected() as i64;
                bump_status(&mut tx, &[(EventStatus::Failed, -moved), (EventStatus::Pending, moved)]).await?;
            }

            let deliveries: Vec<DeliveryId> = chunk.iter().filter_map(|e| e.delivery_id).collect();
            if !deliveries.is_empty() {
                let mut restart = QueryBuilder::<Sqlite>::new(
                    "UPDATE deliveries SET state = 'pending', round_attempts = 0, first_failed_at = NULL, claimed_until = NULL, next_attempt_at = ",
                );
                restart.push_bind(now).push(", updated_at = ").push_bind(now).push(" WHERE ");
                push_in(&mut restart, "delivery_id", deliveries.into_iter().map(|id| id.0));
                restart.build().execute(&mut *tx).await?;
            }
        }
        tx.commit().await?;
        Ok(entries)
    }

    async fn discard_dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error> {
        let mut conn = self.writer.write().await?;
        let sql = format!("DELETE FROM dead_letters WHERE dlq_id = ? RETURNING {DLQ_COLUMNS}");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&mut *conn).await?;
        row.as_ref().map(rows::dead_letter).transpose()
    }

    async fn discard_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error> {
        let mut conn = self.writer.write().await?;
        let mut tx = conn.begin().await?;
        let entries = selected_dead_letters(&mut tx, selector).await?;
        for chunk in in_chunks(&entries) {
            let mut delete = QueryBuilder::<Sqlite>::new("DELETE FROM dead_letters WHERE ");
            push_in(&mut delete, "dlq_id", chunk.iter().map(|e| e.dlq_id.0));
            delete.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(entries)
    }

    async fn dead_letter_groups(&self, query: &DlqGroupQuery) -> Result<DlqGroups, Error> {
        let push_kind = |sql: &mut QueryBuilder<'_, Sqlite>| {
            if let Some(kind) = query.kind {
                sql.push(" WHERE kind = ").push_bind(kind.as_str());
            }
        };
        // One read transaction: the groups and their histograms see the same queue.
        let mut tx = self.readers.begin().await?;
        let mut first = QueryBuilder::<Sqlite>::new("SELECT min(last_failed_at) FROM dead_letters");
        push_kind(&mut first);
        let axis = GroupAxis::new(query, first.build_query_scalar().fetch_one(&mut *tx).await?);

        let mut select = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {GROUP_KEY}, count(*) AS n, min(first_failed_at) AS first_failed_at, \
             max(last_failed_at) AS last_failed_at FROM dead_letters"
        ));
        push_kind(&mut select);
        select.push(" GROUP BY 1, 2, 3, 4, 5 ORDER BY n DESC, last_failed_at DESC");
        let groups = select.build().fetch_all(&mut *tx).await?;
        let mut histogram = QueryBuilder::<Sqlite>::new(format!("SELECT {GROUP_KEY}, min("));
        histogram
            .push_bind(axis.buckets - 1)
            .push(", (last_failed_at - ")
            .push_bind(axis.start)
            .push(") / ")
            .push_bind(axis.bucket_us)
            .push(") AS bucket, count(*) AS n FROM dead_letters");
        push_kind(&mut histogram);
        histogram.push(" GROUP BY 1, 2, 3, 4, 5, 6");
        let buckets = histogram.build().fetch_all(&mut *tx).await?;
        tx.commit().await?;
        axis.groups(&groups, &buckets)
    }
}

async fn save_subscription(conn: &mut SqliteConnection, s: &Subscription) -> Result<(), Error> {
    let sql = format!(
        "INSERT OR REPLACE INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    );
    sqlx::query(&sql)
        .bind(s.subscription_id.0)
        .bind(&s.subscriber_name)
        .bind(&s.subscriber_type)
        .bind(json_text(&s.event_types))
        .bind(json_text(&s.event_sources))
        .bind(json_text(&s.event_categories))
        .bind(&s.callback_url)
        .bind(&s.secret)
        .bind(json_text(&s.retry_policy))
        .bind(s.enabled)
        .bind(&s.disabled_reason)
        .bind(s.start_seq)
        .bind(s.created_at.as_micros())
        .bind(s.updated_at.as_micros())
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Moves the delivery cursor's epoch on: a fan-out that read the subscriptions before cannot move it.
async fn next_epoch(conn: &mut SqliteConnection) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO cursors (name, seq, epoch) VALUES (?, 0, 1) ON CONFLICT (name) DO UPDATE SET epoch = epoch + 1",
    )
    .bind(DELIVERY_CURSOR)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn cancel_pending(conn: &mut SqliteConnection, id: SubscriptionId, why: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', last_error = ?, updated_at = ? WHERE subscription_id = ? AND state = 'pending'",
    )
    .bind(format!("cancelled: {why}"))
    .bind(Timestamp::now().as_micros())
    .bind(id.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
/// The columns of a group's key, in [`DlqGroupKey`] order; the error class as [`error_class`] makes it.
/// The error text a class is taken from: a processing error without its leading `processor: `.
macro_rules! cause_sql {
    () => {
        "(CASE WHEN kind = 'processing' AND instr(coalesce(last_error, ''), ': ') > 0 \
         THEN substr(last_error, instr(last_error, ': ') + 2) ELSE coalesce(last_error, '') END)"
    };
}
/// [`crate::domain::delivery::error_class`] in SQL.
macro_rules! error_class_sql {
    () => {
        concat!(
            "CASE WHEN last_status_code IS NULL THEN substr(",
            cause_sql!(),
            ", 1, CASE WHEN instr(",
            cause_sql!(),
            ", ':') > 0 THEN min(instr(",
            cause_sql!(),
            ", ':') - 1, 60) ELSE 60 END) END"
        )
    };
}
const GROUP_KEY: &str =
    concat!("kind, subscription_id, processor_id, last_status_code, ", error_class_sql!(), " AS error_class");

/// The entries a selector takes, read inside the caller's transaction.
async fn selected_dead_letters(conn: &mut SqliteConnection, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error> {
    let select = || QueryBuilder::<Sqlite>::new(format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE "));
    let selects: Vec<QueryBuilder<'_, Sqlite>> = match selector {
        DlqSelector::All => {
            let mut all = select();
            all.push("1 = 1");
            vec![all]
        }
        DlqSelector::Subscription(id) => {
            let mut of_subscription = select();
            of_subscription.push("subscription_id = ").push_bind(id.0);
            vec![of_subscription]
        }
        DlqSelector::Group(key) => {
            let mut of_group = select();
            of_group
                .push("kind = ")
                .push_bind(key.kind.as_str())
                .push(" AND subscription_id IS ")
                .push_bind(key.subscription_id.map(|id| id.0))
                .push(" AND processor_id IS ")
                .push_bind(key.processor_id.map(|id| id.0))
                .push(" AND last_status_code IS ")
                .push_bind(key.last_status_code.map(i64::from))
                .push(concat!(" AND (", error_class_sql!(), ") IS "))
                .push_bind(key.error_class.clone());
            vec![of_group]
        }
        DlqSelector::Ids(ids) if ids.is_empty() => return Ok(Vec::new()),
        DlqSelector::Ids(ids) => in_chunks(ids)
            .map(|chunk| {
                let mut by_id = select();
                push_in(&mut by_id, "dlq_id", chunk.iter().map(|id| id.0));
                by_id
            })
            .collect(),
    };
    let mut entries: Vec<DeadLetter> = Vec::new();
    for mut select in selects {
        for row in select.build().fetch_all(&mut *conn).await? {
            entries.push(rows::dead_letter(&row)?);
        }
    }
    Ok(entries)
}
