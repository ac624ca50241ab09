-- Demo business schema: a tiny multi-tenant order book. Everything an agent may
-- see or change is decided by the grants below and by the RLS policies in
-- rls_policies/public.*.sql, never by rowgate itself.

-- Admins get their own database role so that column grants (not just row
-- policies) can differ between admins and members.
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'org_admin') THEN
    CREATE ROLE org_admin NOLOGIN NOINHERIT;
  END IF;
END
$$;
GRANT org_admin TO authenticator;

CREATE SCHEMA IF NOT EXISTS app;
-- Helpers are reached only through policies and column defaults.
REVOKE ALL ON SCHEMA app FROM PUBLIC;
GRANT USAGE ON SCHEMA app TO authenticated, org_admin, service_role;

GRANT USAGE ON SCHEMA public TO authenticated, org_admin, service_role;

-- Lets admins call auth.uid()/auth.jwt() in their own queries, as members can.
-- Guarded: on Supabase the auth schema belongs to supabase_auth_admin and the
-- migrating role may lack the grant option. Nothing below depends on it: the
-- policies and defaults go through the app.* helpers instead.
DO $$
BEGIN
  GRANT USAGE ON SCHEMA auth TO org_admin;
EXCEPTION WHEN insufficient_privilege THEN
  RAISE NOTICE 'could not grant USAGE on schema auth to org_admin; continuing';
END
$$;

-- ---------------------------------------------------------------------------
-- Tables
-- ---------------------------------------------------------------------------

CREATE TABLE IF NOT EXISTS public.organizations (
  id         uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
  name       text        NOT NULL UNIQUE CHECK (length(btrim(name)) > 0),
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.organizations IS 'Customer companies (tenants) of the app; every other row belongs to exactly one.';
COMMENT ON COLUMN public.organizations.id IS 'Organization id.';
COMMENT ON COLUMN public.organizations.name IS 'Display name of the organization, unique.';
COMMENT ON COLUMN public.organizations.created_at IS 'When the organization signed up.';

CREATE TABLE IF NOT EXISTS public.users (
  id         uuid        PRIMARY KEY,
  org_id     uuid        NOT NULL REFERENCES public.organizations (id) ON DELETE RESTRICT,
  name       text        NOT NULL CHECK (length(btrim(name)) > 0),
  email      text        NOT NULL UNIQUE CHECK (position('@' IN email) > 1),
  org_role   text        NOT NULL DEFAULT 'member' CHECK (org_role IN ('admin', 'member')),
  created_at timestamptz NOT NULL DEFAULT now(),
  -- Target of the composite foreign keys that keep created_by in the same org.
  UNIQUE (org_id, id)
);
COMMENT ON TABLE public.users IS 'People who log in to the app; id is the sub claim of their JWT.';
COMMENT ON COLUMN public.users.id IS 'User id, equal to the JWT sub claim (auth.uid()).';
COMMENT ON COLUMN public.users.org_id IS 'Organization the user belongs to.';
COMMENT ON COLUMN public.users.name IS 'Full name.';
COMMENT ON COLUMN public.users.email IS 'Login email address, unique.';
COMMENT ON COLUMN public.users.org_role IS 'Role inside the organization: admin or member.';
COMMENT ON COLUMN public.users.created_at IS 'When the user was added.';

-- ---------------------------------------------------------------------------
-- Helpers for policies and defaults. SECURITY DEFINER so they read public.users
-- as its owner, bypassing RLS: a policy on users that queried users as the caller
-- would recurse. search_path is empty so a caller cannot shadow anything.
-- ---------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION app.current_user_id() RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$ SELECT auth.uid() $$;
COMMENT ON FUNCTION app.current_user_id() IS 'The caller''s user id (JWT sub), callable without USAGE on schema auth.';

CREATE OR REPLACE FUNCTION app.current_org_id() RETURNS uuid
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$ SELECT u.org_id FROM public.users AS u WHERE u.id = auth.uid() $$;
COMMENT ON FUNCTION app.current_org_id() IS 'Organization of the calling user; NULL for unknown users, who then see nothing.';

CREATE OR REPLACE FUNCTION app.is_org_admin() RETURNS boolean
  LANGUAGE sql STABLE SECURITY DEFINER
  SET search_path = ''
  AS $$ SELECT coalesce((SELECT u.org_role = 'admin' FROM public.users AS u WHERE u.id = auth.uid()), false) $$;
COMMENT ON FUNCTION app.is_org_admin() IS 'Whether the calling user is an admin of their organization (a second check besides the org_admin database role).';

-- Functions are executable by PUBLIC by default (and, via Supabase's default
-- privileges, by anon too).
REVOKE ALL ON FUNCTION app.current_user_id(), app.current_org_id(), app.is_org_admin()
  FROM PUBLIC, anon;
GRANT EXECUTE ON FUNCTION app.current_user_id(), app.current_org_id(), app.is_org_admin()
  TO authenticated, org_admin, service_role;

-- Only now that the helper exists: new users land in the admin's own org.
ALTER TABLE public.users ALTER COLUMN org_id SET DEFAULT app.current_org_id();

CREATE TABLE IF NOT EXISTS public.customers (
  id         bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org_id     uuid        NOT NULL DEFAULT app.current_org_id()
                         REFERENCES public.organizations (id) ON DELETE RESTRICT,
  name       text        NOT NULL CHECK (length(btrim(name)) > 0),
  email      text        CHECK (email IS NULL OR position('@' IN email) > 1),
  phone      text,
  notes      text,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (org_id, id)
);
COMMENT ON TABLE public.customers IS 'Companies or people an organization sells to.';
COMMENT ON COLUMN public.customers.id IS 'Customer id.';
COMMENT ON COLUMN public.customers.org_id IS 'Owning organization; defaults to the caller''s.';
COMMENT ON COLUMN public.customers.name IS 'Customer name.';
COMMENT ON COLUMN public.customers.email IS 'Contact email (personal data: admins only).';
COMMENT ON COLUMN public.customers.phone IS 'Contact phone number (personal data: admins only).';
COMMENT ON COLUMN public.customers.notes IS 'Free-form account notes.';
COMMENT ON COLUMN public.customers.created_at IS 'When the customer was added.';
CREATE INDEX IF NOT EXISTS customers_org_id_name_idx ON public.customers (org_id, name);

CREATE TABLE IF NOT EXISTS public.orders (
  id              bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org_id          uuid          NOT NULL DEFAULT app.current_org_id()
                                REFERENCES public.organizations (id) ON DELETE RESTRICT,
  customer_id     bigint        NOT NULL,
  created_by      uuid          NOT NULL DEFAULT app.current_user_id(),
  status          text          NOT NULL DEFAULT 'draft'
                                CHECK (status IN ('draft', 'open', 'paid', 'shipped', 'cancelled')),
  total           numeric(12,2) NOT NULL DEFAULT 0 CHECK (total >= 0),
  created_at      timestamptz   NOT NULL DEFAULT now(),
  note            text,
  internal_margin numeric(5,2),
  UNIQUE (org_id, id),
  -- Composite keys: an order can only point at a customer and a creator of its
  -- own org. Foreign-key checks bypass RLS, so a single-column key would let a
  -- member attach (and probe for) another org's customers.
  FOREIGN KEY (org_id, customer_id) REFERENCES public.customers (org_id, id) ON DELETE RESTRICT,
  FOREIGN KEY (org_id, created_by) REFERENCES public.users (org_id, id) ON DELETE RESTRICT
);
COMMENT ON TABLE public.orders IS 'Sales orders placed for customers.';
COMMENT ON COLUMN public.orders.id IS 'Order number, assigned by the database.';
COMMENT ON COLUMN public.orders.org_id IS 'Owning organization; defaults to the caller''s.';
COMMENT ON COLUMN public.orders.customer_id IS 'Customer the order is for (same organization).';
COMMENT ON COLUMN public.orders.created_by IS 'User who created the order; defaults to the caller.';
COMMENT ON COLUMN public.orders.status IS 'Lifecycle: draft, open, paid, shipped or cancelled.';
COMMENT ON COLUMN public.orders.total IS 'Order total in the organization''s currency, >= 0.';
COMMENT ON COLUMN public.orders.created_at IS 'When the order was created.';
COMMENT ON COLUMN public.orders.note IS 'Optional free-form note.';
COMMENT ON COLUMN public.orders.internal_margin IS 'Gross margin in percent (confidential: admins only).';
CREATE INDEX IF NOT EXISTS orders_org_id_created_at_idx ON public.orders (org_id, created_at);
CREATE INDEX IF NOT EXISTS orders_org_id_customer_id_idx ON public.orders (org_id, customer_id);
CREATE INDEX IF NOT EXISTS orders_org_id_created_by_idx ON public.orders (org_id, created_by);
CREATE INDEX IF NOT EXISTS orders_org_id_status_idx ON public.orders (org_id, status);

CREATE TABLE IF NOT EXISTS public.invoices (
  id        bigint        GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  org_id    uuid          NOT NULL DEFAULT app.current_org_id()
                          REFERENCES public.organizations (id) ON DELETE RESTRICT,
  order_id  bigint        NOT NULL,
  amount    numeric(12,2) NOT NULL CHECK (amount >= 0),
  status    text          NOT NULL DEFAULT 'issued' CHECK (status IN ('issued', 'paid', 'void')),
  issued_at timestamptz   NOT NULL DEFAULT now(),
  due_at    timestamptz   NOT NULL DEFAULT now() + interval '30 days',
  CHECK (due_at >= issued_at),
  -- Same-org guarantee as on orders. RESTRICT: invoiced orders are cancelled,
  -- not deleted, so the books keep their history.
  FOREIGN KEY (org_id, order_id) REFERENCES public.orders (org_id, id) ON DELETE RESTRICT
);
COMMENT ON TABLE public.invoices IS 'Invoices issued for paid or shipped orders.';
COMMENT ON COLUMN public.invoices.id IS 'Invoice number, assigned by the database.';
COMMENT ON COLUMN public.invoices.org_id IS 'Owning organization; defaults to the caller''s.';
COMMENT ON COLUMN public.invoices.order_id IS 'Order being invoiced (same organization).';
COMMENT ON COLUMN public.invoices.amount IS 'Amount billed.';
COMMENT ON COLUMN public.invoices.status IS 'issued (awaiting payment), paid or void.';
COMMENT ON COLUMN public.invoices.issued_at IS 'When the invoice was sent.';
COMMENT ON COLUMN public.invoices.due_at IS 'Payment due date.';
CREATE INDEX IF NOT EXISTS invoices_org_id_issued_at_idx ON public.invoices (org_id, issued_at);
CREATE INDEX IF NOT EXISTS invoices_org_id_order_id_idx ON public.invoices (org_id, order_id);

-- ---------------------------------------------------------------------------
-- Privileges. Start from nothing: Supabase's default privileges grant ALL on new
-- public tables and sequences to anon and authenticated, and a table-level SELECT
-- would make every column visible regardless of the column grants below.
-- ---------------------------------------------------------------------------

REVOKE ALL ON TABLE public.organizations, public.users, public.customers, public.orders, public.invoices
  FROM PUBLIC, anon, authenticated, org_admin, service_role;
-- Identity columns draw from these without any sequence privilege; nobody needs
-- to call nextval()/setval() on them directly.
REVOKE ALL ON SEQUENCE public.customers_id_seq, public.orders_id_seq, public.invoices_id_seq
  FROM PUBLIC, anon, authenticated, org_admin, service_role;

-- service_role is the trusted backend (BYPASSRLS); it keeps the data access it
-- would have on Supabase, except rewriting keys: ids and org_id are never
-- updatable by anyone, so a row cannot change identity or tenant.
GRANT SELECT, INSERT, DELETE
  ON TABLE public.organizations, public.users, public.customers, public.orders, public.invoices
  TO service_role;
GRANT UPDATE (name) ON TABLE public.organizations TO service_role;
GRANT UPDATE (name, email, org_role) ON TABLE public.users TO service_role;
GRANT UPDATE (name, email, phone, notes) ON TABLE public.customers TO service_role;
GRANT UPDATE (customer_id, created_by, status, total, note, internal_margin) ON TABLE public.orders
  TO service_role;
GRANT UPDATE (amount, status, issued_at, due_at) ON TABLE public.invoices TO service_role;

-- organizations: admins may rename their org; nobody creates or removes tenants here.
GRANT SELECT ON TABLE public.organizations TO authenticated, org_admin;
GRANT UPDATE (name) ON TABLE public.organizations TO org_admin;

-- users: members may fix their own name; admins add people to their org and
-- change roles. Ids are JWT subs, so nobody rewrites them, and nobody moves a
-- user to another org (org_id is not updatable).
GRANT SELECT ON TABLE public.users TO authenticated, org_admin;
GRANT UPDATE (name) ON TABLE public.users TO authenticated;
GRANT INSERT (id, org_id, name, email, org_role) ON TABLE public.users TO org_admin;
GRANT UPDATE (name, email, org_role) ON TABLE public.users TO org_admin;

-- customers: contact details are personal data, so members do not even see the
-- columns; admins manage the customer list.
GRANT SELECT (id, org_id, name, notes, created_at) ON TABLE public.customers TO authenticated;
GRANT SELECT ON TABLE public.customers TO org_admin;
GRANT INSERT (org_id, name, email, phone, notes) ON TABLE public.customers TO org_admin;
GRANT UPDATE (name, email, phone, notes) ON TABLE public.customers TO org_admin;
GRANT DELETE ON TABLE public.customers TO org_admin;

-- orders: margins are confidential to admins. org_id/created_by are insertable
-- (the policies pin them to the caller) so a wrong value fails WITH CHECK rather
-- than being silently replaced; they are never updatable, so rows cannot move.
GRANT SELECT (id, org_id, customer_id, created_by, status, total, created_at, note)
  ON TABLE public.orders TO authenticated;
GRANT INSERT (org_id, customer_id, created_by, status, total, note) ON TABLE public.orders TO authenticated;
GRANT UPDATE (status, total, note) ON TABLE public.orders TO authenticated;
GRANT SELECT ON TABLE public.orders TO org_admin;
GRANT INSERT (org_id, customer_id, created_by, status, total, note, internal_margin)
  ON TABLE public.orders TO org_admin;
GRANT UPDATE (customer_id, status, total, note, internal_margin) ON TABLE public.orders TO org_admin;
GRANT DELETE ON TABLE public.orders TO org_admin;

-- invoices: read-only for members; admins issue and settle them but never
-- delete (voiding keeps the audit trail).
GRANT SELECT ON TABLE public.invoices TO authenticated, org_admin;
GRANT INSERT (org_id, order_id, amount, status, issued_at, due_at) ON TABLE public.invoices TO org_admin;
GRANT UPDATE (amount, status, due_at) ON TABLE public.invoices TO org_admin;
