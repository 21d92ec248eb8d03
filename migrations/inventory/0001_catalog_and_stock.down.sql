DROP TABLE reservation_lines;
DROP TABLE reservations;
DROP TABLE stock_movements;
DROP TABLE products;
