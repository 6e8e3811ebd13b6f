-- Every committed change to products or customers is announced on channel `catalog_changes`,
-- for the Catalog replicas that serve from memory. Payload: `<table>:<ids>`, the table
-- (`products` or `customers`) and the changed ids, comma-separated, ascending, at most 500 per
-- notification (so a payload stays far under PostgreSQL's 8000 bytes); or `<table>:*` when
-- the whole table must be read again (TRUNCATE).
--
-- Statement-level triggers with transition tables: one notification per 500 rows changed,
-- however many rows a statement touches. An UPDATE sends the ids before and after it, so a
-- changed id is seen both ways (the old one is gone, the new one is there).

CREATE FUNCTION catalog_notify_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    changed_ids text;
    payload text;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        PERFORM pg_notify('catalog_changes', TG_TABLE_NAME || ':*');
        RETURN NULL;
    END IF;
    -- Only the transition tables this trigger declares exist, hence the query text per event.
    changed_ids := CASE TG_OP
        WHEN 'INSERT' THEN 'SELECT id FROM new_rows'
        WHEN 'DELETE' THEN 'SELECT id FROM old_rows'
        ELSE 'SELECT id FROM old_rows UNION SELECT id FROM new_rows'
    END;
    FOR payload IN EXECUTE format(
        'SELECT %L || string_agg(id::text, '','' ORDER BY id)
           FROM (SELECT id, (row_number() OVER (ORDER BY id) - 1) / 500 AS chunk
                   FROM (%s) AS changed) AS numbered
          GROUP BY chunk
          ORDER BY chunk',
        TG_TABLE_NAME || ':', changed_ids)
    LOOP
        PERFORM pg_notify('catalog_changes', payload);
    END LOOP;
    RETURN NULL;
END;
$$;

CREATE TRIGGER products_notify_insert AFTER INSERT ON products
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER products_notify_update AFTER UPDATE ON products
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER products_notify_delete AFTER DELETE ON products
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER products_notify_truncate AFTER TRUNCATE ON products
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();

CREATE TRIGGER customers_notify_insert AFTER INSERT ON customers
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER customers_notify_update AFTER UPDATE ON customers
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER customers_notify_delete AFTER DELETE ON customers
    REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
CREATE TRIGGER customers_notify_truncate AFTER TRUNCATE ON customers
    FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes();
