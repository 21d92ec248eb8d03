DROP TABLE payments_sandbox.control;
DROP TABLE payments_sandbox.webhooks;
DROP TABLE payments_sandbox.requests;
DROP TABLE payments_sandbox.charges;
