ALTER TABLE customers ADD COLUMN birthday date;
