//! The PostgreSQL delivery tables: subscriptions, the delivery outbox and its attempts, dead letters,
//! and the dispatch cursor. Instances claim deliveries with `FOR UPDATE SKIP LOCKED`, so they never
//! take the same one and never wait for each other's claims.

use std::collections::{BTreeSet, HashSet};

use async_trait::async_trait;
use sqlx::{Acquire, PgConnection, Postgres, QueryBuilder};

use super::PostgresStore;
use super::shared::{ROWS_PER_INSERT, insert_dead_letter, results_of};
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
impl DeliveryStore for PostgresStore {
    async fn insert_subscription(&self, subscription: &Subscription) -> Result<i64, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // Under the append lock, so no event commits between reading the start and saving it.
        self.serialise(&mut tx, super::shared::Serial::Seq).await?;
        let start_seq: i64 = sqlx::query_scalar("SELECT coalesce(max(seq), 0) FROM events").fetch_one(&mut *tx).await?;
        save_subscription(&mut tx, &Subscription { start_seq, ..subscription.clone() }).await?;
        next_epoch(&mut tx).await?;
        tx.commit().await?;
        Ok(start_seq)
    }

    async fn subscriptions(&self) -> Result<Vec<Subscription>, Error> {
        let sql = format!("SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions ORDER BY created_at, subscription_id");
        sqlx::query(&sql).fetch_all(&self.pool).await?.iter().map(rows::subscription).collect()
    }

    async fn update_subscription(&self, subscription: &Subscription) -> Result<Option<i64>, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let found: Option<(i64, bool)> =
            sqlx::query_as("SELECT start_seq, enabled FROM subscriptions WHERE subscription_id = $1 FOR UPDATE")
                .bind(subscription.subscription_id.0)
                .fetch_optional(&mut *tx)
                .await?;
        let Some((mut start_seq, was_enabled)) = found else {
            tx.rollback().await?;
            return Ok(None);
        };
        if subscription.enabled && !was_enabled {
            // As for a new subscription: under the append lock, so no event commits between reading the
            // start and saving it.
            self.serialise(&mut tx, super::shared::Serial::Seq).await?;
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
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        let deleted =
            sqlx::query("DELETE FROM subscriptions WHERE subscription_id = $1").bind(id.0).execute(&mut *tx).await?;
        cancel_pending(&mut tx, id, "subscription deleted").await?;
        tx.commit().await?;
        Ok(deleted.rows_affected() > 0)
    }

    async fn cursor(&self, name: &str) -> Result<Cursor, Error> {
        let found: Option<(i64, i64)> = sqlx::query_as("SELECT seq, epoch FROM cursors WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        Ok(found.map_or_else(Cursor::default, |(seq, epoch)| Cursor { seq, epoch }))
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: Vec<NewDelivery>,
        cursor: Option<CursorMove<'_>>,
    ) -> Result<bool, Error> {
        let now = Timestamp::now().as_micros();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // The cursor first: when it has moved, nothing is written. The row lock it takes makes a second
        // instance moving it from the same place wait, then find it moved.
        if let Some(CursorMove { name, from, to }) = cursor {
            let moved = sqlx::query(
                "INSERT INTO cursors (name, seq, epoch) VALUES ($1, $2, 0) ON CONFLICT (name) DO UPDATE \
                 SET seq = excluded.seq WHERE cursors.seq = $3 AND cursors.epoch = $4",
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
                tx.rollback().await?;
                return Ok(false);
            }
        }
        for chunk in deliveries.chunks(ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Postgres>::new(
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
        let released = sqlx::query(
            "UPDATE deliveries SET state = 'pending', claimed_until = NULL, claimed_by = NULL \
             WHERE state = 'in_flight' AND claimed_by = $1",
        )
        .bind(&self.instance_id)
        .execute(&self.pool)
        .await?;
        Ok(released.rows_affected())
    }

    async fn claim_deliveries(
        &self,
        now: Timestamp,
        lease_until: Timestamp,
        wants: &[(SubscriptionId, u32)],
    ) -> Result<Vec<ClaimedDelivery>, Error> {
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // Claims whose instance died are due again; rows another instance is settling are left to it.
        sqlx::query(
            "UPDATE deliveries SET state = 'pending', claimed_until = NULL, claimed_by = NULL WHERE delivery_id IN \
             (SELECT delivery_id FROM deliveries WHERE state = 'in_flight' AND claimed_until < $1 \
              FOR UPDATE SKIP LOCKED)",
        )
        .bind(now.as_micros())
        .execute(&mut *tx)
        .await?;
        let sql = format!(
            "UPDATE deliveries SET state = 'in_flight', claimed_until = $1, claimed_by = $2, updated_at = $3 \
             WHERE delivery_id IN (SELECT delivery_id FROM deliveries WHERE subscription_id = $4 \
             AND state = 'pending' AND next_attempt_at <= $3 ORDER BY next_attempt_at LIMIT $5 \
             FOR UPDATE SKIP LOCKED) RETURNING {CLAIM_COLUMNS}"
        );
        let mut claimed = Vec::new();
        for &(subscription, limit) in wants.iter().filter(|(_, limit)| *limit > 0) {
            let rows = sqlx::query(&sql)
                .bind(lease_until.as_micros())
                .bind(&self.instance_id)
                .bind(now.as_micros())
                .bind(subscription.0)
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
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;

        // The subscriptions this batch leaves retries pending for or disables are locked first, in id
        // order, before any delivery row (the order update_subscription and delete_subscription take
        // them in). So one disabled or deleted meanwhile is seen here as such, and its retries are
        // cancelled below; or the change waits for this batch and cancels them as pending itself.
        let (retrying, gone) = settle::retrying_and_gone(&results);
        let enabled: HashSet<uuid::Uuid> = if retrying.is_empty() && gone.is_empty() {
            HashSet::new()
        } else {
            let touched: BTreeSet<uuid::Uuid> = retrying.iter().chain(&gone).map(|id| id.0).collect();
            sqlx::query_scalar(
                "SELECT subscription_id FROM subscriptions WHERE subscription_id = ANY($1) AND enabled \
                 ORDER BY subscription_id FOR NO KEY UPDATE",
            )
            .bind(touched.into_iter().collect::<Vec<_>>())
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .collect()
        };

        let attempts: Vec<&DeliveryAttempt> = results.iter().filter_map(|r| r.attempt.as_ref()).collect();
        for chunk in attempts.chunks(ROWS_PER_INSERT) {
            let mut insert =
                QueryBuilder::<Postgres>::new(format!("INSERT INTO delivery_attempts ({ATTEMPT_COLUMNS}) "));
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
            // An attempt recorded twice (a retried commit) is the same attempt.
            insert.push(" ON CONFLICT (delivery_id, attempt) DO NOTHING");
            insert.build().execute(&mut *tx).await?;
        }

        // Every row in one statement, a column an array, not a statement (and a round trip) each:
        // the rows whose claim is still this instance's are settled and returned. Rows are locked in
        // delivery_id order, the same in every instance.
        let settled: Vec<_> = results.iter().map(|result| result.settle(now)).collect();
        let mut order: Vec<usize> = (0..results.len()).collect();
        order.sort_by_key(|&i| results[i].claimed.delivery_id.0);
        fn column<T>(order: &[usize], f: impl Fn(usize) -> T) -> Vec<T> {
            order.iter().map(|&i| f(i)).collect()
        }
        let mut still_ours: HashSet<uuid::Uuid> = sqlx::query_scalar(
            "UPDATE deliveries d SET state = s.state, attempts = d.attempts + s.sent, \
             round_attempts = d.round_attempts + s.sent, next_attempt_at = s.next_attempt_at, claimed_until = NULL, \
             claimed_by = NULL, last_status_code = s.last_status_code, last_error = s.last_error, \
             first_failed_at = s.first_failed_at, updated_at = $8 \
             FROM unnest($1::uuid[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::text[], $7::bigint[]) \
             AS s (delivery_id, state, sent, next_attempt_at, last_status_code, last_error, first_failed_at) \
             WHERE d.delivery_id = s.delivery_id AND d.state = 'in_flight' AND d.claimed_by = $9 \
             RETURNING d.delivery_id",
        )
        .bind(column(&order, |i| results[i].claimed.delivery_id.0))
        .bind(column(&order, |i| settled[i].state))
        .bind(column(&order, |i| settled[i].sent))
        .bind(column(&order, |i| settled[i].next_attempt_at.as_micros()))
        .bind(column(&order, |i| settled[i].last_status))
        .bind(column(&order, |i| settled[i].last_error.as_deref()))
        .bind(column(&order, |i| settled[i].first_failed_at.map(Timestamp::as_micros)))
        .bind(now.as_micros())
        .bind(&self.instance_id)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();

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
                    sqlx::query(
                        "UPDATE subscriptions SET enabled = false, disabled_reason = $1, updated_at = $2 \
                         WHERE subscription_id = $3",
                    )
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
        for id in retrying.into_iter().filter(|id| !enabled.contains(&id.0)) {
            cancel_pending(&mut tx, id, "subscription disabled or deleted").await?;
        }

        let retries = attempts.iter().filter(|a| a.attempt > 1).count() as i64;
        let counts =
            [("attempts", attempts.len() as i64), ("retries", retries), ("delivered", delivered), ("dead", dead)];
        self.add_counts(&mut tx, counts.into_iter().map(|(key, n)| ("delivery", key.to_owned(), n)).collect()).await?;
        tx.commit().await?;
        Ok(dead_letters)
    }

    async fn delivery_attempts(&self, event_id: EventId) -> Result<Vec<DeliveryAttempt>, Error> {
        let sql = format!(
            "SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE event_id = $1 ORDER BY attempted_at, attempt"
        );
        sqlx::query(&sql).bind(event_id.0).fetch_all(&self.pool).await?.iter().map(rows::attempt).collect()
    }

    async fn dead_letters(&self, query: &DlqQuery) -> Result<(Vec<DeadLetter>, u64), Error> {
        let push_filter = |sql: &mut QueryBuilder<'_, Postgres>| {
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
        // The page and its total from one snapshot, so they agree.
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let mut select = QueryBuilder::new(format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE true"));
        push_filter(&mut select);
        select
            .push(" ORDER BY created_at DESC, dlq_id DESC LIMIT ")
            .push_bind(i64::from(query.limit))
            .push(" OFFSET ")
            .push_bind(i64::try_from(query.offset).unwrap_or(i64::MAX));
        let entries =
            select.build().fetch_all(&mut *tx).await?.iter().map(rows::dead_letter).collect::<Result<_, _>>()?;
        let mut count = QueryBuilder::new("SELECT count(*) FROM dead_letters WHERE true");
        push_filter(&mut count);
        let total: i64 = count.build_query_scalar().fetch_one(&mut *tx).await?;
        tx.commit().await?;
        Ok((entries, total as u64))
    }

    async fn dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error> {
        let sql = format!("SELECT {DLQ_COLUMNS} FROM dead_letters WHERE dlq_id = $1");
        let Some(row) = sqlx::query(&sql).bind(id.0).fetch_optional(&self.pool).await? else {
            return Ok(None);
        };
        let mut entry = rows::dead_letter(&row)?;
        let history = match entry.delivery_id {
            Some(delivery_id) => {
                let sql =
                    format!("SELECT {ATTEMPT_COLUMNS} FROM delivery_attempts WHERE delivery_id = $1 ORDER BY attempt");
                let rows = sqlx::query(&sql).bind(delivery_id.0).fetch_all(&self.pool).await?;
                AttemptHistory::Delivery(rows.iter().map(rows::attempt).collect::<Result<_, _>>()?)
            }
            None => {
                let results = results_of(&self.pool, entry.event_id).await?;
                AttemptHistory::Processing(results.into_iter().filter(|r| r.replay_id.is_none()).collect())
            }
        };
        entry.attempt_history = Some(history);
        Ok(Some(entry))
    }

    async fn retry_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error> {
        if matches!(selector, DlqSelector::Ids(ids) if ids.is_empty()) {
            return Ok(Vec::new());
        }
        let now = Timestamp::now().as_micros();
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        // Deleted and returned in one statement: two instances retrying at once never both take an entry.
        let mut delete = QueryBuilder::<Postgres>::new("DELETE FROM dead_letters WHERE ");
        push_selector(&mut delete, selector);
        delete.push(format!(" RETURNING {DLQ_COLUMNS}"));
        let mut entries: Vec<DeadLetter> =
            delete.build().fetch_all(&mut *tx).await?.iter().map(rows::dead_letter).collect::<Result<_, _>>()?;
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.dlq_id.0.cmp(&a.dlq_id.0)));

        // A processing entry's event goes back to pending with a fresh retry budget.
        let events: Vec<uuid::Uuid> =
            entries.iter().filter(|e| e.kind == DeadLetterKind::Processing).map(|e| e.event_id.0).collect();
        if !events.is_empty() {
            let moved = sqlx::query(
                "UPDATE events SET status = 'pending', retry_count = 0, due_at = 0, processed_at = NULL \
                 WHERE status = 'failed' AND event_id = ANY($1)",
            )
            .bind(events)
            .execute(&mut *tx)
            .await?
            .rows_affected() as i64;
            self.bump_status(&mut tx, &[(EventStatus::Failed, -moved), (EventStatus::Pending, moved)]).await?;
        }
        let deliveries: Vec<uuid::Uuid> =
            entries.iter().filter_map(|e| e.delivery_id).map(|id: DeliveryId| id.0).collect();
        if !deliveries.is_empty() {
            sqlx::query(
                "UPDATE deliveries SET state = 'pending', round_attempts = 0, first_failed_at = NULL, \
                 claimed_until = NULL, claimed_by = NULL, next_attempt_at = $1, updated_at = $1 \
                 WHERE delivery_id = ANY($2)",
            )
            .bind(now)
            .bind(deliveries)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(entries)
    }

    async fn discard_dead_letters(&self, selector: &DlqSelector) -> Result<Vec<DeadLetter>, Error> {
        if matches!(selector, DlqSelector::Ids(ids) if ids.is_empty()) {
            return Ok(Vec::new());
        }
        let mut delete = QueryBuilder::<Postgres>::new("DELETE FROM dead_letters WHERE ");
        push_selector(&mut delete, selector);
        delete.push(format!(" RETURNING {DLQ_COLUMNS}"));
        let mut entries: Vec<DeadLetter> =
            delete.build().fetch_all(&self.pool).await?.iter().map(rows::dead_letter).collect::<Result<_, _>>()?;
        entries.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.dlq_id.0.cmp(&a.dlq_id.0)));
        Ok(entries)
    }

    async fn dead_letter_groups(&self, query: &DlqGroupQuery) -> Result<DlqGroups, Error> {
        let push_kind = |sql: &mut QueryBuilder<'_, Postgres>| {
            if let Some(kind) = query.kind {
                sql.push(" WHERE kind = ").push_bind(kind.as_str());
            }
        };
        // One snapshot: the groups and their histograms see the same queue.
        let mut conn = self.pool.acquire().await?;
        let mut tx = conn.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY").execute(&mut *tx).await?;
        let mut first = QueryBuilder::<Postgres>::new("SELECT min(last_failed_at) FROM dead_letters");
        push_kind(&mut first);
        let axis = GroupAxis::new(query, first.build_query_scalar().fetch_one(&mut *tx).await?);

        let mut select = QueryBuilder::<Postgres>::new(format!(
            "SELECT {GROUP_KEY}, count(*) AS n, min(first_failed_at) AS first_failed_at, \
             max(last_failed_at) AS last_failed_at FROM dead_letters"
        ));
        push_kind(&mut select);
        select.push(" GROUP BY 1, 2, 3, 4, 5 ORDER BY n DESC, last_failed_at DESC");
        let groups = select.build().fetch_all(&mut *tx).await?;
        let mut histogram = QueryBuilder::<Postgres>::new(format!("SELECT {GROUP_KEY}, LEAST("));
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

    async fn discard_dead_letter(&self, id: DlqId) -> Result<Option<DeadLetter>, Error> {
        let sql = format!("DELETE FROM dead_letters WHERE dlq_id = $1 RETURNING {DLQ_COLUMNS}");
        let row = sqlx::query(&sql).bind(id.0).fetch_optional(&self.pool).await?;
        row.as_ref().map(rows::dead_letter).transpose()
    }
}

async fn save_subscription(conn: &mut PgConnection, s: &Subscription) -> Result<(), Error> {
    let sql = format!(
        "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
         ON CONFLICT (subscription_id) DO UPDATE SET subscriber_name = excluded.subscriber_name, \
         subscriber_type = excluded.subscriber_type, event_types = excluded.event_types, \
         event_sources = excluded.event_sources, event_categories = excluded.event_categories, \
         callback_url = excluded.callback_url, secret = excluded.secret, retry_policy = excluded.retry_policy, \
         enabled = excluded.enabled, disabled_reason = excluded.disabled_reason, start_seq = excluded.start_seq, \
         created_at = excluded.created_at, updated_at = excluded.updated_at"
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
async fn next_epoch(conn: &mut PgConnection) -> Result<(), Error> {
    sqlx::query(
        "INSERT INTO cursors (name, seq, epoch) VALUES ($1, 0, 1) \
         ON CONFLICT (name) DO UPDATE SET epoch = cursors.epoch + 1",
    )
    .bind(DELIVERY_CURSOR)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn cancel_pending(conn: &mut PgConnection, id: SubscriptionId, why: &str) -> Result<(), Error> {
    sqlx::query(
        "UPDATE deliveries SET state = 'cancelled', last_error = $1, updated_at = $2 \
         WHERE subscription_id = $3 AND state = 'pending'",
    )
    .bind(format!("cancelled: {why}"))
    .bind(Timestamp::now().as_micros())
    .bind(id.0)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The error text a class is taken from: a processing error without its leading `processor: `.
macro_rules! cause_sql {
    () => {
        "(CASE WHEN kind = 'processing' AND strpos(coalesce(last_error, ''), ': ') > 0 \
         THEN substr(last_error, strpos(last_error, ': ') + 2) ELSE coalesce(last_error, '') END)"
    };
}

/// [`crate::domain::delivery::error_class`] in SQL.
macro_rules! error_class_sql {
    () => {
        concat!(
            "CASE WHEN last_status_code IS NULL THEN substr(",
            cause_sql!(),
            ", 1, CASE WHEN strpos(",
            cause_sql!(),
            ", ':') > 0 THEN LEAST(strpos(",
            cause_sql!(),
            ", ':') - 1, 60) ELSE 60 END) END"
        )
    };
}

/// The columns of a group's key, in [`crate::domain::delivery::DlqGroupKey`] order.
const GROUP_KEY: &str =
    concat!("kind, subscription_id, processor_id, last_status_code, ", error_class_sql!(), " AS error_class");

/// The condition a selector puts on dead letters.
fn push_selector(sql: &mut QueryBuilder<'_, Postgres>, selector: &DlqSelector) {
    match selector {
        DlqSelector::All => {
            sql.push("true");
        }
        DlqSelector::Subscription(id) => {
            sql.push("subscription_id = ").push_bind(id.0);
        }
        DlqSelector::Ids(ids) => {
            sql.push("dlq_id = ANY(").push_bind(ids.iter().map(|id| id.0).collect::<Vec<_>>()).push(")");
        }
        DlqSelector::Group(key) => {
            sql.push("kind = ")
                .push_bind(key.kind.as_str())
                .push(" AND subscription_id IS NOT DISTINCT FROM ")
                .push_bind(key.subscription_id.map(|id| id.0))
                .push(" AND processor_id IS NOT DISTINCT FROM ")
                .push_bind(key.processor_id.map(|id| id.0))
                .push(" AND last_status_code IS NOT DISTINCT FROM ")
                .push_bind(key.last_status_code.map(i64::from))
                .push(concat!(" AND (", error_class_sql!(), ") IS NOT DISTINCT FROM "))
                .push_bind(key.error_class.clone());
        }
    }
}
