-- Deterministic demo data: fixed ids, and every "random" choice derived from
-- md5 of the row number, so two loads produce identical rows (tests and docs can
-- quote counts). Dates are fixed too: two years ending 2026-11-16.
-- Runs as the migrating owner, so RLS does not apply and org_id/created_by are
-- given explicitly (their defaults read the caller's JWT, which is empty here).

INSERT INTO public.organizations (id, name, created_at) VALUES
  ('a0000000-0000-4000-8000-000000000001', 'Acme',   '2024-09-02 09:00:00+00'),
  ('b0000000-0000-4000-8000-000000000002', 'Globex', '2024-10-07 09:00:00+00')
ON CONFLICT (id) DO NOTHING;

-- The ids are the JWT sub claims in migrations/demo/demo_users.json.
INSERT INTO public.users (id, org_id, name, email, org_role, created_at) VALUES
  ('00000000-0000-4000-a000-00000000a11c', 'a0000000-0000-4000-8000-000000000001',
   'Alice Anderson', 'alice@acme.example',   'admin',  '2024-09-02 09:05:00+00'),
  ('00000000-0000-4000-a000-000000000b0b', 'a0000000-0000-4000-8000-000000000001',
   'Bob Brown',      'bob@acme.example',     'member', '2024-09-03 10:00:00+00'),
  ('00000000-0000-4000-a000-00000000ca01', 'b0000000-0000-4000-8000-000000000002',
   'Carol Chen',     'carol@globex.example', 'admin',  '2024-10-07 09:05:00+00'),
  ('00000000-0000-4000-a000-00000000da0e', 'b0000000-0000-4000-8000-000000000002',
   'Dave Diaz',      'dave@globex.example',  'member', '2024-10-08 10:00:00+00')
ON CONFLICT (id) DO NOTHING;

-- 40 customers per org: 20 names x 4 legal forms, the first 40 combinations for
-- Acme, the next 40 for Globex. Some lack email/phone/notes, as real data does.
INSERT INTO public.customers (org_id, name, email, phone, notes, created_at)
SELECT CASE WHEN i < 40 THEN 'a0000000-0000-4000-8000-000000000001'::uuid
            ELSE 'b0000000-0000-4000-8000-000000000002'::uuid END,
       w.word || ' ' || w.form,
       CASE WHEN i % 7 <> 3 THEN 'billing@' || lower(regexp_replace(w.word, '[^A-Za-z]', '', 'g'))
                                 || '-' || lower(regexp_replace(w.form, '[^A-Za-z]', '', 'g')) || '.example' END,
       -- 555-01xx numbers are reserved for fiction.
       CASE WHEN i % 5 <> 2 THEN '+1-202-555-01' || lpad((i % 100)::text, 2, '0') END,
       (ARRAY[NULL, 'Prefers invoices by email.', 'Key account, quarterly review.', NULL,
              'Net 45 payment terms agreed.', 'Ships to two warehouses.', NULL,
              'Contact via procurement portal only.'])[i % 8 + 1],
       timestamptz '2024-09-15 12:00:00+00' + i * interval '3 days'
FROM generate_series(0, 79) AS i
CROSS JOIN LATERAL (
  SELECT (ARRAY['Northwind', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Hooli', 'Vandelay',
                'Soylent', 'Tyrell', 'Cyberdyne', 'Wonka', 'Oscorp', 'Dunder', 'Pied Piper',
                'Aperture', 'Black Mesa', 'Monarch', 'Nakatomi', 'Gringotts', 'Sirius'])[i % 20 + 1] AS word,
         (ARRAY['Ltd', 'GmbH', 'Inc', '& Sons'])[i / 20 + 1] AS form
) AS w
WHERE NOT EXISTS (SELECT FROM public.customers)
ORDER BY i;

-- 30,000 orders, one every ~35 minutes over two years, interleaved between the
-- orgs (~54% Acme). Members create ~60% of their org's orders, admins the rest.
-- Recent orders are still draft/open; old ones are mostly shipped.
WITH h AS (
  SELECT g,
         md5('rowgate-demo-order-a-' || g) AS m1,
         md5('rowgate-demo-order-b-' || g) AS m2
  FROM generate_series(1, 30000) AS g
), r AS (
  SELECT g,
         ('x' || substr(m1,  1, 7))::bit(28)::int AS r_org,
         ('x' || substr(m1,  8, 7))::bit(28)::int AS r_time,
         ('x' || substr(m1, 15, 7))::bit(28)::int AS r_user,
         ('x' || substr(m1, 22, 7))::bit(28)::int AS r_cust,
         ('x' || substr(m2,  1, 7))::bit(28)::int AS r_status,
         ('x' || substr(m2,  8, 7))::bit(28)::int AS r_total,
         ('x' || substr(m2, 15, 7))::bit(28)::int AS r_margin,
         ('x' || substr(m2, 22, 7))::bit(28)::int AS r_note
  FROM h
), o AS (
  SELECT r.*,
         r_org % 100 < 54 AS is_acme,
         timestamptz '2024-11-16 00:00:00+00'
           + (g - 1) * (interval '730 days' / 30000)
           + (r_time % 1800) * interval '1 second' AS created_at
  FROM r
), c AS (
  SELECT id, org_id, row_number() OVER (PARTITION BY org_id ORDER BY id) - 1 AS n
  FROM public.customers
)
INSERT INTO public.orders (org_id, customer_id, created_by, status, total, created_at, note, internal_margin)
SELECT org.id,
       c.id,
       CASE WHEN o.r_user % 10 < 6
            THEN CASE WHEN o.is_acme THEN '00000000-0000-4000-a000-000000000b0b'::uuid
                      ELSE '00000000-0000-4000-a000-00000000da0e'::uuid END
            ELSE CASE WHEN o.is_acme THEN '00000000-0000-4000-a000-00000000a11c'::uuid
                      ELSE '00000000-0000-4000-a000-00000000ca01'::uuid END
       END,
       st.status,
       (5 + (o.r_total % 250000) / 100.0)::numeric(12,2),
       o.created_at,
       CASE WHEN o.r_note % 100 < 35 THEN
         (ARRAY['Rush delivery requested.', 'Customer asked for split shipment.',
                'Repeat order, same as last quarter.', 'Discount approved by sales lead.',
                'Deliver to loading dock B.', 'Call before delivery.',
                'Gift wrap, include no prices.', 'Pending PO number from customer.'])[o.r_note % 8 + 1]
       END,
       CASE WHEN st.status <> 'draft' THEN (8 + (o.r_margin % 3200) / 100.0)::numeric(5,2) END
FROM o
CROSS JOIN LATERAL (
  SELECT CASE WHEN o.is_acme THEN 'a0000000-0000-4000-8000-000000000001'::uuid
              ELSE 'b0000000-0000-4000-8000-000000000002'::uuid END AS id
) AS org
-- Squaring skews business towards a few big customers.
JOIN c ON c.org_id = org.id AND c.n = floor(power((o.r_cust % 1000) / 1000.0, 2) * 40)
CROSS JOIN LATERAL (
  SELECT CASE
    WHEN o.created_at > timestamptz '2026-11-16 00:00:00+00' - interval '14 days' THEN
      CASE WHEN o.r_status % 100 < 25 THEN 'draft' WHEN o.r_status % 100 < 70 THEN 'open'
           WHEN o.r_status % 100 < 85 THEN 'paid' WHEN o.r_status % 100 < 90 THEN 'shipped'
           ELSE 'cancelled' END
    WHEN o.created_at > timestamptz '2026-11-16 00:00:00+00' - interval '60 days' THEN
      CASE WHEN o.r_status % 100 < 3 THEN 'draft' WHEN o.r_status % 100 < 18 THEN 'open'
           WHEN o.r_status % 100 < 50 THEN 'paid' WHEN o.r_status % 100 < 92 THEN 'shipped'
           ELSE 'cancelled' END
    ELSE
      CASE WHEN o.r_status % 100 < 25 THEN 'paid' WHEN o.r_status % 100 < 92 THEN 'shipped'
           ELSE 'cancelled' END
  END AS status
) AS st
WHERE NOT EXISTS (SELECT FROM public.orders)
ORDER BY o.g;

-- One invoice per paid or shipped order, issued the next day on net-30 terms.
-- Shipped orders from the last 45 days are not paid yet.
INSERT INTO public.invoices (org_id, order_id, amount, status, issued_at, due_at)
SELECT o.org_id,
       o.id,
       o.total,
       CASE WHEN o.status = 'shipped'
                 AND o.created_at > timestamptz '2026-11-16 00:00:00+00' - interval '45 days'
            THEN 'issued' ELSE 'paid' END,
       o.created_at + interval '1 day',
       o.created_at + interval '31 days'
FROM public.orders AS o
WHERE o.status IN ('paid', 'shipped')
  AND NOT EXISTS (SELECT FROM public.invoices)
ORDER BY o.id;

-- Fresh statistics so the first demo queries get sensible plans.
ANALYZE public.organizations, public.users, public.customers, public.orders, public.invoices;
