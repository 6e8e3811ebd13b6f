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

-- The same four triggers on both tables: <table>_notify_insert, _update, _delete, _truncate.
DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['products', 'customers'] LOOP
        EXECUTE format(
            'CREATE TRIGGER %I AFTER INSERT ON %I REFERENCING NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes()',
            t || '_notify_insert', t);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER UPDATE ON %I
                 REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes()',
            t || '_notify_update', t);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER DELETE ON %I REFERENCING OLD TABLE AS old_rows
                 FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes()',
            t || '_notify_delete', t);
        EXECUTE format(
            'CREATE TRIGGER %I AFTER TRUNCATE ON %I
                 FOR EACH STATEMENT EXECUTE FUNCTION catalog_notify_changes()',
            t || '_notify_truncate', t);
    END LOOP;
END;
$$;
