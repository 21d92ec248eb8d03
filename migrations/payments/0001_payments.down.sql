DROP TABLE webhook_events;
DROP TRIGGER ledger_entries_not_truncated ON ledger_entries;
DROP TRIGGER ledger_entries_immutable ON ledger_entries;
DROP TABLE ledger_entries;
DROP FUNCTION ledger_entries_are_immutable();
DROP TABLE refunds;
DROP TABLE payments;
