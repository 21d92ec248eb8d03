DROP TABLE delivery_attempts;
DROP TABLE notifications;
DROP TABLE webhook_endpoints;
DROP TABLE order_owners;
