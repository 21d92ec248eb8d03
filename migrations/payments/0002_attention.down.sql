DROP INDEX payments_attention_idx;
ALTER TABLE payments
    DROP COLUMN attention,
    DROP COLUMN attention_since,
    DROP COLUMN acknowledged_at,
    DROP COLUMN acknowledged_by,
    DROP COLUMN acknowledgement;
