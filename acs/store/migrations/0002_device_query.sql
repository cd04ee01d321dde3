-- Indexes for device listing (acs/store/device_query.py).
--
-- Keyset paging orders by (sort column, id) and resumes with a row
-- comparison (col, id) > ($key, $id). A composite (col, id) index serves both
-- the order and the resume point; a single-column index leaves every page
-- to sort all rows sharing the column's value by id, and product classes and
-- software versions are shared by hundreds of thousands of devices.
--
-- The composites replace the single-column indexes of 0001 whose leading
-- column they are: they serve the same filters (=, <, >, IS NULL), and
-- every Inform moves last_inform, so each devices
-- update is non-HOT and writes one entry in *every* index: an index kept
-- twice would cost on every session.
-- last_inform keeps its single-column index: timestamps rarely tie, and
-- PostgreSQL uses a single-column index for the leading part of the row
-- comparison.

CREATE INDEX devices_product_class_id_idx ON devices (product_class, id);
CREATE INDEX devices_software_version_id_idx ON devices (software_version, id);
CREATE INDEX devices_serial_number_id_idx ON devices (serial_number, id);
DROP INDEX devices_product_class_idx;
DROP INDEX devices_software_version_idx;
