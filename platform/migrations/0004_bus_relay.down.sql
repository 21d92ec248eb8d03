DROP TABLE bus_relay;
