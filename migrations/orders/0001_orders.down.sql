DROP TABLE order_timeline;
DROP TABLE order_payments;
DROP TABLE order_lines;
DROP TABLE orders;
