-- Each device's inventory as one JSON text beside its attribute rows: one
-- [name, value_json, description, ts] per inventory-scope attribute, rewritten in the same
-- transaction as those rows (put_inventory, clear_inventory). Plans and dealing over a large
-- fleet read one row per device instead of an index walk per attribute.
ALTER TABLE devices ADD COLUMN inventory_json TEXT NOT NULL DEFAULT '[]';
UPDATE devices SET inventory_json = (
    SELECT json_group_array(json_array(a.name, a.value_json, a.description, a.ts))
    FROM attributes a WHERE a.device_id = devices.id AND a.scope = 'inventory'
);
