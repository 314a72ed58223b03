-- The dispatcher claims each subscription's due deliveries on their own (so one slow endpoint never
-- holds back another's): one index serves that claim, the cancelling of a subscription's pending
-- deliveries, and nothing else.
DROP INDEX deliveries_due;
DROP INDEX deliveries_pending_by_subscription;
CREATE INDEX deliveries_pending ON deliveries (subscription_id, next_attempt_at) WHERE state = 'pending';
