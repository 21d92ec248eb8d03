-- Payments a person must look at (ADR 0021): reconciliation gave up on settling one, or the
-- gateway refused to release or give back money. `attention` says why (a code and the
-- gateway's words); an admin's acknowledgement clears it and stays on record.
ALTER TABLE payments
    ADD COLUMN attention       text,
    ADD COLUMN attention_since timestamptz,
    ADD COLUMN acknowledged_at timestamptz,
    ADD COLUMN acknowledged_by text,
    ADD COLUMN acknowledgement text;
CREATE INDEX payments_attention_idx ON payments (attention_since) WHERE attention IS NOT NULL;
